//! `/config`: the etcd configuration for this member, rendered as the original does from the
//! file `ETCD_CONF` names (default `/var/etcd/config/etcd.conf.yaml`): `name` is
//! `[<member-name-prefix>-]$POD_NAME`; `initial-advertise-peer-urls` and
//! `advertise-client-urls`, maps from member name to URLs in the file, become this member's
//! URLs; `initial-cluster` keeps only current members and this one when the cluster already has
//! several; `initial-cluster-state` is `existing` when a learner is present, else `new`. The
//! result is also written to `$HOME/etcd.conf.yaml`.

use std::path::{Path, PathBuf};

use etcdbr::etcd::EtcdOptions;
use etcdbr::member::MemberControl;
use serde_json::Value;

/// A YAML mapping, read as JSON values (the etcd configuration is plain keys and scalars).
type Mapping = serde_json::Map<String, Value>;

use crate::state::Shared;

/// Why the etcd configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EtcdConfError {
    /// The file cannot be read.
    #[error("cannot read the etcd config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not YAML.
    #[error("the etcd config file {path} is not valid YAML: {message}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// `POD_NAME` is not set: this member's name is unknown.
    #[error("POD_NAME is not set")]
    NoPodName,
    /// The member has no URLs of this kind in the file.
    #[error("no {key} found for member {member:?} in the etcd config file")]
    NoUrls {
        /// The key (`initial-advertise-peer-urls`, `advertise-client-urls`).
        key: String,
        /// The member.
        member: String,
    },
    /// A URL without a scheme.
    #[error("invalid URL {url:?} in {key} of member {member:?}")]
    BadUrl {
        /// The URL.
        url: String,
        /// The key.
        key: String,
        /// The member.
        member: String,
    },
    /// The rendered configuration cannot be written or encoded.
    #[error("cannot write the etcd config {path}: {message}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// Default location of the etcd configuration file.
pub const DEFAULT_ETCD_CONF: &str = "/var/etcd/config/etcd.conf.yaml";

/// The etcd configuration file: `ETCD_CONF`, else [`DEFAULT_ETCD_CONF`].
#[must_use]
pub fn path_from_env() -> PathBuf {
    std::env::var_os("ETCD_CONF")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_ETCD_CONF), PathBuf::from)
}

fn urls_of(config: &Mapping, key: &str, member: &str) -> Result<String, EtcdConfError> {
    let urls: Vec<String> = config
        .get(key)
        .and_then(Value::as_object)
        .and_then(|m| m.get(member))
        .and_then(Value::as_array)
        .map(|s| {
            s.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if urls.is_empty() {
        return Err(EtcdConfError::NoUrls {
            key: key.to_owned(),
            member: member.to_owned(),
        });
    }
    if let Some(u) = urls.iter().find(|u| !u.contains("://")) {
        return Err(EtcdConfError::BadUrl {
            url: u.clone(),
            key: key.to_owned(),
            member: member.to_owned(),
        });
    }
    Ok(urls.join(","))
}

/// Reads and parses the etcd configuration file.
fn load(path: &Path) -> Result<Mapping, EtcdConfError> {
    let text = std::fs::read_to_string(path).map_err(|source| EtcdConfError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_saphyr::from_str(&text).map_err(|e| EtcdConfError::Yaml {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// This member and its cluster as the etcd configuration describes them, for the multi-member
/// decisions of initialization and the learner's promotion. `None` when the file cannot be
/// read or names a single member (the original then treats the cluster as a single member too);
/// the cluster is reached at `--service-endpoints`, else at every member's client URLs.
///
/// # Errors
/// A multi-member configuration without `POD_NAME` or without this member's peer URLs.
pub fn member_control(
    path: &Path,
    etcd: &EtcdOptions,
) -> Result<Option<MemberControl>, EtcdConfError> {
    let Ok(config) = load(path) else {
        return Ok(None);
    };
    let cluster_size = config
        .get("initial-cluster")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .split(',')
        .filter(|e| !e.trim().is_empty())
        .count();
    if cluster_size < 2 {
        return Ok(None);
    }
    let (name, peer_urls) = this_member_of(&config)?;
    let mut cluster = etcd.clone();
    if !etcd.service_endpoints.is_empty() {
        cluster.endpoints.clone_from(&etcd.service_endpoints);
    } else if let Some(all) = config
        .get("advertise-client-urls")
        .and_then(Value::as_object)
    {
        let mut urls: Vec<String> = all
            .values()
            .filter_map(Value::as_array)
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        urls.sort();
        urls.dedup();
        if !urls.is_empty() {
            cluster.endpoints = urls;
        }
    }
    Ok(Some(MemberControl {
        cluster_size,
        cluster,
        name,
        peer_urls,
        events: crate::metrics::events(),
    }))
}

/// This member as the etcd configuration at `path` gives it, reached through `etcd` (its own
/// etcd), whatever the cluster's size: for the start-up peer URL update.
///
/// # Errors
/// The file is unreadable or malformed, `POD_NAME` is unset, or the member's URLs are missing.
pub fn this_member(path: &Path, etcd: &EtcdOptions) -> Result<MemberControl, EtcdConfError> {
    let config = load(path)?;
    let (name, peer_urls) = this_member_of(&config)?;
    let mut cluster = etcd.clone();
    cluster.endpoints.truncate(1);
    Ok(MemberControl {
        cluster_size: 1,
        cluster,
        name,
        peer_urls,
        events: crate::metrics::events(),
    })
}

fn this_member_of(config: &Mapping) -> Result<(String, Vec<String>), EtcdConfError> {
    let member = member_name(config)?;
    let peer_urls = urls_of(config, "initial-advertise-peer-urls", &member)?
        .split(',')
        .map(str::to_owned)
        .collect();
    Ok((member, peer_urls))
}

fn member_name(config: &Mapping) -> Result<String, EtcdConfError> {
    let pod = std::env::var("POD_NAME").map_err(|_| EtcdConfError::NoPodName)?;
    let prefix = config
        .get("member-name-prefix")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Ok(if prefix.is_empty() {
        pod
    } else {
        format!("{prefix}-{pod}")
    })
}

/// The member Lease's name (`[<member-name-prefix>-]$POD_NAME`) and whether this member's peer
/// URLs use https, from the etcd configuration at `path`; without a readable file, `$POD_NAME`
/// and plain http.
///
/// # Errors
/// `POD_NAME` is unset, or the file names no peer URLs for this member.
pub fn member_lease(path: &Path) -> Result<(String, bool), EtcdConfError> {
    let Ok(config) = load(path) else {
        tracing::warn!(
            "No etcd config at {}: the member Lease is $POD_NAME and peer TLS is taken as off",
            path.display()
        );
        let pod = std::env::var("POD_NAME").map_err(|_| EtcdConfError::NoPodName)?;
        return Ok((pod, false));
    };
    let name = member_name(&config)?;
    let tls = match config.get("initial-advertise-peer-urls") {
        Some(_) => urls_of(&config, "initial-advertise-peer-urls", &name)?
            .split(',')
            .any(|u| u.trim().starts_with("https://")),
        None => false,
    };
    Ok((name, tls))
}

/// Renders the configuration (and writes it to `$HOME/etcd.conf.yaml`).
///
/// # Errors
/// The file is unreadable or malformed, `POD_NAME` is unset, or this member's URLs are
/// missing.
pub async fn render(s: &Shared) -> Result<String, EtcdConfError> {
    let mut config = load(&s.etcd_conf)?;
    let member = member_name(&config)?;
    let peer = urls_of(&config, "initial-advertise-peer-urls", &member)?;
    let client = urls_of(&config, "advertise-client-urls", &member)?;
    config.insert("name".into(), member.clone().into());
    config.insert("initial-advertise-peer-urls".into(), peer.into());
    config.insert("advertise-client-urls".into(), client.into());

    let initial = config
        .get("initial-cluster")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let (members, learner) = cluster_view(s).await;
    let initial = match members {
        Some(names) if names.len() > 1 => initial
            .split(',')
            .filter(|e| {
                let name = e.split('=').next().unwrap_or_default();
                names.iter().any(|n| n == name) || name == member
            })
            .collect::<Vec<_>>()
            .join(","),
        _ => initial,
    };
    let size = initial.split(',').filter(|e| !e.is_empty()).count();
    let state = if size > 1 && learner {
        "existing"
    } else {
        "new"
    };
    config.insert("initial-cluster".into(), initial.into());
    config.insert("initial-cluster-state".into(), state.into());

    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from);
    let path = home.join("etcd.conf.yaml");
    let failed = |message: String| EtcdConfError::Write {
        path: path.clone(),
        message,
    };
    let out = serde_saphyr::to_string(&config).map_err(|e| failed(e.to_string()))?;
    write_private(&path, &out).map_err(|e| failed(e.to_string()))?;
    tracing::info!("Served config for ETCD instance.");
    Ok(out)
}

fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

/// The names of the cluster's members and whether one is a learner, when etcd answers.
async fn cluster_view(s: &Shared) -> (Option<Vec<String>>, bool) {
    // This member's etcd is not running yet when its start-up script asks for the config: ask
    // the cluster.
    let etcd = s.initialize.member.as_ref().map_or(&s.etcd, |m| &m.cluster);
    let Ok(Ok(mut c)) = tokio::time::timeout(etcd.connection_timeout, etcd.connect()).await else {
        return (None, false);
    };
    match tokio::time::timeout(etcd.connection_timeout, c.member_list()).await {
        Ok(Ok(list)) => (
            Some(list.members().iter().map(|m| m.name().to_owned()).collect()),
            list.members().iter().any(etcd_client::Member::is_learner),
        ),
        _ => (None, false),
    }
}

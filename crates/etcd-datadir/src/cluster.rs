//! Members of the restored cluster: `--initial-cluster` parsing, member and cluster IDs, and
//! the member JSON etcd stores.
//!
//! IDs are derived exactly as etcd derives them at bootstrap (`membership.NewClusterFromURLsMap`):
//! member ID = first 8 bytes (big-endian) of sha1(sorted peer URLs joined ‖ cluster token);
//! cluster ID = first 8 bytes of sha1(the sorted member IDs as big-endian u64s).

use std::collections::BTreeMap;
use std::fmt;

use sha1::{Digest, Sha1};

/// A raft member ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberId(pub u64);

/// A cluster ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterId(pub u64);

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// Why a cluster description is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// `--initial-cluster` is malformed.
    #[error("invalid --initial-cluster {0:?}: expected name=URL[,name=URL...]")]
    BadInitialCluster(String),
    /// A peer URL is malformed.
    #[error("invalid peer URL {url:?}: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// `--name` is not in `--initial-cluster`.
    #[error("member name {0:?} is not in --initial-cluster")]
    UnknownName(String),
    /// `--initial-advertise-peer-urls` differ from the member's URLs in `--initial-cluster`.
    #[error(
        "--initial-advertise-peer-urls {advertised:?} do not match {name}'s URLs {cluster:?} in --initial-cluster"
    )]
    UrlMismatch {
        /// Member name.
        name: String,
        /// URLs advertised.
        advertised: Vec<String>,
        /// URLs in the cluster.
        cluster: Vec<String>,
    },
    /// Two members have the same ID (same URLs).
    #[error("two members have the same peer URLs")]
    DuplicateMember,
}

/// Validates and normalizes a peer URL as Go's `types.NewURLs` does: scheme http, https,
/// unix or unixs; `host:port`; no path.
///
/// # Errors
/// [`ClusterError::BadUrl`].
pub fn normalize_url(url: &str) -> Result<String, ClusterError> {
    let bad = |reason| ClusterError::BadUrl {
        url: url.to_owned(),
        reason,
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("missing scheme"))?;
    let scheme = scheme.to_ascii_lowercase();
    if !matches!(scheme.as_str(), "http" | "https" | "unix" | "unixs") {
        return Err(bad("scheme must be http, https, unix or unixs"));
    }
    if rest.contains('/') || rest.contains('?') || rest.contains('#') {
        return Err(bad("URL must not contain a path"));
    }
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| bad("URL must be host:port"))?;
    if host.is_empty() || port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("URL must be host:port"));
    }
    Ok(format!("{scheme}://{rest}"))
}

/// One member of the cluster being restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its ID.
    pub id: MemberId,
    /// Member name.
    pub name: String,
    /// Peer URLs, normalized and sorted.
    pub peer_urls: Vec<String>,
}

impl Member {
    /// `json.Marshal(membership.Member)` for a member with no client URLs:
    /// `{"id":<decimal>,"peerURLs":[...],"name":"..."}`.
    #[must_use]
    pub fn json(&self) -> String {
        let mut s = format!(
            "{{\"id\":{},\"peerURLs\":{}",
            self.id.0,
            self.raft_urls_json()
        );
        if !self.name.is_empty() {
            s.push_str(",\"name\":");
            s.push_str(&serde_json::to_string(&self.name).unwrap_or_default());
        }
        s.push('}');
        s
    }

    /// The URL list as JSON, `["http://…",…]`.
    #[must_use]
    pub fn raft_urls_json(&self) -> String {
        serde_json::to_string(&self.peer_urls).unwrap_or_default()
    }

    /// `json.Marshal(RaftAttributes)`: `{"peerURLs":[...]}`.
    #[must_use]
    pub fn raft_attributes_json(&self) -> String {
        format!("{{\"peerURLs\":{}}}", self.raft_urls_json())
    }
}

/// The cluster a restore creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// Cluster token.
    pub token: String,
    /// Members sorted by ID.
    pub members: Vec<Member>,
    /// The cluster ID.
    pub id: ClusterId,
}

impl Cluster {
    /// Builds the cluster from `--initial-cluster` and `--initial-cluster-token`.
    ///
    /// # Errors
    /// Malformed input or duplicate members.
    pub fn new(initial_cluster: &str, token: &str) -> Result<Cluster, ClusterError> {
        let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for part in initial_cluster
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (name, url) = part
                .split_once('=')
                .ok_or_else(|| ClusterError::BadInitialCluster(initial_cluster.to_owned()))?;
            by_name
                .entry(name.to_owned())
                .or_default()
                .push(normalize_url(url)?);
        }
        if by_name.is_empty() {
            return Err(ClusterError::BadInitialCluster(initial_cluster.to_owned()));
        }
        let mut members: Vec<Member> = by_name
            .into_iter()
            .map(|(name, mut urls)| {
                urls.sort();
                let mut h = Sha1::new();
                h.update(urls.concat().as_bytes());
                h.update(token.as_bytes());
                let id = MemberId(u64::from_be_bytes(
                    h.finalize()[..8].try_into().unwrap_or_default(),
                ));
                Member {
                    id,
                    name,
                    peer_urls: urls,
                }
            })
            .collect();
        members.sort_by_key(|m| m.id);
        if members.windows(2).any(|w| w[0].id == w[1].id) {
            return Err(ClusterError::DuplicateMember);
        }
        let mut h = Sha1::new();
        for m in &members {
            h.update(m.id.0.to_be_bytes());
        }
        let id = ClusterId(u64::from_be_bytes(
            h.finalize()[..8].try_into().unwrap_or_default(),
        ));
        Ok(Cluster {
            token: token.to_owned(),
            members,
            id,
        })
    }

    /// The member called `name`, checked against its advertised peer URLs (empty: not checked).
    ///
    /// # Errors
    /// Unknown name or mismatching URLs.
    pub fn member(&self, name: &str, advertised: &[String]) -> Result<&Member, ClusterError> {
        let m = self
            .members
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| ClusterError::UnknownName(name.to_owned()))?;
        if !advertised.is_empty() {
            let mut adv = advertised
                .iter()
                .map(|u| normalize_url(u))
                .collect::<Result<Vec<_>, _>>()?;
            adv.sort();
            if adv != m.peer_urls {
                return Err(ClusterError::UrlMismatch {
                    name: name.to_owned(),
                    advertised: adv,
                    cluster: m.peer_urls.clone(),
                });
            }
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_match_etcd() {
        // reference/etcd-formats.md §4.2, verified against etcd 3.4.23.
        let c = Cluster::new("r1=http://127.0.0.1:24801", "tok1").unwrap();
        assert_eq!(c.members[0].id, MemberId(0x18e0_1855_57c0_ce00));
        assert_eq!(c.id, ClusterId(0xd02a_c130_b9eb_fd3b));
        assert_eq!(
            c.members[0].json(),
            r#"{"id":1792459406516997632,"peerURLs":["http://127.0.0.1:24801"],"name":"r1"}"#
        );
    }

    #[test]
    fn rejects_bad_input() {
        assert!(Cluster::new("", "t").is_err());
        assert!(Cluster::new("a", "t").is_err());
        assert!(Cluster::new("a=127.0.0.1:2380", "t").is_err());
        assert!(Cluster::new("a=http://127.0.0.1", "t").is_err());
        assert!(Cluster::new("a=http://127.0.0.1:2380/x", "t").is_err());
        assert!(Cluster::new("a=ftp://h:1", "t").is_err());
        assert_eq!(
            Cluster::new("a=http://h:1,b=http://h:1", "t").unwrap_err(),
            ClusterError::DuplicateMember
        );
        let c = Cluster::new("a=http://h:1,b=http://h:2", "t").unwrap();
        assert!(c.member("c", &[]).is_err());
        assert!(c.member("a", &["http://h:2".into()]).is_err());
        assert!(c.member("a", &["HTTP://h:1".into()]).is_ok());
    }
}

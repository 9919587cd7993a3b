//! Connecting to etcd with the original's connection flags.

mod insecure;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

use crate::error::{Error, Result};

/// The etcd connection flags (`--endpoints`, `--etcd-*`, `--cert`, …).
#[derive(Clone)]
#[non_exhaustive]
pub struct EtcdOptions {
    /// Client URLs of the etcd members.
    pub endpoints: Vec<String>,
    /// Endpoints reached through a (Kubernetes) service; used for cluster-wide calls.
    pub service_endpoints: Vec<String>,
    /// User name for etcd auth (used only together with a password).
    pub username: String,
    /// Password for etcd auth.
    pub password: String,
    /// Timeout of connecting and of short calls.
    pub connection_timeout: Duration,
    /// Timeout of a whole snapshot stream.
    pub snapshot_timeout: Duration,
    /// Timeout of one member's defragmentation.
    pub defrag_timeout: Duration,
    /// Connect without TLS unless certificates are given.
    pub insecure_transport: bool,
    /// Skip verifying the server certificate.
    pub insecure_skip_verify: bool,
    /// Client certificate (PEM).
    pub cert_file: Option<PathBuf>,
    /// Client key (PEM).
    pub key_file: Option<PathBuf>,
    /// CA bundle to verify the server (PEM).
    pub ca_file: Option<PathBuf>,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            service_endpoints: Vec::new(),
            username: String::new(),
            password: String::new(),
            connection_timeout: Duration::from_secs(30),
            snapshot_timeout: Duration::from_secs(15 * 60),
            defrag_timeout: Duration::from_secs(8 * 60),
            insecure_transport: true,
            insecure_skip_verify: false,
            cert_file: None,
            key_file: None,
            ca_file: None,
        }
    }
}

impl fmt::Debug for EtcdOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdOptions")
            .field("endpoints", &self.endpoints)
            .field("service_endpoints", &self.service_endpoints)
            .field("username", &self.username)
            .field(
                "password",
                &if self.password.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("connection_timeout", &self.connection_timeout)
            .field("snapshot_timeout", &self.snapshot_timeout)
            .field("insecure_transport", &self.insecure_transport)
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

/// Largest message accepted from etcd: a watch response carries up to 1000 revisions in one
/// message (etcd does not split them unless asked), far above gRPC's 4 MiB default.
const MAX_DECODING_MESSAGE_SIZE: usize = i32::MAX as usize;

/// Why the etcd connection settings are unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EtcdConfigError {
    /// No endpoint.
    #[error("--endpoints must name at least one etcd client URL")]
    NoEndpoints,
    /// A timeout of zero.
    #[error("{flag} must be greater than zero")]
    ZeroTimeout {
        /// The flag.
        flag: &'static str,
    },
    /// The snapshot timeout is below the connection timeout.
    #[error("--etcd-snapshot-timeout must be greater than or equal to --etcd-connection-timeout")]
    SnapshotTimeoutShorter,
    /// Only one of the certificate and its key.
    #[error("--cert and --key must be given together")]
    CertWithoutKey,
    /// A PEM file cannot be read.
    #[error("cannot read {flag} file {path}")]
    Pem {
        /// The flag.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// An endpoint is not a usable URI.
    #[error("invalid etcd endpoint {url:?}: {message}")]
    BadEndpoint {
        /// The endpoint.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// TLS cannot be set up for an endpoint.
    #[error("cannot set up TLS for {url:?}: {message}")]
    Tls {
        /// The endpoint.
        url: String,
        /// What is wrong.
        message: String,
    },
}

impl EtcdOptions {
    /// Checks the values as the original does.
    ///
    /// # Errors
    /// [`Error::EtcdConfig`] naming the flag.
    pub fn validate(&self) -> Result<()> {
        let check = || {
            if self.endpoints.is_empty() || self.endpoints.iter().any(String::is_empty) {
                return Err(EtcdConfigError::NoEndpoints);
            }
            for (flag, t) in [
                ("--etcd-connection-timeout", self.connection_timeout),
                ("--etcd-snapshot-timeout", self.snapshot_timeout),
                ("--etcd-defrag-timeout", self.defrag_timeout),
            ] {
                if t.is_zero() {
                    return Err(EtcdConfigError::ZeroTimeout { flag });
                }
            }
            if self.snapshot_timeout < self.connection_timeout {
                return Err(EtcdConfigError::SnapshotTimeoutShorter);
            }
            if self.cert_file.is_some() != self.key_file.is_some() {
                return Err(EtcdConfigError::CertWithoutKey);
            }
            Ok(())
        };
        Ok(check()?)
    }

    /// Whether connections use TLS: when any certificate flag is set, or when
    /// `--insecure-transport=false` (then with the system's roots if no CA is given).
    #[must_use]
    pub fn uses_tls(&self) -> bool {
        self.cert_file.is_some()
            || self.key_file.is_some()
            || self.ca_file.is_some()
            || !self.insecure_transport
    }

    fn read_pem(flag: &'static str, path: &PathBuf) -> Result<Vec<u8>> {
        std::fs::read(path).map_err(|source| {
            EtcdConfigError::Pem {
                flag,
                path: path.clone(),
                source,
            }
            .into()
        })
    }

    fn identity(&self) -> Result<Option<Identity>> {
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => Ok(Some(Identity::from_pem(
                Self::read_pem("--cert", cert)?,
                Self::read_pem("--key", key)?,
            ))),
            _ => Ok(None),
        }
    }

    /// TLS settings that verify etcd's certificate: against `--cacert`, else the system roots.
    fn verified_tls(&self) -> Result<TlsOptions> {
        let mut tls = TlsOptions::new();
        match &self.ca_file {
            Some(ca) => {
                tls = tls.ca_certificate(Certificate::from_pem(Self::read_pem("--cacert", ca)?))
            }
            None => tls = tls.with_native_roots(),
        }
        if let Some(id) = self.identity()? {
            tls = tls.identity(id);
        }
        Ok(tls)
    }

    /// The endpoints as URLs, with the scheme the TLS settings imply where one is missing.
    #[must_use]
    pub fn endpoint_urls(&self) -> Vec<String> {
        let scheme = if self.uses_tls() {
            "https://"
        } else {
            "http://"
        };
        self.endpoints
            .iter()
            .map(|e| {
                if e.contains("://") {
                    e.clone()
                } else {
                    format!("{scheme}{e}")
                }
            })
            .collect()
    }

    /// Connects to the endpoints.
    ///
    /// # Errors
    /// [`Error::EtcdConfig`] for unreadable certificate files, [`Error::Etcd`] when etcd cannot be
    /// reached within the connection timeout.
    pub async fn connect(&self) -> Result<Client> {
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(self.connection_timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(20))
            .with_keep_alive_while_idle(true);
        if !self.username.is_empty() && !self.password.is_empty() {
            opts = opts.with_user(self.username.clone(), self.password.clone());
        }
        let endpoints = self.endpoint_urls();
        let connect = async {
            check_resolvable(&endpoints).await?;
            if self.uses_tls() && self.insecure_skip_verify {
                tracing::warn!(
                    "--insecure-skip-tls-verify is set: etcd's server certificate is not verified"
                );
                let channel =
                    insecure::channel(&endpoints, self.identity()?, self.connection_timeout)?;
                Client::from_channel(etcd_client::Channel::Tonic(channel), Some(opts))
                    .await
                    .map_err(|e| Error::Etcd {
                        op: "connect",
                        source: e,
                    })
            } else {
                if self.uses_tls() {
                    opts = opts.with_tls(self.verified_tls()?);
                }
                Client::connect(&endpoints, Some(opts))
                    .await
                    .map_err(|e| Error::Etcd {
                        op: "connect",
                        source: e,
                    })
            }
        };
        match tokio::time::timeout(self.connection_timeout, connect).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                op: "connect to etcd",
                after: self.connection_timeout,
            }),
        }
    }
}

/// Resolves the endpoints' hosts, so that a name that does not resolve is reported with the
/// name (etcd's client only says "dns error", at its first call); fine when any one resolves.
async fn check_resolvable(endpoints: &[String]) -> Result<()> {
    let mut failure = None;
    for endpoint in endpoints {
        let Ok(uri) = endpoint.parse::<tonic::codegen::http::Uri>() else {
            return Ok(()); // not for us to judge: the client reports a malformed endpoint
        };
        let Some(host) = uri.host() else {
            return Ok(());
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(2379);
        match tokio::net::lookup_host((host, port)).await {
            Ok(_) => return Ok(()),
            Err(source) => {
                failure.get_or_insert(Error::Unresolvable {
                    endpoint: endpoint.clone(),
                    source,
                });
            }
        }
    }
    failure.map_or(Ok(()), Err)
}

/// A watch client that accepts etcd's large watch responses.
pub(crate) fn watch_client(client: &Client) -> etcd_client::WatchClient {
    client
        .watch_client()
        .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE)
}

/// The current revision of the etcd behind `client`.
pub(crate) async fn current_revision(client: &mut Client, timeout: Duration) -> Result<i64> {
    let opts = etcd_client::GetOptions::new()
        .with_all_keys()
        .with_keys_only()
        .with_limit(1);
    let resp = tokio::time::timeout(timeout, client.get("", Some(opts)))
        .await
        .map_err(|_| Error::Timeout {
            op: "get the etcd revision",
            after: timeout,
        })?
        .map_err(|e| Error::Etcd {
            op: "get the etcd revision",
            source: e,
        })?;
    Ok(resp
        .header()
        .map_or(0, etcd_client::ResponseHeader::revision))
}

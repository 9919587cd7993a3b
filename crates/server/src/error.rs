//! Errors of the server: what stops it at start-up, and what fails when it talks to its
//! siblings (the leader's sidecar, etcd-wrapper).

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The store is unusable.
    #[error(transparent)]
    Store(#[from] snapstore::Error),
    /// The port cannot be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The etcd configuration file is unusable (a multi-member cluster this member cannot find
    /// itself in, say).
    #[error("the etcd config file {}", path.display())]
    EtcdConf {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        #[source]
        source: crate::etcd_conf::EtcdConfError,
    },
    /// The Kubernetes client for the Leases cannot be set up.
    #[error("Kubernetes Leases")]
    Kube(#[from] etcdbr_k8s::Error),
    /// The etcd configuration does not say which member Lease is this sidecar's.
    #[error("the member Lease")]
    MemberLease(#[from] crate::etcd_conf::EtcdConfError),
    /// `--server-cert` / `--server-key` are unusable.
    #[error("server TLS")]
    Tls(#[from] TlsError),
    /// The API token file is unusable.
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
}

/// Why `--server-cert` / `--server-key` cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file is not readable PEM.
    #[error("{flag} {}", path.display())]
    Pem {
        /// `--server-cert` or `--server-key`.
        flag: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The PEM reader's reason.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{flag} {}: no certificate in the file", path.display())]
    NoCertificate {
        /// `--server-cert` or `--server-client-ca`.
        flag: &'static str,
        /// The file.
        path: std::path::PathBuf,
    },
    /// The client CA bundle cannot verify clients.
    #[error("--server-client-ca {}: {message}", path.display())]
    ClientCa {
        /// The file.
        path: std::path::PathBuf,
        /// rustls' reason.
        message: String,
    },
    /// rustls refuses the configuration (the protocol versions, or a key that does not fit the
    /// certificate).
    #[error("the certificate and key cannot be used together")]
    Config(#[source] rustls::Error),
}

/// Why a call to a sibling of this sidecar (the leader's sidecar, etcd-wrapper) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SiblingError {
    /// etcd could not be reached or changed.
    #[error(transparent)]
    Etcd(#[from] etcdbr::Error),
    /// An etcd call failed.
    #[error("etcd {op} failed")]
    EtcdCall {
        /// The call.
        op: &'static str,
        /// Cause.
        #[source]
        source: etcd_client::Error,
    },
    /// An etcd call did not answer in time.
    #[error("etcd {0} timed out")]
    Timeout(&'static str),
    /// etcd has no leader.
    #[error("etcd has no leader")]
    NoLeader,
    /// The leader is not in the member list, or has no client URL.
    #[error("the leader {0:x} is not in the member list or has no client URL")]
    LeaderUnknown(u64),
    /// A URL without a scheme.
    #[error("the URL {0:?} has no scheme")]
    NoScheme(String),
    /// The etcd configuration does not give this member.
    #[error(transparent)]
    Conf(#[from] crate::etcd_conf::EtcdConfError),
    /// The CA file to check siblings' certificates cannot be used.
    #[error("the CA file {path} cannot be used: {message}")]
    Ca {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An HTTP request to a sibling failed.
    #[error("{url}")]
    Http {
        /// The request.
        url: String,
        /// Cause.
        #[source]
        source: reqwest::Error,
    },
    /// The leader's sidecar is not healthy.
    #[error("the backup leader at {base} is not healthy (HTTP {status})")]
    Unhealthy {
        /// Its base URL.
        base: String,
        /// Its `/healthz` status.
        status: u16,
    },
    /// The request or the answer cannot be passed on.
    #[error("the request cannot be passed on: {0}")]
    Forward(String),
}

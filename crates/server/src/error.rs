//! Errors that stop the server at start-up.

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
    /// The etcd configuration file describes a multi-member cluster this member cannot find
    /// itself in.
    #[error("{0}")]
    Config(String),
    /// `--server-cert` / `--server-key` are unusable.
    #[error("server TLS: {0}")]
    Tls(String),
}

//! Errors of object stores.

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store configuration is unusable (unknown provider, missing container, …).
    #[error("invalid snapstore configuration: {0}")]
    Config(String),
    /// The container cannot be listed (bad credentials, unreachable endpoint, missing bucket).
    #[error("cannot access the {provider} container {container:?}")]
    Access {
        /// Provider.
        provider: String,
        /// Bucket or container.
        container: String,
        /// Cause.
        #[source]
        source: Box<Error>,
    },
    /// Credentials are missing, unreadable or malformed.
    #[error("{provider} credentials in {origin}: {problem}")]
    Credentials {
        /// The provider.
        provider: &'static str,
        /// The file, directory or variables read.
        origin: String,
        /// What is wrong (never a secret value).
        problem: String,
    },
    /// The object does not exist.
    #[error("object {key:?} not found")]
    NotFound {
        /// Object key.
        key: String,
    },
    /// An I/O operation of the store failed.
    #[error("{op} of {key:?} failed")]
    Io {
        /// Operation: list, get, put, delete, stat.
        op: &'static str,
        /// Object key or prefix.
        key: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A provider request failed.
    #[error("{op} of {key:?} failed")]
    Provider {
        /// Operation.
        op: &'static str,
        /// Object key or prefix.
        key: String,
        /// Whether retrying later may help.
        temporary: bool,
        /// Cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Reading the body to upload failed (the producer of the data, not the store).
    #[error("reading the data to upload as {key:?} failed")]
    Body {
        /// Object key.
        key: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// After an upload, the stored object is not what was sent.
    #[error("uploaded object {key:?} has {found} bytes, expected {expected}")]
    Verify {
        /// Object key.
        key: String,
        /// Bytes sent.
        expected: u64,
        /// Bytes found in the store.
        found: u64,
    },
    /// The store's snapshots do not make a usable backup set.
    #[error(transparent)]
    Chain(#[from] crate::list::ChainError),
    /// The store refuses every operation (the `FAILED` test provider).
    #[error("{op} of {key:?} failed: the FAILED storage provider fails every operation")]
    Injected {
        /// Operation.
        op: &'static str,
        /// Object key.
        key: String,
    },
}

impl Error {
    /// Whether retrying the same operation later may succeed.
    #[must_use]
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            Error::Io { .. }
                | Error::Injected { .. }
                | Error::Provider {
                    temporary: true,
                    ..
                }
        )
    }
}

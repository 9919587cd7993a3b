//! Errors of object stores.

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store configuration is unusable (unknown provider, missing container, …).
    #[error("invalid snapstore configuration")]
    Config(#[from] ConfigError),
    /// An encryption key file cannot be used.
    #[error(transparent)]
    Keys(#[from] crate::crypt::KeyFileError),
    /// The signing key file cannot be used.
    #[error(transparent)]
    SigningKey(#[from] crate::manifest::SigningKeyError),
    /// A backup set does not match its signed manifest: the store was tampered with.
    #[error(transparent)]
    Tampered(#[from] crate::manifest::Tamper),
    /// An object key that is not a plain relative path (the Local store refuses to leave its
    /// directory).
    #[error("object key {0:?} is not a plain relative path")]
    BadKey(String),
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
    /// What a restore was asked for is not in the store.
    #[error(transparent)]
    Select(#[from] crate::select::SelectError),
    /// The store refuses every operation (the `FAILED` test provider).
    #[error("{op} of {key:?} failed: the FAILED storage provider fails every operation")]
    Injected {
        /// Operation.
        op: &'static str,
        /// Object key.
        key: String,
    },
}

/// Why a store configuration is unusable; each names the flag or setting to change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `--storage-provider` names no provider.
    #[error("unsupported storage provider {name:?}; expected one of {expected}")]
    UnknownProvider {
        /// What was given.
        name: String,
        /// The provider names accepted.
        expected: String,
    },
    /// `--max-parallel-chunk-uploads` is zero.
    #[error("--max-parallel-chunk-uploads must be greater than zero")]
    NoParallelUploads,
    /// `--min-chunk-size` is below S3's minimum part size.
    #[error("--min-chunk-size is {0} bytes; it must be at least 5 MiB ({min} bytes)", min = crate::MIN_CHUNK_SIZE)]
    ChunkTooSmall(u64),
    /// `--store-endpoint-override` is not a URL.
    #[error("--store-endpoint-override {0:?} is not a URL (expected scheme://host[:port][/path])")]
    EndpointNotUrl(String),
    /// A remote provider has no container.
    #[error(
        "storage provider {provider} needs a container: set --{flag_prefix}store-container or {env_prefix}STORAGE_CONTAINER"
    )]
    NoContainer {
        /// The provider.
        provider: crate::Provider,
        /// `source-` for the copy source's flags, else empty.
        flag_prefix: String,
        /// The variables' prefix (`SOURCE_` for the copy source).
        env_prefix: String,
    },
    /// The Local provider needs `$HOME`.
    #[error("the Local storage provider stores below $HOME, but HOME is not set")]
    NoHome,
    /// The storage library refuses the provider's settings.
    #[error("{provider}: unusable settings")]
    Builder {
        /// The provider.
        provider: String,
        /// The storage library's reason.
        #[source]
        source: opendal::Error,
    },
    /// `trustedCaCert` is not PEM.
    #[error("{provider}: trustedCaCert is not a PEM certificate")]
    TrustedCa {
        /// The provider.
        provider: String,
        /// The parser's reason.
        #[source]
        source: reqwest::Error,
    },
    /// The HTTP client cannot be built (the TLS stack refuses its settings).
    #[error("{provider}: cannot build the HTTP client")]
    HttpClient {
        /// The provider.
        provider: String,
        /// The HTTP library's reason.
        #[source]
        source: reqwest::Error,
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

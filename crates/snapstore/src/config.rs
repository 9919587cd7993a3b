//! Store configuration as the original's `--storage-provider`/`--store-*` flags describe it.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::{ConfigError, Result};
use crate::name::{LAYOUT_V2, join_key};

/// Minimum chunk size for chunked uploads (the S3 minimum part size).
pub const MIN_CHUNK_SIZE: u64 = 5 * 1024 * 1024;
/// Container used by the Local provider when none is given.
pub const DEFAULT_LOCAL_CONTAINER: &str = "default.bkp";

/// The storage providers of the original (`--storage-provider`), spelled as it spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// A local directory (`$HOME/<container>`); for development and tests.
    Local,
    /// AWS S3 and S3-compatible stores.
    S3,
    /// Azure Blob Storage.
    Abs,
    /// Google Cloud Storage.
    Gcs,
    /// OpenStack Swift.
    Swift,
    /// Alibaba Cloud OSS.
    Oss,
    /// Dell EMC ECS (S3 API).
    Ecs,
    /// OpenShift Container Storage (S3 API).
    Ocs,
    /// A store that fails every operation (for tests).
    Failed,
}

impl Provider {
    /// The flag value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Local => "Local",
            Provider::S3 => "S3",
            Provider::Abs => "ABS",
            Provider::Gcs => "GCS",
            Provider::Swift => "Swift",
            Provider::Oss => "OSS",
            Provider::Ecs => "ECS",
            Provider::Ocs => "OCS",
            Provider::Failed => "FAILED",
        }
    }

    /// Every accepted flag value.
    pub const ALL: [Provider; 9] = [
        Provider::Local,
        Provider::S3,
        Provider::Abs,
        Provider::Gcs,
        Provider::Swift,
        Provider::Oss,
        Provider::Ecs,
        Provider::Ocs,
        Provider::Failed,
    ];
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Provider {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Provider, ConfigError> {
        Provider::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Provider::ALL.iter().map(|p| p.as_str()).collect();
                ConfigError::UnknownProvider {
                    name: s.to_owned(),
                    expected: names.join(", "),
                }
            })
    }
}

/// What the user configured for one store (primary, copy source or secondary).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreConfig {
    /// The provider; `None` means "no store configured" (the original's empty flag value).
    pub provider: Option<Provider>,
    /// Bucket or container (`--store-container`); env fallback applied by [`StoreConfig::resolve`].
    pub container: String,
    /// Prefix inside the container (`--store-prefix`), without the `/v2` the layout adds.
    pub prefix: String,
    /// Endpoint override (`--store-endpoint-override`).
    pub endpoint_override: String,
    /// Parallel chunk uploads (`--max-parallel-chunk-uploads`).
    pub max_parallel_chunk_uploads: usize,
    /// Minimum chunk size (`--min-chunk-size`).
    pub min_chunk_size: u64,
    /// Temporary directory (`--snapstore-temp-directory`).
    pub temp_dir: PathBuf,
    /// Env var prefix for credentials and container: `""`, `SOURCE_` or `SECONDARY_`.
    pub env_prefix: String,
    /// The key files of client-side encryption (etcdbr's `--encryption-*-file` flags).
    pub keys: crate::crypt::KeyFiles,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            provider: None,
            container: String::new(),
            prefix: String::new(),
            endpoint_override: String::new(),
            max_parallel_chunk_uploads: 5,
            min_chunk_size: MIN_CHUNK_SIZE,
            temp_dir: PathBuf::from("/tmp"),
            env_prefix: String::new(),
            keys: crate::crypt::KeyFiles::default(),
        }
    }
}

impl StoreConfig {
    /// Checks the values the way the original's `Validate` does.
    ///
    /// # Errors
    /// [`Error::Config`] naming the bad value.
    pub fn validate(&self) -> Result<()> {
        if self.max_parallel_chunk_uploads == 0 {
            return Err(ConfigError::NoParallelUploads.into());
        }
        if self.min_chunk_size < MIN_CHUNK_SIZE {
            return Err(ConfigError::ChunkTooSmall(self.min_chunk_size).into());
        }
        if !self.endpoint_override.is_empty() && !self.endpoint_override.contains("://") {
            return Err(ConfigError::EndpointNotUrl(self.endpoint_override.clone()).into());
        }
        Ok(())
    }

    /// The key prefix every snapshot of this store is written under: `<prefix>/v2`.
    #[must_use]
    pub fn layout_prefix(&self) -> String {
        join_key(&[&self.prefix, LAYOUT_V2])
    }

    /// The prefix listing starts from: the parent of `<prefix>/v2`, so that v1 backups are
    /// found too.
    #[must_use]
    pub fn list_prefix(&self) -> String {
        join_key(&[&self.prefix])
    }

    /// Applies the container env fallback (`<env_prefix>STORAGE_CONTAINER`) and the Local
    /// default container, and checks that remote providers have a container.
    ///
    /// # Errors
    /// [`Error::Config`] when a remote provider has no container.
    pub fn resolve(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<()> {
        if self.container.is_empty() {
            let var = format!("{}STORAGE_CONTAINER", self.env_prefix);
            self.container = env(&var).unwrap_or_default();
        }
        match self.provider {
            Some(Provider::Local) | None => {
                if self.container.is_empty() {
                    DEFAULT_LOCAL_CONTAINER.clone_into(&mut self.container);
                }
            }
            Some(p) => {
                if self.container.is_empty() {
                    return Err(ConfigError::NoContainer {
                        provider: p,
                        flag_prefix: flag_prefix(&self.env_prefix),
                        env_prefix: self.env_prefix.clone(),
                    }
                    .into());
                }
            }
        }
        Ok(())
    }
}

fn flag_prefix(env_prefix: &str) -> String {
    env_prefix.to_ascii_lowercase().replace('_', "-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn provider_names_round_trip_and_unknown_is_an_error() {
        for p in Provider::ALL {
            assert_eq!(p.as_str().parse::<Provider>().unwrap(), p);
        }
        let e = "s3".parse::<Provider>().unwrap_err().to_string();
        assert!(e.contains("\"s3\"") && e.contains("S3"), "{e}");
    }

    #[test]
    fn prefixes() {
        let mut c = StoreConfig::default();
        assert_eq!(c.layout_prefix(), "v2");
        assert_eq!(c.list_prefix(), "");
        c.prefix = "shoot--a/etcd-main/".into();
        assert_eq!(c.layout_prefix(), "shoot--a/etcd-main/v2");
        assert_eq!(c.list_prefix(), "shoot--a/etcd-main");
    }

    #[test]
    fn container_falls_back_to_env_then_default() {
        let mut c = StoreConfig {
            provider: Some(Provider::Local),
            ..StoreConfig::default()
        };
        c.resolve(|_| None).unwrap();
        assert_eq!(c.container, "default.bkp");
        let mut c = StoreConfig {
            provider: Some(Provider::S3),
            env_prefix: "SOURCE_".into(),
            ..StoreConfig::default()
        };
        c.resolve(|k| (k == "SOURCE_STORAGE_CONTAINER").then(|| "bkt".into()))
            .unwrap();
        assert_eq!(c.container, "bkt");
        let mut c = StoreConfig {
            provider: Some(Provider::Gcs),
            ..StoreConfig::default()
        };
        let e = reason(c.resolve(|_| None));
        assert!(
            e.contains("--store-container") && e.contains("STORAGE_CONTAINER"),
            "{e}"
        );
    }

    #[test]
    fn validation_names_the_flag() {
        let c = StoreConfig {
            min_chunk_size: 1024,
            ..StoreConfig::default()
        };
        assert!(reason(c.validate()).contains("--min-chunk-size"));
        let c = StoreConfig {
            max_parallel_chunk_uploads: 0,
            ..StoreConfig::default()
        };
        assert!(reason(c.validate()).contains("--max-parallel-chunk-uploads"));
        let c = StoreConfig {
            endpoint_override: "localhost:9000".into(),
            ..StoreConfig::default()
        };
        assert!(reason(c.validate()).contains("not a URL"));
    }

    /// The configuration error's message (the store error only says the configuration is
    /// unusable; the reason is its source).
    fn reason(r: Result<()>) -> String {
        match r {
            Err(Error::Config(c)) => c.to_string(),
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }
}

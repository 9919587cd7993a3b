//! Snapstore flags (the original's `SnapstoreConfig`).

use std::path::PathBuf;

use clap::Args;
use snapstore::{Provider, StoreConfig};

/// Where backups are stored.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Snapshot store")]
pub struct StoreFlags {
    /// Storage provider: Local, S3, ABS, GCS, Swift, OSS, ECS, OCS (empty: no store)
    #[arg(long, default_value = "")]
    pub storage_provider: String,

    /// Bucket or container holding the backups (env STORAGE_CONTAINER when empty). For Local, a
    /// directory below $HOME (default "default.bkp"), as in the original
    #[arg(long, default_value = "")]
    pub store_container: String,

    /// Endpoint to use instead of the provider's default (a URL)
    #[arg(long, default_value = "")]
    pub store_endpoint_override: String,

    /// Prefix inside the container; snapshots go to <prefix>/v2
    #[arg(long, default_value = "")]
    pub store_prefix: String,

    /// Maximum number of chunks uploaded in parallel
    #[arg(long, default_value_t = 5)]
    pub max_parallel_chunk_uploads: usize,

    /// Minimum chunk size of multipart uploads, in bytes (at least 5 MiB)
    #[arg(long, default_value_t = snapstore::MIN_CHUNK_SIZE)]
    pub min_chunk_size: u64,

    /// Directory for temporary files (the full snapshot is staged here); created if missing
    #[arg(long, default_value = "/tmp")]
    pub snapstore_temp_directory: PathBuf,
}

/// Opens the store and checks at once that it can be listed, so bad credentials, a missing
/// bucket or an unreachable endpoint stop the command at start-up.
///
/// # Errors
/// The provider cannot be built or the container cannot be listed.
pub async fn open_checked(config: &StoreConfig) -> anyhow::Result<snapstore::SnapStore> {
    let store = snapstore::SnapStore::open(config)?;
    store.check_access().await?;
    Ok(store)
}

impl StoreFlags {
    /// The store configuration, validated, with the container env fallback applied.
    ///
    /// # Errors
    /// An unknown provider or invalid values, with the flag named.
    pub fn to_config(&self, env_prefix: &str) -> anyhow::Result<StoreConfig> {
        let mut c = StoreConfig::default();
        c.provider = if self.storage_provider.is_empty() {
            None
        } else {
            Some(self.storage_provider.parse::<Provider>()?)
        };
        c.container.clone_from(&self.store_container);
        c.endpoint_override
            .clone_from(&self.store_endpoint_override);
        c.prefix.clone_from(&self.store_prefix);
        c.max_parallel_chunk_uploads = self.max_parallel_chunk_uploads;
        c.min_chunk_size = self.min_chunk_size;
        c.temp_dir.clone_from(&self.snapstore_temp_directory);
        env_prefix.clone_into(&mut c.env_prefix);
        c.validate()?;
        c.resolve(|k| std::env::var(k).ok())?;
        Ok(c)
    }
}

//! Snapstore flags (the original's `SnapstoreConfig`), in the three spellings the original has:
//! unprefixed (the store), `source-` (`copy`'s source) and `secondary-` (the server's second
//! store).

use std::path::PathBuf;

use clap::Args;
use snapstore::{Provider, StoreConfig};

/// Declares one store flag group whose flag names carry `$prefix`.
macro_rules! store_flags {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $env:literal, $heading:literal, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Args)]
        #[command(next_help_heading = $heading)]
        pub struct $name {
            /// Flag value (its help text is in the `help` attribute).
            #[arg(help = concat!("Storage provider of ", $what, ": Local, S3, ABS, GCS, Swift, OSS, ECS, OCS"), id = concat!($prefix, "storage-provider"), long = concat!($prefix, "storage-provider"), default_value = "")]
            pub storage_provider: String,

            /// Flag value (its help text is in the `help` attribute).
            #[arg(help = concat!("Bucket or container of ", $what, " (env ", $env, "STORAGE_CONTAINER when empty). For Local, a directory below $HOME"), id = concat!($prefix, "store-container"), long = concat!($prefix, "store-container"), default_value = "")]
            pub store_container: String,

            /// Flag value (its help text is in the `help` attribute).
            #[arg(help = concat!("Endpoint of ", $what, " to use instead of the provider's default (a URL)"), id = concat!($prefix, "store-endpoint-override"), long = concat!($prefix, "store-endpoint-override"), default_value = "")]
            pub store_endpoint_override: String,

            /// Flag value (its help text is in the `help` attribute).
            #[arg(help = concat!("Prefix inside the container of ", $what, "; snapshots go to <prefix>/v2"), id = concat!($prefix, "store-prefix"), long = concat!($prefix, "store-prefix"), default_value = "")]
            pub store_prefix: String,

            /// Flag value (its help text is in the `help` attribute).
            #[arg(help = concat!("Maximum number of chunks uploaded in parallel to ", $what), id = concat!($prefix, "max-parallel-chunk-uploads"), long = concat!($prefix, "max-parallel-chunk-uploads"), default_value_t = 5)]
            pub max_parallel_chunk_uploads: usize,

            /// Flag value (its help text is in the `help` attribute).
            #[arg(help = concat!("Minimum chunk size of multipart uploads to ", $what, ", in bytes (at least 5 MiB)"), id = concat!($prefix, "min-chunk-size"), long = concat!($prefix, "min-chunk-size"), default_value_t = snapstore::MIN_CHUNK_SIZE)]
            pub min_chunk_size: u64,

            /// Flag value (its help text is in the `help` attribute).
            #[arg(help = concat!("Directory for temporary files of ", $what, "; created if missing"), id = concat!($prefix, "snapstore-temp-directory"), long = concat!($prefix, "snapstore-temp-directory"), default_value = "/tmp")]
            pub snapstore_temp_directory: PathBuf,

            /// Flag value (its help text is in the `help` attribute).
            #[arg(help = concat!("age recipients, X25519 public keys (age1…) one a line as age-keygen prints them, that every object written to ", $what, " is encrypted for; objects get the suffix .age. Name several to let a second key (an offline recovery key) decrypt. Unset: objects are written unencrypted"), id = concat!($prefix, "encryption-recipients-file"), long = concat!($prefix, "encryption-recipients-file"), env = concat!("ETCDBR_", $env, "ENCRYPTION_RECIPIENTS_FILE"), value_name = "FILE")]
            pub encryption_recipients_file: Option<PathBuf>,

            /// Flag value (its help text is in the `help` attribute).
            #[arg(help = concat!("age identities, X25519 secret keys as age-keygen writes them, that the encrypted (.age) objects of ", $what, " are read with; list old keys too after a rotation. Keep it mode 600"), id = concat!($prefix, "encryption-identity-file"), long = concat!($prefix, "encryption-identity-file"), env = concat!("ETCDBR_", $env, "ENCRYPTION_IDENTITY_FILE"), value_name = "FILE")]
            pub encryption_identity_file: Option<PathBuf>,

            /// Flag value (its help text is in the `help` attribute).
            #[arg(help = concat!("Ed25519 key (PEM) of the signed manifests of ", $what, ": a private key (openssl genpkey -algorithm ed25519) signs each backup set's manifest as objects are stored; a public key (openssl pkey -pubout) only checks them. With it, restore and verify refuse a set that was changed, cut short or added to by someone without the key"), id = concat!($prefix, "signing-key-file"), long = concat!($prefix, "signing-key-file"), env = concat!("ETCDBR_", $env, "SIGNING_KEY_FILE"), value_name = "FILE")]
            pub signing_key_file: Option<PathBuf>,
        }

        impl $name {
            /// The values as typed, before env fallbacks and validation.
            #[must_use]
            pub fn raw(&self) -> StoreConfig {
                let mut c = StoreConfig::default();
                c.provider = None;
                c.container.clone_from(&self.store_container);
                c.endpoint_override.clone_from(&self.store_endpoint_override);
                c.prefix.clone_from(&self.store_prefix);
                c.max_parallel_chunk_uploads = self.max_parallel_chunk_uploads;
                c.min_chunk_size = self.min_chunk_size;
                c.temp_dir.clone_from(&self.snapstore_temp_directory);
                c.keys.recipients.clone_from(&self.encryption_recipients_file);
                c.keys.identities.clone_from(&self.encryption_identity_file);
                c.keys.signing.clone_from(&self.signing_key_file);
                c
            }

            /// The provider flag, parsed (`None` when empty).
            ///
            /// # Errors
            /// An unknown provider name.
            pub fn provider(&self) -> anyhow::Result<Option<Provider>> {
                if self.storage_provider.is_empty() {
                    return Ok(None);
                }
                self.storage_provider.parse::<Provider>().map(Some).map_err(|e| {
                    anyhow::anyhow!("--{}storage-provider: {e}", $prefix)
                })
            }
        }
    };
}

store_flags!(
    /// Where backups are stored.
    StoreFlags,
    "",
    "",
    "Snapshot store",
    "the snapshot store"
);

store_flags!(
    /// Where `copy` reads backups from. Empty provider, prefix and temp directory are taken from
    /// the destination store flags, as the original does.
    SourceStoreFlags,
    "source-",
    "SOURCE_",
    "Source snapshot store (copy)",
    "the source store"
);

store_flags!(
    /// The server's second store, kept in sync with the first.
    SecondaryStoreFlags,
    "secondary-",
    "SECONDARY_",
    "Secondary snapshot store",
    "the secondary store"
);

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

/// Validates `c`, applies the container env fallback for `env_prefix`, and sets the prefix.
fn finish(mut c: StoreConfig, env_prefix: &str) -> anyhow::Result<StoreConfig> {
    env_prefix.clone_into(&mut c.env_prefix);
    c.validate()?;
    c.resolve(|k| std::env::var(k).ok())?;
    Ok(c)
}

impl StoreFlags {
    /// The store configuration, validated, with the container env fallback applied.
    ///
    /// # Errors
    /// An unknown provider or invalid values, with the flag named.
    pub fn to_config(&self) -> anyhow::Result<StoreConfig> {
        let mut c = self.raw();
        c.provider = self.provider()?;
        finish(c, "")
    }

    /// The store's configuration for a command that needs one: without `--storage-provider`,
    /// the Local provider, as the original's `snapshot`, `restore` and `compact` default to.
    ///
    /// # Errors
    /// As [`StoreFlags::to_config`].
    pub fn to_required_config(&self) -> anyhow::Result<StoreConfig> {
        let mut c = self.to_config()?;
        c.provider.get_or_insert(snapstore::Provider::Local);
        Ok(c)
    }
}

impl SourceStoreFlags {
    /// The source store's configuration: its own flags, with an empty provider, prefix or
    /// temp directory inherited from `destination` (the original's `MergeWith`); the container
    /// falls back to `SOURCE_STORAGE_CONTAINER` and credentials use the `SOURCE_` variables.
    ///
    /// # Errors
    /// An unknown provider or invalid values, with the flag named.
    pub fn to_config(&self, destination: &StoreConfig) -> anyhow::Result<StoreConfig> {
        if self.encryption_recipients_file.is_some() {
            anyhow::bail!(
                "--source-encryption-recipients-file: copy only reads the source store; --encryption-recipients-file names the recipients of the copies"
            );
        }
        let mut c = self.raw();
        c.provider = self.provider()?.or(destination.provider);
        if c.prefix.is_empty() {
            c.prefix.clone_from(&destination.prefix);
        }
        if self.snapstore_temp_directory.as_os_str().is_empty() {
            c.temp_dir.clone_from(&destination.temp_dir);
        }
        // The source is only read: the destination's identities open it unless it has its own.
        c.keys.recipients = None;
        if c.keys.identities.is_none() {
            c.keys.identities.clone_from(&destination.keys.identities);
        }
        if c.keys.signing.is_none() {
            c.keys.signing.clone_from(&destination.keys.signing);
        }
        finish(c, "SOURCE_")
    }
}

impl SecondaryStoreFlags {
    /// The secondary store's configuration, or `None` when no secondary provider is given; its
    /// key files are the `primary`'s unless it has its own.
    ///
    /// # Errors
    /// An unknown provider or invalid values, with the flag named.
    pub fn to_config(&self, primary: &StoreConfig) -> anyhow::Result<Option<StoreConfig>> {
        let Some(provider) = self.provider()? else {
            return Ok(None);
        };
        let mut c = self.raw();
        c.provider = Some(provider);
        // The copies are encrypted as the primary's objects are, unless given keys of their own.
        if c.keys == snapstore::KeyFiles::default() {
            c.keys.clone_from(&primary.keys);
        }
        finish(c, "SECONDARY_").map(Some)
    }
}

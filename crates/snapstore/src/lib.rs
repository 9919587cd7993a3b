//! Object stores for etcd backups.
//!
//! - [`Snapshot`] parses and formats snapshot object names (`Full-…`, `Incr-…`, v1 and v2
//!   layouts, chunk objects) exactly as the original etcd-backup-restore does.
//! - [`list`] orders snapshots and picks the latest backup set (a full snapshot plus its deltas).
//! - [`ObjectStore`] is what a provider implements; [`SnapStore`] is the snapshot view over it.
//! - [`StoreConfig`] carries the `--storage-provider`/`--store-*` flags.
//!
//! ```no_run
//! # async fn demo() -> snapstore::Result<()> {
//! use snapstore::{Provider, SnapStore, StoreConfig};
//! let mut config = StoreConfig::default();
//! config.provider = Some(Provider::Local);
//! config.resolve(|k| std::env::var(k).ok())?;
//! let store = SnapStore::open(&config)?;
//! let set = store.latest_set().await?;
//! println!("latest full snapshot: {:?}", set.full.map(|s| s.snap_name));
//! # Ok(()) }
//! ```

mod config;
pub mod credentials;
pub mod crypt;
mod error;
pub mod inventory;
pub mod list;
pub mod manifest;
mod name;
pub mod provider;
pub mod select;
mod signed;
mod store;
pub mod upload;

pub use config::{DEFAULT_LOCAL_CONTAINER, MIN_CHUNK_SIZE, Provider, StoreConfig};
pub use crypt::{CryptError, KeyFileError, KeyFiles, Keyring};
pub use error::{ConfigError, Error, Result};
pub use list::{BackupSet, ChainError, ChainStep};
pub use name::{
    ENCRYPTED_SUFFIX, FINAL_SUFFIX, Kind, LAYOUT_V1, LAYOUT_V2, NameError, Snapshot, join_key,
};
pub use select::{Plan, Reach, SelectError, Selection, Stop, Target};
pub use signed::Audit;
pub use store::{Body, EXCLUDE_KEY, ObjectMeta, ObjectStore, SnapStore};

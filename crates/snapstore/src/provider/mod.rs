//! The storage providers.

mod failed;
mod local;

use std::sync::Arc;

pub use failed::FailedStore;
pub use local::LocalStore;

use crate::config::{Provider, StoreConfig};
use crate::error::{Error, Result};
use crate::store::ObjectStore;

/// Builds the object store for `provider`.
pub(crate) fn build(provider: Provider, config: &StoreConfig) -> Result<Arc<dyn ObjectStore>> {
    match provider {
        Provider::Local => Ok(Arc::new(LocalStore::for_container(&config.container)?)),
        Provider::Failed => Ok(Arc::new(FailedStore)),
        other => Err(Error::Unsupported(other.to_string())),
    }
}

//! The storage providers.

mod failed;
mod local;
pub mod opendal;
mod operator;
pub mod s3;

use std::sync::Arc;

pub use failed::FailedStore;
pub use local::LocalStore;

use crate::config::{Provider, StoreConfig};
use crate::credentials::Env;
use crate::error::{Error, Result};
use crate::store::ObjectStore;

/// Builds the object store for `provider`.
pub(crate) fn build(
    provider: Provider,
    config: &StoreConfig,
    env: &dyn Env,
) -> Result<Arc<dyn ObjectStore>> {
    match provider {
        Provider::Local => Ok(Arc::new(LocalStore::for_container(&config.container)?)),
        Provider::Failed => Ok(Arc::new(FailedStore)),
        Provider::S3 | Provider::Ecs | Provider::Ocs => s3::build(provider, config, env),
        other => Err(Error::Unsupported(other.to_string())),
    }
}

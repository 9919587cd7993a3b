//! The storage providers.

mod azblob;
mod failed;
mod gcs;
mod local;
pub mod opendal;
mod operator;
mod oss;
pub mod s3;
pub mod swift;

use std::sync::Arc;

pub use failed::FailedStore;
pub use local::LocalStore;

use crate::config::{Provider, StoreConfig};
use crate::credentials::Env;
use crate::error::Result;
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
        Provider::Abs => azblob::build(config, env),
        Provider::Gcs => gcs::build(config, env),
        Provider::Oss => oss::build(config, env),
        Provider::Swift => swift::build(config, env),
    }
}

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

/// The newest modification time of the provider's credential files (None: not file-based),
/// compared before operations to pick up rotated secrets.
pub(crate) fn credentials_stamp(
    provider: Provider,
    config: &StoreConfig,
    env: &dyn Env,
) -> Option<std::time::SystemTime> {
    use crate::credentials::Credentials;
    let var = match provider {
        Provider::S3 => "AWS_APPLICATION_CREDENTIALS",
        Provider::Abs => "AZURE_APPLICATION_CREDENTIALS",
        Provider::Oss => "ALICLOUD_APPLICATION_CREDENTIALS",
        Provider::Ocs => "OPENSHIFT_APPLICATION_CREDENTIALS",
        Provider::Swift => "OPENSTACK_APPLICATION_CREDENTIALS",
        Provider::Gcs => {
            let path = env.var(&format!(
                "{}GOOGLE_APPLICATION_CREDENTIALS",
                config.env_prefix
            ))?;
            return std::fs::metadata(path).and_then(|m| m.modified()).ok();
        }
        Provider::Ecs | Provider::Local | Provider::Failed => return None,
    };
    Credentials::locate(provider.as_str(), var, &config.env_prefix, env)
        .ok()
        .flatten()?
        .modified()
}

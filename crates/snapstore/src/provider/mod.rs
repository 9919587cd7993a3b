//! The storage providers.

pub mod azblob;
mod direct;
mod failed;
pub mod gcs;
mod local;
pub mod opendal;
mod operator;
pub mod oss;
pub mod s3;
mod s3_api;
pub mod swift;
pub mod web_identity;

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

/// The variable naming the provider's credentials (file, directory, or with `_JSON` a JSON
/// file), as each provider declares it; `None` for providers configured otherwise.
fn credentials_var(provider: Provider) -> Option<&'static str> {
    match provider {
        Provider::S3 => Some(s3::CREDENTIALS_VAR),
        Provider::Ocs => Some(s3::OCS_CREDENTIALS_VAR),
        Provider::Abs => Some(azblob::CREDENTIALS_VAR),
        Provider::Oss => Some(oss::CREDENTIALS_VAR),
        Provider::Swift => Some(swift::CREDENTIALS_VAR),
        Provider::Gcs => Some(gcs::CREDENTIALS_VAR),
        Provider::Ecs | Provider::Local | Provider::Failed => None,
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
    let var = credentials_var(provider)?;
    if provider == Provider::Gcs {
        // GCS names a single service account file.
        let path = env.var(&format!("{}{var}", config.env_prefix))?;
        return std::fs::metadata(path).and_then(|m| m.modified()).ok();
    }
    Credentials::locate(provider.as_str(), var, &config.env_prefix, env)
        .ok()
        .flatten()?
        .modified()
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::collections::BTreeMap;

    use crate::config::StoreConfig;
    use crate::credentials::Env;
    use crate::error::Result;

    /// A JSON credentials file in a temp dir, and the environment naming it (`<var>_JSON`).
    pub fn json_env(var: &str, json: &str) -> (tempfile::TempDir, BTreeMap<String, String>) {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("credentials.json");
        std::fs::write(&f, json).unwrap();
        let env = [(format!("{var}_JSON"), f.display().to_string())].into();
        (dir, env)
    }

    /// The error of `load` on credentials `json` (the test fails when it loads).
    pub fn load_error(
        var: &str,
        json: &str,
        load: impl Fn(&StoreConfig, &dyn Env) -> Result<()>,
    ) -> String {
        let (_dir, env) = json_env(var, json);
        load(&StoreConfig::default(), &env)
            .expect_err("loaded")
            .to_string()
    }
}

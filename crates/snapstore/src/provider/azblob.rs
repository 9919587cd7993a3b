//! Azure Blob Storage (`ABS`): `AZURE_APPLICATION_CREDENTIALS[_JSON]` with `storageAccount`,
//! `storageKey` and optionally `domain` (deprecated: `--store-endpoint-override` wins). The
//! account URL is `https://<storageAccount>.<domain or blob.core.windows.net>`, or the override
//! (Azurite: `http://127.0.0.1:10000/devstoreaccount1`).

use std::sync::Arc;

use opendal::Operator;
use opendal::services::Azblob;

use super::opendal::OpendalStore;
use super::operator::{HttpOptions, finish};
use crate::config::{Provider, StoreConfig};
use crate::credentials::{Credentials, Env};
use crate::error::{Error, Result};
use crate::store::ObjectStore;

/// The default Azure Blob domain.
pub const GLOBAL_DOMAIN: &str = "blob.core.windows.net";

/// Builds the ABS store.
pub(crate) fn build(config: &StoreConfig, env: &dyn Env) -> Result<Arc<dyn ObjectStore>> {
    let c = Credentials::locate(
        "ABS",
        "AZURE_APPLICATION_CREDENTIALS",
        &config.env_prefix,
        env,
    )?
    .ok_or_else(|| Error::Credentials {
        provider: "ABS",
        origin: format!("{}AZURE_APPLICATION_CREDENTIALS[_JSON]", config.env_prefix),
        problem: "the variable is not set".into(),
    })?;
    let account = c.require("storageAccount")?;
    let key = c.require("storageKey")?;
    let endpoint = if config.endpoint_override.is_empty() {
        format!(
            "https://{account}.{}",
            c.get("domain").unwrap_or(GLOBAL_DOMAIN)
        )
    } else {
        config.endpoint_override.trim_end_matches('/').to_owned()
    };
    tracing::info!(
        "ABS snapstore: container {:?} at {endpoint}, credentials from {}",
        config.container,
        c.origin()
    );
    let b = Azblob::default()
        .container(&config.container)
        .root("/")
        .endpoint(&endpoint)
        .account_name(account)
        .account_key(key);
    let op = Operator::new(b).map_err(|e| Error::Config(format!("ABS: {e}")))?;
    let op = finish(op, &HttpOptions::default(), "ABS")?;
    Ok(Arc::new(OpendalStore::new(
        op,
        Provider::Abs,
        config.min_chunk_size,
        config.max_parallel_chunk_uploads,
    )))
}

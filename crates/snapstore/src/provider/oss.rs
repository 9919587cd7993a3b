//! Alibaba Cloud OSS: `ALICLOUD_APPLICATION_CREDENTIALS[_JSON]` with `storageEndpoint`,
//! `accessKeyID` and `accessKeySecret` (`--store-endpoint-override` wins over the endpoint).

use std::sync::Arc;

use opendal::Operator;
use opendal::services::Oss;

use super::opendal::OpendalStore;
use super::operator::{HttpOptions, finish};
use crate::config::{Provider, StoreConfig};
use crate::credentials::{Credentials, Env};
use crate::error::{Error, Result};
use crate::store::ObjectStore;

/// Builds the OSS store.
pub(crate) fn build(config: &StoreConfig, env: &dyn Env) -> Result<Arc<dyn ObjectStore>> {
    let c = Credentials::locate(
        "OSS",
        "ALICLOUD_APPLICATION_CREDENTIALS",
        &config.env_prefix,
        env,
    )?
    .ok_or_else(|| Error::Credentials {
        provider: "OSS",
        origin: format!(
            "{}ALICLOUD_APPLICATION_CREDENTIALS[_JSON]",
            config.env_prefix
        ),
        problem: "the variable is not set".into(),
    })?;
    let endpoint = if config.endpoint_override.is_empty() {
        c.require("storageEndpoint")?.to_owned()
    } else {
        config.endpoint_override.clone()
    };
    let endpoint = if endpoint.contains("://") {
        endpoint
    } else {
        format!("https://{endpoint}")
    };
    let mut b = Oss::default()
        .bucket(&config.container)
        .root("/")
        .endpoint(&endpoint)
        .access_key_id(c.require("accessKeyID")?)
        .access_key_secret(c.require("accessKeySecret")?);
    // Bucket-in-the-host addressing cannot work for a bare IP or localhost endpoint.
    let host = endpoint
        .split("://")
        .nth(1)
        .unwrap_or_default()
        .split(['/', ':'])
        .next()
        .unwrap_or_default();
    if host == "localhost" || host.parse::<std::net::IpAddr>().is_ok() {
        b = b.addressing_style("path");
    }
    tracing::info!(
        "OSS snapstore: bucket {:?} at {endpoint}, credentials from {}",
        config.container,
        c.origin()
    );
    let op = Operator::new(b).map_err(|e| Error::Config(format!("OSS: {e}")))?;
    let op = finish(op, &HttpOptions::default(), "OSS")?;
    Ok(Arc::new(OpendalStore::new(
        op,
        Provider::Oss,
        config.min_chunk_size,
        config.max_parallel_chunk_uploads,
    )))
}

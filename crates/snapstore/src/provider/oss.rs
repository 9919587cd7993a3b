//! Alibaba Cloud OSS: `ALICLOUD_APPLICATION_CREDENTIALS[_JSON]` with `storageEndpoint`,
//! `accessKeyID` and `accessKeySecret` (`--store-endpoint-override` wins over the endpoint).

use std::fmt;
use std::sync::Arc;

use opendal::Operator;
use opendal::services::Oss;

use super::opendal::OpendalStore;
use super::operator::{HttpOptions, operator, with_scheme};
use crate::config::{Provider, StoreConfig};
use crate::credentials::{Credentials, Env};
use crate::error::Result;
use crate::store::ObjectStore;

/// The variable naming the credentials file or directory (`…_JSON` for a JSON file).
pub(crate) const CREDENTIALS_VAR: &str = "ALICLOUD_APPLICATION_CREDENTIALS";

/// Everything needed to reach an OSS bucket.
#[derive(Clone)]
pub struct OssConfig {
    /// The bucket.
    pub bucket: String,
    /// The endpoint URL.
    pub endpoint: String,
    /// The access key id.
    pub access_key_id: String,
    /// The access key secret.
    pub access_key_secret: String,
    /// Where the credentials were read, for messages.
    pub origin: String,
}

impl fmt::Debug for OssConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OssConfig")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl OssConfig {
    /// Reads the original's OSS credentials.
    ///
    /// # Errors
    /// [`Error::Credentials`] naming the file and field.
    pub fn load(config: &StoreConfig, env: &dyn Env) -> Result<OssConfig> {
        let c = Credentials::required("OSS", CREDENTIALS_VAR, &config.env_prefix, env)?;
        let endpoint = if config.endpoint_override.is_empty() {
            c.require("storageEndpoint")?.to_owned()
        } else {
            config.endpoint_override.clone()
        };
        Ok(OssConfig {
            bucket: config.container.clone(),
            endpoint: with_scheme(&endpoint, false),
            access_key_id: c.require("accessKeyID")?.to_owned(),
            access_key_secret: c.require("accessKeySecret")?.to_owned(),
            origin: c.origin().to_owned(),
        })
    }

    /// Whether requests must name the bucket in the path: bucket-in-the-host addressing cannot
    /// work for a bare IP or localhost endpoint.
    fn path_style(&self) -> bool {
        let host = self
            .endpoint
            .split("://")
            .nth(1)
            .unwrap_or_default()
            .split(['/', ':'])
            .next()
            .unwrap_or_default();
        host == "localhost" || host.parse::<std::net::IpAddr>().is_ok()
    }

    /// An operator for the bucket.
    ///
    /// # Errors
    /// [`Error::Config`] for unusable settings.
    pub fn operator(&self) -> Result<Operator> {
        let mut b = Oss::default()
            .bucket(&self.bucket)
            .root("/")
            .endpoint(&self.endpoint)
            .access_key_id(&self.access_key_id)
            .access_key_secret(&self.access_key_secret);
        if self.path_style() {
            b = b.addressing_style("path");
        }
        operator(b, &HttpOptions::default(), "OSS")
    }
}

/// Builds the OSS store.
pub(crate) fn build(config: &StoreConfig, env: &dyn Env) -> Result<Arc<dyn ObjectStore>> {
    let c = OssConfig::load(config, env)?;
    tracing::info!(
        "OSS snapstore: bucket {:?} at {}, credentials from {}",
        c.bucket,
        c.endpoint,
        c.origin
    );
    Ok(Arc::new(OpendalStore::for_config(
        c.operator()?,
        Provider::Oss,
        config,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::test_support::{json_env, load_error};

    #[test]
    fn loads_every_field_and_names_what_is_missing() {
        let mut sc = StoreConfig {
            container: "b".into(),
            ..StoreConfig::default()
        };
        let (_dir, env) = json_env(
            CREDENTIALS_VAR,
            r#"{"storageEndpoint":"oss-eu-central-1.aliyuncs.com","accessKeyID":"AK","accessKeySecret":"S3cretKey"}"#,
        );
        let c = OssConfig::load(&sc, &env).unwrap();
        assert_eq!(c.endpoint, "https://oss-eu-central-1.aliyuncs.com");
        assert_eq!(c.access_key_id, "AK");
        assert_eq!(c.access_key_secret, "S3cretKey");
        assert!(!c.path_style());
        assert!(!format!("{c:?}").contains("S3cretKey"));
        sc.endpoint_override = "http://127.0.0.1:5000".into();
        let c = OssConfig::load(&sc, &env).unwrap();
        assert_eq!(c.endpoint, "http://127.0.0.1:5000");
        assert!(c.path_style());
        sc.endpoint_override.clear();
        for (json, needle) in [
            (
                r#"{"accessKeyID":"a","accessKeySecret":"s"}"#,
                "\"storageEndpoint\"",
            ),
            (
                r#"{"storageEndpoint":"e","accessKeySecret":"s"}"#,
                "\"accessKeyID\"",
            ),
            (
                r#"{"storageEndpoint":"e","accessKeyID":"a"}"#,
                "\"accessKeySecret\"",
            ),
            (r#"{"storageEndpoint":5}"#, "is a number"),
        ] {
            let e = load_error(CREDENTIALS_VAR, json, |c, e| {
                OssConfig::load(c, e).map(|_| ())
            });
            assert!(e.contains(needle) && e.contains("OSS"), "{json}: {e}");
        }
    }
}

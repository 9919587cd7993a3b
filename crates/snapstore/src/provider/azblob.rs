//! Azure Blob Storage (`ABS`): `AZURE_APPLICATION_CREDENTIALS[_JSON]` with `storageAccount`,
//! `storageKey` and optionally `domain` (deprecated: `--store-endpoint-override` wins). The
//! account URL is `https://<storageAccount>.<domain or blob.core.windows.net>`, or the override
//! (Azurite: `http://127.0.0.1:10000/devstoreaccount1`).

use std::fmt;
use std::sync::Arc;

use opendal::Operator;
use opendal::services::Azblob;

use super::opendal::OpendalStore;
use super::operator::{HttpOptions, operator};
use crate::config::{Provider, StoreConfig};
use crate::credentials::{Credentials, Env};
use crate::error::Result;
use crate::store::ObjectStore;

/// The variable naming the credentials file or directory (`…_JSON` for a JSON file).
pub(crate) const CREDENTIALS_VAR: &str = "AZURE_APPLICATION_CREDENTIALS";

/// The default Azure Blob domain.
pub const GLOBAL_DOMAIN: &str = "blob.core.windows.net";

/// Everything needed to reach an ABS container.
#[derive(Clone)]
pub struct AbsConfig {
    /// The container.
    pub container: String,
    /// The storage account.
    pub account: String,
    /// The account key (secret).
    pub key: String,
    /// The account URL.
    pub endpoint: String,
    /// Where the credentials were read, for messages.
    pub origin: String,
}

impl fmt::Debug for AbsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AbsConfig")
            .field("container", &self.container)
            .field("account", &self.account)
            .field("endpoint", &self.endpoint)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl AbsConfig {
    /// Reads the original's ABS credentials.
    ///
    /// # Errors
    /// [`Error::Credentials`] naming the file and field.
    pub fn load(config: &StoreConfig, env: &dyn Env) -> Result<AbsConfig> {
        let c = Credentials::required("ABS", CREDENTIALS_VAR, &config.env_prefix, env)?;
        let account = c.require("storageAccount")?.to_owned();
        let endpoint = if config.endpoint_override.is_empty() {
            format!(
                "https://{account}.{}",
                c.get("domain").unwrap_or(GLOBAL_DOMAIN)
            )
        } else {
            config.endpoint_override.trim_end_matches('/').to_owned()
        };
        Ok(AbsConfig {
            container: config.container.clone(),
            key: c.require("storageKey")?.to_owned(),
            account,
            endpoint,
            origin: c.origin().to_owned(),
        })
    }

    /// An operator for the container.
    ///
    /// # Errors
    /// [`Error::Config`] for unusable settings.
    pub fn operator(&self) -> Result<Operator> {
        let b = Azblob::default()
            .container(&self.container)
            .root("/")
            .endpoint(&self.endpoint)
            .account_name(&self.account)
            .account_key(&self.key);
        operator(b, &HttpOptions::default(), "ABS")
    }
}

/// Builds the ABS store.
pub(crate) fn build(config: &StoreConfig, env: &dyn Env) -> Result<Arc<dyn ObjectStore>> {
    let c = AbsConfig::load(config, env)?;
    tracing::info!(
        "ABS snapstore: container {:?} at {}, credentials from {}",
        c.container,
        c.endpoint,
        c.origin
    );
    Ok(Arc::new(OpendalStore::for_config(
        c.operator()?,
        Provider::Abs,
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
            container: "c".into(),
            ..StoreConfig::default()
        };
        let (_dir, env) = json_env(
            CREDENTIALS_VAR,
            r#"{"storageAccount":"acct","storageKey":"S3cretKey","domain":"blob.core.chinacloudapi.cn"}"#,
        );
        let c = AbsConfig::load(&sc, &env).unwrap();
        assert_eq!(c.endpoint, "https://acct.blob.core.chinacloudapi.cn");
        assert_eq!((c.account.as_str(), c.key.as_str()), ("acct", "S3cretKey"));
        assert!(!format!("{c:?}").contains("S3cretKey"));
        // The override wins over the domain.
        sc.endpoint_override = "http://127.0.0.1:10000/devstoreaccount1/".into();
        assert_eq!(
            AbsConfig::load(&sc, &env).unwrap().endpoint,
            "http://127.0.0.1:10000/devstoreaccount1"
        );
        for (json, needle) in [
            (r#"{"storageKey":"k"}"#, "\"storageAccount\""),
            (r#"{"storageAccount":"a"}"#, "\"storageKey\""),
            ("not json", "not valid JSON"),
        ] {
            let e = load_error(CREDENTIALS_VAR, json, |c, e| {
                AbsConfig::load(c, e).map(|_| ())
            });
            assert!(e.contains(needle) && e.contains("ABS"), "{json}: {e}");
        }
        let e = AbsConfig::load(&sc, &std::collections::BTreeMap::new()).unwrap_err();
        assert!(
            e.to_string()
                .contains("AZURE_APPLICATION_CREDENTIALS[_JSON]"),
            "{e}"
        );
    }
}

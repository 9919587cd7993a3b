//! Google Cloud Storage: the service account file named by `GOOGLE_APPLICATION_CREDENTIALS`
//! (with the store's env prefix), else `~/.gcp/service-account-file.json`. An `http://`
//! `--store-endpoint-override` (or the deprecated `~/.gcp/storageAPIEndpoint` file) means an
//! emulator: no authentication. Uploads use GCS's resumable protocol, which real GCS and the
//! emulators both support (the emulators lack the XML multipart API).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use opendal::Operator;
use opendal::services::Gcs;

use super::opendal::OpendalStore;
use super::operator::{HttpOptions, operator};
use crate::config::{Provider, StoreConfig};
use crate::credentials::Env;
use crate::error::{Error, Result};
use crate::store::ObjectStore;

fn cred_err(origin: &str, problem: impl Into<String>) -> Error {
    Error::Credentials {
        provider: "GCS",
        origin: origin.to_owned(),
        problem: problem.into(),
    }
}

/// Checks a credentials file the way the original does and returns its bytes.
fn read_credentials(path: &PathBuf) -> Result<Vec<u8>> {
    let origin = path.display().to_string();
    let bytes =
        std::fs::read(path).map_err(|e| cred_err(&origin, format!("cannot read the file: {e}")))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| cred_err(&origin, format!("not valid JSON: {e}")))?;
    match v.get("type").and_then(|t| t.as_str()) {
        Some("service_account") => {
            let project = v
                .get("project_id")
                .and_then(|p| p.as_str())
                .unwrap_or_default();
            if project.is_empty() {
                return Err(cred_err(&origin, "missing field \"project_id\""));
            }
            if v.get("private_key")
                .and_then(|p| p.as_str())
                .unwrap_or_default()
                .is_empty()
            {
                return Err(cred_err(&origin, "missing field \"private_key\""));
            }
        }
        Some("external_account") => {
            let token_url = v
                .get("token_url")
                .and_then(|p| p.as_str())
                .unwrap_or_default();
            if token_url != "https://sts.googleapis.com/v1/token" {
                return Err(cred_err(
                    &origin,
                    "external_account credentials must use token_url https://sts.googleapis.com/v1/token",
                ));
            }
        }
        Some(other) => {
            return Err(cred_err(
                &origin,
                format!(
                    "unsupported credential type {other:?}; expected service_account or external_account"
                ),
            ));
        }
        None => return Err(cred_err(&origin, "missing field \"type\"")),
    }
    Ok(bytes)
}

/// The variable naming the service account file (with the store's env prefix).
pub(crate) const CREDENTIALS_VAR: &str = "GOOGLE_APPLICATION_CREDENTIALS";

/// Everything needed to reach a GCS bucket.
#[derive(Clone)]
pub struct GcsConfig {
    /// The bucket.
    pub bucket: String,
    /// The endpoint (empty: Google's).
    pub endpoint: String,
    /// The service account or external account file's content (secret); `None` for an
    /// emulator, which is not authenticated.
    pub credential: Option<Vec<u8>>,
    /// Where the credentials were read, for messages.
    pub origin: String,
}

impl fmt::Debug for GcsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcsConfig")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl GcsConfig {
    /// Reads the original's GCS settings: the endpoint override (or the deprecated
    /// `~/.gcp/storageAPIEndpoint`), and, unless that is an `http://` emulator, the credentials
    /// file.
    ///
    /// # Errors
    /// [`Error::Credentials`] naming the file and problem.
    pub fn load(config: &StoreConfig, env: &dyn Env) -> Result<GcsConfig> {
        let home = env.var("HOME").map(PathBuf::from).unwrap_or_default();
        let mut endpoint = config.endpoint_override.clone();
        if endpoint.is_empty()
            && let Ok(e) = std::fs::read_to_string(home.join(".gcp/storageAPIEndpoint"))
        {
            endpoint = e.trim().to_owned();
        }
        if endpoint.starts_with("http://") {
            return Ok(GcsConfig {
                bucket: config.container.clone(),
                origin: format!("none (emulator at {endpoint})"),
                endpoint,
                credential: None,
            });
        }
        let var = format!("{}{CREDENTIALS_VAR}", config.env_prefix);
        let path = env.var(&var).filter(|v| !v.is_empty()).map_or_else(
            || home.join(".gcp/service-account-file.json"),
            PathBuf::from,
        );
        Ok(GcsConfig {
            bucket: config.container.clone(),
            endpoint,
            credential: Some(read_credentials(&path)?),
            origin: path.display().to_string(),
        })
    }

    /// An operator for the bucket.
    ///
    /// # Errors
    /// [`Error::Config`] for unusable settings.
    pub fn operator(&self) -> Result<Operator> {
        let mut b = Gcs::default()
            .bucket(&self.bucket)
            .root("/")
            .disable_config_load()
            .disable_vm_metadata();
        if !self.endpoint.is_empty() {
            b = b.endpoint(&self.endpoint);
        }
        b = match &self.credential {
            Some(bytes) => b.credential(&base64::engine::general_purpose::STANDARD.encode(bytes)),
            None => b.skip_signature(),
        };
        operator(b, &HttpOptions::default(), "GCS")
    }
}

/// Builds the GCS store.
pub(crate) fn build(config: &StoreConfig, env: &dyn Env) -> Result<Arc<dyn ObjectStore>> {
    let c = GcsConfig::load(config, env)?;
    tracing::info!(
        "GCS snapstore: bucket {:?}, credentials: {}",
        c.bucket,
        c.origin
    );
    Ok(Arc::new(
        OpendalStore::for_config(c.operator()?, Provider::Gcs, config).with_conditional_writes(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_files_are_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let case = |json: &str| {
            let p = tmp.path().join("sa.json");
            std::fs::write(&p, json).unwrap();
            read_credentials(&p).map(|_| ()).map_err(|e| e.to_string())
        };
        assert!(case(r#"{"type":"service_account","project_id":"p","private_key":"k"}"#).is_ok());
        assert!(
            case(r#"{"type":"service_account","private_key":"k"}"#)
                .unwrap_err()
                .contains("project_id")
        );
        assert!(
            case(r#"{"type":"authorized_user"}"#)
                .unwrap_err()
                .contains("unsupported credential type")
        );
        assert!(
            case(r#"{"type":"external_account","token_url":"https://evil"}"#)
                .unwrap_err()
                .contains("token_url")
        );
        assert!(case("nope").unwrap_err().contains("not valid JSON"));
        assert!(
            case(r#"{"project_id":"p"}"#)
                .unwrap_err()
                .contains("\"type\"")
        );
        assert!(
            read_credentials(&tmp.path().join("missing.json"))
                .unwrap_err()
                .to_string()
                .contains("cannot read")
        );
    }

    #[test]
    fn an_http_endpoint_is_an_emulator_and_anything_else_needs_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let mut sc = StoreConfig {
            container: "b".into(),
            ..StoreConfig::default()
        };
        let home: std::collections::BTreeMap<String, String> =
            [("HOME".to_owned(), tmp.path().display().to_string())].into();
        sc.endpoint_override = "http://127.0.0.1:4443".into();
        let c = GcsConfig::load(&sc, &home).unwrap();
        assert!(c.credential.is_none() && c.origin.contains("emulator"));
        // The deprecated endpoint file counts as an override.
        sc.endpoint_override.clear();
        std::fs::create_dir_all(tmp.path().join(".gcp")).unwrap();
        std::fs::write(
            tmp.path().join(".gcp/storageAPIEndpoint"),
            "http://127.0.0.1:4443\n",
        )
        .unwrap();
        assert!(GcsConfig::load(&sc, &home).unwrap().credential.is_none());
        std::fs::remove_file(tmp.path().join(".gcp/storageAPIEndpoint")).unwrap();
        // Otherwise ~/.gcp/service-account-file.json, or the variable's file.
        let e = GcsConfig::load(&sc, &home).unwrap_err().to_string();
        assert!(
            e.contains("service-account-file.json") && e.contains("cannot read"),
            "{e}"
        );
        let sa = tmp.path().join("sa.json");
        std::fs::write(
            &sa,
            r#"{"type":"service_account","project_id":"p","private_key":"S3cretKey"}"#,
        )
        .unwrap();
        let mut env = home.clone();
        env.insert(CREDENTIALS_VAR.to_owned(), sa.display().to_string());
        let c = GcsConfig::load(&sc, &env).unwrap();
        assert!(c.credential.is_some() && c.origin.ends_with("sa.json"));
        assert!(!format!("{c:?}").contains("S3cretKey"));
    }
}

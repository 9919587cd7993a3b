//! Google Cloud Storage: the service account file named by `GOOGLE_APPLICATION_CREDENTIALS`
//! (with the store's env prefix), else `~/.gcp/service-account-file.json`. An `http://`
//! `--store-endpoint-override` (or the deprecated `~/.gcp/storageAPIEndpoint` file) means an
//! emulator: no authentication. Uploads use GCS's resumable protocol, which real GCS and the
//! emulators both support (the emulators lack the XML multipart API).

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use opendal::Operator;
use opendal::services::Gcs;

use super::opendal::OpendalStore;
use super::operator::{HttpOptions, finish};
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

/// Builds the GCS store.
pub(crate) fn build(config: &StoreConfig, env: &dyn Env) -> Result<Arc<dyn ObjectStore>> {
    let home = env.var("HOME").map(PathBuf::from).unwrap_or_default();
    let mut endpoint = config.endpoint_override.clone();
    if endpoint.is_empty()
        && let Ok(e) = std::fs::read_to_string(home.join(".gcp/storageAPIEndpoint"))
    {
        endpoint = e.trim().to_owned();
    }
    let emulator = endpoint.starts_with("http://");
    let mut b = Gcs::default()
        .bucket(&config.container)
        .root("/")
        .disable_config_load()
        .disable_vm_metadata();
    if !endpoint.is_empty() {
        b = b.endpoint(&endpoint);
    }
    let origin;
    if emulator {
        origin = format!("none (emulator at {endpoint})");
        b = b.skip_signature();
    } else {
        let var = format!("{}GOOGLE_APPLICATION_CREDENTIALS", config.env_prefix);
        let path = env.var(&var).filter(|v| !v.is_empty()).map_or_else(
            || home.join(".gcp/service-account-file.json"),
            PathBuf::from,
        );
        let bytes = read_credentials(&path)?;
        origin = path.display().to_string();
        b = b.credential(&base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    tracing::info!(
        "GCS snapstore: bucket {:?}, credentials: {origin}",
        config.container
    );
    let op = Operator::new(b).map_err(|e| Error::Config(format!("GCS: {e}")))?;
    let op = finish(op, &HttpOptions::default(), "GCS")?;
    Ok(Arc::new(
        OpendalStore::new(
            op,
            Provider::Gcs,
            config.min_chunk_size,
            config.max_parallel_chunk_uploads,
        )
        .with_conditional_writes(),
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
            read_credentials(&tmp.path().join("missing.json"))
                .unwrap_err()
                .to_string()
                .contains("cannot read")
        );
    }
}

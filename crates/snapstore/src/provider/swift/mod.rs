//! OpenStack Swift, with the login OpenDAL does not do: OpenDAL's Swift service needs a storage
//! URL and a token, so this provider obtains them (Keystone v3 with a password or an
//! application credential, or TempAuth for `/auth/v1.0` URLs), rebuilds the operator before the
//! token expires, and deletes large objects with their segments (OpenDAL's delete leaves an SLO's
//! segments behind; the original's DLO chunks live under `<name>/`).
//!
//! Credentials: `OPENSTACK_APPLICATION_CREDENTIALS[_JSON]` with `authURL`, `domainName`,
//! `tenantName`, `region`, and `username` + `password` or `applicationCredentialID` (or
//! `applicationCredentialName`) + `applicationCredentialSecret`; without it, the `OS_*`
//! environment (`OS_AUTH_URL`, `OS_USERNAME`, `OS_PASSWORD`, `OS_PROJECT_NAME`/`OS_TENANT_NAME`,
//! `OS_USER_DOMAIN_NAME`/`OS_DOMAIN_NAME`, `OS_REGION_NAME`, `OS_APPLICATION_CREDENTIAL_*`).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use opendal::services::Swift;

mod auth;

pub(crate) use auth::CREDENTIALS_VAR;
pub use auth::{SwiftAuth, SwiftConfig, storage_url_from_catalog};

use super::opendal::OpendalStore;
use super::operator::{HttpOptions, operator};
use crate::config::{Provider, StoreConfig};
use crate::credentials::Env;
use crate::error::{ConfigError, Error, Result};
use crate::store::{Body, ObjectMeta, ObjectStore};

struct Session {
    storage_url: String,
    token: String,
    renew_at: Instant,
    store: OpendalStore,
}

/// The Swift store: logs in, renews the token, deletes large objects with their segments.
pub struct SwiftStore {
    cfg: SwiftConfig,
    container: String,
    min_chunk: u64,
    parallel: usize,
    http: reqwest::Client,
    session: tokio::sync::Mutex<Option<Arc<Session>>>,
}

impl fmt::Debug for SwiftStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SwiftStore")
            .field("auth_url", &self.cfg.auth_url)
            .field("container", &self.container)
            .finish_non_exhaustive()
    }
}

fn login_err(cfg: &SwiftConfig, problem: impl Into<String>) -> Error {
    Error::Credentials {
        provider: "Swift",
        origin: cfg.origin.clone(),
        problem: problem.into(),
    }
}

impl SwiftStore {
    async fn login(&self) -> Result<Arc<Session>> {
        let cfg = &self.cfg;
        let (storage_url, token, lifetime) = match &cfg.auth {
            SwiftAuth::TempAuth { user, key } => {
                let resp = self
                    .http
                    .get(&cfg.auth_url)
                    .header("X-Auth-User", user)
                    .header("X-Auth-Key", key)
                    .send()
                    .await
                    .map_err(|e| login_err(cfg, format!("cannot reach {}: {e}", cfg.auth_url)))?;
                if !resp.status().is_success() {
                    return Err(login_err(
                        cfg,
                        format!(
                            "TempAuth login at {} refused: HTTP {}",
                            cfg.auth_url,
                            resp.status()
                        ),
                    ));
                }
                let h = |n: &str| {
                    resp.headers()
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                let storage = h("x-storage-url")
                    .ok_or_else(|| login_err(cfg, "TempAuth response lacks X-Storage-Url"))?;
                let token = h("x-auth-token")
                    .ok_or_else(|| login_err(cfg, "TempAuth response lacks X-Auth-Token"))?;
                let ttl = h("x-auth-token-expires")
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(3600);
                (storage, token, Duration::from_secs(ttl))
            }
            _ => {
                let url = cfg.tokens_url();
                let resp = self
                    .http
                    .post(&url)
                    .json(&cfg.keystone_request())
                    .send()
                    .await
                    .map_err(|e| login_err(cfg, format!("cannot reach Keystone at {url}: {e}")))?;
                if !resp.status().is_success() {
                    return Err(login_err(
                        cfg,
                        format!(
                            "Keystone at {url} refused the credentials: HTTP {}",
                            resp.status()
                        ),
                    ));
                }
                let token = resp
                    .headers()
                    .get("x-subject-token")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
                    .ok_or_else(|| login_err(cfg, "Keystone response lacks X-Subject-Token"))?;
                let body: serde_json::Value = resp
                    .json()
                    .await
                    .map_err(|e| login_err(cfg, format!("Keystone response is not JSON: {e}")))?;
                let storage = storage_url_from_catalog(&body, &cfg.region).ok_or_else(|| {
                    login_err(
                        cfg,
                        format!(
                            "no public object-store endpoint in region {:?} in the catalog",
                            cfg.region
                        ),
                    )
                })?;
                let expires = body
                    .pointer("/token/expires_at")
                    .and_then(|v| v.as_str())
                    .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                    .and_then(|t| {
                        (t.with_timezone(&chrono::Utc) - chrono::Utc::now())
                            .to_std()
                            .ok()
                    })
                    .unwrap_or(Duration::from_secs(3600));
                (storage, token, expires)
            }
        };
        let b = Swift::default()
            .endpoint(&storage_url)
            .container(&self.container)
            .root("/")
            .token(&token);
        let op = operator(b, &HttpOptions::default(), "Swift")?;
        let store = OpendalStore::new(op, Provider::Swift, self.min_chunk, self.parallel);
        // Renew well before expiry (a long upload must not run out of token).
        let renew_at = Instant::now()
            + lifetime
                .saturating_sub(Duration::from_secs(300))
                .max(lifetime / 2);
        tracing::info!(
            "Swift: logged in at {}; storage URL {storage_url}",
            cfg.auth_url
        );
        Ok(Arc::new(Session {
            storage_url,
            token,
            renew_at,
            store,
        }))
    }

    async fn session(&self) -> Result<Arc<Session>> {
        let mut guard = self.session.lock().await;
        if let Some(s) = guard.as_ref().filter(|s| Instant::now() < s.renew_at) {
            return Ok(Arc::clone(s));
        }
        let s = self.login().await?;
        *guard = Some(Arc::clone(&s));
        Ok(s)
    }

    fn object_url(&self, s: &Session, key: &str) -> String {
        let encoded: Vec<String> = key.split('/').map(urlencode).collect();
        format!(
            "{}/{}/{}",
            s.storage_url.trim_end_matches('/'),
            self.container,
            encoded.join("/")
        )
    }
}

fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[async_trait]
impl ObjectStore for SwiftStore {
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.session().await?.store.list(prefix).await
    }

    async fn get(&self, key: &str) -> Result<Body> {
        self.session().await?.store.get(key).await
    }

    async fn put(&self, key: &str, body: Body, size_hint: Option<u64>) -> Result<u64> {
        self.session().await?.store.put(key, body, size_hint).await
    }

    async fn stat(&self, key: &str) -> Result<ObjectMeta> {
        self.session().await?.store.stat(key).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let s = self.session().await?;
        let url = self.object_url(&s, key);
        let io = |e: reqwest::Error| Error::Io {
            op: "delete",
            key: key.to_owned(),
            source: std::io::Error::other(e),
        };
        let head = self
            .http
            .head(&url)
            .header("X-Auth-Token", &s.token)
            .send()
            .await
            .map_err(io)?;
        if head.status().as_u16() == 404 {
            return Err(Error::NotFound {
                key: key.to_owned(),
            });
        }
        let is_slo = head
            .headers()
            .get("x-static-large-object")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let dlo = head
            .headers()
            .get("x-object-manifest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let del_url = if is_slo {
            format!("{url}?multipart-manifest=delete")
        } else {
            url
        };
        let resp = self
            .http
            .delete(&del_url)
            .header("X-Auth-Token", &s.token)
            .send()
            .await
            .map_err(io)?;
        if !resp.status().is_success() && resp.status().as_u16() != 404 {
            return Err(Error::Io {
                op: "delete",
                key: key.to_owned(),
                source: std::io::Error::other(format!("Swift answered HTTP {}", resp.status())),
            });
        }
        // A DLO manifest (as the original writes) names its segments' prefix: delete them too.
        if let Some(manifest) = dlo {
            let prefix = manifest
                .split_once('/')
                .map_or(manifest.as_str(), |(_, p)| p)
                .to_owned();
            for seg in s.store.list(prefix.trim_end_matches('/')).await? {
                s.store.delete(&seg.key).await?;
            }
        }
        Ok(())
    }
}

/// Builds the Swift store (the login happens at the first request).
pub(crate) fn build(config: &StoreConfig, env: &dyn Env) -> Result<Arc<dyn ObjectStore>> {
    let cfg = SwiftConfig::load(config, env)?;
    let auth_url = if config.endpoint_override.is_empty() {
        cfg.auth_url.clone()
    } else {
        config.endpoint_override.clone()
    };
    tracing::info!(
        "Swift snapstore: container {:?}, auth {auth_url}, credentials from {}",
        config.container,
        cfg.origin
    );
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|source| ConfigError::HttpClient {
            provider: "Swift".into(),
            source,
        })?;
    Ok(Arc::new(SwiftStore {
        cfg: SwiftConfig { auth_url, ..cfg },
        container: config.container.clone(),
        min_chunk: config.min_chunk_size,
        parallel: config.max_parallel_chunk_uploads,
        http,
        session: tokio::sync::Mutex::new(None),
    }))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn auth_kinds_from_files_and_os_env() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("c.json");
        std::fs::write(&f, r#"{"authURL":"https://ks/v3","domainName":"d","tenantName":"p","region":"eu","username":"u","password":"Sw1ftSecret"}"#).unwrap();
        let c = SwiftConfig::load(
            &StoreConfig::default(),
            &env(&[(
                "OPENSTACK_APPLICATION_CREDENTIALS_JSON",
                f.to_str().unwrap(),
            )]),
        )
        .unwrap();
        assert!(matches!(c.auth, SwiftAuth::Password { .. }));
        assert_eq!(c.tokens_url(), "https://ks/v3/auth/tokens");
        let body = c.keystone_request().to_string();
        assert!(
            body.contains(r#""methods":["password"]"#)
                && body.contains(r#""project":{"domain":{"name":"d"},"name":"p"}"#),
            "{body}"
        );
        // (A distinctive secret: the temp dir's random name is in the Debug output too.)
        assert!(!format!("{c:?}").contains("Sw1ftSecret"));

        let c = SwiftConfig::load(
            &StoreConfig::default(),
            &env(&[
                ("OS_AUTH_URL", "https://ks"),
                ("OS_APPLICATION_CREDENTIAL_ID", "id1"),
                ("OS_APPLICATION_CREDENTIAL_SECRET", "s"),
            ]),
        )
        .unwrap();
        assert_eq!(c.tokens_url(), "https://ks/v3/auth/tokens");
        assert!(
            c.keystone_request()
                .to_string()
                .contains(r#""application_credential":{"id":"id1","secret":"s"}"#)
        );

        let c = SwiftConfig::load(
            &StoreConfig::default(),
            &env(&[
                ("OS_AUTH_URL", "http://127.0.0.1:8080/auth/v1.0"),
                ("OS_USERNAME", "tester"),
                ("OS_PASSWORD", "testing"),
                ("OS_TENANT_NAME", "test"),
            ]),
        )
        .unwrap();
        assert_eq!(
            c.auth,
            SwiftAuth::TempAuth {
                user: "test:tester".into(),
                key: "testing".into()
            }
        );

        let e = SwiftConfig::load(
            &StoreConfig::default(),
            &env(&[("OS_AUTH_URL", "https://ks"), ("OS_USERNAME", "u")]),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("\"password\"") && e.to_string().contains("OS_"),
            "{e}"
        );
        let e = SwiftConfig::load(&StoreConfig::default(), &env(&[])).unwrap_err();
        assert!(e.to_string().contains("\"authURL\""), "{e}");
    }

    #[test]
    fn catalog_lookup() {
        let body = serde_json::json!({"token": {"catalog": [
            {"type": "identity", "endpoints": [{"interface": "public", "region": "eu", "url": "https://ks"}]},
            {"type": "object-store", "endpoints": [
                {"interface": "internal", "region": "eu", "url": "https://internal"},
                {"interface": "public", "region": "us", "url": "https://us/v1/AUTH_p"},
                {"interface": "public", "region": "eu", "url": "https://eu/v1/AUTH_p"}]}]}});
        assert_eq!(
            storage_url_from_catalog(&body, "eu").as_deref(),
            Some("https://eu/v1/AUTH_p")
        );
        assert_eq!(
            storage_url_from_catalog(&body, "").as_deref(),
            Some("https://us/v1/AUTH_p")
        );
        assert_eq!(storage_url_from_catalog(&body, "ap"), None);
    }
}

//! Who may call the HTTP API (etcdbr's; the original's API is open to anyone who reaches the
//! port). Both checks are off by default, so etcd-druid and etcd-wrapper keep working unchanged:
//!
//! - `--server-auth-token-file`: every endpoint but `/healthz` (and `/metrics` with
//!   `--server-auth-skip-metrics`) needs `Authorization: Bearer <token>`. No or a malformed
//!   header is 401, a wrong token 403, both with a JSON error. Tokens are compared as SHA-256
//!   digests in constant time, re-read when the file changes (a rotated Kubernetes Secret), and
//!   never logged.
//! - `--server-client-ca`: HTTPS clients must present a certificate signed by that CA; the TLS
//!   handshake refuses the others (see [`crate::http::tls_acceptor`]).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// The API's access settings.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AuthOptions {
    /// `--server-auth-token-file`: the bearer token callers must send.
    pub token_file: Option<PathBuf>,
    /// `--server-auth-skip-metrics`: `/metrics` without a token (for a Prometheus without one).
    pub metrics_open: bool,
    /// `--server-client-ca`: verify HTTPS clients' certificates against this CA bundle.
    pub client_ca: Option<PathBuf>,
}

impl std::fmt::Debug for AuthOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Paths only: the token itself is never held here.
        f.debug_struct("AuthOptions")
            .field("token_file", &self.token_file)
            .field("metrics_open", &self.metrics_open)
            .field("client_ca", &self.client_ca)
            .finish()
    }
}

/// Why the token file is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The file cannot be read.
    #[error("cannot read the token file {path} (--server-auth-token-file)")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file holds no token.
    #[error(
        "the token file {0} (--server-auth-token-file) is empty; write the token in it (one line)"
    )]
    Empty(PathBuf),
}

/// The bearer-token check, with the token's digest cached until the file changes.
pub struct TokenCheck {
    path: PathBuf,
    /// The file's modification time and the token's digest when it was last read.
    cached: Mutex<(Option<SystemTime>, [u8; 32])>,
}

impl std::fmt::Debug for TokenCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCheck")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn read_digest(path: &Path) -> Result<(Option<SystemTime>, [u8; 32]), AuthError> {
    let read = |source| AuthError::Read {
        path: path.to_path_buf(),
        source,
    };
    let text = std::fs::read(path).map_err(read)?;
    let token = text.trim_ascii();
    if token.is_empty() {
        return Err(AuthError::Empty(path.to_path_buf()));
    }
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    Ok((modified, Sha256::digest(token).into()))
}

/// Equal digests, in time independent of where they differ.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y));
    std::hint::black_box(diff) == 0
}

impl TokenCheck {
    /// Reads the token file; warns when others than its owner may read it.
    ///
    /// # Errors
    /// The file is unreadable or empty.
    pub fn load(path: &Path) -> Result<TokenCheck, AuthError> {
        let cached = read_digest(path)?;
        warn_if_readable_by_others(path);
        Ok(TokenCheck {
            path: path.to_path_buf(),
            cached: Mutex::new(cached),
        })
    }

    /// The current token's digest: re-read when the file's modification time changed; the last
    /// good token stays in force while the file is unreadable (a Secret being rotated).
    fn digest(&self) -> [u8; 32] {
        let Ok(mut cached) = self.cached.lock() else {
            return [0; 32];
        };
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if modified != cached.0 {
            match read_digest(&self.path) {
                Ok(fresh) => {
                    tracing::info!(
                        "The API token file {} changed: new token in force",
                        self.path.display()
                    );
                    *cached = fresh;
                }
                Err(e) => tracing::warn!("{e}; the previous token stays in force"),
            }
        }
        cached.1
    }

    /// Checks an `Authorization` header.
    ///
    /// # Errors
    /// 401 without a bearer token, 403 with a wrong one, each with what to do.
    pub fn check(
        &self,
        authorization: Option<&HeaderValue>,
    ) -> Result<(), (StatusCode, &'static str)> {
        let token = authorization
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Err((
                StatusCode::UNAUTHORIZED,
                "this endpoint needs a bearer token: send \"Authorization: Bearer <token>\" with the token of --server-auth-token-file",
            ));
        };
        if same(&Sha256::digest(token.as_bytes()).into(), &self.digest()) {
            Ok(())
        } else {
            Err((
                StatusCode::FORBIDDEN,
                "the bearer token is not the one this server accepts",
            ))
        }
    }
}

fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path)
        && m.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            "The API token file {} may be read by others than its owner (mode {:o}); chmod 600 it",
            path.display(),
            m.permissions().mode() & 0o777
        );
    }
}

/// What the middleware needs: the check, and whether `/metrics` is open.
#[derive(Debug)]
pub struct Gate {
    /// The token check.
    pub token: TokenCheck,
    /// `/metrics` without a token.
    pub metrics_open: bool,
}

/// The middleware: `/healthz` (and `/metrics` when open) pass; everything else needs the token.
pub async fn require_token(
    State(gate): State<std::sync::Arc<Gate>>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    if path == "/healthz" || (gate.metrics_open && path == "/metrics") {
        return next.run(req).await;
    }
    match gate.token.check(req.headers().get(header::AUTHORIZATION)) {
        Ok(()) => next.run(req).await,
        Err((status, message)) => {
            tracing::warn!("Refused {} {}: {message}", req.method(), path);
            let mut r = (
                status,
                [(header::CONTENT_TYPE, "application/json")],
                serde_json::json!({ "error": message }).to_string(),
            )
                .into_response();
            if status == StatusCode::UNAUTHORIZED {
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_and_reread_when_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        let check = TokenCheck::load(&path).unwrap();
        let h = |v: &str| HeaderValue::from_str(v).unwrap();
        assert!(check.check(Some(&h("Bearer s3cret"))).is_ok());
        assert_eq!(check.check(None).unwrap_err().0, StatusCode::UNAUTHORIZED);
        assert_eq!(
            check.check(Some(&h("Basic abc"))).unwrap_err().0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            check.check(Some(&h("Bearer "))).unwrap_err().0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            check.check(Some(&h("Bearer s3cre"))).unwrap_err().0,
            StatusCode::FORBIDDEN
        );
        assert!(!format!("{check:?}").contains("s3cret"));
        // Rotation: a new file content (and modification time) is picked up.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, "n3w\n").unwrap();
        let later = SystemTime::now() + std::time::Duration::from_secs(2);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert!(check.check(Some(&h("Bearer n3w"))).is_ok());
        assert_eq!(
            check.check(Some(&h("Bearer s3cret"))).unwrap_err().0,
            StatusCode::FORBIDDEN
        );
        // An empty file is refused at start.
        std::fs::write(&path, "\n").unwrap();
        assert!(
            TokenCheck::load(&path)
                .unwrap_err()
                .to_string()
                .contains("is empty")
        );
        assert!(same(&[7; 32], &[7; 32]) && !same(&[7; 32], &[8; 32]));
    }
}

//! Requests made besides OpenDAL's, for what it does not read (S3 versioning, Object Lock
//! and tags). They
//! are signed by the reqsign signers OpenDAL itself uses, over the provider's HTTP client, and
//! retried as OpenDAL's requests are (same tries, same backoff).

use reqsign_core::{Signer, SigningCredential};

use super::operator::{MAX_RETRY_DELAY, MAX_TRIES, MIN_RETRY_DELAY};
use crate::error::Error;

/// Why a direct request failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DirectError {
    /// The server could not be reached or the answer not read.
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    /// The request could not be signed (credentials).
    #[error("signing the request: {0}")]
    Sign(#[from] reqsign_core::Error),
    /// The server answered with an error.
    #[error("HTTP {status}: {code} {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The provider's error code.
        code: String,
        /// Its message.
        message: String,
    },
    /// The answer is not what the API documents.
    #[error("unexpected answer: {0}")]
    Parse(String),
    /// The request could not be built.
    #[error("bad request: {0}")]
    Request(#[from] http::Error),
}

impl DirectError {
    /// The provider's error code, empty when there is none.
    pub(crate) fn code(&self) -> &str {
        match self {
            DirectError::Status { code, .. } => code,
            _ => "",
        }
    }

    fn temporary(&self) -> bool {
        match self {
            // No retry can fix a certificate (as in OpenDAL's transport).
            DirectError::Http(e) => !e.is_builder() && !super::operator::is_tls_failure(e),
            DirectError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    /// The store error for `op` on `key`.
    pub(crate) fn into_error(self, op: &'static str, key: &str) -> Error {
        Error::Provider {
            op,
            key: key.to_owned(),
            temporary: self.temporary(),
            source: Box::new(self),
        }
    }
}

/// `path` with every byte percent-encoded except the unreserved ones and `/`.
pub(crate) fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `v` percent-encoded for a query value (`/` too).
pub(crate) fn encode_query(v: &str) -> String {
    encode_path(v).replace('/', "%2F")
}

/// A successful answer.
pub(crate) struct Answer {
    pub headers: http::HeaderMap,
    pub body: String,
}

/// Sends `method url` with `headers`, signed by `signer` (none: unsigned), retrying what is
/// temporary; `error` reads the provider's error body into (code, message).
pub(crate) async fn send<K: SigningCredential>(
    client: &reqwest::Client,
    signer: Option<&Signer<K>>,
    method: http::Method,
    url: &str,
    headers: &[(&str, &str)],
    error: fn(&str) -> (String, String),
) -> Result<Answer, DirectError> {
    let mut delay = MIN_RETRY_DELAY;
    let mut tries = 1;
    loop {
        match send_once(client, signer, method.clone(), url, headers, error).await {
            Err(e) if e.temporary() && tries < MAX_TRIES => {
                tracing::warn!(
                    "Storage request {method} failed (attempt {tries}), retrying in {:.1}s: {e}",
                    delay.as_secs_f64()
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
                tries += 1;
            }
            other => return other,
        }
    }
}

async fn send_once<K: SigningCredential>(
    client: &reqwest::Client,
    signer: Option<&Signer<K>>,
    method: http::Method,
    url: &str,
    headers: &[(&str, &str)],
    error: fn(&str) -> (String, String),
) -> Result<Answer, DirectError> {
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let (mut parts, ()) = req.body(())?.into_parts();
    if let Some(signer) = signer {
        signer.sign(&mut parts, None).await?;
    }
    let req = reqwest::Request::try_from(http::Request::from_parts(parts, Vec::<u8>::new()))?;
    let resp = client.execute(req).await?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.text().await?;
    if status.is_success() {
        return Ok(Answer { headers, body });
    }
    let (code, message) = error(&body);
    Err(DirectError::Status {
        status: status.as_u16(),
        code,
        message,
    })
}

/// The `<Error><Code>…</Code><Message>…</Message></Error>` of S3 and Azure.
pub(crate) fn xml_error(body: &str) -> (String, String) {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(rename = "Code", default)]
        code: String,
        #[serde(rename = "Message", default)]
        message: String,
    }
    quick_xml::de::from_str::<Body>(body)
        .map_or_else(|_| (String::new(), String::new()), |b| (b.code, b.message))
}

/// An XML answer as `T`.
pub(crate) fn xml<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, DirectError> {
    quick_xml::de::from_str(body).map_err(|e| DirectError::Parse(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_reads_errors() {
        assert_eq!(encode_path("a b/c+d"), "a%20b/c%2Bd");
        assert_eq!(encode_query("a/b"), "a%2Fb");
        assert_eq!(
            xml_error("<Error><Code>AccessDenied</Code><Message>no</Message></Error>"),
            ("AccessDenied".into(), "no".into())
        );
        assert_eq!(xml_error("garbage"), (String::new(), String::new()));
    }
}

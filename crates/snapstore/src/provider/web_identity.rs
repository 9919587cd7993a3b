//! S3 credentials from a web identity: a projected service-account token (IRSA on EKS,
//! Gardener's workload identity) exchanged at STS for temporary keys with
//! `AssumeRoleWithWebIdentity`.
//!
//! reqsign's own web-identity provider always calls `https://sts.<region>.amazonaws.com`, so
//! it can neither honour `AWS_ENDPOINT_URL_STS` nor reach a test STS; this one does the same
//! exchange against a configurable endpoint. The token file is read again at every exchange
//! (kubelet rotates it in place), and reqsign's signer calls [`Exchange`] again when the keys
//! are within two minutes of their expiry, so long-running sidecars never sign with stale keys.

use std::fmt;
use std::path::PathBuf;

use reqsign_aws_v4::Credential;
use reqsign_core::time::Timestamp;
use reqsign_core::{Context, ProvideCredential, SigningCredential};
use serde::Deserialize;

/// Where and how to exchange the token.
#[derive(Clone, PartialEq, Eq)]
pub struct WebIdentity {
    /// The role to assume.
    pub role_arn: String,
    /// The token file, re-read at every exchange.
    pub token_file: PathBuf,
    /// The STS endpoint URL (`AWS_ENDPOINT_URL_STS`, else the region's).
    pub sts_endpoint: String,
    /// `RoleSessionName` (`AWS_ROLE_SESSION_NAME`, else `etcdbr`).
    pub session_name: String,
}

impl fmt::Debug for WebIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebIdentity")
            .field("role_arn", &self.role_arn)
            .field("token_file", &self.token_file)
            .field("sts_endpoint", &self.sts_endpoint)
            .finish_non_exhaustive()
    }
}

/// The STS endpoint AWS's SDKs use for `region` (the regional one).
#[must_use]
pub fn regional_sts_endpoint(region: &str) -> String {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("https://sts.{region}.{suffix}")
}

/// Exchanges the token for keys whenever reqsign's signer needs fresh ones. The keys are
/// kept and shared by every signer of the store (OpenDAL's and the direct requests'), so one
/// exchange serves them all until the keys near their expiry.
#[derive(Debug, Clone)]
pub struct Exchange {
    identity: WebIdentity,
    client: reqwest::Client,
    keys: std::sync::Arc<tokio::sync::Mutex<Option<Credential>>>,
}

impl Exchange {
    /// An exchange over `client` (the provider's HTTP client, with its TLS options).
    #[must_use]
    pub fn new(identity: WebIdentity, client: reqwest::Client) -> Exchange {
        Exchange {
            identity,
            client,
            keys: std::sync::Arc::default(),
        }
    }

    async fn exchange(&self) -> Result<Credential, String> {
        let token = tokio::fs::read_to_string(&self.identity.token_file)
            .await
            .map_err(|e| {
                format!(
                    "cannot read the token file {}: {e}",
                    self.identity.token_file.display()
                )
            })?;
        let token = token.trim();
        if token.is_empty() {
            return Err(format!(
                "the token file {} is empty",
                self.identity.token_file.display()
            ));
        }
        let resp = self
            .client
            .post(&self.identity.sts_endpoint)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[
                ("Action", "AssumeRoleWithWebIdentity"),
                ("Version", "2011-06-15"),
                ("RoleArn", self.identity.role_arn.as_str()),
                ("RoleSessionName", self.identity.session_name.as_str()),
                ("WebIdentityToken", token),
            ]))
            .send()
            .await
            .map_err(|e| format!("STS at {} unreachable: {e}", self.identity.sts_endpoint))?;
        let status = resp.status();
        let body = resp
            .text()
            .await
            .map_err(|e| format!("reading STS's answer: {e}"))?;
        if !status.is_success() {
            let why = quick_xml::de::from_str::<ErrorResponse>(&body)
                .map(|e| format!("{}: {}", e.error.code, e.error.message))
                .unwrap_or_else(|_| format!("HTTP {status}"));
            return Err(format!(
                "STS refused AssumeRoleWithWebIdentity for {}: {why}",
                self.identity.role_arn
            ));
        }
        parse_response(&body)
    }
}

impl ProvideCredential for Exchange {
    type Credential = Credential;

    async fn provide_credential(&self, _ctx: &Context) -> reqsign_core::Result<Option<Credential>> {
        let mut keys = self.keys.lock().await;
        if let Some(k) = keys.as_ref().filter(|k| k.is_valid()) {
            return Ok(Some(k.clone()));
        }
        match self.exchange().await {
            Ok(c) => {
                *keys = Some(c.clone());
                tracing::info!(
                    "S3: assumed role {} with the web identity token (keys valid until {})",
                    self.identity.role_arn,
                    c.expires_in
                        .map_or_else(|| "?".to_owned(), Timestamp::format_rfc3339_zulu)
                );
                Ok(Some(c))
            }
            Err(problem) => {
                // The signer's error reaches the operation's error; say it here too, since
                // the operation's message is about the request, not the exchange.
                tracing::warn!("S3 web identity: {problem}");
                Err(reqsign_core::Error::credential_invalid(problem).set_retryable(true))
            }
        }
    }
}

/// `application/x-www-form-urlencoded` of `fields`.
fn form(fields: &[(&str, &str)]) -> String {
    use super::direct::encode_query;
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode_query(k), encode_query(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AssumeResponse {
    assume_role_with_web_identity_result: AssumeResult,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AssumeResult {
    credentials: StsCredentials,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsCredentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
    expiration: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorResponse {
    error: StsError,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsError {
    code: String,
    #[serde(default)]
    message: String,
}

/// The keys in an `AssumeRoleWithWebIdentityResponse`.
fn parse_response(body: &str) -> Result<Credential, String> {
    let r: AssumeResponse = quick_xml::de::from_str(body)
        .map_err(|e| format!("STS's answer is not an AssumeRoleWithWebIdentityResponse: {e}"))?;
    let c = r.assume_role_with_web_identity_result.credentials;
    let expires = chrono::DateTime::parse_from_rfc3339(c.expiration.trim())
        .map_err(|e| format!("STS's Expiration {:?} is not a time: {e}", c.expiration))?;
    let expires = Timestamp::from_second(expires.timestamp())
        .map_err(|e| format!("STS's Expiration is out of range: {e}"))?;
    if c.access_key_id.is_empty() || c.secret_access_key.is_empty() {
        return Err("STS answered without keys".into());
    }
    Ok(Credential {
        access_key_id: c.access_key_id,
        secret_access_key: c.secret_access_key,
        session_token: Some(c.session_token).filter(|t| !t.is_empty()),
        expires_in: Some(expires),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sts_answers_and_names_bad_ones() {
        let ok = r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>sub</SubjectFromWebIdentityToken>
    <Credentials>
      <SessionToken>TOKEN</SessionToken>
      <SecretAccessKey>SECRET</SecretAccessKey>
      <Expiration>2026-12-02T20:00:00.123Z</Expiration>
      <AccessKeyId>ASIAX</AccessKeyId>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>r</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"#;
        assert_eq!(form(&[("a", "x y/+"), ("b", "1")]), "a=x%20y%2F%2B&b=1");
        let c = parse_response(ok).unwrap();
        assert_eq!(c.access_key_id, "ASIAX");
        assert_eq!(c.session_token.as_deref(), Some("TOKEN"));
        assert_eq!(c.expires_in.unwrap().as_second(), 1_796_241_600);
        let e = parse_response("<Other/>").unwrap_err();
        assert!(
            e.contains("not an AssumeRoleWithWebIdentityResponse"),
            "{e}"
        );
        let e = parse_response(&ok.replace("2026-12-02T20:00:00.123Z", "soon")).unwrap_err();
        assert!(e.contains("Expiration"), "{e}");
        assert_eq!(
            regional_sts_endpoint("eu-west-1"),
            "https://sts.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            regional_sts_endpoint("cn-north-1"),
            "https://sts.cn-north-1.amazonaws.com.cn"
        );
    }
}

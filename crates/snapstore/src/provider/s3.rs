//! AWS S3 and the S3-compatible providers (ECS, OCS), with the original's credentials:
//!
//! - **S3**: `AWS_APPLICATION_CREDENTIALS[_JSON]` with `accessKeyID`, `secretAccessKey`, `region`,
//!   and optionally `endpoint` (deprecated: `--store-endpoint-override` wins), `s3ForcePathStyle`,
//!   `insecureSkipVerify`, `trustedCaCert`, `sseCustomerKey` + `sseCustomerAlgorithm` (SSE-C),
//!   `requestChecksumCalculation` / `responseChecksumValidation` (`when_supported` or
//!   `when_required`). Without the variables, the standard AWS environment (`AWS_ACCESS_KEY_ID`,
//!   `AWS_REGION`, …) is used.
//! - **S3 web identity** (IRSA, Gardener's workload identity): `roleARN` instead of the keys,
//!   with the token file `<dir>/token` (directory form) or `tokenPath` (JSON form); or the
//!   standard `AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE`. STS is `AWS_ENDPOINT_URL_STS`
//!   when set, else the region's (see [`super::web_identity`]).
//! - **ECS** (Dell EMC): `ECS_ENDPOINT`, `ECS_ACCESS_KEY_ID`, `ECS_SECRET_ACCESS_KEY`, optional
//!   `ECS_DISABLE_SSL`, `ECS_INSECURE_SKIP_VERIFY`; region `US-Standard`; path-style requests.
//! - **OCS** (OpenShift): `OPENSHIFT_APPLICATION_CREDENTIALS[_JSON]` with `endpoint`, `region`,
//!   `accessKeyID`, `secretAccessKey`, `disableSSL`, `insecureSkipVerify`; path-style requests.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use opendal::Operator;
use opendal::services::S3;
use reqsign_core::ProvideCredentialChain;

use super::opendal::OpendalStore;
use super::operator::{HttpOptions, finish_with, http_client, with_scheme};
use super::s3_api::{BucketApi, S3Store};
use super::web_identity::{Exchange, WebIdentity, regional_sts_endpoint};
use crate::config::{Provider, StoreConfig};
use crate::credentials::{Credentials, Env};
use crate::error::{Error, Result};
use crate::store::ObjectStore;

/// The variable naming S3's credentials file or directory (`…_JSON` for a JSON file).
pub(crate) const CREDENTIALS_VAR: &str = "AWS_APPLICATION_CREDENTIALS";
/// The variable naming OCS's credentials.
pub(crate) const OCS_CREDENTIALS_VAR: &str = "OPENSHIFT_APPLICATION_CREDENTIALS";

/// Everything needed to reach an S3-compatible bucket.
#[derive(Clone, Default)]
pub struct S3Config {
    /// Bucket.
    pub bucket: String,
    /// Region.
    pub region: String,
    /// Endpoint URL (empty: AWS).
    pub endpoint: String,
    /// Access key id (empty: the AWS environment).
    pub access_key_id: String,
    /// Secret key.
    pub secret_access_key: String,
    /// Path-style requests (`https://host/bucket/key`) instead of virtual-host style.
    pub force_path_style: bool,
    /// TLS options.
    pub(crate) http: HttpOptions,
    /// SSE-C algorithm and key.
    pub sse_customer: Option<(String, String)>,
    /// Send checksums on every request (`when_supported`) rather than only when required.
    pub request_checksums: bool,
    /// Where the credentials were read, for messages.
    pub origin: String,
    /// Keys from STS for a web identity token, instead of static keys.
    pub web_identity: Option<WebIdentity>,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .field("force_path_style", &self.force_path_style)
            .field(
                "sse_customer",
                &self.sse_customer.as_ref().map(|(alg, _)| alg),
            )
            .field("origin", &self.origin)
            .field("web_identity", &self.web_identity)
            .finish_non_exhaustive()
    }
}

/// The web identity of `role_arn` with `token_file`, checked now so that a missing token is
/// reported at start-up rather than at the first request.
fn web_identity(
    role_arn: &str,
    token_file: PathBuf,
    region: &str,
    env: &dyn Env,
    origin: &str,
) -> Result<WebIdentity> {
    if let Err(e) = std::fs::read_to_string(&token_file) {
        return Err(Error::Credentials {
            provider: "S3",
            origin: origin.to_owned(),
            problem: format!(
                "web identity: cannot read the token file {}: {e}",
                token_file.display()
            ),
        });
    }
    let sts_endpoint = env
        .var("AWS_ENDPOINT_URL_STS")
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| regional_sts_endpoint(region));
    Ok(WebIdentity {
        role_arn: role_arn.to_owned(),
        token_file,
        sts_endpoint,
        session_name: env
            .var("AWS_ROLE_SESSION_NAME")
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "etcdbr".to_owned()),
    })
}

fn checksum_setting(c: &Credentials, field: &str) -> Result<bool> {
    match c.get(field) {
        None | Some("when_required") => Ok(false),
        Some("when_supported") => Ok(true),
        Some(_) => Err(c.error(format!(
            "field {field:?} must be when_supported or when_required"
        ))),
    }
}

impl S3Config {
    /// Reads the S3 provider's configuration.
    ///
    /// # Errors
    /// [`Error::Credentials`] naming the file and field, or [`Error::Config`].
    pub fn load(config: &StoreConfig, env: &dyn Env) -> Result<S3Config> {
        let mut s = S3Config {
            bucket: config.container.clone(),
            ..S3Config::default()
        };
        match Credentials::locate("S3", CREDENTIALS_VAR, &config.env_prefix, env)? {
            Some(c) => {
                s.origin = c.origin().to_owned();
                s.region = c.require("region")?.to_owned();
                if let (Some(role), None) = (c.get("roleARN"), c.get("accessKeyID")) {
                    let token_file = match (c.file("token"), c.get("tokenPath")) {
                        (Some(f), _) => f.to_path_buf(),
                        (None, Some(p)) => PathBuf::from(p),
                        (None, None) => {
                            return Err(c.error(
                                "roleARN (web identity) needs the token: a file \"token\" in the credentials directory, or the field \"tokenPath\" in the JSON file",
                            ));
                        }
                    };
                    s.web_identity =
                        Some(web_identity(role, token_file, &s.region, env, &s.origin)?);
                } else {
                    s.access_key_id = c.require("accessKeyID")?.to_owned();
                    s.secret_access_key = c.require("secretAccessKey")?.to_owned();
                }
                s.endpoint = c.get("endpoint").unwrap_or_default().to_owned();
                s.force_path_style = c.get_bool("s3ForcePathStyle")?.unwrap_or(false);
                s.http.insecure_skip_verify = c.get_bool("insecureSkipVerify")?.unwrap_or(false);
                s.http.trusted_ca_pem = c.get("trustedCaCert").map(str::to_owned);
                s.sse_customer = match (c.get("sseCustomerAlgorithm"), c.get("sseCustomerKey")) {
                    (None, None) => None,
                    (Some(alg), Some(key)) => {
                        if alg == "AES256" && key.len() != 32 {
                            return Err(c.error(format!(
                                "sseCustomerKey must be 32 bytes for AES256, it has {}",
                                key.len()
                            )));
                        }
                        Some((alg.to_owned(), key.to_owned()))
                    }
                    _ => {
                        return Err(c.error(
                            "both sseCustomerKey and sseCustomerAlgorithm are to be provided if customer managed SSE keys are to be used",
                        ));
                    }
                };
                s.request_checksums = checksum_setting(&c, "requestChecksumCalculation")?;
                checksum_setting(&c, "responseChecksumValidation")?;
            }
            None => {
                s.origin =
                    "the AWS environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION)"
                        .into();
                s.region = env
                    .var("AWS_REGION")
                    .or_else(|| env.var("AWS_DEFAULT_REGION"))
                    .unwrap_or_default();
                s.access_key_id = env.var("AWS_ACCESS_KEY_ID").unwrap_or_default();
                s.secret_access_key = env.var("AWS_SECRET_ACCESS_KEY").unwrap_or_default();
                if let (true, Some(role), Some(token)) = (
                    s.access_key_id.is_empty(),
                    env.var("AWS_ROLE_ARN").filter(|v| !v.is_empty()),
                    env.var("AWS_WEB_IDENTITY_TOKEN_FILE")
                        .filter(|v| !v.is_empty()),
                ) {
                    s.origin = "the AWS environment (AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE, AWS_REGION)".into();
                    s.web_identity = Some(web_identity(
                        &role,
                        PathBuf::from(token),
                        &s.region,
                        env,
                        &s.origin,
                    )?);
                }
                if s.region.is_empty() {
                    return Err(Error::Credentials {
                        provider: "S3",
                        origin: s.origin.clone(),
                        problem: format!(
                            "no region: set {}AWS_APPLICATION_CREDENTIALS or AWS_REGION",
                            config.env_prefix
                        ),
                    });
                }
            }
        }
        if !config.endpoint_override.is_empty() {
            s.endpoint.clone_from(&config.endpoint_override);
        }
        Ok(s)
    }

    /// The Dell EMC ECS configuration from its environment variables.
    ///
    /// # Errors
    /// [`Error::Credentials`] naming the missing variable.
    pub fn load_ecs(config: &StoreConfig, env: &dyn Env) -> Result<S3Config> {
        let p = &config.env_prefix;
        let var = |name: &str| env.var(&format!("{p}{name}")).filter(|v| !v.is_empty());
        let mut fields = BTreeMap::new();
        for name in [
            "ECS_ENDPOINT",
            "ECS_ACCESS_KEY_ID",
            "ECS_SECRET_ACCESS_KEY",
            "ECS_DISABLE_SSL",
            "ECS_INSECURE_SKIP_VERIFY",
        ] {
            if let Some(v) = var(name) {
                fields.insert(name.to_owned(), v);
            }
        }
        let c = Credentials::from_fields(
            "ECS",
            &format!("the {p}ECS_* environment variables"),
            fields,
        );
        let disable_ssl = c.get_bool("ECS_DISABLE_SSL")?.unwrap_or(false);
        let endpoint = with_scheme(c.require("ECS_ENDPOINT")?, disable_ssl);
        Ok(S3Config {
            bucket: config.container.clone(),
            region: "US-Standard".into(),
            endpoint: if config.endpoint_override.is_empty() {
                endpoint
            } else {
                config.endpoint_override.clone()
            },
            access_key_id: c.require("ECS_ACCESS_KEY_ID")?.to_owned(),
            secret_access_key: c.require("ECS_SECRET_ACCESS_KEY")?.to_owned(),
            force_path_style: true,
            http: HttpOptions {
                insecure_skip_verify: c.get_bool("ECS_INSECURE_SKIP_VERIFY")?.unwrap_or(false),
                trusted_ca_pem: None,
            },
            origin: c.origin().to_owned(),
            ..S3Config::default()
        })
    }

    /// The OpenShift Container Storage configuration.
    ///
    /// # Errors
    /// [`Error::Credentials`] naming the file and field.
    pub fn load_ocs(config: &StoreConfig, env: &dyn Env) -> Result<S3Config> {
        let c = Credentials::required("OCS", OCS_CREDENTIALS_VAR, &config.env_prefix, env)?;
        let disable_ssl = c.get_bool("disableSSL")?.unwrap_or(false);
        let endpoint = with_scheme(c.require("endpoint")?, disable_ssl);
        Ok(S3Config {
            bucket: config.container.clone(),
            region: c.require("region")?.to_owned(),
            endpoint: if config.endpoint_override.is_empty() {
                endpoint
            } else {
                config.endpoint_override.clone()
            },
            access_key_id: c.require("accessKeyID")?.to_owned(),
            secret_access_key: c.require("secretAccessKey")?.to_owned(),
            force_path_style: true,
            http: HttpOptions {
                insecure_skip_verify: c.get_bool("insecureSkipVerify")?.unwrap_or(false),
                trusted_ca_pem: None,
            },
            origin: c.origin().to_owned(),
            ..S3Config::default()
        })
    }

    /// The credentials requests are signed with: the static keys, or STS's for the web
    /// identity; `None` when there are neither (unsigned requests).
    fn credentials(&self, client: &reqwest::Client) -> Option<super::s3_api::Credentials> {
        if let Some(wi) = &self.web_identity {
            return Some(Arc::new(Exchange::new(wi.clone(), client.clone())));
        }
        if self.access_key_id.is_empty() {
            return None;
        }
        Some(Arc::new(reqsign_aws_v4::StaticCredentialProvider::new(
            &self.access_key_id,
            &self.secret_access_key,
        )))
    }

    /// An operator for the bucket.
    ///
    /// # Errors
    /// [`Error::Config`] for unusable settings.
    pub fn operator(&self, provider: Provider) -> Result<Operator> {
        let client = http_client(&self.http, provider.as_str())?;
        let credentials = self.credentials(&client);
        self.operator_with(provider, client, credentials, self.checksum())
    }

    /// The checksum every upload carries: CRC32C with `when_supported`, else none.
    fn checksum(&self) -> Option<&'static str> {
        self.request_checksums.then_some("crc32c")
    }

    fn operator_with(
        &self,
        provider: Provider,
        client: reqwest::Client,
        credentials: Option<super::s3_api::Credentials>,
        checksum: Option<&str>,
    ) -> Result<Operator> {
        let mut b = S3::default()
            .bucket(&self.bucket)
            .root("/")
            .region(&self.region)
            .disable_config_load()
            .disable_ec2_metadata();
        if !self.endpoint.is_empty() {
            b = b.endpoint(&self.endpoint);
        }
        if let Some(c) = credentials {
            b = b.credential_provider_chain(ProvideCredentialChain::new().push(c));
        }
        if !self.force_path_style {
            b = b.enable_virtual_host_style();
        }
        if let Some((alg, key)) = &self.sse_customer {
            b = b.server_side_encryption_with_customer_key(alg, key.as_bytes());
        }
        if let Some(c) = checksum {
            b = b.checksum_algorithm(c);
        }
        let op = Operator::new(b).map_err(|source| crate::error::ConfigError::Builder {
            provider: provider.as_str().to_owned(),
            source,
        })?;
        Ok(finish_with(op, client))
    }
}

/// Builds the store for S3, ECS or OCS.
pub(crate) fn build(
    provider: Provider,
    config: &StoreConfig,
    env: &dyn Env,
) -> Result<Arc<dyn ObjectStore>> {
    let s = match provider {
        Provider::Ecs => S3Config::load_ecs(config, env)?,
        Provider::Ocs => S3Config::load_ocs(config, env)?,
        _ => S3Config::load(config, env)?,
    };
    tracing::info!(
        "{provider} snapstore: bucket {:?}, credentials from {}",
        s.bucket,
        s.origin
    );
    let client = http_client(&s.http, provider.as_str())?;
    let credentials = s.credentials(&client);
    let op = s.operator_with(provider, client.clone(), credentials.clone(), s.checksum())?;
    let data = OpendalStore::for_config(op, provider, config);
    let checksummed = match s.checksum() {
        Some(_) => None,
        None => Some(OpendalStore::for_config(
            s.operator_with(provider, client.clone(), credentials.clone(), Some("md5"))?,
            provider,
            config,
        )),
    };
    let api = BucketApi::new(
        client,
        credentials,
        &s.endpoint,
        &s.region,
        &s.bucket,
        s.force_path_style,
        s.sse_customer.as_ref(),
    );
    Ok(Arc::new(S3Store::new(data, checksummed, api)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn cfg() -> StoreConfig {
        StoreConfig {
            container: "bkt".into(),
            ..StoreConfig::default()
        }
    }

    #[test]
    fn reads_every_field_and_lets_the_override_win() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("c.json");
        std::fs::write(
            &f,
            r#"{"accessKeyID":"AK","secretAccessKey":"S3cretKey","region":"r","endpoint":"http://old:1","s3ForcePathStyle":true,
               "insecureSkipVerify":"false","sseCustomerAlgorithm":"AES256","sseCustomerKey":"0123456789abcdef0123456789abcdef",
               "requestChecksumCalculation":"when_supported","responseChecksumValidation":"when_required"}"#,
        )
        .unwrap();
        let e = env(&[("AWS_APPLICATION_CREDENTIALS_JSON", f.to_str().unwrap())]);
        let s = S3Config::load(&cfg(), &e).unwrap();
        assert_eq!(
            (
                s.region.as_str(),
                s.endpoint.as_str(),
                s.force_path_style,
                s.request_checksums
            ),
            ("r", "http://old:1", true, true)
        );
        assert_eq!(s.sse_customer.as_ref().unwrap().0, "AES256");
        assert!(
            !format!("{s:?}").contains("S3cretKey")
                && !format!("{s:?}").contains("0123456789abcdef")
        );
        let mut c = cfg();
        c.endpoint_override = "http://new:2".into();
        assert_eq!(S3Config::load(&c, &e).unwrap().endpoint, "http://new:2");
        s.operator(Provider::S3).unwrap();
    }

    #[test]
    fn bad_s3_credentials_name_the_problem() {
        let tmp = tempfile::tempdir().unwrap();
        let case = |json: &str| {
            let f = tmp.path().join("c.json");
            std::fs::write(&f, json).unwrap();
            S3Config::load(
                &cfg(),
                &env(&[("AWS_APPLICATION_CREDENTIALS_JSON", f.to_str().unwrap())]),
            )
            .unwrap_err()
            .to_string()
        };
        assert!(case(r#"{"accessKeyID":"AK","secretAccessKey":"SK"}"#).contains("\"region\""));
        assert!(case(r#"{"region":"r","secretAccessKey":"SK"}"#).contains("\"accessKeyID\""));
        assert!(
            case(
                r#"{"region":"r","accessKeyID":"AK","secretAccessKey":"SK","sseCustomerKey":"k"}"#
            )
            .contains("both sseCustomerKey")
        );
        assert!(case(r#"{"region":"r","accessKeyID":"AK","secretAccessKey":"SK","sseCustomerKey":"short","sseCustomerAlgorithm":"AES256"}"#)
            .contains("32 bytes"));
        assert!(case(r#"{"region":"r","accessKeyID":"AK","secretAccessKey":"SK","requestChecksumCalculation":"always"}"#)
            .contains("when_supported or when_required"));
        let e = S3Config::load(&cfg(), &env(&[])).unwrap_err().to_string();
        assert!(e.contains("AWS_REGION"), "{e}");
        let e = S3Config::load(
            &cfg(),
            &env(&[
                ("AWS_REGION", "eu"),
                ("AWS_ACCESS_KEY_ID", "a"),
                ("AWS_SECRET_ACCESS_KEY", "b"),
            ]),
        )
        .unwrap();
        assert_eq!(e.region, "eu");
    }

    #[test]
    fn ecs_and_ocs() {
        let e = env(&[
            ("ECS_ENDPOINT", "ecs.local:9020"),
            ("ECS_ACCESS_KEY_ID", "a"),
            ("ECS_SECRET_ACCESS_KEY", "b"),
            ("ECS_DISABLE_SSL", "true"),
        ]);
        let s = S3Config::load_ecs(&cfg(), &e).unwrap();
        assert_eq!(
            (s.endpoint.as_str(), s.region.as_str(), s.force_path_style),
            ("http://ecs.local:9020", "US-Standard", true)
        );
        let err = S3Config::load_ecs(&cfg(), &env(&[("ECS_ENDPOINT", "x")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ECS_ACCESS_KEY_ID") && err.contains("ECS"),
            "{err}"
        );
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        for (k, v) in [
            ("endpoint", "ocs.local"),
            ("region", "r"),
            ("accessKeyID", "a"),
            ("secretAccessKey", "b"),
            ("disableSSL", "false"),
        ] {
            std::fs::write(d.join(k), v).unwrap();
        }
        let s = S3Config::load_ocs(
            &cfg(),
            &env(&[("OPENSHIFT_APPLICATION_CREDENTIALS", d.to_str().unwrap())]),
        )
        .unwrap();
        assert_eq!(s.endpoint, "https://ocs.local");
        assert!(
            S3Config::load_ocs(&cfg(), &env(&[]))
                .unwrap_err()
                .to_string()
                .contains("not set")
        );
    }
}

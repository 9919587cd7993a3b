//! Swift credentials: which login (Keystone v3 password or application credential, or TempAuth)
//! and where it came from, read from `OPENSTACK_APPLICATION_CREDENTIALS[_JSON]` or the `OS_*`
//! environment, and the storage URL a Keystone token's catalog gives.

use std::collections::BTreeMap;
use std::fmt;

use crate::config::StoreConfig;
use crate::credentials::{Credentials, Env};
#[cfg(doc)]
use crate::error::Error;
use crate::error::Result;

/// The variable naming the credentials file or directory (`…_JSON` for a JSON file).
pub(crate) const CREDENTIALS_VAR: &str = "OPENSTACK_APPLICATION_CREDENTIALS";

/// How to log in.
#[derive(Clone, PartialEq, Eq)]
pub enum SwiftAuth {
    /// TempAuth (`GET <authURL>` with `X-Auth-User`/`X-Auth-Key`).
    TempAuth {
        /// `<account>:<user>`.
        user: String,
        /// The key.
        key: String,
    },
    /// Keystone v3 password authentication, scoped to a project.
    Password {
        /// User name.
        username: String,
        /// Password.
        password: String,
        /// Domain of the user and the project.
        domain: String,
        /// Project (tenant) name.
        project: String,
    },
    /// Keystone v3 application credential (by id, or by name with the user).
    ApplicationCredential {
        /// Credential id (or empty when the name is used).
        id: String,
        /// Credential name.
        name: String,
        /// User name (with a name).
        username: String,
        /// User domain (with a name).
        domain: String,
        /// Secret.
        secret: String,
    },
}

impl fmt::Debug for SwiftAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SwiftAuth::TempAuth { user, .. } => f
                .debug_struct("TempAuth")
                .field("user", user)
                .finish_non_exhaustive(),
            SwiftAuth::Password {
                username,
                domain,
                project,
                ..
            } => f
                .debug_struct("Password")
                .field("username", username)
                .field("domain", domain)
                .field("project", project)
                .finish_non_exhaustive(),
            SwiftAuth::ApplicationCredential { id, name, .. } => f
                .debug_struct("ApplicationCredential")
                .field("id", id)
                .field("name", name)
                .finish_non_exhaustive(),
        }
    }
}

/// Everything needed to reach a Swift container.
#[derive(Debug, Clone)]
pub struct SwiftConfig {
    /// The authentication URL.
    pub auth_url: String,
    /// Region of the object-store endpoint (empty: the first public one).
    pub region: String,
    /// How to log in.
    pub auth: SwiftAuth,
    /// Where the credentials came from.
    pub origin: String,
}

impl SwiftConfig {
    /// Reads the credentials file, or the `OS_*` environment.
    ///
    /// # Errors
    /// [`Error::Credentials`] naming the problem.
    pub fn load(config: &StoreConfig, env: &dyn Env) -> Result<SwiftConfig> {
        let c = match Credentials::locate("Swift", CREDENTIALS_VAR, &config.env_prefix, env)? {
            Some(c) => c,
            None => {
                let os = if config.env_prefix == "SOURCE_" {
                    "SOURCE_OS_"
                } else {
                    "OS_"
                };
                let mut fields = BTreeMap::new();
                for (field, vars) in [
                    ("authURL", &["AUTH_URL"][..]),
                    ("username", &["USERNAME"]),
                    ("password", &["PASSWORD"]),
                    ("tenantName", &["PROJECT_NAME", "TENANT_NAME"]),
                    (
                        "domainName",
                        &["USER_DOMAIN_NAME", "DOMAIN_NAME", "PROJECT_DOMAIN_NAME"],
                    ),
                    ("region", &["REGION_NAME"]),
                    ("applicationCredentialID", &["APPLICATION_CREDENTIAL_ID"]),
                    (
                        "applicationCredentialName",
                        &["APPLICATION_CREDENTIAL_NAME"],
                    ),
                    (
                        "applicationCredentialSecret",
                        &["APPLICATION_CREDENTIAL_SECRET"],
                    ),
                ] {
                    if let Some(v) = vars
                        .iter()
                        .find_map(|v| env.var(&format!("{os}{v}")).filter(|x| !x.is_empty()))
                    {
                        fields.insert(field.to_owned(), v);
                    }
                }
                Credentials::from_fields(
                    "Swift",
                    &format!("the {os}* environment variables"),
                    fields,
                )
            }
        };
        let auth_url = c.require("authURL")?.trim_end_matches('/').to_owned();
        let auth = if auth_url.ends_with("/v1.0") {
            let user = c.require("username")?;
            let user = if user.contains(':') {
                user.to_owned()
            } else {
                format!("{}:{user}", c.require("tenantName")?)
            };
            SwiftAuth::TempAuth {
                user,
                key: c.require("password")?.to_owned(),
            }
        } else if let Some(secret) = c.get("applicationCredentialSecret") {
            let id = c
                .get("applicationCredentialID")
                .unwrap_or_default()
                .to_owned();
            let name = c
                .get("applicationCredentialName")
                .unwrap_or_default()
                .to_owned();
            if id.is_empty() && name.is_empty() {
                return Err(c.error("applicationCredentialSecret needs applicationCredentialID or applicationCredentialName"));
            }
            let (username, domain) = if id.is_empty() {
                (
                    c.require("username")?.to_owned(),
                    c.require("domainName")?.to_owned(),
                )
            } else {
                (String::new(), String::new())
            };
            SwiftAuth::ApplicationCredential {
                id,
                name,
                username,
                domain,
                secret: secret.to_owned(),
            }
        } else {
            SwiftAuth::Password {
                username: c.require("username")?.to_owned(),
                password: c.require("password")?.to_owned(),
                domain: c.require("domainName")?.to_owned(),
                project: c.require("tenantName")?.to_owned(),
            }
        };
        let region = c
            .get("region")
            .map(str::to_owned)
            .or_else(|| env.var("OS_REGION_NAME"))
            .unwrap_or_default();
        Ok(SwiftConfig {
            auth_url,
            region,
            auth,
            origin: c.origin().to_owned(),
        })
    }

    /// The Keystone v3 token request body.
    #[must_use]
    pub fn keystone_request(&self) -> serde_json::Value {
        use serde_json::json;
        match &self.auth {
            SwiftAuth::Password {
                username,
                password,
                domain,
                project,
            } => json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user": {"name": username, "domain": {"name": domain}, "password": password}}},
                "scope": {"project": {"name": project, "domain": {"name": domain}}}
            }}),
            SwiftAuth::ApplicationCredential {
                id,
                name,
                username,
                domain,
                secret,
            } => {
                let cred = if id.is_empty() {
                    json!({"name": name, "user": {"name": username, "domain": {"name": domain}}, "secret": secret})
                } else {
                    json!({"id": id, "secret": secret})
                };
                json!({"auth": {"identity": {"methods": ["application_credential"], "application_credential": cred}}})
            }
            SwiftAuth::TempAuth { .. } => json!({}),
        }
    }

    /// Keystone v3's token endpoint under `authURL`.
    pub(super) fn tokens_url(&self) -> String {
        if self.auth_url.ends_with("/v3") {
            format!("{}/auth/tokens", self.auth_url)
        } else {
            format!("{}/v3/auth/tokens", self.auth_url)
        }
    }
}

/// The object-store URL of a Keystone token response: the public endpoint of the `object-store`
/// service, in `region` when given.
#[must_use]
pub fn storage_url_from_catalog(body: &serde_json::Value, region: &str) -> Option<String> {
    let catalog = body.get("token")?.get("catalog")?.as_array()?;
    let service = catalog
        .iter()
        .find(|s| s.get("type").and_then(|t| t.as_str()) == Some("object-store"))?;
    service.get("endpoints")?.as_array()?.iter().find_map(|e| {
        let public = e.get("interface").and_then(|i| i.as_str()) == Some("public");
        let in_region = region.is_empty()
            || e.get("region").and_then(|r| r.as_str()) == Some(region)
            || e.get("region_id").and_then(|r| r.as_str()) == Some(region);
        (public && in_region)
            .then(|| e.get("url")?.as_str().map(str::to_owned))
            .flatten()
    })
}

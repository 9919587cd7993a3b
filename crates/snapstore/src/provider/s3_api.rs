//! The S3 store: OpenDAL for the data, and the few bucket and object settings OpenDAL does not
//! read, asked as the original asks them:
//!
//! - `GetBucketVersioning` on every listing. Unversioned buckets are listed plainly. Versioned
//!   buckets are listed with their versions and delete markers. The newest version of each key
//!   is what is read and deleted, by `VersionId`, so GC removes the data rather than stacking
//!   delete markers.
//! - `GetObjectLockConfiguration` on versioned buckets. A default retention gives every
//!   version `LastModified + days` as its immutability expiry, as the original computes it,
//!   without a request per object.
//! - `GetObjectTagging` on the version of each key that has a delete marker. An operator
//!   excludes a snapshot by putting a delete marker and tagging the version
//!   `x-etcd-snapshot-exclude=true`; a delete marker alone does not exclude it.
//! - `HeadObject` of an object GC is about to delete when the bucket has Object Lock: its
//!   `x-amz-object-lock-retain-until-date` and legal hold. Retention set on that one object,
//!   not by the default rule, is seen that way. Found retentions are cached for the store's
//!   life, since they only grow.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqsign_aws_v4::{Credential, RequestSigner};
use reqsign_core::{Context, ProvideCredentialDyn, Signer};
use serde::Deserialize;

use super::direct::{DirectError, encode_path, encode_query, send, xml, xml_error};
use super::opendal::OpendalStore;
use crate::error::Result;
use crate::store::{Body, EXCLUDE_KEY, ObjectMeta, ObjectStore};

/// The credentials the requests are signed with (shared with OpenDAL's signer).
pub(crate) type Credentials = Arc<dyn ProvideCredentialDyn<Credential = Credential>>;

/// Signed requests to one bucket's sub-resources.
#[derive(Clone)]
pub(crate) struct BucketApi {
    client: reqwest::Client,
    signer: Option<Signer<Credential>>,
    /// `scheme://host[/bucket]`: where keys and `?sub-resources` are appended.
    base: String,
    /// The SSE-C headers, which a `HeadObject` of an SSE-C object needs.
    sse: Vec<(&'static str, String)>,
}

impl fmt::Debug for BucketApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BucketApi")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VersioningConfiguration {
    #[serde(default)]
    status: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ObjectLockConfiguration {
    #[serde(default)]
    object_lock_enabled: String,
    rule: Option<LockRule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LockRule {
    default_retention: Option<DefaultRetention>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DefaultRetention {
    days: Option<i64>,
    years: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Tagging {
    tag_set: TagSet,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagSet {
    #[serde(default)]
    tag: Vec<Tag>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Tag {
    key: String,
    value: String,
}

/// The bucket's Object Lock: whether it is on, and its default retention in days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ObjectLock {
    pub default_days: Option<i64>,
}

impl BucketApi {
    /// Requests to `bucket` at `endpoint` (empty: AWS in `region`), signed with `credentials`
    /// (none: unsigned).
    pub(crate) fn new(
        client: reqwest::Client,
        credentials: Option<Credentials>,
        endpoint: &str,
        region: &str,
        bucket: &str,
        path_style: bool,
        sse_customer: Option<&(String, String)>,
    ) -> BucketApi {
        let endpoint = if endpoint.is_empty() {
            format!("https://s3.{region}.amazonaws.com")
        } else {
            endpoint.trim_end_matches('/').to_owned()
        };
        let base = if path_style {
            format!("{endpoint}/{bucket}")
        } else {
            match endpoint.split_once("://") {
                Some((scheme, host)) => format!("{scheme}://{bucket}.{host}"),
                None => format!("https://{bucket}.{endpoint}"),
            }
        };
        let signer =
            credentials.map(|c| Signer::new(Context::new(), c, RequestSigner::new("s3", region)));
        let sse = sse_customer
            .map(|(alg, key)| {
                use base64::Engine;
                use md5::Digest;
                let b64 = base64::engine::general_purpose::STANDARD;
                vec![
                    (
                        "x-amz-server-side-encryption-customer-algorithm",
                        alg.clone(),
                    ),
                    ("x-amz-server-side-encryption-customer-key", b64.encode(key)),
                    (
                        "x-amz-server-side-encryption-customer-key-MD5",
                        b64.encode(md5::Md5::digest(key.as_bytes())),
                    ),
                ]
            })
            .unwrap_or_default();
        BucketApi {
            client,
            signer,
            base,
            sse,
        }
    }

    /// GET `<base>/<key>?<query>`; the body when 2xx, else the S3 error.
    async fn get(&self, key: &str, query: &str) -> std::result::Result<String, DirectError> {
        let url = if key.is_empty() {
            format!("{}?{query}", self.base)
        } else {
            format!("{}/{}?{query}", self.base, encode_path(key))
        };
        let headers = [("x-amz-content-sha256", reqsign_aws_v4::EMPTY_STRING_SHA256)];
        send(
            &self.client,
            self.signer.as_ref(),
            http::Method::GET,
            &url,
            &headers,
            xml_error,
        )
        .await
        .map(|a| a.body)
    }

    /// Whether versioning is enabled (`Suspended` counts as not: new objects get no version).
    async fn versioning_enabled(&self) -> Result<bool> {
        let body = self
            .get("", "versioning")
            .await
            .map_err(|e| e.into_error("get bucket versioning", ""))?;
        let v: VersioningConfiguration =
            xml(&body).map_err(|e| e.into_error("get bucket versioning", ""))?;
        Ok(v.status == "Enabled")
    }

    /// The bucket's Object Lock, `None` when it has none.
    async fn object_lock(&self) -> Result<Option<ObjectLock>> {
        let body = match self.get("", "object-lock").await {
            Ok(b) => b,
            Err(e) if e.code() == "ObjectLockConfigurationNotFoundError" => return Ok(None),
            Err(e) => return Err(e.into_error("get object lock configuration", "")),
        };
        let c: ObjectLockConfiguration =
            xml(&body).map_err(|e| e.into_error("get object lock configuration", ""))?;
        if c.object_lock_enabled != "Enabled" {
            return Ok(None);
        }
        let default_days = c
            .rule
            .and_then(|r| r.default_retention)
            .and_then(|d| d.days.or(d.years.map(|y| y * 365)));
        Ok(Some(ObjectLock { default_days }))
    }

    /// The tags of one version of an object.
    async fn tags(&self, key: &str, version: &str) -> Result<Vec<(String, String)>> {
        let body = self
            .get(key, &format!("tagging&versionId={}", encode_query(version)))
            .await
            .map_err(|e| e.into_error("get object tagging", key))?;
        let t: Tagging = xml(&body).map_err(|e| e.into_error("get object tagging", key))?;
        Ok(t.tag_set
            .tag
            .into_iter()
            .map(|t| (t.key, t.value))
            .collect())
    }

    /// The Object Lock of one version of an object, from `HeadObject` (which AWS and moto
    /// answer with the lock headers): its retain-until date, or the end of time under a
    /// legal hold.
    async fn retention(&self, key: &str, version: Option<&str>) -> Result<Option<DateTime<Utc>>> {
        let mut url = format!("{}/{}", self.base, encode_path(key));
        if let Some(v) = version {
            url.push_str(&format!("?versionId={}", encode_query(v)));
        }
        let mut headers = vec![("x-amz-content-sha256", reqsign_aws_v4::EMPTY_STRING_SHA256)];
        headers.extend(self.sse.iter().map(|(k, v)| (*k, v.as_str())));
        let answer = send(
            &self.client,
            self.signer.as_ref(),
            http::Method::HEAD,
            &url,
            &headers,
            xml_error,
        )
        .await
        .map_err(|e| e.into_error("head object", key))?;
        let header = |name: &str| {
            answer
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        if header("x-amz-object-lock-legal-hold") == Some("ON") {
            tracing::info!("S3: {key} is under a legal hold");
            return Ok(Some(DateTime::<Utc>::MAX_UTC));
        }
        Ok(header("x-amz-object-lock-retain-until-date")
            .and_then(|d| DateTime::parse_from_rfc3339(d).ok())
            .map(|d| d.with_timezone(&Utc)))
    }
}

/// S3: the data through OpenDAL, versions, tags and Object Lock as the module says.
#[derive(Debug)]
pub(crate) struct S3Store {
    data: OpendalStore,
    /// The same operator sending `Content-MD5` with every upload and part, which S3 requires
    /// in buckets with Object Lock (and moto enforces); `None` when `data` already sends
    /// checksums (`requestChecksumCalculation: when_supported`).
    checksummed: Option<OpendalStore>,
    api: BucketApi,
    /// Object Lock as last found (outer `None`: not looked at yet; inner: off).
    lock: Mutex<Option<Option<ObjectLock>>>,
    /// Retain-until dates found per `key@version`.
    retained: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl S3Store {
    pub(crate) fn new(
        data: OpendalStore,
        checksummed: Option<OpendalStore>,
        api: BucketApi,
    ) -> S3Store {
        S3Store {
            data,
            checksummed,
            api,
            lock: Mutex::new(None),
            retained: Mutex::new(HashMap::new()),
        }
    }

    fn set_lock(&self, lock: Option<ObjectLock>) {
        *self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(lock);
    }

    fn lock(&self) -> Option<ObjectLock> {
        self.lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .flatten()
    }

    /// Where uploads go: with `Content-MD5` when the bucket has Object Lock (asked once when
    /// no listing said it yet).
    async fn uploads(&self) -> Result<&OpendalStore> {
        let Some(checksummed) = &self.checksummed else {
            return Ok(&self.data);
        };
        let known = *self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let lock = match known {
            Some(l) => l,
            None => {
                let l = self.api.object_lock().await?;
                self.set_lock(l);
                l
            }
        };
        Ok(if lock.is_some() {
            checksummed
        } else {
            &self.data
        })
    }

    /// The versioned listing: per key its newest version, with the default retention applied
    /// and the exclude tag read where a delete marker stands.
    async fn list_versioned(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let lock = match self.api.object_lock().await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("S3: cannot read the bucket's object lock configuration: {e}");
                None
            }
        };
        self.set_lock(lock);
        if lock.is_some_and(|l| l.default_days.is_none()) {
            tracing::debug!(
                "S3: object lock is enabled without a default retention; retention is read per object before deleting"
            );
        }
        // key -> (newest version, its time, has a delete marker)
        let mut newest: HashMap<String, (ObjectMeta, Option<DateTime<Utc>>, bool)> = HashMap::new();
        for e in self.data.list_versions(prefix).await? {
            let key = e.path().trim_start_matches('/').to_owned();
            let m = e.metadata();
            let slot = newest
                .entry(key.clone())
                .or_insert_with(|| (ObjectMeta::new(key.clone(), 0), None, false));
            if m.is_deleted() {
                slot.2 = true;
                continue;
            }
            let at = m
                .last_modified()
                .map(|t| DateTime::<Utc>::from(std::time::SystemTime::from(t)));
            let newer = slot.0.version.is_none()
                || m.is_current() == Some(true)
                || (at.is_some() && at > slot.1);
            if newer {
                slot.0.size = m.content_length();
                slot.0.version = m.version().map(str::to_owned);
                slot.1 = at;
            }
        }
        let mut out = Vec::with_capacity(newest.len());
        for (_, (mut meta, at, marked)) in newest {
            let Some(version) = meta.version.clone() else {
                continue; // only delete markers are left of this key
            };
            if let (Some(days), Some(at)) = (lock.and_then(|l| l.default_days), at) {
                meta.retain_until = Some(at + chrono::Duration::days(days));
            }
            if marked
                && self
                    .api
                    .tags(&meta.key, &version)
                    .await?
                    .iter()
                    .any(|(k, v)| k == EXCLUDE_KEY && v == "true")
            {
                meta.excluded = Some(format!(
                    "version {version} is tagged {EXCLUDE_KEY}=true behind a delete marker"
                ));
            }
            out.push(meta);
        }
        Ok(out)
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        if self.api.versioning_enabled().await? {
            self.list_versioned(prefix).await
        } else {
            self.set_lock(None);
            self.data.list(prefix).await
        }
    }

    async fn get(&self, key: &str) -> Result<Body> {
        self.data.get(key).await
    }

    async fn put(&self, key: &str, body: Body, size_hint: Option<u64>) -> Result<u64> {
        self.uploads().await?.put(key, body, size_hint).await
    }

    async fn stat(&self, key: &str) -> Result<ObjectMeta> {
        self.data.stat(key).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.data.delete(key).await
    }

    async fn get_version(&self, key: &str, version: &str) -> Result<Body> {
        self.data.get_version(key, version).await
    }

    async fn delete_version(&self, key: &str, version: &str) -> Result<()> {
        self.data.delete_version(key, version).await
    }

    async fn retained_until(
        &self,
        key: &str,
        version: Option<&str>,
    ) -> Result<Option<DateTime<Utc>>> {
        if self.lock().is_none() {
            return Ok(None);
        }
        let id = format!("{key}@{}", version.unwrap_or_default());
        if let Some(t) = self
            .retained
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&id)
            .copied()
            .filter(|t| *t > Utc::now())
        {
            return Ok(Some(t));
        }
        let until = self.api.retention(key, version).await?;
        if let Some(t) = until {
            self.retained
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(id, t);
        }
        Ok(until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_bucket_settings_and_tags() {
        let v: VersioningConfiguration = quick_xml::de::from_str(
            r#"<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Enabled</Status></VersioningConfiguration>"#,
        )
        .unwrap();
        assert_eq!(v.status, "Enabled");
        let v: VersioningConfiguration =
            quick_xml::de::from_str("<VersioningConfiguration/>").unwrap();
        assert_eq!(v.status, "");
        let c: ObjectLockConfiguration = quick_xml::de::from_str(
            "<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention><Mode>COMPLIANCE</Mode><Years>2</Years></DefaultRetention></Rule></ObjectLockConfiguration>",
        )
        .unwrap();
        let d = c.rule.unwrap().default_retention.unwrap();
        assert_eq!((d.days, d.years), (None, Some(2)));
        let t: Tagging = quick_xml::de::from_str(
            "<Tagging><TagSet><Tag><Key>a</Key><Value>1</Value></Tag><Tag><Key>x-etcd-snapshot-exclude</Key><Value>true</Value></Tag></TagSet></Tagging>",
        )
        .unwrap();
        assert_eq!(t.tag_set.tag[1].key, EXCLUDE_KEY);
        let t: Tagging = quick_xml::de::from_str("<Tagging><TagSet/></Tagging>").unwrap();
        assert!(t.tag_set.tag.is_empty());
    }
}

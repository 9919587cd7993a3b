//! One Lease, read and renewed.
//!
//! A snapshot Lease holds a revision in `spec.holderIdentity` that must never go down, so it is
//! read, compared, and written with the `resourceVersion` read (optimistic locking): a concurrent
//! writer makes the write conflict (409), and it is retried from a fresh read. A member Lease is
//! a heartbeat: a merge patch of holder, renew time and annotations, with nothing to compare.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::{Error, Kube};

/// Conflicting writes tried before giving up (client-go's `retry.DefaultBackoff` tries 4).
const CONFLICT_ATTEMPTS: u32 = 5;

/// The Leases of one namespace.
#[derive(Clone)]
pub struct LeaseApi {
    api: Api<Lease>,
    namespace: String,
}

impl std::fmt::Debug for LeaseApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LeaseApi({})", self.namespace)
    }
}

/// What a revision renewal did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    /// The holder was set to the revision (and the renew time).
    Raised,
    /// The Lease held the revision already: only the renew time was written.
    Renewed,
    /// The Lease held a higher revision: nothing was written.
    Kept(i64),
}

impl LeaseApi {
    /// The Leases of `kube`'s namespace.
    #[must_use]
    pub fn new(kube: &Kube) -> LeaseApi {
        LeaseApi {
            api: Api::namespaced(kube.client.clone(), &kube.namespace),
            namespace: kube.namespace.clone(),
        }
    }

    fn failed(&self, op: &'static str, name: &str) -> impl FnOnce(kube::Error) -> Error {
        let (namespace, name) = (self.namespace.clone(), name.to_owned());
        move |source| Error::Lease {
            op,
            namespace,
            name,
            source: Box::new(source),
        }
    }

    /// The Lease `name`.
    ///
    /// # Errors
    /// The API server's error (404 when it does not exist), or none reached.
    pub async fn get(&self, name: &str) -> Result<Lease, Error> {
        self.api.get(name).await.map_err(self.failed("get", name))
    }

    /// The revision in `name`'s holderIdentity (`None` when unset).
    ///
    /// # Errors
    /// As [`LeaseApi::get`], or a holder that is not a decimal revision.
    pub async fn revision(&self, name: &str) -> Result<Option<i64>, Error> {
        let lease = self.get(name).await?;
        self.holder_revision(name, &lease)
    }

    fn holder_revision(&self, name: &str, lease: &Lease) -> Result<Option<i64>, Error> {
        let holder = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref());
        holder
            .map(|h| {
                h.parse::<i64>().map_err(|_| Error::NotARevision {
                    namespace: self.namespace.clone(),
                    name: name.to_owned(),
                    value: h.to_owned(),
                })
            })
            .transpose()
    }

    /// Sets `name`'s holderIdentity to `revision` unless it holds a higher one, and its renew
    /// time to `renew_time` (also when it holds a higher one if `always_renew`); retried from a
    /// fresh read when another writer got there first.
    ///
    /// # Errors
    /// The Lease cannot be read or written, holds something that is not a revision, or kept
    /// conflicting.
    pub async fn raise_revision(
        &self,
        name: &str,
        revision: i64,
        renew_time: DateTime<Utc>,
        always_renew: bool,
    ) -> Result<Renewal, Error> {
        for attempt in 1..=CONFLICT_ATTEMPTS {
            let lease = self.get(name).await?;
            let held = self.holder_revision(name, &lease)?;
            let (renewal, holder) = match held {
                Some(h) if h > revision && !always_renew => return Ok(Renewal::Kept(h)),
                Some(h) if h > revision => (Renewal::Kept(h), h),
                Some(h) if h == revision => (Renewal::Renewed, h),
                _ => (Renewal::Raised, revision),
            };
            let patch = json!({
                "metadata": {"resourceVersion": lease.metadata.resource_version},
                "spec": {
                    "holderIdentity": holder.to_string(),
                    "renewTime": micro_time(renew_time),
                },
            });
            match self.merge(name, &patch).await {
                Ok(()) => return Ok(renewal),
                Err(e) if e.api_code() == Some(409) => {
                    tracing::debug!(
                        "Lease {name} changed under the update (attempt {attempt}); reading it again"
                    );
                    tokio::time::sleep(Duration::from_millis(10 << attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflicts {
            namespace: self.namespace.clone(),
            name: name.to_owned(),
            attempts: CONFLICT_ATTEMPTS,
        })
    }

    /// A heartbeat: sets `name`'s holderIdentity, renew time (now) and the given annotations.
    ///
    /// # Errors
    /// The Lease cannot be patched (404 when it does not exist: it is never created here).
    pub async fn heartbeat(
        &self,
        name: &str,
        holder: &str,
        annotations: &BTreeMap<String, String>,
    ) -> Result<(), Error> {
        let patch = json!({
            "metadata": {"annotations": annotations},
            "spec": {"holderIdentity": holder, "renewTime": micro_time(Utc::now())},
        });
        self.merge(name, &patch).await
    }

    async fn merge(&self, name: &str, patch: &serde_json::Value) -> Result<(), Error> {
        self.api
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map(|_| ())
            .map_err(self.failed("patch", name))
    }
}

/// A `MicroTime` as the API server writes it: RFC 3339 with microseconds, in UTC.
fn micro_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn micro_time_is_rfc3339_with_microseconds() {
        let t = Utc.with_ymd_and_hms(2026, 12, 1, 13, 4, 5).unwrap()
            + chrono::Duration::microseconds(42);
        assert_eq!(micro_time(t), "2026-12-01T13:04:05.000042Z");
    }
}

//! The Kubernetes Leases of the sidecar (`--enable-member-lease-renewal`,
//! `--enable-snapshot-lease-renewal`): the member heartbeat runs beside everything else on every
//! sidecar; the snapshot Leases are an observer of the leader's backup service.

use std::sync::Arc;
use std::time::Duration;

use etcdbr::error_chain;
use etcdbr::etcd::EtcdOptions;
use etcdbr_k8s::{Kube, MemberHeartbeat, SnapshotLeaseNames, SnapshotLeases};
use snapstore::SnapStore;
use tokio_util::sync::CancellationToken;

use crate::ServerError;
use crate::etcd_conf;

/// Which Leases the sidecar keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseOptions {
    /// The snapshot Leases' names, when `--enable-snapshot-lease-renewal`.
    pub snapshot: Option<SnapshotLeaseNames>,
    /// The member Lease's renewal period (`--k8s-heartbeat-duration`), when
    /// `--enable-member-lease-renewal`.
    pub heartbeat: Option<Duration>,
}

impl LeaseOptions {
    /// Whether any Lease is kept.
    #[must_use]
    pub fn enabled(&self) -> bool {
        self.snapshot.is_some() || self.heartbeat.is_some()
    }
}

/// The client and what the leader writes with it.
#[derive(Debug, Clone)]
pub(crate) struct Leases {
    kube: Kube,
    snapshot: Option<SnapshotLeaseNames>,
}

/// Connects to the Kubernetes API when a Lease is enabled and starts the member heartbeat
/// (until `stop`).
///
/// # Errors
/// No Kubernetes client configuration, or `POD_NAME` unset for the member Lease.
pub(crate) async fn start(
    opts: &LeaseOptions,
    etcd_conf: &std::path::Path,
    etcd: &EtcdOptions,
    stop: &CancellationToken,
) -> Result<Option<Leases>, ServerError> {
    if !opts.enabled() {
        return Ok(None);
    }
    let kube = Kube::connect().await?;
    if let Some(period) = opts.heartbeat {
        let (name, peer_tls) = etcd_conf::member_lease(etcd_conf)?;
        let beat = MemberHeartbeat::new(&kube, name, etcd.clone(), period, peer_tls);
        tokio::spawn(beat.run(stop.clone()));
    }
    Ok(Some(Leases {
        kube,
        snapshot: opts.snapshot.clone(),
    }))
}

impl Leases {
    /// The snapshot Leases' observer for a leader's backup service on `store`, started from the
    /// store's latest set (written until `stop`); `None` when they are not kept.
    pub(crate) async fn snapshot_observer(
        &self,
        store: &SnapStore,
        stop: &CancellationToken,
    ) -> Option<Arc<SnapshotLeases>> {
        let names = self.snapshot.clone()?;
        let latest = match store.latest_set().await {
            Ok(set) => set,
            Err(e) => {
                tracing::warn!(
                    "Cannot list the store for the snapshot Leases' start-up values; they follow the next snapshots: {}",
                    error_chain(&e)
                );
                snapstore::BackupSet::default()
            }
        };
        Some(SnapshotLeases::start(
            &self.kube,
            names,
            &latest,
            stop.clone(),
        ))
    }
}

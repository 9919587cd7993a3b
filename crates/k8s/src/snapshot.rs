//! The full and delta snapshot Leases, kept at the store's latest revisions.
//!
//! [`SnapshotLeases`] hears the engine's events and records what the Leases should say; a task
//! of its own writes them, so a slow or unreachable API server never holds up a snapshot. A
//! failed write is logged and retried with a growing delay (up to 30 s) until it succeeds: the
//! Leases catch up once the API server is back. As the original:
//!
//! - full Lease: `holderIdentity` = the newest full snapshot's last revision (never lowered),
//!   `renewTime` = that snapshot's creation time;
//! - delta Lease: `holderIdentity` = the newest delta's last revision (never lowered; `"0"`
//!   while no delta was ever recorded), `renewTime` = now, renewed after every delta period even
//!   when the delta was skipped for want of events.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use etcdbr::events::{Event, Observer};
use snapstore::{BackupSet, Kind};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::lease::{LeaseApi, Renewal};
use crate::{Error, Kube};

/// The two Leases' names (`--full-snapshot-lease-name`, `--delta-snapshot-lease-name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotLeaseNames {
    /// The full snapshot Lease (`full-snapshot-revisions` by default; druid passes
    /// `<etcd>-full-snap`).
    pub full: String,
    /// The delta snapshot Lease (`delta-snapshot-revisions`; druid: `<etcd>-delta-snap`).
    pub delta: String,
}

impl Default for SnapshotLeaseNames {
    fn default() -> Self {
        SnapshotLeaseNames {
            full: "full-snapshot-revisions".into(),
            delta: "delta-snapshot-revisions".into(),
        }
    }
}

/// What the Leases should say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Targets {
    /// The newest full snapshot's revision and creation time.
    full: Option<(i64, DateTime<Utc>)>,
    /// The newest delta's revision (0: none yet), and a counter bumped at every renewal.
    delta: Option<(i64, u64)>,
}

/// Keeps the snapshot Leases in step with the engine's events; pass it to the engine as an
/// observer ([`etcdbr::events::Events::with`]).
#[derive(Debug)]
pub struct SnapshotLeases {
    targets: watch::Sender<Targets>,
}

impl SnapshotLeases {
    /// Starts the writer task for `names` in `kube`'s namespace, first writing what `latest`
    /// (the store's latest backup set at start-up) says. It runs until `stop`.
    #[must_use]
    pub fn start(
        kube: &Kube,
        names: SnapshotLeaseNames,
        latest: &BackupSet,
        stop: CancellationToken,
    ) -> Arc<SnapshotLeases> {
        let initial = Targets {
            full: latest
                .full
                .as_ref()
                .map(|f| (f.last_revision.get(), f.created_on)),
            delta: Some((
                latest
                    .deltas
                    .iter()
                    .map(|d| d.last_revision.get())
                    .max()
                    .unwrap_or(0),
                0,
            )),
        };
        let (tx, rx) = watch::channel(initial);
        tokio::spawn(write_leases(LeaseApi::new(kube), names, rx, stop));
        Arc::new(SnapshotLeases { targets: tx })
    }

    fn update(&self, f: impl FnOnce(&mut Targets)) {
        self.targets.send_modify(f);
    }
}

impl Observer for SnapshotLeases {
    fn observe(&self, event: &Event<'_>) {
        match event {
            Event::SnapshotSaved { snapshot, .. } if !snapshot.is_chunk => {
                let rev = snapshot.last_revision.get();
                match snapshot.kind {
                    Kind::Full => {
                        let created = snapshot.created_on;
                        // A lower revision is kept out by the write itself (never lowered).
                        self.update(|t| t.full = Some((rev, created)));
                    }
                    Kind::Incr => self.update(|t| {
                        let (_, n) = t.delta.unwrap_or_default();
                        t.delta = Some((rev, n + 1));
                    }),
                }
            }
            Event::DeltaSkipped => self.update(|t| {
                let (held, n) = t.delta.unwrap_or_default();
                t.delta = Some((held, n + 1));
            }),
            _ => {}
        }
    }
}

/// Writes the targets whenever they change, retrying failed writes until `stop`.
async fn write_leases(
    api: LeaseApi,
    names: SnapshotLeaseNames,
    mut targets: watch::Receiver<Targets>,
    stop: CancellationToken,
) {
    let mut written = Targets::default();
    let mut delay = Duration::from_secs(1);
    loop {
        let wanted = targets.borrow_and_update().clone();
        let failed = write_changed(&api, &names, &wanted, &mut written).await;
        let wait = if failed {
            let d = delay;
            delay = (delay * 2).min(Duration::from_secs(30));
            Some(d)
        } else {
            delay = Duration::from_secs(1);
            None
        };
        tokio::select! {
            () = stop.cancelled() => return,
            changed = targets.changed() => if changed.is_err() { return },
            () = sleep_for(wait) => {}
        }
    }
}

async fn sleep_for(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Writes each Lease whose target changed since `written`; returns whether one failed.
async fn write_changed(
    api: &LeaseApi,
    names: &SnapshotLeaseNames,
    wanted: &Targets,
    written: &mut Targets,
) -> bool {
    let mut failed = false;
    if let Some((rev, created)) = wanted.full.filter(|_| wanted.full != written.full) {
        match api.raise_revision(&names.full, rev, created, false).await {
            Ok(r) => {
                log_renewal(&names.full, rev, &r);
                written.full = wanted.full;
            }
            Err(e) => failed |= log_failure(&e),
        }
    }
    if let Some((rev, _)) = wanted.delta.filter(|_| wanted.delta != written.delta) {
        match api
            .raise_revision(&names.delta, rev, Utc::now(), true)
            .await
        {
            Ok(r) => {
                log_renewal(&names.delta, rev, &r);
                written.delta = wanted.delta;
            }
            Err(e) => failed |= log_failure(&e),
        }
    }
    failed
}

fn log_renewal(name: &str, rev: i64, r: &Renewal) {
    match r {
        Renewal::Raised => tracing::info!("Renewed snapshot Lease {name} with revision {rev}"),
        Renewal::Renewed => tracing::debug!("Renewed snapshot Lease {name} (revision {rev})"),
        Renewal::Kept(held) => tracing::info!(
            "Snapshot Lease {name} holds revision {held}, above {rev}; left as it is"
        ),
    }
}

fn log_failure(e: &Error) -> bool {
    tracing::warn!(
        "Could not update the snapshot Lease (retried; backups go on): {}",
        etcdbr::error_chain(e)
    );
    true
}

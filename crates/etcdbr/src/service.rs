//! The backup service: everything that keeps one store's backups of one etcd going, started and
//! stopped together. That is the snapshotter, garbage collection, scheduled defragmentation,
//! the copy to a secondary store with its own GC, and scheduled verification. `etcdbrctl snapshot` runs it until
//! stopped; the server runs it while its member leads.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use snapstore::{Provider, SnapStore};
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::etcd::EtcdOptions;
use crate::events::Events;
use crate::gc::GcOptions;
use crate::schedule::Schedule;
use crate::snapshotter::{Snapshotter, SnapshotterHandle, SnapshotterOptions};

/// A second store that receives a copy of every backup (`--secondary-*`).
#[derive(Debug, Clone)]
pub struct Secondary {
    /// The store.
    pub store: SnapStore,
    /// How often new backups are copied there (`--secondary-backup-sync-period`).
    pub sync_period: Duration,
}

/// What the service runs, and how.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BackupOptions {
    /// The snapshotter.
    pub snapshotter: SnapshotterOptions,
    /// Garbage collection of the store (and, with its own Swift setting, of the secondary).
    pub gc: GcOptions,
    /// `--garbage-collection-period`; at most one second turns GC off.
    pub gc_period: Duration,
    /// `--defragmentation-schedule`.
    pub defrag_schedule: Schedule,
    /// The secondary store, when its sync is enabled.
    pub secondary: Option<Secondary>,
    /// `--verify-schedule`: verify the latest backup set on this schedule.
    pub verify: Option<(Schedule, crate::verify::VerifyOptions)>,
    /// Who hears about snapshots, deletions and defragmentations (given to every part).
    pub events: Events,
}

impl BackupOptions {
    /// Options running `snapshotter`, GC with `gc` every `gc_period`, and defragmentation on
    /// `defrag_schedule`; no secondary store, no observer.
    #[must_use]
    pub fn new(
        snapshotter: SnapshotterOptions,
        gc: GcOptions,
        gc_period: Duration,
        defrag_schedule: Schedule,
    ) -> BackupOptions {
        BackupOptions {
            snapshotter,
            gc,
            gc_period,
            defrag_schedule,
            secondary: None,
            verify: None,
            events: Events::none(),
        }
    }
}

/// The snapshotter, GC, defragmentation and secondary sync of one etcd and one store.
#[derive(Debug)]
pub struct BackupService {
    etcd: EtcdOptions,
    store: SnapStore,
    opts: BackupOptions,
    snapshotter: Snapshotter,
}

impl BackupService {
    /// A service; nothing runs until [`BackupService::run`].
    #[must_use]
    pub fn new(etcd: EtcdOptions, store: SnapStore, mut opts: BackupOptions) -> BackupService {
        opts.snapshotter.events = opts.events.clone();
        opts.gc.events = opts.events.clone();
        let snapshotter = Snapshotter::new(etcd.clone(), store.clone(), opts.snapshotter.clone());
        BackupService {
            etcd,
            store,
            opts,
            snapshotter,
        }
    }

    /// A handle for out-of-schedule snapshots and the snapshotter's health.
    #[must_use]
    pub fn handle(&self) -> SnapshotterHandle {
        self.snapshotter.handle()
    }

    /// Runs everything until `stop` fires; the snapshotter saves its pending events first, then
    /// the other parts stop.
    ///
    /// # Errors
    /// Only a configuration error: of the snapshotter (a schedule that never fires), or a
    /// GC that could never delete anything ([`crate::gc::check_can_delete`]); failures of
    /// etcd and the stores are retried.
    pub async fn run(&self, stop: CancellationToken) -> Result<()> {
        let parts = stop.child_token();
        let o = &self.opts;
        crate::gc::check_can_delete(&self.store, o.gc_period).await?;
        if let Some(secondary) = &o.secondary {
            crate::gc::check_can_delete(&secondary.store, o.gc_period).await?;
        }
        let mut tasks = vec![
            tokio::spawn(crate::gc::run_periodically(
                self.store.clone(),
                o.gc.clone(),
                o.gc_period,
                self.snapshotter.saved_revision(),
                parts.clone(),
            )),
            tokio::spawn(crate::defrag::run_periodically(
                self.etcd.clone(),
                o.defrag_schedule.clone(),
                o.events.clone(),
                parts.clone(),
            )),
        ];
        if let Some((schedule, verify)) = &o.verify {
            let mut verify = verify.clone();
            verify.events = o.events.clone();
            tasks.push(tokio::spawn(crate::verify::run_periodically(
                self.store.clone(),
                schedule.clone(),
                verify,
                parts.clone(),
            )));
        }
        if let Some(secondary) = &o.secondary {
            tasks.push(tokio::spawn(crate::copy::sync_periodically(
                self.store.clone(),
                secondary.store.clone(),
                secondary.sync_period,
                o.events.clone(),
                parts.clone(),
            )));
            let mut gc = o.gc.clone();
            gc.is_swift = secondary.store.provider() == Provider::Swift;
            // Nothing uploads to the secondary store in parts, so no chunk is in flight there.
            tasks.push(tokio::spawn(crate::gc::run_periodically(
                secondary.store.clone(),
                gc,
                o.gc_period,
                Arc::new(AtomicI64::new(0)),
                parts.clone(),
            )));
        }
        let result = self.snapshotter.run(stop).await;
        parts.cancel();
        for t in tasks {
            let _ = t.await;
        }
        result
    }
}

//! The snapshotter: a full snapshot on a cron schedule, delta snapshots in between, and
//! recovery from every failure by resuming the chain or starting a new one.
//!
//! One *session* connects to etcd, takes a full snapshot when needed, then watches every key
//! from the last stored revision + 1, flushing a delta every `--delta-snapshot-period` or when
//! the buffer reaches `--delta-snapshot-memory-limit`. A delta uploads in the background while
//! the next one fills, so at most two buffers exist. Any error ends the session; [`Snapshotter::run`]
//! starts a new one after a backoff, resuming the watch from the last stored revision, or with
//! a full snapshot when the chain cannot continue (compacted revisions, a gap, etcd restored
//! to an older revision or to another history). On stop, pending events are flushed before
//! returning.
//!
//! A watch that etcd cancels (compaction) or that delivers nothing for a whole delta period
//! while etcd's revision moves on ends the session too: backups are never silently not made.
//! While a session is failing, [`SnapshotterHandle::is_healthy`] says so (the server's
//! `/healthz` answers 503) and `etcdbr_snapshot_required` is set.
mod chain;
mod delta;
mod full;
mod handle;
mod session;
mod startup;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use chrono::Local;
use etcd_client::{Client, WatchOptions};
use snapstore::{Kind, SnapStore, Snapshot};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use full::{FullSnapshotOptions, take_full_snapshot};
use handle::{Request, refuse};
pub use handle::{SnapshotterHandle, TriggerError};
pub use startup::full_required;

use crate::backoff::ExponentialBackoff;
use crate::delta_format::Event as WatchEvent;
use crate::error::{Error, Result, error_chain};
use crate::etcd::{self, EtcdOptions};
use crate::events::{Event, Events};
use crate::schedule::Schedule;
use delta::Stored;
use session::Session;

/// The delta period below which delta snapshots are disabled (as in the original).
pub const DELTA_PERIOD_THRESHOLD: Duration = Duration::from_secs(1);

/// Snapshotter settings (`--schedule`, `--delta-snapshot-*`, compression, temp dir).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SnapshotterOptions {
    /// Full snapshot schedule.
    pub schedule: Schedule,
    /// Delta period; below one second deltas are disabled.
    pub delta_period: Duration,
    /// Buffered JSON bytes that trigger a delta before the period ends.
    pub delta_memory_limit: usize,
    /// Full snapshot settings (temp dir, compression, timeout).
    pub full: FullSnapshotOptions,
    /// Delay between failed sessions.
    pub backoff: ExponentialBackoff,
    /// Start with a full snapshot (the `snapshot` command) rather than resuming the chain found
    /// in the store (a full snapshot is taken anyway when the store has none).
    pub start_with_full_snapshot: bool,
    /// Who hears about snapshots and failures.
    pub events: Events,
}

impl SnapshotterOptions {
    /// Options with the given schedule and full-snapshot settings, and the original's delta
    /// defaults (20 s, 10 MiB).
    #[must_use]
    pub fn new(schedule: Schedule, full: FullSnapshotOptions) -> SnapshotterOptions {
        SnapshotterOptions {
            schedule,
            delta_period: Duration::from_secs(20),
            delta_memory_limit: 10 * 1024 * 1024,
            full,
            backoff: ExponentialBackoff::default(),
            start_with_full_snapshot: true,
            events: Events::none(),
        }
    }

    /// Whether delta snapshots are taken.
    #[must_use]
    pub fn deltas_enabled(&self) -> bool {
        self.delta_period >= DELTA_PERIOD_THRESHOLD
    }
}

/// Takes full and delta snapshots of one etcd into one store until stopped.
#[derive(Debug)]
pub struct Snapshotter {
    etcd: EtcdOptions,
    store: SnapStore,
    opts: SnapshotterOptions,
    saved: Arc<AtomicI64>,
    /// The events of the last stored revision, when the last snapshot is a delta.
    last_tail: std::sync::Mutex<Option<(i64, Vec<WatchEvent>)>>,
    last_full: std::sync::Mutex<Option<Snapshot>>,
    active: Arc<AtomicBool>,
    /// Set when a session fails, cleared when a snapshot is stored or the watch is current.
    failing: Arc<AtomicBool>,
    tx: mpsc::Sender<Request>,
    requests: tokio::sync::Mutex<mpsc::Receiver<Request>>,
}

/// Clears the active flag when a session ends, however it ends.
pub(super) struct ActiveGuard<'a>(&'a AtomicBool);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl Snapshotter {
    /// A snapshotter; nothing happens until [`Snapshotter::run`].
    #[must_use]
    pub fn new(etcd: EtcdOptions, store: SnapStore, opts: SnapshotterOptions) -> Snapshotter {
        let (tx, rx) = mpsc::channel(8);
        Snapshotter {
            etcd,
            store,
            opts,
            saved: Arc::new(AtomicI64::new(0)),
            last_tail: std::sync::Mutex::new(None),
            last_full: std::sync::Mutex::new(None),
            active: Arc::new(AtomicBool::new(false)),
            failing: Arc::new(AtomicBool::new(false)),
            tx,
            requests: tokio::sync::Mutex::new(rx),
        }
    }

    /// A handle for out-of-schedule snapshots.
    #[must_use]
    pub fn handle(&self) -> SnapshotterHandle {
        SnapshotterHandle {
            tx: self.tx.clone(),
            active: Arc::clone(&self.active),
            failing: Arc::clone(&self.failing),
        }
    }

    /// The last revision stored by this snapshotter (0 before the first snapshot), shared so GC
    /// can tell finished uploads from running ones.
    #[must_use]
    pub fn saved_revision(&self) -> Arc<AtomicI64> {
        Arc::clone(&self.saved)
    }

    /// Runs sessions until `stop` is cancelled, starting with a full snapshot, restarting after
    /// failures with the configured exponential backoff.
    ///
    /// # Errors
    /// Never for failures of etcd or the store (they are retried); only for configuration
    /// errors that a retry cannot fix.
    pub async fn run(&self, stop: CancellationToken) -> Result<()> {
        let mut requests = self.requests.lock().await;
        let mut need_full = self.opts.start_with_full_snapshot || !self.resume_from_store().await;
        let mut backoff = self.opts.backoff.clone();
        loop {
            let started = Instant::now();
            let ended = match Session::open(self, &stop, need_full).await {
                Ok(None) => return Ok(()),
                Ok(Some(session)) => {
                    need_full = false;
                    session.run(&stop, &mut requests).await
                }
                Err(e) => Err(e),
            };
            match ended {
                Ok(()) => return Ok(()),
                Err(e) if e.is_config() => return Err(e),
                Err(e) => {
                    let events = &self.opts.events;
                    events.emit(&Event::SnapshotterFailed { error: &e });
                    self.failing.store(true, Ordering::SeqCst);
                    if e.needs_full_snapshot() {
                        need_full = true;
                    }
                    events.emit(&Event::SnapshotRequired {
                        kind: if need_full { Kind::Full } else { Kind::Incr },
                    });
                    if started.elapsed() > Duration::from_secs(300) {
                        backoff.reset();
                    }
                    let delay = backoff.next_delay();
                    tracing::error!(
                        "Snapshotter failed: {}; {} in {:?}",
                        error_chain(&e),
                        if need_full {
                            "taking a full snapshot"
                        } else {
                            "resuming the delta chain"
                        },
                        delay
                    );
                    let wake = Instant::now() + delay;
                    loop {
                        tokio::select! {
                            () = tokio::time::sleep_until(wake) => break,
                            () = stop.cancelled() => return Ok(()),
                            Some(r) = requests.recv() => refuse(r),
                        }
                    }
                }
            }
        }
    }

    /// Picks up the chain the store ends with; false when there is none to continue or a full
    /// snapshot is due at start-up (see [`full_required`]).
    async fn resume_from_store(&self) -> bool {
        match self.store.latest_set().await {
            Ok(set) => {
                let rev = set.last_revision().map_or(0, etcdbr_types::Revision::get);
                self.saved.store(rev, Ordering::SeqCst);
                if let Ok(mut l) = self.last_full.lock() {
                    l.clone_from(&set.full);
                }
                if let Some(why) =
                    full_required(set.full.as_ref(), &self.opts.schedule, Local::now())
                {
                    tracing::info!("Taking a full snapshot at start-up: {why}");
                    self.opts
                        .events
                        .emit(&Event::SnapshotRequired { kind: Kind::Full });
                    return false;
                }
                if let Some(newest) = set.deltas.last() {
                    match self.read_tail(newest).await {
                        Ok(events) => {
                            if let Ok(mut t) = self.last_tail.lock() {
                                *t = Some((rev, events));
                            }
                        }
                        Err(e) => {
                            tracing::warn!(
                                "Cannot read the newest delta {} to check etcd's history against it: {}; taking a full snapshot",
                                newest.snap_name,
                                error_chain(&e)
                            );
                            return false;
                        }
                    }
                }
                tracing::info!(
                    "Resuming the backup chain of the store at revision {rev} with an initial delta snapshot"
                );
                true
            }
            Err(e) => {
                tracing::warn!(
                    "Cannot list the store to resume its chain: {}; taking a full snapshot",
                    error_chain(&e)
                );
                false
            }
        }
    }

    /// The events of the last revision of a stored delta.
    async fn read_tail(&self, delta: &Snapshot) -> Result<Vec<WatchEvent>> {
        crate::restore::for_each_delta_event(
            &self.store,
            delta,
            Vec::new(),
            |tail: &mut Vec<WatchEvent>, e| {
                if tail
                    .last()
                    .is_some_and(|l| l.mod_revision != e.mod_revision)
                {
                    tail.clear();
                }
                tail.push(e);
                Ok(())
            },
        )
        .await
    }

    fn next_full(&self) -> Result<Instant> {
        let now = Local::now();
        let next = self
            .opts
            .schedule
            .next_after(now)
            .ok_or_else(|| Error::NeverFires {
                spec: self.opts.schedule.spec().to_owned(),
            })?;
        tracing::info!("Will take next full snapshot at time: {next}");
        let wait = (next - now).to_std().unwrap_or_default();
        Ok(Instant::now() + wait)
    }

    async fn full(&self, client: &mut Client, is_final: bool) -> Result<Snapshot> {
        tracing::info!("Taking scheduled full snapshot for time: {}", Local::now());
        let s = take_full_snapshot(
            client,
            &self.store,
            &self.opts.full,
            is_final,
            &self.opts.events,
        )
        .await?;
        self.remember(&Stored {
            snapshot: s.clone(),
            tail: None,
        });
        if let Ok(mut l) = self.last_full.lock() {
            *l = Some(s.clone());
        }
        Ok(s)
    }

    /// A full snapshot asked for over HTTP; a final one is skipped when the previous full
    /// snapshot is final and etcd has not moved since.
    async fn full_on_demand(&self, client: &mut Client, is_final: bool) -> Result<Snapshot> {
        let prev = self.last_full.lock().ok().and_then(|l| l.clone());
        if is_final && let Some(prev) = prev.filter(|p| p.is_final) {
            let current = etcd::current_revision(client, self.etcd.connection_timeout).await?;
            if current == prev.last_revision.get() {
                tracing::info!(
                    "Skipping the final full snapshot: {} is final and at etcd's revision {current}",
                    prev.snap_name
                );
                return Ok(prev);
            }
        }
        self.full(client, is_final).await
    }

    async fn open_watch(&self, client: &Client, from: i64) -> Result<etcd_client::WatchStream> {
        let opts = WatchOptions::new()
            .with_all_keys()
            .with_start_revision(from);
        let w = etcd::watch_client(client)
            .watch("", Some(opts))
            .await
            .map_err(|e| Error::Etcd {
                op: "watch",
                source: e,
            })?;
        tracing::info!("Applied watch on etcd from revision: {from}");
        Ok(w)
    }

    /// Records a finished delta upload: the chain's revision and the events of its last
    /// revision move on, and the snapshotter is healthy again.
    fn record(
        &self,
        done: std::result::Result<Result<Stored>, tokio::task::JoinError>,
    ) -> Result<Snapshot> {
        let stored = done.map_err(|e| Error::Io {
            what: "delta upload task".into(),
            source: std::io::Error::other(e),
        })??;
        self.remember(&stored);
        Ok(stored.snapshot)
    }

    /// The last stored snapshot (and its last revision's events, when known) is where the next
    /// session resumes.
    fn remember(&self, stored: &Stored) {
        let rev = stored.snapshot.last_revision.get();
        self.saved.store(rev, Ordering::SeqCst);
        if let Ok(mut t) = self.last_tail.lock() {
            *t = stored.tail.clone().map(|events| (rev, events));
        }
        self.failing.store(false, Ordering::SeqCst);
    }
}

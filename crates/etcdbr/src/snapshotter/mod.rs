//! The snapshotter: a full snapshot on a cron schedule, delta snapshots in between, and
//! recovery from every failure by resuming the chain or starting a new one.
//!
//! One *session* connects to etcd, takes a full snapshot when needed, then watches every key
//! from the last stored revision + 1, flushing a delta every `--delta-snapshot-period` or when
//! the buffer reaches `--delta-snapshot-memory-limit`. A delta uploads in the background while
//! the next one fills, so at most two buffers exist. Any error ends the session; [`Snapshotter::run`]
//! starts a new one after a backoff, resuming the watch from the last stored revision, or with
//! a full snapshot when the chain cannot continue (compacted revisions, a gap, etcd restored
//! to an older revision). On stop, pending events are flushed before returning.

mod delta;
mod full;
mod handle;
mod startup;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use chrono::Local;
use etcd_client::{Client, WatchOptions};
use snapstore::{SnapStore, Snapshot};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use full::{FullSnapshotOptions, take_full_snapshot};
use handle::{Request, answer, refuse};
pub use handle::{SnapshotterHandle, TriggerError};
pub use startup::full_required;

use crate::backoff::ExponentialBackoff;
use crate::error::{Error, Result};
use crate::etcd::{self, EtcdOptions};
use crate::schedule::Schedule;
use delta::{DeltaChain, PendingDelta};

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
    last_full: std::sync::Mutex<Option<Snapshot>>,
    active: Arc<AtomicBool>,
    tx: mpsc::Sender<Request>,
    requests: tokio::sync::Mutex<mpsc::Receiver<Request>>,
}

/// Clears the active flag when a session ends, however it ends.
struct ActiveGuard<'a>(&'a AtomicBool);

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
            last_full: std::sync::Mutex::new(None),
            active: Arc::new(AtomicBool::new(false)),
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
            match self.session(&stop, &mut need_full, &mut requests).await {
                Ok(()) => return Ok(()),
                Err(e @ Error::Config(_)) => return Err(e),
                Err(e) => {
                    crate::metrics::record_failure(&e);
                    if e.needs_full_snapshot() {
                        need_full = true;
                    }
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
                    crate::metrics::metrics()
                        .snapshot_required
                        .set(&[crate::metrics::KIND_FULL], 1.0);
                    return false;
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

    async fn session(
        &self,
        stop: &CancellationToken,
        need_full: &mut bool,
        requests: &mut mpsc::Receiver<Request>,
    ) -> Result<()> {
        let mut client = tokio::select! {
            c = self.etcd.connect() => c?,
            () = stop.cancelled() => return Ok(()),
        };
        let _active = ActiveGuard(&self.active);
        let saved = self.saved.load(Ordering::SeqCst);
        if !*need_full && saved > 0 {
            let current = etcd::current_revision(&mut client, self.etcd.connection_timeout).await?;
            if current < saved {
                let e = Error::RevisionWentBack { current, saved };
                tracing::warn!("{e}; taking a full snapshot");
                *need_full = true;
            }
        }
        let resumed = !(*need_full || saved == 0);
        if !resumed {
            self.full(&mut client, false).await?;
            *need_full = false;
        }
        let mut next_full = self.next_full()?;
        self.active.store(true, Ordering::SeqCst);

        if !self.opts.deltas_enabled() {
            tracing::info!("Delta snapshots are disabled (--delta-snapshot-period below 1s)");
            loop {
                tokio::select! {
                    () = stop.cancelled() => return Ok(()),
                    () = tokio::time::sleep_until(next_full) => {
                        self.full(&mut client, false).await?;
                        next_full = self.next_full()?;
                    }
                    Some(r) = requests.recv() => match r {
                        Request::Full { is_final, reply } => {
                            answer(reply, self.full_on_demand(&mut client, is_final).await)?;
                            next_full = self.next_full()?;
                        }
                        Request::Delta { reply } => {
                            let _ = reply.send(Err("delta snapshots are disabled (--delta-snapshot-period below 1s)".into()));
                        }
                    },
                }
            }
        }

        let mut chain = DeltaChain::new(self.saved.load(Ordering::SeqCst));
        let mut watch = self.open_watch(&client, chain.seen_revision() + 1).await?;
        let mut next_delta = Instant::now() + self.opts.delta_period;
        let mut inflight: Option<JoinHandle<Result<Snapshot>>> = None;
        if resumed {
            // The initial delta: everything written since the store's last snapshot.
            self.catch_up(&mut client, &mut watch, &mut chain).await;
            self.flush(&mut chain, &mut inflight).await?;
            if let Some(h) = inflight.take() {
                self.finish_upload(h).await?;
            }
        }
        loop {
            tokio::select! {
                () = stop.cancelled() => {
                    tracing::info!("Stop requested: saving the pending delta snapshot before exiting.");
                    self.catch_up(&mut client, &mut watch, &mut chain).await;
                    self.flush(&mut chain, &mut inflight).await?;
                    if let Some(h) = inflight.take() {
                        self.finish_upload(h).await?;
                    }
                    return Ok(());
                }
                () = tokio::time::sleep_until(next_full) => {
                    if let Some(h) = inflight.take() {
                        self.finish_upload(h).await?;
                    }
                    drop(watch);
                    self.full(&mut client, false).await?;
                    chain = DeltaChain::new(self.saved.load(Ordering::SeqCst));
                    watch = self.open_watch(&client, chain.seen_revision() + 1).await?;
                    next_full = self.next_full()?;
                    next_delta = Instant::now() + self.opts.delta_period;
                }
                () = tokio::time::sleep_until(next_delta) => {
                    self.flush(&mut chain, &mut inflight).await?;
                    next_delta = Instant::now() + self.opts.delta_period;
                }
                done = async { inflight.as_mut().expect("guarded").await }, if inflight.is_some() => {
                    inflight = None;
                    self.record(done)?;
                }
                Some(r) = requests.recv() => match r {
                    Request::Full { is_final, reply } => {
                        if let Some(h) = inflight.take() {
                            self.finish_upload(h).await?;
                        }
                        drop(watch);
                        answer(reply, self.full_on_demand(&mut client, is_final).await)?;
                        chain = DeltaChain::new(self.saved.load(Ordering::SeqCst));
                        watch = self.open_watch(&client, chain.seen_revision() + 1).await?;
                        next_full = self.next_full()?;
                        next_delta = Instant::now() + self.opts.delta_period;
                    }
                    Request::Delta { reply } => {
                        if let Some(h) = inflight.take() {
                            self.finish_upload(h).await?;
                        }
                        self.catch_up(&mut client, &mut watch, &mut chain).await;
                        self.flush(&mut chain, &mut inflight).await?;
                        let r = match inflight.take() {
                            Some(h) => self.finish_upload(h).await.map(Some),
                            None => Ok(None),
                        };
                        answer(reply, r)?;
                        next_delta = Instant::now() + self.opts.delta_period;
                    }
                },
                msg = watch.message() => {
                    let resp = msg.map_err(|e| Error::Etcd { op: "watch", source: e })?
                        .ok_or_else(|| Error::Watch("stream ended".into()))?;
                    if resp.canceled() {
                        if resp.compact_revision() > 0 {
                            return Err(Error::Compacted { wanted: chain.seen_revision() + 1, compact_revision: resp.compact_revision() });
                        }
                        return Err(Error::Watch(format!("was cancelled by etcd: {}", resp.cancel_reason())));
                    }
                    for ev in resp.events() {
                        chain.push(&delta::from_watch(ev)?)?;
                    }
                    if chain.len() >= self.opts.delta_memory_limit {
                        tracing::info!("Delta events memory crossed the memory limit: {} Bytes", chain.len());
                        self.flush(&mut chain, &mut inflight).await?;
                        next_delta = Instant::now() + self.opts.delta_period;
                    }
                }
            }
        }
    }

    /// Before a final flush, reads the watch until it reaches the revision etcd is at now, so
    /// every write acknowledged before the stop is saved. Bounded by the connection timeout
    /// (at most 10 s); on failure whatever was received is saved.
    async fn catch_up(
        &self,
        client: &mut Client,
        watch: &mut etcd_client::WatchStream,
        chain: &mut DeltaChain,
    ) {
        let limit = self.etcd.connection_timeout.min(Duration::from_secs(10));
        let work = async {
            let target = etcd::current_revision(client, limit).await?;
            while chain.seen_revision() < target {
                let resp = watch
                    .message()
                    .await
                    .map_err(|e| Error::Etcd {
                        op: "watch",
                        source: e,
                    })?
                    .ok_or_else(|| Error::Watch("stream ended".into()))?;
                for ev in resp.events() {
                    chain.push(&delta::from_watch(ev)?)?;
                }
            }
            Ok::<(), Error>(())
        };
        match tokio::time::timeout(limit, work).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(
                "Could not read the last events before stopping: {}",
                error_chain(&e)
            ),
            Err(_) => {
                tracing::warn!("Could not read the last events before stopping within {limit:?}")
            }
        }
    }

    fn next_full(&self) -> Result<Instant> {
        let now = Local::now();
        let next = self.opts.schedule.next_after(now).ok_or_else(|| {
            Error::Config(format!(
                "the full snapshot schedule {:?} never fires again",
                self.opts.schedule.spec()
            ))
        })?;
        tracing::info!("Will take next full snapshot at time: {next}");
        let wait = (next - now).to_std().unwrap_or_default();
        Ok(Instant::now() + wait)
    }

    async fn full(&self, client: &mut Client, is_final: bool) -> Result<Snapshot> {
        tracing::info!("Taking scheduled full snapshot for time: {}", Local::now());
        let s = take_full_snapshot(client, &self.store, &self.opts.full, is_final).await?;
        self.saved.store(s.last_revision.get(), Ordering::SeqCst);
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

    /// Starts uploading the buffered events (after the previous upload finished).
    async fn flush(
        &self,
        chain: &mut DeltaChain,
        inflight: &mut Option<JoinHandle<Result<Snapshot>>>,
    ) -> Result<()> {
        tracing::info!("Taking delta snapshot for time: {}", Local::now());
        let Some(pending): Option<PendingDelta> = chain.take() else {
            tracing::info!("No events received to save snapshot. Skipping delta snapshot.");
            return Ok(());
        };
        if let Some(h) = inflight.take() {
            self.finish_upload(h).await?;
        }
        let store = self.store.clone();
        *inflight = Some(tokio::spawn(delta::upload(
            store,
            pending,
            self.opts.full.compression,
        )));
        Ok(())
    }

    async fn finish_upload(&self, h: JoinHandle<Result<Snapshot>>) -> Result<Snapshot> {
        self.record(h.await)
    }

    fn record(
        &self,
        done: std::result::Result<Result<Snapshot>, tokio::task::JoinError>,
    ) -> Result<Snapshot> {
        let s = done.map_err(|e| Error::Io {
            what: "delta upload task".into(),
            source: std::io::Error::other(e),
        })??;
        self.saved.store(s.last_revision.get(), Ordering::SeqCst);
        Ok(s)
    }
}

/// An error and its causes on one line, for logs.
#[must_use]
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

//! One session of the snapshotter: connected to etcd, it takes the full snapshot it needs,
//! then keeps the delta chain going (when deltas are enabled) until it is stopped or fails.
//! Its steps are the handlers of one loop: the full snapshot schedule, the delta period, a
//! finished upload, an out-of-schedule request, a watch message, and the stop.

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Local;
use etcd_client::Client;
use snapstore::Snapshot;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::chain::{Chain, WatchProgress, watch_response};
use super::delta::{self, DeltaChain, PendingDelta, Stored};
use super::handle::{Request, answer};
use super::{ActiveGuard, Snapshotter};
use crate::error::{Error, Result};
use crate::error_chain;
use crate::etcd;
use crate::events::Event;

/// A connected session.
pub(super) struct Session<'a> {
    snapshotter: &'a Snapshotter,
    client: Client,
    /// Whether the session continues the stored chain (no full snapshot was taken at its start).
    resumed: bool,
    next_full: Instant,
    /// The delta chain; `None` when deltas are disabled.
    chain: Option<Chain>,
    _active: ActiveGuard<'a>,
}

impl<'a> Session<'a> {
    /// Connects to etcd and takes the full snapshot the session starts with when `need_full`,
    /// when nothing is stored yet, or when etcd's revision went below the stored one. `None`
    /// when stopped while connecting.
    pub(super) async fn open(
        snapshotter: &'a Snapshotter,
        stop: &CancellationToken,
        need_full: bool,
    ) -> Result<Option<Session<'a>>> {
        let s = snapshotter;
        let mut client = tokio::select! {
            c = s.etcd.connect() => c?,
            () = stop.cancelled() => return Ok(None),
        };
        let active = ActiveGuard(&s.active);
        let saved = s.saved.load(Ordering::SeqCst);
        let mut need_full = need_full || saved == 0;
        if !need_full {
            let current = etcd::current_revision(&mut client, s.etcd.connection_timeout).await?;
            if current < saved {
                let e = Error::RevisionWentBack { current, saved };
                tracing::warn!("{e}; taking a full snapshot");
                need_full = true;
            }
        }
        if need_full {
            s.full(&mut client, false).await?;
        }
        Ok(Some(Session {
            snapshotter,
            client,
            resumed: !need_full,
            next_full: s.next_full()?,
            chain: None,
            _active: active,
        }))
    }

    /// Runs until `stop` (after saving the pending events) or a failure.
    pub(super) async fn run(
        mut self,
        stop: &CancellationToken,
        requests: &mut mpsc::Receiver<Request>,
    ) -> Result<()> {
        let s = self.snapshotter;
        s.active.store(true, Ordering::SeqCst);
        if s.opts.deltas_enabled() {
            self.chain = Some(self.start_chain(self.resumed).await?);
            if self.resumed {
                // The initial delta: everything written since the store's last snapshot.
                self.save_pending().await?;
            }
        } else {
            tracing::info!("Delta snapshots are disabled (--delta-snapshot-period below 1s)");
        }
        s.failing.store(false, Ordering::SeqCst);
        loop {
            let next_delta = self.chain.as_ref().map(|c| c.next_delta);
            let (watch, inflight) = match self.chain.as_mut() {
                Some(c) => (Some(&mut c.watch), c.inflight.as_mut()),
                None => (None, None),
            };
            tokio::select! {
                () = stop.cancelled() => return self.stop().await,
                () = tokio::time::sleep_until(self.next_full) => self.scheduled_full().await?,
                () = sleep_until(next_delta) => self.delta_period().await?,
                done = async { inflight.expect("guarded").await }, if inflight.is_some() => {
                    self.uploaded(done)?;
                }
                Some(r) = requests.recv() => self.request(r).await?,
                msg = async { watch.expect("guarded").message().await }, if watch.is_some() => {
                    self.watch_message(msg).await?;
                }
            }
        }
    }

    fn chain(&mut self) -> &mut Chain {
        self.chain
            .as_mut()
            .expect("only called with deltas enabled")
    }

    /// Saves the pending events before the session ends.
    async fn stop(mut self) -> Result<()> {
        if self.chain.is_some() {
            tracing::info!("Stop requested: saving the pending delta snapshot before exiting.");
            if let Err(e) = self.save_pending().await {
                tracing::error!(
                    "Not every event before the stop was saved: {}",
                    error_chain(&e)
                );
            }
        }
        Ok(())
    }

    /// The schedule's full snapshot; the chain restarts after it.
    async fn scheduled_full(&mut self) -> Result<()> {
        self.drain_upload().await?;
        self.chain = None;
        self.snapshotter.full(&mut self.client, false).await?;
        self.restart_chain().await
    }

    /// A full snapshot asked for over HTTP; the chain and the schedule restart after it.
    async fn full_on_demand(&mut self, is_final: bool) -> Result<Snapshot> {
        self.drain_upload().await?;
        self.chain = None;
        let full = self
            .snapshotter
            .full_on_demand(&mut self.client, is_final)
            .await?;
        self.restart_chain().await?;
        Ok(full)
    }

    /// Starts a new chain after the full snapshot just taken (when deltas are enabled), and
    /// the schedule from now.
    async fn restart_chain(&mut self) -> Result<()> {
        if self.snapshotter.opts.deltas_enabled() {
            self.chain = Some(self.start_chain(false).await?);
        }
        self.next_full = self.snapshotter.next_full()?;
        Ok(())
    }

    /// Starts the delta chain after the last stored snapshot. A resumed chain whose last delta's
    /// events are known watches from that delta's revision, to check that etcd still has the
    /// history the store has.
    async fn start_chain(&self, resumed: bool) -> Result<Chain> {
        let s = self.snapshotter;
        let saved = s.saved.load(Ordering::SeqCst);
        let mut deltas = DeltaChain::new(saved);
        let tail = s
            .last_tail
            .lock()
            .ok()
            .and_then(|t| t.clone())
            .filter(|(rev, _)| resumed && *rev == saved);
        let from = match tail {
            Some((_, events)) => {
                deltas.expect(events);
                saved
            }
            None => saved + 1,
        };
        let watch = s.open_watch(&self.client, from).await?;
        Ok(Chain {
            watch,
            deltas,
            inflight: None,
            next_delta: Instant::now() + s.opts.delta_period,
            progress: WatchProgress::new(saved),
        })
    }

    /// The end of a delta period: the watch is checked for progress, then its events flushed.
    async fn delta_period(&mut self) -> Result<()> {
        self.check_progress().await?;
        self.flush().await
    }

    /// An out-of-schedule snapshot, answered to its requester.
    async fn request(&mut self, r: Request) -> Result<()> {
        match r {
            Request::Full { is_final, reply } => answer(reply, self.full_on_demand(is_final).await),
            Request::Delta { reply } if self.chain.is_none() => {
                let _ = reply.send(Err(
                    "delta snapshots are disabled (--delta-snapshot-period below 1s)".into(),
                ));
                Ok(())
            }
            Request::Delta { reply } => answer(reply, self.save_pending().await),
        }
    }

    /// A message of the watch: its events join the buffer, flushed early when it reaches the
    /// memory limit.
    async fn watch_message(&mut self, msg: WatchMessage) -> Result<()> {
        let limit = self.snapshotter.opts.delta_memory_limit;
        let chain = self.chain();
        let resp = watch_response(msg, chain.deltas.seen_revision())?;
        for ev in resp.events() {
            chain.deltas.push(&delta::from_watch(ev)?)?;
        }
        if chain.deltas.len() >= limit {
            tracing::info!(
                "Delta events memory crossed the memory limit: {} Bytes",
                chain.deltas.len()
            );
            self.flush().await?;
        }
        Ok(())
    }

    /// A delta upload finished.
    fn uploaded(&mut self, done: UploadResult) -> Result<()> {
        self.chain().inflight = None;
        self.snapshotter.record(done).map(|_| ())
    }

    /// Waits for the delta upload in flight, if any.
    async fn drain_upload(&mut self) -> Result<Option<Snapshot>> {
        match self.chain.as_mut().and_then(|c| c.inflight.take()) {
            Some(h) => self.snapshotter.record(h.await).map(Some),
            None => Ok(None),
        }
    }

    /// Starts uploading the buffered events (after the previous upload finished); the next
    /// period starts now.
    async fn flush(&mut self) -> Result<()> {
        let s = self.snapshotter;
        let chain = self.chain();
        chain.next_delta = Instant::now() + s.opts.delta_period;
        tracing::info!("Taking delta snapshot for time: {}", Local::now());
        let Some(pending): Option<PendingDelta> = chain.deltas.take() else {
            tracing::info!("No events received to save snapshot. Skipping delta snapshot.");
            s.opts.events.emit(&Event::DeltaSkipped);
            return Ok(());
        };
        self.drain_upload().await?;
        self.chain().inflight = Some(tokio::spawn(delta::upload(
            s.store.clone(),
            pending,
            s.opts.full.compression,
            s.opts.events.clone(),
        )));
        Ok(())
    }

    /// Saves everything etcd acknowledged so far: reads the watch up to etcd's current revision,
    /// then uploads it as a delta and waits for the upload (the initial delta, `/snapshot/delta`,
    /// and the last one before stopping). The events read are saved even when the watch fails
    /// before reaching etcd's revision; the error is returned after. A watch that is still
    /// behind when the time is up but moved meanwhile is not an error: what it delivered is
    /// saved and the rest follows (etcd delivers watch events slower than it takes writes on a
    /// saturated machine); it is logged.
    async fn save_pending(&mut self) -> Result<Option<Snapshot>> {
        let caught_up = self.catch_up().await;
        self.flush().await?;
        let saved = self.drain_upload().await?;
        if let Ok(Some(target)) = caught_up {
            let seen = self.chain().deltas.seen_revision();
            tracing::warn!(
                "The watch reached revision {seen} of etcd's {target} in the time allowed; the {} revisions after it are saved with the next delta",
                target - seen
            );
        }
        caught_up.map(|_| saved)
    }

    /// Reads the watch until it reaches the revision etcd is at now, bounded by the connection
    /// timeout (at most 10 s). Returns etcd's revision when the watch moved but did not reach
    /// it in time; a watch that did not move at all while behind is stalled, an error.
    async fn catch_up(&mut self) -> Result<Option<i64>> {
        let limit = self
            .snapshotter
            .etcd
            .connection_timeout
            .min(Duration::from_secs(10));
        let target = etcd::current_revision(&mut self.client, limit).await?;
        let chain = self.chain();
        let start = chain.deltas.seen_revision();
        let read = async {
            while chain.deltas.seen_revision() < target {
                let resp =
                    watch_response(chain.watch.message().await, chain.deltas.seen_revision())?;
                for ev in resp.events() {
                    chain.deltas.push(&delta::from_watch(ev)?)?;
                }
            }
            Ok(None)
        };
        let read = tokio::time::timeout(limit, read).await;
        let seen = self.chain().deltas.seen_revision();
        match read {
            Ok(r) => r,
            Err(_) if seen > start => Ok(Some(target)),
            Err(_) => Err(Error::WatchStalled {
                seen,
                current: target,
                period: limit,
            }),
        }
    }

    /// At each delta period: a watch that delivered nothing during a whole period while etcd's
    /// revision was ahead of it is stalled, an error (the next session takes a full snapshot).
    /// etcd is only asked when the watch did not move.
    async fn check_progress(&mut self) -> Result<()> {
        let s = self.snapshotter;
        let seen = self.chain().deltas.seen_revision();
        if self.chain().progress.moved(seen) {
            return Ok(());
        }
        let current = etcd::current_revision(&mut self.client, s.etcd.connection_timeout).await?;
        if self.chain().progress.stalled(seen, current) {
            return Err(Error::WatchStalled {
                seen,
                current,
                period: s.opts.delta_period,
            });
        }
        if current <= seen {
            // Nothing to save and the watch is current: backups are being made.
            s.failing.store(false, Ordering::SeqCst);
            s.opts.events.emit(&Event::SnapshotterCurrent);
        }
        Ok(())
    }
}

/// A watch message as the stream yields it.
type WatchMessage = std::result::Result<Option<etcd_client::WatchResponse>, etcd_client::Error>;

/// A finished delta upload task.
type UploadResult = std::result::Result<Result<Stored>, tokio::task::JoinError>;

/// Sleeps until `at`, or for ever without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

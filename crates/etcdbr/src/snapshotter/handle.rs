//! Out-of-schedule snapshots: the server's `/snapshot/full` and `/snapshot/delta` reach the
//! running session through a [`SnapshotterHandle`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use snapstore::Snapshot;
use tokio::sync::{mpsc, oneshot};

use crate::error::Result;
use crate::error_chain;

/// An out-of-schedule snapshot asked for through a [`SnapshotterHandle`].
#[derive(Debug)]
pub(super) enum Request {
    Full {
        is_final: bool,
        reply: oneshot::Sender<std::result::Result<Snapshot, String>>,
    },
    Delta {
        reply: oneshot::Sender<std::result::Result<Option<Snapshot>, String>>,
    },
}

/// Asks a running [`Snapshotter`](super::Snapshotter) for snapshots out of schedule (the server's
/// `/snapshot/full` and `/snapshot/delta`).
#[derive(Debug, Clone)]
pub struct SnapshotterHandle {
    pub(super) tx: mpsc::Sender<Request>,
    pub(super) active: Arc<AtomicBool>,
    pub(super) failing: Arc<AtomicBool>,
}

/// Why an out-of-schedule snapshot was not taken.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TriggerError {
    /// No session is running (etcd unreachable, waiting to retry, or stopped).
    #[error("the snapshotter is not active")]
    NotActive,
    /// The snapshot failed.
    #[error("{0}")]
    Failed(String),
}

impl SnapshotterHandle {
    /// Whether a session is running and accepting requests.
    #[must_use]
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::SeqCst)
    }

    /// Whether backups are being made: false after a session failed (etcd unreachable, a
    /// stalled or compacted watch, a store error) until a snapshot is stored again or the watch
    /// is found current.
    #[must_use]
    pub fn is_healthy(&self) -> bool {
        !self.failing.load(Ordering::SeqCst)
    }

    /// Takes a full snapshot now (final: named `.final`, as before hibernation); the regular
    /// schedule restarts from it. A final snapshot is skipped when the previous full snapshot is
    /// final and at etcd's current revision; that one is returned.
    ///
    /// # Errors
    /// [`TriggerError`].
    pub async fn full(&self, is_final: bool) -> std::result::Result<Snapshot, TriggerError> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Full { is_final, reply }).await?;
        rx.await
            .map_err(|_| TriggerError::NotActive)?
            .map_err(TriggerError::Failed)
    }

    /// Saves the events received so far (up to etcd's current revision) as a delta now;
    /// `None` when there were none.
    ///
    /// # Errors
    /// [`TriggerError`]; also when deltas are disabled.
    pub async fn delta(&self) -> std::result::Result<Option<Snapshot>, TriggerError> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Delta { reply }).await?;
        rx.await
            .map_err(|_| TriggerError::NotActive)?
            .map_err(TriggerError::Failed)
    }

    async fn send(&self, r: Request) -> std::result::Result<(), TriggerError> {
        if !self.is_active() {
            return Err(TriggerError::NotActive);
        }
        self.tx.send(r).await.map_err(|_| TriggerError::NotActive)
    }
}

/// Sends the outcome of an on-demand snapshot to its requester and hands the error (which ends
/// the session, as a failed scheduled snapshot does) back to the caller.
pub(super) fn answer<T: Clone>(
    reply: oneshot::Sender<std::result::Result<T, String>>,
    r: Result<T>,
) -> Result<()> {
    match r {
        Ok(v) => {
            let _ = reply.send(Ok(v));
            Ok(())
        }
        Err(e) => {
            let _ = reply.send(Err(error_chain(&e)));
            Err(e)
        }
    }
}

pub(super) fn refuse(r: Request) {
    match r {
        Request::Full { reply, .. } => {
            let _ = reply.send(Err(TriggerError::NotActive.to_string()));
        }
        Request::Delta { reply } => {
            let _ = reply.send(Err(TriggerError::NotActive.to_string()));
        }
    }
}

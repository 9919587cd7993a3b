//! A session's delta chain: the watch, the buffered events, the upload in flight, and how the
//! session judges the watch (each message checked for cancellation; its progress once a delta
//! period).

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::delta::{DeltaChain, Stored};
use crate::error::{Error, Result};

/// A session's delta chain: the watch, the buffered events, the upload in flight, the delta
/// timer and the watch's progress.
pub(super) struct Chain {
    pub(super) watch: etcd_client::WatchStream,
    pub(super) deltas: DeltaChain,
    pub(super) inflight: Option<JoinHandle<Result<Stored>>>,
    pub(super) next_delta: Instant,
    pub(super) progress: WatchProgress,
}

/// Whether a watch keeps up with etcd, judged once a delta period.
#[derive(Debug)]
pub(super) struct WatchProgress {
    /// The revision the watch had reached at the last check.
    seen: i64,
    /// Whether etcd was ahead of a watch that did not move at the last check.
    behind: bool,
}

impl WatchProgress {
    pub(super) fn new(seen: i64) -> WatchProgress {
        WatchProgress {
            seen,
            behind: false,
        }
    }

    /// Whether the watch moved since the last check (then etcd need not be asked).
    pub(super) fn moved(&mut self, seen: i64) -> bool {
        if seen > self.seen {
            self.seen = seen;
            self.behind = false;
            return true;
        }
        false
    }

    /// Whether a watch that did not move is stalled: etcd at `current` is ahead of it now and
    /// was at the previous check too.
    pub(super) fn stalled(&mut self, seen: i64, current: i64) -> bool {
        let was_behind = std::mem::replace(&mut self.behind, current > seen);
        was_behind && self.behind
    }
}

/// One message of the watch, or why the watch cannot go on: a failed or ended stream, or a
/// watch etcd cancelled (compacted past `seen + 1`, or for another reason).
pub(super) fn watch_response(
    msg: std::result::Result<Option<etcd_client::WatchResponse>, etcd_client::Error>,
    seen: i64,
) -> Result<etcd_client::WatchResponse> {
    let resp = msg
        .map_err(|e| Error::Etcd {
            op: "watch",
            source: e,
        })?
        .ok_or_else(|| Error::Watch("stream ended".into()))?;
    if resp.canceled() {
        if resp.compact_revision() > 0 {
            return Err(Error::Compacted {
                wanted: seen + 1,
                compact_revision: resp.compact_revision(),
            });
        }
        return Err(Error::Watch(format!(
            "was cancelled by etcd: {}",
            resp.cancel_reason()
        )));
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::WatchProgress;

    #[test]
    fn a_watch_is_stalled_after_a_whole_period_behind_without_moving() {
        let mut p = WatchProgress::new(10);
        // Idle: etcd is where the watch is.
        assert!(!p.moved(10));
        assert!(!p.stalled(10, 10));
        // etcd moved on once: not yet (the events may be on their way).
        assert!(!p.moved(10));
        assert!(!p.stalled(10, 12));
        // Still nothing a period later: stalled.
        assert!(!p.moved(10));
        assert!(p.stalled(10, 13));
        // A watch that moves is never stalled, however far behind.
        let mut p = WatchProgress::new(10);
        assert!(!p.stalled(10, 500));
        assert!(p.moved(11));
        assert!(p.moved(12));
        assert!(!p.moved(12));
        assert!(!p.stalled(12, 500));
    }
}

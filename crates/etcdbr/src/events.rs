//! What the engine tells its observers: the engine emits typed [`Event`]s, and whatever needs
//! to know (the Prometheus metrics, Kubernetes Leases, a progress bar, a test) implements
//! [`Observer`] and is passed in through the options as part of an [`Events`]. The engine holds
//! no global state for them; with no observer, events go nowhere.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use etcdbr_types::Revision;
use snapstore::{Kind, Snapshot};

use crate::error::Error;

/// Something the engine did.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A full or delta snapshot was stored.
    SnapshotSaved {
        /// What was stored.
        snapshot: &'a Snapshot,
        /// How long taking and storing it took.
        took: Duration,
    },
    /// Taking or storing a snapshot failed.
    SnapshotFailed {
        /// Full or delta.
        kind: Kind,
        /// How long it ran.
        took: Duration,
    },
    /// A snapshot of this kind is needed and not made yet: the session failed (a full snapshot
    /// when the chain cannot continue), or a full snapshot is due at start-up.
    SnapshotRequired {
        /// Full or delta.
        kind: Kind,
    },
    /// A snapshotter session failed; the next one starts after a backoff.
    SnapshotterFailed {
        /// Why.
        error: &'a Error,
    },
    /// The watch is current and there is nothing to save: backups are being made.
    SnapshotterCurrent,
    /// A delta period ended with no events to save: the chain is current without a new delta
    /// (the delta snapshot Lease is renewed on it, as after a delta).
    DeltaSkipped,
    /// GC tried to delete an object.
    GcDeleted {
        /// The object.
        snapshot: &'a Snapshot,
        /// Whether the delete succeeded.
        ok: bool,
    },
    /// A member was defragmented.
    Defragmented {
        /// Its client URL.
        endpoint: &'a str,
        /// How long it took.
        took: Duration,
        /// Whether it succeeded.
        ok: bool,
    },
    /// The data directory was validated.
    Validated {
        /// How long it took.
        took: Duration,
        /// Whether the verdict allows going on (kept or restored, not refused).
        ok: bool,
    },
    /// The data directory was restored (a single member), or the member replaced by a learner.
    Restored {
        /// Replaced in a multi-member cluster rather than restored.
        member_replaced: bool,
        /// How long it took.
        took: Duration,
        /// Whether it succeeded.
        ok: bool,
    },
    /// A restore chose its backup set and starts fetching it.
    RestoreStarted {
        /// The base (full) snapshot.
        full: &'a Snapshot,
        /// Deltas to apply after it.
        deltas: usize,
        /// The revision the restore will reach (for a target time: the chain's last, at most).
        revision: Revision,
        /// The base's revision.
        base: Revision,
        /// The full snapshot's size as stored, when the store says.
        full_bytes: Option<u64>,
    },
    /// Bytes were read from the store since the last such event (restore, verify, compact):
    /// reported every few MiB, for progress.
    Fetched {
        /// Bytes as stored (compressed).
        bytes: u64,
    },
    /// A restore applied one delta of its chain.
    DeltaApplied {
        /// The delta.
        snapshot: &'a Snapshot,
        /// Deltas applied so far, this one included (1-based).
        applied: usize,
        /// Deltas in the chain.
        of: usize,
        /// The revision restored so far.
        revision: Revision,
    },
    /// A restore finished building the data directory (before it is swapped in).
    RestoreBuilt {
        /// The revision restored.
        revision: Revision,
        /// How long it took.
        took: Duration,
    },
    /// A verification run finished.
    Verified {
        /// Backup sets verified.
        sets: usize,
        /// The kind of the first failure (`None`: every set verified).
        failure: Option<&'static str>,
        /// How long the run took.
        took: Duration,
    },
    /// A copy chose the objects it copies.
    CopyPlanned {
        /// Objects to copy.
        objects: usize,
    },
    /// Copying an object to the destination store was tried.
    ObjectCopied {
        /// The source object.
        snapshot: &'a Snapshot,
        /// Bytes copied (as stored).
        bytes: u64,
        /// Whether the copy succeeded.
        ok: bool,
    },
    /// The member was added to its cluster as a learner.
    LearnerAdded {
        /// How long the call took.
        took: Duration,
        /// Whether it succeeded.
        ok: bool,
    },
    /// The member was removed from its cluster.
    MemberRemoved {
        /// How long the call took.
        took: Duration,
        /// Whether it succeeded.
        ok: bool,
    },
    /// Promoting the learner was tried.
    LearnerPromoted {
        /// How long the call took.
        took: Duration,
        /// Whether it succeeded.
        ok: bool,
    },
}

/// Hears what the engine did. Implementations must be quick: they run on the engine's tasks.
pub trait Observer: Send + Sync {
    /// Called for every event.
    fn observe(&self, event: &Event<'_>);
}

/// The observers an engine component reports to; cheap to clone. [`Events::none`] (the
/// default) reports to nobody.
#[derive(Clone, Default)]
pub struct Events {
    observers: Vec<Arc<dyn Observer>>,
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Events({} observers)", self.observers.len())
    }
}

impl Events {
    /// No observer.
    #[must_use]
    pub fn none() -> Events {
        Events::default()
    }

    /// These events, also reported to `observer`.
    #[must_use]
    pub fn with(mut self, observer: Arc<dyn Observer>) -> Events {
        self.observers.push(observer);
        self
    }

    /// Reports `event` to every observer.
    pub fn emit(&self, event: &Event<'_>) {
        for o in &self.observers {
            o.observe(event);
        }
    }

    /// Reports a snapshot attempt of `kind` that ran for `took`: saved as `saved`, or failed.
    pub fn snapshot(&self, kind: Kind, took: Duration, saved: Option<&Snapshot>) {
        self.emit(&match saved {
            Some(snapshot) => Event::SnapshotSaved { snapshot, took },
            None => Event::SnapshotFailed { kind, took },
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Count(Mutex<usize>);

    impl Observer for Count {
        fn observe(&self, _: &Event<'_>) {
            *self.0.lock().unwrap() += 1;
        }
    }

    #[test]
    fn every_observer_hears_every_event() {
        let (a, b) = (Arc::new(Count::default()), Arc::new(Count::default()));
        let events = Events::none().with(a.clone()).with(b.clone());
        events.emit(&Event::SnapshotterCurrent);
        events
            .clone()
            .emit(&Event::SnapshotRequired { kind: Kind::Full });
        assert_eq!((*a.0.lock().unwrap(), *b.0.lock().unwrap()), (2, 2));
        Events::none().emit(&Event::SnapshotterCurrent);
    }
}

//! Why a selection cannot be restored from a store; each error names what the store can restore.

use crate::list::ChainError;

/// Why a selection cannot be restored from the store. Each names what the store can restore.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectError {
    /// The store holds no full snapshot.
    #[error("the store holds no full snapshot to restore from")]
    NoFullSnapshot,
    /// `--snapshot` names no object of the store.
    #[error("no full snapshot named {name:?} in the store; its full snapshots are: {}", fulls.join(", "))]
    UnknownSnapshot {
        /// The name given.
        name: String,
        /// The store's full snapshots, newest first.
        fulls: Vec<String>,
    },
    /// `--snapshot` names a delta.
    #[error("{0} is a delta snapshot; --snapshot takes a full snapshot (see `etcdbrctl list`)")]
    NotFull(String),
    /// The target revision is older than every full snapshot.
    #[error(
        "revision {target} is below the oldest full snapshot {oldest} (revision {oldest_revision}); the store can restore {available}"
    )]
    BelowOldest {
        /// The target.
        target: i64,
        /// The oldest full snapshot.
        oldest: String,
        /// Its revision.
        oldest_revision: i64,
        /// What the store can restore.
        available: String,
    },
    /// The target revision is above everything backed up.
    #[error(
        "revision {target} is above the last backed-up revision {last} ({newest}); the store can restore {available}"
    )]
    AboveLast {
        /// The target.
        target: i64,
        /// The last revision the newest set reaches.
        last: i64,
        /// The snapshot that reaches it.
        newest: String,
        /// What the store can restore.
        available: String,
    },
    /// The target lies where no delta is stored (between sets, or in a gap of the chain).
    #[error("revision {target} cannot be restored: {why}; the store can restore {available}")]
    Unreachable {
        /// The target.
        target: i64,
        /// Which revisions are missing and where.
        why: String,
        /// What the store can restore.
        available: String,
    },
    /// The target revision is below the chosen full snapshot's.
    #[error(
        "revision {target} is below the chosen full snapshot {snapshot} (revision {revision}); choose an older one (see `etcdbrctl list`)"
    )]
    BelowSnapshot {
        /// The target.
        target: i64,
        /// The chosen full snapshot.
        snapshot: String,
        /// Its revision.
        revision: i64,
    },
    /// The target time is before every full snapshot.
    #[error("{time} is before the oldest full snapshot {oldest}, taken at {oldest_time}")]
    BeforeOldest {
        /// The target (RFC 3339).
        time: String,
        /// The oldest full snapshot.
        oldest: String,
        /// When it was taken (RFC 3339).
        oldest_time: String,
    },
    /// The target time is before the chosen full snapshot was taken.
    #[error(
        "{time} is before the chosen full snapshot {snapshot} was taken ({taken}); choose an older one (see `etcdbrctl list`)"
    )]
    BeforeSnapshot {
        /// The target (RFC 3339).
        time: String,
        /// The chosen full snapshot.
        snapshot: String,
        /// When it was taken (RFC 3339).
        taken: String,
    },
    /// `--no-deltas` and a target past the full snapshot.
    #[error(
        "--no-deltas restores {snapshot} alone, at revision {revision}; revision {target} needs its deltas"
    )]
    NeedsDeltas {
        /// The target.
        target: i64,
        /// The full snapshot.
        snapshot: String,
        /// Its revision.
        revision: i64,
    },
    /// The snapshots do not make a usable chain.
    #[error(transparent)]
    Chain(#[from] ChainError),
}

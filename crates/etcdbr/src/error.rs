//! Errors of the engine.

use std::time::Duration;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a snapshot, delta or GC step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The etcd connection settings are unusable.
    #[error(transparent)]
    EtcdConfig(#[from] crate::etcd::EtcdConfigError),
    /// An option's value is out of its range.
    #[error("{option} {requirement}")]
    InvalidOption {
        /// The flag.
        option: &'static str,
        /// What it must be.
        requirement: &'static str,
    },
    /// Garbage collection is on but the store would refuse every delete it sends.
    #[error(
        "garbage collection is enabled but could never delete anything in the {provider} store: {reason}; release the hold, or disable garbage collection with --garbage-collection-period=0"
    )]
    GcNeverDeletes {
        /// The store's provider.
        provider: String,
        /// What holds every object.
        reason: String,
    },
    /// A cron schedule never fires again.
    #[error("the full snapshot schedule {spec:?} never fires again")]
    NeverFires {
        /// The schedule.
        spec: String,
    },
    /// A membership call cannot be made.
    #[error(transparent)]
    Member(#[from] crate::member::MemberError),
    /// An etcd call failed.
    #[error("etcd {op} failed")]
    Etcd {
        /// The call.
        op: &'static str,
        /// Cause.
        #[source]
        source: etcd_client::Error,
    },
    /// The host of an etcd endpoint does not resolve.
    #[error("cannot resolve the host of the etcd endpoint {endpoint}")]
    Unresolvable {
        /// The endpoint.
        endpoint: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// An operation did not finish in time.
    #[error("timed out after {after:?} trying to {op}")]
    Timeout {
        /// What was attempted.
        op: &'static str,
        /// The timeout.
        after: Duration,
    },
    /// The snapshot stream lacks etcd's sha256 trailer.
    #[error("SHA256 hash seems to be missing from snapshot data ({size} bytes received)")]
    MissingSnapshotHash {
        /// Bytes received.
        size: u64,
    },
    /// The snapshot stream's trailer does not match its content.
    #[error(
        "the full snapshot's SHA256 trailer does not match its {size} bytes of data; the snapshot is corrupt"
    )]
    SnapshotHashMismatch {
        /// Bytes of data (without the trailer).
        size: u64,
    },
    /// The snapshot's database could not be read.
    #[error("cannot read the revision of the snapshot database")]
    SnapshotDb(#[from] etcd_datadir::Error),
    /// Local file I/O failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The object store failed.
    #[error(transparent)]
    Store(#[from] snapstore::Error),
    /// The watch stream ended or failed.
    #[error("the etcd watch {0}")]
    Watch(String),
    /// etcd compacted the revisions the watch needed.
    #[error(
        "the watch start revision {wanted} has been compacted (etcd's oldest revision is {compact_revision}); a full snapshot is needed"
    )]
    Compacted {
        /// The revision the watch started at.
        wanted: i64,
        /// etcd's compaction revision.
        compact_revision: i64,
    },
    /// Revisions are missing between two events.
    #[error("revision gap in the watch: expected revision {expected}, got {got}; revisions {expected}..={} are missing", got - 1)]
    RevisionGap {
        /// The next revision expected.
        expected: i64,
        /// The revision received.
        got: i64,
    },
    /// A restore failed.
    #[error(transparent)]
    Restore(#[from] RestoreFailure),
    /// Initialization refuses to touch the data directory.
    #[error(transparent)]
    Refused(#[from] crate::initialize::InitializeRefused),
    /// The operation was stopped (signal or shutdown) before it finished.
    #[error("{0}")]
    Interrupted(&'static str),
    /// Some objects of a copy could not be copied.
    #[error("{failed} snapshot(s) could not be copied; the first was {first}")]
    CopyFailed {
        /// How many objects failed.
        failed: usize,
        /// The first failed object's name.
        first: String,
        /// Its cause.
        #[source]
        source: Box<Error>,
    },
    /// etcd's events at the last backed-up revision are not the stored ones: its history changed
    /// (rolled back to an older data dir, or replaced) while its revision went on.
    #[error(
        "etcd's events at revision {revision} differ from the backed-up ones: etcd's history changed (rolled back to an older data dir, or replaced); a full snapshot starts a new chain"
    )]
    HistoryChanged {
        /// The revision compared.
        revision: i64,
    },
    /// The watch delivers nothing while etcd's revision moves on.
    #[error(
        "the etcd watch is stalled: it delivered nothing past revision {seen} for {period:?} while etcd is at revision {current}"
    )]
    WatchStalled {
        /// The last revision received.
        seen: i64,
        /// etcd's revision.
        current: i64,
        /// How long without progress.
        period: Duration,
    },
    /// etcd's revision went below what is already backed up (etcd restored or replaced).
    #[error(
        "etcd's revision {current} is below the last backed-up revision {saved}; etcd was restored or replaced"
    )]
    RevisionWentBack {
        /// etcd's revision now.
        current: i64,
        /// Last revision in the store.
        saved: i64,
    },
}

/// Why a restore failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreFailure {
    /// The store holds no full snapshot to restore from.
    #[error("no full snapshot found in the store; nothing to restore from")]
    NoFullSnapshot,
    /// The chain ended before the target revision (a delta shorter than its name says).
    #[error(
        "the restore reached revision {reached}, not the target {target}: the deltas hold fewer revisions than their names say"
    )]
    TargetNotReached {
        /// The target.
        target: i64,
        /// What was restored.
        reached: i64,
    },
    /// The target data directory (or its `.part`) already exists.
    #[error("{0} already exists; remove it or choose another --data-dir")]
    TargetExists(std::path::PathBuf),
    /// The cluster flags are inconsistent.
    #[error(transparent)]
    Cluster(#[from] etcd_datadir::cluster::ClusterError),
    /// The full snapshot is whole pages with no sha256 trailer.
    #[error(
        "full snapshot {0} has no SHA256 hash trailer (its content is whole database pages, as a db file copied from a data dir is); use --skip-hash-check only for such a copy"
    )]
    MissingHash(String),
    /// The full snapshot's content is not an etcd database.
    #[error(
        "full snapshot {0} is not an etcd database: its content does not start with a bbolt meta page (a wrong compression suffix in its name, or not a snapshot at all)"
    )]
    NotADatabase(String),
    /// The full snapshot's size is not whole pages plus the trailer.
    #[error(
        "full snapshot {name} is {size} bytes once decompressed, not whole database pages plus the 32-byte SHA256 hash: the object is truncated or has extra data appended"
    )]
    BadSize {
        /// Object name.
        name: String,
        /// Decompressed bytes.
        size: u64,
    },
    /// The full snapshot's trailer does not match.
    #[error("full snapshot {0} is corrupt: its SHA256 hash does not match its content")]
    HashMismatch(String),
    /// A snapshot object cannot be decompressed.
    #[error("snapshot {name} cannot be decompressed as {compression}")]
    Decompress {
        /// Object name.
        name: String,
        /// The compression its suffix names.
        compression: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// An encrypted snapshot cannot be decrypted (no or no matching identity, bad header).
    #[error(transparent)]
    Crypt(#[from] snapstore::CryptError),
    /// A snapshot's name has an unknown compression suffix.
    #[error("snapshot {0}: {1}")]
    Suffix(String, #[source] crate::compress::CompressionError),
    /// A delta object is corrupt.
    #[error("delta snapshot {name} is unusable")]
    Delta {
        /// Object name.
        name: String,
        /// Cause.
        #[source]
        source: crate::delta_format::DeltaFormatError,
    },
    /// The deltas named in the store do not make a chain.
    #[error(transparent)]
    Chain(#[from] snapstore::ChainError),
    /// A delta's events do not span the revisions its name says.
    #[error(
        "delta snapshot {name} holds events of revisions {first}..={last}, but its name says {start}..={end}; the object is damaged or misnamed"
    )]
    DeltaRange {
        /// Object name.
        name: String,
        /// First event's revision (0: no events).
        first: i64,
        /// Last event's revision (0: no events).
        last: i64,
        /// Start revision in the name.
        start: i64,
        /// Last revision in the name.
        end: i64,
    },
    /// Applying the backup failed.
    #[error(transparent)]
    Build(#[from] etcd_datadir::restore::RestoreError),
}

impl Error {
    /// Whether the error comes from the settings, which no retry can fix.
    #[must_use]
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            Error::EtcdConfig(_) | Error::InvalidOption { .. } | Error::NeverFires { .. }
        )
    }

    /// Whether recovering needs a new full snapshot rather than resuming the delta chain.
    #[must_use]
    pub fn needs_full_snapshot(&self) -> bool {
        matches!(
            self,
            Error::Compacted { .. }
                | Error::RevisionGap { .. }
                | Error::RevisionWentBack { .. }
                | Error::HistoryChanged { .. }
                | Error::WatchStalled { .. }
        )
    }

    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
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

//! The original's Prometheus metrics (`etcdbr_*`, reference §7.6), with the same names, types
//! and labels, served by the server's `/metrics`. They are an observer of the engine's events
//! ([`Prometheus`]); the engine knows nothing of them. One difference from the original:
//! `etcdbr_snapshotter_failure`'s `error` label is a bounded kind (see [`error_kind`]), not the
//! raw message, so its cardinality stays fixed.

mod process;
mod registry;

use std::sync::OnceLock;
use std::time::Duration;

pub use registry::{DEFAULT_BUCKETS, Family, MetricKind, fmt_f64};

use etcdbr::Error;
use etcdbr::events::{Event, Observer};
use snapstore::Kind;

/// `kind` label value of full snapshots.
pub const KIND_FULL: &str = "Full";
/// `kind` label value of delta snapshots.
pub const KIND_INCR: &str = "Incr";
/// `kind` label value of chunk objects.
pub const KIND_CHUNK: &str = "Chunk";
const KINDS: [&str; 3] = [KIND_FULL, KIND_INCR, KIND_CHUNK];
const BOOLS: [&str; 2] = ["true", "false"];
/// `restore` label value of a single-member cluster's restore.
pub const RESTORE_SINGLE_NODE: &str = "single_node";
/// `restore` label value of one member's restore in a multi-member cluster.
pub const RESTORE_SINGLE_MEMBER: &str = "single_member";
/// Every value of `etcdbr_snapshotter_failure`'s `error` label.
pub const ERROR_KINDS: [&str; 8] = [
    "etcd",
    "watch",
    "revision_gap",
    "compacted",
    "snapshot",
    "store",
    "io",
    "other",
];

/// Every value of `etcdbr_verification_failures_total`'s `kind` label
/// ([`etcdbr::verify::FailureKind`]).
pub const VERIFICATION_FAILURES: [&str; 6] =
    ["corrupt", "chain", "database", "mismatch", "store", "other"];

/// Every metric family of the original, and etcdbr's verification metrics.
#[derive(Debug)]
#[allow(missing_docs)] // each field is documented by its Prometheus help text
pub struct Metrics {
    pub snapshot_gc_total: Family,
    pub snapshot_latest_revision: Family,
    pub snapshot_latest_timestamp: Family,
    pub snapshot_required: Family,
    pub snapshot_duration_seconds: Family,
    pub validation_duration_seconds: Family,
    pub restoration_duration_seconds: Family,
    pub defragmentation_duration_seconds: Family,
    pub snapstore_latest_deltas_total: Family,
    pub snapstore_latest_deltas_revisions_total: Family,
    pub snapshotter_failure: Family,
    pub cluster_size: Family,
    pub is_learner: Family,
    pub is_learner_count_total: Family,
    pub add_learner_duration_seconds: Family,
    pub member_remove_duration_seconds: Family,
    pub member_promote_duration_seconds: Family,
    pub verification_last_success_timestamp: Family,
    pub verification_duration_seconds: Family,
    pub verification_failures_total: Family,
}

impl Metrics {
    fn new() -> Metrics {
        use MetricKind::{Counter, Gauge, Histogram};
        let f = |name: &str, help, kind, labels| {
            Family::new(format!("etcdbr_{name}"), help, kind, labels)
        };
        let m = Metrics {
            snapshot_gc_total: f(
                "snapshot_gc_total",
                "Total number of garbage collected snapshots.",
                Counter,
                &["kind", "succeeded"],
            ),
            snapshot_latest_revision: f(
                "snapshot_latest_revision",
                "Revision number of latest snapshot taken.",
                Gauge,
                &["kind"],
            ),
            snapshot_latest_timestamp: f(
                "snapshot_latest_timestamp",
                "Timestamp of latest snapshot taken.",
                Gauge,
                &["kind"],
            ),
            snapshot_required: f(
                "snapshot_required",
                "Indicates whether a snapshot is required to be taken.",
                Gauge,
                &["kind"],
            ),
            snapshot_duration_seconds: f(
                "snapshot_duration_seconds",
                "Total latency distribution of saving snapshot to object store.",
                Histogram,
                &["kind", "succeeded"],
            ),
            validation_duration_seconds: f(
                "validation_duration_seconds",
                "Total latency distribution of validating data directory.",
                Histogram,
                &["succeeded"],
            ),
            restoration_duration_seconds: f(
                "restoration_duration_seconds",
                "Total latency distribution required to restore the etcd member.",
                Histogram,
                &["restore", "succeeded"],
            ),
            defragmentation_duration_seconds: f(
                "defragmentation_duration_seconds",
                "Total latency distribution of defragmentation of each etcd cluster member.",
                Histogram,
                &["succeeded", "endpoint"],
            ),
            snapstore_latest_deltas_total: f(
                "snapstore_latest_deltas_total",
                "Total number of delta snapshots taken since the latest full snapshot.",
                Gauge,
                &[],
            ),
            snapstore_latest_deltas_revisions_total: f(
                "snapstore_latest_deltas_revisions_total",
                "Total number of revisions stored in delta snapshots taken since the latest full snapshot.",
                Gauge,
                &[],
            ),
            snapshotter_failure: f(
                "snapshotter_failure",
                "Total number of snapshotter errors.",
                Counter,
                &["error"],
            ),
            cluster_size: f("cluster_size", "Current size of etcd cluster.", Gauge, &[]),
            is_learner: f("is_learner", "Member is a learner or not.", Gauge, &[]),
            is_learner_count_total: f(
                "is_learner_count_total",
                "Total number times member added as the learner.",
                Counter,
                &["succeeded"],
            ),
            add_learner_duration_seconds: f(
                "add_learner_duration_seconds",
                "Total latency distribution required to add the etcd member as a learner to the cluster.",
                Histogram,
                &["succeeded"],
            ),
            member_remove_duration_seconds: f(
                "member_remove_duration_seconds",
                "Total latency distribution required to remove the etcd member from the cluster.",
                Histogram,
                &["succeeded"],
            ),
            member_promote_duration_seconds: f(
                "member_promote_duration_seconds",
                "Total latency distribution required to promote the learner to the voting member.",
                Histogram,
                &["succeeded"],
            ),
            // etcdbr's own (the original has no verification).
            verification_last_success_timestamp: f(
                "verification_last_success_timestamp",
                "Unix time of the last verification run that found every backup set restorable.",
                Gauge,
                &[],
            ),
            verification_duration_seconds: f(
                "verification_duration_seconds",
                "Total latency distribution of verifying the latest backup set.",
                Histogram,
                &["succeeded"],
            ),
            verification_failures_total: f(
                "verification_failures_total",
                "Total number of verification runs that found a bad backup or could not run, by kind.",
                Counter,
                &["kind"],
            ),
        };
        for k in VERIFICATION_FAILURES {
            m.verification_failures_total.touch(&[k]);
        }
        m.verification_last_success_timestamp.touch(&[]);
        for k in KINDS {
            for b in BOOLS {
                m.snapshot_gc_total.touch(&[k, b]);
                m.snapshot_duration_seconds.touch(&[k, b]);
            }
            m.snapshot_latest_revision.touch(&[k]);
            m.snapshot_latest_timestamp.touch(&[k]);
            m.snapshot_required.touch(&[k]);
        }
        for b in BOOLS {
            m.validation_duration_seconds.touch(&[b]);
            m.is_learner_count_total.touch(&[b]);
            m.add_learner_duration_seconds.touch(&[b]);
            m.member_remove_duration_seconds.touch(&[b]);
            m.member_promote_duration_seconds.touch(&[b]);
            m.verification_duration_seconds.touch(&[b]);
            for r in [RESTORE_SINGLE_NODE, RESTORE_SINGLE_MEMBER] {
                m.restoration_duration_seconds.touch(&[r, b]);
            }
        }
        for e in ERROR_KINDS {
            m.snapshotter_failure.touch(&[e]);
        }
        for g in [
            &m.snapstore_latest_deltas_total,
            &m.snapstore_latest_deltas_revisions_total,
            &m.cluster_size,
            &m.is_learner,
        ] {
            g.touch(&[]);
        }
        m
    }

    fn families(&self) -> [&Family; 20] {
        [
            &self.snapshot_gc_total,
            &self.snapshot_latest_revision,
            &self.snapshot_latest_timestamp,
            &self.snapshot_required,
            &self.snapshot_duration_seconds,
            &self.validation_duration_seconds,
            &self.restoration_duration_seconds,
            &self.defragmentation_duration_seconds,
            &self.snapstore_latest_deltas_total,
            &self.snapstore_latest_deltas_revisions_total,
            &self.snapshotter_failure,
            &self.cluster_size,
            &self.is_learner,
            &self.is_learner_count_total,
            &self.add_learner_duration_seconds,
            &self.member_remove_duration_seconds,
            &self.member_promote_duration_seconds,
            &self.verification_last_success_timestamp,
            &self.verification_duration_seconds,
            &self.verification_failures_total,
        ]
    }
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}

/// Every metric in the text exposition format: the `etcdbr_*` families, the network counters
/// and the standard `process_*` metrics.
#[must_use]
pub fn encode() -> String {
    let mut out = String::new();
    for f in metrics().families() {
        f.encode(&mut out);
    }
    process::encode(&mut out);
    out
}

/// The `succeeded` label's value.
pub(crate) fn bool_label(ok: bool) -> &'static str {
    if ok { "true" } else { "false" }
}

/// The `kind` label of a snapshot kind.
fn kind_label(kind: Kind) -> &'static str {
    match kind {
        Kind::Full => KIND_FULL,
        Kind::Incr => KIND_INCR,
    }
}

/// The engine's events recorded in the process-wide [`metrics`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Prometheus;

impl Observer for Prometheus {
    fn observe(&self, event: &Event<'_>) {
        let m = metrics();
        let secs = |d: &Duration| d.as_secs_f64();
        match event {
            Event::SnapshotSaved { snapshot: s, took } => {
                let kind = kind_label(s.kind);
                m.snapshot_duration_seconds
                    .observe(&[kind, bool_label(true)], secs(took));
                m.snapshot_latest_revision
                    .set(&[kind], s.last_revision.get() as f64);
                m.snapshot_latest_timestamp
                    .set(&[kind], s.created_on.timestamp() as f64);
                m.snapshot_required.set(&[kind], 0.0);
                if s.kind == Kind::Full {
                    m.snapstore_latest_deltas_total.set(&[], 0.0);
                    m.snapstore_latest_deltas_revisions_total.set(&[], 0.0);
                } else {
                    m.snapstore_latest_deltas_total.inc(&[]);
                    m.snapstore_latest_deltas_revisions_total.add(
                        &[],
                        (s.last_revision.get() - s.start_revision.get() + 1) as f64,
                    );
                }
            }
            Event::SnapshotFailed { kind, took } => m
                .snapshot_duration_seconds
                .observe(&[kind_label(*kind), bool_label(false)], secs(took)),
            Event::SnapshotRequired { kind } => {
                m.snapshot_required.set(&[kind_label(*kind)], 1.0);
            }
            Event::SnapshotterFailed { error } => {
                m.snapshotter_failure.inc(&[error_kind(error)]);
            }
            Event::SnapshotterCurrent => m.snapshot_required.set(&[KIND_INCR], 0.0),
            Event::GcDeleted { snapshot, ok } => {
                let kind = if snapshot.is_chunk {
                    KIND_CHUNK
                } else {
                    kind_label(snapshot.kind)
                };
                m.snapshot_gc_total.inc(&[kind, bool_label(*ok)]);
            }
            Event::Defragmented { endpoint, took, ok } => m
                .defragmentation_duration_seconds
                .observe(&[bool_label(*ok), endpoint], secs(took)),
            Event::Validated { took, ok } => m
                .validation_duration_seconds
                .observe(&[bool_label(*ok)], secs(took)),
            Event::Restored {
                member_replaced,
                took,
                ok,
            } => {
                let kind = if *member_replaced {
                    RESTORE_SINGLE_MEMBER
                } else {
                    RESTORE_SINGLE_NODE
                };
                m.restoration_duration_seconds
                    .observe(&[kind, bool_label(*ok)], secs(took));
            }
            Event::LearnerAdded { took, ok } => {
                m.is_learner_count_total.inc(&[bool_label(*ok)]);
                if *ok {
                    m.is_learner.set(&[], 1.0);
                }
                m.add_learner_duration_seconds
                    .observe(&[bool_label(*ok)], secs(took));
            }
            Event::MemberRemoved { took, ok } => m
                .member_remove_duration_seconds
                .observe(&[bool_label(*ok)], secs(took)),
            Event::LearnerPromoted { took, ok } => {
                m.member_promote_duration_seconds
                    .observe(&[bool_label(*ok)], secs(took));
                if *ok {
                    m.is_learner.set(&[], 0.0);
                }
            }
            Event::Verified { failure, took, .. } => {
                m.verification_duration_seconds
                    .observe(&[bool_label(failure.is_none())], secs(took));
                match failure {
                    None => m.verification_last_success_timestamp.set(
                        &[],
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0.0, |d| d.as_secs_f64().floor()),
                    ),
                    Some(kind) => m.verification_failures_total.inc(&[kind]),
                }
            }
            _ => {}
        }
    }
}

/// The engine's events with the metrics as their observer.
#[must_use]
pub fn events() -> etcdbr::events::Events {
    etcdbr::events::Events::none().with(std::sync::Arc::new(Prometheus))
}

/// The bounded `error` label of a snapshotter failure.
#[must_use]
pub fn error_kind(e: &Error) -> &'static str {
    match e {
        Error::Etcd { .. }
        | Error::Unresolvable { .. }
        | Error::Timeout { .. }
        | Error::RevisionWentBack { .. }
        | Error::HistoryChanged { .. } => "etcd",
        Error::Watch(_) | Error::WatchStalled { .. } => "watch",
        Error::RevisionGap { .. } => "revision_gap",
        Error::Compacted { .. } => "compacted",
        Error::MissingSnapshotHash { .. }
        | Error::SnapshotHashMismatch { .. }
        | Error::SnapshotDb(_) => "snapshot",
        Error::Store(_) | Error::CopyFailed { .. } => "store",
        Error::Io { .. } => "io",
        _ => "other",
    }
}

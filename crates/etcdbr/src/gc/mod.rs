//! Garbage collection of old backups: the original's Exponential and LimitBased policies,
//! computed as a pure plan over a snapshot listing, then executed against a store.
//!
//! Rules shared by both policies (reference §6.1):
//! - chunk objects are deleted once the upload they belong to is done (their start revision is
//!   at or below the snapshotter's last saved revision); Swift chunks are left alone (deleting
//!   the manifest deletes them);
//! - a *stream* is one full snapshot plus the deltas before the next full snapshot; the newest
//!   stream is never touched;
//! - in older streams, deltas created before `now - delta_retention` are deleted;
//! - objects under an immutability period are skipped;
//! - the latest backup set (as a restore picks it, [`snapstore::list::latest_set`]) is never
//!   deleted, whatever the policy says (a difference from the original, which after a rollback
//!   of etcd could delete the base of the current history).

mod exponential;
mod limit_based;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use etcdbr_types::Revision;
use snapstore::{Kind, SnapStore, Snapshot};

use crate::events::{Event, Events};

/// How many delta deletions may fail in one stream before GC gives up on that stream.
pub const DELTA_GC_ERROR_THRESHOLD: usize = 5;

/// `--garbage-collection-policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GcPolicy {
    /// Keep everything of the current hour, then one full snapshot per hour for a day, per day
    /// for a week, per week for four weeks.
    #[default]
    Exponential,
    /// Keep the newest `--max-backups` full snapshots.
    LimitBased,
}

impl FromStr for GcPolicy {
    type Err = UnknownGcPolicy;
    fn from_str(s: &str) -> Result<GcPolicy, UnknownGcPolicy> {
        match s {
            "Exponential" => Ok(GcPolicy::Exponential),
            "LimitBased" => Ok(GcPolicy::LimitBased),
            other => Err(UnknownGcPolicy(other.to_owned())),
        }
    }
}

/// A `--garbage-collection-policy` that is neither of the two.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid garbage collection policy {0:?}; use Exponential or LimitBased")]
pub struct UnknownGcPolicy(pub String);

impl fmt::Display for GcPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GcPolicy::Exponential => "Exponential",
            GcPolicy::LimitBased => "LimitBased",
        })
    }
}

/// Inputs of a GC plan besides the listing.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GcOptions {
    /// The policy.
    pub policy: GcPolicy,
    /// Full snapshots kept by LimitBased.
    pub max_backups: usize,
    /// Deltas of older streams younger than this are kept.
    pub delta_retention: Duration,
    /// Last revision the snapshotter saved (chunks at or below it belong to finished uploads);
    /// zero means "unknown", and then no chunk is deleted.
    pub last_saved_revision: Revision,
    /// Whether the store is Swift, whose chunks are segments owned by a manifest.
    pub is_swift: bool,
    /// Who hears about deletions.
    pub events: Events,
}

impl GcOptions {
    /// Options for `policy` with the original's defaults otherwise.
    #[must_use]
    pub fn new(policy: GcPolicy) -> GcOptions {
        GcOptions {
            policy,
            max_backups: 7,
            delta_retention: Duration::ZERO,
            last_saved_revision: Revision::ZERO,
            is_swift: false,
            events: Events::none(),
        }
    }
}

/// A decision about one full snapshot, with the reason, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullDecision {
    /// The snapshot judged (the oldest position of a stream; normally a full snapshot).
    pub snapshot: Snapshot,
    /// Whether to delete it.
    pub delete: bool,
    /// Why.
    pub reason: String,
}

/// What to do with one older stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPlan {
    /// Deltas to delete, in deletion order.
    pub deltas: Vec<Snapshot>,
    /// The decision about the stream's full snapshot.
    pub full: FullDecision,
}

/// The outcome of planning one GC cycle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcPlan {
    /// Chunk objects to delete.
    pub chunks: Vec<Snapshot>,
    /// Older streams, in the policy's processing order.
    pub streams: Vec<StreamPlan>,
    /// Objects that would be deleted but are immutable for now.
    pub immutable: Vec<Snapshot>,
}

impl GcPlan {
    /// Every object the plan deletes, in order.
    pub fn deletions(&self) -> impl Iterator<Item = &Snapshot> {
        self.chunks.iter().chain(self.streams.iter().flat_map(|s| {
            s.deltas
                .iter()
                .chain(s.full.delete.then_some(&s.full.snapshot))
        }))
    }
}

/// Plans one GC cycle over a listing sorted in the original's order (chunks included).
#[must_use]
pub fn plan(sorted: &[Snapshot], now: DateTime<Utc>, opts: &GcOptions) -> GcPlan {
    let mut out = GcPlan::default();
    let mut list = Vec::with_capacity(sorted.len());
    for s in sorted {
        if !s.is_chunk {
            list.push(s.clone());
        } else if !opts.is_swift
            && opts.last_saved_revision != Revision::ZERO
            && s.start_revision <= opts.last_saved_revision
        {
            if s.is_deletable(now) {
                out.chunks.push(s.clone());
            } else {
                out.immutable.push(s.clone());
            }
        }
    }
    // Whatever the policy says, the set a restore would use now is never deleted: after etcd
    // was rolled back, the original's revision order can put the current base in an "older"
    // stream.
    // The set restores use skips what operators excluded, so it is protected as well as the
    // newest one: excluding the newest full snapshot makes the one before it the base.
    let restorable: Vec<Snapshot> = list
        .iter()
        .filter(|s| s.excluded.is_none())
        .cloned()
        .collect();
    let mut protected = std::collections::HashSet::new();
    for l in [&list, &restorable] {
        match snapstore::list::latest_set(l) {
            Ok(set) => protected.extend(set.full.iter().chain(&set.deltas).map(Snapshot::key)),
            Err(e) => {
                tracing::warn!("GC: deleting nothing this cycle: {e}");
                return out;
            }
        }
    }
    let full_index = full_snapshot_index_list(&list);
    let cutoff =
        now - chrono::Duration::from_std(opts.delta_retention).unwrap_or(chrono::Duration::MAX);
    let stream = |from: usize, to: usize, out: &mut GcPlan| -> Vec<Snapshot> {
        let mut deltas = Vec::new();
        for s in list[from..to].iter().rev() {
            if s.kind == Kind::Incr && s.created_on < cutoff && !protected.contains(&s.key()) {
                if s.is_deletable(now) {
                    deltas.push(s.clone());
                } else {
                    out.immutable.push(s.clone());
                }
            }
        }
        deltas
    };
    let decisions = match opts.policy {
        GcPolicy::Exponential => exponential::judge(&list, &full_index, now),
        GcPolicy::LimitBased => limit_based::judge(&list, &full_index, opts.max_backups),
    };
    for (stream_start, stream_end, mut full) in decisions {
        let held = out.immutable.len();
        let deltas = stream(stream_start, stream_end, &mut out);
        if full.delete && out.immutable.len() > held {
            // Its deltas stay until they may go; without their base they would be useless.
            full.delete = false;
            full.reason = "deltas of its set are immutable for now".into();
        } else if full.delete && full.snapshot.kind != Kind::Full {
            // The original judges position 0 as a full snapshot even when it is an orphan delta
            // (and then deletes it twice); the delta rule above already covers it.
            full.delete = false;
            full.reason = "not a full snapshot; handled by the delta rule".into();
        } else if full.delete && protected.contains(&full.snapshot.key()) {
            full.delete = false;
            full.reason = "part of the latest backup set".into();
        } else if full.delete && !full.snapshot.is_deletable(now) {
            full.delete = false;
            full.reason = "immutability period has not expired".into();
            out.immutable.push(full.snapshot.clone());
        }
        out.streams.push(StreamPlan { deltas, full });
    }
    out
}

/// `[0]` plus the index of every full snapshot after the first position (the original's
/// `getFullSnapshotIndexList`, which counts position 0 as a stream start whatever it is).
fn full_snapshot_index_list(list: &[Snapshot]) -> Vec<usize> {
    let mut v = vec![0];
    v.extend(
        list.iter()
            .enumerate()
            .skip(1)
            .filter(|(_, s)| s.kind == Kind::Full)
            .map(|(i, _)| i),
    );
    v
}

/// What one GC cycle did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Chunk objects deleted.
    pub chunks_deleted: usize,
    /// Snapshots (full and delta) deleted.
    pub snapshots_deleted: usize,
    /// Deletions that failed.
    pub failures: usize,
    /// Objects kept because the store holds them longer than the listing said.
    pub kept: usize,
}

/// Whether the store holds `s` past `now` (retention the listing did not report): then it is
/// kept, and said so, rather than sent a delete the store refuses. When the store cannot be
/// asked, the object is kept too; the next cycle asks again.
async fn held(store: &SnapStore, s: &Snapshot, now: DateTime<Utc>) -> bool {
    match store.retained_until(s).await {
        Ok(Some(until)) if until > now => {
            tracing::info!(
                "GC: Keeping {} until {}: the store holds it (immutability)",
                s.key(),
                until.to_rfc3339()
            );
            true
        }
        Ok(_) => false,
        Err(e) => {
            tracing::warn!(
                "GC: Keeping {} this cycle: cannot read its retention: {}",
                s.key(),
                crate::error_chain(&e)
            );
            true
        }
    }
}

/// Refuses a GC that is enabled (`period` over a second) on a store that holds every object
/// without expiry: each cycle would only be refused, and the operator would believe old backups
/// are removed.
///
/// # Errors
/// [`Error::GcNeverDeletes`] saying what holds the objects; the store's error when it cannot
/// be asked.
pub async fn check_can_delete(store: &SnapStore, period: Duration) -> crate::Result<()> {
    if period <= Duration::from_secs(1) {
        return Ok(());
    }
    match store.never_deletable().await? {
        Some(reason) => Err(crate::Error::GcNeverDeletes {
            provider: store.provider().to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Executes a plan: chunks, then each stream's deltas, then its full snapshot unless a delta
/// of that stream failed to delete (as the original does). `on_delete` hears about each
/// deletion attempt (kind, success) for metrics.
pub async fn execute(
    store: &SnapStore,
    plan: &GcPlan,
    mut on_delete: impl FnMut(&Snapshot, bool),
) -> GcReport {
    let mut report = GcReport::default();
    let now = Utc::now();
    for chunk in &plan.chunks {
        if held(store, chunk, now).await {
            report.kept += 1;
            continue;
        }
        tracing::info!("GC: Deleting chunk for old snapshot: {}", chunk.key());
        match store.delete(chunk).await {
            Ok(()) => {
                report.chunks_deleted += 1;
                on_delete(chunk, true);
            }
            Err(e) => {
                tracing::warn!("GC: Failed to delete chunk {}: {e}", chunk.key());
                report.failures += 1;
                on_delete(chunk, false);
            }
        }
    }
    tracing::info!(
        "GC: Total number garbage collected chunks: {}",
        report.chunks_deleted
    );
    for stream in &plan.streams {
        let mut errors = 0;
        let mut kept = 0;
        for d in &stream.deltas {
            if held(store, d, now).await {
                kept += 1;
                continue;
            }
            tracing::info!("GC: Deleting old delta snapshot: {}", d.key());
            match store.delete(d).await {
                Ok(()) => {
                    report.snapshots_deleted += 1;
                    on_delete(d, true);
                }
                Err(e) => {
                    tracing::warn!("GC: Failed to delete snapshot {}: {e}", d.key());
                    report.failures += 1;
                    errors += 1;
                    on_delete(d, false);
                    if errors == DELTA_GC_ERROR_THRESHOLD {
                        break;
                    }
                }
            }
        }
        report.kept += kept;
        if errors > 0 || kept > 0 || !stream.full.delete {
            continue;
        }
        let s = &stream.full.snapshot;
        if held(store, s, now).await {
            report.kept += 1;
            continue;
        }
        tracing::info!(
            "GC: Deleting old full snapshot: {} ({})",
            s.key(),
            stream.full.reason
        );
        match store.delete(s).await {
            Ok(()) => {
                report.snapshots_deleted += 1;
                on_delete(s, true);
            }
            Err(e) => {
                tracing::warn!("GC: Failed to delete snapshot {}: {e}", s.key());
                report.failures += 1;
                on_delete(s, false);
            }
        }
    }
    tracing::info!(
        "GC: Total number garbage collected snapshots: {}",
        report.snapshots_deleted
    );
    report
}

#[cfg(test)]
pub(crate) mod test_support {
    use chrono::{DateTime, TimeZone, Utc};
    use etcdbr_types::Revision;
    use snapstore::{Kind, Snapshot};

    /// A full snapshot at revision `rev` created at `t`.
    pub fn full(rev: i64, t: DateTime<Utc>) -> Snapshot {
        Snapshot::new(
            Kind::Full,
            Revision(0),
            Revision(rev),
            t,
            ".gz",
            false,
            "v2",
        )
    }

    /// A delta covering `start..=last` created at `t`.
    pub fn incr(start: i64, last: i64, t: DateTime<Utc>) -> Snapshot {
        Snapshot::new(
            Kind::Incr,
            Revision(start),
            Revision(last),
            t,
            ".gz",
            false,
            "v2",
        )
    }

    /// 2024-05-15 (a Wednesday) at `h:m` UTC.
    pub fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 15, h, m, 0).unwrap()
    }

    /// Names of a list of snapshots.
    pub fn names<'a>(it: impl IntoIterator<Item = &'a Snapshot>) -> Vec<String> {
        it.into_iter().map(|s| s.snap_name.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn chunks_are_deleted_only_after_their_upload_and_never_on_swift() {
        let mut chunk = full(10, at(9, 0));
        chunk = Snapshot::parse(&format!("{}/0000000001", chunk.key())).unwrap();
        let mut later_chunk = incr(11, 20, at(9, 30));
        later_chunk = Snapshot::parse(&format!("{}/0000000001", later_chunk.key())).unwrap();
        let list = vec![full(10, at(9, 0)), chunk.clone(), later_chunk];
        let mut o = GcOptions::new(GcPolicy::LimitBased);
        assert!(
            plan(&list, at(10, 0), &o).chunks.is_empty(),
            "unknown last revision: keep chunks"
        );
        o.last_saved_revision = Revision(10);
        assert_eq!(plan(&list, at(10, 0), &o).chunks, vec![chunk]);
        o.is_swift = true;
        assert!(plan(&list, at(10, 0), &o).chunks.is_empty());
    }

    #[test]
    fn delta_retention_keeps_young_deltas_of_old_streams() {
        let list = vec![
            full(10, at(1, 0)),
            incr(11, 12, at(1, 10)),
            incr(13, 14, at(8, 50)),
            full(20, at(9, 0)),
            incr(21, 22, at(9, 10)),
        ];
        let mut o = GcOptions::new(GcPolicy::LimitBased);
        o.delta_retention = Duration::from_secs(2 * 3600);
        let p = plan(&list, at(10, 0), &o);
        assert_eq!(
            names(p.deletions()),
            ["Incr-00000011-00000012-1715735400.gz"]
        );
        o.delta_retention = Duration::ZERO;
        let p = plan(&list, at(10, 0), &o);
        assert_eq!(
            names(p.deletions()),
            [
                "Incr-00000013-00000014-1715763000.gz",
                "Incr-00000011-00000012-1715735400.gz"
            ],
            "newest first within a stream; the latest stream untouched"
        );
    }

    #[test]
    fn immutable_objects_are_skipped() {
        let mut old = full(10, at(1, 0));
        old.immutability_expiry = Some(at(12, 0));
        let list = vec![old.clone(), full(20, at(2, 0)), full(30, at(3, 0))];
        let mut o = GcOptions::new(GcPolicy::LimitBased);
        o.max_backups = 1;
        let p = plan(&list, at(10, 0), &o);
        assert_eq!(
            names(p.deletions()),
            ["Full-00000000-00000020-1715738400.gz"]
        );
        assert_eq!(p.immutable, vec![old]);
    }

    #[test]
    fn empty_and_single_stream_listings_delete_nothing() {
        for policy in [GcPolicy::Exponential, GcPolicy::LimitBased] {
            let o = GcOptions::new(policy);
            assert_eq!(plan(&[], at(10, 0), &o), GcPlan::default());
            let list = vec![full(10, at(1, 0)), incr(11, 12, at(1, 1))];
            assert_eq!(plan(&list, at(10, 0), &o).deletions().count(), 0);
        }
    }
}

/// Runs a GC cycle every `period` until `stop`, as the original's `RunGarbageCollector`: each
/// cycle lists the store, plans with `opts` (the chunk rule reading `saved_revision`, the
/// snapshotter's last stored revision) and executes the plan. A period of one second or less
/// disables GC.
pub async fn run_periodically(
    store: SnapStore,
    opts: GcOptions,
    period: Duration,
    saved_revision: std::sync::Arc<std::sync::atomic::AtomicI64>,
    stop: tokio_util::sync::CancellationToken,
) {
    if period <= Duration::from_secs(1) {
        tracing::info!(
            "GC: Not running garbage collector since GarbageCollectionPeriod [{period:?}] set to less than 1 second."
        );
        return;
    }
    loop {
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            () = stop.cancelled() => {
                tracing::info!("GC: Stop signal received. Closing garbage collector.");
                return;
            }
        }
        let mut cycle_opts = opts.clone();
        cycle_opts.last_saved_revision =
            Revision(saved_revision.load(std::sync::atomic::Ordering::SeqCst));
        if let Err(e) = cycle(&store, &cycle_opts).await {
            tracing::warn!("GC: Failed to list snapshots: {}", crate::error_chain(&e));
        }
    }
}

/// One GC cycle: lists everything (excluded snapshots too), plans, logs what immutability
/// keeps, and executes the plan.
///
/// # Errors
/// Listing fails.
pub async fn cycle(store: &SnapStore, opts: &GcOptions) -> crate::Result<GcReport> {
    tracing::info!("GC: Executing garbage collection...");
    let list = store.list_all().await?;
    let plan = plan(&list, Utc::now(), opts);
    for s in &plan.immutable {
        tracing::info!(
            "GC: Skipping the snapshot: {}, since its immutability period hasn't expired yet (until {})",
            s.snap_name,
            s.immutability_expiry
                .map_or_else(|| "?".to_owned(), |t| t.to_rfc3339())
        );
    }
    Ok(execute(store, &plan, |snapshot, ok| {
        opts.events.emit(&Event::GcDeleted { snapshot, ok });
    })
    .await)
}

//! Ordering a store's snapshots, picking the latest backup set, and planning the chain of deltas
//! a restore applies.
//!
//! The original picks the full snapshot with the highest revision and every delta whose last
//! revision is above it. That assumes one history: after etcd is rolled back to an older data
//! dir, the store holds two, and that rule restores a mix of both. Here the creation times
//! decide which history is current:
//!
//! - the base is the newest full snapshot by creation time (then by revision, then `.final`):
//!   a full snapshot contains every revision of its history stored before it was taken;
//! - a snapshot created strictly before the base whose last revision is above the base's
//!   belongs to another history (the base went back in revision, so etcd was rolled back) and
//!   is never applied: it is reported in [`BackupSet::abandoned`];
//! - the deltas of the set are those created at or after the base with revisions above it;
//! - when the base went back in revision and a snapshot created in the same second as the base
//!   reaches above it, the names cannot tell which history that snapshot belongs to, and
//!   [`latest_set`] fails naming the objects.
//!
//! [`BackupSet::chain`] then covers the revisions after the base with as few deltas as
//! possible (duplicates and deltas contained in others are not applied; a partial overlap is
//! applied from the first revision not yet covered), and a revision no delta covers is a gap.

use std::cmp::Ordering;

use etcdbr_types::Revision;

use crate::name::{Kind, Snapshot};

/// The original's `SnapList.Less`: by last revision; on ties snapshots before chunks, then older
/// first (chunks among themselves keep their listing order). Where the original leaves the order
/// to chance (same revision, same creation second), a delta sorts before a full snapshot and a
/// full snapshot before its `.final` twin, so the latest set is the one that covers the others.
#[must_use]
pub fn compare(a: &Snapshot, b: &Snapshot) -> Ordering {
    a.last_revision
        .cmp(&b.last_revision)
        .then(a.is_chunk.cmp(&b.is_chunk))
        .then_with(|| {
            if a.is_chunk {
                Ordering::Equal
            } else {
                a.created_on
                    .cmp(&b.created_on)
                    .then((a.kind == Kind::Full).cmp(&(b.kind == Kind::Full)))
                    .then(a.is_final.cmp(&b.is_final))
            }
        })
}

/// Sorts snapshots in the original's order (stable).
pub fn sort(list: &mut [Snapshot]) {
    list.sort_by(compare);
}

/// A full snapshot and the deltas taken after it: what a restore needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackupSet {
    /// The newest full snapshot, if the store has one.
    pub full: Option<Snapshot>,
    /// Deltas of the same history above `full`'s revision, sorted.
    pub deltas: Vec<Snapshot>,
    /// Snapshots of another history (taken before etcd was rolled back to `full`'s revision),
    /// never applied; listed so that logs and `list` can say why they are left out.
    pub abandoned: Vec<Snapshot>,
}

/// One delta of a restore's chain: apply its events from revision `from` (earlier ones are
/// already covered) to its last revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainStep {
    /// The delta.
    pub snapshot: Snapshot,
    /// The first revision to apply from it.
    pub from: Revision,
}

/// Why a store's snapshots do not make a usable backup set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// No delta covers some revisions after the previous snapshot.
    #[error(
        "the delta chain has a gap: {previous} ends at revision {previous_last} but {next} starts at {next_start}; revisions {}..={} are missing",
        previous_last + 1,
        next_start - 1
    )]
    Gap {
        /// The snapshot the chain reached.
        previous: String,
        /// Its last revision.
        previous_last: i64,
        /// The next delta by revision.
        next: String,
        /// Its first revision.
        next_start: i64,
    },
    /// The base went back in revision (etcd was rolled back) and snapshots created in the same
    /// second reach above it: which history they belong to cannot be told from their names.
    #[error(
        "cannot tell which history {} belong(s) to: created in the same second as the full snapshot {base}, which went back to revision {base_revision} from {newer} (etcd was rolled back); take a new full snapshot, or move the objects of the abandoned history out of the store",
        ambiguous.join(", ")
    )]
    AmbiguousHistory {
        /// The base full snapshot.
        base: String,
        /// Its revision.
        base_revision: i64,
        /// A snapshot created before the base with a higher revision (the evidence).
        newer: String,
        /// The snapshots whose history is unknown.
        ambiguous: Vec<String>,
    },
}

impl BackupSet {
    /// The newest revision the set covers: the last delta's, else the full snapshot's.
    #[must_use]
    pub fn last_revision(&self) -> Option<Revision> {
        self.deltas
            .iter()
            .chain(self.full.as_ref())
            .map(|s| s.last_revision)
            .max()
    }

    /// The newest snapshot of the set (the last delta, else the full snapshot).
    #[must_use]
    pub fn newest(&self) -> Option<&Snapshot> {
        self.deltas.last().or(self.full.as_ref())
    }

    /// The deltas to apply on the full snapshot, in order, each from the first revision not yet
    /// covered; deltas wholly covered by others are left out. Without a full snapshot the chain
    /// starts at the first delta's start.
    ///
    /// # Errors
    /// [`ChainError::Gap`] naming the snapshots on either side of the first missing revisions.
    pub fn chain(&self) -> Result<Vec<ChainStep>, ChainError> {
        self.chain_until(None)
    }

    /// As [`BackupSet::chain`], but stops once revision `limit` is covered: deltas (and gaps)
    /// after it are not looked at. The last step may reach beyond `limit`; the restore applies
    /// it only up to there.
    ///
    /// # Errors
    /// [`ChainError::Gap`] for missing revisions at or below `limit`.
    pub fn chain_until(&self, limit: Option<Revision>) -> Result<Vec<ChainStep>, ChainError> {
        let (mut covered, mut previous) = match (&self.full, self.deltas.first()) {
            (Some(f), _) => (f.last_revision.get(), f.snap_name.clone()),
            (None, Some(d)) => (d.start_revision.get() - 1, String::new()),
            (None, None) => return Ok(Vec::new()),
        };
        let mut steps = Vec::new();
        loop {
            if limit.is_some_and(|l| covered >= l.get()) {
                return Ok(steps);
            }
            let reach = self
                .deltas
                .iter()
                .filter(|d| {
                    d.start_revision.get() <= covered + 1 && d.last_revision.get() > covered
                })
                .max_by(|a, b| {
                    a.last_revision
                        .cmp(&b.last_revision)
                        .then(a.created_on.cmp(&b.created_on))
                });
            let Some(d) = reach else {
                let next = self
                    .deltas
                    .iter()
                    .filter(|d| d.last_revision.get() > covered)
                    .min_by_key(|d| d.start_revision);
                return match next {
                    None => Ok(steps),
                    Some(n) => Err(ChainError::Gap {
                        previous,
                        previous_last: covered,
                        next: n.snap_name.clone(),
                        next_start: n.start_revision.get(),
                    }),
                };
            };
            steps.push(ChainStep {
                snapshot: d.clone(),
                from: Revision(covered + 1),
            });
            covered = d.last_revision.get();
            previous.clone_from(&d.snap_name);
        }
    }
}

/// The latest backup set of a listing (see the module docs): the newest full snapshot and the
/// deltas of its history after it. Without any full snapshot, every delta is returned, as the
/// original does.
///
/// # Errors
/// [`ChainError::AmbiguousHistory`] when the base went back in revision and snapshots created
/// in the same second reach above it.
pub fn latest_set(listing: &[Snapshot]) -> Result<BackupSet, ChainError> {
    let snapshots = || listing.iter().filter(|s| !s.is_chunk);
    let Some(base) = snapshots().filter(|s| s.kind == Kind::Full).max_by(|a, b| {
        a.created_on
            .cmp(&b.created_on)
            .then(a.last_revision.cmp(&b.last_revision))
            .then(a.is_final.cmp(&b.is_final))
    }) else {
        let mut deltas: Vec<Snapshot> = snapshots().cloned().collect();
        sort(&mut deltas);
        return Ok(BackupSet {
            full: None,
            deltas,
            abandoned: Vec::new(),
        });
    };
    let above = |s: &&Snapshot| s.last_revision > base.last_revision;
    let mut abandoned: Vec<Snapshot> = snapshots()
        .filter(above)
        .filter(|s| s.created_on < base.created_on)
        .cloned()
        .collect();
    sort(&mut abandoned);
    let mut deltas: Vec<Snapshot> = snapshots()
        .filter(above)
        .filter(|s| s.created_on >= base.created_on)
        .cloned()
        .collect();
    sort(&mut deltas);
    if let Some(evidence) = abandoned.last() {
        let same_second: Vec<String> = snapshots()
            .filter(above)
            .filter(|s| s.created_on == base.created_on)
            .map(|s| s.snap_name.clone())
            .collect();
        if !same_second.is_empty() {
            return Err(ChainError::AmbiguousHistory {
                base: base.snap_name.clone(),
                base_revision: base.last_revision.get(),
                newer: evidence.snap_name.clone(),
                ambiguous: same_second,
            });
        }
    }
    Ok(BackupSet {
        full: Some(base.clone()),
        deltas: deltas
            .into_iter()
            .filter(|s| s.kind == Kind::Incr)
            .collect(),
        abandoned,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(k: &str) -> Snapshot {
        Snapshot::parse(k).unwrap()
    }

    #[test]
    fn same_second_ties_put_the_covering_snapshot_last() {
        let mut l = vec![
            p("v2/Full-00000000-00000021-500.gz.final"),
            p("v2/Full-00000000-00000021-500.gz"),
            p("v2/Incr-00000002-00000021-500.gz"),
        ];
        sort(&mut l);
        let set = latest_set(&l).unwrap();
        assert_eq!(
            set.full.unwrap().snap_name,
            "Full-00000000-00000021-500.gz.final"
        );
        assert!(set.deltas.is_empty());
    }

    #[test]
    fn sorts_by_revision_then_chunk_then_time() {
        let mut l = vec![
            p("v2/Incr-00000011-00000020-300"),
            p("v2/Full-00000000-00000010-200.gz/0000000001"),
            p("v2/Full-00000000-00000010-250"),
            p("v2/Full-00000000-00000010-200.gz"),
            p("v2/Full-00000000-00000005-100"),
        ];
        sort(&mut l);
        let names: Vec<_> = l.iter().map(|s| s.snap_name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Full-00000000-00000005-100",
                "Full-00000000-00000010-200.gz",
                "Full-00000000-00000010-250",
                "Full-00000000-00000010-200.gz/0000000001",
                "Incr-00000011-00000020-300",
            ]
        );
    }

    #[test]
    fn latest_set_is_newest_full_plus_later_deltas() {
        let mut l = vec![
            p("v2/Full-00000000-00000005-100"),
            p("v2/Incr-00000006-00000008-110"),
            p("v2/Full-00000000-00000010-200"),
            p("v2/Incr-00000011-00000020-210"),
            p("v2/Incr-00000021-00000030-220"),
            p("v2/Incr-00000021-00000030-220/0000000001"),
        ];
        sort(&mut l);
        let set = latest_set(&l).unwrap();
        assert_eq!(set.full.unwrap().last_revision.get(), 10);
        let d: Vec<_> = set.deltas.iter().map(|s| s.last_revision.get()).collect();
        assert_eq!(d, [20, 30]);
    }

    #[test]
    fn latest_set_without_full_returns_all_deltas() {
        let l = vec![
            p("v2/Incr-00000006-00000008-110"),
            p("v2/Incr-00000009-00000012-120"),
        ];
        let set = latest_set(&l).unwrap();
        assert!(set.full.is_none());
        assert_eq!(set.deltas.len(), 2);
        assert_eq!(set.last_revision().unwrap().get(), 12);
        assert_eq!(latest_set(&[]).unwrap(), BackupSet::default());
    }

    fn names(v: &[Snapshot]) -> Vec<&str> {
        v.iter().map(|s| s.snap_name.as_str()).collect()
    }

    #[test]
    fn a_rolled_back_history_is_left_out() {
        // etcd at 11, 20 puts saved, rolled back to its copy at 11, 30 puts.
        let l = vec![
            p("v2/Full-00000000-00000011-100"),
            p("v2/Incr-00000012-00000031-110"),
            p("v2/Full-00000000-00000011-120"),
            p("v2/Incr-00000012-00000041-130"),
        ];
        let set = latest_set(&l).unwrap();
        assert_eq!(set.full.unwrap().snap_name, "Full-00000000-00000011-120");
        assert_eq!(names(&set.deltas), ["Incr-00000012-00000041-130"]);
        assert_eq!(names(&set.abandoned), ["Incr-00000012-00000031-110"]);
        // Before any delta of the new history: the base alone, never the old delta on it.
        let set = latest_set(&l[..3]).unwrap();
        assert!(set.deltas.is_empty());
        assert_eq!(set.last_revision().unwrap().get(), 11);
        // An old full snapshot above the new base is not the base either.
        let l = vec![
            p("v2/Full-00000000-00000031-105"),
            p("v2/Full-00000000-00000011-120"),
            p("v2/Incr-00000012-00000041-130"),
        ];
        let set = latest_set(&l).unwrap();
        assert_eq!(set.full.as_ref().unwrap().last_revision.get(), 11);
        assert_eq!(names(&set.abandoned), ["Full-00000000-00000031-105"]);
        assert_eq!(set.chain().unwrap().len(), 1);
    }

    #[test]
    fn the_same_second_as_a_rolled_back_base_is_ambiguous() {
        let l = vec![
            p("v2/Incr-00000012-00000031-110"),
            p("v2/Full-00000000-00000011-120"),
            p("v2/Incr-00000012-00000020-120"),
        ];
        let e = latest_set(&l).unwrap_err().to_string();
        assert!(e.contains("Incr-00000012-00000020-120"), "{e}");
        assert!(e.contains("Incr-00000012-00000031-110"), "{e}");
        // Without a rollback, a delta in the base's second follows it.
        let l = vec![
            p("v2/Full-00000000-00000011-120"),
            p("v2/Incr-00000012-00000020-120"),
        ];
        assert_eq!(latest_set(&l).unwrap().deltas.len(), 1);
    }

    #[test]
    fn a_compacted_snapshot_named_at_its_set_keeps_the_deltas_after_it() {
        // compact listed the set ending at 200 (t=110), uploaded at t=150 named t=110, while
        // the snapshotter went on.
        let l = vec![
            p("v2/Full-00000000-00000100-100"),
            p("v2/Incr-00000101-00000200-110"),
            p("v2/Incr-00000201-00000250-130"),
            p("v2/Full-00000000-00000200-110"),
            p("v2/Incr-00000251-00000300-160"),
        ];
        let set = latest_set(&l).unwrap();
        assert_eq!(
            set.full.as_ref().unwrap().snap_name,
            "Full-00000000-00000200-110"
        );
        let chain = set.chain().unwrap();
        assert_eq!(
            chain
                .iter()
                .map(|s| s.snapshot.snap_name.as_str())
                .collect::<Vec<_>>(),
            ["Incr-00000201-00000250-130", "Incr-00000251-00000300-160"]
        );
        assert!(set.abandoned.is_empty());
    }

    #[test]
    fn the_chain_skips_duplicates_and_applies_overlaps_from_the_first_uncovered_revision() {
        let set = |deltas: &[&str]| BackupSet {
            full: Some(p("v2/Full-00000000-00000132-100")),
            deltas: deltas.iter().map(|k| p(k)).collect(),
            abandoned: Vec::new(),
        };
        let steps = |s: &BackupSet| -> Vec<(String, i64)> {
            s.chain()
                .unwrap()
                .into_iter()
                .map(|c| (c.snapshot.snap_name, c.from.get()))
                .collect()
        };
        // A second copy of a delta under another timestamp is not applied twice.
        let dup = set(&[
            "v2/Incr-00000133-00000163-110",
            "v2/Incr-00000133-00000163-111",
            "v2/Incr-00000164-00000194-120",
        ]);
        assert_eq!(
            steps(&dup),
            [
                ("Incr-00000133-00000163-111".to_owned(), 133),
                ("Incr-00000164-00000194-120".to_owned(), 164)
            ]
        );
        // A partial overlap is applied from the first revision not yet covered.
        let partial = set(&[
            "v2/Incr-00000133-00000163-110",
            "v2/Incr-00000150-00000170-120",
        ]);
        assert_eq!(
            steps(&partial),
            [
                ("Incr-00000133-00000163-110".to_owned(), 133),
                ("Incr-00000150-00000170-120".to_owned(), 164)
            ]
        );
        // A delta inside another is not needed (sorted by last revision it comes first; it
        // must not look like a gap).
        let inside = set(&[
            "v2/Incr-00000140-00000150-110",
            "v2/Incr-00000133-00000163-120",
        ]);
        assert_eq!(
            steps(&inside),
            [("Incr-00000133-00000163-120".to_owned(), 133)]
        );
        // A delta at or below the base is not applied.
        let below = set(&[
            "v2/Incr-00000100-00000132-90",
            "v2/Incr-00000120-00000140-110",
        ]);
        assert_eq!(
            steps(&below),
            [("Incr-00000120-00000140-110".to_owned(), 133)]
        );
        // A gap names both sides.
        let gap = set(&[
            "v2/Incr-00000133-00000163-110",
            "v2/Incr-00000170-00000180-120",
        ]);
        let e = gap.chain().unwrap_err().to_string();
        assert!(
            e.contains("Incr-00000133-00000163-110 ends at revision 163")
                && e.contains("revisions 164..=169 are missing"),
            "{e}"
        );
        let first = set(&["v2/Incr-00000140-00000150-110"]);
        let e = first.chain().unwrap_err().to_string();
        assert!(
            e.contains("Full-00000000-00000132-100 ends at revision 132"),
            "{e}"
        );
    }
}

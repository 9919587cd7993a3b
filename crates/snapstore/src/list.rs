//! Ordering a store's snapshots and picking the latest backup set, as the original does.

use std::cmp::Ordering;

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
    /// Deltas newer than `full` (by last revision), sorted.
    pub deltas: Vec<Snapshot>,
}

impl BackupSet {
    /// The newest revision the set covers: the last delta's, else the full snapshot's.
    #[must_use]
    pub fn last_revision(&self) -> Option<etcdbr_types::Revision> {
        self.deltas
            .last()
            .or(self.full.as_ref())
            .map(|s| s.last_revision)
    }

    /// The newest snapshot of the set (the last delta, else the full snapshot).
    #[must_use]
    pub fn newest(&self) -> Option<&Snapshot> {
        self.deltas.last().or(self.full.as_ref())
    }
}

/// The original's "latest set" rule: walk a sorted list from the end, skip chunks, collect
/// deltas until the first full snapshot. Without any full snapshot, every delta is returned.
#[must_use]
pub fn latest_set(sorted: &[Snapshot]) -> BackupSet {
    let mut set = BackupSet::default();
    for s in sorted.iter().rev().filter(|s| !s.is_chunk) {
        if s.kind == Kind::Full {
            set.full = Some(s.clone());
            break;
        }
        set.deltas.push(s.clone());
    }
    sort(&mut set.deltas);
    set
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
        let set = latest_set(&l);
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
        let set = latest_set(&l);
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
        let set = latest_set(&l);
        assert!(set.full.is_none());
        assert_eq!(set.deltas.len(), 2);
        assert_eq!(set.last_revision().unwrap().get(), 12);
        assert_eq!(latest_set(&[]), BackupSet::default());
    }
}

//! What a store holds, set by set, as `etcdbrctl list` shows it: each backup set of the
//! [`history`], the role every delta plays in its chain (applied, applied in part as an overlap,
//! covered by others, after a gap), and the objects no set uses.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use etcdbr_types::Revision;

use crate::list::{ChainError, ChainStep};
use crate::name::{Kind, Snapshot};
use crate::select::history;

/// One snapshot object as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The snapshot.
    pub snapshot: Snapshot,
    /// Stored bytes (of the object, or of its chunks when it was uploaded in chunks).
    pub size: u64,
    /// Chunk objects the snapshot is stored as (0: one object).
    pub chunks: usize,
}

/// What a delta does in its set's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Applied whole.
    Applied,
    /// Overlaps the previous one: applied from this revision.
    Overlap(Revision),
    /// Duplicate or inside another delta: not applied.
    Covered,
    /// Beyond a gap in the chain: cannot be restored.
    AfterGap,
}

/// One backup set: a full snapshot and its deltas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetSummary {
    /// The full snapshot.
    pub full: Item,
    /// Its deltas, sorted, each with its role.
    pub deltas: Vec<(Item, Role)>,
    /// The first revision the set restores (the full snapshot's).
    pub first_revision: Revision,
    /// The last revision it restores without a gap.
    pub last_revision: Revision,
    /// When the full snapshot was taken.
    pub first_time: DateTime<Utc>,
    /// When the newest delta it restores was taken.
    pub last_time: DateTime<Utc>,
    /// The first gap of its chain.
    pub gap: Option<ChainError>,
}

impl SetSummary {
    /// Stored bytes of the set.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.full.size + self.deltas.iter().map(|(d, _)| d.size).sum::<u64>()
    }
}

/// A store's backup sets, oldest first, and what is in no set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Inventory {
    /// The sets, oldest first (the last one is what a plain restore restores).
    pub sets: Vec<SetSummary>,
    /// Snapshots no set uses: deltas below every full snapshot, or of a history that cannot
    /// be told apart.
    pub unused: Vec<Item>,
    /// Snapshots operators excluded from restores (`Snapshot::excluded` says why); the sets
    /// are built without them, as restores see the store.
    pub excluded: Vec<Item>,
}

/// Builds the inventory of a listing with sizes (as [`crate::SnapStore::list_sized`] gives).
///
/// # Errors
/// [`ChainError::AmbiguousHistory`] when the latest set's history cannot be told.
pub fn inventory(listing: &[(Snapshot, u64)]) -> Result<Inventory, ChainError> {
    let mut items: HashMap<String, Item> = HashMap::new();
    for (s, size) in listing.iter().filter(|(s, _)| !s.is_chunk) {
        items.insert(
            s.key(),
            Item {
                snapshot: s.clone(),
                size: *size,
                chunks: 0,
            },
        );
    }
    for (s, size) in listing.iter().filter(|(s, _)| s.is_chunk) {
        // A chunk is `<snapshot>/<part>`; the composed object may be missing (Swift, GCS).
        let parent = Snapshot {
            is_chunk: false,
            snap_name: s
                .snap_name
                .rsplit_once('/')
                .map_or(s.snap_name.as_str(), |(p, _)| p)
                .to_owned(),
            ..s.clone()
        };
        let item = items.entry(parent.key()).or_insert_with(|| Item {
            snapshot: parent,
            size: 0,
            chunks: 0,
        });
        item.chunks += 1;
        if item.chunks == 1 && item.size > 0 {
            item.size = 0; // the manifest object's size is not the data's
        }
        item.size += size;
    }
    let mut excluded: Vec<Item> = items
        .values()
        .filter(|i| i.snapshot.excluded.is_some())
        .cloned()
        .collect();
    excluded.sort_by(|a, b| crate::list::compare(&a.snapshot, &b.snapshot));
    let snapshots: Vec<Snapshot> = {
        let mut v: Vec<Snapshot> = items
            .values()
            .filter(|i| i.snapshot.excluded.is_none())
            .map(|i| i.snapshot.clone())
            .collect();
        crate::list::sort(&mut v);
        v
    };
    let sets = history(&snapshots)?;
    let mut used = std::collections::HashSet::new();
    let mut out = Vec::new();
    for set in sets.iter().rev() {
        let full = set
            .full
            .clone()
            .expect("sets of a history have a full snapshot");
        used.insert(full.key());
        let (steps, gap) = match set.chain() {
            Ok(steps) => (steps, None),
            Err(e) => (chain_before_gap(set), Some(e)),
        };
        let reach = steps.last().map_or(&full, |s| &s.snapshot);
        let deltas = set
            .deltas
            .iter()
            .map(|d| {
                used.insert(d.key());
                (
                    items[&d.key()].clone(),
                    role(d, &steps, reach.last_revision),
                )
            })
            .collect();
        out.push(SetSummary {
            full: items[&full.key()].clone(),
            deltas,
            first_revision: full.last_revision,
            last_revision: reach.last_revision,
            first_time: full.created_on,
            last_time: reach.created_on,
            gap,
        });
    }
    // Twins of a base (the same snapshot with and without `.final`) belong to its set.
    let twin_of_base = |s: &Snapshot| {
        s.kind == Kind::Full
            && out.iter().any(|set| {
                set.full.snapshot.last_revision == s.last_revision
                    && set.full.snapshot.created_on == s.created_on
            })
    };
    let unused = snapshots
        .iter()
        .filter(|s| !used.contains(&s.key()) && !twin_of_base(s))
        .map(|s| items[&s.key()].clone())
        .collect();
    Ok(Inventory {
        sets: out,
        unused,
        excluded,
    })
}

/// The chain's steps up to its first gap.
fn chain_before_gap(set: &crate::BackupSet) -> Vec<ChainStep> {
    match set.chain() {
        Ok(steps) => steps,
        Err(ChainError::Gap { previous_last, .. }) => set
            .chain_until(Some(Revision(previous_last)))
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

fn role(d: &Snapshot, steps: &[ChainStep], reach: Revision) -> Role {
    match steps.iter().find(|s| s.snapshot == *d) {
        Some(s) if s.from == d.start_revision => Role::Applied,
        Some(s) => Role::Overlap(s.from),
        None if d.last_revision <= reach => Role::Covered,
        None => Role::AfterGap,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(keys: &[(&str, u64)]) -> Vec<(Snapshot, u64)> {
        keys.iter()
            .map(|(k, n)| (Snapshot::parse(k).unwrap(), *n))
            .collect()
    }

    #[test]
    fn sets_oldest_first_with_roles_gaps_and_chunks() {
        let inv = inventory(&l(&[
            ("v2/Incr-00000001-00000004-50", 5),
            ("v2/Full-00000000-00000010-100.gz", 100),
            ("v2/Incr-00000011-00000020-110.gz", 10),
            ("v2/Incr-00000011-00000020-111.gz", 10),
            ("v2/Incr-00000015-00000030-120.gz", 10),
            ("v2/Incr-00000040-00000050-130.gz", 10),
            ("v2/Full-00000000-00000050-200.gz", 0),
            ("v2/Full-00000000-00000050-200.gz/0000000001", 60),
            ("v2/Full-00000000-00000050-200.gz/0000000002", 40),
            ("v2/Full-00000000-00000050-200.gz.final", 100),
        ]))
        .unwrap();
        assert_eq!(inv.sets.len(), 2);
        let old = &inv.sets[0];
        assert_eq!(
            (old.first_revision.get(), old.last_revision.get()),
            (10, 30)
        );
        let roles: Vec<_> = old.deltas.iter().map(|(_, r)| r.clone()).collect();
        assert_eq!(
            roles,
            [
                Role::Covered,
                Role::Applied,
                Role::Overlap(Revision(21)),
                Role::AfterGap
            ]
        );
        assert!(old.gap.as_ref().unwrap().to_string().contains("31..=39"));
        assert_eq!(old.size(), 140);
        let new = &inv.sets[1];
        assert_eq!(
            new.full.snapshot.snap_name,
            "Full-00000000-00000050-200.gz.final"
        );
        assert_eq!(inv.unused.len(), 1, "{:?}", inv.unused);
        assert_eq!(
            inv.unused[0].snapshot.snap_name,
            "Incr-00000001-00000004-50"
        );
        let chunked = inventory(&l(&[
            ("v2/Full-00000000-00000050-200.gz", 3),
            ("v2/Full-00000000-00000050-200.gz/0000000001", 60),
            ("v2/Full-00000000-00000050-200.gz/0000000002", 40),
        ]))
        .unwrap();
        assert_eq!(
            (chunked.sets[0].full.chunks, chunked.sets[0].full.size),
            (2, 100)
        );
    }
}

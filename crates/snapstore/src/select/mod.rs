//! Choosing what a restore restores: the latest backup set to its end (what the original does),
//! or a point in time (a revision, an instant), or a chosen full snapshot, with or without its
//! deltas.
//!
//! The store's backup sets are laid out as a [`history`]: the latest set first (see
//! [`crate::list::latest_set`]), then the latest set of what is left once its objects are taken
//! out, and so on. In one history the sets go down in revision; after etcd was rolled back, a
//! set may reach revisions a newer set covers again, and the newer one wins for those
//! revisions, as it is the history etcd went on with. A target revision is restored from the
//! newest set whose full snapshot is at or below it, a target time from the newest set whose
//! full snapshot was taken at or before it.

use chrono::{DateTime, Utc};
use etcdbr_types::Revision;

use crate::list::{BackupSet, ChainError, ChainStep, latest_set};
use crate::name::{FINAL_SUFFIX, Kind, Snapshot};

mod error;
pub use error::SelectError;

/// How far to restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Target {
    /// To the end of the chosen set (the original's only mode).
    #[default]
    Latest,
    /// Exactly the state at this revision: every revision at or below it, none after.
    Revision(Revision),
    /// The last revision whose delta event time is at or before this instant.
    Time(DateTime<Utc>),
}

/// What to restore: which backup set, and how far into it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Restore this full snapshot's set (an object name or key) instead of picking one.
    pub snapshot: Option<String>,
    /// Restore the full snapshot alone.
    pub no_deltas: bool,
    /// How far.
    pub target: Target,
}

impl Selection {
    /// The original's behaviour: the latest set to its end.
    #[must_use]
    pub fn latest() -> Selection {
        Selection::default()
    }
}

/// Where the applier stops within the planned chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Apply every planned delta to its end.
    End,
    /// Apply revisions up to and including this one.
    AtRevision(Revision),
    /// Apply whole revisions while their first event's time is at or before this instant.
    AfterTime(DateTime<Utc>),
}

/// A planned restore: the set, the deltas to fetch in order, and where to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The backup set chosen (its full snapshot is the base).
    pub set: BackupSet,
    /// The deltas to fetch and apply, in order.
    pub chain: Vec<ChainStep>,
    /// Where the applier stops.
    pub stop: Stop,
}

impl Plan {
    /// The base full snapshot.
    #[must_use]
    pub fn full(&self) -> &Snapshot {
        self.set
            .full
            .as_ref()
            .expect("a plan always has a full snapshot")
    }

    /// The revision the restore reaches when it is known before fetching (not for a time).
    #[must_use]
    pub fn revision(&self) -> Option<Revision> {
        match self.stop {
            Stop::AtRevision(r) => Some(r),
            Stop::End => Some(
                self.chain
                    .last()
                    .map_or(self.full().last_revision, |s| s.snapshot.last_revision),
            ),
            Stop::AfterTime(_) => None,
        }
    }
}

/// The store's backup sets, newest first (see the module docs). Chunk objects are ignored.
///
/// # Errors
/// [`ChainError::AmbiguousHistory`] when the latest set's history cannot be told.
pub fn history(listing: &[Snapshot]) -> Result<Vec<BackupSet>, ChainError> {
    let mut remaining: Vec<Snapshot> = listing.iter().filter(|s| !s.is_chunk).cloned().collect();
    let mut sets = Vec::new();
    loop {
        let set = match latest_set(&remaining) {
            Ok(set) => set,
            Err(e) if sets.is_empty() => return Err(e),
            Err(_) => break, // an older history that cannot be told apart: not offered
        };
        let Some(base) = set.full.clone() else {
            break;
        };
        let twin = |s: &Snapshot| {
            s.kind == Kind::Full
                && s.last_revision == base.last_revision
                && s.created_on == base.created_on
        };
        remaining.retain(|s| !twin(s) && !set.deltas.contains(s));
        sets.push(set);
    }
    Ok(sets)
}

/// One set's reach, for error messages and `list`: from its full snapshot's revision to the last
/// revision its chain covers without a gap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    /// The full snapshot's revision.
    pub from: Revision,
    /// The last revision covered without a gap.
    pub to: Revision,
    /// The first gap, if the chain has one.
    pub gap: Option<ChainError>,
}

impl BackupSet {
    /// How far this set restores.
    #[must_use]
    pub fn reach(&self) -> Option<Reach> {
        let full = self.full.as_ref()?;
        let (to, gap) = match self.chain() {
            Ok(steps) => (
                steps
                    .last()
                    .map_or(full.last_revision, |s| s.snapshot.last_revision),
                None,
            ),
            Err(e @ ChainError::Gap { previous_last, .. }) => (Revision(previous_last), Some(e)),
            Err(e) => (full.last_revision, Some(e)),
        };
        Some(Reach {
            from: full.last_revision,
            to,
            gap,
        })
    }
}

/// "revisions a..=b (from Full-…), c..=d (from Full-…)", oldest first.
fn available(sets: &[BackupSet]) -> String {
    let parts: Vec<String> = sets
        .iter()
        .rev()
        .filter_map(|s| {
            let r = s.reach()?;
            let name = &s.full.as_ref()?.snap_name;
            Some(format!("{}..={} (from {name})", r.from.get(), r.to.get()))
        })
        .collect();
    if parts.is_empty() {
        "nothing".into()
    } else {
        format!("revisions {}", parts.join(", "))
    }
}

fn same_name(base: &Snapshot, name: &str) -> bool {
    let strip = |n: &str| n.strip_suffix(FINAL_SUFFIX).unwrap_or(n).to_owned();
    let name = name.rsplit('/').next().unwrap_or(name);
    base.snap_name == name || strip(&base.snap_name) == strip(name)
}

/// Plans what `selection` restores from `listing` (a sorted store listing).
///
/// # Errors
/// A [`SelectError`] naming what is wrong and what the store can restore.
pub fn plan(listing: &[Snapshot], selection: &Selection) -> Result<Plan, SelectError> {
    let sets = history(listing)?;
    if sets.is_empty() {
        return Err(SelectError::NoFullSnapshot);
    }
    let index = choose(listing, &sets, selection)?;
    let set = &sets[index];
    let full = set
        .full
        .clone()
        .expect("sets of a history have a full snapshot");
    let base = full.last_revision;
    let plan = |chain, stop| Plan {
        set: set.clone(),
        chain,
        stop,
    };
    match selection.target {
        Target::Latest if selection.no_deltas => Ok(plan(Vec::new(), Stop::End)),
        Target::Latest => Ok(plan(set.chain()?, Stop::End)),
        Target::Revision(n) if selection.no_deltas => {
            if n == base {
                Ok(plan(Vec::new(), Stop::End))
            } else {
                Err(SelectError::NeedsDeltas {
                    target: n.get(),
                    snapshot: full.snap_name,
                    revision: base.get(),
                })
            }
        }
        Target::Revision(n) => {
            let unreachable = |why: String| SelectError::Unreachable {
                target: n.get(),
                why,
                available: available(&sets),
            };
            let chain = match set.chain_until(Some(n)) {
                Ok(chain) => chain,
                Err(gap @ ChainError::Gap { .. }) => return Err(unreachable(gap.to_string())),
                Err(e) => return Err(e.into()),
            };
            let last = chain.last().map_or(base, |s| s.snapshot.last_revision);
            if last >= n {
                return Ok(plan(chain, Stop::AtRevision(n)));
            }
            let newest = chain
                .last()
                .map_or(&full, |s| &s.snapshot)
                .snap_name
                .clone();
            if index == 0 {
                Err(SelectError::AboveLast {
                    target: n.get(),
                    last: last.get(),
                    newest,
                    available: available(&sets),
                })
            } else {
                Err(unreachable(format!(
                    "the set of {} ends at revision {} ({newest}) and no delta after it is stored",
                    full.snap_name,
                    last.get()
                )))
            }
        }
        Target::Time(_) if selection.no_deltas => Ok(plan(Vec::new(), Stop::End)),
        Target::Time(t) => {
            // Deltas taken up to `t` and the first one after it (its first events may still be
            // at or before `t`); the applier cuts at the events' times.
            let limit = set
                .deltas
                .iter()
                .find(|d| d.created_on > t)
                .map(|d| d.last_revision);
            let mut chain = set.chain_until(limit)?;
            if let Some(first_after) = chain.iter().position(|s| s.snapshot.created_on > t) {
                chain.truncate(first_after + 1);
            }
            Ok(plan(chain, Stop::AfterTime(t)))
        }
    }
}

/// The index in `sets` of the set `selection` restores from.
fn choose(
    listing: &[Snapshot],
    sets: &[BackupSet],
    selection: &Selection,
) -> Result<usize, SelectError> {
    let base = |s: &BackupSet| {
        s.full
            .clone()
            .expect("sets of a history have a full snapshot")
    };
    if let Some(name) = &selection.snapshot {
        let Some(index) = sets.iter().position(|s| same_name(&base(s), name)) else {
            let short = name.rsplit('/').next().unwrap_or(name);
            if listing
                .iter()
                .any(|s| s.kind == Kind::Incr && s.snap_name == short)
            {
                return Err(SelectError::NotFull(short.to_owned()));
            }
            return Err(SelectError::UnknownSnapshot {
                name: name.clone(),
                fulls: sets.iter().map(|s| base(s).snap_name).collect(),
            });
        };
        let full = base(&sets[index]);
        match selection.target {
            Target::Revision(n) if n < full.last_revision => {
                return Err(SelectError::BelowSnapshot {
                    target: n.get(),
                    snapshot: full.snap_name,
                    revision: full.last_revision.get(),
                });
            }
            Target::Time(t) if t < full.created_on => {
                return Err(SelectError::BeforeSnapshot {
                    time: rfc3339(t),
                    snapshot: full.snap_name,
                    taken: rfc3339(full.created_on),
                });
            }
            _ => {}
        }
        return Ok(index);
    }
    let oldest = || {
        sets.iter()
            .map(base)
            .min_by_key(|f| (f.last_revision, f.created_on))
            .expect("a history has a set")
    };
    match selection.target {
        Target::Latest => Ok(0),
        Target::Revision(n) => sets
            .iter()
            .position(|s| base(s).last_revision <= n)
            .ok_or_else(|| {
                let oldest = oldest();
                SelectError::BelowOldest {
                    target: n.get(),
                    oldest: oldest.snap_name,
                    oldest_revision: oldest.last_revision.get(),
                    available: available(sets),
                }
            }),
        Target::Time(t) => sets
            .iter()
            .position(|s| base(s).created_on <= t)
            .ok_or_else(|| {
                let oldest = sets
                    .iter()
                    .map(base)
                    .min_by_key(|f| f.created_on)
                    .expect("a history has a set");
                SelectError::BeforeOldest {
                    time: rfc3339(t),
                    oldest: oldest.snap_name,
                    oldest_time: rfc3339(oldest.created_on),
                }
            }),
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests;

//! What to restore (etcdbr's extensions to the original's restoration flags): a point in time, a
//! chosen full snapshot, and etcdutl's revision bump. Shared by `restore`, `initialize`,
//! `server` (its start-up restores) and, but for the bump, `verify`.

use chrono::{DateTime, Utc};
use clap::Args;
use etcd_datadir::restore::Bump;
use etcdbr_types::Revision;
use snapstore::{Selection, Target};

use super::values::go_bool;

/// Which backup and how far into it.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Point in time (etcdbr)")]
pub struct TargetFlags {
    /// Restore exactly the state at this revision: every revision up to it, none after (a
    /// transaction is kept whole). The newest full snapshot at or below it and the deltas up to it
    /// are used; `etcdbrctl list` shows the revisions a store can restore
    #[arg(long, value_name = "REVISION", conflicts_with = "restore_to_time", value_parser = parse_revision)]
    pub restore_to_revision: Option<i64>,

    /// Restore the state at this instant (RFC 3339, e.g. 2026-12-01T10:15:00Z): the last revision
    /// whose delta event time is at or before it, from the newest full snapshot taken at or before
    /// it; the log says which revision it resolved to
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    pub restore_to_time: Option<DateTime<Utc>>,

    /// Restore this full snapshot (its object name, as `etcdbrctl list` shows it) and the deltas
    /// after it up to the next full snapshot or the target, instead of the latest backup set
    #[arg(long, value_name = "OBJECT")]
    pub snapshot: Option<String>,

    /// Restore the full snapshot alone, without its deltas
    #[arg(long, value_name = "BOOL", value_parser = go_bool, default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub no_deltas: bool,
}

fn parse_revision(s: &str) -> Result<i64, String> {
    match s.parse::<i64>() {
        Ok(r) if r >= 1 => Ok(r),
        _ => Err(format!(
            "{s:?} is not a revision: use a whole number of at least 1"
        )),
    }
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            format!("{s:?} is not an RFC 3339 time ({e}); write e.g. 2026-12-01T10:15:00Z")
        })
}

impl TargetFlags {
    /// The engine's selection.
    #[must_use]
    pub fn selection(&self) -> Selection {
        let target = match (self.restore_to_revision, self.restore_to_time) {
            (Some(r), _) => Target::Revision(Revision(r)),
            (None, Some(t)) => Target::Time(t),
            (None, None) => Target::Latest,
        };
        Selection {
            snapshot: self.snapshot.clone(),
            no_deltas: self.no_deltas,
            target,
        }
    }
}

/// Sets what to restore and the bump in the engine's restore options (`restore`, `initialize`
/// and `server` take both groups).
///
/// # Errors
/// The bump flags are inconsistent.
pub fn apply(
    target: &TargetFlags,
    bump: &BumpFlags,
    opts: &mut etcdbr::restore::RestoreOptions,
) -> anyhow::Result<()> {
    opts.selection = target.selection();
    opts.bump = bump.bump()?;
    Ok(())
}

/// etcdutl's `--bump-revision` and `--mark-compacted`, so that watchers notice a restore.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Point in time (etcdbr)")]
pub struct BumpFlags {
    /// Add this to the restored revision (as `etcdutl snapshot restore --bump-revision`), so that
    /// revisions handed out after the restore are above every revision clients saw before it;
    /// requires --mark-compacted
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub bump_revision: u64,

    /// Record the bumped revision as compacted (as etcdutl's --mark-compacted): every client
    /// watching from an older revision (Kubernetes informers) gets "compacted" and re-lists
    /// instead of missing writes; required with --bump-revision and allowed only with it
    #[arg(long, value_name = "BOOL", value_parser = go_bool, default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub mark_compacted: bool,
}

impl BumpFlags {
    /// The bump, if asked; etcdutl's rule that the two flags go together.
    ///
    /// # Errors
    /// One flag without the other, or a bump beyond etcd's revision range.
    pub fn bump(&self) -> anyhow::Result<Option<Bump>> {
        match (self.bump_revision, self.mark_compacted) {
            (0, false) => Ok(None),
            (0, true) => anyhow::bail!(
                "--mark-compacted is allowed only with --bump-revision (as etcdutl's)"
            ),
            (_, false) => anyhow::bail!(
                "--bump-revision requires --mark-compacted (as etcdutl's): without it, clients watching from a revision before the restore would miss writes silently"
            ),
            (n, true) => {
                let amount = i64::try_from(n)
                    .ok()
                    .filter(|n| *n <= i64::MAX / 2)
                    .ok_or_else(|| anyhow::anyhow!("--bump-revision {n} is too large"))?;
                Ok(Some(Bump {
                    amount,
                    mark_compacted: true,
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bump_flags_go_together() {
        let f = |n, m| BumpFlags {
            bump_revision: n,
            mark_compacted: m,
        };
        assert!(f(0, false).bump().unwrap().is_none());
        assert!(f(0, true).bump().is_err());
        assert!(f(5, false).bump().is_err());
        assert_eq!(f(5, true).bump().unwrap().unwrap().amount, 5);
        assert!(f(u64::MAX, true).bump().is_err());
    }

    #[test]
    fn targets_parse() {
        assert!(parse_revision("0").is_err());
        assert!(parse_revision("x").is_err());
        assert_eq!(parse_revision("42"), Ok(42));
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
        assert_eq!(
            parse_time("2026-12-01T11:00:00+01:00")
                .unwrap()
                .to_rfc3339(),
            "2026-12-01T10:00:00+00:00"
        );
    }
}

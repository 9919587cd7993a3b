//! Copying backups from one store to another (`etcdbrctl copy` and the server's secondary
//! sync), as the original's copier does: whole backup sets newest first, filtered by count and
//! age, objects already at the destination skipped (names compared without `.final`), `.final`
//! stripped at the destination. Each object streams from source to destination; an interrupted
//! copy leaves no partial object (every store's save is atomic), so a rerun completes it.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use snapstore::{Kind, LAYOUT_V1, LAYOUT_V2, SnapStore, Snapshot};
use tokio_util::sync::CancellationToken;

use crate::events::{Event, Events};
use crate::{Error, Result};

/// What to copy and how.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CopyOptions {
    /// Newest backup sets to copy (`--max-backups-to-copy`); `None` copies all.
    pub max_backups: Option<usize>,
    /// Only sets whose full snapshot is younger than this (`--max-backup-age`, in days).
    pub max_backup_age: Option<Duration>,
    /// Objects copied at once (`--max-parallel-copy-operations`).
    pub parallel: usize,
    /// Wait for a final full snapshot in the source first (`--wait-for-final-snapshot`).
    pub wait_for_final: bool,
    /// Give up waiting after this long and copy anyway (`--wait-for-final-snapshot-timeout`);
    /// `None` waits for ever.
    pub wait_for_final_timeout: Option<Duration>,
    /// How often the source is checked for a final snapshot (15 s in the original).
    pub final_check_interval: Duration,
    /// Rewrite every object for the destination's recipients, those it already has too, and
    /// keep `.final` (`--reencrypt`): a key rotation, in place when source and destination are
    /// the same store. Without it, plain objects are encrypted when the destination has
    /// recipients and encrypted ones are copied as they are.
    pub reencrypt: bool,
    /// Who hears about each object copied.
    pub events: Events,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            max_backups: None,
            max_backup_age: None,
            parallel: 10,
            wait_for_final: false,
            wait_for_final_timeout: None,
            final_check_interval: Duration::from_secs(15),
            reencrypt: false,
            events: Events::none(),
        }
    }
}

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Objects copied.
    pub copied: usize,
    /// Objects skipped because the destination has them.
    pub skipped: usize,
    /// Bytes copied (as stored, compressed).
    pub bytes: u64,
}

/// A full snapshot and the deltas after it, as the copier groups a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySet {
    /// The set's full snapshot.
    pub full: Snapshot,
    /// Its deltas, oldest first.
    pub deltas: Vec<Snapshot>,
}

/// Groups a listing sorted in the original's order into backup sets, newest full snapshot
/// first (by creation time), keeping `max_backups` sets that pass the age filter. Deltas before
/// the oldest full snapshot belong to no set and are not copied, as in the original.
#[must_use]
pub fn select(
    sorted: &[Snapshot],
    max_backups: Option<usize>,
    created_after: Option<DateTime<Utc>>,
) -> Vec<CopySet> {
    let mut sets = Vec::new();
    let mut deltas = Vec::new();
    for s in sorted.iter().rev().filter(|s| !s.is_chunk) {
        if s.kind == Kind::Full {
            deltas.reverse();
            sets.push(CopySet {
                full: s.clone(),
                deltas: std::mem::take(&mut deltas),
            });
        } else {
            deltas.push(s.clone());
        }
    }
    sets.sort_by_key(|s| std::cmp::Reverse(s.full.created_on));
    sets.into_iter()
        .filter(|set| created_after.is_none_or(|t| set.full.created_on > t))
        .take(max_backups.unwrap_or(usize::MAX))
        .collect()
}

/// Copies new backups from `primary` to `secondary` at once and then every `period` until
/// `stop` (the server's secondary-store sync); a failed round is logged and retried at the next.
pub async fn sync_periodically(
    primary: SnapStore,
    secondary: SnapStore,
    period: Duration,
    events: Events,
    stop: CancellationToken,
) {
    let opts = CopyOptions {
        events,
        ..CopyOptions::default()
    };
    tracing::info!("Starting backup sync to the secondary store every {period:?}");
    loop {
        if let Err(e) = copy_backups(&primary, &secondary, &opts, &stop).await {
            tracing::error!(
                "Backup sync to the secondary store failed: {}",
                crate::error_chain(&e)
            );
        }
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// The name a snapshot gets at the destination: `.final` stripped, under the destination's
/// prefix, in the v1 layout when it came from one.
#[must_use]
pub fn destination_name(source: &Snapshot, dest_layout_prefix: &str) -> Snapshot {
    let mut s = source.clone();
    s.set_final(false);
    s.prefix = destination_prefix(source, dest_layout_prefix);
    s
}

/// The layout prefix a snapshot gets at the destination.
fn destination_prefix(source: &Snapshot, dest_layout_prefix: &str) -> String {
    let is_v1 = source.prefix == LAYOUT_V1 || source.prefix.ends_with(&format!("/{LAYOUT_V1}"));
    match dest_layout_prefix.strip_suffix(LAYOUT_V2) {
        Some(parent) if is_v1 => format!("{parent}{LAYOUT_V1}"),
        _ => dest_layout_prefix.to_owned(),
    }
}

/// Copies backups from `source` to `dest`. Stops early, with an error, when `stop` fires.
///
/// # Errors
/// Listing fails, or some objects could not be copied (all are attempted; the error names how
/// many failed and the first cause).
pub async fn copy_backups(
    source: &SnapStore,
    dest: &SnapStore,
    opts: &CopyOptions,
    stop: &CancellationToken,
) -> Result<CopyReport> {
    if opts.parallel == 0 {
        return Err(Error::InvalidOption {
            option: "--max-parallel-copy-operations",
            requirement: "must be greater than 0",
        });
    }
    if opts.reencrypt && !dest.encrypts() {
        return Err(Error::InvalidOption {
            option: "--reencrypt",
            requirement: "needs --encryption-recipients-file: the recipients to rewrite the objects for",
        });
    }
    if opts.wait_for_final {
        wait_for_final(source, opts, stop).await?;
    }
    tracing::info!("Copying backups ...");
    let created_after = opts
        .max_backup_age
        .map(|age| Utc::now() - chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX));
    let sets = select(&source.list().await?, opts.max_backups, created_after);
    if sets.is_empty() {
        tracing::info!("No source backups found");
        return Ok(CopyReport::default());
    }
    let present: HashSet<String> = dest
        .list_all()
        .await?
        .into_iter()
        .filter(|s| !s.is_chunk && !opts.reencrypt)
        .map(|s| s.plain_name())
        .collect();
    let (todo, skipped) = missing(&sets, &present);
    opts.events.emit(&Event::CopyPlanned {
        objects: todo.len(),
    });
    let dest_prefix = dest.layout_prefix().to_owned();
    // A signed destination records each object in its set's manifest as it is stored, and links
    // each set to the one before: the sets go oldest first, each full snapshot before its deltas.
    let (todo, parallel) = if dest.signs() {
        let mut todo = todo;
        todo.sort_by_key(|s| (s.created_on, s.kind != Kind::Full, s.last_revision));
        dest.begin_manifest_chain().await;
        (todo, 1)
    } else {
        (todo, opts.parallel)
    };
    let copies = futures::stream::iter(todo)
        .map(|s: Snapshot| {
            let (source, dest, dest_prefix) = (source.clone(), dest.clone(), dest_prefix.clone());
            async move {
                let copied = copy_one(&source, &dest, &s, &dest_prefix, opts.reencrypt).await;
                (s, copied)
            }
        })
        .buffer_unordered(parallel)
        .collect::<Vec<_>>();
    let results = tokio::select! {
        r = copies => r,
        () = stop.cancelled() => {
            return Err(Error::Interrupted(
                "copy interrupted; run it again to copy the rest (objects already copied are skipped)",
            ));
        }
    };
    let report = tally(results, skipped, &opts.events)?;
    tracing::info!(
        "Backups copied: {} objects, {} bytes; {} already present",
        report.copied,
        report.bytes,
        report.skipped
    );
    Ok(report)
}

async fn copy_one(
    source: &SnapStore,
    dest: &SnapStore,
    s: &Snapshot,
    dest_prefix: &str,
    reencrypt: bool,
) -> Result<u64> {
    tracing::info!("Copying {} snapshot {}...", s.kind, s.snap_name);
    let size = source.objects().stat(&s.key()).await?.size;
    let body = source.fetch(s).await?;
    // Sealed anew: plain objects for a store that encrypts, and every object on a rotation.
    let reseal = dest.encrypts() && (reencrypt || !s.encrypted);
    if reseal {
        let mut target = if reencrypt {
            s.clone()
        } else {
            destination_name(s, dest_prefix)
        };
        target.prefix = destination_prefix(s, dest_prefix);
        let target = target.with_encryption(true);
        let opener = s.encrypted.then(|| source.keyring().clone());
        let body = crate::pipe::resealed_body(body, &s.snap_name, opener, dest.keyring());
        let n = dest.save(&target, body, Some(size)).await?;
        tracing::info!(
            "Successfully copied {} snapshot {} as {}",
            s.kind,
            s.snap_name,
            target.snap_name
        );
        return Ok(n);
    }
    let target = destination_name(s, dest_prefix);
    let n = dest.save(&target, body, Some(size)).await?;
    if n != size {
        return Err(snapstore::Error::Verify {
            key: s.key(),
            expected: size,
            found: n,
        }
        .into());
    }
    tracing::info!("Successfully copied {} snapshot {}", s.kind, s.snap_name);
    Ok(n)
}

/// The objects of `sets` the destination lacks (`present` holds its names without `.final`),
/// and how many it has.
fn missing(sets: &[CopySet], present: &HashSet<String>) -> (Vec<Snapshot>, usize) {
    let mut todo = Vec::new();
    let mut skipped = 0;
    for s in sets
        .iter()
        .flat_map(|set| std::iter::once(&set.full).chain(&set.deltas))
    {
        if present.contains(&s.plain_name()) {
            tracing::info!(
                "Skipping {} snapshot {} as it already exists",
                s.kind,
                s.snap_name
            );
            skipped += 1;
        } else {
            todo.push(s.clone());
        }
    }
    (todo, skipped)
}

/// Reports each object's copy to `events` and sums them up; any failure makes the copy fail,
/// naming how many failed and the first.
fn tally(
    results: Vec<(Snapshot, Result<u64>)>,
    skipped: usize,
    events: &Events,
) -> Result<CopyReport> {
    let mut report = CopyReport {
        skipped,
        ..CopyReport::default()
    };
    let mut failures = Vec::new();
    for (snapshot, copied) in results {
        let bytes = *copied.as_ref().unwrap_or(&0);
        events.emit(&Event::ObjectCopied {
            snapshot: &snapshot,
            bytes,
            ok: copied.is_ok(),
        });
        match copied {
            Ok(n) => {
                report.copied += 1;
                report.bytes += n;
            }
            Err(e) => failures.push((snapshot.snap_name, e)),
        }
    }
    let failed = failures.len();
    if let Some((name, first)) = failures.into_iter().next() {
        return Err(Error::CopyFailed {
            failed,
            first: name,
            source: Box::new(first),
        });
    }
    Ok(report)
}

/// Polls the source's four newest full snapshots until one is final, the timeout passes (then
/// the copy goes on, as in the original) or `stop` fires.
async fn wait_for_final(
    source: &SnapStore,
    opts: &CopyOptions,
    stop: &CancellationToken,
) -> Result<()> {
    tracing::info!("Waiting for final full snapshot...");
    let deadline = opts
        .wait_for_final_timeout
        .map(|t| tokio::time::Instant::now() + t);
    loop {
        let list = source.list().await?;
        let newest_full = list
            .iter()
            .rev()
            .filter(|s| !s.is_chunk && s.kind == Kind::Full)
            .take(4);
        if let Some(f) = newest_full.into_iter().find(|s| s.is_final) {
            tracing::info!("Final full snapshot detected: {}", f.snap_name);
            return Ok(());
        }
        let sleep = tokio::time::sleep(opts.final_check_interval);
        let timeout = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = sleep => {}
            () = timeout => {
                tracing::info!("Timed out waiting for final full snapshot; copying anyway");
                return Ok(());
            }
            () = stop.cancelled() => {
                return Err(Error::Interrupted("stopped while waiting for a final full snapshot"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use etcdbr_types::Revision;

    fn snap(kind: Kind, start: i64, last: i64, t: i64) -> Snapshot {
        Snapshot::new(
            kind,
            Revision(start),
            Revision(last),
            Utc.timestamp_opt(t, 0).unwrap(),
            ".gz",
            false,
            "p/v2",
        )
    }

    #[test]
    fn sets_newest_first_with_count_and_age_filters() {
        let mut list = vec![
            snap(Kind::Incr, 1, 5, 90), // orphan: before any full snapshot
            snap(Kind::Full, 0, 10, 100),
            snap(Kind::Incr, 11, 20, 110),
            snap(Kind::Incr, 21, 30, 120),
            snap(Kind::Full, 0, 30, 200),
            snap(Kind::Incr, 31, 40, 210),
        ];
        snapstore::list::sort(&mut list);
        let sets = select(&list, None, None);
        assert_eq!(sets.len(), 2);
        assert_eq!(sets[0].full.last_revision, Revision(30));
        assert_eq!(sets[0].deltas.len(), 1);
        assert_eq!(sets[1].full.last_revision, Revision(10));
        let deltas: Vec<_> = sets[1].deltas.iter().map(|d| d.last_revision.0).collect();
        assert_eq!(
            deltas,
            [20, 30],
            "oldest first; the orphan is not in any set"
        );

        assert_eq!(select(&list, Some(1), None).len(), 1);
        assert_eq!(select(&list, Some(0), None).len(), 0);
        let young = select(&list, None, Some(Utc.timestamp_opt(150, 0).unwrap()));
        assert_eq!(young.len(), 1);
        assert_eq!(young[0].full.last_revision, Revision(30));
    }

    #[test]
    fn destination_names_drop_final_and_keep_the_layout() {
        let mut s = snap(Kind::Full, 0, 10, 100);
        s.set_final(true);
        let d = destination_name(&s, "other/v2");
        assert_eq!(d.key(), "other/v2/Full-00000000-00000010-100.gz");
        let v1 = Snapshot::parse("p/v1/Backup-100/Incr-00000011-00000020-110.gz").unwrap();
        assert_eq!(
            destination_name(&v1, "other/v2").key(),
            "other/v1/Backup-100/Incr-00000011-00000020-110.gz"
        );
        assert_eq!(
            destination_name(&v1, "v2").key(),
            "v1/Backup-100/Incr-00000011-00000020-110.gz"
        );
    }
}

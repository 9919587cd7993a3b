//! Restoring a data directory from the store: the latest full snapshot and its deltas, applied
//! natively (no etcd process), built in `<data-dir>.part` and renamed into place on success.
//!
//! The full snapshot is decompressed straight into the new data directory's db while its sha256
//! trailer is checked, and the db is then restored in place (as `etcdutl snapshot restore`
//! does), so disk holds one copy of the database. Meanwhile up to `max_fetchers` deltas are
//! downloaded, decompressed, checked and decoded in parallel into event files (temp disk holds
//! only the deltas not yet applied), and the applier adds their events in order as new
//! revisions. The deltas applied are planned from their names before any download
//! ([`snapstore::BackupSet::chain`]): duplicates and deltas inside others are not fetched, an
//! overlapping delta is applied from the first revision not yet restored, and a gap is an error.
//! A delta whose events do not start and end at the revisions its name says is an error.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};
use etcd_datadir::cluster::Cluster;
use etcd_datadir::layout;
use etcd_datadir::restore::{
    Bump, DataDirFormat, RestoreOptions as BuildOptions, RestoreStats, RestoreWriter,
};
use etcdbr_types::Revision;
use futures::StreamExt;
use snapstore::{ChainStep, Plan, Selection, SnapStore, Snapshot, Stop};
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::task::AbortOnDropHandle;

use crate::delta_format::Event as Change;
use crate::error::{Error, RestoreFailure, Result};
use crate::events::{Event, Events};
use event_file::EventReader;

mod event_file;
mod fetch;

pub(crate) use fetch::for_each_delta_event;

/// What to restore, and where (the original's restoration flags).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RestoreOptions {
    /// Target data directory; must not exist.
    pub data_dir: PathBuf,
    /// `--initial-cluster`.
    pub initial_cluster: String,
    /// `--initial-cluster-token`.
    pub initial_cluster_token: String,
    /// `--name`.
    pub name: String,
    /// `--initial-advertise-peer-urls`.
    pub initial_advertise_peer_urls: Vec<String>,
    /// Skip the full snapshot's sha256 check.
    pub skip_hash_check: bool,
    /// Deltas downloaded ahead of the one being applied.
    pub max_fetchers: usize,
    /// Where downloaded snapshots wait (`--restoration-temp-snapshots-dir`).
    pub temp_dir: PathBuf,
    /// Data-dir conventions of the etcd that will run on it.
    pub format: DataDirFormat,
    /// fsync what is written (true but for scratch restores that are read back at once).
    pub durable: bool,
    /// Which backup set, and how far into it (the original's: the latest, to its end).
    pub selection: Selection,
    /// Move the revision on after the restore (`--bump-revision`, `--mark-compacted`).
    pub bump: Option<Bump>,
    /// Who hears about the restore's progress.
    pub events: Events,
}

impl RestoreOptions {
    /// Options with the original's defaults.
    #[must_use]
    pub fn new(data_dir: PathBuf) -> RestoreOptions {
        RestoreOptions {
            data_dir,
            initial_cluster: "default=http://localhost:2380".into(),
            initial_cluster_token: "etcd-cluster".into(),
            name: "default".into(),
            initial_advertise_peer_urls: vec!["http://localhost:2380".into()],
            skip_hash_check: false,
            max_fetchers: 6,
            temp_dir: PathBuf::from("default.restoration.tmp"),
            format: DataDirFormat::V35,
            durable: true,
            selection: Selection::latest(),
            bump: None,
            events: Events::none(),
        }
    }
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// The full snapshot used.
    pub full: Snapshot,
    /// Deltas applied (in whole or in part).
    pub deltas: usize,
    /// Where the restore was asked to stop, and the revision it stopped at
    /// (`stats.revision`): for a time, the revision it resolved to.
    pub stop: Stop,
    /// The newest snapshot applied (the last delta, else the full snapshot).
    pub newest: Snapshot,
    /// When the store was listed (every snapshot of the set was created before).
    pub listed_at: DateTime<Utc>,
    /// Counts from the builder.
    pub stats: RestoreStats,
    /// Wall time.
    pub seconds: f64,
}

/// Restores the latest backup set of `store` into `opts.data_dir`.
///
/// # Errors
/// No full snapshot, a target that exists, corrupt objects, gaps, store or disk failures; the
/// target is never touched on error and the `.part` directory is removed.
pub async fn restore(store: &SnapStore, opts: &RestoreOptions) -> Result<RestoreReport> {
    let part = layout::part_dir(&opts.data_dir);
    for p in [&opts.data_dir, &part] {
        if p.exists() {
            return Err(RestoreFailure::TargetExists(p.clone()).into());
        }
    }
    let report = build_part(store, opts).await?;
    swap_in(&part, &opts.data_dir)?;
    log_report(opts, &report);
    Ok(report)
}

/// Replaces `data_dir` (if any, directory or file) with the finished `part` directory and fsyncs
/// the parent.
///
/// # Errors
/// The old directory cannot be removed or the rename fails.
pub fn swap_in(part: &Path, data_dir: &Path) -> Result<()> {
    let removed = match std::fs::symlink_metadata(data_dir) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(data_dir),
        Ok(_) => std::fs::remove_file(data_dir),
        Err(_) => Ok(()),
    };
    removed.map_err(Error::io(format!("cannot remove {}", data_dir.display())))?;
    std::fs::rename(part, data_dir).map_err(Error::io(format!(
        "cannot rename {} to {}",
        part.display(),
        data_dir.display()
    )))?;
    if let Some(parent) = data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(parent)
            .and_then(|f| f.sync_all())
            .map_err(Error::io("cannot fsync the parent of the data dir"))?;
    }
    Ok(())
}

fn log_report(opts: &RestoreOptions, report: &RestoreReport) {
    tracing::info!(
        "Successfully restored the etcd data directory {} at revision {} ({} events applied, {} skipped) in {:.3}s",
        opts.data_dir.display(),
        report.stats.revision.get(),
        report.stats.applied_events,
        report.stats.skipped_events,
        report.seconds
    );
}

/// Builds the latest backup set of `store` into `<data-dir>.part`, which must not exist; the
/// caller renames it into place. On error the `.part` directory is removed.
///
/// # Errors
/// As [`restore`].
pub async fn build_part(store: &SnapStore, opts: &RestoreOptions) -> Result<RestoreReport> {
    let listed_at = Utc::now();
    let plan = plan(store, &opts.selection).await?;
    build_planned(store, opts, plan, listed_at).await
}

/// What `selection` restores from `store`, with the restore's errors for an empty store or a
/// broken chain.
///
/// # Errors
/// Listing fails, or the store cannot restore `selection` (the error says what it can).
pub async fn plan(store: &SnapStore, selection: &Selection) -> Result<Plan> {
    match store.plan(selection).await {
        Err(snapstore::Error::Select(snapstore::SelectError::NoFullSnapshot)) => {
            Err(RestoreFailure::NoFullSnapshot.into())
        }
        Err(snapstore::Error::Chain(e)) => Err(RestoreFailure::from(e).into()),
        other => Ok(other?),
    }
}

/// Builds `plan` (made by [`plan`] at `listed_at`) into `<data-dir>.part`, as [`build_part`].
///
/// # Errors
/// As [`restore`].
pub async fn build_planned(
    store: &SnapStore,
    opts: &RestoreOptions,
    plan: Plan,
    listed_at: DateTime<Utc>,
) -> Result<RestoreReport> {
    let started = Instant::now();
    let cluster = Cluster::new(&opts.initial_cluster, &opts.initial_cluster_token)
        .map_err(RestoreFailure::from)?;
    let member = cluster
        .member(&opts.name, &opts.initial_advertise_peer_urls)
        .map_err(RestoreFailure::from)?
        .id;
    let part = layout::part_dir(&opts.data_dir);
    if part.exists() {
        return Err(RestoreFailure::TargetExists(part).into());
    }
    let (set, chain, stop) = (plan.set.clone(), plan.chain.clone(), plan.stop);
    let full = plan.full().clone();
    let newest = chain.last().map_or(&full, |s| &s.snapshot).clone();
    let upto = match stop {
        Stop::End => format!("up to revision {}", newest.last_revision.get()),
        Stop::AtRevision(r) => format!("up to the chosen revision {}", r.get()),
        Stop::AfterTime(t) => format!("up to the last revision at or before {}", t.to_rfc3339()),
    };
    tracing::info!(
        "Restoring from base snapshot: {} and {} delta snapshots {upto}",
        full.key(),
        chain.len(),
    );
    let full_bytes = store.objects().stat(&full.key()).await.ok().map(|m| m.size);
    opts.events.emit(&Event::RestoreStarted {
        full: &full,
        deltas: chain.len(),
        revision: plan.revision().unwrap_or(newest.last_revision),
        base: full.last_revision,
        full_bytes,
    });
    if stop == Stop::End && !chain.is_empty() && chain.len() < set.deltas.len() {
        tracing::info!(
            "{} delta snapshots are covered by others (duplicates or overlaps) and are not applied",
            set.deltas.len() - chain.len()
        );
    }

    let created_temp_dir = !opts.temp_dir.exists();
    std::fs::create_dir_all(&opts.temp_dir).map_err(Error::io(format!(
        "cannot create {}",
        opts.temp_dir.display()
    )))?;
    let scratch = tempfile::Builder::new()
        .prefix("etcdbr-restore-")
        .tempdir_in(&opts.temp_dir)
        .map_err(Error::io(format!(
            "cannot create a directory in {}",
            opts.temp_dir.display()
        )))?;
    let result = build(store, opts, &plan, &cluster, member, scratch.path(), &part).await;
    drop(scratch);
    if created_temp_dir {
        let _ = std::fs::remove_dir(&opts.temp_dir);
    }
    match result {
        Ok((stats, applied)) => {
            let seconds = started.elapsed().as_secs_f64();
            if let Stop::AfterTime(t) = stop {
                tracing::info!(
                    "{} resolved to revision {} (the last revision whose events were received at or before it)",
                    t.to_rfc3339(),
                    stats.revision.get()
                );
            }
            opts.events.emit(&Event::RestoreBuilt {
                revision: stats.revision,
                took: started.elapsed(),
            });
            let newest = applied.map_or(full.clone(), |i| chain[i].snapshot.clone());
            Ok(RestoreReport {
                full,
                deltas: applied.map_or(0, |i| i + 1),
                stop,
                newest,
                listed_at,
                stats,
                seconds,
            })
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&part);
            Err(e)
        }
    }
}

/// Builds the plan into `part`; returns the builder's counts and the index in the chain of the
/// last delta applied (in whole or in part).
async fn build(
    store: &SnapStore,
    opts: &RestoreOptions,
    plan: &Plan,
    cluster: &Cluster,
    member: etcd_datadir::cluster::MemberId,
    scratch: &Path,
    part: &Path,
) -> Result<(RestoreStats, Option<usize>)> {
    let (full, chain) = (plan.full(), plan.chain.as_slice());
    // Deltas are fetched and decoded while the full snapshot is, and flow in order through a
    // channel of one: at most `max_fetchers` event files wait on disk ahead of the applier.
    // The full snapshot is on the critical path, so until it is in, deltas get only the cores
    // its decompression leaves free; then all `max_fetchers` may run.
    let fetchers = opts.max_fetchers.max(1);
    let early = fetchers.min(crate::compress::cores().saturating_sub(1).max(1));
    let permits = Arc::new(Semaphore::new(early));
    let (tx, mut rx) = mpsc::channel::<Result<(ChainStep, PathBuf)>>(1);
    let how = fetch::Fetching {
        times: matches!(plan.stop, Stop::AfterTime(_)),
        events: opts.events.clone(),
    };
    let producer = spawn_downloads(store, chain, scratch, fetchers, &permits, how, tx);
    // The full snapshot goes straight into the data directory, which is then restored in place.
    let db = layout::db_path(part);
    let snap_dir = layout::snap_dir(part);
    let prepared = layout::create_private_dir(&snap_dir)
        .map_err(Error::io(format!("cannot create {}", snap_dir.display())));
    let fetched = match prepared {
        Ok(()) => fetch::full(store, full, &db, opts.skip_hash_check, &opts.events).await,
        Err(e) => Err(e),
    };
    if let Err(e) = fetched {
        producer.abort();
        return Err(e);
    }
    permits.add_permits(fetchers - early);
    // The base pages reach the disk while deltas are applied; the final fsync then only waits
    // for the pages appended after them.
    let early_sync = opts.durable.then(|| {
        let db = db.clone();
        tokio::task::spawn_blocking(move || std::fs::File::open(db).and_then(|f| f.sync_data()))
    });
    let build_opts = BuildOptions {
        cluster: cluster.clone(),
        member,
        format: opts.format,
        durable: opts.durable,
    };
    let (part_path, events, of) = (part.to_path_buf(), opts.events.clone(), chain.len());
    let (stop, bump) = (plan.stop, opts.bump);
    let applier = tokio::task::spawn_blocking(move || -> Result<(RestoreStats, Option<usize>)> {
        let mut w =
            RestoreWriter::in_place(&part_path, build_opts).map_err(RestoreFailure::from)?;
        let mut last = None;
        while let Some(item) = rx.blocking_recv() {
            let (step, file) = item?;
            let reached = apply_delta(&mut w, &step, &file, stop)?;
            let _ = std::fs::remove_file(&file);
            let applied = last.map_or(0, |i| i + 1);
            if reached == Reached::Before {
                break; // the first event of this delta is past the target time
            }
            last = Some(applied);
            events.emit(&Event::DeltaApplied {
                snapshot: &step.snapshot,
                applied: applied + 1,
                of,
                revision: Revision(w.revision()),
            });
            if reached == Reached::Within {
                break;
            }
        }
        if let Stop::AtRevision(target) = stop
            && w.revision() != target.get()
        {
            return Err(RestoreFailure::TargetNotReached {
                target: target.get(),
                reached: w.revision(),
            }
            .into());
        }
        if let Some(bump) = bump {
            w.bump_revision(bump);
        }
        Ok((w.finish().map_err(RestoreFailure::from)?, last))
    });
    let result = applier.await.map_err(|e| Error::Io {
        what: "restore applier".into(),
        source: io::Error::other(e),
    });
    producer.abort();
    // Its outcome does not matter: the applier's fsync covers the whole file.
    if let Some(sync) = early_sync {
        let _ = sync.await;
    }
    result?
}

/// Starts downloading and decoding the chain's deltas, at most `fetchers` at once (each holding
/// one of `permits` while it runs), into event files in `scratch`, sent in chain order to `tx`.
/// Stops at the first failure (sent) or when the applier hangs up; aborting the returned task
/// aborts the downloads.
fn spawn_downloads(
    store: &SnapStore,
    chain: &[ChainStep],
    scratch: &Path,
    fetchers: usize,
    permits: &Arc<Semaphore>,
    how: fetch::Fetching,
    tx: mpsc::Sender<Result<(ChainStep, PathBuf)>>,
) -> tokio::task::JoinHandle<()> {
    let (store, deltas, scratch) = (store.clone(), chain.to_vec(), scratch.to_path_buf());
    let permits = Arc::clone(permits);
    tokio::spawn(async move {
        // Each download is its own task, so downloads go on while this loop waits for the
        // applier; dropping the stream (on abort) aborts them.
        let mut downloads = futures::stream::iter(deltas.into_iter().enumerate())
            .map(|(i, d)| {
                let (store, path) = (store.clone(), scratch.join(format!("delta-{i:08}")));
                let how = how.clone();
                let permits = Arc::clone(&permits);
                AbortOnDropHandle::new(tokio::spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    fetch::delta(&store, &d.snapshot, &path, &how)
                        .await
                        .map(|()| (d, path))
                }))
            })
            .buffered(fetchers)
            .map(|joined| {
                joined.map_err(|e| Error::Io {
                    what: "delta download".into(),
                    source: io::Error::other(e),
                })?
            });
        while let Some(item) = downloads.next().await {
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break; // the applier stopped (its error is reported) or a download failed
            }
        }
    })
}

/// How far into a delta the restore's target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reached {
    /// Not yet: the next delta continues.
    Beyond,
    /// Within this delta: it was applied up to the target, and the restore is done.
    Within,
    /// Before this delta: none of its revisions was applied, and the restore is done.
    Before,
}

/// Whether `e`, the next event, is past `stop` given the revision restored so far: a revision
/// target keeps every event at or below it; a time target keeps whole revisions whose first
/// event is at or before it (the other events of a transaction follow its first).
fn past(stop: Stop, restored: i64, e: &Change, time: Option<DateTime<Utc>>) -> bool {
    match stop {
        Stop::End => false,
        Stop::AtRevision(r) => e.mod_revision > r.get(),
        Stop::AfterTime(t) => e.mod_revision > restored && time.is_some_and(|time| time > t),
    }
}

/// Applies one delta of the chain as its own segment, up to `stop`: its events at or below the
/// revision restored so far are overlaps (`step.from` is the next revision).
fn apply_delta(
    w: &mut RestoreWriter,
    step: &ChainStep,
    file: &Path,
    stop: Stop,
) -> Result<Reached> {
    let snap = &step.snapshot;
    debug_assert_eq!(
        step.from.get(),
        w.revision() + 1,
        "the chain continues the restore"
    );
    let mut events =
        EventReader::open(file).map_err(Error::io(format!("cannot read {}", file.display())))?;
    let before = w.revision();
    w.begin_segment();
    let mut reached = Reached::Beyond;
    while let Some((e, time)) = events
        .next()
        .map_err(Error::io(format!("cannot read {}", file.display())))?
    {
        if past(stop, w.revision(), e, time) {
            reached = if w.revision() == before {
                Reached::Before
            } else {
                Reached::Within
            };
            break;
        }
        w.apply(e).map_err(RestoreFailure::from)?;
    }
    if reached == Reached::Before {
        tracing::info!(
            "Delta snapshot {} starts after the target time: not applied",
            snap.snap_name
        );
    } else {
        tracing::info!(
            "Applied delta snapshot {}: revisions {}..={}{}",
            snap.snap_name,
            before + 1,
            w.revision(),
            if reached == Reached::Within {
                " (the target)"
            } else {
                ""
            }
        );
    }
    Ok(reached)
}

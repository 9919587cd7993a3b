//! `compact`: fold the latest backup set (a full snapshot and its deltas) into one new full
//! snapshot, natively: the set is restored with the restore builder, the database is compacted
//! at its last revision as etcd would (history below it dropped), and the result is uploaded as
//! `Full-00000000-<revision>-<time of the newest snapshot folded in>` with its compression and the base's
//! `.final` mark, etcd's sha256 trailer appended. No etcd process runs; old objects are left for
//! GC, as in the original.

use std::path::PathBuf;
use std::time::Instant;

use chrono::Utc;
use etcd_datadir::compact::CompactStats;
use etcd_datadir::layout;
use etcdbr_types::Revision;
use snapstore::{Kind, SnapStore, Snapshot};

use crate::compress::Compression;
use crate::error::{Error, RestoreFailure, Result};
use crate::pipe::compressed_body;
use crate::restore::{RestoreOptions, build_part};
use crate::trailer::WithSha256Trailer;

mod upload;

/// What to compact, and where to work.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CompactOptions {
    /// The restore of the latest set; its `data_dir` is scratch space (it must not exist and is
    /// removed afterwards).
    pub restore: RestoreOptions,
    /// The original's `--snapstore-temp-directory`, created if missing. Nothing is staged
    /// there: the compacted db streams into the upload, and the compaction's own scratch files
    /// (its per-key index, entry lengths) go beside the scratch restore.
    pub temp_dir: PathBuf,
}

impl CompactOptions {
    /// Options restoring with `restore`, with the temp dir `temp_dir`.
    #[must_use]
    pub fn new(restore: RestoreOptions, temp_dir: PathBuf) -> CompactOptions {
        CompactOptions { restore, temp_dir }
    }
}

/// What a compaction did.
#[derive(Debug, Clone)]
pub struct CompactReport {
    /// The new full snapshot.
    pub snapshot: Snapshot,
    /// The set's full snapshot.
    pub base: Snapshot,
    /// Deltas folded in.
    pub deltas: usize,
    /// Entries before and after compaction.
    pub stats: CompactStats,
    /// Bytes of the compacted database.
    pub db_size: u64,
    /// Wall time.
    pub seconds: f64,
}

/// Compacts the latest backup set of `store` into a new full snapshot in the same store.
///
/// # Errors
/// No full snapshot, a scratch directory that exists, corrupt backups, disk or store failures.
/// Nothing is uploaded on error and the scratch files are removed.
pub async fn compact(store: &SnapStore, opts: &CompactOptions) -> Result<CompactReport> {
    let started = Instant::now();
    tracing::info!("Start compacting");
    let scratch = layout::part_dir(&opts.restore.data_dir);
    if opts.restore.data_dir.exists() {
        return Err(RestoreFailure::TargetExists(opts.restore.data_dir.clone()).into());
    }
    let mut restore = opts.restore.clone();
    restore.durable = false; // scratch: read back at once, removed afterwards
    let restored = build_part(store, &restore).await?;
    tracing::info!("Restoration for compaction is done.");
    std::fs::create_dir_all(&opts.temp_dir).map_err(Error::io(format!(
        "cannot create {}",
        opts.temp_dir.display()
    )))?;
    let result = compact_and_upload(store, opts, &restored, &scratch).await;
    let _ = std::fs::remove_dir_all(&scratch); // on every path, failures too
    let (snapshot, stats, db_size) = result?;
    let report = CompactReport {
        snapshot,
        base: restored.full,
        deltas: restored.deltas,
        stats,
        db_size,
        seconds: started.elapsed().as_secs_f64(),
    };
    tracing::info!(
        "Compacted snapshot name : {} ({} deltas folded in; key entries {} -> {}; {} bytes; {:.3}s)",
        report.snapshot.snap_name,
        report.deltas,
        report.stats.entries_before,
        report.stats.entries_after,
        report.db_size,
        report.seconds
    );
    Ok(report)
}

/// The compacted snapshot's creation time: that of the state it holds, the newest snapshot
/// folded in, and never later than a delta the snapshotter stored after the listing. Named
/// at upload time instead (as the original does), a delta stored while compaction ran would
/// look older than the full snapshot it follows, which is how a rolled-back history looks
/// ([`snapstore::list`]). A set without deltas is named at the listing, one second after its
/// full snapshot at least, so the new name never replaces it.
fn created_on(restored: &crate::restore::RestoreReport) -> chrono::DateTime<Utc> {
    if restored.deltas > 0 {
        return restored.newest.created_on;
    }
    restored
        .listed_at
        .max(restored.full.created_on + chrono::Duration::seconds(1))
}

async fn compact_and_upload(
    store: &SnapStore,
    opts: &CompactOptions,
    restored: &crate::restore::RestoreReport,
    scratch: &std::path::Path,
) -> Result<(Snapshot, CompactStats, u64)> {
    let suffix = &restored.newest.compression_suffix;
    let compression = Compression::from_suffix(suffix)
        .map_err(|e| RestoreFailure::Suffix(restored.newest.snap_name.clone(), e))?;
    if (restored.full.encrypted || restored.newest.encrypted) && !store.encrypts() {
        return Err(Error::InvalidOption {
            option: "--encryption-recipients-file",
            requirement: "is needed: the backup set is encrypted, and its compacted snapshot would be stored unencrypted",
        });
    }
    let build = |e| Error::Restore(RestoreFailure::Build(e));
    let (src, format) = (layout::db_path(scratch), opts.restore.format);
    // The first pass and the layout: which entries survive, and the compacted db's metas.
    let planned = tokio::task::spawn_blocking(move || {
        let mut plan = etcd_datadir::compact::plan(&src, format)?;
        let (metas, db_size) = plan.layout()?;
        Ok::<_, etcd_datadir::restore::RestoreError>((plan, metas, db_size))
    })
    .await
    .map_err(|e| Error::Io {
        what: "the compaction task".into(),
        source: std::io::Error::other(e),
    })?;
    let (plan, metas, db_size) = planned.map_err(build)?;
    let stats = plan.stats().clone();
    tracing::info!(
        "Compacting the database at revision {}: {} of {} key entries kept, {db_size} bytes",
        stats.revision.get(),
        stats.entries_after,
        stats.entries_before
    );
    let snapshot = Snapshot::new(
        Kind::Full,
        Revision::ZERO,
        stats.revision,
        created_on(restored),
        compression.suffix(),
        restored.full.is_final,
        store.layout_prefix(),
    )
    .with_encryption(store.encrypts());
    // The second pass streams the compacted db, in file order, into the upload.
    let (db, pass) = upload::stream(plan, metas);
    let body = compressed_body(
        WithSha256Trailer::new(std::io::BufReader::with_capacity(1 << 20, db)),
        compression,
        store.keyring(),
    );
    let saved = store.save(&snapshot, body, Some(db_size + 32)).await;
    let passed = tokio::task::spawn_blocking(move || pass.join())
        .await
        .ok()
        .and_then(Result::ok);
    // A failed upload first: when the store fails, the pass only sees that nobody reads any
    // more, and the store's error is the one that says what to fix; when the pass fails on its
    // own, its error goes into the stream, so the upload's error carries it.
    saved?;
    match passed {
        Some(Err(e)) => return Err(build(e)),
        None => {
            return Err(Error::Io {
                what: "the compaction's second pass".into(),
                source: std::io::Error::other("it panicked"),
            });
        }
        Some(Ok(_)) => {}
    }
    Ok((snapshot, stats, db_size))
}

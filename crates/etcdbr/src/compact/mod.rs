//! `compact`: fold the latest backup set (a full snapshot and its deltas) into one new full
//! snapshot, natively: the set is restored with the restore builder, the database is compacted
//! at its last revision as etcd would (history below it dropped), and the result is uploaded as
//! `Full-00000000-<revision>-<time of the newest snapshot folded in>` with its compression and the base's
//! `.final` mark, etcd's sha256 trailer appended. No etcd process runs; old objects are left for
//! GC, as in the original.

use std::path::PathBuf;
use std::time::Instant;

use chrono::Utc;
use etcd_datadir::compact::{CompactStats, compact_db};
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
    /// Where the compacted database is staged before the upload (`--snapstore-temp-directory`).
    pub temp_dir: PathBuf,
}

impl CompactOptions {
    /// Options restoring with `restore` and staging in `temp_dir`.
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
    let compacted = opts
        .temp_dir
        .join(format!("compacted-{}.db", std::process::id()));
    let result = compact_and_upload(store, opts, &restored, &scratch, &compacted).await;
    let _ = std::fs::remove_dir_all(&scratch);
    let _ = std::fs::remove_file(&compacted);
    let _ = std::fs::remove_file(staged_path(&compacted)); // on every path, failures too
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
    compacted: &std::path::Path,
) -> Result<(Snapshot, CompactStats, u64)> {
    let suffix = &restored.newest.compression_suffix;
    let compression = Compression::from_suffix(suffix)
        .map_err(|e| RestoreFailure::Suffix(restored.newest.snap_name.clone(), e))?;
    let staged = streamed_units(compression).then(|| staged_path(compacted));
    let (src, dst, format) = (
        layout::db_path(scratch),
        compacted.to_path_buf(),
        opts.restore.format,
    );
    let staged_body = staged.clone();
    let written = tokio::task::spawn_blocking(move || {
        compact_compressing(&src, &dst, format, compression, staged_body)
    })
    .await
    .map_err(|e| Error::Io {
        what: "the compaction task".into(),
        source: std::io::Error::other(e),
    })?;
    let (stats, streamed) = written?;
    // The restored data dir is no longer needed: free its disk before the upload.
    let _ = std::fs::remove_dir_all(scratch);
    tracing::info!(
        "Compacted the database at revision {}: {} of {} key entries kept",
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
    );
    let (body, db_size) = match (staged.as_deref(), streamed) {
        (Some(staged), Some(written)) => {
            let units = upload::Units::open(&written.metas, staged, compression)
                .map_err(Error::io("cannot read the compacted database's units back"))?;
            (compressed_body(units, Compression::None), written.db_size)
        }
        _ => {
            let file = std::fs::File::open(compacted)
                .map_err(Error::io(format!("cannot open {}", compacted.display())))?;
            let db_size = file
                .metadata()
                .map_err(Error::io("cannot stat the compacted database"))?
                .len();
            let body = compressed_body(
                WithSha256Trailer::new(std::io::BufReader::with_capacity(1 << 20, file)),
                compression,
            );
            (body, db_size)
        }
    };
    store.save(&snapshot, body, Some(db_size + 32)).await?;
    Ok((snapshot, stats, db_size))
}

/// Where the compacted body's compressed units are staged, beside the compacted db.
fn staged_path(compacted: &std::path::Path) -> PathBuf {
    compacted.with_extension("body")
}

/// Whether `compression`'s units concatenate into one stream (gzip members, zstd frames), so
/// that the compacted body can be compressed while it is written and the metas, written last,
/// compressed on their own and put in front.
fn streamed_units(compression: Compression) -> bool {
    matches!(compression, Compression::Gzip | Compression::Zstd)
}

/// Compacts `src`: with `staged`, into compressed units there (the pages after the metas, as
/// they are written; the metas are returned), else into the file `dst`.
fn compact_compressing(
    src: &std::path::Path,
    dst: &std::path::Path,
    format: etcd_datadir::restore::DataDirFormat,
    compression: Compression,
    staged: Option<PathBuf>,
) -> Result<(CompactStats, Option<upload::Written>)> {
    let build = |e| Error::Restore(RestoreFailure::Build(e));
    let Some(staged) = staged else {
        return Ok((compact_db(src, dst, format).map_err(build)?, None));
    };
    let writer = upload::CompressingWriter::start(compression, create_private(&staged)?);
    let (stats, writer) =
        etcd_datadir::compact::compact_db_into(src, writer, format).map_err(build)?;
    let written = writer
        .finish()
        .map_err(Error::io("cannot compress the compacted database"))?;
    Ok((stats, Some(written)))
}

fn create_private(path: &std::path::Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(Error::io(format!("cannot create {}", path.display())))
}

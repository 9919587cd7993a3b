//! Restoring a data directory from the store: the latest full snapshot and its deltas, applied
//! natively (no etcd process), built in `<data-dir>.part` and renamed into place on success.
//!
//! The full snapshot is decompressed into a temp file while its sha256 trailer is checked.
//! Deltas are downloaded in order with at most `max_fetchers` in flight, so temp disk holds only
//! the deltas not yet applied; each is decompressed, its trailer checked, and its events applied
//! as new revisions. Gaps between deltas are found from their names before any download.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use etcd_datadir::cluster::Cluster;
use etcd_datadir::layout;
use etcd_datadir::restore::{
    DataDirFormat, RestoreOptions as BuildOptions, RestoreStats, RestoreWriter,
};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use snapstore::{SnapStore, Snapshot};
use tokio::sync::mpsc;

use crate::compress::Compression;
use crate::delta_format;
use crate::error::{Error, RestoreFailure, Result};

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
        }
    }
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// The full snapshot used.
    pub full: Snapshot,
    /// Deltas applied.
    pub deltas: usize,
    /// The compression suffix of the newest snapshot applied (the last delta, else the full).
    pub newest_suffix: String,
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

/// Replaces `data_dir` (if any) with the finished `part` directory and fsyncs the parent.
///
/// # Errors
/// The old directory cannot be removed or the rename fails.
pub fn swap_in(part: &Path, data_dir: &Path) -> Result<()> {
    if data_dir.exists() {
        std::fs::remove_dir_all(data_dir)
            .map_err(Error::io(format!("cannot remove {}", data_dir.display())))?;
    }
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
        report.stats.revision,
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
    let set = store.latest_set().await?;
    let full = set.full.clone().ok_or(RestoreFailure::NoFullSnapshot)?;
    check_chain(&set.deltas)?;
    tracing::info!(
        "Restoring from base snapshot: {} and {} delta snapshots up to revision {}",
        full.key(),
        set.deltas.len(),
        set.last_revision().map_or(0, etcdbr_types::Revision::get)
    );

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
    let result = build(
        store,
        opts,
        &full,
        &set.deltas,
        &cluster,
        member,
        scratch.path(),
        &part,
    )
    .await;
    drop(scratch);
    if created_temp_dir {
        let _ = std::fs::remove_dir(&opts.temp_dir);
    }
    match result {
        Ok(stats) => Ok(RestoreReport {
            newest_suffix: set
                .deltas
                .last()
                .unwrap_or(&full)
                .compression_suffix
                .clone(),
            full,
            deltas: set.deltas.len(),
            stats,
            seconds: started.elapsed().as_secs_f64(),
        }),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&part);
            Err(e)
        }
    }
}

/// Deltas must cover contiguous revisions; overlaps are fine (they are skipped when applied).
fn check_chain(deltas: &[Snapshot]) -> Result<()> {
    for w in deltas.windows(2) {
        if w[1].start_revision.get() > w[0].last_revision.get() + 1 {
            return Err(RestoreFailure::ChainGap {
                previous: w[0].snap_name.clone(),
                previous_last: w[0].last_revision.get(),
                next: w[1].snap_name.clone(),
                next_start: w[1].start_revision.get(),
            }
            .into());
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn build(
    store: &SnapStore,
    opts: &RestoreOptions,
    full: &Snapshot,
    deltas: &[Snapshot],
    cluster: &Cluster,
    member: etcd_datadir::cluster::MemberId,
    scratch: &Path,
    part: &Path,
) -> Result<RestoreStats> {
    // Deltas are fetched (and decompressed and verified) while the full snapshot is, and flow in
    // order through a channel of one: at most `max_fetchers` run ahead of the applier.
    let (tx, mut rx) = mpsc::channel::<Result<(Snapshot, PathBuf)>>(1);
    let producer = {
        let (store, deltas, scratch) = (store.clone(), deltas.to_vec(), scratch.to_path_buf());
        let fetchers = opts.max_fetchers.max(1);
        tokio::spawn(async move {
            let mut downloads = futures::stream::iter(deltas.into_iter().enumerate())
                .map(|(i, d)| {
                    let (store, path) = (store.clone(), scratch.join(format!("delta-{i:08}")));
                    async move { download(&store, &d, &path).await.map(|()| (d, path)) }
                })
                .buffered(fetchers);
            while let Some(item) = downloads.next().await {
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    break; // the applier stopped (its error is reported) or a download failed
                }
            }
        })
    };
    let base = scratch.join("base.db");
    if let Err(e) = fetch_full(store, full, &base, opts.skip_hash_check).await {
        producer.abort();
        return Err(e);
    }
    let build_opts = BuildOptions {
        cluster: cluster.clone(),
        member,
        format: opts.format,
    };
    let part_path = part.to_path_buf();
    let applier = tokio::task::spawn_blocking(move || -> Result<RestoreStats> {
        let mut w =
            RestoreWriter::create(&base, &part_path, build_opts).map_err(RestoreFailure::from)?;
        while let Some(item) = rx.blocking_recv() {
            let (snap, file) = item?;
            apply_delta(&mut w, &snap, &file)?;
            let _ = std::fs::remove_file(&file);
        }
        Ok(w.finish().map_err(RestoreFailure::from)?)
    });
    let result = applier.await.map_err(|e| Error::Io {
        what: "restore applier".into(),
        source: io::Error::other(e),
    });
    producer.abort();
    result?
}

async fn download(store: &SnapStore, s: &Snapshot, path: &Path) -> Result<()> {
    let (total, digest_ok) = fetch_decompressed(store, s, path).await?;
    let problem = if total < delta_format::HASH_LEN as u64 {
        delta_format::DeltaFormatError::MissingHash(total as usize)
    } else if !digest_ok {
        delta_format::DeltaFormatError::HashMismatch(
            (total - delta_format::HASH_LEN as u64) as usize,
        )
    } else {
        return Ok(());
    };
    Err(RestoreFailure::Delta {
        name: s.snap_name.clone(),
        source: problem,
    }
    .into())
}

/// Streams an object through its decompressor into `path`, hashing all but the last 32 bytes;
/// returns the decompressed size and whether those 32 bytes are the sha256 of the rest.
async fn fetch_decompressed(store: &SnapStore, s: &Snapshot, path: &Path) -> Result<(u64, bool)> {
    let compression = Compression::from_suffix(&s.compression_suffix)
        .map_err(|e| RestoreFailure::Suffix(s.snap_name.clone(), e))?;
    let body = store.fetch(s).await?;
    let file = std::fs::File::create(path)
        .map_err(Error::io(format!("cannot create {}", path.display())))?;
    let name = s.snap_name.clone();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || -> Result<(u64, bool)> {
        let _guard = handle.enter();
        // Large reads: each read of an async body from a blocking thread is a round trip.
        let reader = io::BufReader::with_capacity(1 << 20, tokio_util::io::SyncIoBridge::new(body));
        let mut out = HashingFile {
            file: io::BufWriter::with_capacity(1 << 20, file),
            hasher: Sha256::new(),
            tail: Vec::new(),
            total: 0,
        };
        compression
            .decompress(reader, &mut out)
            .map_err(|source| RestoreFailure::Decompress {
                name: name.clone(),
                compression: compression.to_string(),
                source,
            })?;
        out.flush()
            .map_err(Error::io(format!("cannot write the decompressed {name}")))?;
        let ok = out.tail.len() == 32 && out.hasher.finalize().as_slice() == out.tail.as_slice();
        Ok((out.total, ok))
    })
    .await
    .map_err(|e| Error::Io {
        what: "snapshot download".into(),
        source: io::Error::other(e),
    })?
}

/// Writes through to a file and hashes everything but the last 32 bytes written.
struct HashingFile {
    file: io::BufWriter<std::fs::File>,
    hasher: Sha256,
    tail: Vec<u8>,
    total: u64,
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write_all(buf)?;
        self.total += buf.len() as u64;
        self.tail.extend_from_slice(buf);
        if self.tail.len() > 32 {
            let cut = self.tail.len() - 32;
            self.hasher.update(&self.tail[..cut]);
            self.tail.drain(..cut);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

async fn fetch_full(
    store: &SnapStore,
    full: &Snapshot,
    path: &Path,
    skip_hash_check: bool,
) -> Result<()> {
    let started = Instant::now();
    let (total, digest_ok) = fetch_decompressed(store, full, path).await?;
    let has_hash = total % 512 == 32;
    if !skip_hash_check {
        if !has_hash {
            return Err(RestoreFailure::MissingHash(full.snap_name.clone()).into());
        }
        if !digest_ok {
            return Err(RestoreFailure::HashMismatch(full.snap_name.clone()).into());
        }
    }
    tracing::info!(
        "Fetched base snapshot {} ({total} bytes) in {:.3}s",
        full.snap_name,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn apply_delta(w: &mut RestoreWriter, snap: &Snapshot, file: &Path) -> Result<()> {
    let mut object = Vec::new();
    std::fs::File::open(file)
        .and_then(|mut f| f.read_to_end(&mut object))
        .map_err(Error::io(format!("cannot read {}", file.display())))?;
    let json = &object[..object.len().saturating_sub(delta_format::HASH_LEN)];
    let events = delta_format::parse(json).map_err(|source| RestoreFailure::Delta {
        name: snap.snap_name.clone(),
        source,
    })?;
    drop(object);
    let before = w.revision();
    for e in &events {
        w.apply(&e.event).map_err(RestoreFailure::from)?;
    }
    tracing::info!(
        "Applied delta snapshot {}: revisions {}..={}",
        snap.snap_name,
        before + 1,
        w.revision()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_gaps_are_found_from_names() {
        let p = |k: &str| Snapshot::parse(k).unwrap();
        let ok = [
            p("v2/Incr-00000011-00000020-1"),
            p("v2/Incr-00000015-00000030-2"),
            p("v2/Incr-00000031-00000040-3"),
        ];
        check_chain(&ok).unwrap();
        let gap = [
            p("v2/Incr-00000011-00000020-1"),
            p("v2/Incr-00000025-00000030-2"),
        ];
        let e = check_chain(&gap).unwrap_err().to_string();
        assert!(e.contains("revisions 21..=24 are missing"), "{e}");
    }
}

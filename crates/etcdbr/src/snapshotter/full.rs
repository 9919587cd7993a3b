//! Full snapshots: stream etcd's `Maintenance.Snapshot` into one temp file while hashing it,
//! verify etcd's sha256 trailer, read the true revision from the database itself, then compress
//! and upload the file (trailer included) under `Full-00000000-<revision>-<time>`.
//!
//! Memory stays at a few chunks whatever the database size; temp disk holds one copy of it.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use etcd_client::Client;
use etcdbr_types::Revision;
use snapstore::{Kind, SnapStore, Snapshot};
use tokio::sync::mpsc;

use crate::compress::Compression;
use crate::error::{Error, Result};
use crate::events::Events;
use crate::pipe::compressed_body;
use crate::trailer::{TRAILER_LEN as TRAILER, write_checking_trailer};

/// What a full snapshot needs besides the etcd client and the store.
#[derive(Debug, Clone)]
pub struct FullSnapshotOptions {
    /// Where the snapshot file is staged (`--snapstore-temp-directory`).
    pub temp_dir: std::path::PathBuf,
    /// Compression of the uploaded object.
    pub compression: Compression,
    /// Timeout of the snapshot stream (`--etcd-snapshot-timeout`).
    pub snapshot_timeout: Duration,
}

/// A verified snapshot file on local disk.
pub(crate) struct ReceivedSnapshot {
    pub file: tempfile::NamedTempFile,
    /// Bytes received, trailer included.
    pub size: u64,
    /// The database's revision.
    pub revision: Revision,
}

/// Receives etcd's snapshot stream into a temp file, verifies its trailer and reads its
/// revision.
pub(crate) async fn receive(
    client: &mut Client,
    opts: &FullSnapshotOptions,
) -> Result<ReceivedSnapshot> {
    let tmp = tempfile::Builder::new()
        .prefix("etcd-snapshot-")
        .suffix(".db")
        .tempfile_in(&opts.temp_dir)
        .map_err(Error::io(format!(
            "cannot create a temp file in {}",
            opts.temp_dir.display()
        )))?;
    let file = tmp
        .reopen()
        .map_err(Error::io("cannot open the snapshot temp file"))?;
    let (tx, rx) = mpsc::channel::<Vec<u8>>(64);
    let writer = tokio::task::spawn_blocking(move || write_checking_trailer(file, rx));

    let started = Instant::now();
    let stream = async {
        let mut stream = client.snapshot().await.map_err(|e| Error::Etcd {
            op: "snapshot",
            source: e,
        })?;
        tracing::info!("Successfully opened snapshot reader on etcd");
        while let Some(msg) = stream.message().await.map_err(|e| Error::Etcd {
            op: "snapshot stream",
            source: e,
        })? {
            if tx.send(msg.blob().to_vec()).await.is_err() {
                break; // the writer failed; its error is reported below
            }
        }
        Ok::<(), Error>(())
    };
    let streamed = tokio::time::timeout(opts.snapshot_timeout, stream).await;
    drop(tx); // ends the writer's input
    let written = writer.await.map_err(|e| Error::Io {
        what: "snapshot writer".into(),
        source: io::Error::other(e),
    })?;
    match streamed {
        Err(_) => {
            return Err(Error::Timeout {
                op: "receive the full snapshot",
                after: opts.snapshot_timeout,
            });
        }
        Ok(r) => r?,
    }
    let (size, digest_ok) = written.map_err(Error::io("cannot write the snapshot temp file"))?;
    tracing::info!(
        "Total time taken by Snapshot API: {:.6} seconds.",
        started.elapsed().as_secs_f64()
    );
    if size < TRAILER as u64 || size % 512 != TRAILER as u64 {
        return Err(Error::MissingSnapshotHash { size });
    }
    if !digest_ok {
        return Err(Error::SnapshotHashMismatch {
            size: size - TRAILER as u64,
        });
    }
    tracing::info!("full snapshot SHA256 hash has been successfully verified.");
    let path = tmp.path().to_path_buf();
    let revision = tokio::task::spawn_blocking(move || db_revision(&path))
        .await
        .map_err(|e| Error::Io {
            what: "snapshot reader".into(),
            source: io::Error::other(e),
        })??;
    Ok(ReceivedSnapshot {
        file: tmp,
        size,
        revision,
    })
}

fn db_revision(path: &Path) -> Result<Revision> {
    let db = bbolt::Db::open(path).map_err(etcd_datadir::Error::from)?;
    Ok(etcd_datadir::current_revision(&db)?)
}

/// Takes a full snapshot and uploads it; returns the stored snapshot.
///
/// # Errors
/// etcd, trailer, database, compression or store errors; nothing is stored on error.
pub async fn take_full_snapshot(
    client: &mut Client,
    store: &SnapStore,
    opts: &FullSnapshotOptions,
    is_final: bool,
    events: &Events,
) -> Result<Snapshot> {
    let started = Instant::now();
    let r = full_snapshot(client, store, opts, is_final).await;
    events.snapshot(Kind::Full, started.elapsed(), r.as_ref().ok());
    r
}

async fn full_snapshot(
    client: &mut Client,
    store: &SnapStore,
    opts: &FullSnapshotOptions,
    is_final: bool,
) -> Result<Snapshot> {
    let started_at: DateTime<Utc> = Utc::now();
    let started = Instant::now();
    let received = receive(client, opts).await?;
    let snapshot = Snapshot::new(
        Kind::Full,
        Revision::ZERO,
        received.revision,
        started_at,
        opts.compression.suffix(),
        is_final,
        store.layout_prefix(),
    )
    .with_encryption(store.encrypts());
    let source = received
        .file
        .reopen()
        .map_err(Error::io("cannot reopen the snapshot temp file"))?;
    let body = compressed_body(
        io::BufReader::with_capacity(1 << 20, source),
        opts.compression,
        store.keyring(),
    );
    let stored = store.save(&snapshot, body, Some(received.size)).await?;
    tracing::info!(
        "Total time to save snapshot: {:.6} seconds. ({} bytes of database, {} bytes stored)",
        started.elapsed().as_secs_f64(),
        received.size,
        stored
    );
    tracing::info!("Successfully saved full snapshot at: {}", snapshot.key());
    Ok(snapshot)
}

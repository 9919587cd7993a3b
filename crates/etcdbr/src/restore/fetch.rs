//! Fetching the objects of a backup set for a restore: each is streamed from the store through
//! its decompressor while its sha256 trailer is checked, never held in memory whole.
//!
//! The full snapshot goes straight to the data directory's db file (the restore then works on
//! it in place). A delta's JSON is decoded as it streams and its events go to an
//! [`EventWriter`] file, so the fetchers, which run in parallel, do the decompression and JSON
//! work and the applier only packs pages.

use std::io::{self, BufReader, Read, Write};
use std::path::Path;
use std::time::Instant;

use snapstore::{SnapStore, Snapshot};

use super::event_file::EventWriter;
use crate::compress::Compression;
use crate::delta_format::{self, DeltaFormatError};
use crate::error::{Error, RestoreFailure, Result};
use crate::trailer::TrailerCheck;

/// Reads of an async body from a blocking thread are round trips: read in large blocks.
const BLOCK: usize = 1 << 20;

/// Fetches the full snapshot into `path`, trailer included (the db writer cuts it off), and
/// checks the trailer unless `skip_hash_check`.
pub(super) async fn full(
    store: &SnapStore,
    full: &Snapshot,
    path: &Path,
    skip_hash_check: bool,
) -> Result<()> {
    let started = Instant::now();
    let file = std::fs::File::create(path)
        .map_err(Error::io(format!("cannot create {}", path.display())))?;
    let name = full.snap_name.clone();
    let (total, digest_ok) = stream(store, full, move |mut body| {
        let mut out = io::BufWriter::with_capacity(BLOCK, file);
        io::copy(&mut body, &mut out)
            .and_then(|_| out.flush())
            .map_err(|e| decompress_failure(&name, e))?;
        Ok(())
    })
    .await?;
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

/// Fetches a delta, decodes its events into an event file at `path`, and checks its trailer;
/// the file is only used when this returns `Ok`.
pub(super) async fn delta(store: &SnapStore, s: &Snapshot, path: &Path) -> Result<()> {
    let started = Instant::now();
    let mut events = EventWriter::create(path)
        .map_err(Error::io(format!("cannot create {}", path.display())))?;
    let name = s.snap_name.clone();
    let bad = move |source| {
        Error::from(RestoreFailure::Delta {
            name: name.clone(),
            source,
        })
    };
    let bad_json = bad.clone();
    let (total, digest_ok) = stream(store, s, move |body| {
        let mut body = BufReader::with_capacity(BLOCK, body);
        delta_format::for_each_event(&mut body, |e| events.write(&e)).map_err(&bad_json)?;
        // The parser stops at the closing bracket; the trailer is still to be read (and hashed).
        io::copy(&mut body, &mut io::sink()).map_err(|e| bad_json(DeltaFormatError::Read(e)))?;
        events
            .finish()
            .map_err(|e| bad_json(DeltaFormatError::Io(e)))
    })
    .await?;
    if total < delta_format::HASH_LEN as u64 {
        return Err(bad(DeltaFormatError::MissingHash(total as usize)));
    }
    if !digest_ok {
        return Err(bad(DeltaFormatError::HashMismatch(
            (total - delta_format::HASH_LEN as u64) as usize,
        )));
    }
    tracing::debug!(
        "Fetched and decoded delta snapshot {} ({total} bytes) in {:.3}s",
        s.snap_name,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Streams `s` from the store through its decompressor and a hasher into `consume` (on a
/// blocking thread); returns the decompressed size and whether its last 32 bytes are the
/// sha256 of the rest. `consume` must read its input to the end.
async fn stream(
    store: &SnapStore,
    s: &Snapshot,
    consume: impl FnOnce(&mut dyn Read) -> Result<()> + Send + 'static,
) -> Result<(u64, bool)> {
    let compression = Compression::from_suffix(&s.compression_suffix)
        .map_err(|e| RestoreFailure::Suffix(s.snap_name.clone(), e))?;
    let body = store.fetch(s).await?;
    let name = s.snap_name.clone();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || -> Result<(u64, bool)> {
        let _guard = handle.enter();
        let raw = BufReader::with_capacity(BLOCK, tokio_util::io::SyncIoBridge::new(body));
        let decompressed = compression.reader(raw);
        let mut hashing = HashingReader {
            inner: decompressed,
            check: TrailerCheck::default(),
        };
        consume(&mut hashing)?;
        // Whatever `consume` left unread still counts (and must decompress cleanly).
        io::copy(&mut hashing, &mut io::sink()).map_err(|e| decompress_failure(&name, e))?;
        let total = hashing.check.total();
        Ok((total, hashing.check.matches()))
    })
    .await
    .map_err(|e| Error::Io {
        what: "snapshot download".into(),
        source: io::Error::other(e),
    })?
}

fn decompress_failure(name: &str, source: io::Error) -> Error {
    Error::Io {
        what: format!("cannot read or decompress {name}"),
        source,
    }
}

/// Passes bytes through a [`TrailerCheck`].
struct HashingReader<R> {
    inner: R,
    check: TrailerCheck,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.check.update(&buf[..n]);
        Ok(n)
    }
}

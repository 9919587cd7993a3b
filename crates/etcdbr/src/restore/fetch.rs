//! Fetching the objects of a backup set for a restore: each is streamed from the store through
//! its decompressor while its sha256 trailer is checked, never held in memory whole.
//!
//! The full snapshot goes straight to the data directory's db file (the restore then works on
//! it in place). A delta's JSON is decoded as it streams and its events go to an
//! [`EventWriter`] file, so the fetchers, which run in parallel, do the decompression and JSON
//! work and the applier only packs pages.

use std::io::{self, BufReader, Read};
use std::path::Path;
use std::time::Instant;

use chrono::{DateTime, Utc};
use snapstore::{SnapStore, Snapshot};
use tokio::sync::mpsc;

use super::event_file::EventWriter;
use crate::compress::Compression;
use crate::delta_format::{self, DeltaFormatError, Event};
use crate::error::{Error, RestoreFailure, Result};
use crate::events::{Event as Progress, Events};
use crate::trailer::{TrailerCheck, write_checking_trailer};

/// Reads of an async body from a blocking thread are round trips: read in large blocks.
const BLOCK: usize = 1 << 20;
/// Decompressed blocks of the full snapshot in flight to its hashing writer.
const PIPELINE_BLOCKS: usize = 4;

/// Fetches the full snapshot into `path`, trailer included (the db writer cuts it off), and
/// checks the trailer unless `skip_hash_check`. Decompression and the sha256 + write run on two
/// threads, so the full snapshot is in after the slower of the two, not after both.
pub(super) async fn full(
    store: &SnapStore,
    full: &Snapshot,
    path: &Path,
    skip_hash_check: bool,
    events: &Events,
) -> Result<()> {
    let started = Instant::now();
    let file = std::fs::File::create(path)
        .map_err(Error::io(format!("cannot create {}", path.display())))?;
    let (name, suffix, sealed) = (
        full.snap_name.clone(),
        full.compression_suffix.clone(),
        full.encrypted,
    );
    let (total, digest_ok) = stream(store, full, events, move |body| {
        let (tx, rx) = mpsc::channel::<Vec<u8>>(PIPELINE_BLOCKS);
        let writer = std::thread::spawn(move || write_checking_trailer(file, rx));
        let read = (|| -> io::Result<()> {
            loop {
                let mut block = Vec::with_capacity(BLOCK);
                body.take(BLOCK as u64).read_to_end(&mut block)?;
                if block.is_empty() || tx.blocking_send(block).is_err() {
                    return Ok(()); // the end, or the writer failed: its error is reported below
                }
            }
        })();
        drop(tx);
        let written = writer
            .join()
            .map_err(|_| io::Error::other("the snapshot writer thread panicked"));
        read.map_err(|e| decompress_failure(&name, &suffix, sealed, e))?;
        written.and_then(|w| w).map_err(Error::io(format!(
            "cannot write the base snapshot of {name}"
        )))
    })
    .await?;
    if !starts_with_meta_page(path) {
        return Err(RestoreFailure::NotADatabase(full.snap_name.clone()).into());
    }
    if !skip_hash_check {
        if total % 512 == 0 {
            return Err(RestoreFailure::MissingHash(full.snap_name.clone()).into());
        }
        if total % 512 != 32 {
            return Err(RestoreFailure::BadSize {
                name: full.snap_name.clone(),
                size: total,
            }
            .into());
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

/// Whether the file at `path` starts with a bbolt meta page (its magic number at offset 16).
fn starts_with_meta_page(path: &Path) -> bool {
    let mut head = [0u8; 20];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| {
            u32::from_le_bytes([head[16], head[17], head[18], head[19]]) == bbolt::MAGIC
        })
}

/// How deltas are fetched: with or without their events' times, and who hears about the bytes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fetching {
    /// Decode each event's time (a point-in-time restore by time needs them).
    pub(crate) times: bool,
    /// Told about the bytes read ([`Progress::Fetched`]).
    pub(crate) events: Events,
}

/// Fetches a delta, decodes its events (with their times when `how.times`) into an event file at
/// `path`, and checks its trailer; the file is only used when this returns `Ok`.
pub(super) async fn delta(
    store: &SnapStore,
    s: &Snapshot,
    path: &Path,
    how: &Fetching,
) -> Result<()> {
    let started = Instant::now();
    let writer = EventWriter::create(path)
        .map_err(Error::io(format!("cannot create {}", path.display())))?;
    let written =
        for_each_delta_event_timed(store, s, how, writer, |w, e, t| w.write(&e, t)).await?;
    written.finish().map_err(|e| {
        Error::from(RestoreFailure::Delta {
            name: s.snap_name.clone(),
            source: DeltaFormatError::Io(e),
        })
    })?;
    tracing::debug!(
        "Fetched and decoded delta snapshot {} in {:.3}s",
        s.snap_name,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Streams the delta `s` from the store, decoding its events one at a time into `f` (with
/// `state`, which is handed back), and checks what the original checks: the sha256 trailer, and
/// that the events start and end at the revisions the name says. `state` is only meaningful
/// when this returns `Ok`.
pub(crate) async fn for_each_delta_event<T: Send + 'static>(
    store: &SnapStore,
    s: &Snapshot,
    state: T,
    mut f: impl FnMut(&mut T, Event) -> io::Result<()> + Send + 'static,
) -> Result<T> {
    let how = Fetching::default();
    for_each_delta_event_timed(store, s, &how, state, move |state, e, _| f(state, e)).await
}

/// As [`for_each_delta_event`], with each event's time when `how.times`.
pub(crate) async fn for_each_delta_event_timed<T: Send + 'static>(
    store: &SnapStore,
    s: &Snapshot,
    how: &Fetching,
    state: T,
    mut f: impl FnMut(&mut T, Event, Option<DateTime<Utc>>) -> io::Result<()> + Send + 'static,
) -> Result<T> {
    let name = s.snap_name.clone();
    let bad = move |source| {
        Error::from(RestoreFailure::Delta {
            name: name.clone(),
            source,
        })
    };
    let bad_json = bad.clone();
    let times = how.times;
    let (total, digest_ok, (first, last), state) = stream(store, s, &how.events, move |body| {
        let mut state = state;
        let mut hashing = HashingReader {
            inner: body,
            check: TrailerCheck::default(),
        };
        let mut body = BufReader::with_capacity(BLOCK, &mut hashing);
        let mut span: Option<(i64, i64)> = None;
        delta_format::for_each_event_timed(&mut body, times, |e, t| {
            let r = e.mod_revision;
            span = Some(span.map_or((r, r), |(first, _)| (first, r)));
            f(&mut state, e, t)
        })
        .map_err(&bad_json)?;
        // The parser stops at the closing bracket; the trailer is still to be read (and hashed).
        io::copy(&mut body, &mut io::sink()).map_err(|e| bad_json(DeltaFormatError::Read(e)))?;
        Ok((
            hashing.check.total(),
            hashing.check.matches(),
            span.unwrap_or_default(),
            state,
        ))
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
    // As the original checks after applying each delta: its events must end where its name
    // says (and, as every revision is a write, start there too).
    if (first, last) != (s.start_revision.get(), s.last_revision.get()) {
        return Err(RestoreFailure::DeltaRange {
            name: s.snap_name.clone(),
            first,
            last,
            start: s.start_revision.get(),
            end: s.last_revision.get(),
        }
        .into());
    }
    Ok(state)
}

/// Streams `s` from the store through its decompressor into `consume` (on a blocking thread),
/// which must read its input to the end; returns what `consume` returns.
async fn stream<T: Send + 'static>(
    store: &SnapStore,
    s: &Snapshot,
    events: &Events,
    consume: impl FnOnce(&mut dyn Read) -> Result<T> + Send + 'static,
) -> Result<T> {
    let compression = Compression::from_suffix(&s.compression_suffix)
        .map_err(|e| RestoreFailure::Suffix(s.snap_name.clone(), e))?;
    let body = store.fetch(s).await?;
    let full = s.kind == snapstore::Kind::Full;
    let (encrypted, name) = (s.encrypted, s.snap_name.clone());
    let keyring = store.keyring().clone();
    let handle = tokio::runtime::Handle::current();
    let events = events.clone();
    tokio::task::spawn_blocking(move || -> Result<T> {
        let _guard = handle.enter();
        let counted = FetchCounter {
            inner: tokio_util::io::SyncIoBridge::new(body),
            events,
            unreported: 0,
        };
        let raw = BufReader::with_capacity(BLOCK, counted);
        let raw: Box<dyn Read + Send> = if encrypted {
            Box::new(BufReader::with_capacity(
                BLOCK,
                keyring.open(&name, raw).map_err(RestoreFailure::Crypt)?,
            ))
        } else {
            Box::new(raw)
        };
        // The full snapshot on every core; deltas, fetched several at once, one core each.
        let mut decompressed = if full {
            compression.reader(raw)
        } else {
            compression.serial_reader(raw)
        };
        consume(&mut decompressed)
    })
    .await
    .map_err(|e| Error::Io {
        what: "snapshot download".into(),
        source: io::Error::other(e),
    })?
}

/// A read of a snapshot that failed: bad or cut-off data is a corrupt object; anything else
/// (the store's connection) is an I/O failure.
fn decompress_failure(name: &str, suffix: &str, encrypted: bool, source: io::Error) -> Error {
    if matches!(
        source.kind(),
        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput | io::ErrorKind::UnexpectedEof
    ) {
        return RestoreFailure::Decompress {
            name: name.to_owned(),
            compression: format!(
                "{}{}",
                Compression::from_suffix(suffix)
                    .map_or_else(|_| suffix.to_owned(), |c| c.to_string()),
                if encrypted {
                    " after age decryption (a corrupt or cut-off age chunk fails here too)"
                } else {
                    ""
                }
            ),
            source,
        }
        .into();
    }
    Error::Io {
        what: format!("cannot read or decompress {name}"),
        source,
    }
}

/// Reports the bytes read from the store as [`Progress::Fetched`], every [`REPORT_EVERY`] bytes
/// and at the end.
struct FetchCounter<R> {
    inner: R,
    events: Events,
    unreported: u64,
}

/// How often [`FetchCounter`] reports.
const REPORT_EVERY: u64 = 4 << 20;

impl<R: Read> Read for FetchCounter<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.unreported += n as u64;
        if self.unreported >= REPORT_EVERY || (n == 0 && self.unreported > 0) {
            self.events.emit(&Progress::Fetched {
                bytes: self.unreported,
            });
            self.unreported = 0;
        }
        Ok(n)
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

//! Native compaction of an etcd database, as etcd compacts at its current revision C
//! (`reference/etcd-formats.md` §2.6): for each key only the newest revision is kept, and only
//! when it is not a tombstone, except a tombstone at C itself, which etcd 3.5 keeps
//! (`keyIndex.doCompact` stops at a generation whose tombstone is at or after C) and 3.4 drops;
//! `meta` records `scheduledCompactRev` = `finishedCompactRev` = C,
//! so etcd (and our revision reader) still reports C even when the newest writes were deletes.
//!
//! Two passes over the source's `key` bucket: the first ([`plan`]) finds each key's newest entry
//! ([`NewestEntries`]: bounded memory, a scratch file next to the source for big dbs), marks the
//! survivors in a bitmap of one bit per entry and records every entry's key and value lengths
//! in a scratch file; the second ([`CompactPlan::write_into`]) writes a fresh compact file with
//! the marked entries and every other bucket copied, without decoding a value again.
//!
//! bbolt's metas are the file's first pages but depend on the whole tree (its root, its size),
//! so a writer writes them last. [`CompactPlan::layout`] computes them first: the same writer
//! runs on the recorded lengths alone (stand-in keys and values of the same sizes, so the same
//! pages) into a sink that keeps only the metas. The compacted db can then be streamed in file
//! order ([`MetasApart`]), metas first, into a compressor and an upload, never staged on disk.

use etcdbr_types::Revision;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bbolt::{Db, DbWriter};

use crate::kv::KeyValue;
use crate::newest::NewestEntries;
use crate::restore::{DataDirFormat, RestoreError};
use crate::revision::RevKey;
use crate::schema::{FINISHED_COMPACT_REV, KEY_BUCKET, META_BUCKET, SCHEDULED_COMPACT_REV};
use crate::{Error, current_revision};

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactStats {
    /// The revision compacted at (the database's current revision).
    pub revision: Revision,
    /// `key` entries in the source.
    pub entries_before: u64,
    /// `key` entries kept.
    pub entries_after: u64,
}

fn bad_value(rev: RevKey) -> RestoreError {
    RestoreError::BadEvent {
        revision: rev.main,
        reason: "stored KeyValue does not decode",
    }
}

/// Writes a compacted copy of the database at `src` to `dst` (a new file, not fsynced), as the
/// etcd release of `format` compacts.
///
/// # Errors
/// The source is unreadable or not an etcd database, or writing fails.
pub fn compact_db(
    src: &Path,
    dst: &Path,
    format: DataDirFormat,
) -> Result<CompactStats, RestoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(dst)
        .map_err(|e| RestoreError::Write(e.into()))?;
    plan(src, format)?.write_into(file).map(|(stats, _)| stats)
}

/// Bytes of the two meta pages at the start of a file the compaction writes (4096-byte pages).
pub const METAS: u64 = 2 * bbolt::DEFAULT_PAGE_SIZE as u64;

/// A compaction whose first pass is done: the survivors are known, and the lengths of every
/// `key` entry are recorded for [`CompactPlan::layout`].
pub struct CompactPlan {
    db: Db,
    revision: i64,
    survivors: Vec<u64>,
    stats: CompactStats,
    /// Each key entry's key length (u16) and value length (u32), in bucket order.
    lengths: File,
    scratch: PathBuf,
}

/// The first pass of a compaction of the database at `src`, as the etcd release of `format`
/// compacts; scratch files go beside `src`.
///
/// # Errors
/// The source is unreadable or not an etcd database, or the scratch files cannot be written.
pub fn plan(src: &Path, format: DataDirFormat) -> Result<CompactPlan, RestoreError> {
    let keep_tombstone_at_revision = format == DataDirFormat::V35;
    let db = Db::open(src).map_err(Error::from)?;
    let revision = current_revision(&db)?.get();
    let key_bucket = db
        .bucket(KEY_BUCKET)
        .map_err(Error::from)?
        .ok_or(Error::MissingBucket("key"))?;
    let scratch = scratch_dir_of(src).to_path_buf();
    let scratch_err = |source| {
        RestoreError::Base(Error::Scratch {
            dir: scratch.clone(),
            source,
        })
    };
    let lengths_file = tempfile::tempfile_in(&scratch).map_err(scratch_err)?;
    let mut lengths = BufWriter::with_capacity(1 << 20, &lengths_file);

    // Each key's newest entry, tagged when it survives.
    let mut newest = NewestEntries::new(&scratch);
    let mut entries = 0u64;
    let mut c = db.cursor(&key_bucket).map_err(Error::from)?;
    let mut e = c.first().map_err(Error::from)?;
    while let Some(entry) = e {
        let rev = RevKey::from_bytes(entry.key).ok_or(Error::BadRevisionKey(entry.key.len()))?;
        let key = KeyValue::key_of(entry.value).map_err(|_| bad_value(rev))?;
        let survives = !rev.tombstone || (keep_tombstone_at_revision && rev.main == revision);
        newest.push(key, entries, survives)?;
        // bbolt bounds keys to 32 KiB and values to 2 GiB: both fit.
        lengths
            .write_all(&(entry.key.len() as u16).to_le_bytes())
            .and_then(|()| lengths.write_all(&(entry.value.len() as u32).to_le_bytes()))
            .map_err(scratch_err)?;
        entries += 1;
        e = c.next().map_err(Error::from)?;
    }
    lengths.flush().map_err(scratch_err)?;
    drop(lengths);
    let mut survivors = vec![0u64; entries.div_ceil(64) as usize];
    let mut entries_after = 0;
    newest.for_each_newest(|at, survives| {
        if survives {
            survivors[(at / 64) as usize] |= 1 << (at % 64);
            entries_after += 1;
        }
    })?;
    Ok(CompactPlan {
        db,
        revision,
        survivors,
        stats: CompactStats {
            revision: Revision(revision),
            entries_before: entries,
            entries_after,
        },
        lengths: lengths_file,
        scratch,
    })
}

impl CompactPlan {
    /// What the compaction does.
    #[must_use]
    pub fn stats(&self) -> &CompactStats {
        &self.stats
    }

    /// The compacted db's two meta pages and its size, computed before it is written: the
    /// writer runs on the recorded lengths alone, into a sink that keeps only the metas.
    ///
    /// # Errors
    /// The source's small buckets cannot be read, or the lengths cannot be read back.
    pub fn layout(&mut self) -> Result<(Vec<u8>, u64), RestoreError> {
        let scratch_err = |source| {
            RestoreError::Base(Error::Scratch {
                dir: self.scratch.clone(),
                source,
            })
        };
        self.lengths.seek(SeekFrom::Start(0)).map_err(scratch_err)?;
        let mut lengths = BufReader::with_capacity(1 << 20, &self.lengths);
        let mut zeros: Vec<u8> = Vec::new();
        let mut key = Vec::new();
        let sink = MetasApart::new(|_: &[u8]| Ok(()));
        let sink = self.write_buckets(sink, |out, survives| {
            let mut at = 0u64;
            let mut rec = [0u8; 6];
            let mut kept = 0u64;
            loop {
                match lengths.read_exact(&mut rec) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(kept),
                    Err(e) => return Err(scratch_err(e)),
                }
                if survives(at) {
                    let k = usize::from(u16::from_le_bytes([rec[0], rec[1]]));
                    let v = u32::from_le_bytes([rec[2], rec[3], rec[4], rec[5]]) as usize;
                    // A stand-in key of the same length that ascends as the real ones do.
                    key.clear();
                    key.extend_from_slice(&kept.to_be_bytes());
                    key.resize(k.max(8), 0);
                    if zeros.len() < v {
                        zeros.resize(v, 0);
                    }
                    out.put(&key[..k.max(8)], &zeros[..v])
                        .map_err(RestoreError::Write)?;
                    kept += 1;
                }
                at += 1;
            }
        })?;
        let size = sink.size();
        Ok((sink.into_metas(), size))
    }

    /// The second pass: writes the compacted db into `dst`, every page after the two metas once
    /// and in order, the metas last; returns the stats and the writer.
    ///
    /// # Errors
    /// The source cannot be read, or writing fails.
    pub fn write_into<W: Write + Seek>(self, dst: W) -> Result<(CompactStats, W), RestoreError> {
        let db = &self.db;
        let key_bucket = db
            .bucket(KEY_BUCKET)
            .map_err(Error::from)?
            .ok_or(Error::MissingBucket("key"))?;
        let dst = self.write_buckets(dst, |out, survives| {
            let mut at = 0u64;
            let mut kept = 0u64;
            let mut c = db.cursor(&key_bucket).map_err(Error::from)?;
            let mut e = c.first().map_err(Error::from)?;
            while let Some(entry) = e {
                // The key bucket is read in the same order as in the first pass.
                if survives(at) {
                    out.put(entry.key, entry.value)
                        .map_err(RestoreError::Write)?;
                    kept += 1;
                }
                at += 1;
                e = c.next().map_err(Error::from)?;
            }
            Ok(kept)
        })?;
        Ok((self.stats, dst))
    }

    /// Writes every bucket into a fresh file on `dst`: `key` through `key_entries` (given the
    /// survivor test, it returns the entries it put), `meta` with the compaction marks, the
    /// others copied.
    fn write_buckets<W: Write + Seek>(
        &self,
        dst: W,
        mut key_entries: impl FnMut(&mut DbWriter<W>, &dyn Fn(u64) -> bool) -> Result<u64, RestoreError>,
    ) -> Result<W, RestoreError> {
        let db = &self.db;
        let survives = |at: u64| {
            self.survivors
                .get((at / 64) as usize)
                .is_some_and(|w| w & (1 << (at % 64)) != 0)
        };
        let mut out = DbWriter::new(dst).map_err(RestoreError::Write)?;
        for name in db.bucket_names().map_err(Error::from)? {
            let b = db
                .bucket(&name)
                .map_err(Error::from)?
                .ok_or(Error::MissingBucket("listed bucket"))?;
            out.begin_bucket(&name, b.sequence());
            if name == KEY_BUCKET {
                let kept = key_entries(&mut out, &survives)?;
                if kept != self.stats.entries_after {
                    return Err(RestoreError::BadEvent {
                        revision: self.revision,
                        reason: "the key bucket changed between the compaction's passes",
                    });
                }
            } else if name == META_BUCKET {
                let mut meta: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
                let mut c = db.cursor(&b).map_err(Error::from)?;
                let mut e = c.first().map_err(Error::from)?;
                while let Some(entry) = e {
                    meta.insert(entry.key.to_vec(), entry.value.to_vec());
                    e = c.next().map_err(Error::from)?;
                }
                let at = RevKey {
                    main: self.revision,
                    sub: 0,
                    tombstone: false,
                }
                .to_bytes();
                meta.insert(SCHEDULED_COMPACT_REV.to_vec(), at.clone());
                meta.insert(FINISHED_COMPACT_REV.to_vec(), at);
                for (k, v) in &meta {
                    out.put(k, v).map_err(RestoreError::Write)?;
                }
            } else {
                let mut c = db.cursor(&b).map_err(Error::from)?;
                let mut e = c.first().map_err(Error::from)?;
                while let Some(entry) = e {
                    if entry.is_bucket() {
                        return Err(RestoreError::Base(Error::NestedBucket(
                            String::from_utf8_lossy(&name).into_owned(),
                        )));
                    }
                    out.put(entry.key, entry.value)
                        .map_err(RestoreError::Write)?;
                    e = c.next().map_err(Error::from)?;
                }
            }
            out.end_bucket().map_err(RestoreError::Write)?;
        }
        // Not fsynced: the caller reads the file back or streams it to an upload.
        out.finish().map_err(RestoreError::Write)
    }
}

/// A seekable writer for a file the compaction writes: the two meta pages are kept in memory
/// (they are written last) and every byte after them goes, in order, to `body`. With the
/// metas computed first ([`CompactPlan::layout`]), the file can be streamed in order.
pub struct MetasApart<F: FnMut(&[u8]) -> io::Result<()>> {
    metas: Vec<u8>,
    pos: u64,
    /// Where the next body byte must be written (the body is written once, in order).
    next: u64,
    body: F,
}

impl<F: FnMut(&[u8]) -> io::Result<()>> MetasApart<F> {
    /// Hands the body to `body`, piece by piece, in order.
    pub fn new(body: F) -> MetasApart<F> {
        MetasApart {
            metas: vec![0u8; METAS as usize],
            pos: 0,
            next: METAS,
            body,
        }
    }

    /// Bytes written: the metas and the body.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.next
    }

    /// The two meta pages as written.
    #[must_use]
    pub fn into_metas(self) -> Vec<u8> {
        self.metas
    }
}

impl<F: FnMut(&[u8]) -> io::Result<()>> Write for MetasApart<F> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let (at, end) = (self.pos, self.pos + data.len() as u64);
        if at < METAS {
            let upto = end.min(METAS);
            self.metas[at as usize..upto as usize].copy_from_slice(&data[..(upto - at) as usize]);
        }
        if end > METAS {
            let from = at.max(METAS);
            if from != self.next {
                // bbolt's writer writes each body page once, in order; anything else is a bug.
                return Err(io::Error::other(format!(
                    "the compacted database was written out of order (at {from}, expected {})",
                    self.next
                )));
            }
            (self.body)(&data[(from - at) as usize..])?;
            self.next = end;
        }
        self.pos = end;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<F: FnMut(&[u8]) -> io::Result<()>> Seek for MetasApart<F> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => i64::try_from(p).ok(),
            SeekFrom::End(d) => (self.next as i64).checked_add(d),
            SeekFrom::Current(d) => (self.pos as i64).checked_add(d),
        };
        match pos {
            Some(p) if p >= 0 => {
                self.pos = p as u64;
                Ok(self.pos)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the compacted database",
            )),
        }
    }
}

/// Where the per-key index of the db at `path` keeps its scratch file: beside the db (the
/// caller's scratch space), or the working directory for a bare file name.
pub(crate) fn scratch_dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

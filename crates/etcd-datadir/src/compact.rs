//! Native compaction of an etcd database, as etcd compacts at its current revision C
//! (`reference/etcd-formats.md` §2.6): for each key only the newest revision is kept, and only
//! when it is not a tombstone, except a tombstone at C itself, which etcd 3.5 keeps
//! (`keyIndex.doCompact` stops at a generation whose tombstone is at or after C) and 3.4 drops;
//! `meta` records `scheduledCompactRev` = `finishedCompactRev` = C,
//! so etcd (and our revision reader) still reports C even when the newest writes were deletes.
//!
//! Two passes over the source's `key` bucket: the first finds each key's newest entry
//! ([`NewestEntries`]: bounded memory, a scratch file next to the source for big dbs) and marks
//! the survivors in a bitmap of one bit per entry; the second writes a fresh compact file with
//! the marked entries and every other bucket copied, without decoding a value again.

use etcdbr_types::Revision;
use std::collections::BTreeMap;
use std::io::{Seek, Write};
use std::path::Path;

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
    compact_db_into(src, file, format).map(|(stats, _)| stats)
}

/// [`compact_db`] into any seekable writer: the pages after the two metas are written in
/// order, once each, and the metas last (so that a caller can compress the body as it is
/// written); returns the writer.
///
/// # Errors
/// As [`compact_db`].
pub fn compact_db_into<W: Write + Seek>(
    src: &Path,
    dst: W,
    format: DataDirFormat,
) -> Result<(CompactStats, W), RestoreError> {
    let keep_tombstone_at_revision = format == DataDirFormat::V35;
    let db = Db::open(src).map_err(Error::from)?;
    let revision = current_revision(&db)?.get();
    let key_bucket = db
        .bucket(KEY_BUCKET)
        .map_err(Error::from)?
        .ok_or(Error::MissingBucket("key"))?;

    // Each key's newest entry, tagged when it survives.
    let mut newest = NewestEntries::new(scratch_dir_of(src));
    let mut stats = CompactStats {
        revision: Revision(revision),
        ..CompactStats::default()
    };
    let mut entries = 0u64;
    let mut c = db.cursor(&key_bucket).map_err(Error::from)?;
    let mut e = c.first().map_err(Error::from)?;
    while let Some(entry) = e {
        let rev = RevKey::from_bytes(entry.key).ok_or(Error::BadRevisionKey(entry.key.len()))?;
        let key = KeyValue::key_of(entry.value).map_err(|_| bad_value(rev))?;
        let survives = !rev.tombstone || (keep_tombstone_at_revision && rev.main == revision);
        newest.push(key, entries, survives)?;
        entries += 1;
        e = c.next().map_err(Error::from)?;
    }
    stats.entries_before = entries;
    let mut survivors = vec![0u64; entries.div_ceil(64) as usize];
    newest.for_each_newest(|at, survives| {
        if survives {
            survivors[(at / 64) as usize] |= 1 << (at % 64);
        }
    })?;

    let mut out = DbWriter::new(dst).map_err(RestoreError::Write)?;
    for name in db.bucket_names().map_err(Error::from)? {
        let b = db
            .bucket(&name)
            .map_err(Error::from)?
            .ok_or(Error::MissingBucket("listed bucket"))?;
        out.begin_bucket(&name, b.sequence());
        if name == META_BUCKET {
            let mut meta: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            let mut c = db.cursor(&b).map_err(Error::from)?;
            let mut e = c.first().map_err(Error::from)?;
            while let Some(entry) = e {
                meta.insert(entry.key.to_vec(), entry.value.to_vec());
                e = c.next().map_err(Error::from)?;
            }
            let at = RevKey {
                main: revision,
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
            let is_key = name == KEY_BUCKET;
            let mut at = 0usize;
            let mut c = db.cursor(&b).map_err(Error::from)?;
            let mut e = c.first().map_err(Error::from)?;
            while let Some(entry) = e {
                if entry.is_bucket() {
                    return Err(RestoreError::Base(Error::NestedBucket(
                        String::from_utf8_lossy(&name).into_owned(),
                    )));
                }
                // The key bucket is read in the same order as in the first pass.
                let keep = !is_key
                    || survivors
                        .get(at / 64)
                        .is_some_and(|w| w & (1 << (at % 64)) != 0);
                if keep {
                    out.put(entry.key, entry.value)
                        .map_err(RestoreError::Write)?;
                    if is_key {
                        stats.entries_after += 1;
                    }
                }
                at += 1;
                e = c.next().map_err(Error::from)?;
            }
        }
        out.end_bucket().map_err(RestoreError::Write)?;
    }
    // Not fsynced: the caller reads the file back (to upload it, which makes it durable).
    let dst = out.finish().map_err(RestoreError::Write)?;
    Ok((stats, dst))
}

/// Where the per-key index of the db at `path` keeps its scratch file: beside the db (the
/// caller's scratch space), or the working directory for a bare file name.
pub(crate) fn scratch_dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

//! Native `HashKV`: the number `etcdctl endpoint hashkv --rev R` reports, computed from a db.
//!
//! etcd hashes, with CRC-32C, the bucket name `key` and then every `key` bucket entry (key and
//! value bytes) whose main revision is at most `R`. Entries at or below the compaction revision
//! that compaction keeps are included; a finished compaction leaves only those behind.

use std::path::Path;

use crate::Error;
use crate::newest::NewestEntries;
use crate::revision::main_of;
use crate::schema::KEY_BUCKET;

/// The hash of the key-value history up to `rev`, and the number of entries hashed.
///
/// # Errors
/// The db is unreadable or has no `key` bucket.
pub fn hash_kv(db: &bbolt::Db, rev: i64) -> Result<(u32, u64), Error> {
    let bucket = db.bucket(KEY_BUCKET)?.ok_or(Error::MissingBucket("key"))?;
    let mut crc = crc32c::crc32c(KEY_BUCKET);
    let mut n = 0;
    let mut c = db.cursor(&bucket)?;
    let mut e = c.first()?;
    while let Some(entry) = e {
        if main_of(entry.key).is_some_and(|m| m > rev) {
            break;
        }
        crc = crc32c::crc32c_append(crc, entry.key);
        crc = crc32c::crc32c_append(crc, entry.value);
        n += 1;
        e = c.next()?;
    }
    Ok((crc, n))
}

/// The number of keys alive at `rev`: keys whose newest entry at or below `rev` is not a
/// tombstone. Memory is bounded ([`NewestEntries`]); a big db's index spills to an anonymous
/// scratch file in `scratch_dir` (24 bytes a key).
///
/// # Errors
/// The db is unreadable, has no `key` bucket, holds an entry that does not decode, or the
/// scratch file cannot be written.
pub fn live_keys(db: &bbolt::Db, rev: i64, scratch_dir: &Path) -> Result<u64, Error> {
    let bucket = db.bucket(KEY_BUCKET)?.ok_or(Error::MissingBucket("key"))?;
    let mut newest = NewestEntries::new(scratch_dir);
    let mut c = db.cursor(&bucket)?;
    let mut e = c.first()?;
    let mut position = 0;
    while let Some(entry) = e {
        let key = crate::revision::RevKey::from_bytes(entry.key)
            .ok_or(Error::BadRevisionKey(entry.key.len()))?;
        if key.main > rev {
            break;
        }
        let name = crate::kv::KeyValue::key_of(entry.value).map_err(|e| Error::BadValue(e.0))?;
        // etcdutl's revision bump leaves an empty value (no key) at the bumped revision.
        if !name.is_empty() {
            newest.push(name, position, !key.tombstone)?;
            position += 1;
        }
        e = c.next()?;
    }
    let mut alive = 0;
    newest.for_each_newest(|_, live| alive += u64::from(live))?;
    Ok(alive)
}

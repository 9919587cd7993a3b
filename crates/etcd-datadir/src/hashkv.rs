//! Native `HashKV`: the number `etcdctl endpoint hashkv --rev R` reports, computed from a db.
//!
//! etcd hashes, with CRC-32C, the bucket name `key` and then every `key` bucket entry (key and
//! value bytes) whose main revision is at most `R`. Entries at or below the compaction revision
//! that compaction keeps are included; a finished compaction leaves only those behind.

use crate::Error;
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

//! etcd's on-disk schema, read from (and later written to) a data directory or snapshot.
//!
//! - [`revision`]: revision keys of the `key` bucket.
//! - [`schema`]: bucket names and `meta` keys.
//! - [`current_revision`]: the true revision of an etcd bbolt file, as etcd computes it at
//!   start-up, so a full snapshot can be named after its content rather than after a separate
//!   `Get` (the original's bug #1044).

pub mod cluster;
pub mod compact;
pub mod hashkv;
pub mod kv;
pub mod layout;
pub mod newest;
pub mod proto;
pub mod raft;
pub mod restore;
pub mod revision;
pub mod schema;
pub mod snap;
pub mod validate;
pub mod wal;

use etcdbr_types::Revision;

/// Why the revision of a db could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bbolt file is unreadable or malformed.
    #[error("cannot read the etcd database")]
    Bbolt(#[from] bbolt::Error),
    /// The file has no `key` bucket: not an etcd database.
    #[error("the database has no {0:?} bucket; it is not an etcd v3 database")]
    MissingBucket(&'static str),
    /// A bucket holds nested buckets, which etcd never writes.
    #[error("bucket {0:?} holds nested buckets; not an etcd database")]
    NestedBucket(String),
    /// A key of the `key` bucket is not a revision key.
    #[error("the last key of the key bucket is not a revision key ({0} bytes)")]
    BadRevisionKey(usize),
    /// A stored key-value does not decode.
    #[error("a stored key-value does not decode: {0}")]
    BadValue(&'static str),
    /// The scratch file of the per-key index cannot be written or read.
    #[error(
        "cannot use the scratch file for the per-key index in {dir} (it needs about 24 bytes a key; free space there or point the temp dir elsewhere)"
    )]
    Scratch {
        /// Where the scratch file was created.
        dir: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The revision etcd would report for this database: the main revision of the last `key`
/// entry, or the finished compaction revision when that is higher (after a compaction the
/// newest writes may be gone). An empty, never-compacted store is at revision 1, as etcd
/// reports it.
///
/// # Errors
/// [`Error`] when the file is not a readable etcd database.
pub fn current_revision(db: &bbolt::Db) -> Result<Revision, Error> {
    let last = last_key_revision(db)?;
    let compacted = compacted_revision(db)?.map(Revision::get);
    Ok(Revision(
        last.into_iter().chain(compacted).max().unwrap_or(1).max(1),
    ))
}

/// The revision of the last finished compaction (`finishedCompactRev`), if any: reads and
/// watches at or below it are refused, and its `hashkv` covers only what compaction kept.
///
/// # Errors
/// [`Error`] when the file is not a readable etcd database.
pub fn compacted_revision(db: &bbolt::Db) -> Result<Option<Revision>, Error> {
    let mut compacted = None;
    if let Some(meta) = db.bucket(schema::META_BUCKET)? {
        let mut c = db.cursor(&meta)?;
        let mut e = c.first()?;
        while let Some(entry) = e {
            if entry.key == schema::FINISHED_COMPACT_REV {
                compacted = revision::main_of(entry.value).map(Revision);
            }
            e = c.next()?;
        }
    }
    Ok(compacted)
}

fn last_key_revision(db: &bbolt::Db) -> Result<Option<i64>, Error> {
    let key = db
        .bucket(schema::KEY_BUCKET)?
        .ok_or(Error::MissingBucket("key"))?;
    let mut cursor = db.cursor(&key)?;
    let last = match cursor.last()? {
        Some(e) => Some(revision::main_of(e.key).ok_or(Error::BadRevisionKey(e.key.len()))?),
        None => None,
    };
    Ok(last)
}

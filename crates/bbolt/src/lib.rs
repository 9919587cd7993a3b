//! Read bbolt files, the storage engine under etcd, without mapping or loading them whole.
//!
//! etcd keeps its MVCC store in a bbolt file (`member/snap/db`), and the snapshot stream of
//! `Maintenance.Snapshot` is the same file with a sha256 appended. No Rust crate opens such files
//! (etcd writes them with "no freelist sync"), so etcdbr reads them itself.
//!
//! - [`Db`] opens a file, validates and selects a meta page, and reads pages on demand.
//! - [`Bucket`] locates a bucket (paged or inline); [`Cursor`] walks it in key order.
//! - [`check`] verifies a file as bbolt's `Tx.Check` does, reporting every [`Finding`].
//! - [`DbWriter`] writes a fresh compact file bottom-up from sorted buckets, or appends to an
//!   existing one (new pages after its high-water mark, a new root and metas).
//! - [`page`] and [`meta`] hold the on-disk layouts, parsed from byte slices.
//!
//! ```no_run
//! let db = bbolt::Db::open("member/snap/db")?;
//! let key = db.bucket(b"key")?.expect("etcd db has a key bucket");
//! let mut cursor = db.cursor(&key)?;
//! if let Some(last) = cursor.last()? {
//!     println!("last revision key: {:02x?}", last.key);
//! }
//! # Ok::<(), bbolt::Error>(())
//! ```

mod bucket;
mod check;
mod cursor;
mod db;
mod error;
mod levels;
pub mod meta;
mod node;
pub mod page;
mod types;
mod write;

pub use bucket::{BUCKET_HEADER_SIZE, Bucket};
pub use check::{Finding, check};
pub use cursor::Cursor;
pub use db::Db;
pub use error::{Error, Result};
pub use types::{
    DEFAULT_PAGE_SIZE, MAGIC, MAX_KEY_SIZE, MAX_VALUE_SIZE, PGID_NO_FREELIST, Pgid, Txid, VERSION,
};
pub use write::{BucketWriter, DbWriter};

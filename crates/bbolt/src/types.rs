//! Identifiers and format constants of the bbolt file format.

use std::fmt;

/// A page id: the index of a page in the file (page `n` starts at byte `n * page_size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pgid(pub u64);

impl fmt::Display for Pgid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A transaction id, as stored in the meta pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Txid(pub u64);

/// The magic number at the start of every meta (read little-endian).
pub const MAGIC: u32 = 0xED0C_DAED;
/// The magic number as it reads on a file written on a big-endian machine.
pub const MAGIC_BIG_ENDIAN: u32 = 0xEDDA_0CED;
/// The only file format version bbolt writes.
pub const VERSION: u32 = 2;
/// The page size a writer should use; readers take it from the meta page.
pub const DEFAULT_PAGE_SIZE: u32 = 4096;
/// `meta.freelist` value meaning "no freelist page is stored" (etcd's `NoFreelistSync`).
pub const PGID_NO_FREELIST: Pgid = Pgid(u64::MAX);
/// Largest key bbolt accepts.
pub const MAX_KEY_SIZE: usize = 32768;
/// Largest value bbolt accepts.
pub const MAX_VALUE_SIZE: usize = (1 << 31) - 2;

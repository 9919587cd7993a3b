//! Errors of reading a bbolt file.

use crate::types::Pgid;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a bbolt file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading the file failed.
    #[error("cannot read the bbolt file")]
    Io(#[from] std::io::Error),
    /// The file or a structure in it ends early.
    #[error("{what} is truncated: need {need} bytes, have {have}")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// The meta magic is wrong: not a bbolt file.
    #[error("not a bbolt file (magic {0:#010x})")]
    InvalidMagic(u32),
    /// The file was written on a big-endian machine.
    #[error(
        "the bbolt file was written on a big-endian machine; only little-endian files are supported"
    )]
    BigEndian,
    /// Unsupported format version.
    #[error("unsupported bbolt version {0} (expected 2)")]
    VersionMismatch(u32),
    /// The meta checksum does not match its contents.
    #[error("meta checksum mismatch: stored {stored:#018x}, computed {computed:#018x}")]
    Checksum {
        /// Checksum stored in the meta.
        stored: u64,
        /// Checksum computed from the meta's bytes.
        computed: u64,
    },
    /// Neither meta page is valid.
    #[error("both meta pages are invalid (meta 0: {meta0}; meta 1: {meta1})")]
    NoValidMeta {
        /// Why meta 0 was rejected.
        meta0: Box<Error>,
        /// Why meta 1 was rejected.
        meta1: Box<Error>,
    },
    /// The page size in the meta is not usable.
    #[error("invalid page size {0} in the meta page")]
    InvalidPageSize(u32),
    /// The file is shorter than the meta's high-water mark says.
    #[error(
        "the file has {file_len} bytes but the meta says {pages} pages of {page_size} bytes are in use"
    )]
    ShortFile {
        /// File length.
        file_len: u64,
        /// High-water mark.
        pages: u64,
        /// Page size.
        page_size: u32,
    },
    /// A page id at or past the high-water mark.
    #[error("page {pgid} is out of bounds (high-water mark {high_water})")]
    PageOutOfBounds {
        /// The referenced page.
        pgid: Pgid,
        /// The meta's high-water mark.
        high_water: Pgid,
    },
    /// A page whose header names another id.
    #[error("page {pgid} says it is page {found}")]
    PageIdMismatch {
        /// Where it was read.
        pgid: Pgid,
        /// What its header says.
        found: Pgid,
    },
    /// A page of a type not expected where it was found.
    #[error("page {pgid:?} has flags {flags:#06x}; expected a {expected} page")]
    UnexpectedPageType {
        /// The page (None: an inline bucket page).
        pgid: Option<Pgid>,
        /// Its flags.
        flags: u16,
        /// What was expected.
        expected: &'static str,
    },
    /// An element, or the key/value it points to, lies outside its page.
    #[error("element {index} of page {pgid:?} lies outside the page")]
    ElementOutOfBounds {
        /// The page (None: an inline bucket page).
        pgid: Option<Pgid>,
        /// The element index.
        index: usize,
    },
    /// A branch page without elements.
    #[error("branch page {0:?} has no elements")]
    EmptyBranch(Option<Pgid>),
    /// The tree is deeper than any real file (a loop in the page references).
    #[error("the b+tree is deeper than {0} levels; page references loop")]
    TooDeep(usize),
    /// A bucket value that is too short to hold a bucket header.
    #[error("bucket {name:?} has a malformed header ({len} bytes)")]
    BadBucketHeader {
        /// Bucket name, lossily decoded.
        name: String,
        /// Value length.
        len: usize,
    },
    /// An entry given to the writer is unusable.
    #[error("cannot write bucket {bucket:?}: {reason}")]
    BadEntry {
        /// Bucket name, lossily decoded.
        bucket: String,
        /// What is wrong.
        reason: String,
    },
    /// A key of the root bucket that is not a bucket.
    #[error("{0:?} is not a bucket")]
    NotABucket(String),
}

//! Page headers and the element arrays of branch and leaf pages.
//!
//! ```text
//! page header (16 bytes)         leaf element (16 bytes)      branch element (16 bytes)
//!  off size field                 off size field               off size field
//!   0   8   id (u64)                0   4   flags (u32)          0   4   pos (u32)
//!   8   2   flags (u16)             4   4   pos (u32)            4   4   ksize (u32)
//!  10   2   count (u16)             8   4   ksize (u32)          8   8   pgid (u64)
//!  12   4   overflow (u32)         12   4   vsize (u32)
//! ```
//!
//! Elements follow the header; `pos` is relative to the element's own address, so element `i`'s
//! key starts at `16 + 16*i + pos`. All integers are little-endian. A page with `overflow = n`
//! spans `n + 1` contiguous pages of the file.

use crate::error::{Error, Result};
use crate::types::Pgid;

/// Size of the page header.
pub const PAGE_HEADER_SIZE: usize = 16;
/// Size of one branch or leaf element.
pub const ELEMENT_SIZE: usize = 16;

/// Page type flags (`page.flags`); a valid page has exactly one of them.
pub mod flags {
    /// Branch page: elements point at child pages.
    pub const BRANCH: u16 = 0x01;
    /// Leaf page: elements hold key/value pairs.
    pub const LEAF: u16 = 0x02;
    /// Meta page (pages 0 and 1).
    pub const META: u16 = 0x04;
    /// Freelist page.
    pub const FREELIST: u16 = 0x10;
}

/// Leaf element flag: the value is a bucket header (a sub-bucket), not plain data.
pub const BUCKET_LEAF_FLAG: u32 = 0x01;

/// The decoded 16-byte page header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageHeader {
    /// The id the page says it has; must equal its position in the file.
    pub id: Pgid,
    /// Page type flags (see [`flags`]).
    pub flags: u16,
    /// Element count (the freelist uses it differently).
    pub count: u16,
    /// Number of additional pages this page spans.
    pub overflow: u32,
}

impl PageHeader {
    /// Decodes a header from the first 16 bytes of `b`.
    ///
    /// # Errors
    /// [`Error::Truncated`] when `b` is shorter than a header.
    pub fn from_bytes(b: &[u8]) -> Result<PageHeader> {
        if b.len() < PAGE_HEADER_SIZE {
            return Err(Error::Truncated {
                what: "page header",
                need: PAGE_HEADER_SIZE,
                have: b.len(),
            });
        }
        Ok(PageHeader {
            id: Pgid(u64_at(b, 0)),
            flags: u16::from_le_bytes([b[8], b[9]]),
            count: u16::from_le_bytes([b[10], b[11]]),
            overflow: u32_at(b, 12),
        })
    }

    /// Encodes the header into the first 16 bytes of `out`.
    pub fn write_to(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.id.0.to_le_bytes());
        out[8..10].copy_from_slice(&self.flags.to_le_bytes());
        out[10..12].copy_from_slice(&self.count.to_le_bytes());
        out[12..16].copy_from_slice(&self.overflow.to_le_bytes());
    }

    /// A readable name of the page type, for messages.
    #[must_use]
    pub fn type_name(&self) -> &'static str {
        match self.flags {
            flags::BRANCH => "branch",
            flags::LEAF => "leaf",
            flags::META => "meta",
            flags::FREELIST => "freelist",
            _ => "unknown",
        }
    }
}

/// A page read into memory: its bytes span `(overflow + 1) * page_size` (or, for an inline
/// bucket, exactly the bytes stored in the parent's value).
#[derive(Debug, Clone)]
pub struct Page {
    /// Where the page came from: its pgid, or `None` for an inline bucket page.
    pub pgid: Option<Pgid>,
    /// The header decoded from `bytes`.
    pub header: PageHeader,
    bytes: Vec<u8>,
}

/// One element of a leaf page, borrowed from the page.
#[derive(Debug, Clone, Copy)]
pub struct LeafEntry<'a> {
    /// Element flags; [`BUCKET_LEAF_FLAG`] marks a sub-bucket.
    pub flags: u32,
    /// The key.
    pub key: &'a [u8],
    /// The value (a bucket header plus optional inline page when `flags` marks a bucket).
    pub value: &'a [u8],
}

impl LeafEntry<'_> {
    /// Whether this element is a bucket rather than a plain key/value pair.
    #[must_use]
    pub fn is_bucket(&self) -> bool {
        self.flags & BUCKET_LEAF_FLAG != 0
    }
}

/// One element of a branch page, borrowed from the page.
#[derive(Debug, Clone, Copy)]
pub struct BranchEntry<'a> {
    /// First key of the child subtree.
    pub key: &'a [u8],
    /// The child page.
    pub pgid: Pgid,
}

impl Page {
    /// Wraps page bytes; `pgid` is where they were read from (`None` for inline pages).
    ///
    /// # Errors
    /// [`Error::Truncated`] when the bytes cannot hold a header.
    pub fn from_bytes(pgid: Option<Pgid>, bytes: Vec<u8>) -> Result<Page> {
        let header = PageHeader::from_bytes(&bytes)?;
        Ok(Page {
            pgid,
            header,
            bytes,
        })
    }

    /// The raw bytes of the page, header included.
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether this is a leaf page.
    #[must_use]
    pub fn is_leaf(&self) -> bool {
        self.header.flags == flags::LEAF
    }

    /// Whether this is a branch page.
    #[must_use]
    pub fn is_branch(&self) -> bool {
        self.header.flags == flags::BRANCH
    }

    /// Number of elements.
    #[must_use]
    pub fn count(&self) -> usize {
        usize::from(self.header.count)
    }

    fn element(&self, i: usize) -> Result<&[u8]> {
        let start = PAGE_HEADER_SIZE + ELEMENT_SIZE * i;
        self.bytes
            .get(start..start + ELEMENT_SIZE)
            .ok_or(Error::ElementOutOfBounds {
                pgid: self.pgid,
                index: i,
            })
    }

    fn slice(&self, i: usize, pos: u32, len: u64) -> Result<&[u8]> {
        let start = (PAGE_HEADER_SIZE + ELEMENT_SIZE * i) as u64 + u64::from(pos);
        let end = start.checked_add(len).ok_or(Error::ElementOutOfBounds {
            pgid: self.pgid,
            index: i,
        })?;
        let (start, end) = (usize::try_from(start), usize::try_from(end));
        match (start, end) {
            (Ok(s), Ok(e)) => self.bytes.get(s..e).ok_or(Error::ElementOutOfBounds {
                pgid: self.pgid,
                index: i,
            }),
            _ => Err(Error::ElementOutOfBounds {
                pgid: self.pgid,
                index: i,
            }),
        }
    }

    /// Leaf element `i`, bounds-checked against the page.
    ///
    /// # Errors
    /// [`Error::ElementOutOfBounds`] when the element or its data lies outside the page.
    pub fn leaf(&self, i: usize) -> Result<LeafEntry<'_>> {
        let e = self.element(i)?;
        let (fl, pos, ksize, vsize) = (u32_at(e, 0), u32_at(e, 4), u32_at(e, 8), u32_at(e, 12));
        let kv = self.slice(i, pos, u64::from(ksize) + u64::from(vsize))?;
        let (key, value) = kv.split_at(ksize as usize);
        Ok(LeafEntry {
            flags: fl,
            key,
            value,
        })
    }

    /// Branch element `i`, bounds-checked against the page.
    ///
    /// # Errors
    /// [`Error::ElementOutOfBounds`] when the element or its key lies outside the page.
    pub fn branch(&self, i: usize) -> Result<BranchEntry<'_>> {
        let e = self.element(i)?;
        let (pos, ksize, pgid) = (u32_at(e, 0), u32_at(e, 4), u64_at(e, 8));
        let key = self.slice(i, pos, u64::from(ksize))?;
        Ok(BranchEntry {
            key,
            pgid: Pgid(pgid),
        })
    }
}

pub(crate) fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

pub(crate) fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

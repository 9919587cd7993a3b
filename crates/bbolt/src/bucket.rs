//! Bucket headers: where a bucket's tree starts, or its inline page.
//!
//! A bucket is stored as a leaf element (flag `0x01`) of its parent whose value starts with a
//! 16-byte header `{root: u64, sequence: u64}`. When `root == 0` the bucket is *inline*: the rest
//! of the value is a complete leaf page image (header plus elements).

use std::rc::Rc;

use crate::error::{Error, Result};
use crate::page::{Page, flags, u64_at};
use crate::types::Pgid;

/// Size of the bucket header at the start of a bucket's value.
pub const BUCKET_HEADER_SIZE: usize = 16;

/// A bucket, located but not yet read.
#[derive(Debug, Clone)]
pub enum Bucket {
    /// A bucket whose tree lives in pages of the file.
    Paged {
        /// Root page of the bucket's tree.
        root: Pgid,
        /// The bucket's sequence counter.
        sequence: u64,
    },
    /// A small bucket stored inside its parent's leaf.
    Inline {
        /// The inline leaf page.
        page: Rc<Page>,
        /// The bucket's sequence counter.
        sequence: u64,
    },
}

impl Bucket {
    /// Decodes the value of a bucket element named `name`.
    ///
    /// # Errors
    /// [`Error::BadBucketHeader`] when the value is too short or an inline page is malformed.
    pub fn from_value(name: &[u8], value: &[u8]) -> Result<Bucket> {
        let bad = || Error::BadBucketHeader {
            name: String::from_utf8_lossy(name).into_owned(),
            len: value.len(),
        };
        if value.len() < BUCKET_HEADER_SIZE {
            return Err(bad());
        }
        let root = u64_at(value, 0);
        let sequence = u64_at(value, 8);
        if root != 0 {
            return Ok(Bucket::Paged {
                root: Pgid(root),
                sequence,
            });
        }
        let page =
            Page::from_bytes(None, value[BUCKET_HEADER_SIZE..].to_vec()).map_err(|_| bad())?;
        if page.header.flags != flags::LEAF {
            return Err(Error::UnexpectedPageType {
                pgid: None,
                flags: page.header.flags,
                expected: "leaf",
            });
        }
        Ok(Bucket::Inline {
            page: Rc::new(page),
            sequence,
        })
    }

    /// The bucket's sequence counter.
    #[must_use]
    pub fn sequence(&self) -> u64 {
        match self {
            Bucket::Paged { sequence, .. } | Bucket::Inline { sequence, .. } => *sequence,
        }
    }
}

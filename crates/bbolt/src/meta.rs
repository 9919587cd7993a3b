//! The meta page: where the tree starts, how big the file is, and which transaction wrote it.
//!
//! ```text
//! page off  meta off  size  field
//!   16        0        4    magic      0xED0CDAED
//!   20        4        4    version    2
//!   24        8        4    page_size
//!   28       12        4    flags      (unused, 0)
//!   32       16        8    root.root  pgid of the root bucket's root page
//!   40       24        8    root.sequence
//!   48       32        8    freelist   pgid, or 0xFFFF_FFFF_FFFF_FFFF when not stored
//!   56       40        8    pgid       high-water mark: number of pages in use
//!   64       48        8    txid
//!   72       56        8    checksum   FNV-1a 64 over meta bytes [0, 56)
//! ```
//!
//! Pages 0 and 1 both hold a meta; a reader takes the valid one with the higher txid.

use crate::error::{Error, Result};
use crate::page::{PAGE_HEADER_SIZE, u32_at, u64_at};
use crate::types::{MAGIC, MAGIC_BIG_ENDIAN, Pgid, Txid, VERSION};

/// Size of the encoded meta (without the page header).
pub const META_SIZE: usize = 64;
const CHECKSUM_OFFSET: usize = 56;

/// A decoded meta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Must be [`MAGIC`].
    pub magic: u32,
    /// Must be [`VERSION`].
    pub version: u32,
    /// Size of every page in the file.
    pub page_size: u32,
    /// Unused by bbolt; kept for round trips.
    pub flags: u32,
    /// Root page of the root bucket (whose keys are the bucket names).
    pub root: Pgid,
    /// Sequence of the root bucket.
    pub root_sequence: u64,
    /// Freelist page, or [`crate::PGID_NO_FREELIST`].
    pub freelist: Pgid,
    /// High-water mark: valid page ids are below it.
    pub pgid: Pgid,
    /// Id of the transaction that wrote this meta.
    pub txid: Txid,
    /// The stored checksum.
    pub checksum: u64,
}

impl Meta {
    /// Decodes a meta from the bytes of a meta page (header included).
    ///
    /// # Errors
    /// [`Error::Truncated`] when `page` is too short. Validation is separate: [`Meta::validate`].
    pub fn from_page(page: &[u8]) -> Result<Meta> {
        let need = PAGE_HEADER_SIZE + META_SIZE;
        if page.len() < need {
            return Err(Error::Truncated {
                what: "meta page",
                need,
                have: page.len(),
            });
        }
        Ok(Meta::from_bytes(&page[PAGE_HEADER_SIZE..need]))
    }

    fn from_bytes(b: &[u8]) -> Meta {
        Meta {
            magic: u32_at(b, 0),
            version: u32_at(b, 4),
            page_size: u32_at(b, 8),
            flags: u32_at(b, 12),
            root: Pgid(u64_at(b, 16)),
            root_sequence: u64_at(b, 24),
            freelist: Pgid(u64_at(b, 32)),
            pgid: Pgid(u64_at(b, 40)),
            txid: Txid(u64_at(b, 48)),
            checksum: u64_at(b, 56),
        }
    }

    /// Encodes the meta (with the checksum it carries) into 64 bytes.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; META_SIZE] {
        let mut b = [0u8; META_SIZE];
        b[0..4].copy_from_slice(&self.magic.to_le_bytes());
        b[4..8].copy_from_slice(&self.version.to_le_bytes());
        b[8..12].copy_from_slice(&self.page_size.to_le_bytes());
        b[12..16].copy_from_slice(&self.flags.to_le_bytes());
        b[16..24].copy_from_slice(&self.root.0.to_le_bytes());
        b[24..32].copy_from_slice(&self.root_sequence.to_le_bytes());
        b[32..40].copy_from_slice(&self.freelist.0.to_le_bytes());
        b[40..48].copy_from_slice(&self.pgid.0.to_le_bytes());
        b[48..56].copy_from_slice(&self.txid.0.to_le_bytes());
        b[56..64].copy_from_slice(&self.checksum.to_le_bytes());
        b
    }

    /// The FNV-1a 64 checksum of the first 56 encoded bytes, as bbolt computes it.
    #[must_use]
    pub fn compute_checksum(&self) -> u64 {
        fnv1a64(&self.to_bytes()[..CHECKSUM_OFFSET])
    }

    /// Checks magic, then version, then checksum, as bbolt does. A zero checksum is refused
    /// (bbolt 1.3 accepted it, 1.4 does not; etcd never writes one).
    ///
    /// # Errors
    /// [`Error::BigEndian`], [`Error::InvalidMagic`], [`Error::VersionMismatch`] or [`Error::Checksum`].
    pub fn validate(&self) -> Result<()> {
        if self.magic == MAGIC_BIG_ENDIAN {
            return Err(Error::BigEndian);
        }
        if self.magic != MAGIC {
            return Err(Error::InvalidMagic(self.magic));
        }
        if self.version != VERSION {
            return Err(Error::VersionMismatch(self.version));
        }
        let want = self.compute_checksum();
        if self.checksum != want {
            return Err(Error::Checksum {
                stored: self.checksum,
                computed: want,
            });
        }
        Ok(())
    }
}

/// FNV-1a, 64 bit.
#[must_use]
pub fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    /// meta0 of a real etcd 3.4.23 snapshot (`reference/etcd-formats.md` §1.3).
    const REAL_META0: [u8; 80] = [
        0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, //
        0xed, 0xda, 0x0c, 0xed, 2, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, //
        3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, //
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 5, 0, 0, 0, 0, 0, 0, 0, //
        0x0a, 0, 0, 0, 0, 0, 0, 0, 0x2f, 0xe7, 0x16, 0x8a, 0x2d, 0xce, 0x2d, 0x0e,
    ];

    #[test]
    fn decodes_and_validates_a_real_meta() {
        let m = Meta::from_page(&REAL_META0).unwrap();
        assert_eq!(m.page_size, 4096);
        assert_eq!(m.root, Pgid(3));
        assert_eq!(m.freelist, crate::PGID_NO_FREELIST);
        assert_eq!(m.pgid, Pgid(5));
        assert_eq!(m.txid, Txid(10));
        m.validate().unwrap();
        assert_eq!(&m.to_bytes()[..], &REAL_META0[16..]);
    }

    #[test]
    fn rejects_a_flipped_byte() {
        let mut page = REAL_META0;
        page[40] ^= 1;
        let m = Meta::from_page(&page).unwrap();
        assert!(matches!(m.validate(), Err(Error::Checksum { .. })));
    }
}

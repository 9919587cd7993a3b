//! Revision keys of the `key` bucket.
//!
//! ```text
//! off size
//!  0   8   main revision, u64 big-endian
//!  8   1   '_' (0x5f)
//!  9   8   sub revision (index of the change within its transaction), u64 big-endian
//! 17   1   't' (0x74), only on tombstones (deletes)
//! ```
//!
//! Byte order equals (main, sub) order, so the last key of the bucket holds the newest write.

use etcdbr_types::Revision;

/// Length of a revision key without the tombstone mark.
pub const REV_KEY_LEN: usize = 17;
/// Length of a tombstone key.
pub const TOMBSTONE_KEY_LEN: usize = 18;
const SEPARATOR: u8 = b'_';
const TOMBSTONE_MARK: u8 = b't';

/// A decoded revision key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RevKey {
    /// The transaction's revision.
    pub main: i64,
    /// The change's index within the transaction.
    pub sub: i64,
    /// Whether the change deleted its key.
    pub tombstone: bool,
}

impl RevKey {
    /// Decodes a 17- or 18-byte revision key; `None` for anything else.
    #[must_use]
    pub fn from_bytes(b: &[u8]) -> Option<RevKey> {
        let tombstone = match b.len() {
            REV_KEY_LEN => false,
            TOMBSTONE_KEY_LEN if b[17] == TOMBSTONE_MARK => true,
            _ => return None,
        };
        if b[8] != SEPARATOR {
            return None;
        }
        let main = i64::from_be_bytes(b[0..8].try_into().ok()?);
        let sub = i64::from_be_bytes(b[9..17].try_into().ok()?);
        Some(RevKey {
            main,
            sub,
            tombstone,
        })
    }

    /// Encodes the key (17 bytes, or 18 with the tombstone mark).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(TOMBSTONE_KEY_LEN);
        v.extend_from_slice(&self.main.to_be_bytes());
        v.push(SEPARATOR);
        v.extend_from_slice(&self.sub.to_be_bytes());
        if self.tombstone {
            v.push(TOMBSTONE_MARK);
        }
        v
    }

    /// The main revision.
    #[must_use]
    pub fn revision(&self) -> Revision {
        Revision(self.main)
    }
}

/// The main revision at the start of any key of at least 8 bytes, as etcd's tools read it
/// (`snapshot status`, etcd-backup-restore's validator).
#[must_use]
pub fn main_of(key: &[u8]) -> Option<i64> {
    key.get(0..8)
        .and_then(|b| b.try_into().ok())
        .map(i64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_odd_lengths() {
        let k = RevKey {
            main: 7,
            sub: 2,
            tombstone: true,
        };
        let b = k.to_bytes();
        assert_eq!(
            b,
            [0, 0, 0, 0, 0, 0, 0, 7, 0x5f, 0, 0, 0, 0, 0, 0, 0, 2, 0x74]
        );
        assert_eq!(RevKey::from_bytes(&b), Some(k));
        assert_eq!(
            RevKey::from_bytes(&b[..17]),
            Some(RevKey {
                tombstone: false,
                ..k
            })
        );
        assert_eq!(RevKey::from_bytes(&b[..16]), None);
        let mut bad = b.clone();
        bad[8] = b'-';
        assert_eq!(RevKey::from_bytes(&bad), None);
        assert_eq!(main_of(&b), Some(7));
    }

    #[test]
    fn byte_order_is_revision_order() {
        let a = RevKey {
            main: 255,
            sub: 9,
            tombstone: false,
        }
        .to_bytes();
        let b = RevKey {
            main: 256,
            sub: 0,
            tombstone: false,
        }
        .to_bytes();
        assert!(a < b);
    }
}

//! Value types that more than one etcdbr crate needs, and Go's value syntax ([`go`]).
//!
//! [`Revision`] is an etcd MVCC main revision. Snapshot names (`snapstore`), the etcd data
//! directory (`etcd-datadir`) and the snapshot engine (`etcdbr`) all speak about revisions; they
//! share this one type instead of passing bare integers around.

pub mod go;

use std::fmt;

/// An etcd main revision: the number etcd bumps by one for every write transaction that
/// changes at least one key.
///
/// `Display` pads to eight digits (`%08d`) because that is how the original
/// etcd-backup-restore writes revisions into snapshot names; larger revisions take more digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision(pub i64);

impl Revision {
    /// Revision zero: "nothing yet" (an empty etcd has revision 1 once started).
    pub const ZERO: Revision = Revision(0);

    /// The revision right after this one.
    #[must_use]
    pub fn next(self) -> Revision {
        Revision(self.0.saturating_add(1))
    }

    /// The raw number.
    #[must_use]
    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08}", self.0)
    }
}

impl From<i64> for Revision {
    fn from(v: i64) -> Self {
        Revision(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_pads_to_eight_digits_and_grows_beyond() {
        assert_eq!(Revision(42).to_string(), "00000042");
        assert_eq!(Revision(123_456_789).to_string(), "123456789");
        assert_eq!(Revision(7).next(), Revision(8));
    }
}

//! A consistency check equivalent to bbolt's `Tx.Check` (1.4 strength): it walks every bucket
//! and reports every problem it finds instead of stopping at the first.
//!
//! Reported: pages out of bounds, referenced twice, of the wrong type, or whose header names
//! another id; elements outside their page; keys out of order within a page or with respect to
//! the parent's branch keys; freelist ids duplicated, out of bounds or reachable; and, when a
//! freelist is stored, pages neither reachable nor free.

use std::fmt;

use crate::bucket::{BUCKET_HEADER_SIZE, Bucket};
use crate::db::Db;
use crate::error::Error;
use crate::page::{PAGE_HEADER_SIZE, Page, flags, u64_at};
use crate::types::{PGID_NO_FREELIST, Pgid};

/// One problem found by [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Finding {
    /// A page id at or beyond the high-water mark.
    OutOfBounds {
        /// The page.
        pgid: Pgid,
        /// The meta's high-water mark.
        high_water: Pgid,
    },
    /// A page reached twice (or overlapping another page's overflow).
    MultipleReferences {
        /// The page.
        pgid: Pgid,
    },
    /// A page reachable from a bucket but listed as free.
    ReachableFreed {
        /// The page.
        pgid: Pgid,
    },
    /// A page neither reachable nor free.
    UnreachableUnfreed {
        /// The page.
        pgid: Pgid,
    },
    /// A page id listed twice in the freelist.
    DoubleFree {
        /// The page.
        pgid: Pgid,
    },
    /// A page that cannot be read or decoded where a bucket needs it.
    BadPage {
        /// The page (None: an inline bucket).
        pgid: Option<Pgid>,
        /// What is wrong.
        reason: String,
    },
    /// Keys not in strictly ascending order, or outside the range their parent allows.
    KeyOrder {
        /// The page (None: an inline bucket).
        pgid: Option<Pgid>,
        /// Element index.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::OutOfBounds { pgid, high_water } => write!(
                f,
                "page {pgid}: out of bounds (high-water mark {high_water})"
            ),
            Finding::MultipleReferences { pgid } => write!(f, "page {pgid}: multiple references"),
            Finding::ReachableFreed { pgid } => write!(f, "page {pgid}: reachable freed"),
            Finding::UnreachableUnfreed { pgid } => write!(f, "page {pgid}: unreachable unfreed"),
            Finding::DoubleFree { pgid } => write!(f, "page {pgid}: already freed"),
            Finding::BadPage { pgid, reason } => write!(f, "page {pgid:?}: {reason}"),
            Finding::KeyOrder {
                pgid,
                index,
                reason,
            } => write!(f, "page {pgid:?} element {index}: {reason}"),
        }
    }
}

struct Checker<'a> {
    db: &'a Db,
    high_water: u64,
    reachable: Vec<bool>,
    free: Vec<bool>,
    findings: Vec<Finding>,
}

/// Checks the whole file and returns every finding (empty: consistent).
///
/// # Errors
/// Only for I/O failures that prevent checking at all; problems in the data are findings.
pub fn check(db: &Db) -> Result<Vec<Finding>, Error> {
    let high_water = db.meta().pgid.0;
    let n = usize::try_from(high_water)
        .unwrap_or(usize::MAX)
        .min(1 << 34);
    let mut c = Checker {
        db,
        high_water,
        reachable: vec![false; n],
        free: vec![false; n],
        findings: Vec::new(),
    };
    c.reachable[0] = true;
    if n > 1 {
        c.reachable[1] = true;
    }
    let freelist = db.meta().freelist;
    let has_freelist = freelist != PGID_NO_FREELIST;
    if has_freelist {
        c.read_freelist(freelist);
    }
    let root = db.root();
    c.bucket(&root, 0);
    if has_freelist {
        for id in 2..n {
            if !c.reachable[id] && !c.free[id] {
                c.findings.push(Finding::UnreachableUnfreed {
                    pgid: Pgid(id as u64),
                });
            }
        }
    }
    Ok(c.findings)
}

impl Checker<'_> {
    fn read_freelist(&mut self, pgid: Pgid) {
        let page = match self.db.page(pgid) {
            Ok(p) => p,
            Err(e) => {
                return self.findings.push(Finding::BadPage {
                    pgid: Some(pgid),
                    reason: format!("freelist: {e}"),
                });
            }
        };
        if page.header.flags != flags::FREELIST {
            return self.findings.push(Finding::BadPage {
                pgid: Some(pgid),
                reason: format!("freelist page has flags {:#06x}", page.header.flags),
            });
        }
        self.mark(pgid, page.header.overflow);
        let b = page.bytes();
        let (count, start) = if page.header.count == 0xFFFF {
            (
                usize::try_from(u64_at(b, PAGE_HEADER_SIZE)).unwrap_or(usize::MAX),
                PAGE_HEADER_SIZE + 8,
            )
        } else {
            (usize::from(page.header.count), PAGE_HEADER_SIZE)
        };
        for i in 0..count {
            let off = start + 8 * i;
            if off + 8 > b.len() {
                self.findings.push(Finding::BadPage {
                    pgid: Some(pgid),
                    reason: "freelist count exceeds the page".into(),
                });
                break;
            }
            let id = u64_at(b, off);
            if id >= self.high_water {
                self.findings.push(Finding::OutOfBounds {
                    pgid: Pgid(id),
                    high_water: Pgid(self.high_water),
                });
            } else if std::mem::replace(&mut self.free[id as usize], true) {
                self.findings.push(Finding::DoubleFree { pgid: Pgid(id) });
            }
        }
    }

    /// Marks a page and its overflow reachable, reporting double references and freed pages.
    fn mark(&mut self, pgid: Pgid, overflow: u32) {
        for id in pgid.0..=pgid.0 + u64::from(overflow) {
            let Some(slot) = self.reachable.get_mut(id as usize) else {
                continue;
            };
            if std::mem::replace(slot, true) {
                self.findings
                    .push(Finding::MultipleReferences { pgid: Pgid(id) });
            }
            if self.free.get(id as usize).copied().unwrap_or(false) {
                self.findings
                    .push(Finding::ReachableFreed { pgid: Pgid(id) });
            }
        }
    }

    fn bucket(&mut self, bucket: &Bucket, depth: usize) {
        match bucket {
            Bucket::Paged { root, .. } => self.page(*root, None, None, depth),
            Bucket::Inline { page, .. } => self.leaf(page, None, None, depth),
        }
    }

    fn page(&mut self, pgid: Pgid, lower: Option<&[u8]>, upper: Option<&[u8]>, depth: usize) {
        if pgid.0 >= self.high_water {
            return self.findings.push(Finding::OutOfBounds {
                pgid,
                high_water: Pgid(self.high_water),
            });
        }
        if depth > 64 {
            return self.findings.push(Finding::BadPage {
                pgid: Some(pgid),
                reason: "tree deeper than 64 levels".into(),
            });
        }
        let page = match self.db.page(pgid) {
            Ok(p) => p,
            Err(e) => {
                return self.findings.push(Finding::BadPage {
                    pgid: Some(pgid),
                    reason: e.to_string(),
                });
            }
        };
        if self
            .reachable
            .get(pgid.0 as usize)
            .copied()
            .unwrap_or(false)
        {
            return self.findings.push(Finding::MultipleReferences { pgid });
        }
        self.mark(pgid, page.header.overflow);
        if page.is_branch() {
            self.branch(&page, lower, upper, depth);
        } else if page.is_leaf() {
            self.leaf(&page, lower, upper, depth);
        } else {
            self.findings.push(Finding::BadPage {
                pgid: Some(pgid),
                reason: format!(
                    "invalid type: flags {:#06x}, expected a branch or leaf page",
                    page.header.flags
                ),
            });
        }
    }

    fn branch(&mut self, page: &Page, lower: Option<&[u8]>, upper: Option<&[u8]>, depth: usize) {
        let n = page.count();
        if n == 0 {
            return self.findings.push(Finding::BadPage {
                pgid: page.pgid,
                reason: "branch page without elements".into(),
            });
        }
        let mut entries = Vec::with_capacity(n);
        for i in 0..n {
            match page.branch(i) {
                Ok(e) => entries.push((e.key.to_vec(), e.pgid)),
                Err(e) => {
                    return self.findings.push(Finding::BadPage {
                        pgid: page.pgid,
                        reason: e.to_string(),
                    });
                }
            }
        }
        self.order(
            page.pgid,
            entries.iter().map(|e| e.0.as_slice()),
            lower,
            upper,
        );
        for i in 0..n {
            let child_upper = entries.get(i + 1).map(|e| e.0.as_slice()).or(upper);
            self.page(entries[i].1, Some(&entries[i].0), child_upper, depth + 1);
        }
    }

    fn leaf(&mut self, page: &Page, lower: Option<&[u8]>, upper: Option<&[u8]>, depth: usize) {
        let n = page.count();
        let mut keys = Vec::with_capacity(n);
        let mut sub = Vec::new();
        for i in 0..n {
            match page.leaf(i) {
                Ok(e) => {
                    keys.push(e.key.to_vec());
                    if e.is_bucket() {
                        if e.value.len() < BUCKET_HEADER_SIZE {
                            self.findings.push(Finding::BadPage {
                                pgid: page.pgid,
                                reason: format!("element {i}: short bucket header"),
                            });
                        } else {
                            match Bucket::from_value(e.key, e.value) {
                                Ok(b) => sub.push(b),
                                Err(err) => self.findings.push(Finding::BadPage {
                                    pgid: page.pgid,
                                    reason: err.to_string(),
                                }),
                            }
                        }
                    }
                }
                Err(e) => {
                    return self.findings.push(Finding::BadPage {
                        pgid: page.pgid,
                        reason: e.to_string(),
                    });
                }
            }
        }
        self.order(page.pgid, keys.iter().map(Vec::as_slice), lower, upper);
        for b in sub {
            self.bucket(&b, depth + 1);
        }
    }

    fn order<'k>(
        &mut self,
        pgid: Option<Pgid>,
        keys: impl Iterator<Item = &'k [u8]>,
        lower: Option<&[u8]>,
        upper: Option<&[u8]>,
    ) {
        let mut prev: Option<&[u8]> = None;
        for (i, k) in keys.enumerate() {
            if prev.is_some_and(|p| p >= k) {
                self.findings.push(Finding::KeyOrder {
                    pgid,
                    index: i,
                    reason: "keys are not in strictly ascending order",
                });
            }
            if lower.is_some_and(|l| k < l) {
                self.findings.push(Finding::KeyOrder {
                    pgid,
                    index: i,
                    reason: "key is below its parent's branch key",
                });
            }
            if upper.is_some_and(|u| k >= u) {
                self.findings.push(Finding::KeyOrder {
                    pgid,
                    index: i,
                    reason: "key is not below the parent's next branch key",
                });
            }
            prev = Some(k);
        }
    }
}

//! Opening a bbolt file and reading its pages on demand.
//!
//! Nothing is mapped or loaded as a whole: each page is read with a positioned read when a
//! cursor needs it, so memory stays at a few pages whatever the file size. The file may carry
//! trailing bytes (etcd's snapshot stream appends a sha256); they are never read.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::rc::Rc;

use crate::bucket::Bucket;
use crate::cursor::Cursor;
use crate::error::{Error, Result};
use crate::meta::{META_SIZE, Meta};
use crate::page::{PAGE_HEADER_SIZE, Page, PageHeader};
use crate::types::Pgid;

/// An open bbolt file, read-only.
#[derive(Debug)]
pub struct Db {
    file: File,
    file_len: u64,
    meta: Meta,
}

impl Db {
    /// Opens `path` and selects its newest valid meta.
    ///
    /// # Errors
    /// I/O errors, [`Error::NoValidMeta`] when neither meta validates, [`Error::ShortFile`] when
    /// the file is shorter than the meta's high-water mark.
    pub fn open(path: impl AsRef<Path>) -> Result<Db> {
        Db::from_file(File::open(path)?)
    }

    /// Like [`Db::open`], for an already open file.
    ///
    /// # Errors
    /// As [`Db::open`].
    pub fn from_file(file: File) -> Result<Db> {
        let file_len = file.metadata()?.len();
        let page_size = detect_page_size(&file, file_len)?;
        let meta0 = read_meta(&file, 0);
        let meta1 = read_meta(&file, u64::from(page_size));
        let meta = match (meta0, meta1) {
            (Ok(a), Ok(b)) => {
                if b.txid > a.txid {
                    b
                } else {
                    a
                }
            }
            (Ok(a), Err(_)) => a,
            (Err(_), Ok(b)) => b,
            (Err(e0), Err(e1)) => {
                return Err(Error::NoValidMeta {
                    meta0: Box::new(e0),
                    meta1: Box::new(e1),
                });
            }
        };
        if meta.page_size != page_size {
            return Err(Error::InvalidPageSize(meta.page_size));
        }
        let need = meta.pgid.0.checked_mul(u64::from(page_size));
        if need.is_none_or(|n| n > file_len) {
            return Err(Error::ShortFile {
                file_len,
                pages: meta.pgid.0,
                page_size,
            });
        }
        Ok(Db {
            file,
            file_len,
            meta,
        })
    }

    /// The meta in use.
    #[must_use]
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The page size of this file.
    #[must_use]
    pub fn page_size(&self) -> u32 {
        self.meta.page_size
    }

    /// Size of the database proper (`pgid * page_size`), without trailing bytes.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.meta.pgid.0 * u64::from(self.meta.page_size)
    }

    /// Length of the file on disk (may exceed [`Db::size`]).
    #[must_use]
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// Reads page `pgid` with all its overflow pages, checking that it lies below the
    /// high-water mark and that its header names it.
    ///
    /// # Errors
    /// [`Error::PageOutOfBounds`], [`Error::PageIdMismatch`] or an I/O error.
    pub fn page(&self, pgid: Pgid) -> Result<Page> {
        let high_water = self.meta.pgid;
        if pgid >= high_water {
            return Err(Error::PageOutOfBounds { pgid, high_water });
        }
        let ps = u64::from(self.meta.page_size);
        let mut buf = vec![0u8; ps as usize];
        self.file.read_exact_at(&mut buf, pgid.0 * ps)?;
        let header = PageHeader::from_bytes(&buf)?;
        if header.id != pgid {
            return Err(Error::PageIdMismatch {
                pgid,
                found: header.id,
            });
        }
        if header.overflow > 0 {
            let last = pgid.0 + u64::from(header.overflow);
            if last >= high_water.0 {
                return Err(Error::PageOutOfBounds {
                    pgid: Pgid(last),
                    high_water,
                });
            }
            let total = (u64::from(header.overflow) + 1) * ps;
            buf.resize(total as usize, 0);
            self.file
                .read_exact_at(&mut buf[ps as usize..], (pgid.0 + 1) * ps)?;
        }
        Page::from_bytes(Some(pgid), buf)
    }

    /// The root bucket, whose keys are the names of the top-level buckets.
    #[must_use]
    pub fn root(&self) -> Bucket {
        Bucket::Paged {
            root: self.meta.root,
            sequence: self.meta.root_sequence,
        }
    }

    /// The top-level bucket called `name`, if it exists.
    ///
    /// # Errors
    /// Page read errors, [`Error::NotABucket`] when `name` is a plain key.
    pub fn bucket(&self, name: &[u8]) -> Result<Option<Bucket>> {
        let root = self.root();
        let mut c = self.cursor(&root)?;
        let mut e = c.first()?;
        while let Some(entry) = e {
            if entry.key == name {
                if !entry.is_bucket() {
                    return Err(Error::NotABucket(
                        String::from_utf8_lossy(name).into_owned(),
                    ));
                }
                return Bucket::from_value(entry.key, entry.value).map(Some);
            }
            e = c.next()?;
        }
        Ok(None)
    }

    /// The names of the top-level buckets, in key order.
    ///
    /// # Errors
    /// Page read errors.
    pub fn bucket_names(&self) -> Result<Vec<Vec<u8>>> {
        Ok(self
            .root_entries()?
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }

    /// The top-level buckets as stored in the root bucket: `(name, value)` pairs in key order,
    /// each value a bucket header (and inline page), ready to be written back unchanged.
    ///
    /// # Errors
    /// Page read errors.
    pub fn root_entries(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let root = self.root();
        let mut c = self.cursor(&root)?;
        let mut entries = Vec::new();
        let mut e = c.first()?;
        while let Some(entry) = e {
            if entry.is_bucket() {
                entries.push((entry.key.to_vec(), entry.value.to_vec()));
            }
            e = c.next()?;
        }
        Ok(entries)
    }

    /// The leaves of the tree rooted at `root`, as `(separator key, pgid)` pairs in key order,
    /// read from the branch pages alone (a root leaf is read for its first key). All leaves of a
    /// bbolt tree sit at the same depth, found by descending the leftmost path once.
    ///
    /// # Errors
    /// Page read errors, malformed branches, a tree deeper than bbolt ever builds.
    pub fn leaf_refs(&self, root: Pgid) -> Result<Vec<(Vec<u8>, Pgid)>> {
        const MAX_DEPTH: usize = 64;
        let top = self.page(root)?;
        if top.is_leaf() {
            let first = if top.count() > 0 {
                top.leaf(0)?.key.to_vec()
            } else {
                Vec::new()
            };
            return Ok(vec![(first, root)]);
        }
        let mut depth = 1;
        let mut page = self.page(top.branch(0)?.pgid)?;
        while page.is_branch() {
            depth += 1;
            if depth > MAX_DEPTH || page.count() == 0 {
                return Err(Error::TooDeep(MAX_DEPTH));
            }
            page = self.page(page.branch(0)?.pgid)?;
        }
        // Step down one branch level at a time, `depth` times, to the leaves' separators.
        let mut level = vec![(Vec::new(), root)];
        for _ in 0..depth {
            let mut next = Vec::new();
            for (_, id) in &level {
                let p = self.page(*id)?;
                if !p.is_branch() {
                    return Err(Error::UnexpectedPageType {
                        pgid: Some(*id),
                        flags: p.header.flags,
                        expected: "branch",
                    });
                }
                for i in 0..p.count() {
                    let b = p.branch(i)?;
                    next.push((b.key.to_vec(), b.pgid));
                }
            }
            level = next;
        }
        Ok(level)
    }

    /// A cursor over the keys of `bucket`.
    ///
    /// # Errors
    /// Reading the bucket's root page fails.
    pub fn cursor(&self, bucket: &Bucket) -> Result<Cursor<'_>> {
        let root = match bucket {
            Bucket::Paged { root, .. } => Rc::new(self.page(*root)?),
            Bucket::Inline { page, .. } => Rc::clone(page),
        };
        Ok(Cursor::new(self, root))
    }
}

fn read_meta(file: &File, offset: u64) -> Result<Meta> {
    let mut buf = [0u8; PAGE_HEADER_SIZE + META_SIZE];
    file.read_exact_at(&mut buf, offset)?;
    let m = Meta::from_page(&buf)?;
    m.validate()?;
    Ok(m)
}

/// bbolt takes the page size from meta 0; when meta 0 is damaged, bbolt 1.4 probes for meta 1
/// at `1024 << i`. We do the same, so a file with a torn first page still opens.
fn detect_page_size(file: &File, file_len: u64) -> Result<u32> {
    let first = read_meta(file, 0);
    match first {
        Ok(m) => valid_page_size(m.page_size),
        Err(e0) => {
            for i in 0..15 {
                let off = 1024u64 << i;
                if off + (PAGE_HEADER_SIZE + META_SIZE) as u64 > file_len {
                    break;
                }
                if let Ok(m) = read_meta(file, off)
                    && u64::from(m.page_size) == off
                {
                    return valid_page_size(m.page_size);
                }
            }
            Err(e0)
        }
    }
}

fn valid_page_size(ps: u32) -> Result<u32> {
    if ps.is_power_of_two() && (512..=(1 << 24)).contains(&ps) {
        Ok(ps)
    } else {
        Err(Error::InvalidPageSize(ps))
    }
}

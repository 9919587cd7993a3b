//! Writing a bbolt file bottom-up from sorted buckets: a fresh compact file, or new pages
//! appended to an existing one.
//!
//! Entries arrive in key order, so leaves are written as they fill and branch pages as their
//! levels fill ([`crate::levels`]): memory is one page per tree level, whatever the size. Pages are allocated sequentially (from 2 in a fresh
//! file, from the high-water mark when appending), metas are written last (the higher txid on
//! page 0), and no freelist is stored (`meta.freelist = PGID_NO_FREELIST`), as etcd itself
//! writes its files: bbolt then rebuilds the freelist from the pages the tree reaches, so pages
//! an append leaves unreachable are simply free. A bucket whose entries fit in a quarter page is
//! stored inline in its parent, as bbolt does.
//!
//! ```no_run
//! let mut w = bbolt::DbWriter::create("out.db")?;
//! let mut b = w.bucket(b"key", 0);
//! b.put(b"a", b"1")?;
//! b.finish()?;
//! w.finish()?;
//! # Ok::<(), bbolt::Error>(())
//! ```

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use crate::bucket::{BUCKET_HEADER_SIZE, Bucket};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::levels::Levels;
use crate::meta::Meta;
use crate::node::Node;
use crate::page::{BUCKET_LEAF_FLAG, PAGE_HEADER_SIZE, PageHeader, flags};
use crate::types::{
    DEFAULT_PAGE_SIZE, MAGIC, MAX_KEY_SIZE, MAX_VALUE_SIZE, PGID_NO_FREELIST, Pgid, Txid, VERSION,
};

/// Txid of the meta on page 0 of a fresh file (page 1 gets one less), like a snapshot written
/// by `Tx.WriteTo`.
const META_TXID: u64 = 2;

/// State of the bucket being written.
struct OpenBucket {
    name: Vec<u8>,
    sequence: u64,
    node: Node,
    spilled: bool,
    levels: Levels,
    last_key: Vec<u8>,
    entries: u64,
}

/// Writes a bbolt file; buckets are added one at a time ([`DbWriter::bucket`], or
/// [`DbWriter::begin_bucket`], [`DbWriter::put`] and [`DbWriter::end_bucket`] when the writer
/// must be held across calls).
pub struct DbWriter<W: Write + Seek> {
    pages: Pages<W>,
    root_entries: Vec<(Vec<u8>, Vec<u8>)>,
    open: Option<OpenBucket>,
    txid: u64,
    base: Option<Db>,
}

impl DbWriter<File> {
    /// Creates (or truncates) `path` with mode 0600.
    ///
    /// # Errors
    /// The file cannot be created.
    pub fn create(path: impl AsRef<Path>) -> Result<DbWriter<File>> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        DbWriter::new(f)
    }

    /// Appends to the bbolt file at `path`: its pages stay as they are, new pages go after its
    /// high-water mark (trailing bytes, such as a snapshot's sha256, are cut off), and
    /// [`DbWriter::finish`] writes a new root and metas with the next txid. Buckets not begun
    /// again keep their content; [`DbWriter::begin_bucket`] replaces a bucket and
    /// [`DbWriter::begin_bucket_append`] adds keys after a bucket's last one.
    ///
    /// # Errors
    /// The file cannot be opened or is not a valid bbolt file.
    pub fn append(path: impl AsRef<Path>) -> Result<DbWriter<File>> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        let base = Db::from_file(file.try_clone()?)?;
        let page_size = base.page_size() as usize;
        file.set_len(base.size())?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.seek(SeekFrom::Start(base.size()))?;
        Ok(DbWriter {
            pages: Pages {
                out,
                page_size,
                next_pgid: base.meta().pgid.0,
                page_buf: Vec::new(),
            },
            root_entries: base.root_entries()?,
            open: None,
            txid: base.meta().txid.0 + 1,
            base: Some(base),
        })
    }
}

impl<W: Write + Seek> DbWriter<W> {
    /// A writer into `out` with 4096-byte pages.
    ///
    /// # Errors
    /// Writing the placeholder meta pages fails.
    pub fn new(out: W) -> Result<DbWriter<W>> {
        let page_size = DEFAULT_PAGE_SIZE as usize;
        let mut out = BufWriter::with_capacity(1 << 20, out);
        out.write_all(&vec![0u8; 2 * page_size])?;
        Ok(DbWriter {
            pages: Pages {
                out,
                page_size,
                next_pgid: 2,
                page_buf: Vec::new(),
            },
            root_entries: Vec::new(),
            open: None,
            txid: META_TXID,
            base: None,
        })
    }

    /// Starts adding keys to an existing top-level bucket of the file being appended to (or a
    /// new one, when it has no such bucket). Its existing leaves and branch pages are kept,
    /// except the rightmost path, which is reopened ([`Levels::reopen`]); keys put must sort
    /// after its last key.
    ///
    /// # Errors
    /// Not appending ([`DbWriter::append`]), or the existing bucket cannot be read.
    pub fn begin_bucket_append(&mut self, name: &[u8]) -> Result<()> {
        let Some(base) = self.base.as_ref() else {
            return Err(Error::BadEntry {
                bucket: String::from_utf8_lossy(name).into_owned(),
                reason: "appending to a bucket needs a writer opened with DbWriter::append".into(),
            });
        };
        let Some(existing) = base.bucket(name)? else {
            self.begin_bucket(name, 0);
            return Ok(());
        };
        match &existing {
            Bucket::Paged { root, sequence } => {
                let levels = Levels::reopen(base, *root)?;
                let last_key = base
                    .cursor(&existing)?
                    .last()?
                    .map(|e| e.key.to_vec())
                    .unwrap_or_default();
                self.open = Some(OpenBucket {
                    name: name.to_vec(),
                    sequence: *sequence,
                    node: Node::default(),
                    spilled: true,
                    levels,
                    entries: u64::from(!last_key.is_empty()),
                    last_key,
                });
            }
            Bucket::Inline { page, sequence } => {
                let page = std::rc::Rc::clone(page);
                self.begin_bucket(name, *sequence);
                for i in 0..page.count() {
                    let e = page.leaf(i)?;
                    self.put(e.key, e.value)?;
                }
            }
        }
        Ok(())
    }

    /// Starts a top-level bucket and returns a handle to fill it; call
    /// [`BucketWriter::finish`] when done.
    pub fn bucket(&mut self, name: &[u8], sequence: u64) -> BucketWriter<'_, W> {
        self.begin_bucket(name, sequence);
        BucketWriter { db: self }
    }

    /// Starts a top-level bucket (finishing any open one is the caller's job).
    pub fn begin_bucket(&mut self, name: &[u8], sequence: u64) {
        self.open = Some(OpenBucket {
            name: name.to_vec(),
            sequence,
            node: Node::default(),
            spilled: false,
            levels: Levels::default(),
            last_key: Vec::new(),
            entries: 0,
        });
    }

    /// Adds an entry to the open bucket; keys must be non-empty and strictly ascending.
    ///
    /// # Errors
    /// [`Error::BadEntry`] for an empty, oversized or out-of-order key, an oversized value, or
    /// no open bucket; I/O errors.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let page = self.pages.page_size;
        let Some(b) = self.open.as_mut() else {
            return Err(Error::BadEntry {
                bucket: String::new(),
                reason: "no bucket is open".into(),
            });
        };
        if key.is_empty() || key.len() > MAX_KEY_SIZE || value.len() > MAX_VALUE_SIZE {
            let reason = format!("key of {} bytes, value of {} bytes", key.len(), value.len());
            return Err(Error::BadEntry {
                bucket: String::from_utf8_lossy(&b.name).into_owned(),
                reason,
            });
        }
        if b.entries > 0 && key <= b.last_key.as_slice() {
            let reason = "keys are not strictly ascending".into();
            return Err(Error::BadEntry {
                bucket: String::from_utf8_lossy(&b.name).into_owned(),
                reason,
            });
        }
        b.last_key.clear();
        b.last_key.extend_from_slice(key);
        b.entries += 1;
        if !b.node.elems.is_empty() && b.node.size_with(key.len(), value.len()) > page {
            self.spill()?;
        }
        let Some(b) = self.open.as_mut() else {
            return Ok(());
        };
        b.node.push(0, key, value);
        if b.node.size() > page / 4 {
            b.spilled = true;
        }
        Ok(())
    }

    /// Entries added to the open bucket so far.
    #[must_use]
    pub fn entries(&self) -> u64 {
        self.open.as_ref().map_or(0, |b| b.entries)
    }

    fn spill(&mut self) -> Result<()> {
        let Some(mut b) = self.open.take() else {
            return Ok(());
        };
        b.spilled = true;
        let id = self.pages.write_node(&b.node, flags::LEAF)?;
        b.levels.add(&mut self.pages, 0, b.node.first_key(), id)?;
        b.node.clear();
        self.open = Some(b);
        Ok(())
    }

    /// Finishes the open bucket: writes its last leaf and branch levels (or inlines a small
    /// bucket) and records it in the root bucket.
    ///
    /// # Errors
    /// I/O errors.
    pub fn end_bucket(&mut self) -> Result<()> {
        let Some(b) = self.open.as_ref() else {
            return Ok(());
        };
        if b.spilled && !b.node.elems.is_empty() {
            self.spill()?;
        }
        let Some(mut b) = self.open.take() else {
            return Ok(());
        };
        let mut value = Vec::with_capacity(BUCKET_HEADER_SIZE);
        if b.spilled {
            let levels = std::mem::take(&mut b.levels);
            let root = levels
                .finish(&mut self.pages)?
                .ok_or_else(|| Error::BadEntry {
                    bucket: String::from_utf8_lossy(&b.name).into_owned(),
                    reason: "a paged bucket without pages".into(),
                })?;
            value.extend_from_slice(&root.0.to_le_bytes());
            value.extend_from_slice(&b.sequence.to_le_bytes());
        } else {
            value.extend_from_slice(&0u64.to_le_bytes());
            value.extend_from_slice(&b.sequence.to_le_bytes());
            let mut image = Vec::new();
            let size = b.node.size();
            b.node.encode(0, flags::LEAF, 0, &mut image, size);
            value.extend_from_slice(&image);
        }
        self.root_entries.retain(|(name, _)| *name != b.name);
        self.root_entries.push((b.name, value));
        Ok(())
    }

    /// Writes the root bucket and both metas, and flushes; returns the underlying writer.
    ///
    /// # Errors
    /// Writing fails.
    pub fn finish(mut self) -> Result<W> {
        self.end_bucket()?;
        let mut entries = std::mem::take(&mut self.root_entries);
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let pages = &mut self.pages;
        let mut levels = Levels::default();
        let mut node = Node::default();
        for (name, value) in &entries {
            if !node.is_empty() && node.size_with(name.len(), value.len()) > pages.page_size {
                let id = pages.write_node(&node, flags::LEAF)?;
                levels.add(pages, 0, node.first_key(), id)?;
                node.clear();
            }
            node.push(BUCKET_LEAF_FLAG, name, value);
        }
        let id = pages.write_node(&node, flags::LEAF)?;
        let first = if node.is_empty() {
            &[][..]
        } else {
            node.first_key()
        };
        levels.add(pages, 0, first, id)?;
        let root = levels.finish(pages)?.unwrap_or(id);

        let (page_size, next_pgid) = (self.pages.page_size, self.pages.next_pgid);
        let mut out = self
            .pages
            .out
            .into_inner()
            .map_err(|e| Error::Io(e.into_error()))?;
        for (page, txid) in [(0u64, self.txid), (1, self.txid - 1)] {
            let mut meta = Meta {
                magic: MAGIC,
                version: VERSION,
                page_size: page_size as u32,
                flags: 0,
                root,
                root_sequence: 0,
                freelist: PGID_NO_FREELIST,
                pgid: Pgid(next_pgid),
                txid: Txid(txid),
                checksum: 0,
            };
            meta.checksum = meta.compute_checksum();
            let mut buf = vec![0u8; PAGE_HEADER_SIZE + crate::meta::META_SIZE];
            PageHeader {
                id: Pgid(page),
                flags: flags::META,
                count: 0,
                overflow: 0,
            }
            .write_to(&mut buf);
            buf[PAGE_HEADER_SIZE..].copy_from_slice(&meta.to_bytes());
            out.seek(SeekFrom::Start(page * page_size as u64))?;
            out.write_all(&buf)?;
        }
        out.seek(SeekFrom::End(0))?;
        out.flush()?;
        Ok(out)
    }
}

/// A handle to fill one bucket; see [`DbWriter::bucket`].
pub struct BucketWriter<'a, W: Write + Seek> {
    db: &'a mut DbWriter<W>,
}

impl<W: Write + Seek> BucketWriter<'_, W> {
    /// Adds an entry; see [`DbWriter::put`].
    ///
    /// # Errors
    /// As [`DbWriter::put`].
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.db.put(key, value)
    }

    /// Finishes the bucket; see [`DbWriter::end_bucket`].
    ///
    /// # Errors
    /// I/O errors.
    pub fn finish(self) -> Result<()> {
        self.db.end_bucket()
    }
}

/// Where pages go: the file, written sequentially from the next free pgid.
pub(crate) struct Pages<W: Write + Seek> {
    out: BufWriter<W>,
    page_size: usize,
    next_pgid: u64,
    page_buf: Vec<u8>,
}

impl<W: Write + Seek> Pages<W> {
    /// The file's page size.
    pub(crate) fn page_size(&self) -> usize {
        self.page_size
    }

    /// Writes `node` as a page (with overflow pages if needed); returns its pgid.
    pub(crate) fn write_node(&mut self, node: &Node, page_flags: u16) -> Result<Pgid> {
        let size = node.size();
        let pages = size.div_ceil(self.page_size).max(1);
        let id = self.next_pgid;
        let mut buf = std::mem::take(&mut self.page_buf);
        node.encode(
            id,
            page_flags,
            (pages - 1) as u32,
            &mut buf,
            pages * self.page_size,
        );
        self.out.write_all(&buf)?;
        self.page_buf = buf;
        self.next_pgid += pages as u64;
        Ok(Pgid(id))
    }
}

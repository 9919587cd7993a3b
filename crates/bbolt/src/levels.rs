//! The branch levels of a tree being written bottom-up, built while its leaves are written.
//!
//! Each level has one open branch node: a written page's `(first key, pgid)` goes into the
//! level above, and a node that is full is written and goes up the same way. Memory is one page
//! per level (bbolt trees of any size are a handful of levels deep), whatever the number of
//! leaves; a restore or compaction of an 8 GiB db holds a few pages here, not a reference to
//! each of its two million leaves.
//!
//! Appending to an existing tree reopens its rightmost path: the branch pages on it are copied
//! into the open nodes (their left siblings stay where they are, referenced from the copies),
//! so new leaves continue the tree and the old path's pages become free.

use std::io::{Seek, Write};

use crate::db::Db;
use crate::error::{Error, Result};
use crate::node::Node;
use crate::page::flags;
use crate::types::Pgid;
use crate::write::Pages;

/// Deepest tree [`Levels::reopen`] descends; bbolt trees are far shallower.
const MAX_DEPTH: usize = 64;

/// Open branch nodes, level 0 (pointing at leaves) first.
#[derive(Default)]
pub(crate) struct Levels {
    open: Vec<Node>,
}

impl Levels {
    /// The open levels of the existing tree rooted at `root`, ready for leaves after its last.
    ///
    /// # Errors
    /// Page read errors, a branch without elements, a page that is neither branch nor leaf, a
    /// tree deeper than bbolt builds.
    pub(crate) fn reopen(db: &Db, root: Pgid) -> Result<Levels> {
        let mut path = Vec::new();
        let mut id = root;
        loop {
            let page = db.page(id)?;
            if page.is_leaf() {
                break;
            }
            if !page.is_branch() || page.count() == 0 {
                return Err(Error::UnexpectedPageType {
                    pgid: Some(id),
                    flags: page.header.flags,
                    expected: "branch with elements, or leaf",
                });
            }
            if path.len() == MAX_DEPTH {
                return Err(Error::TooDeep(MAX_DEPTH));
            }
            id = page.branch(page.count() - 1)?.pgid;
            path.push(page);
        }
        let mut levels = Levels::default();
        if path.is_empty() {
            // A root leaf: the tree so far is that one page.
            let leaf = db.page(root)?;
            let first = if leaf.count() > 0 {
                leaf.leaf(0)?.key.to_vec()
            } else {
                Vec::new()
            };
            let mut node = Node::default();
            node.push(0, &first, &root.0.to_le_bytes());
            levels.open.push(node);
            return Ok(levels);
        }
        // Bottom-up: level 0 keeps every leaf it points at (the last leaf stays as written);
        // a higher level leaves out its last child, the node reopened below it, which goes up
        // again when that node is written.
        for (depth, page) in path.iter().rev().enumerate() {
            let keep = if depth == 0 {
                page.count()
            } else {
                page.count() - 1
            };
            let mut node = Node::default();
            for i in 0..keep {
                let b = page.branch(i)?;
                node.push(0, b.key, &b.pgid.0.to_le_bytes());
            }
            levels.open.push(node);
        }
        Ok(levels)
    }

    /// Records a written page (a leaf, when `level` is 0) whose first key is `key`.
    pub(crate) fn add<W: Write + Seek>(
        &mut self,
        pages: &mut Pages<W>,
        mut level: usize,
        key: &[u8],
        pgid: Pgid,
    ) -> Result<()> {
        let mut key = key.to_vec();
        let mut pgid = pgid;
        loop {
            if level == self.open.len() {
                self.open.push(Node::default());
            }
            let node = &mut self.open[level];
            if node.is_empty() || node.size_with(key.len(), 8) <= pages.page_size() {
                node.push(0, &key, &pgid.0.to_le_bytes());
                return Ok(());
            }
            let id = pages.write_node(node, flags::BRANCH)?;
            let first = node.first_key().to_vec();
            node.clear();
            node.push(0, &key, &pgid.0.to_le_bytes());
            (key, pgid, level) = (first, id, level + 1);
        }
    }

    /// Writes what is open, bottom-up, and returns the tree's root: the only page of the top
    /// level (a single leaf is its own root). `None` when nothing was added.
    pub(crate) fn finish<W: Write + Seek>(mut self, pages: &mut Pages<W>) -> Result<Option<Pgid>> {
        let mut level = 0;
        while level < self.open.len() {
            let node = std::mem::take(&mut self.open[level]);
            let top = level + 1 == self.open.len();
            if top && node.elems.len() == 1 {
                let mut id = [0u8; 8];
                id.copy_from_slice(node.value(0));
                return Ok(Some(Pgid(u64::from_le_bytes(id))));
            }
            if !node.is_empty() {
                let id = pages.write_node(&node, flags::BRANCH)?;
                self.add(pages, level + 1, node.first_key(), id)?;
            }
            level += 1;
        }
        Ok(None)
    }
}

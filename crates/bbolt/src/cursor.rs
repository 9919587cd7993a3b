//! A cursor that walks one bucket's B+tree in key order.
//!
//! The cursor keeps the path from the bucket's root to the current leaf: one page per level.
//! Moving reads only the pages it steps into.

use std::rc::Rc;

use crate::db::Db;
use crate::error::{Error, Result};
use crate::page::{LeafEntry, Page};

/// Real bbolt trees are a handful of levels deep; anything deeper means a page loop.
const MAX_DEPTH: usize = 64;

struct Frame {
    page: Rc<Page>,
    index: usize,
}

/// Walks the key/value elements of a bucket in ascending key order.
///
/// Entries borrow from the cursor, so read each one before moving on.
pub struct Cursor<'db> {
    db: &'db Db,
    root: Rc<Page>,
    stack: Vec<Frame>,
}

impl<'db> Cursor<'db> {
    pub(crate) fn new(db: &'db Db, root: Rc<Page>) -> Cursor<'db> {
        Cursor {
            db,
            root,
            stack: Vec::new(),
        }
    }

    /// Moves to the first element of the bucket.
    ///
    /// # Errors
    /// A page on the way cannot be read or is malformed.
    pub fn first(&mut self) -> Result<Option<LeafEntry<'_>>> {
        self.stack.clear();
        self.stack.push(Frame {
            page: Rc::clone(&self.root),
            index: 0,
        });
        self.descend(false)?;
        if self.top_is_exhausted() {
            return self.advance();
        }
        self.current()
    }

    /// Moves to the last element of the bucket.
    ///
    /// # Errors
    /// A page on the way cannot be read or is malformed.
    pub fn last(&mut self) -> Result<Option<LeafEntry<'_>>> {
        self.stack.clear();
        let count = self.root.count();
        self.stack.push(Frame {
            page: Rc::clone(&self.root),
            index: count.saturating_sub(1),
        });
        self.descend(true)?;
        self.current()
    }

    /// Moves to the next element.
    ///
    /// # Errors
    /// A page on the way cannot be read or is malformed.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<LeafEntry<'_>>> {
        if self.stack.is_empty() {
            return Ok(None);
        }
        if let Some(top) = self.stack.last_mut() {
            top.index += 1;
        }
        if self.top_is_exhausted() {
            return self.advance();
        }
        self.current()
    }

    fn top_is_exhausted(&self) -> bool {
        self.stack.last().is_some_and(|f| f.index >= f.page.count())
    }

    /// Pops exhausted pages, steps to the next sibling and descends to its first leaf element.
    fn advance(&mut self) -> Result<Option<LeafEntry<'_>>> {
        loop {
            while self.top_is_exhausted() {
                self.stack.pop();
                match self.stack.last_mut() {
                    Some(parent) => parent.index += 1,
                    None => return Ok(None),
                }
            }
            self.descend(false)?;
            if !self.top_is_exhausted() {
                return self.current();
            }
        }
    }

    /// From the current frame, follows branch elements down to a leaf, entering each child at its
    /// first element (or its last when `to_last`).
    fn descend(&mut self, to_last: bool) -> Result<()> {
        loop {
            let Some(top) = self.stack.last() else {
                return Ok(());
            };
            let page = &top.page;
            if page.is_leaf() {
                return Ok(());
            }
            if !page.is_branch() {
                return Err(Error::UnexpectedPageType {
                    pgid: page.pgid,
                    flags: page.header.flags,
                    expected: "branch or leaf",
                });
            }
            if page.count() == 0 {
                return Err(Error::EmptyBranch(page.pgid));
            }
            let child = self.db.page(page.branch(top.index)?.pgid)?;
            if self.stack.len() >= MAX_DEPTH {
                return Err(Error::TooDeep(MAX_DEPTH));
            }
            let index = if to_last {
                child.count().saturating_sub(1)
            } else {
                0
            };
            if !child.is_leaf() && !child.is_branch() {
                return Err(Error::UnexpectedPageType {
                    pgid: child.pgid,
                    flags: child.header.flags,
                    expected: "branch or leaf",
                });
            }
            self.stack.push(Frame {
                page: Rc::new(child),
                index,
            });
        }
    }

    fn current(&self) -> Result<Option<LeafEntry<'_>>> {
        match self.stack.last() {
            Some(f) if f.index < f.page.count() => f.page.leaf(f.index).map(Some),
            _ => Ok(None),
        }
    }
}

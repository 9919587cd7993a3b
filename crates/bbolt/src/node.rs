//! A page being built by [`crate::DbWriter`]: its elements in order, serialized as a leaf or
//! branch page image when full.

use crate::page::{ELEMENT_SIZE, PAGE_HEADER_SIZE, PageHeader, flags};
use crate::types::Pgid;

/// Elements of one node being built: their flags and where key and value sit in `data`.
#[derive(Default)]
pub(crate) struct Node {
    pub(crate) elems: Vec<(u32, usize, usize, usize)>, // flags, key start, key len, value len
    data: Vec<u8>,
}

impl Node {
    /// The page bytes the node needs as it is.
    pub(crate) fn size(&self) -> usize {
        PAGE_HEADER_SIZE + ELEMENT_SIZE * self.elems.len() + self.data.len()
    }

    /// The page bytes the node would need with one more element of these sizes.
    pub(crate) fn size_with(&self, k: usize, v: usize) -> usize {
        self.size() + ELEMENT_SIZE + k + v
    }

    /// Appends an element (keys arrive in order).
    pub(crate) fn push(&mut self, flags: u32, key: &[u8], value: &[u8]) {
        let start = self.data.len();
        self.data.extend_from_slice(key);
        self.data.extend_from_slice(value);
        self.elems.push((flags, start, key.len(), value.len()));
    }

    /// The key of the first element (the node must not be empty).
    pub(crate) fn first_key(&self) -> &[u8] {
        let (_, s, k, _) = self.elems[0];
        &self.data[s..s + k]
    }

    /// The value of element `i` (a branch element's is its child's pgid, 8 bytes).
    pub(crate) fn value(&self, i: usize) -> &[u8] {
        let (_, s, k, v) = self.elems[i];
        &self.data[s + k..s + k + v]
    }

    /// Whether the node has no element yet.
    pub(crate) fn is_empty(&self) -> bool {
        self.elems.is_empty()
    }

    /// Empties the node for the next page.
    pub(crate) fn clear(&mut self) {
        self.elems.clear();
        self.data.clear();
    }

    /// Serializes the node as a page image of `len` bytes (`len` ≥ size).
    pub(crate) fn encode(
        &self,
        id: u64,
        page_flags: u16,
        overflow: u32,
        out: &mut Vec<u8>,
        len: usize,
    ) {
        out.clear();
        out.resize(len, 0);
        PageHeader {
            id: Pgid(id),
            flags: page_flags,
            count: self.elems.len() as u16,
            overflow,
        }
        .write_to(out);
        let data_start = PAGE_HEADER_SIZE + ELEMENT_SIZE * self.elems.len();
        for (i, &(fl, s, k, v)) in self.elems.iter().enumerate() {
            let e = PAGE_HEADER_SIZE + ELEMENT_SIZE * i;
            let pos = (data_start + s - e) as u32;
            if page_flags == flags::BRANCH {
                // Branch elements: pos, ksize, pgid (stored in the value slot as 8 bytes).
                out[e..e + 4].copy_from_slice(&pos.to_le_bytes());
                out[e + 4..e + 8].copy_from_slice(&(k as u32).to_le_bytes());
                out[e + 8..e + 16].copy_from_slice(&self.data[s + k..s + k + v]);
            } else {
                out[e..e + 4].copy_from_slice(&fl.to_le_bytes());
                out[e + 4..e + 8].copy_from_slice(&pos.to_le_bytes());
                out[e + 8..e + 12].copy_from_slice(&(k as u32).to_le_bytes());
                out[e + 12..e + 16].copy_from_slice(&(v as u32).to_le_bytes());
            }
        }
        if page_flags == flags::BRANCH {
            // Branch data holds only keys; the pgids live in the elements.
            let mut off = data_start;
            let mut fixed = Vec::with_capacity(self.data.len());
            for (i, &(_, s, k, _)) in self.elems.iter().enumerate() {
                let e = PAGE_HEADER_SIZE + ELEMENT_SIZE * i;
                out[e..e + 4].copy_from_slice(&((off - e) as u32).to_le_bytes());
                fixed.extend_from_slice(&self.data[s..s + k]);
                off += k;
            }
            out[data_start..data_start + fixed.len()].copy_from_slice(&fixed);
        } else {
            out[data_start..data_start + self.data.len()].copy_from_slice(&self.data);
        }
    }
}

//! The raft messages a restored data directory carries in its WAL and `.snap` (gogo proto2,
//! non-nullable fields always written, fields in number order, repeated fields unpacked).

use crate::cluster::{Cluster, MemberId};
use crate::proto::{DecodeError, Fields, Value, put_bytes, put_uint};

/// `raftpb.ConfState{voters, auto_leave=false}`.
#[must_use]
pub fn conf_state(voters: &[MemberId]) -> Vec<u8> {
    let mut b = Vec::new();
    for v in voters {
        put_uint(&mut b, 1, v.0);
    }
    put_uint(&mut b, 5, 0);
    b
}

/// `raftpb.ConfChange{ID=0, Type=AddNode, NodeID=id, Context=member JSON}`.
#[must_use]
pub fn conf_change_add(id: MemberId, context: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    put_uint(&mut b, 1, 0);
    put_uint(&mut b, 2, 0);
    put_uint(&mut b, 3, id.0);
    put_bytes(&mut b, 4, context);
    b
}

/// Raft entry types.
pub mod entry_type {
    /// A normal entry (etcd requests).
    pub const NORMAL: u64 = 0;
    /// A configuration change.
    pub const CONF_CHANGE: u64 = 1;
    /// A joint-consensus configuration change.
    pub const CONF_CHANGE_V2: u64 = 2;
}

/// A decoded `raftpb.Entry`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    /// Entry type (see [`entry_type`]).
    pub kind: u64,
    /// Term.
    pub term: u64,
    /// Index.
    pub index: u64,
    /// Payload.
    pub data: Vec<u8>,
}

impl Entry {
    /// Encodes in field order Type, Term, Index, Data.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.data.len() + 16);
        put_uint(&mut b, 1, self.kind);
        put_uint(&mut b, 2, self.term);
        put_uint(&mut b, 3, self.index);
        if !self.data.is_empty() {
            put_bytes(&mut b, 4, &self.data);
        }
        b
    }

    /// Decodes an entry.
    ///
    /// # Errors
    /// Malformed protobuf.
    pub fn decode(b: &[u8]) -> Result<Entry, DecodeError> {
        let mut e = Entry::default();
        for f in Fields::new(b) {
            match f? {
                (1, Value::Varint(v)) => e.kind = v,
                (2, Value::Varint(v)) => e.term = v,
                (3, Value::Varint(v)) => e.index = v,
                (4, Value::Bytes(v)) => e.data = v.to_vec(),
                _ => {}
            }
        }
        Ok(e)
    }
}

/// `raftpb.HardState{term, vote, commit}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HardState {
    /// Term.
    pub term: u64,
    /// Vote.
    pub vote: u64,
    /// Commit index.
    pub commit: u64,
}

impl HardState {
    /// Encodes all three fields.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        put_uint(&mut b, 1, self.term);
        put_uint(&mut b, 2, self.vote);
        put_uint(&mut b, 3, self.commit);
        b
    }

    /// Decodes.
    ///
    /// # Errors
    /// Malformed protobuf.
    pub fn decode(b: &[u8]) -> Result<HardState, DecodeError> {
        let mut h = HardState::default();
        for f in Fields::new(b) {
            match f? {
                (1, Value::Varint(v)) => h.term = v,
                (2, Value::Varint(v)) => h.vote = v,
                (3, Value::Varint(v)) => h.commit = v,
                _ => {}
            }
        }
        Ok(h)
    }
}

/// `walpb.Snapshot{index, term[, conf_state]}`: a WAL snapshot record.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WalSnapshot {
    /// Raft index.
    pub index: u64,
    /// Raft term.
    pub term: u64,
    /// Encoded `ConfState` (3.5+ writes it; 3.4 does not).
    pub conf_state: Option<Vec<u8>>,
}

impl WalSnapshot {
    /// Encodes.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        put_uint(&mut b, 1, self.index);
        put_uint(&mut b, 2, self.term);
        if let Some(cs) = &self.conf_state {
            put_bytes(&mut b, 3, cs);
        }
        b
    }

    /// Decodes.
    ///
    /// # Errors
    /// Malformed protobuf.
    pub fn decode(b: &[u8]) -> Result<WalSnapshot, DecodeError> {
        let mut s = WalSnapshot::default();
        for f in Fields::new(b) {
            match f? {
                (1, Value::Varint(v)) => s.index = v,
                (2, Value::Varint(v)) => s.term = v,
                (3, Value::Bytes(v)) => s.conf_state = Some(v.to_vec()),
                _ => {}
            }
        }
        Ok(s)
    }
}

/// `etcdserverpb.Metadata{NodeID, ClusterID}`.
#[must_use]
pub fn metadata(node: MemberId, cluster: &Cluster) -> Vec<u8> {
    let mut b = Vec::new();
    put_uint(&mut b, 1, node.0);
    put_uint(&mut b, 2, cluster.id.0);
    b
}

/// Decodes `etcdserverpb.Metadata` into (node ID, cluster ID).
///
/// # Errors
/// Malformed protobuf.
pub fn decode_metadata(b: &[u8]) -> Result<(u64, u64), DecodeError> {
    let (mut node, mut cluster) = (0, 0);
    for f in Fields::new(b) {
        match f? {
            (1, Value::Varint(v)) => node = v,
            (2, Value::Varint(v)) => cluster = v,
            _ => {}
        }
    }
    Ok((node, cluster))
}

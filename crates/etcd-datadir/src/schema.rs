//! Bucket names and `meta` keys of etcd's bbolt file.

/// The MVCC history: revision key → `mvccpb.KeyValue`.
pub const KEY_BUCKET: &[u8] = b"key";
/// Raft and compaction bookkeeping.
pub const META_BUCKET: &[u8] = b"meta";
/// `meta` key of the last raft index applied to the backend.
pub const CONSISTENT_INDEX: &[u8] = b"consistent_index";
/// `meta` key of the revision the last finished compaction reached.
pub const FINISHED_COMPACT_REV: &[u8] = b"finishedCompactRev";
/// `meta` key of the revision the last started compaction aims at.
pub const SCHEDULED_COMPACT_REV: &[u8] = b"scheduledCompactRev";

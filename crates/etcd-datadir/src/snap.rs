//! The `.snap` file of a restored member: the v2 store JSON holding the membership, wrapped in
//! `raftpb.Snapshot` and `snappb.snapshot{crc, data}`.
//!
//! The JSON is Go's `json.Marshal` of a fresh v2 store after adding each member (ascending ID):
//! struct fields in declaration order, map keys sorted, an event queue of capacity 1000.

use std::path::Path;

use crate::cluster::{Cluster, MemberId};
use crate::proto::{DecodeError, Fields, Value, put_bytes, put_uint};
use crate::raft;

const ZERO_TIME: &str = "0001-01-01T00:00:00Z";
const EVENT_QUEUE_CAPACITY: usize = 1000;

fn node(out: &mut String, path: &str, index: usize, value: &str, children: Option<&str>) {
    out.push_str(&format!(
        "{{\"Path\":{},\"CreatedIndex\":{index},\"ModifiedIndex\":{index},\"ExpireTime\":\"{ZERO_TIME}\",\"Value\":{},\"Children\":{}}}",
        json_str(path),
        json_str(value),
        children.unwrap_or("null")
    ));
}

fn json_str(s: &str) -> String {
    // Go escapes <, > and & in JSON strings; none occur in member data, but do the same.
    serde_json::to_string(s)
        .unwrap_or_default()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// The v2 store JSON for `cluster`.
#[must_use]
pub fn v2_store_json(cluster: &Cluster) -> String {
    let n = cluster.members.len();
    // Children of /0/members, keyed by the hex ID, sorted as strings.
    let mut by_hex: Vec<(String, usize, &crate::cluster::Member)> = cluster
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| (m.id.to_string(), i + 1, m))
        .collect();
    by_hex.sort_by(|a, b| a.0.cmp(&b.0));
    let mut members = String::from("{");
    for (k, (hex, idx, m)) in by_hex.iter().enumerate() {
        if k > 0 {
            members.push(',');
        }
        let base = format!("/0/members/{hex}");
        let mut attrs = String::from("{\"raftAttributes\":");
        node(
            &mut attrs,
            &format!("{base}/raftAttributes"),
            *idx,
            &m.raft_attributes_json(),
            None,
        );
        attrs.push('}');
        members.push_str(&json_str(hex));
        members.push(':');
        node(&mut members, &base, *idx, "", Some(&attrs));
    }
    members.push('}');
    let mut members_node = String::from("{\"members\":");
    node(&mut members_node, "/0/members", 1, "", Some(&members));
    members_node.push('}');
    let mut root_children = String::from("{\"0\":");
    node(&mut root_children, "/0", 0, "", Some(&members_node));
    root_children.push_str(",\"1\":");
    node(&mut root_children, "/1", 0, "", Some("{}"));
    root_children.push('}');

    let mut s = String::from("{\"Root\":");
    node(&mut s, "/", 0, "", Some(&root_children));
    s.push_str(",\"WatcherHub\":{\"EventHistory\":{\"Queue\":{\"Events\":[");
    for (i, m) in cluster.members.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            "{{\"action\":\"create\",\"node\":{{\"key\":{},\"value\":{},\"modifiedIndex\":{},\"createdIndex\":{}}}}}",
            json_str(&format!("/0/members/{}/raftAttributes", m.id)),
            json_str(&m.raft_attributes_json()),
            i + 1,
            i + 1
        ));
    }
    for i in n..EVENT_QUEUE_CAPACITY {
        if i > 0 {
            s.push(',');
        }
        s.push_str("null");
    }
    s.push_str(&format!(
        "],\"Size\":{n},\"Front\":0,\"Back\":{n},\"Capacity\":{EVENT_QUEUE_CAPACITY}}},\"StartIndex\":1,\"LastIndex\":{n}}}}},\"CurrentIndex\":{n},"
    ));
    s.push_str(&format!(
        "\"Stats\":{{\"getsSuccess\":0,\"getsFail\":0,\"setsSuccess\":0,\"setsFail\":0,\"deleteSuccess\":0,\"deleteFail\":0,\"updateSuccess\":0,\"updateFail\":0,\"createSuccess\":{n},\"createFail\":0,\"compareAndSwapSuccess\":0,\"compareAndSwapFail\":0,\"compareAndDeleteSuccess\":0,\"compareAndDeleteFail\":0,\"expireCount\":0,\"watchers\":0}},\"CurrentVersion\":2}}"
    ));
    s
}

/// The `.snap` file content for `cluster` at raft index N (the member count), term 1.
#[must_use]
pub fn restore_snap(cluster: &Cluster) -> Vec<u8> {
    let voters: Vec<MemberId> = cluster.members.iter().map(|m| m.id).collect();
    let mut meta = Vec::new();
    put_bytes(&mut meta, 1, &raft::conf_state(&voters));
    put_uint(&mut meta, 2, cluster.members.len() as u64);
    put_uint(&mut meta, 3, 1);
    let mut snapshot = Vec::new();
    put_bytes(&mut snapshot, 1, v2_store_json(cluster).as_bytes());
    put_bytes(&mut snapshot, 2, &meta);
    let mut file = Vec::new();
    put_uint(&mut file, 1, u64::from(crc32c::crc32c(&snapshot)));
    put_bytes(&mut file, 2, &snapshot);
    file
}

/// The `.snap` file name for `term` and `index`.
#[must_use]
pub fn file_name(term: u64, index: u64) -> String {
    format!("{term:016x}-{index:016x}.snap")
}

/// A decoded `.snap` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapFile {
    /// Raft index.
    pub index: u64,
    /// Raft term.
    pub term: u64,
    /// The v2 store JSON.
    pub data: Vec<u8>,
}

/// Why a `.snap` file is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapError {
    /// Cannot be read.
    #[error("cannot read {0}")]
    Io(String, #[source] std::io::Error),
    /// Empty, no data, zero CRC or CRC mismatch.
    #[error("snapshot file {0} is corrupt: {1}")]
    Corrupt(String, &'static str),
    /// Does not decode.
    #[error("snapshot file {0} is malformed")]
    Malformed(String, #[source] DecodeError),
}

/// Reads and verifies a `.snap` file as etcd's `snap.Read` does.
///
/// # Errors
/// [`SnapError`].
pub fn read(path: &Path) -> Result<SnapFile, SnapError> {
    let name = path.display().to_string();
    let b = std::fs::read(path).map_err(|e| SnapError::Io(name.clone(), e))?;
    if b.is_empty() {
        return Err(SnapError::Corrupt(name, "empty file"));
    }
    let (mut crc, mut data) = (None, None);
    for f in Fields::new(&b) {
        match f.map_err(|e| SnapError::Malformed(name.clone(), e))? {
            (1, Value::Varint(v)) => crc = Some(v as u32),
            (2, Value::Bytes(d)) => data = Some(d),
            _ => {}
        }
    }
    let data = data
        .filter(|d| !d.is_empty())
        .ok_or_else(|| SnapError::Corrupt(name.clone(), "no data"))?;
    match crc {
        None | Some(0) => return Err(SnapError::Corrupt(name, "zero CRC")),
        Some(c) if c != crc32c::crc32c(data) => {
            return Err(SnapError::Corrupt(name, "CRC mismatch"));
        }
        _ => {}
    }
    let (mut json, mut index, mut term) = (Vec::new(), 0, 0);
    for f in Fields::new(data) {
        match f.map_err(|e| SnapError::Malformed(name.clone(), e))? {
            (1, Value::Bytes(d)) => json = d.to_vec(),
            (2, Value::Bytes(meta)) => {
                for g in Fields::new(meta) {
                    match g.map_err(|e| SnapError::Malformed(name.clone(), e))? {
                        (2, Value::Varint(v)) => index = v,
                        (3, Value::Varint(v)) => term = v,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(SnapFile {
        index,
        term,
        data: json,
    })
}

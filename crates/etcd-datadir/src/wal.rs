//! The write-ahead log: framing, the CRC-32C chain, and the exact record sequence
//! `etcdctl snapshot restore` writes.
//!
//! ```text
//! frame  = u64 LE lenField ‖ record ‖ pad zero bytes, pad = (8 - len % 8) % 8;
//!          lenField = len | (0x80 | pad) << 56 when pad > 0; a zero lenField ends the data
//! record = walpb.Record{type=1 int64, crc=2 uint32, data=3 bytes}
//! crc    = CRC-32C running over the data of every non-crc record since the start of the chain
//! ```
//!
//! File names are `%016x-%016x.wal` (sequence, first raft index).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cluster::{Cluster, MemberId};
use crate::proto::{DecodeError, Fields, Value, put_bytes, put_uint};
use crate::raft::{self, Entry, HardState, WalSnapshot, entry_type};

/// Record types.
pub mod record_type {
    /// `etcdserverpb.Metadata`.
    pub const METADATA: u64 = 1;
    /// A raft entry.
    pub const ENTRY: u64 = 2;
    /// A `HardState`.
    pub const STATE: u64 = 3;
    /// The running CRC carried from the previous file.
    pub const CRC: u64 = 4;
    /// A snapshot marker.
    pub const SNAPSHOT: u64 = 5;
}

/// Appends records to a WAL image in memory, keeping the CRC chain.
#[derive(Debug, Default)]
pub struct WalEncoder {
    buf: Vec<u8>,
    crc: u32,
}

impl WalEncoder {
    /// An encoder whose chain starts at `prev_crc` (0 for the first file).
    #[must_use]
    pub fn new(prev_crc: u32) -> WalEncoder {
        let mut e = WalEncoder {
            buf: Vec::new(),
            crc: prev_crc,
        };
        e.record(record_type::CRC, None);
        e
    }

    /// Appends one record (`data` None: no data field).
    pub fn record(&mut self, kind: u64, data: Option<&[u8]>) {
        if kind != record_type::CRC {
            self.crc = crc32c::crc32c_append(self.crc, data.unwrap_or_default());
        }
        let mut rec = Vec::with_capacity(data.map_or(0, <[u8]>::len) + 16);
        put_uint(&mut rec, 1, kind);
        put_uint(&mut rec, 2, u64::from(self.crc));
        if let Some(d) = data {
            put_bytes(&mut rec, 3, d);
        }
        let len = rec.len() as u64;
        let pad = (8 - len % 8) % 8;
        let len_field = if pad == 0 {
            len
        } else {
            len | ((0x80 | pad) << 56)
        };
        self.buf.extend_from_slice(&len_field.to_le_bytes());
        self.buf.extend_from_slice(&rec);
        self.buf.resize(self.buf.len() + pad as usize, 0);
    }

    /// The bytes so far.
    #[must_use]
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// The WAL a restore writes for `member` of `cluster`: metadata, the empty snapshot of
/// `wal.Create`, one ConfChange entry per member (ascending ID), the HardState and a snapshot
/// record at index N. `with_conf_state` adds the voters to the final snapshot record (3.5+).
#[must_use]
pub fn restore_wal(cluster: &Cluster, member: MemberId, with_conf_state: bool) -> Vec<u8> {
    let mut e = WalEncoder::new(0);
    e.record(
        record_type::METADATA,
        Some(&raft::metadata(member, cluster)),
    );
    e.record(
        record_type::SNAPSHOT,
        Some(&WalSnapshot::default().encode()),
    );
    let n = cluster.members.len() as u64;
    for (i, m) in cluster.members.iter().enumerate() {
        let cc = raft::conf_change_add(m.id, m.json().as_bytes());
        let entry = Entry {
            kind: entry_type::CONF_CHANGE,
            term: 1,
            index: i as u64 + 1,
            data: cc,
        };
        e.record(record_type::ENTRY, Some(&entry.encode()));
    }
    let vote = cluster.members.first().map_or(0, |m| m.id.0);
    e.record(
        record_type::STATE,
        Some(
            &HardState {
                term: 1,
                vote,
                commit: n,
            }
            .encode(),
        ),
    );
    let voters: Vec<MemberId> = cluster.members.iter().map(|m| m.id).collect();
    let snap = WalSnapshot {
        index: n,
        term: 1,
        conf_state: with_conf_state.then(|| raft::conf_state(&voters)),
    };
    e.record(record_type::SNAPSHOT, Some(&snap.encode()));
    e.into_bytes()
}

/// The WAL file name for sequence `seq` starting at raft index `index`.
#[must_use]
pub fn file_name(seq: u64, index: u64) -> String {
    format!("{seq:016x}-{index:016x}.wal")
}

/// What reading a WAL found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalContents {
    /// (node ID, cluster ID) from the metadata record.
    pub metadata: Option<(u64, u64)>,
    /// Snapshot records, in order.
    pub snapshots: Vec<WalSnapshot>,
    /// Entries, in order (later entries at an index replace earlier ones, as raft does).
    pub entries: Vec<Entry>,
    /// The last HardState.
    pub state: Option<HardState>,
    /// Whether the last file ends in a torn or truncated record (etcd repairs this once).
    pub torn_tail: bool,
}

/// Why a WAL could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// The directory or a file cannot be read.
    #[error("cannot read the WAL at {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// No WAL files.
    #[error("no WAL files in {0}")]
    Empty(PathBuf),
    /// File names are malformed or their sequence numbers are not consecutive.
    #[error("WAL file names in {0} are malformed or not consecutive")]
    BadNames(PathBuf),
    /// A record's CRC does not continue the chain.
    #[error("WAL record {index} in {file} fails its CRC check")]
    CrcMismatch {
        /// File name.
        file: String,
        /// Record number within the file.
        index: usize,
    },
    /// Two metadata records differ.
    #[error("WAL metadata records conflict")]
    MetadataConflict,
    /// A record does not decode.
    #[error("WAL record {index} in {file} is malformed")]
    Malformed {
        /// File name.
        file: String,
        /// Record number within the file.
        index: usize,
        /// Cause.
        #[source]
        source: DecodeError,
    },
}

/// Lists the WAL files of `dir` in order, checking names and sequence numbers.
///
/// # Errors
/// [`WalError`].
pub fn list(dir: &Path) -> Result<Vec<PathBuf>, WalError> {
    let io = |source| WalError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files: Vec<(u64, PathBuf)> = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io)? {
        let e = e.map_err(io)?;
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".wal") else {
            continue;
        };
        let (seq, _) = stem
            .split_once('-')
            .ok_or_else(|| WalError::BadNames(dir.to_path_buf()))?;
        let seq =
            u64::from_str_radix(seq, 16).map_err(|_| WalError::BadNames(dir.to_path_buf()))?;
        files.push((seq, e.path()));
    }
    if files.is_empty() {
        return Err(WalError::Empty(dir.to_path_buf()));
    }
    files.sort();
    if files.windows(2).any(|w| w[1].0 != w[0].0 + 1) {
        return Err(WalError::BadNames(dir.to_path_buf()));
    }
    Ok(files.into_iter().map(|(_, p)| p).collect())
}

/// Reads every record of the WAL in `dir`, verifying the CRC chain.
///
/// # Errors
/// [`WalError`] for unreadable files, CRC mismatches, conflicting metadata or malformed
/// records. A truncated last record is reported as `torn_tail`, not an error.
pub fn read(dir: &Path) -> Result<WalContents, WalError> {
    let files = list(dir)?;
    let mut out = WalContents::default();
    let mut crc = 0u32;
    for (fi, path) in files.iter().enumerate() {
        let data = std::fs::read(path).map_err(|source| WalError::Io {
            path: path.clone(),
            source,
        })?;
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let last_file = fi + 1 == files.len();
        let mut pos = 0usize;
        let mut index = 0usize;
        while pos + 8 <= data.len() {
            let len_field = u64::from_le_bytes(data[pos..pos + 8].try_into().unwrap_or_default());
            if len_field == 0 {
                break;
            }
            let len = (len_field & 0x00FF_FFFF_FFFF_FFFF) as usize;
            let pad = if len_field >> 63 == 1 {
                ((len_field >> 56) & 0x7) as usize
            } else {
                0
            };
            if len >= MAX_RECORD - pad {
                return Err(WalError::Malformed {
                    file,
                    index,
                    source: DecodeError("record length is over etcd's 10 MiB limit"),
                });
            }
            let start = pos + 8;
            let Some(end) = start.checked_add(len).filter(|&e| e + pad <= data.len()) else {
                if last_file {
                    out.torn_tail = true;
                    break;
                }
                return Err(WalError::Malformed {
                    file,
                    index,
                    source: DecodeError("record runs past the end of the file"),
                });
            };
            let rec = &data[start..end];
            // As etcd's decoder: a record that does not decode or fails its CRC is a torn write
            // (the tail etcd repairs at start) only in the last file and only when one of its
            // sector-aligned pieces is all zeros; anything else is corruption etcd refuses.
            let torn = || last_file && has_zero_sector(start, &data[start..end + pad]);
            let (mut kind, mut rcrc, mut rdata): (u64, u32, Option<&[u8]>) = (0, 0, None);
            let mut undecodable = None;
            for f in Fields::new(rec) {
                match f {
                    Ok((1, Value::Varint(v))) => kind = v,
                    Ok((2, Value::Varint(v))) => rcrc = v as u32,
                    Ok((3, Value::Bytes(b))) => rdata = Some(b),
                    Ok(_) => {}
                    Err(e) => {
                        undecodable = Some(e);
                        break;
                    }
                }
            }
            if let Some(source) = undecodable {
                if torn() {
                    out.torn_tail = true;
                    break;
                }
                return Err(WalError::Malformed {
                    file,
                    index,
                    source,
                });
            }
            let malformed = |source| WalError::Malformed {
                file: file.clone(),
                index,
                source,
            };
            if kind == record_type::CRC {
                if crc != 0 && rcrc != crc {
                    return Err(WalError::CrcMismatch { file, index });
                }
                crc = rcrc;
            } else {
                crc = crc32c::crc32c_append(crc, rdata.unwrap_or_default());
                if rcrc != crc {
                    if torn() {
                        out.torn_tail = true;
                        break;
                    }
                    return Err(WalError::CrcMismatch { file, index });
                }
                let d = rdata.unwrap_or_default();
                match kind {
                    record_type::METADATA => {
                        let m = raft::decode_metadata(d).map_err(malformed)?;
                        if out.metadata.is_some_and(|x| x != m) {
                            return Err(WalError::MetadataConflict);
                        }
                        out.metadata = Some(m);
                    }
                    record_type::ENTRY => {
                        let e = Entry::decode(d).map_err(malformed)?;
                        while out.entries.last().is_some_and(|l| l.index >= e.index) {
                            out.entries.pop();
                        }
                        out.entries.push(e);
                    }
                    record_type::STATE => {
                        out.state = Some(HardState::decode(d).map_err(malformed)?)
                    }
                    record_type::SNAPSHOT => out
                        .snapshots
                        .push(WalSnapshot::decode(d).map_err(malformed)?),
                    _ => {}
                }
            }
            pos = end + pad;
            index += 1;
        }
    }
    Ok(out)
}

/// etcd's `maxWALEntrySizeLimit`: a longer record is corruption, not a torn write.
const MAX_RECORD: usize = 10 * 1024 * 1024;

/// Sector size etcd's torn-write detection splits records by.
const SECTOR: usize = 512;

/// Whether a record (with its padding) at file offset `offset` has a sector-aligned piece that is
/// all zeros: etcd's `isTornEntry`, the sign of a write the disk did not finish.
fn has_zero_sector(offset: usize, record: &[u8]) -> bool {
    let mut pos = 0;
    while pos < record.len() {
        let len = (SECTOR - (offset + pos) % SECTOR).min(record.len() - pos);
        if record[pos..pos + len].iter().all(|&b| b == 0) {
            return true;
        }
        pos += len;
    }
    false
}

/// Writes `bytes` as the first WAL file of `wal_dir` and fsyncs it.
///
/// # Errors
/// I/O errors.
pub fn write_first(wal_dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = wal_dir.join(file_name(0, 0));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WAL file as etcd leaves it: records, then the zeros of its preallocated space.
    fn wal_file(records: usize) -> (Vec<u8>, Vec<usize>) {
        let mut e = WalEncoder::new(0);
        let mut ends = Vec::new();
        for i in 0..records {
            e.record(99, Some(&vec![i as u8 + 1; 1500]));
            ends.push(e.buf.len());
        }
        let mut bytes = e.into_bytes();
        bytes.resize(bytes.len() + 64 * 1024, 0);
        (bytes, ends)
    }

    fn read_files(files: &[Vec<u8>]) -> Result<WalContents, WalError> {
        let dir = tempfile::tempdir().unwrap();
        for (i, f) in files.iter().enumerate() {
            std::fs::write(dir.path().join(file_name(i as u64, 0)), f).unwrap();
        }
        read(dir.path())
    }

    #[test]
    fn a_flipped_byte_is_corruption_but_a_torn_tail_is_not() {
        let (good, ends) = wal_file(6);
        assert!(!read_files(std::slice::from_ref(&good)).unwrap().torn_tail);

        // A flipped byte inside a record's data, in the last file: etcd says "crc mismatch".
        let mut flipped = good.clone();
        flipped[ends[2] + 700] ^= 1;
        let e = read_files(&[flipped.clone()]).unwrap_err();
        assert!(matches!(e, WalError::CrcMismatch { index: 4, .. }), "{e}");
        // In an earlier file too.
        assert!(read_files(&[flipped, good.clone()]).is_err());

        // The last record's second sector never reached the disk: a torn write, repaired by
        // etcd, so the records before it stand.
        let mut torn = good.clone();
        let last_start = ends[4] + 8;
        let sector = last_start.next_multiple_of(SECTOR);
        torn[sector..sector + SECTOR].fill(0);
        let w = read_files(&[torn.clone()]).unwrap();
        assert!(w.torn_tail);
        // Not in an earlier file: etcd repairs only the last one.
        assert!(read_files(&[torn, good.clone()]).is_err());

        // The file ends inside the last record.
        let cut = good[..ends[5] - 100].to_vec();
        assert!(read_files(&[cut]).unwrap().torn_tail);

        // A length over etcd's limit is corruption, whatever follows.
        let mut long = good;
        long[ends[3]..ends[3] + 8].copy_from_slice(&(11u64 << 20).to_le_bytes());
        assert!(matches!(
            read_files(&[long]).unwrap_err(),
            WalError::Malformed { index: 5, .. }
        ));
    }

    #[test]
    fn zero_sectors_are_found_on_the_files_sector_boundaries() {
        let mut rec = vec![1u8; 1200];
        // At offset 100 the pieces are 412, 512 and 276 bytes long.
        rec[412..924].fill(0);
        assert!(has_zero_sector(100, &rec));
        // The same zeros straddle two pieces at offset 0.
        assert!(!has_zero_sector(0, &rec));
        // A short trailing piece of zeros (padding past a boundary) counts, as in etcd.
        let mut tail = vec![1u8; 515];
        tail[512..].fill(0);
        assert!(has_zero_sector(0, &tail));
    }
}

//! The native restore builder: a base etcd db plus watch events in, a data directory that a
//! stock etcd boots from out, without running etcd.
//!
//! The base db is restored in place, as `etcdutl snapshot restore` does: its pages stay, events
//! become new `key` bucket entries after the base's revision (`reference/etcd-formats.md` §5),
//! written as new pages after the base's, and `members`, `members_removed` and `meta` are
//! rewritten for the new cluster; the WAL and `.snap` are the exact bytes `etcdctl snapshot
//! restore` writes. Invariants enforced on the events:
//!
//! - events at or below the revision restored when the current segment began (the base's,
//!   then each delta's start: [`RestoreWriter::begin_segment`]) are overlaps and are skipped,
//!   so a revision at a delta's boundary is never applied twice;
//! - inside a segment revisions continue without a gap (an event at `prev` is another change
//!   of the same transaction, its sub-revision the next one); a gap is an error naming the
//!   missing range, and a revision going back is an error;
//! - a put needs a key; a delete is stored as etcd stores it (tombstone key, `KeyValue{key}`).
//!
//! Leases attached to keys stay attached when the lease exists in the base db; a lease granted
//! after the base snapshot is not in the backup (grants are not watch events), so such keys are
//! restored without a lease rather than with a dangling one.

use etcdbr_types::Revision;
use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use bbolt::{Db, DbWriter};

use crate::cluster::{Cluster, MemberId};
use crate::kv::KeyValueRef;
use crate::revision::RevKey;
use crate::schema::{CONSISTENT_INDEX, KEY_BUCKET, META_BUCKET, SCHEDULED_COMPACT_REV};
use crate::{Error, layout, snap, wal};

const MEMBERS_BUCKET: &[u8] = b"members";
const MEMBERS_REMOVED_BUCKET: &[u8] = b"members_removed";
const LEASE_BUCKET: &[u8] = b"lease";
const TERM: &[u8] = b"term";
const CONF_STATE: &[u8] = b"confState";

/// Which etcd release's data-dir conventions to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DataDirFormat {
    /// etcd 3.4: no `term` in `meta`; WAL snapshot record without `conf_state`.
    V34,
    /// etcd 3.5 (and 3.6, untested): `meta/term` = 1, `meta/confState`, `conf_state` in the WAL
    /// snapshot record.
    #[default]
    V35,
}

/// One change to apply: a watch event's key-value and whether it deleted the key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Change {
    /// Whether the key was deleted.
    pub delete: bool,
    /// The key.
    pub key: Vec<u8>,
    /// Creation revision of the key's generation (puts).
    pub create_revision: i64,
    /// Revision of the change.
    pub mod_revision: i64,
    /// Version (puts).
    pub version: i64,
    /// Value (puts).
    pub value: Vec<u8>,
    /// Lease (puts).
    pub lease: i64,
}

/// Why a restore failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// Reading the base db failed.
    #[error("cannot read the base snapshot's database")]
    Base(#[from] Error),
    /// Writing the new db failed.
    #[error("cannot write the restored database")]
    Write(#[source] bbolt::Error),
    /// A file operation failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The target directory already exists.
    #[error("{0} already exists; refusing to overwrite it")]
    Exists(PathBuf),
    /// Revisions are missing between events.
    #[error("revision gap: expected revision {expected}, got {got}; revisions {expected}..={} are missing from the backup", got - 1)]
    Gap {
        /// Next revision expected.
        expected: i64,
        /// Revision found.
        got: i64,
    },
    /// An event's revision is below the one before it in the same segment.
    #[error("event at revision {got} follows revision {previous}: events are out of order")]
    OutOfOrder {
        /// The revision before.
        previous: i64,
        /// Revision found.
        got: i64,
    },
    /// An event is unusable.
    #[error("event at revision {revision} is invalid: {reason}")]
    BadEvent {
        /// Its revision.
        revision: i64,
        /// What is wrong.
        reason: &'static str,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RestoreError {
    let what = what.into();
    move |source| RestoreError::Io { what, source }
}

/// The cluster being restored and the member whose data dir is written.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The new cluster.
    pub cluster: Cluster,
    /// This member.
    pub member: MemberId,
    /// Data-dir conventions.
    pub format: DataDirFormat,
    /// Whether to fsync the db and directories: a data dir etcd will run on must be durable;
    /// scratch output read back at once (compaction's) need not wait for the disk.
    pub durable: bool,
}

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreStats {
    /// The base db's revision.
    pub base_revision: Revision,
    /// The restored revision.
    pub revision: Revision,
    /// Events applied.
    pub applied_events: u64,
    /// Events skipped as overlaps (at or below the revision already restored).
    pub skipped_events: u64,
    /// Puts whose lease was not in the base db and was dropped.
    pub dropped_leases: u64,
    /// The revision after [`RestoreWriter::bump_revision`], when asked.
    pub bumped_revision: Option<Revision>,
}

/// `etcdutl snapshot restore --bump-revision --mark-compacted`: move the revision on so that
/// clients watching from an older one notice the restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bump {
    /// Added to the restored revision.
    pub amount: i64,
    /// Record the bumped revision as the point of a scheduled compaction: etcd compacts to it
    /// at start-up, and every watch from an older revision is cancelled as compacted.
    pub mark_compacted: bool,
}

/// Builds a data directory in `dir`; see the module docs.
pub struct RestoreWriter {
    base: Db,
    out: DbWriter<File>,
    dir: PathBuf,
    opts: RestoreOptions,
    prev: i64,
    sub: i64,
    /// Revisions at or below this are already restored: overlaps of the current segment.
    sealed: i64,
    leases: HashSet<i64>,
    stats: RestoreStats,
    value_buf: Vec<u8>,
    bump: Option<Bump>,
}

fn mkdir(path: &Path) -> Result<(), RestoreError> {
    layout::create_private_dir(path).map_err(io(format!("cannot create {}", path.display())))
}

fn sync_dir(path: &Path) -> Result<(), RestoreError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io(format!("cannot fsync {}", path.display())))
}

impl RestoreWriter {
    /// Creates `dir`, copies the base db (a snapshot file, trailer allowed) to its
    /// `member/snap/db` and continues as [`RestoreWriter::in_place`].
    ///
    /// # Errors
    /// `dir` exists, the base is unreadable, or writing fails.
    pub fn create(
        base_db: &Path,
        dir: &Path,
        opts: RestoreOptions,
    ) -> Result<RestoreWriter, RestoreError> {
        if dir.exists() {
            return Err(RestoreError::Exists(dir.to_path_buf()));
        }
        mkdir(&layout::snap_dir(dir))?;
        let db_path = layout::db_path(dir);
        std::fs::copy(base_db, &db_path).map_err(io(format!(
            "cannot copy {} to {}",
            base_db.display(),
            db_path.display()
        )))?;
        RestoreWriter::in_place(dir, opts)
    }

    /// Turns the base db already at `dir/member/snap/db` (trailer allowed) into the restored
    /// one, as `etcdutl snapshot restore` does: its pages stay where they are, new revisions and
    /// the rewritten `members`, `members_removed` and `meta` buckets are appended after them.
    ///
    /// # Errors
    /// The base is unreadable, or writing fails.
    pub fn in_place(dir: &Path, opts: RestoreOptions) -> Result<RestoreWriter, RestoreError> {
        let db_path = layout::db_path(dir);
        let base = Db::open(&db_path).map_err(Error::from)?;
        let base_revision = crate::current_revision(&base)?.get();
        mkdir(&layout::wal_dir(dir))?;
        let mut out = DbWriter::append(&db_path).map_err(RestoreError::Write)?;
        out.begin_bucket_append(KEY_BUCKET)
            .map_err(RestoreError::Write)?;
        let mut leases = HashSet::new();
        if let Some(b) = base.bucket(LEASE_BUCKET).map_err(Error::from)? {
            let mut c = base.cursor(&b).map_err(Error::from)?;
            let mut e = c.first().map_err(Error::from)?;
            while let Some(entry) = e {
                if let Ok(id) = <[u8; 8]>::try_from(entry.key) {
                    leases.insert(i64::from_be_bytes(id));
                }
                e = c.next().map_err(Error::from)?;
            }
        }
        Ok(RestoreWriter {
            base,
            out,
            dir: dir.to_path_buf(),
            opts,
            prev: base_revision,
            sub: 0,
            sealed: base_revision,
            leases,
            stats: RestoreStats {
                base_revision: Revision(base_revision),
                revision: Revision(base_revision),
                ..RestoreStats::default()
            },
            value_buf: Vec::new(),
            bump: None,
        })
    }

    /// The revision restored so far.
    #[must_use]
    pub fn revision(&self) -> i64 {
        self.prev
    }

    /// Starts a new segment of changes (a delta): its changes at or below the revision restored
    /// so far are overlaps and are skipped, and a change at the last restored revision is not
    /// taken as another change of that revision's transaction.
    pub fn begin_segment(&mut self) {
        self.sealed = self.prev;
    }

    /// Applies one change; changes must come in the order etcd made them.
    ///
    /// # Errors
    /// [`RestoreError::Gap`], [`RestoreError::OutOfOrder`], [`RestoreError::BadEvent`] or a
    /// write error.
    pub fn apply(&mut self, c: &Change) -> Result<(), RestoreError> {
        let r = c.mod_revision;
        if r <= self.sealed {
            self.stats.skipped_events += 1;
            return Ok(());
        }
        if r == self.prev {
            self.sub += 1;
        } else if r == self.prev + 1 {
            self.sub = 0;
        } else if r < self.prev {
            return Err(RestoreError::OutOfOrder {
                previous: self.prev,
                got: r,
            });
        } else {
            return Err(RestoreError::Gap {
                expected: self.prev + 1,
                got: r,
            });
        }
        if c.key.is_empty() {
            return Err(RestoreError::BadEvent {
                revision: r,
                reason: "empty key",
            });
        }
        let key = RevKey {
            main: r,
            sub: self.sub,
            tombstone: c.delete,
        }
        .to_bytes();
        self.value_buf.clear();
        if c.delete {
            KeyValueRef {
                key: &c.key,
                ..KeyValueRef::default()
            }
            .encode_into(&mut self.value_buf);
        } else {
            if c.version < 1 || c.create_revision < 1 || c.create_revision > r {
                return Err(RestoreError::BadEvent {
                    revision: r,
                    reason: "put with an impossible version or create revision",
                });
            }
            let lease = if c.lease == 0 || self.leases.contains(&c.lease) {
                c.lease
            } else {
                self.stats.dropped_leases += 1;
                0
            };
            KeyValueRef {
                key: &c.key,
                create_revision: c.create_revision,
                mod_revision: r,
                version: c.version,
                value: &c.value,
                lease,
            }
            .encode_into(&mut self.value_buf);
        }
        self.out
            .put(&key, &self.value_buf)
            .map_err(RestoreError::Write)?;
        self.prev = r;
        self.stats.applied_events += 1;
        self.stats.revision = Revision(r);
        Ok(())
    }

    /// Asks [`RestoreWriter::finish`] to bump the revision after the last change, as etcdutl
    /// does: an empty value at `{revision + amount, 0}` in the `key` bucket, and with
    /// `mark_compacted` the `scheduledCompactRev` set to that revision.
    pub fn bump_revision(&mut self, bump: Bump) {
        self.bump = Some(bump);
    }

    /// Writes the remaining buckets, the rewritten membership and meta, the WAL and the `.snap`,
    /// and fsyncs everything.
    ///
    /// # Errors
    /// Reading the base or writing fails.
    pub fn finish(mut self) -> Result<RestoreStats, RestoreError> {
        if let Some(bump) = self.bump.filter(|b| b.amount > 0) {
            let latest = self.prev.saturating_add(bump.amount);
            let key = RevKey {
                main: latest,
                sub: 0,
                tombstone: false,
            };
            self.out
                .put(&key.to_bytes(), &[])
                .map_err(RestoreError::Write)?;
            self.stats.bumped_revision = Some(Revision(latest));
        }
        self.out.end_bucket().map_err(RestoreError::Write)?;
        self.out.begin_bucket(MEMBERS_BUCKET, 0);
        let mut members: Vec<(String, String)> = self
            .opts
            .cluster
            .members
            .iter()
            .map(|m| (m.id.to_string(), m.json()))
            .collect();
        members.sort();
        for (k, v) in &members {
            self.out
                .put(k.as_bytes(), v.as_bytes())
                .map_err(RestoreError::Write)?;
        }
        self.out.end_bucket().map_err(RestoreError::Write)?;
        self.out.begin_bucket(MEMBERS_REMOVED_BUCKET, 0);
        self.out.end_bucket().map_err(RestoreError::Write)?;
        self.write_meta()?;
        let file = self.out.finish().map_err(RestoreError::Write)?;
        if self.opts.durable {
            file.sync_all()
                .map_err(io("cannot fsync the restored db"))?;
        }

        let cluster = &self.opts.cluster;
        let with_conf_state = self.opts.format == DataDirFormat::V35;
        let wal_dir = layout::wal_dir(&self.dir);
        wal::write_first(
            &wal_dir,
            &wal::restore_wal(cluster, self.opts.member, with_conf_state),
        )
        .map_err(io("cannot write the WAL"))?;
        let snap_path =
            layout::snap_dir(&self.dir).join(snap::file_name(1, cluster.members.len() as u64));
        write_file(&snap_path, &snap::restore_snap(cluster), 0o644)?;
        for d in [
            layout::snap_dir(&self.dir),
            wal_dir,
            layout::member_dir(&self.dir),
            self.dir.clone(),
        ] {
            if self.opts.durable {
                sync_dir(&d)?;
            }
        }
        Ok(self.stats)
    }

    fn write_meta(&mut self) -> Result<(), RestoreError> {
        let mut meta: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        if let Some(b) = self.base.bucket(META_BUCKET).map_err(Error::from)? {
            let mut c = self.base.cursor(&b).map_err(Error::from)?;
            let mut e = c.first().map_err(Error::from)?;
            while let Some(entry) = e {
                meta.insert(entry.key.to_vec(), entry.value.to_vec());
                e = c.next().map_err(Error::from)?;
            }
        }
        let n = self.opts.cluster.members.len() as u64;
        meta.insert(CONSISTENT_INDEX.to_vec(), n.to_be_bytes().to_vec());
        if self.bump.is_some_and(|b| b.mark_compacted) {
            let at = self.stats.bumped_revision.map_or(self.prev, Revision::get);
            let key = RevKey {
                main: at,
                sub: 0,
                tombstone: false,
            };
            meta.insert(SCHEDULED_COMPACT_REV.to_vec(), key.to_bytes());
        }
        match self.opts.format {
            DataDirFormat::V34 => {
                meta.remove(TERM);
                meta.remove(CONF_STATE);
            }
            DataDirFormat::V35 => {
                meta.insert(TERM.to_vec(), 1u64.to_be_bytes().to_vec());
                let voters: Vec<String> = self
                    .opts
                    .cluster
                    .members
                    .iter()
                    .map(|m| m.id.0.to_string())
                    .collect();
                meta.insert(
                    CONF_STATE.to_vec(),
                    format!("{{\"voters\":[{}],\"auto_leave\":false}}", voters.join(","))
                        .into_bytes(),
                );
            }
        }
        self.out.begin_bucket(META_BUCKET, 0);
        for (k, v) in &meta {
            self.out.put(k, v).map_err(RestoreError::Write)?;
        }
        self.out.end_bucket().map_err(RestoreError::Write)
    }
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), RestoreError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io(format!("cannot create {}", path.display())))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(io(format!("cannot write {}", path.display())))
}

//! Validating an etcd data directory the way `initialize` must, natively.
//!
//! The checks, statuses and their order follow the original's `DataValidator`:
//!
//! 1. the wrong-volume guard (`<parent of data-dir>/safe_guard` must hold the pod namespace);
//! 2. the data dir exists, with `member/`, `member/snap/` and `member/wal/`;
//! 3. with a store configured: the db opens (not locked by a running etcd) and its revision is at
//!    least the newest backup's; where the original boots an embedded etcd to replay the WAL
//!    before judging, the WAL's entries beyond the db's consistent index are decoded natively and
//!    the writes among them counted, and a data dir whose WAL may reach the backup is kept (in a
//!    multi-member cluster the revision is not compared: the member catches up from the leader,
//!    and failing steps 2-3 with backups in the store is `InvalidInMultiNode`);
//! 4. in full mode: the `.snap` files, the WAL (CRC chain, metadata, snapshot records) and the
//!    db (every page, as bbolt's `Tx.Check`).
//!
//! [`decide`] maps the status to the original's action.

use etcdbr_types::Revision;
use std::path::{Path, PathBuf};

use crate::proto::{Fields, Value};
use crate::raft::entry_type;
use crate::schema::{CONSISTENT_INDEX, META_BUCKET};
use crate::{current_revision, layout, snap, wal};

/// The original's data-directory statuses, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDirStatus {
    /// Usable as is.
    Valid,
    /// The safe_guard file names another namespace.
    WrongVolumeMounted,
    /// The directory is missing.
    NotExist,
    /// `member/`, `member/snap` or `member/wal` is missing.
    InvalidStructure,
    /// Content is corrupt (db, WAL or `.snap`).
    Corrupt,
    /// The bbolt file is structurally broken.
    BoltDbCorrupt,
    /// The status could not be determined.
    Unknown,
    /// Invalid in a multi-member cluster (the member must rejoin).
    InvalidInMultiNode,
    /// The data is older than the newest backup.
    RevisionConsistencyError,
    /// Another process (a running etcd) holds the db lock.
    FailToOpenBoltDb,
}

/// `--validation-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ValidationMode {
    /// Structure, revision, and every page of the db, WAL and `.snap`.
    #[default]
    Full,
    /// Structure and revision only.
    Sanity,
}

/// What the validator was told about the world.
#[derive(Debug, Clone, Default)]
pub struct ValidationInput {
    /// The data directory.
    pub data_dir: PathBuf,
    /// Full or sanity.
    pub mode: ValidationMode,
    /// `POD_NAMESPACE`, for the wrong-volume guard.
    pub namespace: Option<String>,
    /// Whether a store is configured; without one the revision check is skipped.
    pub store_configured: bool,
    /// The newest revision in the store (None: the store holds no backup).
    pub latest_backup_revision: Option<Revision>,
    /// Members in the etcd configuration's `initial-cluster` (0 or 1: a single member). In a
    /// multi-member cluster the revision is not compared with the store (the member catches
    /// up from the leader), and a data dir that fails the sanity checks while the store holds
    /// backups is [`DataDirStatus::InvalidInMultiNode`]: the member is replaced, not restored.
    pub cluster_size: usize,
}

/// The verdict and what it is based on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    /// The status.
    pub status: DataDirStatus,
    /// Why, for logs.
    pub reason: String,
    /// The db's revision, when read.
    pub db_revision: Option<Revision>,
    /// Writes in the WAL not yet applied to the db.
    pub pending_wal_writes: u64,
}

impl Validation {
    /// A verdict with `status` for `reason`.
    #[must_use]
    pub fn new(status: DataDirStatus, reason: impl Into<String>) -> Validation {
        Validation {
            status,
            reason: reason.into(),
            db_revision: None,
            pending_wal_writes: 0,
        }
    }
}

/// The file next to the data dir that records which namespace owns the volume.
#[must_use]
pub fn safe_guard_path(data_dir: &Path) -> PathBuf {
    data_dir
        .parent()
        .map_or_else(|| PathBuf::from("safe_guard"), |p| p.join("safe_guard"))
}

fn check_safe_guard(data_dir: &Path, namespace: &str) -> Result<(), Validation> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = safe_guard_path(data_dir);
    if !path.exists() {
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| {
                use std::io::Write;
                f.write_all(namespace.as_bytes())
            });
        if let Err(e) = created {
            return Err(Validation::new(
                DataDirStatus::Unknown,
                format!("cannot create {}: {e}", path.display()),
            ));
        }
    }
    match std::fs::read(&path) {
        Ok(content) if content == namespace.as_bytes() => Ok(()),
        Ok(content) => Err(Validation::new(
            DataDirStatus::WrongVolumeMounted,
            format!(
                "wrong volume is mounted: the namespace is {namespace} but {} holds {}",
                path.display(),
                String::from_utf8_lossy(&content)
            ),
        )),
        Err(e) => Err(Validation::new(
            DataDirStatus::WrongVolumeMounted,
            format!(
                "cannot read {} to determine whether the right volume is mounted: {e}",
                path.display()
            ),
        )),
    }
}

/// Validates a data directory; see the module docs.
#[must_use]
pub fn validate(input: &ValidationInput) -> Validation {
    match validate_inner(input) {
        Ok(v) | Err(v) => v,
    }
}

fn validate_inner(input: &ValidationInput) -> Result<Validation, Validation> {
    let verdict = sanity(input).map_err(|v| {
        let keep = matches!(
            v.status,
            DataDirStatus::WrongVolumeMounted | DataDirStatus::FailToOpenBoltDb
        );
        if input.cluster_size > 1 && input.latest_backup_revision.is_some() && !keep {
            Validation {
                status: DataDirStatus::InvalidInMultiNode,
                ..v
            }
        } else {
            v
        }
    })?;
    let mut verdict = verdict;
    if input.mode == ValidationMode::Full
        && let Some(note) = content_check(&input.data_dir)?
    {
        verdict.reason = format!("{}; {note}", verdict.reason);
    }
    Ok(verdict)
}

fn sanity(input: &ValidationInput) -> Result<Validation, Validation> {
    let dir = &input.data_dir;
    if let Some(ns) = input.namespace.as_deref().filter(|n| !n.is_empty()) {
        check_safe_guard(dir, ns)?;
    }
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Validation::new(
                DataDirStatus::InvalidStructure,
                format!("{} is not a directory", dir.display()),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Validation::new(
                DataDirStatus::NotExist,
                format!("directory does not exist: {}", dir.display()),
            ));
        }
        Err(e) => {
            return Err(Validation::new(
                DataDirStatus::Unknown,
                format!("cannot stat {}: {e}", dir.display()),
            ));
        }
    }
    for d in [
        layout::member_dir(dir),
        layout::snap_dir(dir),
        layout::wal_dir(dir),
    ] {
        if !d.is_dir() {
            return Err(Validation::new(
                DataDirStatus::InvalidStructure,
                format!("{} is missing", d.display()),
            ));
        }
    }
    let mut verdict = Validation::new(DataDirStatus::Valid, "data directory valid");
    if input.store_configured {
        verdict = revision_check(input)?;
    }
    Ok(verdict)
}

fn revision_check(input: &ValidationInput) -> Result<Validation, Validation> {
    let dir = &input.data_dir;
    let db_path = layout::db_path(dir);
    let file = std::fs::File::open(&db_path).map_err(|e| {
        Validation::new(
            DataDirStatus::Corrupt,
            format!("cannot open {}: {e}", db_path.display()),
        )
    })?;
    if let Err(std::fs::TryLockError::WouldBlock) = file.try_lock_shared() {
        return Err(Validation::new(
            DataDirStatus::FailToOpenBoltDb,
            format!(
                "another process (a running etcd?) holds the lock on {}",
                db_path.display()
            ),
        ));
    }
    let db = bbolt::Db::from_file(file).map_err(|e| {
        Validation::new(
            DataDirStatus::Corrupt,
            format!("cannot read {}: {e}", db_path.display()),
        )
    })?;
    let rev = current_revision(&db)
        .map_err(|e| {
            Validation::new(
                DataDirStatus::BoltDbCorrupt,
                format!("cannot read the revision of {}: {e}", db_path.display()),
            )
        })?
        .get();
    if input.cluster_size > 1 {
        let mut v = Validation::new(
            DataDirStatus::Valid,
            "multi-member cluster: the revision is not compared with the store (the member catches up from the leader)",
        );
        v.db_revision = Some(Revision(rev));
        return Ok(v);
    }
    let Some(latest) = input.latest_backup_revision.map(Revision::get) else {
        let mut v = Validation::new(
            DataDirStatus::Valid,
            "no backup in the store; nothing to compare the revision with",
        );
        v.db_revision = Some(Revision(rev));
        return Ok(v);
    };
    if rev >= latest {
        let mut v = Validation::new(
            DataDirStatus::Valid,
            format!("db revision {rev} is at or after the newest backup's {latest}"),
        );
        v.db_revision = Some(Revision(rev));
        return Ok(v);
    }
    let consistent_index = read_consistent_index(&db);
    drop(db);
    let pending = wal::read(&layout::wal_dir(dir))
        .map(|w| pending_writes(&w, consistent_index))
        .unwrap_or(0);
    let mut v = if rev.saturating_add(i64::try_from(pending).unwrap_or(i64::MAX)) >= latest {
        Validation::new(
            DataDirStatus::Valid,
            format!(
                "db revision {rev} is below the newest backup's {latest}, but the WAL holds {pending} writes not yet in the db that etcd replays at start; keeping the data"
            ),
        )
    } else {
        Validation::new(
            DataDirStatus::RevisionConsistencyError,
            format!(
                "db revision {rev} (plus {pending} writes pending in the WAL) is below the newest backup's revision {latest}: possible data loss"
            ),
        )
    };
    v.db_revision = Some(Revision(rev));
    v.pending_wal_writes = pending;
    Ok(v)
}

fn read_consistent_index(db: &bbolt::Db) -> u64 {
    let Ok(Some(meta)) = db.bucket(META_BUCKET) else {
        return 0;
    };
    let Ok(mut c) = db.cursor(&meta) else {
        return 0;
    };
    let mut e = c.first();
    while let Ok(Some(entry)) = e {
        if entry.key == CONSISTENT_INDEX {
            return entry.value.try_into().map(u64::from_be_bytes).unwrap_or(0);
        }
        e = c.next();
    }
    0
}

/// Field numbers of `etcdserverpb.InternalRaftRequest` whose requests can create a revision:
/// put, delete_range, txn, lease_revoke.
const WRITE_FIELDS: [u32; 4] = [4, 5, 6, 9];

/// Normal entries after `applied` that carry a write request (an upper bound of the revisions
/// etcd adds when it replays them).
#[must_use]
pub fn pending_writes(w: &wal::WalContents, applied: u64) -> u64 {
    let committed = w.state.map_or(u64::MAX, |s| s.commit);
    w.entries
        .iter()
        .filter(|e| {
            e.index > applied
                && e.index <= committed
                && e.kind == entry_type::NORMAL
                && !e.data.is_empty()
        })
        .filter(|e| {
            Fields::new(&e.data)
                .any(|f| matches!(f, Ok((n, Value::Bytes(_))) if WRITE_FIELDS.contains(&n)))
        })
        .count() as u64
}

/// Checks the content of the WAL, `.snap` files and db; returns a note for the verdict.
fn content_check(dir: &Path) -> Result<Option<String>, Validation> {
    let corrupt = |what: String| Validation::new(DataDirStatus::Corrupt, what);
    let w =
        wal::read(&layout::wal_dir(dir)).map_err(|e| corrupt(format!("invalid wal files: {e}")))?;
    if w.metadata.is_none() {
        return Err(corrupt("invalid wal files: no metadata record".into()));
    }
    let note = usable_snap(dir, &w).map_err(corrupt)?;
    let db_path = layout::db_path(dir);
    let db = bbolt::Db::open(&db_path).map_err(|e| corrupt(format!("invalid db files: {e}")))?;
    let findings = bbolt::check(&db).map_err(|e| corrupt(format!("invalid db files: {e}")))?;
    if let Some(first) = findings.first() {
        return Err(corrupt(format!(
            "invalid db files: {} problems, first: {first}",
            findings.len()
        )));
    }
    Ok(note)
}

/// Whether etcd can start from the `.snap` files and the WAL, judged as etcd 3.4 and 3.5 load
/// them: newest first, a `.snap` that does not read cleanly is skipped (etcd renames it
/// `.broken` and tries the next), and the first that reads and that a WAL snapshot record
/// within the commit index names is used. With none usable etcd replays the WAL from its start,
/// which needs the WAL's first snapshot record (index 0). Returns a note naming the broken files
/// etcd will skip; the error says which files failed.
fn usable_snap(dir: &Path, w: &wal::WalContents) -> Result<Option<String>, String> {
    let snap_dir = layout::snap_dir(dir);
    let mut snaps: Vec<PathBuf> = std::fs::read_dir(&snap_dir)
        .map_err(|e| format!("cannot list {}: {e}", snap_dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "snap"))
        .collect();
    snaps.sort();
    let commit = w.state.map_or(0, |s| s.commit);
    let in_wal = |index: u64, term: u64| {
        w.snapshots
            .iter()
            .any(|ws| ws.index == index && ws.term == term && ws.index <= commit)
    };
    let mut broken = Vec::new();
    for path in snaps.iter().rev() {
        match snap::read(path) {
            Ok(s) if in_wal(s.index, s.term) => {
                return Ok((!broken.is_empty()).then(|| {
                    format!(
                        "etcd skips the broken snapshot files ({}; it renames them .broken) and starts from {}",
                        broken.join("; "),
                        path.display()
                    )
                }));
            }
            // Not named by the WAL within its commit index: etcd ignores it.
            Ok(_) => {}
            Err(e) => broken.push(e.to_string()),
        }
    }
    if w.snapshots.iter().any(|ws| ws.index == 0) {
        return Ok((!broken.is_empty()).then(|| {
            format!(
                "etcd skips the broken snapshot files ({}; it renames them .broken) and replays the WAL from its start",
                broken.join("; ")
            )
        }));
    }
    Err(if broken.is_empty() {
        format!(
            "invalid snapshot files: no .snap file in {} matches a WAL snapshot record, and the WAL does not start at index 0",
            snap_dir.display()
        )
    } else {
        format!(
            "invalid snapshot files: no usable .snap file ({}), and the WAL does not start at index 0",
            broken.join("; ")
        )
    })
}

/// What `initialize` does with a status (single-member cluster, or a multi-member cluster being
/// bootstrapped; the original).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Keep the data directory.
    Keep,
    /// Restore from the store (or, with an empty store, remove the data dir).
    Restore,
    /// Refuse: the error must be fixed by an operator.
    Fail,
}

/// The original's decision table for a single-member cluster.
#[must_use]
pub fn decide(status: DataDirStatus) -> Action {
    match status {
        DataDirStatus::Valid => Action::Keep,
        DataDirStatus::WrongVolumeMounted
        | DataDirStatus::FailToOpenBoltDb
        | DataDirStatus::Unknown => Action::Fail,
        _ => Action::Restore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_table() {
        assert_eq!(decide(DataDirStatus::Valid), Action::Keep);
        for s in [
            DataDirStatus::WrongVolumeMounted,
            DataDirStatus::FailToOpenBoltDb,
            DataDirStatus::Unknown,
        ] {
            assert_eq!(decide(s), Action::Fail);
        }
        for s in [
            DataDirStatus::NotExist,
            DataDirStatus::InvalidStructure,
            DataDirStatus::Corrupt,
            DataDirStatus::BoltDbCorrupt,
            DataDirStatus::RevisionConsistencyError,
        ] {
            assert_eq!(decide(s), Action::Restore);
        }
    }

    #[test]
    fn missing_dir_structure_and_safe_guard() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let input = |ns: Option<&str>| ValidationInput {
            data_dir: dir.clone(),
            mode: ValidationMode::Full,
            namespace: ns.map(str::to_owned),
            store_configured: true,
            latest_backup_revision: Some(Revision(5)),
            cluster_size: 1,
        };
        assert_eq!(validate(&input(None)).status, DataDirStatus::NotExist);
        std::fs::create_dir_all(dir.join("member/snap")).unwrap();
        assert_eq!(
            validate(&input(None)).status,
            DataDirStatus::InvalidStructure
        );
        // The guard is created with the first namespace and refuses another one.
        assert_eq!(
            validate(&input(Some("shoot--a"))).status,
            DataDirStatus::InvalidStructure
        );
        assert_eq!(
            std::fs::read(tmp.path().join("safe_guard")).unwrap(),
            b"shoot--a"
        );
        let v = validate(&input(Some("shoot--b")));
        assert_eq!(v.status, DataDirStatus::WrongVolumeMounted);
        assert!(v.reason.contains("shoot--a"), "{}", v.reason);
    }

    #[test]
    fn a_member_of_a_multi_member_cluster_is_replaced_only_when_backups_exist() {
        let tmp = tempfile::tempdir().unwrap();
        let input = |latest: Option<i64>| ValidationInput {
            data_dir: tmp.path().join("data"),
            mode: ValidationMode::Sanity,
            store_configured: true,
            latest_backup_revision: latest.map(Revision),
            cluster_size: 3,
            ..ValidationInput::default()
        };
        let v = validate(&input(Some(5)));
        assert_eq!(v.status, DataDirStatus::InvalidInMultiNode);
        assert!(v.reason.contains("does not exist"), "{}", v.reason);
        // A new cluster (nothing backed up yet) bootstraps.
        assert_eq!(validate(&input(None)).status, DataDirStatus::NotExist);
    }
}

//! Every path inside an etcd data directory.

use std::path::{Path, PathBuf};

/// `<data-dir>/member`.
#[must_use]
pub fn member_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("member")
}

/// `<data-dir>/member/snap`.
#[must_use]
pub fn snap_dir(data_dir: &Path) -> PathBuf {
    member_dir(data_dir).join("snap")
}

/// `<data-dir>/member/wal`.
#[must_use]
pub fn wal_dir(data_dir: &Path) -> PathBuf {
    member_dir(data_dir).join("wal")
}

/// `<data-dir>/member/snap/db`, the bbolt file.
#[must_use]
pub fn db_path(data_dir: &Path) -> PathBuf {
    snap_dir(data_dir).join("db")
}

/// `<data-dir>.part`, where a restore builds before the atomic rename.
#[must_use]
pub fn part_dir(data_dir: &Path) -> PathBuf {
    let mut s = data_dir.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

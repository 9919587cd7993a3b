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

/// Creates `path` and its missing parents with mode 0700, as etcd creates its directories.
///
/// # Errors
/// The directory cannot be created.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// `<data-dir>.part`, where a restore builds before the atomic rename.
#[must_use]
pub fn part_dir(data_dir: &Path) -> PathBuf {
    let mut s = data_dir.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

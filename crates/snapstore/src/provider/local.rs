//! The `Local` provider: objects are files below a directory.
//!
//! Like the original, the directory is `$HOME/<container>` (Go's `path.Join`, so an absolute
//! container still lands below `$HOME`). Unlike the original, a write goes to a hidden temp
//! file beside the target, is fsynced, renamed into place and the directory fsynced: a crash
//! never leaves a partial file under a snapshot name. Listing skips hidden files.

use std::io;
use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

use crate::error::{ConfigError, Error, Result};
use crate::name::{LAYOUT_V1, LAYOUT_V2};
use crate::store::{Body, ObjectMeta, ObjectStore};

/// Objects as files under a root directory.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// A store rooted at `root`, created (mode 0700) if missing.
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn new(root: impl Into<PathBuf>) -> Result<LocalStore> {
        let root = root.into();
        create_dir_all(&root).map_err(|source| Error::Io {
            op: "create directory",
            key: root.display().to_string(),
            source,
        })?;
        Ok(LocalStore { root })
    }

    /// The store the original's Local provider uses for `container`: `$HOME/<container>`.
    ///
    /// # Errors
    /// `$HOME` is unset, or the directory cannot be created.
    pub fn for_container(container: &str) -> Result<LocalStore> {
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .ok_or(ConfigError::NoHome)?;
        let root = Path::new(&home).join(container.trim_start_matches('/'));
        tracing::info!("Local snapstore directory: {}", root.display());
        LocalStore::new(root)
    }

    /// The root directory.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        let rel = Path::new(key);
        if key.is_empty() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(Error::BadKey(key.to_owned()));
        }
        Ok(self.root.join(rel))
    }
}

fn create_dir_all(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn io_err<'a>(op: &'static str, key: &'a str) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| {
        if source.kind() == io::ErrorKind::NotFound && op != "put" {
            Error::NotFound {
                key: key.to_owned(),
            }
        } else {
            Error::Io {
                op,
                key: key.to_owned(),
                source,
            }
        }
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<ObjectMeta>) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let ft = entry.file_type()?;
        let path = entry.path();
        if ft.is_dir() {
            walk(root, &path, out)?;
        } else if ft.is_file() {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let key = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            out.push(ObjectMeta::new(key, entry.metadata()?.len()));
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let root = self.root.clone();
        let dir = if prefix.is_empty() {
            root.clone()
        } else {
            self.path(prefix)?
        };
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            walk(&root, &dir, &mut out).map(|()| out)
        })
        .await
        .map_err(|e| Error::Io {
            op: "list",
            key: prefix.to_owned(),
            source: io::Error::other(e),
        })?
        .map_err(io_err("list", prefix))
    }

    async fn get(&self, key: &str) -> Result<Body> {
        let f = tokio::fs::File::open(self.path(key)?)
            .await
            .map_err(io_err("get", key))?;
        Ok(Box::new(f))
    }

    async fn put(&self, key: &str, mut body: Body, _size_hint: Option<u64>) -> Result<u64> {
        let target = self.path(key)?;
        let dir = target.parent().unwrap_or(&self.root).to_path_buf();
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.{:016x}.tmp", fastrand::u64(..)));
        let err = io_err("put", key);
        let d = dir.clone();
        tokio::task::spawn_blocking(move || create_dir_all(&d))
            .await
            .map_err(io::Error::other)
            .and_then(|r| r)
            .map_err(io_err("put", key))?;
        let result: Result<u64> = async {
            let mut f = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .await
                .map_err(io_err("put", key))?;
            let n = copy_body(&mut body, &mut f, key).await?;
            f.flush().await.map_err(io_err("put", key))?;
            f.sync_all().await.map_err(io_err("put", key))?;
            drop(f);
            tokio::fs::rename(&tmp, &target)
                .await
                .map_err(io_err("put", key))?;
            Ok(n)
        }
        .await;
        match result {
            Ok(n) => {
                tokio::task::spawn_blocking(move || sync_dir(&dir))
                    .await
                    .map_err(io::Error::other)
                    .and_then(|r| r)
                    .map_err(err)?;
                Ok(n)
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(e)
            }
        }
    }

    async fn stat(&self, key: &str) -> Result<ObjectMeta> {
        let m = tokio::fs::metadata(self.path(key)?)
            .await
            .map_err(io_err("stat", key))?;
        Ok(ObjectMeta::new(key, m.len()))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        tokio::fs::remove_file(&path)
            .await
            .map_err(io_err("delete", key))?;
        // Chunk directories (`<name>/`) and v1 `Backup-<ts>/` directories go when empty.
        if let Some(parent) = path.parent() {
            let is_layout = parent
                .file_name()
                .is_some_and(|n| n == LAYOUT_V1 || n == LAYOUT_V2);
            if parent != self.root && !is_layout {
                let _ = tokio::fs::remove_dir(parent).await;
            }
        }
        Ok(())
    }
}

/// Copies the body into the file, telling a failing producer apart from a failing disk.
async fn copy_body(body: &mut Body, f: &mut tokio::fs::File, key: &str) -> Result<u64> {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let r = body.read(&mut buf).await.map_err(|source| Error::Body {
            key: key.to_owned(),
            source,
        })?;
        if r == 0 {
            return Ok(n);
        }
        f.write_all(&buf[..r]).await.map_err(io_err("put", key))?;
        n += r as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(b: &'static [u8]) -> Body {
        Box::new(b)
    }

    #[tokio::test]
    async fn put_get_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::new(dir.path().join("c")).unwrap();
        assert_eq!(
            s.put("p/v2/Full-00000000-00000001-1", body(b"hello"), None)
                .await
                .unwrap(),
            5
        );
        s.put(
            "p/v2/Full-00000000-00000002-2.gz/0000000001",
            body(b"x"),
            None,
        )
        .await
        .unwrap();
        let mut l = s.list("p").await.unwrap();
        l.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(
            l,
            vec![
                ObjectMeta::new("p/v2/Full-00000000-00000001-1", 5),
                ObjectMeta::new("p/v2/Full-00000000-00000002-2.gz/0000000001", 1),
            ]
        );
        let mut r = s.get("p/v2/Full-00000000-00000001-1").await.unwrap();
        let mut got = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut r, &mut got)
            .await
            .unwrap();
        assert_eq!(got, b"hello");
        s.delete("p/v2/Full-00000000-00000002-2.gz/0000000001")
            .await
            .unwrap();
        assert!(
            !dir.path()
                .join("c/p/v2/Full-00000000-00000002-2.gz")
                .exists(),
            "empty chunk dir removed"
        );
        assert!(dir.path().join("c/p/v2").exists(), "layout dir kept");
        assert!(matches!(s.get("nope").await, Err(Error::NotFound { .. })));
        assert!(s.list("missing").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_failing_body_leaves_no_object_and_no_temp_file() {
        struct Broken;
        impl tokio::io::AsyncRead for Broken {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                _: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<io::Result<()>> {
                std::task::Poll::Ready(Err(io::Error::other("producer died")))
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::new(dir.path()).unwrap();
        let e = s
            .put("v2/Full-00000000-00000001-1", Box::new(Broken), None)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Body { .. }), "{e}");
        assert!(
            std::fs::read_dir(dir.path().join("v2"))
                .unwrap()
                .next()
                .is_none()
        );
    }

    #[tokio::test]
    async fn keys_cannot_escape_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::new(dir.path()).unwrap();
        assert!(matches!(
            s.put("../x", body(b""), None).await,
            Err(Error::BadKey(_))
        ));
        assert!(matches!(s.get("/etc/passwd").await, Err(Error::BadKey(_))));
    }
}

//! An object store that fails chosen operations, for fault-injection tests only.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use snapstore::{Body, Error, ObjectMeta, ObjectStore, Result};

/// Decides whether the `n`-th call (counted from 1 per operation) of `op` on `key` fails.
pub type FaultRule = dyn Fn(&str, &str, usize) -> bool + Send + Sync;

/// Wraps a real store and fails the operations a rule picks, with [`Error::Injected`].
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    rule: Box<FaultRule>,
    calls: [AtomicUsize; 5],
}

impl fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyStore")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl FaultyStore {
    /// Wraps `inner`; `rule(op, key, n)` returns true for calls that must fail, where `op` is
    /// `list`, `get`, `put`, `stat` or `delete` and `n` counts that operation's calls from 1.
    pub fn new(
        inner: Arc<dyn ObjectStore>,
        rule: impl Fn(&str, &str, usize) -> bool + Send + Sync + 'static,
    ) -> FaultyStore {
        FaultyStore {
            inner,
            rule: Box::new(rule),
            calls: Default::default(),
        }
    }

    fn check(&self, op: &'static str, idx: usize, key: &str) -> Result<()> {
        let n = self.calls[idx].fetch_add(1, Ordering::SeqCst) + 1;
        if (self.rule)(op, key, n) {
            Err(Error::Injected {
                op,
                key: key.to_owned(),
            })
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.check("list", 0, prefix)?;
        self.inner.list(prefix).await
    }
    async fn get(&self, key: &str) -> Result<Body> {
        self.check("get", 1, key)?;
        self.inner.get(key).await
    }
    async fn put(&self, key: &str, body: Body, size_hint: Option<u64>) -> Result<u64> {
        self.check("put", 2, key)?;
        self.inner.put(key, body, size_hint).await
    }
    async fn stat(&self, key: &str) -> Result<ObjectMeta> {
        self.check("stat", 3, key)?;
        self.inner.stat(key).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.check("delete", 4, key)?;
        self.inner.delete(key).await
    }
}

//! The `FAILED` provider: every operation fails. The original has it for tests; so do we.

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::store::{Body, ObjectMeta, ObjectStore};

/// A store whose every operation fails with [`Error::Injected`].
#[derive(Debug, Clone, Copy, Default)]
pub struct FailedStore;

#[async_trait]
impl ObjectStore for FailedStore {
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        Err(Error::Injected {
            op: "list",
            key: prefix.to_owned(),
        })
    }
    async fn get(&self, key: &str) -> Result<Body> {
        Err(Error::Injected {
            op: "get",
            key: key.to_owned(),
        })
    }
    async fn put(&self, key: &str, _body: Body, _size_hint: Option<u64>) -> Result<u64> {
        Err(Error::Injected {
            op: "put",
            key: key.to_owned(),
        })
    }
    async fn stat(&self, key: &str) -> Result<ObjectMeta> {
        Err(Error::Injected {
            op: "stat",
            key: key.to_owned(),
        })
    }
    async fn delete(&self, key: &str) -> Result<()> {
        Err(Error::Injected {
            op: "delete",
            key: key.to_owned(),
        })
    }
}

//! Every remote provider through one OpenDAL operator: listing, streamed reads, chunked
//! concurrent uploads that appear whole or not at all, deletes.
//!
//! Retries live in the operator (OpenDAL's retry layer, built in `provider::operator`): each
//! request, including each part of an upload, is retried with exponential backoff; when an
//! upload still fails, the writer is aborted, so no partial object appears under the name.

use std::fmt;

use async_trait::async_trait;
use futures::TryStreamExt;
use opendal::{EntryMode, ErrorKind, Operator};
use tokio::io::AsyncReadExt;

use crate::config::{Provider, StoreConfig};
use crate::error::{Error, Result};
use crate::store::{Body, ObjectMeta, ObjectStore};
use crate::upload::chunk_size;

/// An object store backed by an OpenDAL operator.
#[derive(Clone)]
pub struct OpendalStore {
    op: Operator,
    provider: Provider,
    min_chunk: u64,
    parallel: usize,
    conditional: bool,
}

impl fmt::Debug for OpendalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpendalStore")
            .field("provider", &self.provider)
            .field("parallel", &self.parallel)
            .finish_non_exhaustive()
    }
}

/// Maps an OpenDAL error, keeping whether it is worth retrying.
pub(crate) fn map_err(op: &'static str, key: &str, e: opendal::Error) -> Error {
    if e.kind() == ErrorKind::NotFound {
        return Error::NotFound {
            key: key.to_owned(),
        };
    }
    Error::Provider {
        op,
        key: key.to_owned(),
        temporary: e.is_temporary(),
        source: Box::new(e),
    }
}

impl OpendalStore {
    /// Wraps an operator (rooted at the bucket or container).
    #[must_use]
    pub fn new(op: Operator, provider: Provider, min_chunk: u64, parallel: usize) -> OpendalStore {
        OpendalStore {
            op,
            provider,
            min_chunk,
            parallel: parallel.max(1),
            conditional: false,
        }
    }

    /// Wraps an operator with the store configuration's chunking (`--min-chunk-size`,
    /// `--max-parallel-chunk-uploads`).
    #[must_use]
    pub fn for_config(op: Operator, provider: Provider, config: &StoreConfig) -> OpendalStore {
        OpendalStore::new(
            op,
            provider,
            config.min_chunk_size,
            config.max_parallel_chunk_uploads,
        )
    }

    /// Writes with "if not exists": on GCS this selects the resumable upload protocol, which
    /// the emulators support (they lack the XML multipart API). Snapshot names are unique.
    #[must_use]
    pub fn with_conditional_writes(mut self) -> OpendalStore {
        self.conditional = true;
        self
    }

    /// The operator.
    #[must_use]
    pub fn operator(&self) -> &Operator {
        &self.op
    }

    /// Streams an object, or one version of it.
    async fn read(&self, key: &str, version: Option<&str>) -> Result<Body> {
        let mut with = self.op.reader_with(key).chunk(4 << 20);
        if let Some(v) = version {
            with = with.version(v);
        }
        let reader = with.await.map_err(|e| map_err("get", key, e))?;
        let stream = reader
            .into_bytes_stream(..)
            .await
            .map_err(|e| map_err("get", key, e))?
            .map_err(std::io::Error::other);
        Ok(Box::new(tokio_util::io::StreamReader::new(stream)))
    }

    /// Every version and delete marker below `prefix` (S3 versioned buckets).
    pub(crate) async fn list_versions(&self, prefix: &str) -> Result<Vec<opendal::Entry>> {
        let dir = if prefix.is_empty() || prefix.ends_with('/') {
            prefix.to_owned()
        } else {
            format!("{prefix}/")
        };
        match self
            .op
            .list_with(&dir)
            .recursive(true)
            .versions(true)
            .deleted(true)
            .await
        {
            Ok(e) => Ok(e.into_iter().filter(|e| !e.path().ends_with('/')).collect()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(map_err("list", prefix, e)),
        }
    }
}

#[async_trait]
impl ObjectStore for OpendalStore {
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let dir = if prefix.is_empty() || prefix.ends_with('/') {
            prefix.to_owned()
        } else {
            format!("{prefix}/")
        };
        let entries = self.op.list_with(&dir).recursive(true).await;
        let entries = match entries {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(map_err("list", prefix, e)),
        };
        Ok(entries
            .into_iter()
            .filter(|e| e.metadata().mode() == EntryMode::FILE && !e.path().ends_with('/'))
            .map(|e| {
                ObjectMeta::new(
                    e.path().trim_start_matches('/'),
                    e.metadata().content_length(),
                )
            })
            .collect())
    }

    async fn get(&self, key: &str) -> Result<Body> {
        self.read(key, None).await
    }

    async fn get_version(&self, key: &str, version: &str) -> Result<Body> {
        self.read(key, Some(version)).await
    }

    async fn delete_version(&self, key: &str, version: &str) -> Result<()> {
        self.op
            .delete_with(key)
            .version(version)
            .await
            .map_err(|e| map_err("delete", key, e))
    }

    async fn put(&self, key: &str, mut body: Body, size_hint: Option<u64>) -> Result<u64> {
        let chunk = chunk_size(self.provider, self.min_chunk, size_hint);
        let chunk_usize = usize::try_from(chunk).unwrap_or(usize::MAX);
        let mut w = self
            .op
            .writer_with(key)
            .chunk(chunk_usize)
            .concurrent(self.parallel)
            .content_type("application/octet-stream")
            .if_not_exists(self.conditional)
            .await
            .map_err(|e| map_err("put", key, e))?;
        tracing::info!(
            "Uploading {key} (about {} bytes) in chunks of {chunk} bytes, {} in parallel",
            size_hint.map_or_else(|| "?".to_owned(), |s| s.to_string()),
            self.parallel
        );
        let mut total = 0u64;
        let mut chunks = 0u64;
        let mut buf = vec![0u8; chunk_usize.min(8 << 20)];
        let result: Result<()> = async {
            loop {
                let mut filled = 0;
                while filled < buf.len() {
                    let n = body
                        .read(&mut buf[filled..])
                        .await
                        .map_err(|source| Error::Body {
                            key: key.to_owned(),
                            source,
                        })?;
                    if n == 0 {
                        break;
                    }
                    filled += n;
                }
                if filled == 0 {
                    return Ok(());
                }
                w.write(bytes::Bytes::copy_from_slice(&buf[..filled]))
                    .await
                    .map_err(|e| map_err("put", key, e))?;
                total += filled as u64;
                if total / chunk > chunks {
                    chunks = total / chunk;
                    tracing::debug!("Uploaded {chunks} chunks of {key} ({total} bytes)");
                }
            }
        }
        .await;
        let result = match result {
            Ok(()) => w
                .close()
                .await
                .map(|_| ())
                .map_err(|e| map_err("put", key, e)),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                tracing::info!("Finished uploading {key}: {total} bytes");
                Ok(total)
            }
            Err(e) => {
                tracing::warn!("Upload of {key} failed after {total} bytes; aborting it: {e}");
                if let Err(abort) = w.abort().await {
                    tracing::warn!("Aborting the upload of {key} failed too: {abort}");
                }
                Err(e)
            }
        }
    }

    async fn stat(&self, key: &str) -> Result<ObjectMeta> {
        let m = self
            .op
            .stat(key)
            .await
            .map_err(|e| map_err("stat", key, e))?;
        Ok(ObjectMeta::new(key, m.content_length()))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.op
            .delete(key)
            .await
            .map_err(|e| map_err("delete", key, e))
    }
}

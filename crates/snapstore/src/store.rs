//! The object store interface every provider implements, and [`SnapStore`], the snapshot view
//! over it that the engine uses.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use tokio::io::AsyncRead;

use crate::config::{Provider, StoreConfig};
use crate::credentials::{Env, ProcessEnv};
use crate::crypt::Keyring;
use crate::error::{Error, Result};
use crate::list::{self, BackupSet};
use crate::name::Snapshot;
use crate::provider;

/// A stream of object bytes, read or to be written.
pub type Body = Box<dyn AsyncRead + Send + Unpin>;

/// An object as a listing reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectMeta {
    /// Key relative to the store's root (bucket, container or directory).
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// The version to read and delete, where the store keeps versions (S3 versioned buckets).
    pub version: Option<String>,
    /// Why the operator excluded it (`x-etcd-snapshot-exclude=true` as a tag or metadata).
    pub excluded: Option<String>,
    /// Until when the store refuses to delete it (object lock, immutability, retention).
    pub retain_until: Option<chrono::DateTime<chrono::Utc>>,
}

impl ObjectMeta {
    /// An object with no version, exclusion or immutability.
    #[must_use]
    pub fn new(key: impl Into<String>, size: u64) -> ObjectMeta {
        ObjectMeta {
            key: key.into(),
            size,
            ..ObjectMeta::default()
        }
    }
}

/// The metadata key, as a tag or custom metadata, by which operators exclude a snapshot from
/// restores (the original's `ExcludeSnapshotMetadataKey`).
pub const EXCLUDE_KEY: &str = "x-etcd-snapshot-exclude";

/// The operations a storage provider offers. Keys are `/`-separated and relative to the
/// provider's root (bucket, container or directory).
#[async_trait]
pub trait ObjectStore: Send + Sync + fmt::Debug {
    /// Lists every object whose key starts with `prefix`, recursively, in no particular order.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;
    /// Opens an object for reading.
    async fn get(&self, key: &str) -> Result<Body>;
    /// Writes an object from `body` so that it appears whole or not at all; returns the number
    /// of bytes stored. `size_hint` (about how many bytes `body` yields) sizes the upload's parts.
    async fn put(&self, key: &str, body: Body, size_hint: Option<u64>) -> Result<u64>;
    /// Size of an object.
    async fn stat(&self, key: &str) -> Result<ObjectMeta>;
    /// Deletes an object.
    async fn delete(&self, key: &str) -> Result<()>;
    /// Opens one version of an object (as a listing reported it); stores without versions
    /// never report one, so the default reads the object.
    async fn get_version(&self, key: &str, version: &str) -> Result<Body> {
        let _ = version;
        self.get(key).await
    }
    /// Deletes one version of an object for good (not a delete marker).
    async fn delete_version(&self, key: &str, version: &str) -> Result<()> {
        let _ = version;
        self.delete(key).await
    }
    /// Until when the store refuses to delete the object, when that is known only by asking
    /// per object (S3 Object Lock retention set on the object); `None`: not held, or already
    /// reported by the listing.
    async fn retained_until(
        &self,
        key: &str,
        version: Option<&str>,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
        let _ = (key, version);
        Ok(None)
    }
    /// A reason garbage collection can never delete anything in this store (a hold without
    /// expiry on every object), checked at start-up.
    async fn never_deletable(&self) -> Result<Option<String>> {
        Ok(None)
    }
}

/// How often the credential files are checked for rotation.
pub const ROTATION_CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// Snapshots in one store: listing parsed into [`Snapshot`]s, and saving that checks what
/// landed. When the store was opened from credential files, a change of those files (a rotated
/// secret) rebuilds the provider before the next operation, as the original does.
#[derive(Debug, Clone)]
pub struct SnapStore {
    inner: Arc<Inner>,
}

struct Inner {
    provider: Provider,
    container: String,
    layout_prefix: String,
    list_prefix: String,
    reopen: Option<(StoreConfig, Arc<dyn Env + Send + Sync>)>,
    current: Mutex<Current>,
    keyring: Keyring,
    signed: crate::signed::Signed,
}

struct Current {
    objects: Arc<dyn ObjectStore>,
    stamp: Option<SystemTime>,
    checked: Instant,
    interval: Duration,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapStore")
            .field("provider", &self.provider)
            .field("container", &self.container)
            .field("prefix", &self.layout_prefix)
            .field("keyring", &self.keyring)
            .finish_non_exhaustive()
    }
}

impl SnapStore {
    /// Builds the store that `config` describes, reading credentials from the process
    /// environment. Call [`StoreConfig::resolve`] first.
    ///
    /// # Errors
    /// [`Error::Config`] or [`Error::Credentials`] when the provider cannot be built.
    pub fn open(config: &StoreConfig) -> Result<SnapStore> {
        SnapStore::open_with_env(config, ProcessEnv)
    }

    /// Like [`SnapStore::open`], reading credential variables from `env`.
    ///
    /// # Errors
    /// As [`SnapStore::open`].
    pub fn open_with_env(
        config: &StoreConfig,
        env: impl Env + Send + Sync + 'static,
    ) -> Result<SnapStore> {
        config.validate()?;
        let provider = config.provider.unwrap_or(Provider::Local);
        let objects = provider::build(provider, config, &env)?;
        let stamp = provider::credentials_stamp(provider, config, &env);
        let keyring = Keyring::load(&config.keys)?;
        let signing = config
            .keys
            .signing
            .as_deref()
            .map(crate::manifest::SigningKeys::load)
            .transpose()?;
        let mut store = SnapStore::with_objects(objects, provider, config);
        if let Some(inner) = Arc::get_mut(&mut store.inner) {
            inner.keyring = keyring;
            inner.signed = crate::signed::Signed::new(signing);
            inner.reopen = Some((config.clone(), Arc::new(env)));
            if let Ok(c) = inner.current.get_mut() {
                c.stamp = stamp;
            }
        }
        Ok(store)
    }

    /// Wraps an existing object store (tests use this to inject faults).
    #[must_use]
    pub fn with_objects(
        objects: Arc<dyn ObjectStore>,
        provider: Provider,
        config: &StoreConfig,
    ) -> SnapStore {
        SnapStore {
            inner: Arc::new(Inner {
                provider,
                container: config.container.clone(),
                layout_prefix: config.layout_prefix(),
                list_prefix: config.list_prefix(),
                reopen: None,
                current: Mutex::new(Current {
                    objects,
                    stamp: None,
                    checked: Instant::now(),
                    interval: ROTATION_CHECK_INTERVAL,
                }),
                keyring: Keyring::default(),
                signed: crate::signed::Signed::default(),
            }),
        }
    }

    /// The same store, sealing the snapshots it writes for `keyring`'s recipients and opening
    /// encrypted ones with its identities.
    #[must_use]
    pub fn with_keyring(self, keyring: Keyring) -> SnapStore {
        let i = &self.inner;
        let current = i
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let inner = Inner {
            provider: i.provider,
            container: i.container.clone(),
            layout_prefix: i.layout_prefix.clone(),
            list_prefix: i.list_prefix.clone(),
            reopen: i.reopen.clone(),
            current: Mutex::new(Current {
                objects: Arc::clone(&current.objects),
                stamp: current.stamp,
                checked: current.checked,
                interval: current.interval,
            }),
            keyring,
            signed: crate::signed::Signed::new(i.signed.keys().cloned()),
        };
        drop(current);
        SnapStore {
            inner: Arc::new(inner),
        }
    }

    /// The manifest state (see [`crate::signed`]).
    pub(crate) fn signed(&self) -> &crate::signed::Signed {
        &self.inner.signed
    }

    /// The prefix listings start from (the parent of `v2`).
    #[must_use]
    pub fn list_prefix(&self) -> &str {
        &self.inner.list_prefix
    }

    /// How this store's snapshots are encrypted and decrypted.
    #[must_use]
    pub fn keyring(&self) -> &Keyring {
        &self.inner.keyring
    }

    /// Whether saved snapshots are recorded in signed manifests (`--signing-key-file` holds a
    /// private key).
    #[must_use]
    pub fn signs(&self) -> bool {
        self.inner.signed.signs()
    }

    /// Whether new snapshots are written encrypted (their names end in `.age`).
    #[must_use]
    pub fn encrypts(&self) -> bool {
        self.inner.keyring.encrypts()
    }

    /// The provider behind this store.
    #[must_use]
    pub fn provider(&self) -> Provider {
        self.inner.provider
    }

    /// The prefix new snapshots are written under (`<prefix>/v2`).
    #[must_use]
    pub fn layout_prefix(&self) -> &str {
        &self.inner.layout_prefix
    }

    /// The underlying object store, rebuilt first if its credential files changed.
    #[must_use]
    pub fn objects(&self) -> Arc<dyn ObjectStore> {
        let mut cur = self
            .inner
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((config, env)) = &self.inner.reopen
            && cur.checked.elapsed() >= cur.interval
        {
            cur.checked = Instant::now();
            let stamp = provider::credentials_stamp(self.inner.provider, config, env.as_ref());
            if stamp != cur.stamp {
                match provider::build(self.inner.provider, config, env.as_ref()) {
                    Ok(objects) => {
                        tracing::info!(
                            "The {} credentials changed; reconnected with the new ones",
                            self.inner.provider
                        );
                        cur.objects = objects;
                        cur.stamp = stamp;
                    }
                    Err(e) => tracing::warn!(
                        "The {} credentials changed but cannot be used, keeping the old ones: {e}",
                        self.inner.provider
                    ),
                }
            }
        }
        Arc::clone(&cur.objects)
    }

    /// Changes how often credential files are checked for rotation (default
    /// `ROTATION_CHECK_INTERVAL`).
    pub fn set_rotation_check_interval(&self, interval: Duration) {
        self.inner
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .interval = interval;
    }

    /// Checks that the container can be listed, so bad credentials or endpoints are reported
    /// at start-up rather than at the first snapshot.
    ///
    /// # Errors
    /// [`Error::Access`] naming the provider and container, with the cause.
    pub async fn check_access(&self) -> Result<()> {
        self.objects()
            .list(&self.inner.list_prefix)
            .await
            .map(|_| ())
            .map_err(|e| Error::Access {
                provider: self.inner.provider.to_string(),
                container: self.inner.container.clone(),
                source: Box::new(e),
            })
    }

    /// Every snapshot and chunk object in the store (v1 and v2 layouts), sorted in the
    /// original's order. Keys that mention a layout directory but do not parse are logged and
    /// skipped, as the original does.
    ///
    /// # Errors
    /// Listing fails.
    pub async fn list(&self) -> Result<Vec<Snapshot>> {
        let mut all = self.list_all().await?;
        all.retain(|s| match &s.excluded {
            None => true,
            Some(why) => {
                tracing::info!("Ignoring snapshot {}: {why}", s.snap_name);
                false
            }
        });
        Ok(all)
    }

    /// [`SnapStore::list`] including the snapshots operators excluded from restores (their
    /// `excluded` says why): what garbage collection and `etcdbrctl list` see.
    ///
    /// # Errors
    /// Listing fails.
    pub async fn list_all(&self) -> Result<Vec<Snapshot>> {
        let mut out: Vec<Snapshot> = self
            .list_objects()
            .await?
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        list::sort(&mut out);
        Ok(out)
    }

    /// Every snapshot object with its size, attributes copied from the listing; keys that
    /// do not parse are logged and skipped.
    async fn list_objects(&self) -> Result<Vec<(Snapshot, u64)>> {
        let mut out = Vec::new();
        for obj in self.objects().list(&self.inner.list_prefix).await? {
            if !(obj.key.contains("v1") || obj.key.contains("v2")) {
                continue;
            }
            match Snapshot::parse(&obj.key) {
                Ok(mut s) => {
                    s.version_id = obj.version;
                    s.excluded = obj.excluded;
                    s.immutability_expiry = obj.retain_until;
                    out.push((s, obj.size));
                }
                Err(e) => {
                    tracing::warn!(key = %obj.key, "Invalid snapshot found, ignoring it: {e}")
                }
            }
        }
        Ok(out)
    }

    /// The newest full snapshot and the deltas of its history after it (see [`list`]).
    ///
    /// # Errors
    /// Listing fails, or [`Error::Chain`] when the history of some snapshots is ambiguous.
    pub async fn latest_set(&self) -> Result<BackupSet> {
        let set = list::latest_set(&self.list().await?)?;
        for s in &set.abandoned {
            tracing::warn!(
                "Ignoring {}: it was taken before the full snapshot {} but reaches a higher revision, so it belongs to a history etcd was rolled back from",
                s.snap_name,
                set.full.as_ref().map_or("", |f| f.snap_name.as_str())
            );
        }
        Ok(set)
    }

    /// Plans what `selection` restores (see [`crate::select`]).
    ///
    /// # Errors
    /// Listing fails, or [`Error::Select`] naming what the store can restore instead.
    pub async fn plan(&self, selection: &crate::Selection) -> Result<crate::Plan> {
        if *selection == crate::Selection::latest() {
            // The original's choice, with its warnings about abandoned histories.
            let set = self.latest_set().await?;
            if set.full.is_none() {
                return Err(crate::SelectError::NoFullSnapshot.into());
            }
            // The manifest first: a removed delta is named as such, not as a gap.
            let mut plan = crate::Plan {
                set,
                chain: Vec::new(),
                stop: crate::Stop::End,
            };
            self.check_plan(&plan).await?;
            plan.chain = plan.set.chain()?;
            return Ok(plan);
        }
        let plan = crate::select::plan(&self.list().await?, selection)?;
        self.check_plan(&plan).await?;
        Ok(plan)
    }

    /// Every snapshot and chunk object with its size in bytes, sorted as [`SnapStore::list`],
    /// including excluded ones (as [`SnapStore::list_all`]).
    ///
    /// # Errors
    /// Listing fails.
    pub async fn list_sized(&self) -> Result<Vec<(Snapshot, u64)>> {
        let mut out = self.list_objects().await?;
        out.sort_by(|a, b| list::compare(&a.0, &b.0));
        Ok(out)
    }

    /// Opens a snapshot for reading (still compressed as stored).
    ///
    /// # Errors
    /// The object is missing or cannot be read.
    pub async fn fetch(&self, snapshot: &Snapshot) -> Result<Body> {
        let objects = self.objects();
        let key = snapshot.key();
        let body = match &snapshot.version_id {
            Some(v) => objects.get_version(&key, v).await?,
            None => objects.get(&key).await?,
        };
        Ok(self.inner.signed.checked(snapshot, body))
    }

    /// Stores a snapshot from `body` (about `size_hint` bytes), then checks that the stored object
    /// has every byte sent.
    ///
    /// # Errors
    /// The upload fails, or [`Error::Verify`] when the stored size differs.
    pub async fn save(
        &self,
        snapshot: &Snapshot,
        body: Body,
        size_hint: Option<u64>,
    ) -> Result<u64> {
        let key = snapshot.key();
        let objects = self.objects();
        let signing = self.inner.signed.signs();
        if signing {
            self.load_manifest_chain().await?;
        }
        let (body, digest) = crate::signed::hashing(body, signing);
        let sent = objects.put(&key, body, size_hint).await?;
        let stored = objects.stat(&key).await?;
        if stored.size != sent {
            return Err(Error::Verify {
                key,
                expected: sent,
                found: stored.size,
            });
        }
        if let Some(digest) = digest {
            self.record(snapshot, sent, &digest.finish()).await?;
        }
        Ok(sent)
    }

    /// Deletes a snapshot object.
    ///
    /// # Errors
    /// The delete fails.
    pub async fn delete(&self, snapshot: &Snapshot) -> Result<()> {
        if snapshot.kind == crate::Kind::Full && self.inner.signed.keys().is_some() {
            self.delete_manifest(snapshot).await;
        }
        let objects = self.objects();
        match &snapshot.version_id {
            Some(v) => objects.delete_version(&snapshot.key(), v).await,
            None => objects.delete(&snapshot.key()).await,
        }
    }

    /// Until when the store refuses to delete `snapshot`: what the listing said, else what the
    /// store answers for the object (S3 Object Lock retention set per object).
    ///
    /// # Errors
    /// The store cannot be asked.
    pub async fn retained_until(
        &self,
        snapshot: &Snapshot,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
        if snapshot.immutability_expiry.is_some() {
            return Ok(snapshot.immutability_expiry);
        }
        self.objects()
            .retained_until(&snapshot.key(), snapshot.version_id.as_deref())
            .await
    }

    /// Why garbage collection could never delete anything here (see
    /// [`ObjectStore::never_deletable`]).
    ///
    /// # Errors
    /// The store cannot be asked.
    pub async fn never_deletable(&self) -> Result<Option<String>> {
        self.objects().never_deletable().await
    }
}

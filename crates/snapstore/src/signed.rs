//! A store's signed manifests at work (see [`crate::manifest`] for the format): the writer's
//! side ([`SnapStore::save`] records each stored object in its set's manifest), the restore's
//! side (a plan is checked against its set's manifest, and each object fetched is hashed against
//! its entry), and `verify`'s side ([`SnapStore::audit`], every set of the store).

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use crate::error::{Error, Result};
use crate::manifest::{
    Entry, Link, MANIFEST_DIR, Manifest, SigningKeys, Tamper, hex, key_of, sha256_hex,
};
use crate::name::{Kind, Snapshot, join_key};
use crate::store::{Body, ObjectMeta, SnapStore};
use crate::{LAYOUT_V2, list};

/// A manifest larger than this is refused (100,000 deltas take about 20 MB).
const MAX_MANIFEST: u64 = 64 << 20;

/// The manifest state of one store.
#[derive(Default)]
pub(crate) struct Signed {
    keys: Option<SigningKeys>,
    writing: tokio::sync::Mutex<Writing>,
    /// Entries of the objects a checked plan will fetch, by key, with their set.
    expected: Mutex<HashMap<String, (String, Entry)>>,
}

#[derive(Default)]
struct Writing {
    loaded: bool,
    current: Option<Current>,
}

/// The manifest of the newest set, as last stored.
struct Current {
    full: Snapshot,
    manifest: Manifest,
    sha256: String,
}

impl Signed {
    pub(crate) fn new(keys: Option<SigningKeys>) -> Signed {
        Signed {
            keys,
            ..Signed::default()
        }
    }

    /// The signing keys, if the store is signed.
    pub(crate) fn keys(&self) -> Option<&SigningKeys> {
        self.keys.as_ref()
    }

    /// Whether saves are recorded in manifests (the private key is at hand).
    pub(crate) fn signs(&self) -> bool {
        self.keys.as_ref().is_some_and(SigningKeys::can_sign)
    }

    /// `body`, checked against the signed entry of `snapshot` when a plan registered one.
    pub(crate) fn checked(&self, snapshot: &Snapshot, body: Body) -> Body {
        let expected = self
            .expected
            .lock()
            .ok()
            .and_then(|e| e.get(&snapshot.key()).cloned());
        match expected {
            None => body,
            Some((set, entry)) => Box::new(Checked {
                inner: body,
                hasher: Sha256::new(),
                read: 0,
                set,
                entry,
                done: false,
            }),
        }
    }
}

/// The sha256 of an upload's bytes, ready once the upload has read its body to the end.
pub(crate) struct Digest(Arc<Mutex<Sha256>>);

impl Digest {
    /// Hex sha256 of what was read so far.
    pub(crate) fn finish(&self) -> String {
        self.0
            .lock()
            .map(|h| hex(&h.clone().finalize()))
            .unwrap_or_default()
    }
}

/// `body`, hashed as it is read when `on`.
pub(crate) fn hashing(body: Body, on: bool) -> (Body, Option<Digest>) {
    if !on {
        return (body, None);
    }
    let hasher = Arc::new(Mutex::new(Sha256::new()));
    let body = Box::new(Hashing {
        inner: body,
        hasher: Arc::clone(&hasher),
    });
    (body, Some(Digest(hasher)))
}

struct Hashing {
    inner: Body,
    hasher: Arc<Mutex<Sha256>>,
}

impl AsyncRead for Hashing {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r
            && let Ok(mut h) = self.hasher.lock()
        {
            h.update(&buf.filled()[before..]);
        }
        r
    }
}

/// A fetched object checked against its signed entry: a different size or sha256 is an
/// [`io::ErrorKind::InvalidData`] error carrying the [`Tamper`].
struct Checked {
    inner: Body,
    hasher: Sha256,
    read: u64,
    set: String,
    entry: Entry,
    done: bool,
}

impl Checked {
    fn changed(&self, what: &'static str, expected: String, found: String) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            Tamper::Changed {
                set: self.set.clone(),
                object: self.entry.name.clone(),
                what,
                expected,
                found,
            },
        )
    }
}

impl AsyncRead for Checked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let new = &buf.filled()[before..];
            let this = &mut *self;
            this.hasher.update(new);
            this.read += new.len() as u64;
            if this.read > this.entry.size {
                let e = this.changed("size", this.entry.size.to_string(), "larger".into());
                return Poll::Ready(Err(e));
            }
            if !this.done && (new.is_empty() || this.read == this.entry.size) {
                this.done = true;
                let found = hex(&this.hasher.clone().finalize());
                if this.read != this.entry.size {
                    let e =
                        this.changed("size", this.entry.size.to_string(), this.read.to_string());
                    return Poll::Ready(Err(e));
                }
                if found != this.entry.sha256 {
                    let e = this.changed("sha256", this.entry.sha256.clone(), found);
                    return Poll::Ready(Err(e));
                }
            }
        }
        r
    }
}

/// What `verify` found in a store's manifests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Audit {
    /// Sets with a valid manifest.
    pub signed_sets: usize,
    /// Sets without one (before signing was enabled).
    pub unsigned_sets: usize,
    /// Differences from what was signed: each is an error.
    pub findings: Vec<Tamper>,
    /// What cannot be told from tampering but is expected (deltas of older sets that GC
    /// deleted, a previous set that GC removed).
    pub notes: Vec<String>,
}

impl SnapStore {
    /// Starts a new chain of manifests: the next full snapshot saved links no previous set.
    /// `copy` calls it, as it stores whole sets oldest first.
    pub async fn begin_manifest_chain(&self) {
        let mut w = self.signed().writing.lock().await;
        w.loaded = true;
        w.current = None;
    }

    /// Reads the newest set's manifest once, before the first save, so that the next full
    /// snapshot's manifest links it.
    pub(crate) async fn load_manifest_chain(&self) -> Result<()> {
        let mut w = self.signed().writing.lock().await;
        if w.loaded {
            return Ok(());
        }
        let keys = self.signed().keys().filter(|k| k.can_sign()).cloned();
        if let (Some(keys), Ok(set)) = (keys, list::latest_set(&self.list_all().await?))
            && let Some(full) = set.full
        {
            match self.read_manifest(&keys, &full).await {
                Ok(Some((manifest, sha256))) => {
                    w.current = Some(Current {
                        full,
                        manifest,
                        sha256,
                    });
                }
                Ok(None) => {
                    let deltas = set.deltas.clone();
                    w.current = Some(self.adopt(&keys, full, &deltas).await?);
                }
                Err(e) => tracing::warn!(
                    "The manifest of {} cannot be used ({e}); the next full snapshot starts a new chain of manifests",
                    full.snap_name
                ),
            }
        }
        w.loaded = true;
        Ok(())
    }

    /// Signs the newest set as it is found, when signing begins in the middle of it (trust on
    /// first use): each object is read once and hashed.
    async fn adopt(
        &self,
        keys: &SigningKeys,
        full: Snapshot,
        deltas: &[Snapshot],
    ) -> Result<Current> {
        tracing::info!(
            "Signing the backup set of {} as found ({} objects): it was begun before signing was enabled",
            full.snap_name,
            1 + deltas.len()
        );
        let mut manifest: Option<Manifest> = None;
        for s in std::iter::once(&full).chain(deltas) {
            let (size, sha256) = self.hash_object(s).await?;
            let entry = Entry {
                name: s.snap_name.clone(),
                size,
                sha256,
            };
            match &mut manifest {
                None => manifest = Some(Manifest::new(&full, entry, None)),
                Some(m) => m.add(entry),
            }
        }
        let manifest = manifest.unwrap_or_else(|| unreachable!("the full snapshot is first"));
        let sha256 = self.put_manifest(keys, &full, &manifest).await?;
        Ok(Current {
            full,
            manifest,
            sha256,
        })
    }

    /// The size and hex sha256 of a stored object, read once.
    async fn hash_object(&self, s: &Snapshot) -> Result<(u64, String)> {
        let mut body = self.objects().get(&s.key()).await?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = body.read(&mut buf).await.map_err(|source| Error::Io {
                op: "get",
                key: s.key(),
                source,
            })?;
            if n == 0 {
                return Ok((size, hex(&hasher.finalize())));
            }
            hasher.update(&buf[..n]);
            size += n as u64;
        }
    }

    /// Stores `manifest` signed as the manifest of `full`'s set; returns the sha256 of its bytes.
    async fn put_manifest(
        &self,
        keys: &SigningKeys,
        full: &Snapshot,
        manifest: &Manifest,
    ) -> Result<String> {
        let key = key_of(self.list_prefix(), full);
        let bytes = keys.seal(manifest).ok_or_else(|| Error::Io {
            op: "sign",
            key: key.clone(),
            source: io::Error::other("the manifest cannot be signed without the private key"),
        })?;
        let len = bytes.len() as u64;
        let digest = sha256_hex(&bytes);
        self.objects()
            .put(&key, Box::new(io::Cursor::new(bytes)), Some(len))
            .await?;
        Ok(digest)
    }

    /// Adds a stored object to its set's manifest and stores the manifest, signed.
    pub(crate) async fn record(&self, snapshot: &Snapshot, size: u64, sha256: &str) -> Result<()> {
        let Some(keys) = self.signed().keys().filter(|k| k.can_sign()) else {
            return Ok(());
        };
        let mut w = self.signed().writing.lock().await;
        let entry = Entry {
            name: snapshot.snap_name.clone(),
            size,
            sha256: sha256.to_owned(),
        };
        let (full, manifest) = match snapshot.kind {
            Kind::Full => {
                let previous = w.current.as_ref().map(|c| Link {
                    set: c.manifest.set.clone(),
                    sha256: c.sha256.clone(),
                });
                (snapshot.clone(), Manifest::new(snapshot, entry, previous))
            }
            Kind::Incr => match &w.current {
                Some(c) if snapshot.start_revision > c.full.last_revision => {
                    let mut m = c.manifest.clone();
                    m.add(entry);
                    (c.full.clone(), m)
                }
                _ => {
                    tracing::warn!(
                        "{} is not in any manifest: its set was begun before signing was enabled, or the set has moved on",
                        snapshot.snap_name
                    );
                    return Ok(());
                }
            },
        };
        let digest = self.put_manifest(keys, &full, &manifest).await?;
        w.current = Some(Current {
            full,
            manifest,
            sha256: digest,
        });
        Ok(())
    }

    /// Deletes the manifest of a full snapshot's set before GC deletes the snapshot (a manifest
    /// left without its set would make restores refuse the older sets); a failure is logged.
    pub(crate) async fn delete_manifest(&self, full: &Snapshot) {
        let key = key_of(self.list_prefix(), full);
        if let Err(e) = self.objects().delete(&key).await
            && !matches!(e, Error::NotFound { .. })
        {
            tracing::warn!("Cannot delete the manifest {key}: {e}");
        }
    }

    /// The manifest of `full`'s set and the sha256 of its bytes, `None` when it has none.
    async fn read_manifest(
        &self,
        keys: &SigningKeys,
        full: &Snapshot,
    ) -> Result<Option<(Manifest, String)>> {
        let key = key_of(self.list_prefix(), full);
        let mut body = match self.objects().get(&key).await {
            Ok(b) => b,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut bytes = Vec::new();
        (&mut body)
            .take(MAX_MANIFEST)
            .read_to_end(&mut bytes)
            .await
            .map_err(|source| Error::Io {
                op: "get",
                key: key.clone(),
                source,
            })?;
        let manifest = keys.open(&key, &bytes).map_err(Tamper::from)?;
        if manifest.set != full.plain_name() {
            return Err(Tamper::WrongSet {
                key,
                set: full.plain_name(),
                named: manifest.set,
            }
            .into());
        }
        Ok(Some((manifest, sha256_hex(&bytes))))
    }

    /// Checks a restore's plan against its set's signed manifest (when the store has a
    /// signing key), and registers the entries its fetches are hashed against. Plans made by
    /// [`SnapStore::plan`] are checked already.
    ///
    /// # Errors
    /// [`Error::Tampered`] naming the object, or the store cannot be read.
    pub async fn check_plan(&self, plan: &crate::Plan) -> Result<()> {
        let Some(keys) = self.signed().keys().cloned() else {
            return Ok(());
        };
        let listing = self.objects().list(self.list_prefix()).await?;
        let sizes: HashMap<&str, u64> = listing.iter().map(|o| (o.key.as_str(), o.size)).collect();
        let full = plan.full();
        // A newer set's manifest without its full snapshot: that set was removed, and restoring
        // this one would roll the cluster back.
        for o in &listing {
            let Some(set) = manifest_set(self, o) else {
                continue;
            };
            let gone = !listing.iter().any(|l| {
                Snapshot::parse(&l.key).is_ok_and(|s| s.kind == Kind::Full && s.plain_name() == set)
            });
            let newer = Snapshot::parse(&join_key(&[LAYOUT_V2, &set])).is_ok_and(|s| {
                (s.created_on, s.last_revision) > (full.created_on, full.last_revision)
            });
            if gone && newer {
                return Err(Tamper::Missing {
                    object: set.clone(),
                    set,
                }
                .into());
            }
        }
        let Some((manifest, _)) = self.read_manifest(&keys, full).await? else {
            return Err(Tamper::NotSigned {
                set: full.snap_name.clone(),
            }
            .into());
        };
        let set = manifest.set.clone();
        let check = |s: &Snapshot| -> std::result::Result<Entry, Tamper> {
            let entry = manifest
                .entry(&s.snap_name)
                .ok_or_else(|| Tamper::Foreign {
                    set: set.clone(),
                    object: s.snap_name.clone(),
                })?;
            let size = sizes.get(s.key().as_str()).copied().unwrap_or_default();
            if size != entry.size {
                return Err(Tamper::Changed {
                    set: set.clone(),
                    object: s.snap_name.clone(),
                    what: "size",
                    expected: entry.size.to_string(),
                    found: size.to_string(),
                });
            }
            Ok(entry.clone())
        };
        let mut expected = vec![(full.key(), check(full)?)];
        let chain = plan.chain.iter().map(|step| &step.snapshot);
        for d in chain.chain(&plan.set.deltas) {
            expected.push((d.key(), check(d)?));
        }
        // Garbage collection deletes deltas of older sets; the newest set loses none.
        let snaps: Vec<Snapshot> = listing
            .iter()
            .filter_map(|o| Snapshot::parse(&o.key).ok())
            .collect();
        let newest = list::latest_set(&snaps)
            .ok()
            .and_then(|s| s.full)
            .is_some_and(|f| f.plain_name() == set);
        for e in manifest.objects.iter().filter(|_| newest) {
            if !sizes.contains_key(join_key(&[&full.prefix, &e.name]).as_str()) {
                return Err(Tamper::Missing {
                    set,
                    object: e.name.clone(),
                }
                .into());
            }
        }
        if let Ok(mut map) = self.signed().expected.lock() {
            for (key, entry) in expected {
                map.insert(key, (set.clone(), entry));
            }
        }
        tracing::info!(
            "The backup set {} matches its signed manifest ({} objects)",
            full.snap_name,
            manifest.objects.len()
        );
        Ok(())
    }

    /// Checks every set of the store against its manifest by name and size (the newest set's
    /// content is hashed when it is restored), and the links between the manifests.
    ///
    /// # Errors
    /// The store has no signing key (`--signing-key-file`), or listing or reading fails.
    pub async fn audit(&self) -> Result<Audit> {
        let Some(keys) = self.signed().keys().cloned() else {
            return Err(Error::Io {
                op: "audit",
                key: self.list_prefix().to_owned(),
                source: io::Error::other("no --signing-key-file to check manifests with"),
            });
        };
        let listing = self.objects().list(self.list_prefix()).await?;
        let sizes: HashMap<&str, u64> = listing.iter().map(|o| (o.key.as_str(), o.size)).collect();
        let mut snaps: Vec<Snapshot> = listing
            .iter()
            .filter(|o| o.key.contains(&format!("{LAYOUT_V2}/")))
            .filter_map(|o| Snapshot::parse(&o.key).ok())
            .filter(|s| !s.is_chunk)
            .collect();
        list::sort(&mut snaps);
        let mut fulls: Vec<&Snapshot> = snaps.iter().filter(|s| s.kind == Kind::Full).collect();
        fulls.sort_by_key(|s| (s.created_on, s.last_revision));
        let newest = list::latest_set(&snaps)
            .ok()
            .and_then(|s| s.full)
            .map(|f| f.plain_name());
        let mut audit = Audit::default();
        let mut signed: HashMap<String, (Manifest, String)> = HashMap::new();
        let mut first_signed = None;
        for (i, full) in fulls.iter().enumerate() {
            match self.read_manifest(&keys, full).await {
                Ok(Some(m)) => {
                    first_signed.get_or_insert(i);
                    signed.insert(full.plain_name(), m);
                }
                Ok(None) => audit.unsigned_sets += 1,
                Err(Error::Tampered(t)) => audit.findings.push(t),
                Err(e) => return Err(e),
            }
        }
        audit.signed_sets = signed.len();
        // Sets after the first signed one must be signed too.
        if let Some(first) = first_signed {
            let name = fulls[first].snap_name.clone();
            for full in &fulls[first..] {
                if !signed.contains_key(&full.plain_name())
                    && !audit.findings.iter().any(|f| names_set(f, full))
                {
                    audit.findings.push(Tamper::Unsigned {
                        set: full.snap_name.clone(),
                        signed: name.clone(),
                    });
                }
            }
        }
        // The newest set is the one restored: it must be signed.
        if let Some(full) = fulls
            .iter()
            .find(|f| newest.as_deref() == Some(f.plain_name().as_str()))
            && !signed.contains_key(&full.plain_name())
            && !audit.findings.iter().any(|f| {
                names_set(f, full)
                    || matches!(f, Tamper::Unsigned { set, .. } if *set == full.snap_name)
            })
        {
            audit.findings.push(Tamper::NotSigned {
                set: full.snap_name.clone(),
            });
        }
        // Each object of a signed set must be listed, with its size.
        for s in &snaps {
            let Some(owner) = fulls.iter().rev().find(|f| f.created_on <= s.created_on) else {
                continue;
            };
            let Some((m, _)) = signed.get(&owner.plain_name()) else {
                continue;
            };
            match m.entry(&s.snap_name) {
                None => audit.findings.push(Tamper::Foreign {
                    set: m.set.clone(),
                    object: s.snap_name.clone(),
                }),
                Some(e) => {
                    let size = sizes.get(s.key().as_str()).copied().unwrap_or_default();
                    if size != e.size {
                        audit.findings.push(Tamper::Changed {
                            set: m.set.clone(),
                            object: s.snap_name.clone(),
                            what: "size",
                            expected: e.size.to_string(),
                            found: size.to_string(),
                        });
                    }
                }
            }
        }
        // Each listed object must be there: in the newest set always, in older ones GC may have
        // deleted deltas.
        for full in &fulls {
            let Some((m, _)) = signed.get(&full.plain_name()) else {
                continue;
            };
            for e in &m.objects {
                if sizes.contains_key(join_key(&[&full.prefix, &e.name]).as_str()) {
                    continue;
                }
                if newest.as_deref() == Some(m.set.as_str()) || e.name == full.snap_name {
                    audit.findings.push(Tamper::Missing {
                        set: m.set.clone(),
                        object: e.name.clone(),
                    });
                } else {
                    audit.notes.push(format!(
                        "{} of the older set {} is gone (deleted by garbage collection, or by someone)",
                        e.name, m.set
                    ));
                }
            }
            if let Some(link) = &m.previous {
                match signed.get(&link.set) {
                    Some((_, sha)) if *sha != link.sha256 => {
                        audit.findings.push(Tamper::PreviousReplaced {
                            set: m.set.clone(),
                            previous: link.set.clone(),
                        });
                    }
                    Some(_) => {}
                    None => audit.notes.push(format!(
                        "the set before {}, {}, is gone (garbage-collected, or removed)",
                        m.set, link.set
                    )),
                }
            }
        }
        // A manifest whose full snapshot is gone: the set was removed but its manifest left.
        let present: Vec<String> = fulls.iter().map(|f| f.plain_name()).collect();
        for o in &listing {
            if let Some(set) = manifest_set(self, o)
                && !present.contains(&set)
            {
                audit.findings.push(Tamper::Missing {
                    set: set.clone(),
                    object: set,
                });
            }
        }
        Ok(audit)
    }
}

/// The set a manifest object's key names, if `o` is a manifest of `store`.
fn manifest_set(store: &SnapStore, o: &ObjectMeta) -> Option<String> {
    let dir = join_key(&[store.list_prefix(), MANIFEST_DIR]);
    o.key
        .strip_prefix(&dir)?
        .strip_prefix('/')?
        .strip_suffix(".json")
        .map(str::to_owned)
}

fn names_set(t: &Tamper, full: &Snapshot) -> bool {
    match t {
        Tamper::Manifest(crate::manifest::ManifestError::BadSignature { key })
        | Tamper::Manifest(crate::manifest::ManifestError::Malformed { key, .. })
        | Tamper::WrongSet { key, .. } => key.contains(&full.plain_name()),
        _ => false,
    }
}

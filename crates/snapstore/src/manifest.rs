//! Signed manifests of backup sets: tamper evidence for a store an attacker may write to.
//!
//! Each backup set (a full snapshot and its deltas) has a manifest object,
//! `<prefix>/manifests/<full snapshot name>.json`, listing every object of the set with its
//! size and the sha256 of its stored bytes, and naming the previous set's manifest with the
//! sha256 of that manifest's bytes. It is signed with an Ed25519 key (`--signing-key-file`, a
//! PKCS#8 PEM file as `openssl genpkey -algorithm ed25519` writes it); readers need only the
//! public half. The writer rewrites the manifest of the current set after every object it
//! stores, so the manifest of the newest set always lists what a restore will read.
//!
//! The manifests live outside `v2/`, so the original etcd-backup-restore never sees them: its
//! parser ignores keys without a layout directory.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::name::{Snapshot, join_key};

/// The directory of the manifests, beside `v2`.
pub const MANIFEST_DIR: &str = "manifests";
/// The manifest format's version.
const VERSION: u32 = 1;

/// What a backup set holds, as its writer stored it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version (1).
    pub version: u32,
    /// The set's full snapshot, by its name without `.age` and `.final`.
    pub set: String,
    /// The previous set's manifest, when the writer knew one.
    pub previous: Option<Link>,
    /// The set's objects, the full snapshot first, then the deltas by revision.
    pub objects: Vec<Entry>,
}

/// A reference to another manifest: its set and the sha256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The set's full snapshot name, as [`Manifest::set`].
    pub set: String,
    /// Hex sha256 of the manifest object's bytes.
    pub sha256: String,
}

/// One stored object of a set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The object's name as stored (`.age` included).
    pub name: String,
    /// Bytes stored.
    pub size: u64,
    /// Hex sha256 of the bytes stored.
    pub sha256: String,
}

/// The stored form: the manifest, the public key, and the signature over the manifest's JSON.
#[derive(Serialize, Deserialize)]
struct Envelope {
    manifest: Manifest,
    key: String,
    signature: String,
}

/// The key manifests are signed with, or only its public half (enough to check them).
#[derive(Clone)]
pub struct SigningKeys {
    signing: Option<SigningKey>,
    verifying: VerifyingKey,
}

impl fmt::Debug for SigningKeys {
    /// The public key only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeys")
            .field("public", &B64.encode(self.verifying.as_bytes()))
            .field("can_sign", &self.signing.is_some())
            .finish()
    }
}

/// A signing key file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SigningKeyError {
    /// The file cannot be read.
    #[error("cannot read the signing key file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Neither an Ed25519 private key (PKCS#8 PEM) nor a public key (SPKI PEM).
    #[error(
        "{} is not an Ed25519 key in PEM: make one with `openssl genpkey -algorithm ed25519 -out signing.pem`, and its public half with `openssl pkey -in signing.pem -pubout`",
        path.display()
    )]
    Format {
        /// The file.
        path: PathBuf,
    },
}

/// Why a manifest object is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// Not the JSON of a manifest.
    #[error("the manifest {key} is not a manifest ({reason})")]
    Malformed {
        /// Object key.
        key: String,
        /// The parser's words.
        reason: String,
    },
    /// The signature does not verify with the configured key.
    #[error(
        "the manifest {key} is not signed by the key of --signing-key-file: it was replaced, or written with another key"
    )]
    BadSignature {
        /// Object key.
        key: String,
    },
}

/// How a store differs from what its manifests signed: each names the object and the set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Tamper {
    /// A set has no manifest while another set is signed.
    #[error(
        "the backup set {set} has no manifest, though {signed} is signed: its manifest was removed, or the set was written by someone without the signing key"
    )]
    Unsigned {
        /// The unsigned set.
        set: String,
        /// A signed set.
        signed: String,
    },
    /// The set to restore has no manifest, and a signing key asks for signed sets.
    #[error(
        "the backup set {set} has no signed manifest, and with --signing-key-file only signed sets are restored: its manifest was removed, or the set predates signing (a server with the private key signs the current set when it starts); leave out --signing-key-file to restore it unchecked"
    )]
    NotSigned {
        /// The set.
        set: String,
    },
    /// A manifest cannot be read or its signature fails.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A manifest names another set than the one whose key it has.
    #[error("the manifest {key} is signed for the set {named}, not {set}: it was moved")]
    WrongSet {
        /// Object key.
        key: String,
        /// The set its key says.
        set: String,
        /// The set it names.
        named: String,
    },
    /// A listed object is not in the store.
    #[error(
        "{object} is listed in the signed manifest of {set} but is not in the store: it was removed (the chain is truncated)"
    )]
    Missing {
        /// The set.
        set: String,
        /// The object.
        object: String,
    },
    /// An object of a set is not listed in its manifest.
    #[error(
        "{object} is in the store but not in the signed manifest of {set}: it was added or renamed by someone without the signing key"
    )]
    Foreign {
        /// The set.
        set: String,
        /// The object.
        object: String,
    },
    /// An object's size or sha256 differs from the signed one.
    #[error(
        "{object} differs from the signed manifest of {set}: its {what} is {found}, signed {expected}; it was replaced or corrupted"
    )]
    Changed {
        /// The set.
        set: String,
        /// The object.
        object: String,
        /// `size` or `sha256`.
        what: &'static str,
        /// The signed value.
        expected: String,
        /// The stored value.
        found: String,
    },
    /// A manifest's link to the previous set's manifest does not match that manifest.
    #[error(
        "the manifest of {set} links {previous} with a sha256 its manifest does not have: that manifest was replaced"
    )]
    PreviousReplaced {
        /// The set.
        set: String,
        /// The previous set.
        previous: String,
    },
}

impl SigningKeys {
    /// Reads `path`: a private key (this process signs and checks) or a public key (it checks).
    ///
    /// # Errors
    /// The file is unreadable or not an Ed25519 PEM key.
    pub fn load(path: &Path) -> Result<SigningKeys, SigningKeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| SigningKeyError::Read {
            path: path.to_owned(),
            source,
        })?;
        if let Ok(signing) = SigningKey::from_pkcs8_pem(&text) {
            crate::crypt::warn_if_readable_by_others(path);
            return Ok(SigningKeys {
                verifying: signing.verifying_key(),
                signing: Some(signing),
            });
        }
        VerifyingKey::from_public_key_pem(&text)
            .map(|verifying| SigningKeys {
                signing: None,
                verifying,
            })
            .map_err(|_| SigningKeyError::Format {
                path: path.to_owned(),
            })
    }

    /// Whether this process can sign (it has the private key).
    #[must_use]
    pub fn can_sign(&self) -> bool {
        self.signing.is_some()
    }

    /// The stored form of `manifest`, signed; `None` without the private key.
    #[must_use]
    pub fn seal(&self, manifest: &Manifest) -> Option<Vec<u8>> {
        let key = self.signing.as_ref()?;
        let body = serde_json::to_vec(manifest).ok()?;
        let envelope = Envelope {
            manifest: manifest.clone(),
            key: B64.encode(self.verifying.as_bytes()),
            signature: B64.encode(key.sign(&body).to_bytes()),
        };
        serde_json::to_vec_pretty(&envelope).ok()
    }

    /// The manifest stored at `key` as `bytes`, if its signature verifies.
    ///
    /// # Errors
    /// Malformed JSON or a bad signature.
    pub fn open(&self, key: &str, bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let malformed = |reason: String| ManifestError::Malformed {
            key: key.to_owned(),
            reason,
        };
        let envelope: Envelope =
            serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
        let signature = B64
            .decode(&envelope.signature)
            .ok()
            .and_then(|b| Signature::from_slice(&b).ok())
            .ok_or_else(|| malformed("the signature is not 64 bytes of base64".into()))?;
        let body = serde_json::to_vec(&envelope.manifest).map_err(|e| malformed(e.to_string()))?;
        self.verifying
            .verify_strict(&body, &signature)
            .map_err(|_| ManifestError::BadSignature {
                key: key.to_owned(),
            })?;
        Ok(envelope.manifest)
    }
}

impl Manifest {
    /// A new set's manifest, holding its full snapshot.
    #[must_use]
    pub fn new(full: &Snapshot, entry: Entry, previous: Option<Link>) -> Manifest {
        Manifest {
            version: VERSION,
            set: full.plain_name(),
            previous,
            objects: vec![entry],
        }
    }

    /// Adds a delta, keeping the deltas in revision order.
    pub fn add(&mut self, entry: Entry) {
        self.objects.retain(|e| e.name != entry.name);
        self.objects.push(entry);
        if let [_, deltas @ ..] = &mut self.objects[..] {
            deltas.sort_by_key(|e| {
                Snapshot::parse(&format!("{}/{}", crate::LAYOUT_V2, e.name))
                    .map(|s| (s.last_revision, s.created_on))
                    .ok()
            });
        }
    }

    /// The entry for an object name, if listed.
    #[must_use]
    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.objects.iter().find(|e| e.name == name)
    }
}

/// The key of the manifest of the set whose full snapshot is `full`, below `list_prefix`.
#[must_use]
pub fn key_of(list_prefix: &str, full: &Snapshot) -> String {
    join_key(&[
        list_prefix,
        MANIFEST_DIR,
        &format!("{}.json", full.plain_name()),
    ])
}

/// Hex sha256 of `bytes`.
#[must_use]
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use etcdbr_types::Revision;

    fn keys(dir: &Path) -> (SigningKeys, SigningKeys) {
        let private = dir.join("signing.pem");
        let public = dir.join("signing.pub.pem");
        let ok = std::process::Command::new("openssl")
            .args(["genpkey", "-algorithm", "ed25519", "-out"])
            .arg(&private)
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let out = std::process::Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&private)
            .output()
            .unwrap();
        std::fs::write(&public, out.stdout).unwrap();
        (
            SigningKeys::load(&private).unwrap(),
            SigningKeys::load(&public).unwrap(),
        )
    }

    fn full() -> Snapshot {
        Snapshot::new(
            crate::Kind::Full,
            Revision(0),
            Revision(10),
            chrono::Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
            ".gz",
            false,
            "p/v2",
        )
        .with_encryption(true)
    }

    /// Keys made by openssl sign and check; a changed manifest or another key fails.
    #[test]
    fn signs_with_openssl_keys_and_detects_changes() {
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = keys(dir.path());
        assert!(private.can_sign() && !public.can_sign());
        let entry = Entry {
            name: full().snap_name,
            size: 5,
            sha256: sha256_hex(b"hello"),
        };
        let mut m = Manifest::new(&full(), entry, None);
        m.add(Entry {
            name: "Incr-00000021-00000030-1700000100.gz.age".into(),
            size: 1,
            sha256: String::new(),
        });
        m.add(Entry {
            name: "Incr-00000011-00000020-1700000050.gz.age".into(),
            size: 1,
            sha256: String::new(),
        });
        assert_eq!(
            m.objects[1].name,
            "Incr-00000011-00000020-1700000050.gz.age"
        );
        assert!(public.seal(&m).is_none());
        let bytes = private.seal(&m).unwrap();
        assert_eq!(public.open("k", &bytes).unwrap(), m);
        assert_eq!(m.set, "Full-00000000-00000010-1700000000.gz");
        assert_eq!(
            key_of("p", &full()),
            "p/manifests/Full-00000000-00000010-1700000000.gz.json"
        );

        let tampered = String::from_utf8(bytes.clone())
            .unwrap()
            .replace("\"size\": 5", "\"size\": 6");
        assert!(matches!(
            public.open("k", tampered.as_bytes()),
            Err(ManifestError::BadSignature { .. })
        ));
        let other = tempfile::tempdir().unwrap();
        let (_, stranger) = keys(other.path());
        assert!(matches!(
            stranger.open("k", &bytes),
            Err(ManifestError::BadSignature { .. })
        ));
        assert!(matches!(
            public.open("k", b"{}"),
            Err(ManifestError::Malformed { .. })
        ));
        std::fs::write(dir.path().join("bad"), "nope").unwrap();
        let e = SigningKeys::load(&dir.path().join("bad")).unwrap_err();
        assert!(e.to_string().contains("openssl genpkey"), "{e}");
        assert!(!format!("{private:?}").contains("PRIVATE"));
    }
}

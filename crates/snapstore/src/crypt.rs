//! Client-side encryption of snapshot objects with age (X25519 recipients, the streaming
//! format: authenticated chunks of 64 KiB, so memory stays bounded and a truncated object is
//! an error, never a short read).
//!
//! A [`Keyring`] holds the recipients objects are written for (`--encryption-recipients-file`)
//! and the identities objects are read with (`--encryption-identity-file`). It travels with
//! the [`SnapStore`](crate::SnapStore), so every reader and writer of a store seals and opens
//! its objects the same way; the name says which objects are encrypted
//! ([`ENCRYPTED_SUFFIX`](crate::name::ENCRYPTED_SUFFIX)), the content is never sniffed.
//!
//! Besides one X25519 stanza a recipient, the header carries an `etcdbr-recipients` stanza
//! listing the recipients' public keys, so that a reader without a matching identity is told
//! which keys the object was written for. The age CLI ignores stanzas it does not know, as the
//! age specification says it must.

use std::collections::HashSet;
use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use age::x25519;

/// The tag of the stanza that names an object's recipients.
const RECIPIENTS_TAG: &str = "etcdbr-recipients";
/// Bytes of an object's start kept to name its recipients when no identity matches.
const HEADER_PEEK: usize = 16 * 1024;

/// Where a store's keys are: the paths `--encryption-recipients-file` and
/// `--encryption-identity-file` name (paths only; the keys are read by [`Keyring::load`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyFiles {
    /// age recipients (public keys) new objects are encrypted for.
    pub recipients: Option<PathBuf>,
    /// age identities (secret keys) encrypted objects are read with.
    pub identities: Option<PathBuf>,
    /// The Ed25519 key manifests are signed with (private) or checked with (public).
    pub signing: Option<PathBuf>,
}

/// Recipients to encrypt for and identities to decrypt with; either may be empty.
#[derive(Clone, Default)]
pub struct Keyring {
    recipients: Vec<x25519::Recipient>,
    recipients_file: Option<PathBuf>,
    identities: Vec<x25519::Identity>,
    identities_file: Option<PathBuf>,
}

/// A key file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file cannot be read.
    #[error("cannot read the key file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A line of a recipients file is not an age X25519 public key.
    #[error(
        "{}:{line}: {value:?} is not an age X25519 recipient ({reason}); a recipients file has one public key (age1…) a line, as age-keygen prints it",
        path.display()
    )]
    BadRecipient {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The offending line (a public key is not a secret).
        value: String,
        /// The parser's words.
        reason: String,
    },
    /// A line of an identities file is not an age X25519 secret key (the line is not shown).
    #[error(
        "{}:{line}: not an age X25519 identity ({reason}); an identity file has secret keys (AGE-SECRET-KEY-1…) as age-keygen writes them, comments starting with #",
        path.display()
    )]
    BadIdentity {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The parser's words (never the key).
        reason: String,
    },
    /// The file holds no key at all.
    #[error("the key file {} holds no key", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// Why an encrypted object cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptError {
    /// The run has no identities at all.
    #[error(
        "{name} is encrypted ({written_for}); pass --encryption-identity-file with the identity of one of its recipients"
    )]
    NoIdentities {
        /// The object.
        name: String,
        /// Who it was written for, as its header says.
        written_for: WrittenFor,
    },
    /// None of the identities matches a recipient of the object.
    #[error(
        "none of the {count} identities in {} can decrypt {name} ({written_for}); the identities there are for {ours}: add the identity of one of the object's recipients (an old key after a rotation, or the offline recovery key)",
        file.display()
    )]
    NoMatchingIdentity {
        /// The object.
        name: String,
        /// Who it was written for.
        written_for: WrittenFor,
        /// How many identities were tried.
        count: usize,
        /// Where they came from.
        file: PathBuf,
        /// Their public keys.
        ours: String,
    },
    /// The object does not start with a valid age header, or the header's MAC fails.
    #[error(
        "{name} is named as an age-encrypted object but its header is invalid ({reason}): the object is corrupt or was replaced"
    )]
    BadHeader {
        /// The object.
        name: String,
        /// What age said.
        reason: String,
    },
    /// The store could not be read.
    #[error("reading {name} failed")]
    Io {
        /// The object.
        name: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

impl CryptError {
    /// The object that could not be read.
    #[must_use]
    pub fn object(&self) -> Option<&str> {
        match self {
            CryptError::NoIdentities { name, .. }
            | CryptError::NoMatchingIdentity { name, .. }
            | CryptError::BadHeader { name, .. }
            | CryptError::Io { name, .. } => Some(name),
        }
    }
}

/// The recipients an object's header names, for error messages.
#[derive(Debug, Clone, Default)]
pub struct WrittenFor(Vec<String>);

impl fmt::Display for WrittenFor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("its header does not name its recipients: it was not written by etcdbr")
        } else {
            write!(f, "written for {}", self.0.join(", "))
        }
    }
}

impl Keyring {
    /// The keyring `files` name (empty when they name none).
    ///
    /// # Errors
    /// As [`Keyring::from_files`].
    pub fn load(files: &KeyFiles) -> Result<Keyring, KeyFileError> {
        Keyring::from_files(files.recipients.as_deref(), files.identities.as_deref())
    }

    /// A keyring from the files of `--encryption-recipients-file` and
    /// `--encryption-identity-file`; warns when an identity file is readable by group or others.
    ///
    /// # Errors
    /// A file is unreadable, empty, or has a line that is not a key.
    pub fn from_files(
        recipients: Option<&Path>,
        identities: Option<&Path>,
    ) -> Result<Keyring, KeyFileError> {
        let mut ring = Keyring::default();
        if let Some(path) = recipients {
            ring.recipients = parse_lines(path, |line, s| {
                x25519::Recipient::from_str(s).map_err(|reason| KeyFileError::BadRecipient {
                    path: path.to_owned(),
                    line,
                    value: s.to_owned(),
                    reason: reason.to_owned(),
                })
            })?;
            ring.recipients_file = Some(path.to_owned());
        }
        if let Some(path) = identities {
            warn_if_readable_by_others(path);
            ring.identities = parse_lines(path, |line, s| {
                x25519::Identity::from_str(s).map_err(|reason| KeyFileError::BadIdentity {
                    path: path.to_owned(),
                    line,
                    reason: reason.to_owned(),
                })
            })?;
            ring.identities_file = Some(path.to_owned());
        }
        Ok(ring)
    }

    /// Whether objects written with this keyring are encrypted.
    #[must_use]
    pub fn encrypts(&self) -> bool {
        !self.recipients.is_empty()
    }

    /// Whether this keyring can try to decrypt objects.
    #[must_use]
    pub fn decrypts(&self) -> bool {
        !self.identities.is_empty()
    }

    /// The recipients' public keys (`age1…`).
    #[must_use]
    pub fn recipients(&self) -> Vec<String> {
        self.recipients.iter().map(ToString::to_string).collect()
    }

    /// The public keys of the identities (`age1…`), never the identities themselves.
    #[must_use]
    pub fn identity_public_keys(&self) -> Vec<String> {
        self.identities
            .iter()
            .map(|i| i.to_public().to_string())
            .collect()
    }

    /// A writer that encrypts for the recipients into `output`; call
    /// [`Sealed::finish`] at the end, or the object is truncated (and fails to decrypt).
    ///
    /// # Errors
    /// The keyring has no recipients, or writing the header fails.
    pub fn seal<W: Write>(&self, output: W) -> io::Result<Sealed<W>> {
        if self.recipients.is_empty() {
            return Err(io::Error::other(
                "no encryption recipients (--encryption-recipients-file)",
            ));
        }
        let label = Named(self.recipients());
        let all = self
            .recipients
            .iter()
            .map(|r| r as &dyn age::Recipient)
            .chain(std::iter::once(&label as &dyn age::Recipient));
        let encryptor = age::Encryptor::with_recipients(all).map_err(io::Error::other)?;
        Ok(Sealed(encryptor.wrap_output(output)?))
    }

    /// A reader of the plaintext of the encrypted object `name` read from `input`. A corrupt or
    /// truncated body surfaces as an [`io::ErrorKind::InvalidData`] or
    /// [`io::ErrorKind::UnexpectedEof`] error of a later read.
    ///
    /// # Errors
    /// No identity matches, or the header is invalid.
    pub fn open<'a, R: Read + Send + 'a>(
        &self,
        name: &str,
        input: R,
    ) -> Result<Box<dyn Read + Send + 'a>, CryptError> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let peek = Peek {
            inner: input,
            seen: Arc::clone(&seen),
        };
        let header_of = || written_for(&seen.lock().map(|s| s.clone()).unwrap_or_default());
        let decryptor = age::Decryptor::new(peek).map_err(|e| header_error(name, e))?;
        if self.identities.is_empty() {
            return Err(CryptError::NoIdentities {
                name: name.to_owned(),
                written_for: header_of(),
            });
        }
        let identities = self.identities.iter().map(|i| i as &dyn age::Identity);
        match decryptor.decrypt(identities) {
            Ok(reader) => Ok(Box::new(reader)),
            Err(age::DecryptError::NoMatchingKeys) => Err(CryptError::NoMatchingIdentity {
                name: name.to_owned(),
                written_for: header_of(),
                count: self.identities.len(),
                file: self.identities_file.clone().unwrap_or_default(),
                ours: self.identity_public_keys().join(", "),
            }),
            Err(e) => Err(header_error(name, e)),
        }
    }
}

fn header_error(name: &str, e: age::DecryptError) -> CryptError {
    match e {
        age::DecryptError::Io(source) => CryptError::Io {
            name: name.to_owned(),
            source,
        },
        other => CryptError::BadHeader {
            name: name.to_owned(),
            reason: other.to_string(),
        },
    }
}
impl fmt::Debug for Keyring {
    /// Public keys only: identities are counted, never shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("recipients", &self.recipients())
            .field("identities", &self.identities.len())
            .finish()
    }
}

/// An object being encrypted; [`Sealed::finish`] writes its last chunk.
pub struct Sealed<W: Write>(age::stream::StreamWriter<W>);

impl<W: Write> Sealed<W> {
    /// Writes the last chunk and returns the output.
    ///
    /// # Errors
    /// Writing fails.
    pub fn finish(self) -> io::Result<W> {
        self.0.finish()
    }
}

impl<W: Write> Write for Sealed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// The pseudo-recipient whose stanza names the real ones.
struct Named(Vec<String>);

impl age::Recipient for Named {
    fn wrap_file_key(
        &self,
        _: &age_core::format::FileKey,
    ) -> Result<(Vec<age_core::format::Stanza>, HashSet<String>), age::EncryptError> {
        let stanza = age_core::format::Stanza {
            tag: RECIPIENTS_TAG.to_owned(),
            args: self.0.clone(),
            body: Vec::new(),
        };
        Ok((vec![stanza], HashSet::new()))
    }
}

/// The recipients an age header names in its `etcdbr-recipients` stanza.
fn written_for(header: &[u8]) -> WrittenFor {
    let text = String::from_utf8_lossy(header);
    let prefix = format!("-> {RECIPIENTS_TAG} ");
    WrittenFor(
        text.lines()
            .take_while(|l| !l.starts_with("---"))
            .find_map(|l| l.strip_prefix(&prefix))
            .map(|args| args.split(' ').map(str::to_owned).collect())
            .unwrap_or_default(),
    )
}

/// Records the first bytes read through it (the header), for [`written_for`].
struct Peek<R> {
    inner: R,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl<R: Read> Read for Peek<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Ok(mut seen) = self.seen.lock()
            && seen.len() < HEADER_PEEK
        {
            let keep = n.min(HEADER_PEEK - seen.len());
            seen.extend_from_slice(&buf[..keep]);
        }
        Ok(n)
    }
}

/// Parses the non-empty, non-comment lines of a key file.
fn parse_lines<T>(
    path: &Path,
    parse: impl Fn(usize, &str) -> Result<T, KeyFileError>,
) -> Result<Vec<T>, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let keys = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(i, l)| parse(i, l))
        .collect::<Result<Vec<T>, KeyFileError>>()?;
    if keys.is_empty() {
        return Err(KeyFileError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(keys)
}

/// Warns when a secret key file can be read by its group or by others.
pub fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    "the secret key file {} has mode {:o}: group and others can read it; run chmod 600 on it",
                    path.display(),
                    mode & 0o777
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    fn files(dir: &Path, n: usize) -> (PathBuf, PathBuf, Vec<x25519::Identity>) {
        let ids: Vec<_> = (0..n).map(|_| x25519::Identity::generate()).collect();
        let r = dir.join("recipients.txt");
        let i = dir.join("identity.txt");
        let pubs: Vec<String> = ids.iter().map(|i| i.to_public().to_string()).collect();
        std::fs::write(&r, format!("# ours\n{}\n", pubs.join("\n"))).unwrap();
        let secs: Vec<String> = ids
            .iter()
            .map(|i| i.to_string().expose_secret().to_owned())
            .collect();
        std::fs::write(&i, format!("# created: now\n{}\n\n", secs.join("\n"))).unwrap();
        (r, i, ids)
    }

    fn seal(ring: &Keyring, data: &[u8]) -> Vec<u8> {
        let mut w = ring.seal(Vec::new()).unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn round_trips_with_any_identity() {
        let dir = tempfile::tempdir().unwrap();
        let (r, i, _) = files(dir.path(), 2);
        let ring = Keyring::from_files(Some(&r), Some(&i)).unwrap();
        let data: Vec<u8> = (0..300_000u32).flat_map(u32::to_le_bytes).collect();
        let sealed = seal(&ring, &data);
        let mut back = Vec::new();
        ring.open("x", &sealed[..])
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        // Either identity alone opens it.
        let secs = std::fs::read_to_string(&i).unwrap();
        let second: Vec<&str> = secs.lines().filter(|l| l.starts_with("AGE-")).collect();
        std::fs::write(&i, second[1]).unwrap();
        let one = Keyring::from_files(None, Some(&i)).unwrap();
        let mut back = Vec::new();
        one.open("x", &sealed[..])
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn a_missing_key_names_the_recipients() {
        let dir = tempfile::tempdir().unwrap();
        let (r, _, ids) = files(dir.path(), 1);
        let writer = Keyring::from_files(Some(&r), None).unwrap();
        let sealed = seal(&writer, b"secret");
        let e = writer.open("Full-1", &sealed[..]).err().unwrap();
        let msg = e.to_string();
        assert!(matches!(e, CryptError::NoIdentities { .. }), "{msg}");
        assert!(msg.contains(&ids[0].to_public().to_string()), "{msg}");

        let other = tempfile::tempdir().unwrap();
        let (_, i2, _) = files(other.path(), 1);
        let stranger = Keyring::from_files(None, Some(&i2)).unwrap();
        let e = stranger.open("Full-1", &sealed[..]).err().unwrap();
        let msg = e.to_string();
        assert!(matches!(e, CryptError::NoMatchingIdentity { .. }), "{msg}");
        assert!(msg.contains(&ids[0].to_public().to_string()), "{msg}");
        assert!(!msg.contains("AGE-SECRET-KEY"), "{msg}");
        assert!(!format!("{stranger:?}").contains("AGE-SECRET-KEY"));
    }

    #[test]
    fn corruption_and_truncation_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (r, i, _) = files(dir.path(), 1);
        let ring = Keyring::from_files(Some(&r), Some(&i)).unwrap();
        let data = vec![7u8; 200_000];
        let sealed = seal(&ring, &data);
        for cut in [sealed.len() - 1, sealed.len() - 65_000, 400] {
            let r = ring.open("x", &sealed[..cut]);
            let failed = match r {
                Err(_) => true,
                Ok(mut r) => r.read_to_end(&mut Vec::new()).is_err(),
            };
            assert!(failed, "cut at {cut}");
        }
        let mut flipped = sealed.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 1;
        let mut r = ring.open("x", &flipped[..]).unwrap();
        let e = r.read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let e = ring
            .open("x", &b"not an age file at all"[..])
            .err()
            .unwrap();
        assert!(matches!(e, CryptError::BadHeader { .. }), "{e}");
    }

    #[test]
    fn bad_key_files_say_which_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r");
        std::fs::write(&p, "# c\nage1bogus\n").unwrap();
        let e = Keyring::from_files(Some(&p), None).unwrap_err().to_string();
        assert!(e.contains(":2:") && e.contains("age1bogus"), "{e}");
        std::fs::write(&p, "AGE-SECRET-KEY-1NOTREALLYAKEY\n").unwrap();
        let e = Keyring::from_files(None, Some(&p)).unwrap_err().to_string();
        assert!(e.contains(":1:") && !e.contains("NOTREALLY"), "{e}");
        std::fs::write(&p, "# nothing\n").unwrap();
        let e = Keyring::from_files(None, Some(&p)).unwrap_err().to_string();
        assert!(e.contains("holds no key"), "{e}");
    }
}

//! Snapshot object names: `Full-…`/`Incr-…` in the v2 layout, the legacy v1 layout, and chunks.
//!
//! ```text
//! <prefix>/v2/<Kind>-<%08d start>-<%08d last>-<unix seconds>[.gz|.zlib|.Z|.zst][.age][.final]
//! <prefix>/v2/<name>/<%010d part>                 chunk objects left by GCS and Swift uploads
//! <prefix>/v1/Backup-<unix>/<name>[/<part>]       the legacy layout, read only
//! ```
//!
//! The parser follows the original etcd-backup-restore's `ParseSnapshot` rule for rule, so that
//! both tools see the same set of snapshots in a bucket; its quirks are kept and noted inline.

use chrono::{DateTime, TimeZone, Utc};
use etcdbr_types::Revision;

/// Suffix of a final snapshot (taken before an etcd is shut down or migrated).
pub const FINAL_SUFFIX: &str = ".final";
/// Suffix of an object encrypted with age, after the compression suffix (an etcdbr extension:
/// the original parses `.gz.age` as a gzip snapshot and cannot read it).
pub const ENCRYPTED_SUFFIX: &str = ".age";
/// Directory name of the current layout.
pub const LAYOUT_V2: &str = "v2";
/// Directory name of the legacy layout.
pub const LAYOUT_V1: &str = "v1";

/// Full or delta ("Incr") snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A full copy of the etcd database (the snapshot stream plus its sha256).
    Full,
    /// Watch events since the previous snapshot, as JSON with a sha256 trailer.
    Incr,
}

impl Kind {
    /// The name token: `Full` or `Incr`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Full => "Full",
            Kind::Incr => "Incr",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One snapshot object in a store: what its name says, and where it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Full or Incr.
    pub kind: Kind,
    /// First revision covered (always 0 for full snapshots).
    pub start_revision: Revision,
    /// Last revision covered.
    pub last_revision: Revision,
    /// Creation time, whole seconds.
    pub created_on: DateTime<Utc>,
    /// Compression suffix including its dot (`.gz`, `.zlib`, `.Z`), or empty.
    pub compression_suffix: String,
    /// Whether the name carries [`ENCRYPTED_SUFFIX`]: the stored bytes are an age file whose
    /// plaintext is the compressed snapshot.
    pub encrypted: bool,
    /// Whether the name ends in `.final`.
    pub is_final: bool,
    /// Whether this is a chunk object (`<name>/<part>`) rather than a snapshot.
    pub is_chunk: bool,
    /// The directory below the layout dir: `Backup-<ts>` in v1, empty in v2.
    pub snap_dir: String,
    /// The object name below `prefix`/`snap_dir` (for chunks: `<name>/<part>`).
    pub snap_name: String,
    /// Everything up to and including the layout directory, e.g. `etcd/v2`.
    pub prefix: String,
    /// When the object may be deleted, where the provider reports object immutability.
    pub immutability_expiry: Option<DateTime<Utc>>,
    /// The object version read and deleted (S3 versioned buckets: `VersionId`).
    pub version_id: Option<String>,
    /// Why the operator excluded it from restores (the `x-etcd-snapshot-exclude=true` tag or
    /// metadata, and where it was found); `None` when it is not excluded.
    pub excluded: Option<String>,
}

/// Why a key is not a snapshot name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// Neither `v1/` nor `v2/` occurs in the key.
    #[error("{0:?} does not contain a v1/ or v2/ layout directory")]
    NoLayout(String),
    /// Too many or too few path segments after the layout directory.
    #[error("invalid snapshot path {0:?}")]
    BadPath(String),
    /// The name does not have exactly four `-`-separated tokens.
    #[error("invalid snapshot name {0:?}: expected <Kind>-<start>-<last>-<time>")]
    BadTokens(String),
    /// The kind is neither `Full` nor `Incr`.
    #[error("unknown snapshot kind {0:?}")]
    UnknownKind(String),
    /// The start revision is not an integer.
    #[error("invalid start revision {0:?}")]
    BadStartRevision(String),
    /// The last revision is not an integer.
    #[error("invalid last revision {0:?}")]
    BadLastRevision(String),
    /// The start revision is above the last one.
    #[error("last revision ({last}) should be at least start revision ({start})")]
    StartAfterLast {
        /// Parsed start.
        start: i64,
        /// Parsed last.
        last: i64,
    },
    /// The creation time is not an integer.
    #[error("invalid creation time {0:?}")]
    BadTime(String),
}

impl Snapshot {
    /// A new snapshot taken now-ish (`created_on`), named in the v2 layout under `prefix`.
    #[must_use]
    pub fn new(
        kind: Kind,
        start_revision: Revision,
        last_revision: Revision,
        created_on: DateTime<Utc>,
        compression_suffix: &str,
        is_final: bool,
        prefix: &str,
    ) -> Snapshot {
        let created_on = Utc
            .timestamp_opt(created_on.timestamp(), 0)
            .single()
            .unwrap_or(created_on);
        let mut s = Snapshot {
            kind,
            start_revision,
            last_revision,
            created_on,
            compression_suffix: compression_suffix.to_owned(),
            encrypted: false,
            is_final,
            is_chunk: false,
            snap_dir: String::new(),
            snap_name: String::new(),
            prefix: prefix.to_owned(),
            immutability_expiry: None,
            version_id: None,
            excluded: None,
        };
        s.snap_name = s.generate_name();
        s
    }

    /// The name this snapshot's fields produce:
    /// `<Kind>-<%08d start>-<%08d last>-<unix><suffix>[.age][.final]`.
    #[must_use]
    pub fn generate_name(&self) -> String {
        format!(
            "{}-{}-{}-{}{}{}{}",
            self.kind,
            self.start_revision,
            self.last_revision,
            self.created_on.timestamp(),
            self.compression_suffix,
            if self.encrypted { ENCRYPTED_SUFFIX } else { "" },
            if self.is_final { FINAL_SUFFIX } else { "" }
        )
    }

    /// The same snapshot, encrypted or not, renamed to match (writers call it with whether
    /// their store encrypts).
    #[must_use]
    pub fn with_encryption(mut self, encrypted: bool) -> Snapshot {
        if self.encrypted != encrypted && !self.is_chunk {
            self.encrypted = encrypted;
            self.snap_name = self.generate_name();
        }
        self
    }

    /// The name without `.age` and `.final`: what stays the same when a snapshot is copied,
    /// re-encrypted or unmarked final (copy's de-duplication compares these).
    #[must_use]
    pub fn plain_name(&self) -> String {
        let mut name = self.snap_name.clone();
        if let Some(n) = name.strip_suffix(FINAL_SUFFIX) {
            name = n.to_owned();
        }
        if let Some(n) = name.strip_suffix(ENCRYPTED_SUFFIX) {
            name = n.to_owned();
        }
        name
    }

    /// Marks or unmarks the snapshot as final, adjusting its name (`copy` strips `.final`).
    pub fn set_final(&mut self, is_final: bool) {
        self.is_final = is_final;
        if is_final {
            if !self.snap_name.ends_with(FINAL_SUFFIX) {
                self.snap_name.push_str(FINAL_SUFFIX);
            }
        } else if let Some(stripped) = self.snap_name.strip_suffix(FINAL_SUFFIX) {
            self.snap_name = stripped.to_owned();
        }
    }

    /// The object key: `prefix/snap_dir/snap_name`, empty parts skipped.
    #[must_use]
    pub fn key(&self) -> String {
        join_key(&[&self.prefix, &self.snap_dir, &self.snap_name])
    }

    /// Whether the provider allows deleting the object at `now`.
    #[must_use]
    pub fn is_deletable(&self, now: DateTime<Utc>) -> bool {
        self.immutability_expiry.is_none_or(|t| now > t)
    }

    /// Parses an object key the way the original `ParseSnapshot` does.
    ///
    /// # Errors
    /// A [`NameError`] saying which rule the key breaks.
    pub fn parse(key: &str) -> Result<Snapshot, NameError> {
        // The original looks for the last "v1/" first and only then for "v2/", so a key with
        // "v1/" anywhere is treated as v1 even if a later "v2/" exists.
        let (layout, idx) = match key.rfind("v1/") {
            Some(i) => (LAYOUT_V1, i),
            None => match key.rfind("v2/") {
                Some(i) => (LAYOUT_V2, i),
                None => return Err(NameError::NoLayout(key.to_owned())),
            },
        };
        let prefix = &key[..idx + 3];
        let rest = &key[idx + 3..];
        let tok: Vec<&str> = rest.split('/').collect();
        if tok.len() > 3 {
            return Err(NameError::BadPath(rest.to_owned()));
        }
        let (snap_dir, snap_name, is_chunk) = if layout == LAYOUT_V1 {
            (tok[0].to_owned(), tok[1..].join("/"), tok.len() == 3)
        } else {
            (String::new(), tok.join("/"), tok.len() == 2)
        };

        let tokens: Vec<&str> = snap_name.split('-').collect();
        if tokens.len() != 4 {
            return Err(NameError::BadTokens(snap_name));
        }
        let kind = match tokens[0] {
            "Full" => Kind::Full,
            "Incr" => Kind::Incr,
            other => return Err(NameError::UnknownKind(other.to_owned())),
        };
        let start = parse_go_int(tokens[1])
            .ok_or_else(|| NameError::BadStartRevision(tokens[1].to_owned()))?;
        let last = parse_go_int(tokens[2])
            .ok_or_else(|| NameError::BadLastRevision(tokens[2].to_owned()))?;
        if start > last {
            return Err(NameError::StartAfterLast { start, last });
        }
        // For chunks the fourth token is "<time>[.suffix]/<part>"; only its first segment counts.
        let time_and_suffix: Vec<&str> = tokens[3]
            .split('/')
            .next()
            .unwrap_or_default()
            .split('.')
            .collect();
        let mut compression_suffix = String::new();
        let mut is_final = false;
        // etcdbr's `.age` follows the compression suffix, or stands in its place for an
        // uncompressed object; the original reads no further than the second token.
        let is_age = |i: usize| {
            time_and_suffix
                .get(i)
                .is_some_and(|t| format!(".{t}") == ENCRYPTED_SUFFIX)
        };
        let encrypted = is_age(1) || is_age(2);
        if time_and_suffix.len() >= 2 {
            if format!(".{}", time_and_suffix[1]) != FINAL_SUFFIX && !is_age(1) {
                compression_suffix = format!(".{}", time_and_suffix[1]);
            }
            if time_and_suffix
                .last()
                .is_some_and(|s| format!(".{s}") == FINAL_SUFFIX)
            {
                is_final = true;
            }
        }
        let unix = parse_go_int(time_and_suffix[0])
            .ok_or_else(|| NameError::BadTime(tokens[3].to_owned()))?;
        let created_on = Utc
            .timestamp_opt(unix, 0)
            .single()
            .ok_or_else(|| NameError::BadTime(tokens[3].to_owned()))?;
        Ok(Snapshot {
            kind,
            start_revision: Revision(start),
            last_revision: Revision(last),
            created_on,
            compression_suffix,
            encrypted,
            is_final,
            is_chunk,
            snap_dir,
            snap_name,
            prefix: prefix.trim_end_matches('/').to_owned(),
            immutability_expiry: None,
            version_id: None,
            excluded: None,
        })
    }
}

/// Go's `strconv.ParseInt(s, 10, 64)`: optional sign, decimal digits, no spaces.
fn parse_go_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Joins key segments with `/`, skipping empty ones and doubled slashes (Go's `path.Join`
/// for the relative keys used here).
#[must_use]
pub fn join_key(parts: &[&str]) -> String {
    let mut out = String::new();
    for seg in parts
        .iter()
        .flat_map(|p| p.split('/'))
        .filter(|s| !s.is_empty() && *s != ".")
    {
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str(seg);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(unix: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(unix, 0).unwrap()
    }

    #[test]
    fn formats_like_the_original() {
        let s = Snapshot::new(
            Kind::Full,
            Revision(0),
            Revision(9002),
            ts(1_565_021_494),
            ".gz",
            false,
            "v2",
        );
        assert_eq!(s.snap_name, "Full-00000000-00009002-1565021494.gz");
        assert_eq!(s.key(), "v2/Full-00000000-00009002-1565021494.gz");
        let d = Snapshot::new(
            Kind::Incr,
            Revision(9003),
            Revision(123_456_789),
            ts(1),
            "",
            true,
            "etcd/v2",
        );
        assert_eq!(d.key(), "etcd/v2/Incr-00009003-123456789-1.final");
    }

    #[test]
    fn set_final_adds_and_strips_the_suffix() {
        let mut s = Snapshot::new(
            Kind::Full,
            Revision(0),
            Revision(5),
            ts(10),
            ".gz",
            false,
            "v2",
        );
        s.set_final(true);
        assert_eq!(s.snap_name, "Full-00000000-00000005-10.gz.final");
        s.set_final(true);
        assert_eq!(s.snap_name, "Full-00000000-00000005-10.gz.final");
        s.set_final(false);
        assert_eq!(s.snap_name, "Full-00000000-00000005-10.gz");
    }

    struct Case {
        key: &'static str,
        kind: Kind,
        start: i64,
        last: i64,
        unix: i64,
        suffix: &'static str,
        is_final: bool,
        is_chunk: bool,
        dir: &'static str,
        name: &'static str,
        prefix: &'static str,
    }

    #[test]
    fn parses_accepted_names() {
        let cases = [
            Case {
                key: "v2/Full-00000000-00009002-1565021494.gz",
                kind: Kind::Full,
                start: 0,
                last: 9002,
                unix: 1_565_021_494,
                suffix: ".gz",
                is_final: false,
                is_chunk: false,
                dir: "",
                name: "Full-00000000-00009002-1565021494.gz",
                prefix: "v2",
            },
            Case {
                key: "shoot/etcd/v2/Incr-00009003-00009010-1565021500.zlib",
                kind: Kind::Incr,
                start: 9003,
                last: 9010,
                unix: 1_565_021_500,
                suffix: ".zlib",
                is_final: false,
                is_chunk: false,
                dir: "",
                name: "Incr-00009003-00009010-1565021500.zlib",
                prefix: "shoot/etcd/v2",
            },
            Case {
                key: "v2/Full-00000000-00001234-1700000000.gz.final",
                kind: Kind::Full,
                start: 0,
                last: 1234,
                unix: 1_700_000_000,
                suffix: ".gz",
                is_final: true,
                is_chunk: false,
                dir: "",
                name: "Full-00000000-00001234-1700000000.gz.final",
                prefix: "v2",
            },
            Case {
                key: "v2/Full-00000000-00001234-1700000000.final",
                kind: Kind::Full,
                start: 0,
                last: 1234,
                unix: 1_700_000_000,
                suffix: "",
                is_final: true,
                is_chunk: false,
                dir: "",
                name: "Full-00000000-00001234-1700000000.final",
                prefix: "v2",
            },
            Case {
                key: "v2/Full-00000000-00000010-1700000000.Z",
                kind: Kind::Full,
                start: 0,
                last: 10,
                unix: 1_700_000_000,
                suffix: ".Z",
                is_final: false,
                is_chunk: false,
                dir: "",
                name: "Full-00000000-00000010-1700000000.Z",
                prefix: "v2",
            },
            Case {
                key: "v2/Incr-123456789-123456999-1700000000",
                kind: Kind::Incr,
                start: 123_456_789,
                last: 123_456_999,
                unix: 1_700_000_000,
                suffix: "",
                is_final: false,
                is_chunk: false,
                dir: "",
                name: "Incr-123456789-123456999-1700000000",
                prefix: "v2",
            },
            Case {
                key: "v2/Full-00000000-00009002-1565021494.gz/0000000003",
                kind: Kind::Full,
                start: 0,
                last: 9002,
                unix: 1_565_021_494,
                suffix: ".gz",
                is_final: false,
                is_chunk: true,
                dir: "",
                name: "Full-00000000-00009002-1565021494.gz/0000000003",
                prefix: "v2",
            },
            Case {
                key: "p/v1/Backup-1565021494/Full-00000000-00009002-1565021494",
                kind: Kind::Full,
                start: 0,
                last: 9002,
                unix: 1_565_021_494,
                suffix: "",
                is_final: false,
                is_chunk: false,
                dir: "Backup-1565021494",
                name: "Full-00000000-00009002-1565021494",
                prefix: "p/v1",
            },
            Case {
                key: "v1/Backup-1565021494/Incr-00009003-00009004-1565021495/0000000001",
                kind: Kind::Incr,
                start: 9003,
                last: 9004,
                unix: 1_565_021_495,
                suffix: "",
                is_final: false,
                is_chunk: true,
                dir: "Backup-1565021494",
                name: "Incr-00009003-00009004-1565021495/0000000001",
                prefix: "v1",
            },
        ];
        for c in cases {
            let s = Snapshot::parse(c.key).unwrap_or_else(|e| panic!("{}: {e}", c.key));
            assert_eq!(s.kind, c.kind, "{}", c.key);
            assert_eq!(s.start_revision, Revision(c.start), "{}", c.key);
            assert_eq!(s.last_revision, Revision(c.last), "{}", c.key);
            assert_eq!(s.created_on, ts(c.unix), "{}", c.key);
            assert_eq!(s.compression_suffix, c.suffix, "{}", c.key);
            assert_eq!(s.is_final, c.is_final, "{}", c.key);
            assert_eq!(s.is_chunk, c.is_chunk, "{}", c.key);
            assert_eq!(s.snap_dir, c.dir, "{}", c.key);
            assert_eq!(s.snap_name, c.name, "{}", c.key);
            assert_eq!(s.prefix, c.prefix, "{}", c.key);
            assert_eq!(s.key(), c.key, "key round trip");
        }
    }

    #[test]
    fn rejects_what_the_original_rejects() {
        use NameError::*;
        let cases: &[(&str, NameError)] = &[
            (
                "Full-00000000-00000001-1",
                NoLayout("Full-00000000-00000001-1".into()),
            ),
            ("v2/a/b/c/Full-0-1-1", BadPath("a/b/c/Full-0-1-1".into())),
            (
                "v2/Full-00000000-00000001",
                BadTokens("Full-00000000-00000001".into()),
            ),
            ("v2/Full-0-1-2-3", BadTokens("Full-0-1-2-3".into())),
            ("v2/Snap-00000000-00000001-1", UnknownKind("Snap".into())),
            ("v2/full-00000000-00000001-1", UnknownKind("full".into())),
            ("v2/Full-abc-00000001-1", BadStartRevision("abc".into())),
            ("v2/Full- 1-00000001-1", BadStartRevision(" 1".into())),
            ("v2/Incr-00000001-xyz-1", BadLastRevision("xyz".into())),
            (
                "v2/Incr-00000010-00000009-1",
                StartAfterLast { start: 10, last: 9 },
            ),
            (
                "v2/Full-00000000-00000001-notatime.gz",
                BadTime("notatime.gz".into()),
            ),
            ("v2/Full-00000000-00000001-.gz", BadTime(".gz".into())),
            ("v2/", BadTokens(String::new())),
            ("v1/Backup-1", BadTokens(String::new())),
            // The original looks for "v1/" before "v2/": a "v1/" anywhere makes the key v1.
            (
                "v1/x/v2/Full-00000000-00000001-1",
                UnknownKind("v2/Full".into()),
            ),
        ];
        for (key, want) in cases {
            assert_eq!(Snapshot::parse(key).as_ref(), Err(want), "{key}");
        }
    }

    #[test]
    fn format_then_parse_round_trips() {
        for (kind, start, last, suffix, fin) in [
            (Kind::Full, 0, 1, "", false),
            (Kind::Full, 0, 99_999_999, ".gz", true),
            (Kind::Incr, 100_000_000, 100_000_001, ".zlib", false),
            (Kind::Incr, 5, 5, ".Z", true),
        ] {
            let s = Snapshot::new(
                kind,
                Revision(start),
                Revision(last),
                ts(1_700_000_123),
                suffix,
                fin,
                "a/b/v2",
            );
            let p = Snapshot::parse(&s.key()).unwrap();
            assert_eq!(p, s);
            let sealed = s.clone().with_encryption(true);
            assert_eq!(
                sealed.snap_name,
                format!(
                    "{}{}{}",
                    s.plain_name(),
                    ENCRYPTED_SUFFIX,
                    if fin { FINAL_SUFFIX } else { "" }
                )
            );
            let p = Snapshot::parse(&sealed.key()).unwrap();
            assert_eq!(p, sealed);
            assert!(p.encrypted);
            assert_eq!(p.compression_suffix, suffix);
            assert_eq!(p.with_encryption(false), s);
        }
    }

    /// The original's parser keeps the compression suffix of an encrypted name (`.gz.age`)
    /// and takes `.age` for the compression of an uncompressed one; ours reads both.
    #[test]
    fn encrypted_names() {
        let p = Snapshot::parse("v2/Full-00000000-00000010-1700000000.gz.age.final").unwrap();
        assert!(p.encrypted && p.is_final);
        assert_eq!(p.compression_suffix, ".gz");
        assert_eq!(p.plain_name(), "Full-00000000-00000010-1700000000.gz");
        let p = Snapshot::parse("v2/Incr-00000011-00000020-1700000000.age").unwrap();
        assert!(p.encrypted && !p.is_final);
        assert_eq!(p.compression_suffix, "");
        let p = Snapshot::parse("v2/Incr-00000011-00000020-1700000000.zst").unwrap();
        assert!(!p.encrypted);
    }

    #[test]
    fn join_key_behaves_like_path_join() {
        assert_eq!(join_key(&["", "v2"]), "v2");
        assert_eq!(join_key(&["a/", "/v2/", "", "x"]), "a/v2/x");
    }
}

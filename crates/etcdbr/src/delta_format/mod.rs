//! The delta snapshot format of the original, byte for byte.
//!
//! A delta object is, before compression:
//!
//! ```text
//! [{"etcdEvent":{"type":1,"kv":{...}},"time":"2024-05-01T10:00:00.123456789Z"},…]  sha256(JSON) (32 raw bytes)
//! ```
//!
//! Each element is Go's `encoding/json` rendering of `{EtcdEvent *clientv3.Event; Time time.Time}`:
//! `type` is omitted for PUT (0) and `1` for DELETE; the `kv` fields are `key`, `create_revision`,
//! `mod_revision`, `version`, `value`, `lease`, each omitted when zero or empty; bytes are
//! standard base64 with padding; the time is RFC 3339 with nanoseconds, trailing zeros trimmed.
//! [`DeltaEncoder`] writes this form; [`decode`] reads it (and any field order or time zone Go
//! could have produced).

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, SecondsFormat, Utc};
use etcdbr_types::Revision;
use serde::Deserialize;
use sha2::{Digest, Sha256};

mod split;

/// Length of the sha256 trailer.
pub const HASH_LEN: usize = 32;

/// One watch event: the key-value etcd reported and whether it deleted the key. The same type
/// the restore builder applies, so decoded deltas need no conversion.
pub use etcd_datadir::restore::Change as Event;

/// An event with the time the snapshotter received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedEvent {
    /// The event.
    pub event: Event,
    /// When it was received.
    pub time: DateTime<Utc>,
}

/// Why a delta object cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeltaFormatError {
    /// Too short to hold the 32-byte trailer.
    #[error("delta snapshot is missing hash: only {0} bytes")]
    MissingHash(usize),
    /// The trailer does not match the JSON.
    #[error(
        "delta snapshot hash mismatch: the sha256 trailer does not match its {0} bytes of JSON"
    )]
    HashMismatch(usize),
    /// The JSON does not parse as a list of events.
    #[error("delta snapshot JSON is malformed")]
    Json(#[source] serde_json::Error),
    /// The content could not be read: a truncated or corrupt object, or a failed download.
    #[error("cannot read the delta snapshot's content")]
    Read(#[source] std::io::Error),
    /// Handing a decoded event on failed (writing it to disk, say).
    #[error("cannot store a decoded delta event")]
    Io(#[source] std::io::Error),
    /// An event has an unknown type, no kv, or bad base64.
    #[error("delta snapshot event {index} is malformed: {reason}")]
    BadEvent {
        /// Position in the array.
        index: usize,
        /// What is wrong.
        reason: String,
    },
}

/// Builds the JSON array of a delta in memory, one event at a time.
#[derive(Debug, Default)]
pub struct DeltaEncoder {
    json: Vec<u8>,
    events: usize,
    first_revision: Option<Revision>,
    last_revision: Option<Revision>,
}

impl DeltaEncoder {
    /// An empty delta.
    #[must_use]
    pub fn new() -> DeltaEncoder {
        DeltaEncoder::default()
    }

    /// Appends one event received at `time`.
    pub fn push(&mut self, event: &Event, time: DateTime<Utc>) {
        self.json.push(if self.events == 0 { b'[' } else { b',' });
        write_event(&mut self.json, event, time);
        self.events += 1;
        let r = Revision(event.mod_revision);
        self.first_revision.get_or_insert(r);
        self.last_revision = Some(r);
    }

    /// Bytes of JSON buffered so far (what `--delta-snapshot-memory-limit` is compared with).
    #[must_use]
    pub fn len(&self) -> usize {
        self.json.len()
    }

    /// Whether no event was pushed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Number of events pushed.
    #[must_use]
    pub fn events(&self) -> usize {
        self.events
    }

    /// Revision of the first event.
    #[must_use]
    pub fn first_revision(&self) -> Option<Revision> {
        self.first_revision
    }

    /// Revision of the last event.
    #[must_use]
    pub fn last_revision(&self) -> Option<Revision> {
        self.last_revision
    }

    /// Closes the array and appends the raw sha256 of the JSON: the object to compress and
    /// upload. An encoder without events yields `[]` plus its hash (the snapshotter never
    /// uploads that).
    #[must_use]
    pub fn finish(mut self) -> Vec<u8> {
        if self.events == 0 {
            self.json.push(b'[');
        }
        self.json.push(b']');
        let hash = Sha256::digest(&self.json);
        self.json.extend_from_slice(&hash);
        self.json
    }
}

fn write_event(out: &mut Vec<u8>, e: &Event, time: DateTime<Utc>) {
    out.extend_from_slice(b"{\"etcdEvent\":{");
    if e.delete {
        out.extend_from_slice(b"\"type\":1,");
    }
    out.extend_from_slice(b"\"kv\":{");
    let mut first = true;
    let mut field = |out: &mut Vec<u8>, name: &str| {
        if !first {
            out.push(b',');
        }
        first = false;
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
    };
    if !e.key.is_empty() {
        field(out, "key");
        push_b64(out, &e.key);
    }
    for (name, v) in [
        ("create_revision", e.create_revision),
        ("mod_revision", e.mod_revision),
        ("version", e.version),
    ] {
        if v != 0 {
            field(out, name);
            out.extend_from_slice(v.to_string().as_bytes());
        }
    }
    if !e.value.is_empty() {
        field(out, "value");
        push_b64(out, &e.value);
    }
    if e.lease != 0 {
        field(out, "lease");
        out.extend_from_slice(e.lease.to_string().as_bytes());
    }
    out.extend_from_slice(b"}},\"time\":\"");
    out.extend_from_slice(go_time(time).as_bytes());
    out.extend_from_slice(b"\"}");
}

fn push_b64(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let start = out.len();
    out.resize(
        start + base64::encoded_len(bytes.len(), true).unwrap_or(0),
        0,
    );
    let n = B64.encode_slice(bytes, &mut out[start..]).unwrap_or(0);
    out.truncate(start + n);
    out.push(b'"');
}

/// Go's `time.Time` JSON form in UTC: RFC 3339 with up to nine fractional digits, trailing
/// zeros (and a bare dot) trimmed.
#[must_use]
pub fn go_time(t: DateTime<Utc>) -> String {
    let s = t.to_rfc3339_opts(SecondsFormat::Nanos, true);
    // s = "YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ"
    let (body, _) = s.split_at(s.len() - 1);
    let trimmed = body.trim_end_matches('0').trim_end_matches('.');
    format!("{trimmed}Z")
}

#[derive(Deserialize)]
struct RawTimed<'a> {
    #[serde(rename = "etcdEvent", borrow)]
    etcd_event: Option<RawEventRef<'a>>,
    #[serde(borrow)]
    time: Option<Cow<'a, str>>,
}

/// Checks the sha256 trailer and returns the JSON part of a (decompressed) delta object.
///
/// # Errors
/// [`DeltaFormatError::MissingHash`] or [`DeltaFormatError::HashMismatch`].
pub fn verify(object: &[u8]) -> Result<&[u8], DeltaFormatError> {
    if object.len() < HASH_LEN {
        return Err(DeltaFormatError::MissingHash(object.len()));
    }
    let (json, hash) = object.split_at(object.len() - HASH_LEN);
    if Sha256::digest(json).as_slice() != hash {
        return Err(DeltaFormatError::HashMismatch(json.len()));
    }
    Ok(json)
}

/// Verifies and decodes a whole (decompressed) delta object.
///
/// # Errors
/// A [`DeltaFormatError`] naming the problem.
pub fn decode(object: &[u8]) -> Result<Vec<TimedEvent>, DeltaFormatError> {
    parse(verify(object)?)
}

/// Decodes the JSON part of a delta object whose trailer was already verified.
///
/// # Errors
/// [`DeltaFormatError::Json`] or [`DeltaFormatError::BadEvent`].
pub fn parse(json: &[u8]) -> Result<Vec<TimedEvent>, DeltaFormatError> {
    let raw: Vec<RawTimed> = serde_json::from_slice(json).map_err(DeltaFormatError::Json)?;
    raw.into_iter()
        .enumerate()
        .map(|(index, r)| convert(index, r))
        .collect()
}

fn convert(index: usize, r: RawTimed<'_>) -> Result<TimedEvent, DeltaFormatError> {
    let bad = |reason: String| DeltaFormatError::BadEvent { index, reason };
    let time = match r.time {
        Some(t) => DateTime::parse_from_rfc3339(&t)
            .map_err(|e| bad(format!("time {t:?}: {e}")))?
            .with_timezone(&Utc),
        None => DateTime::<Utc>::UNIX_EPOCH,
    };
    Ok(TimedEvent {
        event: convert_event(index, r.etcd_event)?,
        time,
    })
}

/// An element of the array when only the event matters (restore ignores the times), its
/// strings borrowed from the element's bytes where they have no escapes.
#[derive(Deserialize)]
struct RawUntimed<'a> {
    #[serde(rename = "etcdEvent", borrow)]
    etcd_event: Option<RawEventRef<'a>>,
    #[serde(borrow)]
    time: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RawEventRef<'a> {
    #[serde(rename = "type", default)]
    kind: i32,
    #[serde(borrow)]
    kv: Option<RawKvRef<'a>>,
}

#[derive(Deserialize, Default)]
struct RawKvRef<'a> {
    #[serde(default, borrow)]
    key: Option<Cow<'a, str>>,
    #[serde(default)]
    create_revision: i64,
    #[serde(default)]
    mod_revision: i64,
    #[serde(default)]
    version: i64,
    #[serde(default, borrow)]
    value: Option<Cow<'a, str>>,
    #[serde(default)]
    lease: i64,
}

/// Reads a delta's JSON array from `reader` one element at a time and calls `f` with each
/// event, in order; returns how many there were. Memory holds one element whatever the
/// delta's size. Reads `reader` to its end; what follows the closing `]` (the sha256 trailer)
/// is not looked at. The times are not decoded.
///
/// # Errors
/// [`DeltaFormatError::Json`] or [`DeltaFormatError::BadEvent`] for bad content,
/// [`DeltaFormatError::Read`] when reading fails, [`DeltaFormatError::Io`] when `f` fails.
pub fn for_each_event<R: std::io::Read>(
    reader: R,
    mut f: impl FnMut(Event) -> std::io::Result<()>,
) -> Result<usize, DeltaFormatError> {
    for_each_event_timed(reader, false, |e, _| f(e))
}

/// As [`for_each_event`], with each event's time when `times` (else `None`): a point-in-time
/// restore needs them, a restore to the end does not pay for parsing them.
///
/// # Errors
/// As [`for_each_event`]; a time that is not RFC 3339 is [`DeltaFormatError::BadEvent`].
pub fn for_each_event_timed<R: std::io::Read>(
    reader: R,
    times: bool,
    mut f: impl FnMut(Event, Option<DateTime<Utc>>) -> std::io::Result<()>,
) -> Result<usize, DeltaFormatError> {
    split::for_each_element(reader, |index, bytes| {
        let raw: RawUntimed<'_> = serde_json::from_slice(bytes).map_err(DeltaFormatError::Json)?;
        let time = match (times, raw.time) {
            (true, Some(t)) => Some(
                DateTime::parse_from_rfc3339(&t)
                    .map_err(|e| DeltaFormatError::BadEvent {
                        index,
                        reason: format!("time {t:?}: {e}"),
                    })?
                    .with_timezone(&Utc),
            ),
            _ => None,
        };
        let event = convert_event(index, raw.etcd_event)?;
        f(event, time).map_err(DeltaFormatError::Io)
    })
    .map_err(|e| match e {
        split::SplitError::Io(e) => DeltaFormatError::Read(e),
        split::SplitError::Syntax(s) => {
            DeltaFormatError::Json(<serde_json::Error as serde::de::Error>::custom(s))
        }
        split::SplitError::Element(e) => e,
    })
}

fn convert_event(index: usize, ev: Option<RawEventRef<'_>>) -> Result<Event, DeltaFormatError> {
    let bad = |reason: String| DeltaFormatError::BadEvent { index, reason };
    let ev = ev.ok_or_else(|| bad("no etcdEvent".into()))?;
    let delete = match ev.kind {
        0 => false,
        1 => true,
        other => return Err(bad(format!("unknown event type {other}"))),
    };
    let kv = ev.kv.ok_or_else(|| bad("no kv".into()))?;
    let b64 = |field: &str, v: Option<Cow<'_, str>>| -> Result<Vec<u8>, DeltaFormatError> {
        v.map_or(Ok(Vec::new()), |s| {
            B64.decode(s.as_bytes())
                .map_err(|e| bad(format!("{field} is not base64: {e}")))
        })
    };
    Ok(Event {
        delete,
        key: b64("key", kv.key)?,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: b64("value", kv.value)?,
        lease: kv.lease,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(nanos: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 10, 0, 0).unwrap()
            + chrono::Duration::nanoseconds(i64::from(nanos))
    }

    fn put(key: &str, value: &str, create: i64, rev: i64, version: i64, lease: i64) -> Event {
        Event {
            delete: false,
            key: key.into(),
            create_revision: create,
            mod_revision: rev,
            version,
            value: value.into(),
            lease,
        }
    }

    #[test]
    fn go_time_trims_like_go() {
        assert_eq!(go_time(t(0)), "2024-05-01T10:00:00Z");
        assert_eq!(go_time(t(120_000_000)), "2024-05-01T10:00:00.12Z");
        assert_eq!(go_time(t(123_456_789)), "2024-05-01T10:00:00.123456789Z");
        assert_eq!(go_time(t(1_000)), "2024-05-01T10:00:00.000001Z");
    }

    #[test]
    fn encodes_exactly_as_go_does() {
        let mut enc = DeltaEncoder::new();
        enc.push(&put("foo", "bar", 2, 2, 1, 0), t(5));
        enc.push(
            &put("foo", "", 2, 3, 2, 7_587_869_323_512_432_135),
            t(120_000_000),
        );
        let del = Event {
            delete: true,
            key: b"foo".to_vec(),
            create_revision: 0,
            mod_revision: 4,
            version: 0,
            value: vec![],
            lease: 0,
        };
        enc.push(&del, t(0));
        assert_eq!(enc.first_revision(), Some(Revision(2)));
        assert_eq!(enc.last_revision(), Some(Revision(4)));
        let obj = enc.finish();
        let json = &obj[..obj.len() - 32];
        assert_eq!(
            std::str::from_utf8(json).unwrap(),
            concat!(
                r#"[{"etcdEvent":{"kv":{"key":"Zm9v","create_revision":2,"mod_revision":2,"version":1,"value":"YmFy"}},"time":"2024-05-01T10:00:00.000000005Z"},"#,
                r#"{"etcdEvent":{"kv":{"key":"Zm9v","create_revision":2,"mod_revision":3,"version":2,"lease":7587869323512432135}},"time":"2024-05-01T10:00:00.12Z"},"#,
                r#"{"etcdEvent":{"type":1,"kv":{"key":"Zm9v","mod_revision":4}},"time":"2024-05-01T10:00:00Z"}]"#
            )
        );
        let back = decode(&obj).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back[2].event, del);
        assert_eq!(back[1].time, t(120_000_000));
    }

    #[test]
    fn decodes_other_zones_and_rejects_bad_objects() {
        let json = br#"[{"time":"2019-08-05T21:41:52.258109+05:30","etcdEvent":{"kv":{"value":"","key":"YQ==","mod_revision":9}}}]"#;
        let mut obj = json.to_vec();
        obj.extend_from_slice(&Sha256::digest(json));
        let ev = decode(&obj).unwrap();
        assert_eq!(ev[0].event.key, b"a");
        assert_eq!(ev[0].time.to_rfc3339(), "2019-08-05T16:11:52.258109+00:00");

        let mut flipped = obj.clone();
        flipped[3] ^= 1;
        assert!(matches!(
            decode(&flipped),
            Err(DeltaFormatError::HashMismatch(_))
        ));
        assert!(matches!(
            decode(&obj[..10]),
            Err(DeltaFormatError::MissingHash(10))
        ));

        let mut bad =
            br#"[{"etcdEvent":{"type":7,"kv":{}},"time":"2019-08-05T21:41:52Z"}]"#.to_vec();
        let h = Sha256::digest(&bad);
        bad.extend_from_slice(&h);
        assert!(
            decode(&bad)
                .unwrap_err()
                .to_string()
                .contains("unknown event type 7")
        );
    }

    #[test]
    fn empty_encoder_finishes_as_an_empty_array() {
        let obj = DeltaEncoder::new().finish();
        assert_eq!(&obj[..2], b"[]");
        assert!(decode(&obj).unwrap().is_empty());
    }

    #[test]
    fn streaming_reader_yields_what_parse_yields() {
        let mut enc = DeltaEncoder::new();
        for i in 0..500i64 {
            let mut e = put(
                &format!("k{i}"),
                &"v".repeat(i as usize * 7),
                2,
                2 + i,
                1,
                i % 3,
            );
            e.delete = i % 11 == 0;
            enc.push(&e, t(i as u32));
        }
        let object = enc.finish();
        let want: Vec<Event> = decode(&object)
            .unwrap()
            .into_iter()
            .map(|t| t.event)
            .collect();
        let mut got = Vec::new();
        let n = for_each_event(&object[..], |e| {
            got.push(e);
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 500);
        assert_eq!(got, want);

        // Bad elements name their index; a failing handler stops the read with its error.
        let bad = br#"[{"etcdEvent":{"kv":{"key":"YQ=="}}},{"etcdEvent":{"type":7,"kv":{}}}]"#;
        let e = for_each_event(&bad[..], |_| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("event 1") && e.contains("unknown event type 7"),
            "{e}"
        );
        let e =
            for_each_event(&object[..], |_| Err(std::io::Error::other("disk full"))).unwrap_err();
        assert!(matches!(e, DeltaFormatError::Io(_)), "{e}");
        let cut = br#"[{"etcdEvent":{"kv":{"key":"YQ=="}}}"#;
        let e = for_each_event(&cut[..], |_| Ok(())).unwrap_err();
        assert!(matches!(e, DeltaFormatError::Json(_)), "{e}");
    }
}

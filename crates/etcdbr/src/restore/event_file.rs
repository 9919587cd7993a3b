//! The temp file a delta's events wait in between the fetcher that decoded them and the applier:
//! fixed-size fields and raw bytes, so the applier reads them back without parsing JSON.
//!
//! Record: `flags: u8` (bit 0: delete, bit 1: has a time), `mod_revision`, `create_revision`,
//! `version`, `lease`, `time` (Unix nanoseconds; `i64` little-endian each), `key_len`,
//! `value_len` (`u32` little-endian), key, value.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use chrono::{DateTime, Utc};

use crate::delta_format::Event;

const BUFFER: usize = 1 << 20;
const FIXED: usize = 1 + 5 * 8 + 2 * 4;
const KEY_LEN_AT: usize = 1 + 5 * 8;
const VALUE_LEN_AT: usize = KEY_LEN_AT + 4;

/// Appends events to a new file.
pub(crate) struct EventWriter {
    out: BufWriter<File>,
}

impl EventWriter {
    /// Creates `path`.
    pub(crate) fn create(path: &Path) -> io::Result<EventWriter> {
        Ok(EventWriter {
            out: BufWriter::with_capacity(BUFFER, File::create(path)?),
        })
    }

    /// Writes one event, with the time it was received when known.
    pub(crate) fn write(&mut self, e: &Event, time: Option<DateTime<Utc>>) -> io::Result<()> {
        let len = |b: &[u8]| {
            u32::try_from(b.len())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "event over 4 GiB"))
        };
        let mut fixed = [0u8; FIXED];
        fixed[0] = u8::from(e.delete) | (u8::from(time.is_some()) << 1);
        let nanos = time.map_or(0, |t| t.timestamp_nanos_opt().unwrap_or(i64::MAX));
        for (i, v) in [e.mod_revision, e.create_revision, e.version, e.lease, nanos]
            .into_iter()
            .enumerate()
        {
            fixed[1 + 8 * i..9 + 8 * i].copy_from_slice(&v.to_le_bytes());
        }
        fixed[KEY_LEN_AT..VALUE_LEN_AT].copy_from_slice(&len(&e.key)?.to_le_bytes());
        fixed[VALUE_LEN_AT..FIXED].copy_from_slice(&len(&e.value)?.to_le_bytes());
        self.out.write_all(&fixed)?;
        self.out.write_all(&e.key)?;
        self.out.write_all(&e.value)
    }

    /// Flushes the file to the OS (not to disk: it only lives as long as the restore).
    pub(crate) fn finish(mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// An event read back, borrowed from the reader, and its time if it was written with one.
pub(crate) type TimedRef<'a> = (&'a Event, Option<DateTime<Utc>>);

/// Reads events back, reusing one [`Event`]'s buffers.
pub(crate) struct EventReader {
    input: BufReader<File>,
    event: Event,
}

impl EventReader {
    /// Opens `path`.
    pub(crate) fn open(path: &Path) -> io::Result<EventReader> {
        Ok(EventReader {
            input: BufReader::with_capacity(BUFFER, File::open(path)?),
            event: Event::default(),
        })
    }

    /// The next event and its time (if it was written with one), or `None` at the end.
    pub(crate) fn next(&mut self) -> io::Result<Option<TimedRef<'_>>> {
        let mut fixed = [0u8; FIXED];
        match self.input.read_exact(&mut fixed[..1]) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        self.input.read_exact(&mut fixed[1..])?;
        let i64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&fixed[1 + 8 * i..9 + 8 * i]);
            i64::from_le_bytes(b)
        };
        let u32_at = |at: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&fixed[at..at + 4]);
            u32::from_le_bytes(b) as usize
        };
        let e = &mut self.event;
        e.delete = fixed[0] & 1 != 0;
        e.mod_revision = i64_at(0);
        e.create_revision = i64_at(1);
        e.version = i64_at(2);
        e.lease = i64_at(3);
        let time = (fixed[0] & 2 != 0).then(|| DateTime::from_timestamp_nanos(i64_at(4)));
        read_bytes(&mut self.input, &mut e.key, u32_at(KEY_LEN_AT))?;
        read_bytes(&mut self.input, &mut e.value, u32_at(VALUE_LEN_AT))?;
        Ok(Some((&self.event, time)))
    }
}

fn read_bytes(input: &mut impl Read, buf: &mut Vec<u8>, len: usize) -> io::Result<()> {
    buf.clear();
    buf.resize(len, 0);
    input.read_exact(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events");
        let events = vec![
            Event {
                delete: false,
                key: b"/registry/pods/a".to_vec(),
                create_revision: 5,
                mod_revision: 9,
                version: 3,
                value: vec![7; 3000],
                lease: -1,
            },
            Event {
                delete: true,
                key: b"k".to_vec(),
                mod_revision: 10,
                ..Event::default()
            },
            Event {
                key: b"empty".to_vec(),
                create_revision: 11,
                mod_revision: 11,
                version: 1,
                ..Event::default()
            },
        ];
        let t = DateTime::from_timestamp_nanos(1_714_557_600_123_456_789);
        let times = [Some(t), None, Some(DateTime::UNIX_EPOCH)];
        let mut w = EventWriter::create(&path).unwrap();
        for (e, time) in events.iter().zip(times) {
            w.write(e, time).unwrap();
        }
        w.finish().unwrap();
        let mut r = EventReader::open(&path).unwrap();
        let mut back = Vec::new();
        while let Some((e, time)) = r.next().unwrap() {
            back.push((e.clone(), time));
        }
        assert_eq!(back, events.into_iter().zip(times).collect::<Vec<_>>());
        // A file cut inside a record is an error, never a short event.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        let mut r = EventReader::open(&path).unwrap();
        r.next().unwrap();
        r.next().unwrap();
        assert!(r.next().is_err());
    }
}

//! Delta snapshots: watch events buffered in the original's JSON format, with revision
//! continuity checked on every event.
//!
//! The chain invariant: every revision after the last stored snapshot is either in the buffer
//! or in a stored (or uploading) delta, exactly once. Events at or below the chain's revision are
//! overlaps and are dropped; a revision that skips ahead is a gap, which is an error (the
//! snapshotter then takes a full snapshot) and is never skipped silently.

use chrono::Utc;
use etcdbr_types::Revision;
use snapstore::{Kind, SnapStore, Snapshot};

use crate::compress::Compression;
use crate::delta_format::{DeltaEncoder, Event};
use crate::error::{Error, Result};
use crate::events::Events;
use crate::pipe::compressed_body;

/// Buffered events of the delta being built, and where the chain stands.
#[derive(Debug)]
pub(crate) struct DeltaChain {
    /// Last revision covered by a stored or uploading snapshot.
    chain_rev: i64,
    /// Last revision received from the watch.
    seen_rev: i64,
    encoder: DeltaEncoder,
    /// Events dropped because they were at or below `chain_rev`.
    pub overlaps: u64,
    /// The stored events of revision `chain_rev` and how many of them the watch has matched
    /// (when the watch starts at `chain_rev` to check that etcd still has that history).
    expected: Option<(Vec<Event>, usize)>,
    /// The events of revision `seen_rev` (the tail the next session checks against): the
    /// first `tail_len` of `tail`, whose buffers are reused from one revision to the next.
    tail: Vec<Event>,
    tail_len: usize,
}

/// A delta ready to upload: revisions `start..=last` and the object bytes (JSON + sha256).
#[derive(Debug)]
pub(crate) struct PendingDelta {
    pub start: i64,
    pub last: i64,
    pub events: usize,
    pub object: Vec<u8>,
    /// The events of revision `last`.
    pub tail: Vec<Event>,
}

impl DeltaChain {
    /// A chain whose stored snapshots end at revision `from`.
    pub fn new(from: i64) -> DeltaChain {
        DeltaChain {
            chain_rev: from,
            seen_rev: from,
            encoder: DeltaEncoder::new(),
            overlaps: 0,
            expected: None,
            tail: Vec::new(),
            tail_len: 0,
        }
    }

    /// Checks the events the watch sends for the chain's own revision against `stored`, the
    /// events the store has for it: the watch must then start at that revision.
    pub fn expect(&mut self, stored: Vec<Event>) {
        self.expected = Some((stored, 0));
    }

    /// Bytes of JSON buffered.
    pub fn len(&self) -> usize {
        self.encoder.len()
    }

    /// Whether no event is buffered.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.encoder.is_empty()
    }

    /// Last revision received.
    pub fn seen_revision(&self) -> i64 {
        self.seen_rev
    }

    /// Adds one event, checking that revisions continue without a gap and, at the chain's own
    /// revision, that etcd's history is the store's.
    pub fn push(&mut self, event: &Event) -> Result<()> {
        let r = event.mod_revision;
        if r == self.chain_rev
            && let Some((stored, matched)) = &mut self.expected
        {
            if stored.get(*matched) != Some(event) {
                return Err(Error::HistoryChanged { revision: r });
            }
            *matched += 1;
        }
        if r <= self.chain_rev {
            self.overlaps += 1;
            return Ok(());
        }
        if let Some((stored, matched)) = self.expected.take()
            && matched != stored.len()
        {
            return Err(Error::HistoryChanged {
                revision: self.chain_rev,
            });
        }
        if r != self.seen_rev && r != self.seen_rev + 1 {
            return Err(Error::RevisionGap {
                expected: self.seen_rev + 1,
                got: r,
            });
        }
        if r != self.seen_rev {
            self.tail_len = 0;
        }
        match self.tail.get_mut(self.tail_len) {
            Some(slot) => {
                // Field by field into the old buffers (the derived `clone_from` allocates anew);
                // the pattern names every field, so a new one cannot be forgotten.
                let Event {
                    delete,
                    key,
                    create_revision,
                    mod_revision,
                    version,
                    value,
                    lease,
                } = event;
                slot.key.clone_from(key);
                slot.value.clone_from(value);
                (slot.delete, slot.create_revision, slot.mod_revision) =
                    (*delete, *create_revision, *mod_revision);
                (slot.version, slot.lease) = (*version, *lease);
            }
            None => self.tail.push(event.clone()),
        }
        self.tail_len += 1;
        self.encoder.push(event, Utc::now());
        self.seen_rev = r;
        Ok(())
    }

    /// Takes the buffered events as a delta to upload; the chain then continues after it.
    pub fn take(&mut self) -> Option<PendingDelta> {
        if self.encoder.is_empty() {
            return None;
        }
        let enc = std::mem::take(&mut self.encoder);
        let last = enc.last_revision().map_or(self.seen_rev, Revision::get);
        let pending = PendingDelta {
            start: self.chain_rev + 1,
            last,
            events: enc.events(),
            object: enc.finish(),
            tail: self.tail[..self.tail_len].to_vec(),
        };
        self.chain_rev = last;
        Some(pending)
    }
}

/// Converts a watch event into the delta format's event.
pub(crate) fn from_watch(ev: &etcd_client::Event) -> Result<Event> {
    let kv = ev
        .kv()
        .ok_or_else(|| Error::Watch("sent an event without a key-value".into()))?;
    Ok(Event {
        delete: ev.event_type() == etcd_client::EventType::Delete,
        key: kv.key().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
        value: kv.value().to_vec(),
        lease: kv.lease(),
    })
}

/// The last stored snapshot and the events of its last revision, when known (a delta's).
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub snapshot: Snapshot,
    pub tail: Option<Vec<Event>>,
}

/// Compresses and uploads a delta.
pub(crate) async fn upload(
    store: SnapStore,
    mut delta: PendingDelta,
    compression: Compression,
    events: Events,
) -> Result<Stored> {
    let started = std::time::Instant::now();
    let tail = std::mem::take(&mut delta.tail);
    let r = save(store, delta, compression).await;
    events.snapshot(Kind::Incr, started.elapsed(), r.as_ref().ok());
    r.map(|snapshot| Stored {
        snapshot,
        tail: Some(tail),
    })
}

async fn save(store: SnapStore, delta: PendingDelta, compression: Compression) -> Result<Snapshot> {
    let started = std::time::Instant::now();
    let snapshot = Snapshot::new(
        Kind::Incr,
        Revision(delta.start),
        Revision(delta.last),
        Utc::now(),
        compression.suffix(),
        false,
        store.layout_prefix(),
    )
    .with_encryption(store.encrypts());
    let size = delta.object.len();
    store
        .save(
            &snapshot,
            compressed_body(
                std::io::Cursor::new(delta.object),
                compression,
                store.keyring(),
            ),
            Some(size as u64),
        )
        .await?;
    tracing::info!(
        "Total time to save delta snapshot: {:.6} seconds ({} events, {} bytes before compression).",
        started.elapsed().as_secs_f64(),
        delta.events,
        size
    );
    tracing::info!("Successfully saved delta snapshot at: {}", snapshot.key());
    Ok(snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(rev: i64) -> Event {
        Event {
            delete: false,
            key: b"k".to_vec(),
            create_revision: 1,
            mod_revision: rev,
            version: 1,
            value: vec![],
            lease: 0,
        }
    }

    #[test]
    fn continuity_overlap_and_gap() {
        let mut c = DeltaChain::new(10);
        c.push(&put(9)).unwrap();
        c.push(&put(10)).unwrap();
        assert_eq!(c.overlaps, 2);
        assert!(c.is_empty());
        c.push(&put(11)).unwrap();
        c.push(&put(11)).unwrap(); // same transaction
        c.push(&put(12)).unwrap();
        let d = c.take().unwrap();
        assert_eq!((d.start, d.last, d.events), (11, 12, 3));
        assert!(c.take().is_none());
        c.push(&put(12)).unwrap(); // already in the previous delta
        assert_eq!(c.overlaps, 3);
        let e = c.push(&put(15)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "revision gap in the watch: expected revision 13, got 15; revisions 13..=14 are missing"
        );
        assert!(e.needs_full_snapshot());
        c.push(&put(13)).unwrap();
        assert_eq!(c.take().unwrap().start, 13);
    }

    #[test]
    fn a_resumed_watch_must_repeat_the_stored_revision() {
        let mut same = DeltaChain::new(10);
        same.expect(vec![put(10)]);
        same.push(&put(10)).unwrap();
        same.push(&put(11)).unwrap();
        assert_eq!(same.take().unwrap().start, 11);

        // etcd has other events at revision 10: its history is not the store's.
        let mut other = put(10);
        other.value = b"rolled back".to_vec();
        let mut c = DeltaChain::new(10);
        c.expect(vec![put(10)]);
        let e = c.push(&other).unwrap_err();
        assert!(matches!(e, Error::HistoryChanged { revision: 10 }), "{e}");
        assert!(e.needs_full_snapshot());

        // Fewer events at revision 10 than stored (or none): found at the next revision.
        let mut c = DeltaChain::new(10);
        c.expect(vec![put(10), put(10)]);
        c.push(&put(10)).unwrap();
        assert!(c.push(&put(11)).is_err());
    }

    #[test]
    fn the_tail_is_the_last_revisions_events() {
        let mut c = DeltaChain::new(0);
        for r in [1, 2, 2, 3, 3, 3] {
            c.push(&put(r)).unwrap();
        }
        let d = c.take().unwrap();
        assert_eq!(d.tail, vec![put(3); 3]);
    }
}

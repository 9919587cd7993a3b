//! The compacted db as a stream in file order, for the upload: never written to disk.
//!
//! bbolt's two metas are the file's first pages but are written last. The compaction's plan
//! computes them first ([`CompactPlan::layout`]), so the stream is those metas, then the body
//! as the second pass writes it (handed over through a bounded channel), and the upload
//! compresses and hashes it as it comes. When the second pass ends, the metas it wrote are
//! compared with the ones already sent; a difference (a bug, or a source changed under the
//! compaction) fails the stream, and so the upload, before the object is complete.

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;

use etcd_datadir::compact::{CompactPlan, CompactStats, MetasApart};
use etcd_datadir::restore::RestoreError;

/// Pieces of the body in flight to the upload (each up to the db writer's 1 MiB buffer).
const IN_FLIGHT: usize = 4;

/// Starts the compaction's second pass on its own thread; returns the db in file order as a
/// reader, and the pass, which gives its stats (or its error) when joined.
pub(super) fn stream(
    plan: CompactPlan,
    metas: Vec<u8>,
) -> (CompactedDb, JoinHandle<Result<CompactStats, RestoreError>>) {
    let (tx, rx) = sync_channel::<io::Result<Vec<u8>>>(IN_FLIGHT);
    let expected = metas.clone();
    let pass = std::thread::spawn(move || {
        let pieces = tx.clone();
        let sink = MetasApart::new(move |piece: &[u8]| {
            pieces
                .send(Ok(piece.to_vec()))
                .map_err(|_| io::Error::other("the upload stopped reading the compacted database"))
        });
        let result = plan.write_into(sink).and_then(|(stats, sink)| {
            if sink.into_metas() == expected {
                Ok(stats)
            } else {
                Err(RestoreError::Io {
                    what: "the compacted database's metas differ from its planned layout; \
                           the upload is abandoned"
                        .into(),
                    source: io::Error::other("metas mismatch"),
                })
            }
        });
        if let Err(e) = &result {
            let _ = tx.send(Err(io::Error::other(crate::error::error_chain(e))));
        }
        result
    });
    let reader = CompactedDb {
        head: io::Cursor::new(metas),
        rx,
        cur: Vec::new(),
        at: 0,
    };
    (reader, pass)
}

/// The compacted db in file order: the planned metas, then the body's pieces.
pub(super) struct CompactedDb {
    head: io::Cursor<Vec<u8>>,
    rx: Receiver<io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    at: usize,
}

impl Read for CompactedDb {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.head.read(buf)?;
        if n > 0 || buf.is_empty() {
            return Ok(n);
        }
        while self.at == self.cur.len() {
            match self.rx.recv() {
                Ok(piece) => (self.cur, self.at) = (piece?, 0),
                Err(_) => return Ok(0), // the pass is done (its own errors came as items)
            }
        }
        let n = buf.len().min(self.cur.len() - self.at);
        buf[..n].copy_from_slice(&self.cur[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcd_datadir::restore::DataDirFormat;

    /// A db the original backed up (its full snapshot, trailer cut), planned for compaction.
    fn planned(dir: &std::path::Path) -> (CompactPlan, Vec<u8>) {
        let fixture = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/original/none/v2/Full-00000000-00000005-1700000000"
        );
        let bytes = std::fs::read(fixture).unwrap();
        let db = dir.join("db");
        std::fs::write(&db, &bytes[..bytes.len() - 32]).unwrap();
        let mut plan = etcd_datadir::compact::plan(&db, DataDirFormat::V35).unwrap();
        let (metas, _) = plan.layout().unwrap();
        (plan, metas)
    }

    /// The stream is the compacted file, byte for byte.
    #[test]
    fn the_stream_is_the_compacted_file() {
        let dir = tempfile::tempdir().unwrap();
        let (plan, metas) = planned(dir.path());
        let (mut db, pass) = stream(plan, metas);
        let mut streamed = Vec::new();
        db.read_to_end(&mut streamed).unwrap();
        pass.join().unwrap().unwrap();
        let file = dir.path().join("compacted");
        etcd_datadir::compact::compact_db(&dir.path().join("db"), &file, DataDirFormat::V35)
            .unwrap();
        assert!(streamed == std::fs::read(&file).unwrap());
    }

    /// Metas that are not the ones the pass writes fail the stream before its end, so the
    /// upload fails and stores nothing.
    #[test]
    fn metas_that_differ_fail_the_stream() {
        let dir = tempfile::tempdir().unwrap();
        let (plan, mut metas) = planned(dir.path());
        metas[40] ^= 1;
        let (mut db, pass) = stream(plan, metas);
        let mut streamed = Vec::new();
        let err = db.read_to_end(&mut streamed).unwrap_err();
        assert!(err.to_string().contains("planned layout"), "{err}");
        assert!(pass.join().unwrap().is_err());
    }
}

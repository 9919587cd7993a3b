//! The compacted snapshot compressed while it is written, for the policies whose units
//! concatenate into one stream (gzip members, zstd frames).
//!
//! bbolt's two metas are the file's first pages but are written last, and the sha256 trailer
//! covers the file from its first byte. So the compacted db is never written out whole: the
//! body (every page after the metas, written once and in order) goes through a
//! [`CompressingWriter`] to the compressor as the compaction writes it, into a staged file of
//! units, and the metas are kept in memory. The upload is then the metas' own unit, the staged
//! units, and the trailer's unit, whose sha256 a thread computes over the metas and the staged
//! units decompressed again (on every core) while they upload. Temp disk: the compressed body
//! alone, not a second copy of the db.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

use crate::compress::Compression;

/// Bytes of the two meta pages the body follows (the compaction writes 4096-byte pages).
const METAS: u64 = 2 * bbolt::DEFAULT_PAGE_SIZE as u64;
/// Pieces of the body in flight to the compressor (each up to the writer's 1 MiB buffer).
const IN_FLIGHT: usize = 4;

/// The compacted db as a seekable writer: the metas kept in memory, the body handed in order to
/// a compressor thread writing the staged units.
pub(super) struct CompressingWriter {
    metas: Vec<u8>,
    pos: u64,
    /// Where the next body byte must be written (the body is written once, in order).
    next: u64,
    tx: Option<SyncSender<Vec<u8>>>,
    compressor: Option<JoinHandle<io::Result<u64>>>,
}

/// What [`CompressingWriter::finish`] leaves: the metas and the db's size.
pub(super) struct Written {
    /// The two meta pages, as the compaction wrote them last.
    pub(super) metas: Vec<u8>,
    /// Bytes of the compacted db (metas and body).
    pub(super) db_size: u64,
}

impl CompressingWriter {
    /// Compresses the body with `compression` into `staged`.
    pub(super) fn start(compression: Compression, staged: File) -> CompressingWriter {
        let (tx, rx) = sync_channel::<Vec<u8>>(IN_FLIGHT);
        let compressor = std::thread::spawn(move || {
            let mut out = io::BufWriter::with_capacity(1 << 20, staged);
            let n = compression.compress(
                Pieces {
                    rx,
                    cur: Vec::new(),
                    at: 0,
                },
                &mut out,
            )?;
            out.flush()?;
            Ok(n)
        });
        CompressingWriter {
            metas: vec![0u8; METAS as usize],
            pos: 0,
            next: METAS,
            tx: Some(tx),
            compressor: Some(compressor),
        }
    }

    /// Ends the compression; the staged file then holds the whole body.
    ///
    /// # Errors
    /// The compressor failed (disk full, say), or the body was not handed over whole.
    pub(super) fn finish(mut self) -> io::Result<Written> {
        drop(self.tx.take());
        let n = self
            .compressor
            .take()
            .map(|h| {
                h.join()
                    .map_err(|_| io::Error::other("the compressor panicked"))
            })
            .unwrap_or_else(|| Err(io::Error::other("the compressor is gone")))??;
        if n + METAS != self.next {
            return Err(io::Error::other(format!(
                "the compressor took {n} bytes of a {} byte body",
                self.next - METAS
            )));
        }
        Ok(Written {
            metas: std::mem::take(&mut self.metas),
            db_size: self.next,
        })
    }

    /// The compressor's own error, when it has stopped taking pieces.
    fn compressor_error(&mut self) -> io::Error {
        drop(self.tx.take());
        match self.compressor.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => e,
            _ => io::Error::other("the compressor stopped"),
        }
    }
}

impl Write for CompressingWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let (at, end) = (self.pos, self.pos + data.len() as u64);
        if at < METAS {
            let upto = end.min(METAS);
            self.metas[at as usize..upto as usize].copy_from_slice(&data[..(upto - at) as usize]);
        }
        if end > METAS {
            let from = at.max(METAS);
            if from != self.next {
                // bbolt's writer writes each body page once, in order; anything else is a bug.
                return Err(io::Error::other(format!(
                    "the compacted database was written out of order (at {from}, expected {})",
                    self.next
                )));
            }
            let piece = data[(from - at) as usize..].to_vec();
            let sent = self.tx.as_ref().is_some_and(|tx| tx.send(piece).is_ok());
            if !sent {
                return Err(self.compressor_error());
            }
            self.next = end;
        }
        self.pos = end;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for CompressingWriter {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let size = self.next as i64;
        let pos = match to {
            SeekFrom::Start(p) => Some(p as i64),
            SeekFrom::End(d) => size.checked_add(d),
            SeekFrom::Current(d) => (self.pos as i64).checked_add(d),
        };
        match pos {
            Some(p) if p >= 0 => {
                self.pos = p as u64;
                Ok(self.pos)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the compacted database",
            )),
        }
    }
}

/// The body's pieces as a reader, for the compressor.
struct Pieces {
    rx: Receiver<Vec<u8>>,
    cur: Vec<u8>,
    at: usize,
}

impl Read for Pieces {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.cur.len() {
            match self.rx.recv() {
                Ok(piece) => (self.cur, self.at) = (piece, 0),
                Err(_) => return Ok(0), // the writer is done
            }
        }
        let n = buf.len().min(self.cur.len() - self.at);
        buf[..n].copy_from_slice(&self.cur[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The upload's stream: the metas' unit, the staged body's units, then the trailer's unit.
pub(super) struct Units {
    parts: io::Chain<io::Cursor<Vec<u8>>, BufReader<File>>,
    digest: Option<JoinHandle<io::Result<[u8; 32]>>>,
    compression: Compression,
    trailer: io::Cursor<Vec<u8>>,
}

impl Units {
    /// The upload of the compacted db whose `metas` are given and whose body's units are in
    /// `staged`; starts hashing the db (the metas, then the body decompressed again).
    pub(super) fn open(metas: &[u8], staged: &Path, compression: Compression) -> io::Result<Units> {
        let mut head = Vec::new();
        compression.compress(metas, &mut head)?;
        let body = BufReader::with_capacity(1 << 20, File::open(staged)?);
        let again = File::open(staged)?;
        let metas = metas.to_vec();
        let digest = std::thread::spawn(move || {
            let mut hasher = Sha256::new();
            hasher.update(&metas);
            let mut body = compression.reader(BufReader::with_capacity(1 << 20, again));
            let mut buf = vec![0u8; 1 << 20];
            loop {
                match body.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => hasher.update(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(hasher.finalize().into())
        });
        Ok(Units {
            parts: io::Cursor::new(head).chain(body),
            digest: Some(digest),
            compression,
            trailer: io::Cursor::new(Vec::new()),
        })
    }
}

impl Read for Units {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.parts.read(buf)?;
        if n > 0 || buf.is_empty() {
            return Ok(n);
        }
        if let Some(h) = self.digest.take() {
            let digest = h
                .join()
                .map_err(|_| io::Error::other("the sha256 thread panicked"))??;
            let mut unit = Vec::new();
            self.compression.compress(&digest[..], &mut unit)?;
            self.trailer = io::Cursor::new(unit);
        }
        self.trailer.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A db written as bbolt's writer writes it (placeholder metas, the body in order, the metas
    /// last) uploads as the compressed db with its sha256 trailer, and nothing of it but the
    /// compressed body is on disk.
    #[test]
    fn the_upload_is_the_compressed_db_with_its_trailer() {
        for compression in [Compression::Gzip, Compression::Zstd] {
            let dir = tempfile::tempdir().unwrap();
            let staged = dir.path().join("body");
            let mut w = CompressingWriter::start(compression, File::create(&staged).unwrap());
            let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
            w.write_all(&vec![0u8; METAS as usize]).unwrap();
            for piece in body.chunks(700_000) {
                w.write_all(piece).unwrap();
            }
            w.seek(SeekFrom::Start(0)).unwrap();
            w.write_all(&[1u8; 80]).unwrap();
            w.seek(SeekFrom::Start(4096)).unwrap();
            w.write_all(&[2u8; 80]).unwrap();
            w.seek(SeekFrom::End(0)).unwrap();
            let written = w.finish().unwrap();
            assert_eq!(written.db_size, METAS + body.len() as u64);

            let mut db = written.metas.clone();
            db.extend_from_slice(&body);
            assert_eq!(&db[..80], &[1u8; 80][..]);
            assert_eq!(&db[4096..4176], &[2u8; 80][..]);
            let mut upload = Vec::new();
            Units::open(&written.metas, &staged, compression)
                .unwrap()
                .read_to_end(&mut upload)
                .unwrap();
            let mut got = Vec::new();
            compression
                .reader(&upload[..])
                .read_to_end(&mut got)
                .unwrap();
            let digest: [u8; 32] = Sha256::digest(&db).into();
            db.extend_from_slice(&digest);
            assert!(got == db, "{compression:?}");
        }
    }

    /// Rewriting a body page already handed to the compressor is refused, not silently lost.
    #[test]
    fn a_body_written_out_of_order_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("body")).unwrap();
        let mut w = CompressingWriter::start(Compression::Gzip, file);
        w.write_all(&vec![0u8; METAS as usize + 100]).unwrap();
        w.seek(SeekFrom::Start(METAS + 10)).unwrap();
        assert!(w.write_all(b"again").is_err());
    }
}

//! The compacted snapshot compressed while it is written, for the policies whose units
//! concatenate into one stream (gzip members, zstd frames).
//!
//! bbolt's two metas are the file's first pages but are written last, and the sha256 trailer
//! covers the file from its first byte; neither can wait for the upload to stream the file
//! once. So the body (every page after the metas, written once and in order) goes through a
//! [`Tee`] to the compressor as the compaction writes it, into a staged file of units; the
//! upload is then the metas' own unit, the staged units, and the trailer's unit, whose sha256
//! a thread computes over the finished file while the staged units upload.

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

/// A seekable file writer that also hands the body, as it is written, to a compressor thread.
pub(super) struct Tee {
    file: File,
    pos: u64,
    /// Where the next body byte must be written for the tee to hold the whole body in order.
    next: u64,
    tx: Option<SyncSender<Vec<u8>>>,
    compressor: Option<JoinHandle<io::Result<u64>>>,
}

impl Tee {
    /// Writes to `file`, compressing the body with `compression` into `staged`.
    pub(super) fn start(file: File, compression: Compression, staged: File) -> Tee {
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
        Tee {
            file,
            pos: 0,
            next: METAS,
            tx: Some(tx),
            compressor: Some(compressor),
        }
    }

    /// Ends the compression; `Ok(true)` when the staged file holds the whole body, `Ok(false)`
    /// when the body was not written in one ordered pass (the caller compresses the file
    /// instead).
    pub(super) fn finish(mut self) -> io::Result<bool> {
        let whole = self.tx.take().is_some();
        let compressed = self.compressor.take().map(|h| {
            h.join()
                .map_err(|_| io::Error::other("the compressor panicked"))
        });
        match compressed {
            Some(Ok(Ok(n))) => Ok(whole && n + METAS == self.next),
            Some(Ok(Err(e))) | Some(Err(e)) if whole => Err(e),
            _ => Ok(false),
        }
    }

    fn tee(&mut self, at: u64, data: &[u8]) {
        let end = at + data.len() as u64;
        if end <= METAS {
            return; // the metas (or their placeholder): written last, compressed on their own
        }
        let from = at.max(METAS);
        if from != self.next {
            self.tx = None; // out of order: give up the tee, the file is still written
            return;
        }
        let piece = data[usize::try_from(from - at).unwrap_or(0)..].to_vec();
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(piece).is_ok());
        if sent {
            self.next = end;
        } else {
            self.tx = None;
        }
    }
}

impl Write for Tee {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.file.write(data)?;
        if self.tx.is_some() {
            self.tee(self.pos, &data[..n]);
        }
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Seek for Tee {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.pos = self.file.seek(to)?;
        Ok(self.pos)
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
    /// Reads the metas of the database at `db` and the units in `staged`; starts hashing `db`.
    pub(super) fn open(db: &Path, staged: &Path, compression: Compression) -> io::Result<Units> {
        let mut metas = vec![0u8; usize::try_from(METAS).unwrap_or(0)];
        File::open(db)?.read_exact(&mut metas)?;
        let mut head = Vec::new();
        compression.compress(&metas[..], &mut head)?;
        let body = BufReader::with_capacity(1 << 20, File::open(staged)?);
        let file = File::open(db)?;
        let digest = std::thread::spawn(move || {
            let mut hasher = Sha256::new();
            let mut file = file;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                match file.read(&mut buf) {
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

//! The sha256 trailer etcd appends to a snapshot stream (and the original to a delta's JSON):
//! [`TrailerCheck`] verifies one on bytes as they stream by, [`write_checking_trailer`] writes a
//! stream of chunks to a file while verifying it; [`WithSha256Trailer`] appends one to
//! databases we write ourselves (`compact`).

use std::io::{self, BufWriter, Read, Write};

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

/// Length of the trailer.
pub const TRAILER_LEN: usize = 32;

/// Checks a sha256 trailer on a stream seen in pieces of any size: hashes everything but the
/// last 32 bytes seen so far, which it holds back as the candidate trailer.
pub struct TrailerCheck {
    hasher: Sha256,
    tail: Vec<u8>,
    total: u64,
}

impl Default for TrailerCheck {
    fn default() -> TrailerCheck {
        TrailerCheck {
            hasher: Sha256::new(),
            tail: Vec::with_capacity(2 * TRAILER_LEN),
            total: 0,
        }
    }
}

impl TrailerCheck {
    /// Takes the next piece of the stream.
    pub fn update(&mut self, piece: &[u8]) {
        self.total += piece.len() as u64;
        if piece.len() >= TRAILER_LEN {
            let cut = piece.len() - TRAILER_LEN;
            self.hasher.update(&self.tail);
            self.hasher.update(&piece[..cut]);
            self.tail.clear();
            self.tail.extend_from_slice(&piece[cut..]);
        } else {
            self.tail.extend_from_slice(piece);
            if self.tail.len() > TRAILER_LEN {
                let cut = self.tail.len() - TRAILER_LEN;
                self.hasher.update(&self.tail[..cut]);
                self.tail.drain(..cut);
            }
        }
    }

    /// Bytes seen.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Whether the last 32 bytes seen are the sha256 of everything before them.
    #[must_use]
    pub fn matches(self) -> bool {
        self.tail.len() == TRAILER_LEN && self.hasher.finalize().as_slice() == self.tail.as_slice()
    }
}

/// Writes every chunk `rx` yields to `file` (on the calling, blocking thread) and checks the
/// trailer; returns the total size and whether the last 32 bytes are the sha256 of the rest.
///
/// # Errors
/// Writing fails.
pub(crate) fn write_checking_trailer(
    file: std::fs::File,
    mut rx: mpsc::Receiver<Vec<u8>>,
) -> io::Result<(u64, bool)> {
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut check = TrailerCheck::default();
    while let Some(chunk) = rx.blocking_recv() {
        out.write_all(&chunk)?;
        check.update(&chunk);
    }
    out.flush()?;
    Ok((check.total(), check.matches()))
}

/// Reads `inner` to its end, then yields the sha256 of everything read.
pub struct WithSha256Trailer<R> {
    inner: R,
    hasher: Option<Sha256>,
    trailer: Vec<u8>,
    pos: usize,
}

impl<R: Read> WithSha256Trailer<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        WithSha256Trailer {
            inner,
            hasher: Some(Sha256::new()),
            trailer: Vec::new(),
            pos: 0,
        }
    }
}

impl<R: Read> Read for WithSha256Trailer<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(h) = &mut self.hasher {
            let n = self.inner.read(buf)?;
            if n > 0 {
                h.update(&buf[..n]);
                return Ok(n);
            }
            if let Some(h) = self.hasher.take() {
                self.trailer = h.finalize().to_vec();
            }
        }
        let n = (self.trailer.len() - self.pos).min(buf.len());
        buf[..n].copy_from_slice(&self.trailer[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailer_check_holds_back_the_trailer_across_any_piece_size() {
        let body: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let mut stream = body.clone();
        stream.extend_from_slice(&Sha256::digest(&body));
        for split in [1usize, 5, 31, 32, 33, 64, 4096, 10_000] {
            let mut check = TrailerCheck::default();
            for piece in stream.chunks(split) {
                check.update(piece);
            }
            assert_eq!(check.total(), stream.len() as u64);
            assert!(check.matches(), "pieces of {split}");
        }
        let mut short = TrailerCheck::default();
        short.update(&stream[..20]);
        assert!(!short.matches());
        let mut altered = TrailerCheck::default();
        altered.update(&stream[1..]);
        assert!(!altered.matches());
    }

    fn write(chunks: &[&[u8]]) -> (u64, bool) {
        let (tx, rx) = mpsc::channel(chunks.len() + 1);
        for c in chunks {
            tx.try_send(c.to_vec()).unwrap();
        }
        drop(tx);
        let f = tempfile::tempfile().unwrap();
        write_checking_trailer(f, rx).unwrap()
    }

    #[test]
    fn writes_every_chunk_and_checks_the_trailer() {
        let body: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let mut stream = body.clone();
        stream.extend_from_slice(&Sha256::digest(&body));
        let chunks: Vec<&[u8]> = stream.chunks(33).collect();
        assert_eq!(write(&chunks), (stream.len() as u64, true));
        let mut bad = stream.clone();
        bad[10] ^= 1;
        assert_eq!(write(&[&bad]), (bad.len() as u64, false));
        assert_eq!(write(&[]), (0, false));
    }

    #[test]
    fn appends_the_digest_of_the_content() {
        let mut out = Vec::new();
        WithSha256Trailer::new(&b"etcd"[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(&out[..4], b"etcd");
        assert_eq!(&out[4..], Sha256::digest(b"etcd").as_slice());
    }
}

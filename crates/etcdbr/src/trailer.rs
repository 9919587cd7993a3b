//! The sha256 trailer etcd appends to a snapshot stream, for databases we write ourselves
//! (`compact`): the reader yields the file's bytes, then their sha256.

use std::io::{self, Read};

use sha2::{Digest, Sha256};

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
    fn appends_the_digest_of_the_content() {
        let mut out = Vec::new();
        WithSha256Trailer::new(&b"etcd"[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(&out[..4], b"etcd");
        assert_eq!(&out[4..], Sha256::digest(b"etcd").as_slice());
    }
}

//! Bounded byte pipes between blocking work (file I/O, compression) and async uploads.
//!
//! [`compressed_body`] runs the compressor on a blocking thread and hands its output to the
//! store as an `AsyncRead`, at most [`PIPE_CAPACITY`] chunks ahead of the upload: memory stays
//! bounded whatever the snapshot size, and compression overlaps the upload.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use snapstore::{Body, Keyring};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;

use crate::compress::Compression;

/// Size of one chunk handed from the compressor to the uploader.
pub const PIPE_CHUNK: usize = 256 * 1024;
/// Chunks in flight between the compressor and the uploader.
pub const PIPE_CAPACITY: usize = 8;

/// Compresses `source` on a blocking thread, then encrypts it when `seal` has recipients (the
/// store's keyring, [`SnapStore::keyring`](snapstore::SnapStore::keyring)), and returns the
/// stream as a [`Body`]. A compression, encryption or read error surfaces as an error of the
/// body's reads, so the upload fails and no object is stored.
pub fn compressed_body<R: Read + Send + 'static>(
    source: R,
    compression: Compression,
    seal: &Keyring,
) -> Body {
    let seal = seal.encrypts().then(|| seal.clone());
    produced_body(move |w| match seal {
        None => compression.compress(source, w).map(drop),
        Some(keyring) => {
            let mut sealed = keyring.seal(w)?;
            compression.compress(source, &mut sealed)?;
            sealed.finish().map(drop)
        }
    })
}

/// The object `body` (named `name`) encrypted for `to`'s recipients: decrypted first with
/// `from`'s identities when given (the object is encrypted), streamed on a blocking thread, the
/// plaintext never on disk or whole in memory. A decryption error fails the body's reads.
pub fn resealed_body(body: Body, name: &str, from: Option<Keyring>, to: &Keyring) -> Body {
    let (to, name) = (to.clone(), name.to_owned());
    let input = io::BufReader::with_capacity(PIPE_CHUNK, tokio_util::io::SyncIoBridge::new(body));
    produced_body(move |w| {
        let mut plain: Box<dyn Read + Send> = match from {
            Some(keyring) => keyring
                .open(&name, input)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
            None => Box::new(input),
        };
        let mut sealed = to.seal(w)?;
        io::copy(&mut plain, &mut sealed)?;
        sealed.finish().map(drop)
    })
}

/// Runs `produce` on a blocking thread and returns what it writes as a [`Body`]; its error
/// becomes an error of the body's reads.
fn produced_body(
    produce: impl FnOnce(&mut ChannelWriter) -> io::Result<()> + Send + 'static,
) -> Body {
    let (tx, rx) = mpsc::channel(PIPE_CAPACITY);
    tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter {
            tx,
            buf: BytesMut::with_capacity(PIPE_CHUNK),
        };
        let result = produce(&mut w).and_then(|()| w.flush());
        if let Err(e) = result {
            let _ = w.tx.blocking_send(Err(e));
        }
    });
    Box::new(ChannelReader {
        rx,
        cur: Bytes::new(),
    })
}

struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: BytesMut,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.buf.reserve(PIPE_CHUNK);
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped reading"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(PIPE_CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= PIPE_CHUNK {
            self.send()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
}

impl AsyncRead for ChannelReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.cur.is_empty() {
                let n = self.cur.len().min(out.remaining());
                out.put_slice(&self.cur.split_to(n));
                return Poll::Ready(Ok(()));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(chunk))) => self.cur = chunk,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streams_compressed_bytes() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut body = compressed_body(
            io::Cursor::new(data.clone()),
            Compression::Gzip,
            &Keyring::default(),
        );
        let mut z = Vec::new();
        body.read_to_end(&mut z).await.unwrap();
        let mut back = Vec::new();
        Compression::Gzip.decompress(&z[..], &mut back).unwrap();
        assert_eq!(back, data);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_source_fails_the_body() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("disk error"));
                }
                self.0 -= 1;
                buf[0] = 1;
                Ok(1)
            }
        }
        let mut body = compressed_body(Failing(10), Compression::None, &Keyring::default());
        let mut out = Vec::new();
        let e = body.read_to_end(&mut out).await.unwrap_err();
        assert_eq!(e.to_string(), "disk error");
    }
}

//! Snapshot compression: gzip (`.gz`), zlib (`.zlib`) and Go's raw LZW (`.Z`, LSB order,
//! literal width 8), the three policies of the original, plus "none" and, as an etcdbr
//! extension the original cannot read, zstd (`.zst`).
//!
//! The suffix in a snapshot's name says how it is compressed; the content is never sniffed.
//! Output of the original's three codecs is readable by Go's `compress/*` packages and the
//! other way round. gzip and zstd are written as indexed units (`frames`) that restore decodes
//! on every core (`parallel_read`); gzip from other encoders still reads, on one core.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use parallel::Encoding;
use parallel_read::{ParallelReader, Units};

mod frames;
mod parallel;
mod parallel_read;
mod pool;

/// The cores this process may use: compression workers, and the restore's share of them.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// A compression policy and the suffix it gives snapshot names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// No compression; no suffix.
    None,
    /// gzip at Go's default level (6); suffix `.gz`.
    #[default]
    Gzip,
    /// zlib at the default level; suffix `.zlib`.
    Zlib,
    /// Go `compress/lzw` LSB with 8-bit literals; suffix `.Z` (not Unix `compress`).
    Lzw,
    /// zstd at level 3, in indexed frames of 1 MiB; suffix `.zst`. An etcdbr extension: the
    /// original cannot read it.
    Zstd,
}

/// A policy or suffix that is not one of the supported ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CompressionError {
    /// `--compression-policy` has an unknown value.
    #[error("compression policy {0:?} is not supported; use gzip, zlib, lzw or zstd")]
    UnknownPolicy(String),
    /// A snapshot name carries an unknown suffix.
    #[error("unsupported compression suffix {0:?} (expected .gz, .zlib, .Z, .zst or none)")]
    UnknownSuffix(String),
}

impl Compression {
    /// The policy for `--compress-snapshots` and `--compression-policy`.
    ///
    /// # Errors
    /// [`CompressionError::UnknownPolicy`] when compression is enabled with an unknown policy.
    pub fn from_flags(enabled: bool, policy: &str) -> Result<Compression, CompressionError> {
        if enabled {
            policy.parse()
        } else {
            Ok(Compression::None)
        }
    }

    /// The name suffix: `""`, `.gz`, `.zlib`, `.Z` or `.zst`.
    #[must_use]
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => ".gz",
            Compression::Zlib => ".zlib",
            Compression::Lzw => ".Z",
            Compression::Zstd => ".zst",
        }
    }

    /// The compression a name suffix denotes.
    ///
    /// # Errors
    /// [`CompressionError::UnknownSuffix`].
    pub fn from_suffix(suffix: &str) -> Result<Compression, CompressionError> {
        match suffix {
            "" => Ok(Compression::None),
            ".gz" => Ok(Compression::Gzip),
            ".zlib" => Ok(Compression::Zlib),
            ".Z" => Ok(Compression::Lzw),
            ".zst" => Ok(Compression::Zstd),
            other => Err(CompressionError::UnknownSuffix(other.to_owned())),
        }
    }

    /// Compresses everything `input` yields into `output`; returns the bytes read from `input`.
    /// gzip, zlib and zstd use every core (see `parallel`).
    ///
    /// # Errors
    /// Reading, writing or encoding fails.
    pub fn compress(self, mut input: impl Read, output: impl Write) -> io::Result<u64> {
        match self {
            Compression::None => {
                let mut output = output;
                io::copy(&mut input, &mut output)
            }
            Compression::Gzip => parallel::compress(Encoding::Gzip, cores(), input, output),
            Compression::Zlib => parallel::compress(Encoding::Zlib, cores(), input, output),
            Compression::Zstd => parallel::compress(Encoding::Zstd, cores(), input, output),
            Compression::Lzw => {
                let mut output = output;
                let mut enc = weezl::encode::Encoder::new(weezl::BitOrder::Lsb, 8);
                let mut counted = CountingReader { inner: input, n: 0 };
                enc.into_stream(&mut output)
                    .encode_all(io::BufReader::with_capacity(64 * 1024, &mut counted))
                    .status?;
                Ok(counted.n)
            }
        }
    }

    /// Decompresses everything `input` yields into `output`; returns the bytes written.
    ///
    /// # Errors
    /// Reading, writing or decoding fails (corrupt input is [`io::ErrorKind::InvalidData`]).
    pub fn decompress(self, input: impl Read + Send, mut output: impl Write) -> io::Result<u64> {
        io::copy(&mut self.reader(input), &mut output)
    }

    /// A reader of the decompressed content of `input` (which should be buffered).
    /// Concatenated gzip members are read as one stream, as Go's gzip reader does, and indexed
    /// gzip and zstd units are decoded on every core; a truncated or corrupt stream is an
    /// [`io::ErrorKind::InvalidData`] or [`io::ErrorKind::UnexpectedEof`] error, never a short
    /// read. For large objects on the critical path (a full snapshot); see [`Self::serial_reader`].
    pub fn reader<'a>(self, input: impl Read + Send + 'a) -> Box<dyn Read + Send + 'a> {
        match self {
            Compression::Gzip => Box::new(ParallelReader::new(Units::Gzip, input)),
            Compression::Zstd => Box::new(ParallelReader::new(Units::Zstd, input)),
            other => other.serial_reader(input),
        }
    }

    /// As [`Self::reader`], decoding on the calling thread: for objects read several at once
    /// (deltas, each on its own fetcher), where parallelism across objects is enough and a
    /// parallel reader's units in flight would only multiply the memory.
    pub fn serial_reader<'a>(self, input: impl Read + Send + 'a) -> Box<dyn Read + Send + 'a> {
        match self {
            Compression::None => Box::new(input),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
            Compression::Zstd => match zstd::stream::read::Decoder::new(input) {
                Ok(d) => Box::new(d),
                Err(e) => Box::new(Failed(Some(e))),
            },
            Compression::Zlib => Box::new(flate2::read::ZlibDecoder::new(input)),
            Compression::Lzw => Box::new(LzwReader {
                inner: input,
                decoder: weezl::decode::Decoder::new(weezl::BitOrder::Lsb, 8),
                buf: vec![0; 64 * 1024],
                start: 0,
                end: 0,
                done: false,
            }),
        }
    }
}

/// A reader whose decoder could not be set up: its first read is the error.
struct Failed(Option<io::Error>);

impl Read for Failed {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(self
            .0
            .take()
            .unwrap_or_else(|| io::Error::other("decoder unavailable")))
    }
}

/// Pulls LZW-coded bytes from `inner` and decodes them into the caller's buffer.
struct LzwReader<R> {
    inner: R,
    decoder: weezl::decode::Decoder,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    done: bool,
}

impl<R: Read> Read for LzwReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.done || out.is_empty() {
            return Ok(0);
        }
        loop {
            let mut at_eof = false;
            if self.start == self.end {
                self.start = 0;
                self.end = self.inner.read(&mut self.buf)?;
                at_eof = self.end == 0;
            }
            // At the end of the input the decoder still gets a call: it may hold the end code.
            let r = self
                .decoder
                .decode_bytes(&self.buf[self.start..self.end], out);
            self.start += r.consumed_in;
            match r.status {
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
                Ok(weezl::LzwStatus::Done) => {
                    self.done = true;
                    return Ok(r.consumed_out);
                }
                Ok(_) if r.consumed_out > 0 => return Ok(r.consumed_out),
                Ok(_) if at_eof => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "lzw stream ends without its end code",
                    ));
                }
                Ok(_) if r.consumed_in == 0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "lzw decoder made no progress",
                    ));
                }
                Ok(_) => {}
            }
        }
    }
}

impl FromStr for Compression {
    type Err = CompressionError;
    fn from_str(s: &str) -> Result<Compression, CompressionError> {
        match s {
            "gzip" => Ok(Compression::Gzip),
            "zlib" => Ok(Compression::Zlib),
            "lzw" => Ok(Compression::Lzw),
            "zstd" => Ok(Compression::Zstd),
            other => Err(CompressionError::UnknownPolicy(other.to_owned())),
        }
    }
}

impl Compression {
    /// The policy's name, as `--compression-policy` spells it (`none` without compression).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zlib => "zlib",
            Compression::Lzw => "lzw",
            Compression::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

struct CountingReader<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.inner.read(buf)?;
        self.n += r as u64;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Zlib,
        Compression::Lzw,
        Compression::Zstd,
    ];

    fn sample() -> Vec<u8> {
        let mut v = Vec::new();
        for i in 0..200_000u32 {
            v.extend_from_slice(
                format!("key-{}-{}\n", i % 977, i.wrapping_mul(2_654_435_761)).as_bytes(),
            );
        }
        v
    }

    #[test]
    fn round_trips() {
        let data = sample();
        for c in ALL {
            let mut z = Vec::new();
            assert_eq!(c.compress(&data[..], &mut z).unwrap(), data.len() as u64);
            if c != Compression::None {
                assert!(z.len() < data.len() / 2, "{c} compresses");
            }
            let mut back = Vec::new();
            assert_eq!(c.decompress(&z[..], &mut back).unwrap(), data.len() as u64);
            assert_eq!(back, data, "{c}");
        }
    }

    #[test]
    fn empty_input_round_trips() {
        for c in ALL {
            let mut z = Vec::new();
            c.compress(&b""[..], &mut z).unwrap();
            let mut back = Vec::new();
            c.decompress(&z[..], &mut back).unwrap();
            assert!(back.is_empty());
        }
    }

    #[test]
    fn suffixes_and_policies() {
        for c in ALL {
            assert_eq!(Compression::from_suffix(c.suffix()).unwrap(), c);
        }
        assert_eq!(
            Compression::from_flags(false, "bogus").unwrap(),
            Compression::None
        );
        assert_eq!(
            Compression::from_flags(true, "lzw").unwrap(),
            Compression::Lzw
        );
        assert_eq!(
            Compression::from_flags(true, "zstd").unwrap(),
            Compression::Zstd
        );
        assert!(
            Compression::from_flags(true, "xz")
                .unwrap_err()
                .to_string()
                .contains("gzip, zlib, lzw or zstd")
        );
        assert!(Compression::from_suffix(".bz2").is_err());
    }

    #[test]
    fn corrupt_input_is_an_error() {
        for c in [Compression::Gzip, Compression::Zlib, Compression::Zstd] {
            let mut z = Vec::new();
            c.compress(&sample()[..], &mut z).unwrap();
            let mid = z.len() / 2;
            z[mid] ^= 0xff;
            z.truncate(mid + 10);
            assert!(c.decompress(&z[..], &mut Vec::new()).is_err(), "{c}");
        }
    }

    /// Concatenated gzip members decode as one stream, as Go's reader does (parallel
    /// compressors write such files).
    #[test]
    fn gzip_multi_member() {
        let mut z = Vec::new();
        Compression::Gzip.compress(&b"hello "[..], &mut z).unwrap();
        Compression::Gzip.compress(&b"world"[..], &mut z).unwrap();
        let mut back = Vec::new();
        Compression::Gzip.decompress(&z[..], &mut back).unwrap();
        assert_eq!(back, b"hello world");
    }
}

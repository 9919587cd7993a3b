//! Compression on every core, with a stream any reader of the format reads as output.
//!
//! The input is cut into blocks, which the codec workers (`pool`) encode in parallel; their
//! output is written in order, never more than `2 × threads` blocks behind the reader, and the
//! buffers are reused from block to block, so memory is bounded whatever the input's size.
//!
//! - **gzip** and **zstd**: each block is an independent unit that announces its length
//!   (`frames`), so that a restore decodes them on every core too (`parallel_read`).
//! - **zlib** has no multi-member form: each 256 KiB block is deflated with the previous block's
//!   last 32 KiB as its dictionary and ends with a sync flush (a byte-aligned empty stored
//!   block), the last block with the final block. Their concatenation is one deflate stream, in
//!   one zlib stream whose Adler-32 the caller's thread computes as the blocks are read.
//!
//! Go's `compress/gzip` and `compress/zlib` read the output (`tests/compat.rs`).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, sync_channel};

use super::frames;
use super::pool::Workers;

/// Input bytes per zlib block: large enough that the sync flush and the dictionary cost little,
/// small enough that the blocks in flight stay near 1 MiB in all.
const ZLIB_BLOCK: usize = 256 * 1024;
/// Deflate's window: the dictionary each zlib block starts from.
const WINDOW: usize = 32 * 1024;

/// What the blocks become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// Indexed gzip members ([`frames::gzip_member`]).
    Gzip,
    /// One zlib stream (RFC 1950, no preset dictionary) of chained deflate blocks.
    Zlib,
    /// Indexed zstd frames ([`frames::zstd_frame`]).
    Zstd,
}

impl Encoding {
    fn block(self) -> usize {
        match self {
            Encoding::Zlib => ZLIB_BLOCK,
            Encoding::Gzip | Encoding::Zstd => frames::UNIT,
        }
    }
}

/// A block's buffers: input, dictionary (zlib only), output. They travel to the worker and
/// back, so a compression reuses the same few blocks of memory from start to end.
type Buffers = (Vec<u8>, Vec<u8>, Vec<u8>);

/// Compresses `input` into `output` with at most `threads` blocks being encoded at once;
/// returns the bytes read.
///
/// # Errors
/// Reading or writing fails, or the encoder reports an error.
pub(crate) fn compress(
    encoding: Encoding,
    threads: usize,
    mut input: impl Read,
    mut output: impl Write,
) -> io::Result<u64> {
    let workers = Workers::get()?;
    let gone = || io::Error::other("a codec worker stopped");
    let level = flate2::Compression::default();
    let mut adler = (encoding == Encoding::Zlib).then(Adler32::default);
    if adler.is_some() {
        // CMF: deflate, 32 KiB window; FLG: default level, no dictionary, FCHECK.
        output.write_all(&[0x78, 0x9c])?;
    }
    let size = encoding.block();
    let mut pending: VecDeque<Receiver<(io::Result<()>, Buffers)>> = VecDeque::new();
    let mut spare: Vec<Buffers> = Vec::new();
    let mut total = 0u64;
    let mut dictionary = Vec::new();
    let mut block = Vec::with_capacity(size);
    read_block(&mut input, &mut block, size)?;
    loop {
        let (mut next, mut next_dictionary, mut out) = spare
            .pop()
            .unwrap_or_else(|| (Vec::with_capacity(size), Vec::new(), Vec::new()));
        if block.len() == size {
            read_block(&mut input, &mut next, size)?;
        } else {
            next.clear();
        }
        let last = next.is_empty();
        total += block.len() as u64;
        next_dictionary.clear();
        if let Some(adler) = &mut adler {
            adler.update(&block);
            next_dictionary.extend_from_slice(&block[block.len().saturating_sub(WINDOW)..]);
        }
        let input = std::mem::replace(&mut block, next);
        let dict = std::mem::replace(&mut dictionary, next_dictionary);
        let (tx, rx) = sync_channel(1);
        workers
            .run(move || {
                let result = match encoding {
                    Encoding::Gzip => frames::gzip_member(level, &input, &mut out),
                    Encoding::Zstd => frames::zstd_frame(&input, &mut out),
                    Encoding::Zlib => {
                        out.clear();
                        frames::deflate(level, &input, &dict, last, &mut out)
                    }
                };
                let _ = tx.send((result, (input, dict, out)));
            })
            .map_err(|_| gone())?;
        pending.push_back(rx);
        while pending.len() > threads.max(1) * 2 || (last && !pending.is_empty()) {
            let Some(rx) = pending.pop_front() else { break };
            let (result, buffers) = rx.recv().map_err(|_| gone())?;
            result?;
            output.write_all(&buffers.2)?;
            spare.push(buffers);
        }
        if last {
            break;
        }
    }
    if let Some(adler) = adler {
        output.write_all(&adler.sum().to_be_bytes())?;
    }
    output.flush()?;
    Ok(total)
}

fn read_block(input: &mut impl Read, block: &mut Vec<u8>, size: usize) -> io::Result<()> {
    block.clear();
    input.take(size as u64).read_to_end(block)?;
    Ok(())
}

/// Adler-32 (RFC 1950), with the modulo deferred over runs short enough not to overflow.
struct Adler32 {
    a: u32,
    b: u32,
}

impl Default for Adler32 {
    fn default() -> Adler32 {
        Adler32 { a: 1, b: 0 }
    }
}

impl Adler32 {
    const MOD: u32 = 65521;
    /// The longest run for which `b` cannot overflow a u32 before the modulo.
    const RUN: usize = 5552;

    fn update(&mut self, data: &[u8]) {
        for run in data.chunks(Self::RUN) {
            for &byte in run {
                self.a += u32::from(byte);
                self.b += self.a;
            }
            self.a %= Self::MOD;
            self.b %= Self::MOD;
        }
    }

    fn sum(&self) -> u32 {
        (self.b << 16) | self.a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..len)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Half text-like repetition, half noise: both code paths of the encoder.
                if i % 4096 < 2048 {
                    b"etcd key value "[i % 15]
                } else {
                    (x >> 56) as u8
                }
            })
            .collect()
    }

    fn compressed(encoding: Encoding, data: &[u8], threads: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let n = compress(encoding, threads, data, &mut out).unwrap();
        assert_eq!(n, data.len() as u64);
        out
    }

    fn roundtrip(encoding: Encoding, len: usize, threads: usize) {
        let data = sample(len);
        let out = compressed(encoding, &data, threads);
        let mut back = Vec::new();
        match encoding {
            Encoding::Gzip => flate2::read::MultiGzDecoder::new(&out[..])
                .read_to_end(&mut back)
                .unwrap(),
            Encoding::Zlib => flate2::read::ZlibDecoder::new(&out[..])
                .read_to_end(&mut back)
                .unwrap(),
            // The stock streaming decoder, which skips the index frames.
            Encoding::Zstd => zstd::stream::read::Decoder::new(&out[..])
                .unwrap()
                .read_to_end(&mut back)
                .unwrap(),
        };
        assert!(back == data, "{encoding:?} {len} bytes, {threads} threads");
    }

    #[test]
    fn output_is_a_stream_any_reader_decodes() {
        for encoding in [Encoding::Gzip, Encoding::Zlib, Encoding::Zstd] {
            let b = encoding.block();
            for len in [0, 1, 100, b - 1, b, b + 1, 3 * b + 12_345] {
                for threads in [1, 2, 4] {
                    roundtrip(encoding, len, threads);
                }
            }
        }
    }

    #[test]
    fn gzip_members_cost_under_one_percent_against_a_serial_encoder() {
        let data = sample(8 * frames::UNIT);
        let ours = compressed(Encoding::Gzip, &data, 2);
        let mut serial = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        serial.write_all(&data).unwrap();
        let serial = serial.finish().unwrap();
        assert!(
            ours.len() as f64 <= serial.len() as f64 * 1.01,
            "members {} vs serial {}",
            ours.len(),
            serial.len()
        );
    }

    #[test]
    fn every_gzip_member_announces_its_length() {
        let data = sample(3 * frames::UNIT + 5);
        let out = compressed(Encoding::Gzip, &data, 2);
        let mut at = 0;
        let mut content = 0;
        while at < out.len() {
            let (member, len) = frames::gzip_index(&out[at..]).expect("an indexed member");
            let mut back = Vec::new();
            frames::gunzip_member(&out[at..at + member], len, &mut back).unwrap();
            assert_eq!(back, data[content..content + len]);
            at += member;
            content += len;
        }
        assert_eq!((at, content), (out.len(), data.len()));
    }

    #[test]
    fn adler32_matches_known_values() {
        let mut a = Adler32::default();
        a.update(b"Wikipedia");
        assert_eq!(a.sum(), 0x11E6_0398);
        let mut long = Adler32::default();
        long.update(&vec![0xff; 100_000]);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&vec![0xff; 100_000]).unwrap();
        let z = z.finish().unwrap();
        assert_eq!(long.sum().to_be_bytes(), z[z.len() - 4..]);
    }
}

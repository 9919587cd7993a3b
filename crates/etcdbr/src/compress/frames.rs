//! Independently decodable units of a compressed stream, each announcing its own length up
//! front, so that a reader can cut the stream into units without decoding it and decode the
//! units on every core (`parallel_read`).
//!
//! - **gzip**: each unit is a whole gzip member (RFC 1952) of at most [`UNIT`] input bytes,
//!   deflated without a dictionary. Its header carries an extra field (FEXTRA) with one
//!   subfield `EB` (etcdbr) of 8 bytes: the member's length, header to trailer, and its
//!   uncompressed length, both u32 little-endian. BGZF does the same with its `BC` subfield
//!   (whose 16-bit length caps members at 64 KiB). Any gzip reader reads the members as one
//!   stream, Go's `compress/gzip` included (multistream is its default).
//! - **zstd**: each unit is a skippable frame (magic [`ZSTD_INDEX_MAGIC`], 8 bytes: the next
//!   frame's compressed and uncompressed lengths, u32 little-endian), then a zstd frame with its
//!   content size and checksum. `zstd -d` skips the skippable frames.

use std::cell::RefCell;
use std::io;

use flate2::{Compress, Crc, Decompress, FlushCompress, FlushDecompress, Status};

/// Uncompressed bytes per unit: large enough that starting each unit without a dictionary
/// costs well under 1 % of size, small enough that the units in flight on every core stay at a
/// few MiB.
pub(super) const UNIT: usize = 1 << 20;
/// The largest unit a reader accepts (a larger claim is corrupt data, not an allocation).
pub(super) const MAX_UNIT: usize = 64 << 20;

/// gzip member header: magic, CM=8, FLG=FEXTRA, MTIME=0, XFL=0, OS=255 (unknown), XLEN=12.
const GZIP_HEAD: [u8; 12] = [0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 255, 12, 0];
/// The subfield: id `EB`, length 8.
const GZIP_SUBFIELD: [u8; 4] = [b'E', b'B', 8, 0];
/// Header bytes of one of our members.
pub(super) const GZIP_HEADER_LEN: usize = GZIP_HEAD.len() + GZIP_SUBFIELD.len() + 8;
/// The skippable-frame magic of the zstd index frames (one of the 16 zstd reserves).
pub(super) const ZSTD_INDEX_MAGIC: u32 = 0x184D_2A5E;
/// Bytes of an index frame: magic, frame size (8), two lengths.
pub(super) const ZSTD_INDEX_LEN: usize = 16;
/// zstd's default level (the `zstd` CLI's too).
const ZSTD_LEVEL: i32 = 3;

thread_local! {
    static DEFLATE: RefCell<Option<(flate2::Compression, Compress)>> = const { RefCell::new(None) };
    static INFLATE: RefCell<Option<Decompress>> = const { RefCell::new(None) };
    static ZSTD_C: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    static ZSTD_D: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

fn corrupt(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// Deflates `input` into `out` (raw deflate, appended), with `dictionary` as the window it
/// starts from, ending with the final block when `last` and with a sync flush otherwise; on the
/// calling worker's reused encoder.
pub(super) fn deflate(
    level: flate2::Compression,
    input: &[u8],
    dictionary: &[u8],
    last: bool,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    DEFLATE.with_borrow_mut(|slot| {
        let c = match slot {
            Some((l, c)) if *l == level => {
                c.reset();
                c
            }
            slot => &mut slot.insert((level, Compress::new(level, false))).1,
        };
        deflate_with(c, input, dictionary, last, out)
    })
}

fn deflate_with(
    c: &mut Compress,
    input: &[u8],
    dictionary: &[u8],
    last: bool,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    if !dictionary.is_empty() {
        c.set_dictionary(dictionary).map_err(io::Error::other)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    out.reserve(input.len() + input.len() / 16 + 64);
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(1024));
        }
        let consumed = usize::try_from(c.total_in()).unwrap_or(usize::MAX);
        let status = c
            .compress_vec(&input[consumed.min(input.len())..], out, flush)
            .map_err(io::Error::other)?;
        let all_in = c.total_in() as usize == input.len();
        // A flush is complete when the encoder returns with output space left over.
        match status {
            Status::StreamEnd => return Ok(()),
            _ if all_in && !last && out.len() < out.capacity() => return Ok(()),
            _ => {}
        }
    }
}

/// Writes `input` (at most [`UNIT`] bytes) as one indexed gzip member into `out` (cleared).
pub(super) fn gzip_member(
    level: flate2::Compression,
    input: &[u8],
    out: &mut Vec<u8>,
) -> io::Result<()> {
    out.clear();
    out.extend_from_slice(&GZIP_HEAD);
    out.extend_from_slice(&GZIP_SUBFIELD);
    out.extend_from_slice(&[0; 8]); // the lengths, known once deflated
    deflate(level, input, &[], true, out)?;
    let mut crc = Crc::new();
    crc.update(input);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&u32_len(input.len())?.to_le_bytes());
    let member = u32_len(out.len())?;
    let at = GZIP_HEAD.len() + GZIP_SUBFIELD.len();
    out[at..at + 4].copy_from_slice(&member.to_le_bytes());
    out[at + 4..at + 8].copy_from_slice(&u32_len(input.len())?.to_le_bytes());
    Ok(())
}

fn u32_len(n: usize) -> io::Result<u32> {
    u32::try_from(n).map_err(|_| io::Error::other("a compression unit over 4 GiB"))
}

/// The lengths our member header announces (member, uncompressed), or `None` when `head` (the
/// first [`GZIP_HEADER_LEN`] bytes of a member) is not one of ours: written by another
/// encoder, such as the original's single member.
pub(super) fn gzip_index(head: &[u8]) -> Option<(usize, usize)> {
    if head.len() < GZIP_HEADER_LEN
        || head[..4] != GZIP_HEAD[..4]
        || head[10..12] != GZIP_HEAD[10..12]
        || head[12..16] != GZIP_SUBFIELD
    {
        return None;
    }
    let member = u32::from_le_bytes([head[16], head[17], head[18], head[19]]) as usize;
    let content = u32::from_le_bytes([head[20], head[21], head[22], head[23]]) as usize;
    Some((member, content))
}

/// Inflates one of our members (`member`, whole) into `out` (cleared), checking its CRC-32 and
/// length.
pub(super) fn gunzip_member(member: &[u8], content: usize, out: &mut Vec<u8>) -> io::Result<()> {
    if member.len() < GZIP_HEADER_LEN + 8 {
        return Err(corrupt("a gzip member shorter than its header and trailer"));
    }
    let (body, trailer) = member[GZIP_HEADER_LEN..].split_at(member.len() - GZIP_HEADER_LEN - 8);
    out.clear();
    out.reserve_exact(content);
    INFLATE.with_borrow_mut(|slot| -> io::Result<()> {
        let d = match slot {
            Some(d) => {
                d.reset(false);
                d
            }
            slot => slot.insert(Decompress::new(false)),
        };
        loop {
            let consumed = usize::try_from(d.total_in()).unwrap_or(usize::MAX);
            let produced = out.len();
            if out.len() == out.capacity() {
                // More output than the header said: let the check below name it.
                out.reserve(64 * 1024);
            }
            let status = d
                .decompress_vec(
                    &body[consumed.min(body.len())..],
                    out,
                    FlushDecompress::Finish,
                )
                .map_err(|e| corrupt(format!("corrupt deflate data: {e}")))?;
            match status {
                Status::StreamEnd => break,
                _ if d.total_in() as usize >= body.len() && out.len() < out.capacity() => {
                    return Err(corrupt("a gzip member's deflate data ends early"));
                }
                _ if d.total_in() as usize == consumed && out.len() == produced => {
                    return Err(corrupt("the gzip member's inflate made no progress"));
                }
                _ => {}
            }
            if out.len() > MAX_UNIT {
                return Err(corrupt("a gzip member inflates to more than it says"));
            }
        }
        if d.total_in() as usize != body.len() {
            return Err(corrupt("a gzip member has data after its deflate stream"));
        }
        Ok(())
    })?;
    let mut crc = Crc::new();
    crc.update(out);
    let want_crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let want_len = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]) as usize;
    if crc.sum() != want_crc {
        return Err(corrupt("gzip member CRC-32 mismatch"));
    }
    if out.len() != want_len || out.len() != content {
        return Err(corrupt("a gzip member's length differs from its header"));
    }
    Ok(())
}

/// Writes `input` (at most [`UNIT`] bytes) as an index frame and a zstd frame into `out`
/// (cleared).
pub(super) fn zstd_frame(input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    ZSTD_C.with_borrow_mut(|slot| -> io::Result<()> {
        let c = match slot {
            Some(c) => c,
            slot => {
                let mut c = zstd::bulk::Compressor::new(ZSTD_LEVEL)?;
                c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
                slot.insert(c)
            }
        };
        out.clear();
        out.reserve(ZSTD_INDEX_LEN + zstd::zstd_safe::compress_bound(input.len()));
        // The frame goes into a buffer of its own: the bulk API writes from its start.
        let mut frame = Vec::with_capacity(zstd::zstd_safe::compress_bound(input.len()));
        let n = c.compress_to_buffer(input, &mut frame)?;
        out.extend_from_slice(&ZSTD_INDEX_MAGIC.to_le_bytes());
        out.extend_from_slice(&8u32.to_le_bytes());
        out.extend_from_slice(&u32_len(n)?.to_le_bytes());
        out.extend_from_slice(&u32_len(input.len())?.to_le_bytes());
        out.extend_from_slice(&frame[..n]);
        Ok(())
    })
}

/// The lengths an index frame announces for the next frame (compressed, uncompressed), or
/// `None` when `head` (the first [`ZSTD_INDEX_LEN`] bytes) is not an index frame.
pub(super) fn zstd_index(head: &[u8]) -> Option<(usize, usize)> {
    if head.len() < ZSTD_INDEX_LEN
        || head[..4] != ZSTD_INDEX_MAGIC.to_le_bytes()
        || head[4..8] != 8u32.to_le_bytes()
    {
        return None;
    }
    let frame = u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize;
    let content = u32::from_le_bytes([head[12], head[13], head[14], head[15]]) as usize;
    Some((frame, content))
}

/// Decodes one zstd frame of `content` bytes into `out` (cleared); zstd checks the frame's
/// checksum.
pub(super) fn unzstd_frame(frame: &[u8], content: usize, out: &mut Vec<u8>) -> io::Result<()> {
    out.clear();
    out.reserve_exact(content);
    let n = ZSTD_D.with_borrow_mut(|slot| -> io::Result<usize> {
        let d = match slot {
            Some(d) => d,
            slot => slot.insert(zstd::bulk::Decompressor::new()?),
        };
        d.decompress_to_buffer(frame, out)
            .map_err(|e| corrupt(format!("corrupt zstd frame: {e}")))
    })?;
    if n != content {
        return Err(corrupt("a zstd frame's length differs from its index"));
    }
    Ok(())
}

//! Decompression on every core, of streams cut into indexed units (`frames`).
//!
//! The reader reads each unit's header, then the unit's bytes whole, and hands the unit to a
//! codec worker; the decoded units come back in order, at most `2 × cores` ahead of the
//! caller. A stream, or the rest of one, that is not made of indexed units (an object the
//! original or another tool wrote: one gzip member, or zstd frames without index) goes to the
//! format's stock streaming decoder from there on, on the calling thread: it restores, on one
//! core.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::mpsc::{Receiver, sync_channel};

use super::frames;
use super::pool::Workers;

/// The unit format of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Units {
    /// Indexed gzip members, or any gzip stream.
    Gzip,
    /// Indexed zstd frames, or any zstd stream.
    Zstd,
}

impl Units {
    fn header_len(self) -> usize {
        match self {
            Units::Gzip => frames::GZIP_HEADER_LEN,
            Units::Zstd => frames::ZSTD_INDEX_LEN,
        }
    }

    /// The unit's length to read (header included for gzip, the frame after the index for
    /// zstd) and its decoded length, if `head` starts an indexed unit.
    fn index(self, head: &[u8]) -> Option<(usize, usize)> {
        match self {
            Units::Gzip => frames::gzip_index(head),
            Units::Zstd => frames::zstd_index(head),
        }
    }

    fn stock<'a>(self, input: impl Read + Send + 'a) -> io::Result<Box<dyn Read + Send + 'a>> {
        Ok(match self {
            Units::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
            Units::Zstd => Box::new(zstd::stream::read::Decoder::new(input)?),
        })
    }
}

enum Source<'a, R> {
    /// Reading indexed units.
    Units(R),
    /// The stock decoder, from the first unit that is not indexed on.
    Stock(Box<dyn Read + Send + 'a>),
    /// At the end, or after an error.
    Done,
}

/// A decoded unit or its error, with the buffers to reuse (raw, decoded).
type Decoded = (io::Result<()>, Vec<u8>, Vec<u8>);

/// A reader of the decompressed content of a gzip or zstd stream; see the module doc.
pub(crate) struct ParallelReader<'a, R> {
    units: Units,
    source: Source<'a, R>,
    workers: Option<Workers>,
    pending: VecDeque<Receiver<Decoded>>,
    depth: usize,
    current: Vec<u8>,
    pos: usize,
    spare: Vec<(Vec<u8>, Vec<u8>)>,
    read_units: u64,
}

impl<'a, R: Read + Send + 'a> ParallelReader<'a, R> {
    /// Decodes `input` as `units`.
    pub(crate) fn new(units: Units, input: R) -> ParallelReader<'a, R> {
        ParallelReader {
            units,
            source: Source::Units(input),
            workers: None,
            pending: VecDeque::new(),
            depth: 2 * super::cores(),
            current: Vec::new(),
            pos: 0,
            spare: Vec::new(),
            read_units: 0,
        }
    }

    /// Reads the next unit and hands it to a worker; `false` when the indexed units ended (the
    /// source is then at its end or in the stock decoder).
    fn submit_next(&mut self) -> io::Result<bool> {
        let Source::Units(input) = &mut self.source else {
            return Ok(false);
        };
        let header_len = self.units.header_len();
        let (mut raw, out) = self.spare.pop().unwrap_or_default();
        raw.clear();
        raw.resize(header_len, 0);
        let got = read_up_to(input, &mut raw)?;
        raw.truncate(got);
        let index = self.units.index(&raw);
        let Some((len, content)) = index else {
            if got == 0 && self.read_units > 0 {
                self.source = Source::Done;
            } else {
                // Not ours: the stock decoder reads it from its first byte.
                let Source::Units(input) = std::mem::replace(&mut self.source, Source::Done) else {
                    return Ok(false);
                };
                self.source = Source::Stock(self.units.stock(io::Cursor::new(raw).chain(input))?);
            }
            return Ok(false);
        };
        // gzip: the member's length includes its header, read already; zstd: the frame
        // follows the index.
        let start = match self.units {
            Units::Gzip => header_len,
            Units::Zstd => 0,
        };
        if len > frames::MAX_UNIT + 1024 || content > frames::MAX_UNIT || len < start {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a compressed unit claims {len} bytes ({content} decoded): corrupt data"),
            ));
        }
        raw.resize(start, 0);
        raw.resize(len, 0);
        input.read_exact(&mut raw[start..]).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the compressed stream is cut off",
                )
            } else {
                e
            }
        })?;
        self.read_units += 1;
        let workers = match &self.workers {
            Some(w) => w.clone(),
            None => self.workers.insert(Workers::get()?).clone(),
        };
        let (tx, rx) = sync_channel(1);
        let units = self.units;
        let mut out = out;
        workers.run(move || {
            let result = match units {
                Units::Gzip => frames::gunzip_member(&raw, content, &mut out),
                Units::Zstd => frames::unzstd_frame(&raw, content, &mut out),
            };
            let _ = tx.send((result, raw, out));
        })?;
        self.pending.push_back(rx);
        Ok(true)
    }

    fn fail(&mut self, e: io::Error) -> io::Error {
        self.source = Source::Done;
        self.pending.clear();
        e
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_up_to(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

impl<'a, R: Read + Send + 'a> Read for ParallelReader<'a, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.current.len() {
                let n = buf.len().min(self.current.len() - self.pos);
                buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            while self.pending.len() < self.depth {
                match self.submit_next() {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => return Err(self.fail(e)),
                }
            }
            if let Some(rx) = self.pending.pop_front() {
                let Ok((result, raw, out)) = rx.recv() else {
                    return Err(self.fail(io::Error::other("a codec worker stopped")));
                };
                if let Err(e) = result {
                    return Err(self.fail(e));
                }
                let old = std::mem::replace(&mut self.current, out);
                self.spare.push((raw, old));
                self.pos = 0;
                continue;
            }
            return match &mut self.source {
                Source::Stock(r) => r.read(buf),
                Source::Done | Source::Units(_) => Ok(0),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress::parallel::{Encoding, compress};
    use std::io::Write;

    fn sample(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| b"etcd revision value "[i % 20] ^ ((i / 7919) as u8 & 3))
            .collect()
    }

    fn decoded(units: Units, data: &[u8]) -> io::Result<Vec<u8>> {
        let mut back = Vec::new();
        ParallelReader::new(units, data).read_to_end(&mut back)?;
        Ok(back)
    }

    #[test]
    fn reads_indexed_and_stock_streams() {
        for len in [0, 1, frames::UNIT, 5 * frames::UNIT + 3] {
            let data = sample(len);
            for (units, encoding) in [(Units::Gzip, Encoding::Gzip), (Units::Zstd, Encoding::Zstd)]
            {
                let mut z = Vec::new();
                compress(encoding, 2, &data[..], &mut z).unwrap();
                assert!(decoded(units, &z).unwrap() == data, "{units:?} {len}");
            }
            // One member by another encoder (as the original writes it).
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&data).unwrap();
            assert!(decoded(Units::Gzip, &gz.finish().unwrap()).unwrap() == data);
            let zs = zstd::stream::encode_all(&data[..], 1).unwrap();
            assert!(decoded(Units::Zstd, &zs).unwrap() == data);
        }
    }

    #[test]
    fn indexed_members_then_a_foreign_one_read_as_one_stream() {
        let (a, b) = (sample(2 * frames::UNIT + 9), sample(1000));
        let mut z = Vec::new();
        compress(Encoding::Gzip, 2, &a[..], &mut z).unwrap();
        let mut gz = flate2::write::GzEncoder::new(z, flate2::Compression::fast());
        gz.write_all(&b).unwrap();
        let z = gz.finish().unwrap();
        let mut want = a.clone();
        want.extend_from_slice(&b);
        assert!(decoded(Units::Gzip, &z).unwrap() == want);
    }

    #[test]
    fn cut_or_damaged_streams_are_errors_never_short_reads() {
        let data = sample(3 * frames::UNIT);
        for (units, encoding) in [(Units::Gzip, Encoding::Gzip), (Units::Zstd, Encoding::Zstd)] {
            let mut z = Vec::new();
            compress(encoding, 2, &data[..], &mut z).unwrap();
            for cut in [1, 10, 30, z.len() / 2, z.len() - 1] {
                assert!(decoded(units, &z[..cut]).is_err(), "{units:?} cut at {cut}");
            }
            for at in [40, z.len() / 3, z.len() - 3] {
                let mut bad = z.clone();
                bad[at] ^= 0x5a;
                assert!(decoded(units, &bad).is_err(), "{units:?} flipped at {at}");
            }
            let mut long = z.clone();
            long.extend_from_slice(b"garbage");
            assert!(decoded(units, &long).is_err(), "{units:?} trailing garbage");
        }
    }
}

//! Each key's newest entry in a `key` bucket, found with bounded memory.
//!
//! Compaction keeps each key's newest revision and `verify` counts the keys alive at a
//! revision; both need, for every distinct key, the last of its entries in the bucket's order.
//! A hash map of the keys grows with their number (300 to 500 MiB for 5.5 million keys). Here
//! the entries' `(key digest, position)` records are gathered in runs of a fixed size; each run
//! is sorted by digest, reduced to its newest record per digest and, when more than one run is
//! needed, appended to an anonymous scratch file; the runs are then merged. Memory is one run
//! (12 MiB, allocated whole: growing it by doubling would hold two at once) plus a read buffer
//! per spilled run; scratch disk is 24 bytes per distinct key of
//! each run, a small fraction of the db.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

use crate::Error;

/// Bytes of SHA-1 kept per key: 128 bits, so that a collision among even billions of keys is
/// out of reach.
const DIGEST: usize = 16;

/// Bytes of a record on disk: the digest and the tagged position.
const RECORD: usize = DIGEST + 8;

/// Records in one run: 512 Ki records, 12 MiB.
const RUN: usize = 1 << 19;

/// Bytes each spilled run reads at a time during the merge.
const READ_BUF: usize = 64 << 10;

/// A key's digest and its entry's position, shifted left once, with the low bit as the tag.
type Record = ([u8; DIGEST], u64);

/// Gathers the entries of a bucket in order, then yields each key's newest one.
pub struct NewestEntries {
    run: Vec<Record>,
    dir: PathBuf,
    spill: Option<Spill>,
}

/// Sorted runs written so far: the scratch file and each run's `(offset, records)`.
struct Spill {
    file: File,
    runs: Vec<(u64, u64)>,
    len: u64,
}

impl NewestEntries {
    /// Gathers records; runs that do not fit in memory go to an anonymous file in `scratch_dir`
    /// (removed when this is dropped, or at exit).
    #[must_use]
    pub fn new(scratch_dir: &Path) -> NewestEntries {
        NewestEntries {
            run: Vec::new(),
            dir: scratch_dir.to_path_buf(),
            spill: None,
        }
    }

    /// Records the entry at `position` (positions must ascend) for `key`, with a `tag` given
    /// back for the key's newest entry.
    ///
    /// # Errors
    /// [`Error::Scratch`] when a full run cannot be written to the scratch file.
    pub fn push(&mut self, key: &[u8], position: u64, tag: bool) -> Result<(), Error> {
        let digest: [u8; 20] = Sha1::digest(key).into();
        let mut d = [0u8; DIGEST];
        d.copy_from_slice(&digest[..DIGEST]);
        if self.run.capacity() == 0 {
            self.run.reserve_exact(RUN);
        }
        self.run.push((d, position << 1 | u64::from(tag)));
        if self.run.len() == RUN {
            self.spill_run()?;
        }
        Ok(())
    }

    /// Calls `f(position, tag)` for each key's newest entry, in digest order (not key order).
    ///
    /// # Errors
    /// [`Error::Scratch`] when the scratch file cannot be written or read back.
    pub fn for_each_newest(mut self, mut f: impl FnMut(u64, bool)) -> Result<(), Error> {
        let mut emit = |at: u64| f(at >> 1, at & 1 == 1);
        if self.spill.is_none() {
            reduce(&mut self.run);
            self.run.iter().for_each(|(_, at)| emit(*at));
            return Ok(());
        }
        if !self.run.is_empty() {
            self.spill_run()?;
        }
        self.run = Vec::new();
        let Some(spill) = self.spill.take() else {
            return Ok(());
        };
        let scratch = |e| Error::Scratch {
            dir: self.dir.clone(),
            source: e,
        };
        let mut readers: Vec<RunReader> = spill
            .runs
            .iter()
            .map(|&(offset, records)| RunReader::new(offset, records))
            .collect();
        // The runs hold ascending positions run after run, so a digest's newest record is the
        // one from the latest run that has it.
        let mut heap = BinaryHeap::new();
        for (i, r) in readers.iter_mut().enumerate() {
            if let Some(rec) = r.next(&spill.file).map_err(scratch)? {
                heap.push(Reverse((rec, i)));
            }
        }
        let mut current: Option<Record> = None;
        while let Some(Reverse((rec, i))) = heap.pop() {
            match current {
                Some((d, at)) if d == rec.0 => current = Some((d, at.max(rec.1))),
                Some((_, at)) => {
                    emit(at);
                    current = Some(rec);
                }
                None => current = Some(rec),
            }
            if let Some(next) = readers[i].next(&spill.file).map_err(scratch)? {
                heap.push(Reverse((next, i)));
            }
        }
        if let Some((_, at)) = current {
            emit(at);
        }
        Ok(())
    }

    /// Sorts and reduces the run in memory and appends it to the scratch file.
    fn spill_run(&mut self) -> Result<(), Error> {
        let scratch = |e| Error::Scratch {
            dir: self.dir.clone(),
            source: e,
        };
        reduce(&mut self.run);
        if self.spill.is_none() {
            let file = tempfile::tempfile_in(&self.dir).map_err(scratch)?;
            self.spill = Some(Spill {
                file,
                runs: Vec::new(),
                len: 0,
            });
        }
        let Some(spill) = self.spill.as_mut() else {
            return Ok(());
        };
        let mut out = BufWriter::with_capacity(READ_BUF, &spill.file);
        for (d, at) in &self.run {
            out.write_all(d).map_err(scratch)?;
            out.write_all(&at.to_le_bytes()).map_err(scratch)?;
        }
        out.flush().map_err(scratch)?;
        let records = self.run.len() as u64;
        spill.runs.push((spill.len, records));
        spill.len += records * RECORD as u64;
        self.run.clear();
        Ok(())
    }
}

/// Sorts a run by digest and keeps each digest's newest (highest) position.
fn reduce(run: &mut Vec<Record>) {
    run.sort_unstable();
    // Sorted by (digest, position): the last record of each digest is its newest.
    let mut w = 0;
    for r in 0..run.len() {
        if r + 1 < run.len() && run[r + 1].0 == run[r].0 {
            continue;
        }
        run[w] = run[r];
        w += 1;
    }
    run.truncate(w);
}

/// Reads one spilled run back in order, a buffer at a time (positioned reads, so that the runs
/// share the file).
struct RunReader {
    offset: u64,
    left: u64,
    buf: Vec<u8>,
    at: usize,
}

impl RunReader {
    fn new(offset: u64, records: u64) -> RunReader {
        RunReader {
            offset,
            left: records,
            buf: Vec::new(),
            at: 0,
        }
    }

    fn next(&mut self, file: &File) -> std::io::Result<Option<Record>> {
        if self.at == self.buf.len() {
            if self.left == 0 {
                return Ok(None);
            }
            let n = self.left.min((READ_BUF / RECORD) as u64);
            self.buf.resize(n as usize * RECORD, 0);
            file.read_exact_at(&mut self.buf, self.offset)?;
            self.offset += self.buf.len() as u64;
            self.left -= n;
            self.at = 0;
        }
        let rec = &self.buf[self.at..self.at + RECORD];
        self.at += RECORD;
        let mut d = [0u8; DIGEST];
        d.copy_from_slice(&rec[..DIGEST]);
        let mut at = [0u8; 8];
        at.copy_from_slice(&rec[DIGEST..]);
        Ok(Some((d, u64::from_le_bytes(at))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The merge over spilled runs gives what a hash map of every key gives.
    fn check(keys: &[u32], run: usize) {
        let dir = tempfile::tempdir().unwrap();
        let mut n = NewestEntries::new(dir.path());
        let mut want = HashMap::new();
        for (pos, k) in keys.iter().enumerate() {
            let tag = (k ^ pos as u32).is_multiple_of(3);
            let key = format!("/registry/{k}");
            n.run.push({
                let digest: [u8; 20] = Sha1::digest(key.as_bytes()).into();
                let mut d = [0u8; DIGEST];
                d.copy_from_slice(&digest[..DIGEST]);
                (d, (pos as u64) << 1 | u64::from(tag))
            });
            if n.run.len() == run {
                n.spill_run().unwrap();
            }
            want.insert(key, (pos as u64, tag));
        }
        let mut got: Vec<(u64, bool)> = Vec::new();
        n.for_each_newest(|p, t| got.push((p, t))).unwrap();
        got.sort_unstable();
        let mut want: Vec<(u64, bool)> = want.into_values().collect();
        want.sort_unstable();
        assert_eq!(got, want);
    }

    #[test]
    fn newest_per_key_in_memory_and_spilled() {
        let keys: Vec<u32> = (0..20_000u32)
            .map(|i| i.wrapping_mul(2_654_435_761) % 5_000)
            .collect();
        check(&keys, usize::MAX); // one run, never spilled
        check(&keys, 1_000); // 20 runs merged
        check(&keys, 7); // tiny runs, many digests spanning runs
        check(&[], 7);
        check(&[1, 1, 1], 1);
    }

    #[test]
    fn push_spills_full_runs() {
        let dir = tempfile::tempdir().unwrap();
        let mut n = NewestEntries::new(dir.path());
        for i in 0..(RUN as u64 + 10) {
            n.push(&(i % 1000).to_be_bytes(), i, i.is_multiple_of(2))
                .unwrap();
        }
        assert!(n.spill.is_some());
        let mut count = 0;
        n.for_each_newest(|p, _| {
            assert!(p >= RUN as u64 + 10 - 1000);
            count += 1;
        })
        .unwrap();
        assert_eq!(count, 1000);
    }
}

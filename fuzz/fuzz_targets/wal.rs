//! WAL files: the reader (records, CRCs, torn tails, snapshots, hard states) over any bytes as
//! the only WAL file of a directory never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::Builder::new()
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    std::fs::write(
        dir.path().join("0000000000000000-0000000000000000.wal"),
        data,
    )
    .unwrap();
    let _ = etcd_datadir::wal::read(dir.path());
});

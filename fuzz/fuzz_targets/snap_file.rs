//! `.snap` files (raft snapshots with the v2 store JSON): the reader never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::Builder::new()
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let path = dir.path().join("0000000000000001-0000000000000001.snap");
    std::fs::write(&path, data).unwrap();
    let _ = etcd_datadir::snap::read(&path);
});

//! bbolt files: opening, the page-by-page checker, bucket listing and cursors over any bytes
//! never panic (every problem is an error or a finding). The bytes go through a file in
//! /dev/shm, as the reader reads files.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::Write;

fuzz_target!(|data: &[u8]| {
    let mut f = tempfile::tempfile_in("/dev/shm")
        .or_else(|_| tempfile::tempfile())
        .unwrap();
    f.write_all(data).unwrap();
    let Ok(db) = bbolt::Db::from_file(f) else {
        return;
    };
    let _ = bbolt::check(&db);
    let Ok(names) = db.bucket_names() else {
        return;
    };
    for name in names.iter().take(8) {
        let Ok(Some(b)) = db.bucket(name) else {
            continue;
        };
        let Ok(mut c) = db.cursor(&b) else {
            continue;
        };
        let mut e = c.first();
        let mut n = 0;
        while let Ok(Some(_)) = e {
            n += 1;
            if n > 10_000 {
                break;
            }
            e = c.next();
        }
        let _ = db.cursor(&b).and_then(|mut c| c.last().map(|_| ()));
    }
    let _ = etcd_datadir::current_revision(&db);
    let _ = etcd_datadir::hashkv::hash_kv(&db, i64::MAX);
});

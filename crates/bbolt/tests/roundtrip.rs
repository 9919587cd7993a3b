//! Files written by [`bbolt::DbWriter`] read back entry for entry, pass [`bbolt::check`], and
//! corrupted files yield findings rather than panics.

use std::collections::BTreeMap;

use bbolt::{Db, DbWriter, Finding, check};

type Buckets = BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = (self.next() as usize) % (max + 1);
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn write(path: &std::path::Path, buckets: &Buckets) {
    let mut w = DbWriter::create(path).unwrap();
    for (name, entries) in buckets {
        let mut b = w.bucket(name, 7);
        for (k, v) in entries {
            b.put(k, v).unwrap();
        }
        b.finish().unwrap();
    }
    w.finish().unwrap();
}

fn read(path: &std::path::Path) -> Buckets {
    let db = Db::open(path).unwrap();
    for name in db.bucket_names().unwrap() {
        assert_eq!(db.bucket(&name).unwrap().unwrap().sequence(), 7);
    }
    read_entries(path)
}

/// Every bucket's entries, each bucket's last key checked against a cursor's `last`.
fn read_entries(path: &std::path::Path) -> Buckets {
    let db = Db::open(path).unwrap();
    let mut out = Buckets::new();
    for name in db.bucket_names().unwrap() {
        let b = db.bucket(&name).unwrap().unwrap();
        let mut entries = BTreeMap::new();
        let mut c = db.cursor(&b).unwrap();
        let mut e = c.first().unwrap();
        while let Some(x) = e {
            entries.insert(x.key.to_vec(), x.value.to_vec());
            e = c.next().unwrap();
        }
        let last = db
            .cursor(&b)
            .unwrap()
            .last()
            .unwrap()
            .map(|x| x.key.to_vec());
        assert_eq!(last.as_ref(), entries.keys().last());
        out.insert(name, entries);
    }
    out
}

fn round_trip(buckets: &Buckets) -> Vec<Finding> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("db");
    write(&p, buckets);
    assert_eq!(&read(&p), buckets);
    let db = Db::open(&p).unwrap();
    assert_eq!(
        db.file_len(),
        db.size(),
        "file length is exactly pgid * page size"
    );
    check(&db).unwrap()
}

#[test]
fn empty_small_inline_and_large_buckets() {
    let mut b = Buckets::new();
    b.insert(b"alarm".to_vec(), BTreeMap::new());
    b.insert(
        b"auth".to_vec(),
        [(b"authEnabled".to_vec(), vec![0])].into(),
    );
    let key: BTreeMap<_, _> = (0..50_000u64)
        .map(|i| (i.to_be_bytes().to_vec(), format!("value-{i}").into_bytes()))
        .collect();
    b.insert(b"key".to_vec(), key);
    let big: BTreeMap<_, _> = [
        (b"a".to_vec(), vec![1u8; 1_500_000]),
        (b"b".to_vec(), vec![2u8; 5000]),
        (b"c".to_vec(), vec![3u8; 10]),
    ]
    .into();
    b.insert(b"big".to_vec(), big);
    assert_eq!(round_trip(&b), vec![]);
}

#[test]
fn random_buckets_round_trip_and_check_clean() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for round in 0..40 {
        let mut b = Buckets::new();
        for _ in 0..(rng.next() % 12) {
            let name = {
                let mut n = rng.bytes(20);
                n.push(b'x');
                n
            };
            let mut entries = BTreeMap::new();
            let count = match round % 4 {
                0 => rng.next() % 5,
                1 => rng.next() % 300,
                2 => rng.next() % 5000,
                _ => rng.next() % 40,
            };
            for _ in 0..count {
                let mut k = rng.bytes(40);
                k.push(1);
                let vmax = if rng.next().is_multiple_of(50) {
                    20_000
                } else {
                    200
                };
                entries.insert(k, rng.bytes(vmax));
            }
            b.insert(name, entries);
        }
        assert_eq!(round_trip(&b), vec![], "round {round}");
    }
}

#[test]
fn unsorted_or_empty_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = DbWriter::create(dir.path().join("db")).unwrap();
    let mut b = w.bucket(b"key", 0);
    b.put(b"b", b"").unwrap();
    assert!(
        b.put(b"a", b"")
            .unwrap_err()
            .to_string()
            .contains("strictly ascending")
    );
    assert!(b.put(b"b", b"").is_err());
    assert!(b.put(b"", b"").is_err());
}

/// Writes a file big enough for branch pages, then damages it in several ways.
#[test]
fn corruption_is_reported_not_panicked() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("db");
    let mut b = Buckets::new();
    let key: BTreeMap<_, _> = (0..20_000u64)
        .map(|i| (i.to_be_bytes().to_vec(), vec![7u8; 100]))
        .collect();
    b.insert(b"key".to_vec(), key);
    write(&p, &b);
    let clean = std::fs::read(&p).unwrap();
    let page = |n: usize| n * 4096;
    let db = Db::open(&p).unwrap();
    let root_bucket_page = db.meta().root.0 as usize;
    let key_root = match db.bucket(b"key").unwrap().unwrap() {
        bbolt::Bucket::Paged { root, .. } => root.0 as usize,
        bbolt::Bucket::Inline { .. } => panic!("expected a paged bucket"),
    };
    drop(db);

    type Damage<'a> = Box<dyn Fn(&mut Vec<u8>) + 'a>;
    type Expect<'a> = Box<dyn Fn(&Finding) -> bool + 'a>;
    let bad_page = |pgid: usize, says: &'static str| -> Expect<'_> {
        Box::new(move |f| {
            matches!(f, Finding::BadPage { pgid: Some(p), reason }
                if p.0 as usize == pgid && reason.contains(says))
        })
    };
    // The first child of the key bucket's root branch, which one case makes appear twice.
    let child0 = {
        let e0 = page(key_root) + 16;
        u64::from_le_bytes(clean[e0 + 8..e0 + 16].try_into().unwrap())
    };
    let cases: Vec<(&str, Damage, Expect)> = vec![
        (
            "wrong page type",
            Box::new(|f: &mut Vec<u8>| f[page(2) + 8] = 0x20),
            bad_page(2, "invalid type"),
        ),
        (
            "page id mismatch",
            Box::new(|f: &mut Vec<u8>| f[page(3)] ^= 0x55),
            bad_page(3, "page 3 says it is page"),
        ),
        (
            "branch points twice at one child",
            Box::new(move |f: &mut Vec<u8>| {
                let e0 = page(key_root) + 16;
                let child0: [u8; 8] = f[e0 + 8..e0 + 16].try_into().unwrap();
                f[e0 + 16 + 8..e0 + 16 + 16].copy_from_slice(&child0);
            }),
            Box::new(
                move |f| matches!(f, Finding::MultipleReferences { pgid } if pgid.0 == child0),
            ),
        ),
        (
            "child out of bounds",
            Box::new(move |f: &mut Vec<u8>| {
                let e0 = page(key_root) + 16;
                f[e0 + 8..e0 + 16].copy_from_slice(&u64::MAX.to_le_bytes());
            }),
            Box::new(|f| matches!(f, Finding::OutOfBounds { pgid, .. } if pgid.0 == u64::MAX)),
        ),
        (
            "keys out of order",
            Box::new(|f: &mut Vec<u8>| {
                // First leaf: swap the first byte of the last key with 0xff.
                let p = page(2);
                let count = u16::from_le_bytes([f[p + 10], f[p + 11]]) as usize;
                let e = p + 16 + 16 * (count - 2);
                let pos = u32::from_le_bytes(f[e + 4..e + 8].try_into().unwrap()) as usize;
                f[e + pos] = 0xff;
            }),
            Box::new(|f| matches!(f, Finding::KeyOrder { pgid: Some(p), .. } if p.0 == 2)),
        ),
        (
            "element outside its page",
            Box::new(|f: &mut Vec<u8>| {
                let e = page(2) + 16;
                f[e + 4..e + 8].copy_from_slice(&60_000u32.to_le_bytes());
            }),
            bad_page(2, "lies outside the page"),
        ),
        (
            "root bucket header cut",
            Box::new(move |f: &mut Vec<u8>| {
                let e = page(root_bucket_page) + 16;
                f[e + 12..e + 16].copy_from_slice(&3u32.to_le_bytes());
            }),
            bad_page(root_bucket_page, "short bucket header"),
        ),
    ];
    for (what, damage, expect) in cases {
        let mut f = clean.clone();
        damage(&mut f);
        std::fs::write(&p, &f).unwrap();
        let db = Db::open(&p).unwrap();
        let findings = check(&db).unwrap();
        assert!(
            findings.iter().any(&*expect),
            "{what}: not the finding expected: {findings:?}"
        );
    }

    // A damaged meta falls back to the other one; both damaged fails to open.
    let mut f = clean.clone();
    f[16 + 20] ^= 1;
    std::fs::write(&p, &f).unwrap();
    assert_eq!(Db::open(&p).unwrap().meta().txid, bbolt::Txid(1));
    f[page(1) + 16 + 20] ^= 1;
    std::fs::write(&p, &f).unwrap();
    assert!(Db::open(&p).is_err());
    // A truncated file is refused.
    std::fs::write(&p, &clean[..clean.len() - 4096]).unwrap();
    assert!(matches!(Db::open(&p), Err(bbolt::Error::ShortFile { .. })));
}

/// Files with a stored freelist (etcd never writes one; other bbolt users do): the checker
/// verifies it against reachability.
#[test]
fn freelist_is_checked_when_present() {
    use bbolt::meta::Meta;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("db");
    let mut b = Buckets::new();
    b.insert(
        b"key".to_vec(),
        (0..3000u64)
            .map(|i| (i.to_be_bytes().to_vec(), vec![1u8; 50]))
            .collect(),
    );
    write(&p, &b);
    let clean = std::fs::read(&p).unwrap();
    let pages = (clean.len() / 4096) as u64;

    // Appends a freelist page listing `ids` (plus one spare free page) and points the metas at it.
    let with_freelist = |ids: &[u64], extra_unlisted: bool| -> Vec<u8> {
        let mut f = clean.clone();
        let fl = pages;
        let spare = pages + 1;
        let mut page = vec![0u8; 4096];
        page[0..8].copy_from_slice(&fl.to_le_bytes());
        page[8..10].copy_from_slice(&0x10u16.to_le_bytes());
        let mut listed: Vec<u64> = ids.to_vec();
        if !extra_unlisted {
            listed.push(spare);
        }
        page[10..12].copy_from_slice(&(listed.len() as u16).to_le_bytes());
        for (i, id) in listed.iter().enumerate() {
            page[16 + 8 * i..24 + 8 * i].copy_from_slice(&id.to_le_bytes());
        }
        f.extend_from_slice(&page);
        f.extend_from_slice(&vec![0u8; 4096]); // the spare page
        for m in 0..2usize {
            let off = m * 4096;
            let mut meta = Meta::from_page(&f[off..off + 80]).unwrap();
            meta.freelist = bbolt::Pgid(fl);
            meta.pgid = bbolt::Pgid(pages + 2);
            meta.checksum = meta.compute_checksum();
            f[off + 16..off + 80].copy_from_slice(&meta.to_bytes());
        }
        f
    };
    let run = |f: Vec<u8>| {
        std::fs::write(&p, f).unwrap();
        check(&Db::open(&p).unwrap()).unwrap()
    };
    assert_eq!(run(with_freelist(&[], false)), vec![]);
    assert!(matches!(
        run(with_freelist(&[2], false)).as_slice(),
        [Finding::ReachableFreed { .. }]
    ));
    let dup = run(with_freelist(&[pages + 1], false));
    assert!(
        dup.iter().any(|f| matches!(f, Finding::DoubleFree { .. })),
        "{dup:?}"
    );
    let unfreed = run(with_freelist(&[], true));
    assert!(
        matches!(unfreed.as_slice(), [Finding::UnreachableUnfreed { .. }]),
        "{unfreed:?}"
    );
}

/// Appending keeps the untouched buckets, adds keys after a bucket's last one (paged, inline
/// and missing buckets), replaces buckets begun again, and leaves a file that checks clean; a
/// second append on the result works too.
#[test]
fn append_adds_keys_replaces_buckets_and_checks_clean() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("db");
    for base_keys in [0u64, 3, 200, 30_000] {
        let mut want = Buckets::new();
        want.insert(b"alarm".to_vec(), BTreeMap::new());
        want.insert(
            b"key".to_vec(),
            (0..base_keys)
                .map(|i| (i.to_be_bytes().to_vec(), vec![i as u8; 90]))
                .collect(),
        );
        want.insert(b"meta".to_vec(), [(b"old".to_vec(), b"1".to_vec())].into());
        want.insert(b"zzz".to_vec(), [(b"z".to_vec(), vec![9u8; 6000])].into());
        write(&p, &want);
        // Trailing bytes (a snapshot's sha256) are cut off by the append.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .and_then(|mut f| std::io::Write::write_all(&mut f, &[0xAB; 32]))
            .unwrap();
        for round in 0..2u64 {
            let mut w = DbWriter::append(&p).unwrap();
            w.begin_bucket_append(b"key").unwrap();
            let start = base_keys + round * 10_000;
            for i in start..start + 10_000 {
                w.put(&i.to_be_bytes(), &[i as u8; 40]).unwrap();
            }
            assert!(w.put(&0u64.to_be_bytes(), b"").is_err(), "not ascending");
            w.end_bucket().unwrap();
            w.begin_bucket(b"meta", 7);
            w.put(b"new", b"2").unwrap();
            w.end_bucket().unwrap();
            w.begin_bucket_append(b"members").unwrap();
            w.put(format!("m{round}").as_bytes(), b"x").unwrap();
            w.end_bucket().unwrap();
            w.finish().unwrap();

            let key = want.get_mut(b"key".as_slice()).unwrap();
            for i in start..start + 10_000 {
                key.insert(i.to_be_bytes().to_vec(), vec![i as u8; 40]);
            }
            want.insert(b"meta".to_vec(), [(b"new".to_vec(), b"2".to_vec())].into());
            want.entry(b"members".to_vec())
                .or_default()
                .insert(format!("m{round}").into_bytes(), b"x".to_vec());

            let db = Db::open(&p).unwrap();
            assert_eq!(
                check(&db).unwrap(),
                vec![],
                "{base_keys} keys, round {round}"
            );
            drop(db);
            // `read` expects sequence 7 everywhere; compare the entries.
            let got = read_entries(&p);
            let want_entries: BTreeMap<_, _> = want.clone();
            assert!(got == want_entries, "{base_keys} keys, round {round}");
        }
    }
}

/// The depth of every leaf under `root`, by walking the branches.
fn leaf_depths(db: &Db, root: bbolt::Pgid, depth: usize, out: &mut Vec<usize>) {
    let page = db.page(root).unwrap();
    if page.is_leaf() {
        out.push(depth);
        return;
    }
    for i in 0..page.count() {
        leaf_depths(db, page.branch(i).unwrap().pgid, depth + 1, out);
    }
}

/// Appends reopen a deep tree's rightmost path only: with 500-byte keys a branch page holds
/// seven children, so a few thousand keys make five levels; appends of one key, a page's worth
/// and many pages each leave a tree that checks clean, reads back in order and keeps every leaf
/// at one depth.
#[test]
fn deep_trees_grow_along_their_rightmost_path() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("db");
    let key = |i: u64| {
        let mut k = vec![b'k'; 500];
        k[492..].copy_from_slice(&i.to_be_bytes());
        k
    };
    let mut want = BTreeMap::new();
    {
        let mut w = DbWriter::create(&p).unwrap();
        let mut b = w.bucket(b"key", 0);
        for i in 0..3000u64 {
            b.put(&key(i), &i.to_le_bytes()).unwrap();
            want.insert(key(i), i.to_le_bytes().to_vec());
        }
        b.finish().unwrap();
        w.finish().unwrap();
    }
    let mut next = 3000u64;
    for n in [1u64, 1, 7, 8, 50, 2000, 1] {
        let mut w = DbWriter::append(&p).unwrap();
        w.begin_bucket_append(b"key").unwrap();
        for i in next..next + n {
            w.put(&key(i), &i.to_le_bytes()).unwrap();
            want.insert(key(i), i.to_le_bytes().to_vec());
        }
        next += n;
        w.end_bucket().unwrap();
        w.finish().unwrap();

        let db = Db::open(&p).unwrap();
        assert_eq!(check(&db).unwrap(), vec![], "after appending {n}");
        let Some(bbolt::Bucket::Paged { root, .. }) = db.bucket(b"key").unwrap() else {
            panic!("key bucket is paged");
        };
        let mut depths = Vec::new();
        leaf_depths(&db, root, 0, &mut depths);
        assert!(depths[0] >= 4, "a deep tree: {} levels", depths[0]);
        assert!(
            depths.iter().all(|d| *d == depths[0]),
            "leaves at one depth"
        );
        drop(db);
        let got = read_entries(&p).remove(b"key".as_slice()).unwrap();
        assert!(got == want, "after appending {n}");
    }
}

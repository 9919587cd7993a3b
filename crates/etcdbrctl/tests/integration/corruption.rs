//! The corruption table: every reader (restore, initialize, compact, copy, verify) against damaged
//! stores, for each compression, backups taken by the real binary from real etcd 3.4 and 3.5.
//! Each row: the exit code, the message naming the object and the problem, and that
//! `--data-dir` and `<data-dir>.part` are as they were (compact uploads nothing; copy copies
//! byte for byte and never repairs). Rows that must restore are compared with the source's
//! `hashkv` at its last revision. `docs/reliability.md` lists the rows.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::*;
use etcdbr::compress::Compression;
use etcdbr::delta_format::{self, DeltaEncoder};
use testkit::{Etcd, EtcdVersion};

/// A source etcd and a store of its backups (one full snapshot, three or more deltas).
struct Source {
    etcd: Etcd,
    home: tempfile::TempDir,
    compression: Compression,
    full: String,
    deltas: Vec<String>,
}

async fn source(version: EtcdVersion, compression: Compression) -> Source {
    let etcd = Etcd::start_with(version, &["--max-request-bytes=3145728"]).await;
    let mut c = etcd.client().await.unwrap();
    let lease = c.lease_grant(3600, None).await.unwrap().id();
    // Data in the full snapshot too, not only in the deltas.
    workload(&mut c, 0, lease).await;
    let home = tempfile::tempdir().unwrap();
    let flags: Vec<String> = match compression {
        Compression::None => vec!["--compress-snapshots=false".into()],
        Compression::Gzip => vec!["--compression-policy=gzip".into()],
        Compression::Zlib => vec!["--compression-policy=zlib".into()],
        Compression::Lzw => vec!["--compression-policy=lzw".into()],
        Compression::Zstd => vec!["--compression-policy=zstd".into()],
    };
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let child = start_snapshot_with(&etcd, home.path(), &flags).await;
    for round in 1..=3 {
        workload(&mut c, round, lease).await;
        wait_for_backup(home.path(), etcd.revision().await).await;
        // Each delta in its own second: the copies and overlaps made below get other names.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
    stop_snapshot(child);
    let all = backups(home.path());
    let full = all.iter().find(|n| n.starts_with("Full-")).unwrap().clone();
    let deltas: Vec<String> = all
        .iter()
        .filter(|n| n.starts_with("Incr-"))
        .cloned()
        .collect();
    assert!(deltas.len() >= 3, "{all:?}");
    Source {
        etcd,
        home,
        compression,
        full,
        deltas,
    }
}

/// The parts of a name: kind, start, last, time, suffix.
fn parts(name: &str) -> (String, i64, i64, i64, String) {
    let mut t = name.splitn(4, '-');
    let kind = t.next().unwrap().to_owned();
    let start = t.next().unwrap().parse().unwrap();
    let last = t.next().unwrap().parse().unwrap();
    let rest = t.next().unwrap();
    let (time, suffix) = rest.split_at(rest.find('.').unwrap_or(rest.len()));
    (kind, start, last, time.parse().unwrap(), suffix.to_owned())
}

fn delta_name(start: i64, last: i64, time: i64, suffix: &str) -> String {
    format!("Incr-{start:08}-{last:08}-{time}{suffix}")
}

fn decompressed(src: &Source, name: &str) -> Vec<u8> {
    let raw = std::fs::read(v2(src.home.path()).join(name)).unwrap();
    let mut out = Vec::new();
    src.compression
        .decompress(std::io::Cursor::new(raw), &mut out)
        .unwrap();
    out
}

fn compressed(src: &Source, plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    src.compression.compress(plain, &mut out).unwrap();
    out
}

/// A delta object holding `events`, as the snapshotter writes it.
fn encode_delta(src: &Source, events: &[delta_format::Event]) -> Vec<u8> {
    let mut enc = DeltaEncoder::new();
    for e in events {
        enc.push(e, chrono::Utc::now());
    }
    compressed(src, &enc.finish())
}

fn events_of(src: &Source, name: &str) -> Vec<delta_format::Event> {
    delta_format::decode(&decompressed(src, name))
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect()
}

/// What a row expects of the readers.
enum Expect {
    /// Every reader but copy fails; the message has all of `all` and one of `any`.
    Fails {
        all: Vec<String>,
        any: &'static [&'static str],
    },
    /// Every reader succeeds; restores reach the source's revision and `hashkv`.
    Restores,
}

/// What a row does to a copy of the good store's `v2` directory.
type Damage = Box<dyn Fn(&Source, &Path)>;

/// One row: what is done to a copy of the good store, and what the readers must do.
struct Row {
    case: &'static str,
    damage: Damage,
    expect: Expect,
}

fn fails(all: &[&str], any: &'static [&'static str]) -> Expect {
    Expect::Fails {
        all: all.iter().map(|s| (*s).to_owned()).collect(),
        any,
    }
}

const DECODE: &[&str] = &[
    "cannot read or decompress",
    "cannot be decompressed",
    "is unusable",
    "SHA256 hash does not match",
    "truncated or has extra data",
    "not an etcd database",
    "no SHA256 hash trailer",
];

fn rows(src: &Source) -> Vec<Row> {
    let full = src.full.clone();
    let (d0, d1, last) = (
        src.deltas[0].clone(),
        src.deltas[1].clone(),
        src.deltas.last().unwrap().clone(),
    );
    let suffix = src.compression.suffix();
    // A flipped byte that changes the content: in a compressed stream of repetitive data a
    // flip can change only which earlier copy a match points at, and the object still holds
    // the same bytes (seen with a deflate distance in the base64 of a run of one letter).
    let flip = |name: String| -> Damage {
        Box::new(move |src, dir| {
            let p = dir.join(&name);
            let good = std::fs::read(&p).unwrap();
            let plain = decompressed(src, &name);
            for at in (good.len() / 2..good.len()).chain(0..good.len() / 2) {
                let mut b = good.clone();
                b[at] ^= 0x5a;
                let mut out = Vec::new();
                let same = src
                    .compression
                    .decompress(std::io::Cursor::new(&b), &mut out)
                    .is_ok_and(|_| out == plain);
                if !same {
                    std::fs::write(&p, b).unwrap();
                    return;
                }
            }
            panic!("no byte of {name} changes its content");
        })
    };
    let truncate = |name: String, keep: fn(usize) -> usize| -> Damage {
        Box::new(move |_, dir| {
            let p = dir.join(&name);
            let b = std::fs::read(&p).unwrap();
            std::fs::write(&p, &b[..keep(b.len())]).unwrap();
        })
    };
    let mut rows = vec![
        Row {
            case: "flipped byte in the full snapshot",
            damage: flip(full.clone()),
            expect: fails(&[&full], DECODE),
        },
        Row {
            case: "flipped byte in a delta",
            damage: flip(d1.clone()),
            expect: fails(&[&d1], DECODE),
        },
        Row {
            case: "truncated full snapshot",
            damage: truncate(full.clone(), |n| n / 2),
            expect: fails(&[&full], DECODE),
        },
        Row {
            case: "truncated delta",
            damage: truncate(d1.clone(), |n| n * 2 / 3),
            expect: fails(&[&d1], DECODE),
        },
        Row {
            case: "zero-byte full snapshot",
            damage: truncate(full.clone(), |_| 0),
            expect: fails(&[&full], DECODE),
        },
        Row {
            case: "zero-byte delta",
            damage: truncate(d1.clone(), |_| 0),
            expect: fails(
                &[&d1],
                &[
                    "is unusable",
                    "cannot read or decompress",
                    "cannot be decompressed",
                ],
            ),
        },
        Row {
            case: "a missing delta",
            damage: Box::new({
                let d1 = d1.clone();
                move |_, dir| std::fs::remove_file(dir.join(&d1)).unwrap()
            }),
            expect: fails(&["the delta chain has a gap", "are missing"], &[""]),
        },
        Row {
            case: "a duplicate delta under another timestamp",
            damage: Box::new({
                let d0 = d0.clone();
                move |_, dir| {
                    let (_, a, b, t, sfx) = parts(&d0);
                    std::fs::copy(dir.join(&d0), dir.join(delta_name(a, b, t + 1, &sfx))).unwrap();
                }
            }),
            expect: Expect::Restores,
        },
        Row {
            case: "an overlapping delta across a boundary (replacing the next one)",
            damage: Box::new({
                let (d0, d1) = (d0.clone(), d1.clone());
                move |src, dir| {
                    let (_, _, b0, _, _) = parts(&d0);
                    let (_, _, b1, t1, sfx) = parts(&d1);
                    let mut events = events_of(src, &d0);
                    let mid = events[events.len() / 2].mod_revision;
                    events.retain(|e| e.mod_revision >= mid);
                    assert!(mid <= b0);
                    events.extend(events_of(src, &d1));
                    std::fs::remove_file(dir.join(&d1)).unwrap();
                    std::fs::write(
                        dir.join(delta_name(mid, b1, t1, &sfx)),
                        encode_delta(src, &events),
                    )
                    .unwrap();
                }
            }),
            expect: Expect::Restores,
        },
        Row {
            case: "a delta whose events end before its name says",
            damage: Box::new({
                let last = last.clone();
                move |src, dir| {
                    let mut events = events_of(src, &last);
                    let end = events.last().unwrap().mod_revision;
                    events.retain(|e| e.mod_revision < end - 2);
                    std::fs::write(dir.join(&last), encode_delta(src, &events)).unwrap();
                }
            }),
            expect: fails(&[&last, "but its name says"], &[""]),
        },
        Row {
            case: "a valid JSON with a wrong trailer",
            damage: Box::new({
                let d1 = d1.clone();
                move |src, dir| {
                    let mut plain = decompressed(src, &d1);
                    let n = plain.len();
                    plain[n - 1] ^= 1;
                    std::fs::write(dir.join(&d1), compressed(src, &plain)).unwrap();
                }
            }),
            expect: fails(&[&d1, "hash mismatch"], &[""]),
        },
        Row {
            case: "data appended to the full snapshot",
            damage: Box::new({
                let full = full.clone();
                move |src, dir| {
                    // For gzip and zstd, a second member or frame, which decoders (Go's
                    // gzip reader among them) read as one stream.
                    let mut b = std::fs::read(dir.join(&full)).unwrap();
                    b.extend(compressed(src, b"appended"));
                    if !matches!(src.compression, Compression::Gzip | Compression::Zstd) {
                        b = compressed(
                            src,
                            &[decompressed(src, &full), b"appended".to_vec()].concat(),
                        );
                    }
                    std::fs::write(dir.join(&full), b).unwrap();
                }
            }),
            expect: fails(&[&full, "truncated or has extra data appended"], &[""]),
        },
        Row {
            case: "foreign and near-miss names",
            damage: Box::new(|_, dir| {
                for n in [
                    "README",
                    "Full-0000000x-00000010-1700000000.gz",
                    "Incr-1-2",
                    "Full-00000000-00000005-abc",
                    "backup.tar",
                    "Full-00000000-00000005-1700000000.tar",
                ] {
                    std::fs::write(dir.join(n), b"not a snapshot").unwrap();
                }
            }),
            expect: Expect::Restores,
        },
    ];
    if src.compression == Compression::None {
        rows.push(Row {
            case: "a compression suffix the content does not have",
            damage: Box::new({
                let full = full.clone();
                move |_, dir| {
                    std::fs::rename(dir.join(&full), dir.join(format!("{full}.gz"))).unwrap()
                }
            }),
            expect: fails(&[&full, "decompress"], &[""]),
        });
    } else {
        rows.push(Row {
            case: "a compressed object named without its suffix",
            damage: Box::new({
                let full = full.clone();
                move |_, dir| {
                    std::fs::rename(dir.join(&full), dir.join(full.trim_end_matches(suffix)))
                        .unwrap()
                }
            }),
            expect: fails(&["not an etcd database"], &[""]),
        });
    }
    rows
}

fn log(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn check_failure(case: &str, reader: &str, o: &Output, all: &[String], any: &[&str]) {
    let l = log(o);
    assert!(!o.status.success(), "{case}: {reader} succeeded:\n{l}");
    assert!(!l.contains("panicked"), "{case}: {reader} panicked:\n{l}");
    let last = l
        .lines()
        .rev()
        .find(|x| x.starts_with("error:"))
        .unwrap_or_default();
    for needle in all {
        assert!(
            last.contains(needle.as_str()),
            "{case}: {reader}: {needle:?} not in {last:?}"
        );
    }
    assert!(
        any.iter().any(|n| last.contains(n)),
        "{case}: {reader}: none of {any:?} in {last:?}"
    );
}

fn initialize(home: &Path, data_dir: &Path) -> Output {
    bin()
        .env("HOME", home)
        .env_remove("POD_NAMESPACE")
        .env_remove("ETCD_CONF")
        .args([
            "initialize",
            "--storage-provider=Local",
            "--store-container=backups",
        ])
        .args(["--data-dir", data_dir.to_str().unwrap()])
        .args(["--name", "r1", "--initial-cluster-token", "tok"])
        .args(["--initial-cluster", "r1=http://127.0.0.1:2380"])
        .args(["--initial-advertise-peer-urls", "http://127.0.0.1:2380"])
        .args([
            "--restoration-temp-snapshots-dir",
            home.join("rtmp").to_str().unwrap(),
        ])
        .args([
            "--snapstore-temp-directory",
            home.join("stmp").to_str().unwrap(),
        ])
        .output()
        .unwrap()
}

fn copy(home: &Path) -> Output {
    bin()
        .env("HOME", home)
        .args([
            "copy",
            "--storage-provider=Local",
            "--store-container=copied",
        ])
        .args([
            "--source-storage-provider=Local",
            "--source-store-container=backups",
        ])
        .output()
        .unwrap()
}

/// `verify --output=json` of the store below `home`, compared with the live `source`.
fn verify(home: &Path, source: &Etcd) -> (Output, serde_json::Value) {
    let o = bin()
        .env("HOME", home)
        .args([
            "verify",
            "--storage-provider=Local",
            "--store-container=backups",
            "--output=json",
            "--endpoints",
            &source.client_url,
        ])
        .args([
            "--restoration-temp-snapshots-dir",
            home.join("vtmp").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let json = serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null);
    (o, json)
}

/// The verdict of `verify` on a damaged store: exit 1, and the failure's text has `all` and one
/// of `any`.
fn check_verify_failure(
    case: &str,
    o: &Output,
    json: &serde_json::Value,
    all: &[String],
    any: &[&str],
) {
    assert_eq!(
        o.status.code(),
        Some(1),
        "{case}: verify: {}\n{json}",
        log(o)
    );
    assert_eq!(json["ok"], false, "{case}: {json}");
    let failure = &json["sets"][0]["failure"];
    let text = format!(
        "{} {}",
        failure["object"].as_str().unwrap_or_default(),
        failure["message"].as_str().unwrap_or_default()
    );
    for needle in all {
        assert!(
            text.contains(needle.as_str()),
            "{case}: verify: {needle:?} not in {text:?}"
        );
    }
    assert!(
        any.iter().any(|n| text.contains(n)),
        "{case}: verify: none of {any:?} in {text:?}"
    );
}

/// The revision and native `hashkv` of a restored data dir.
fn restored_hash(data_dir: &Path) -> (i64, u32) {
    let db = bbolt::Db::open(data_dir.join("member/snap/db")).unwrap();
    let rev = etcd_datadir::current_revision(&db).unwrap().get();
    (rev, etcd_datadir::hashkv::hash_kv(&db, rev).unwrap().0)
}

async fn run_table(version: EtcdVersion, compression: Compression) {
    let src = source(version, compression).await;
    let want_rev = src.etcd.revision().await;
    let want_hash = src
        .etcd
        .client()
        .await
        .unwrap()
        .hash_kv(want_rev)
        .await
        .unwrap()
        .hash();
    // An invalid data dir for initialize to restore over (its WAL is missing).
    let work = tempfile::tempdir().unwrap();
    let invalid = work.path().join("invalid");
    let o = restore(src.home.path(), &invalid, "http://127.0.0.1:2380", &[]);
    assert!(o.status.success(), "{}", log(&o));
    std::fs::remove_dir_all(invalid.join("member/wal")).unwrap();

    for row in rows(&src) {
        let case = row.case;
        let home = copy_store(src.home.path());
        (row.damage)(&src, &v2(home.path()));
        let listed = backups(home.path());
        let target = home.path().join("restored");
        let init_dir = home.path().join("init");
        std::fs::create_dir_all(&init_dir).unwrap();
        let init_dir = init_dir.join("data");
        Command::new("cp")
            .arg("-a")
            .arg(&invalid)
            .arg(&init_dir)
            .status()
            .unwrap();
        let init_before = tree(&init_dir);

        let r = restore(home.path(), &target, "http://127.0.0.1:2380", &[]);
        eprintln!(
            "{case}: restore says {:?}",
            log(&r)
                .lines()
                .rev()
                .find(|l| l.contains("error:") || l.contains("Successfully restored"))
                .unwrap_or_default()
        );
        let i = initialize(home.path(), &init_dir);
        // Before compact, which adds a full snapshot to the store.
        let (v, verdict) = verify(home.path(), &src.etcd);
        let c = compact(home.path());
        let k = copy(home.path());
        match &row.expect {
            Expect::Fails { all, any } => {
                check_verify_failure(case, &v, &verdict, all, any);
                check_failure(case, "restore", &r, all, any);
                assert!(
                    !target.exists(),
                    "{case}: restore left {}",
                    target.display()
                );
                check_failure(case, "initialize", &i, all, any);
                assert!(
                    tree(&init_dir) == init_before,
                    "{case}: initialize changed the data dir"
                );
                check_failure(case, "compact", &c, all, any);
                assert_eq!(backups(home.path()), listed, "{case}: compact uploaded");
            }
            Expect::Restores => {
                assert!(r.status.success(), "{case}: restore: {}", log(&r));
                assert_eq!(
                    restored_hash(&target),
                    (want_rev, want_hash),
                    "{case}: restore"
                );
                assert!(i.status.success(), "{case}: initialize: {}", log(&i));
                assert_eq!(
                    restored_hash(&init_dir),
                    (want_rev, want_hash),
                    "{case}: initialize"
                );
                assert!(c.status.success(), "{case}: compact: {}", log(&c));
                assert!(v.status.success(), "{case}: verify: {}\n{verdict}", log(&v));
                let set = &verdict["sets"][0];
                assert_eq!(set["revision"], want_rev, "{case}: verify");
                assert_eq!(set["hashkv"], want_hash, "{case}: verify");
                assert_eq!(set["live"], "matched", "{case}: verify");
            }
        }
        for p in [etcd_datadir_part(&target), etcd_datadir_part(&init_dir)] {
            assert!(!p.exists(), "{case}: {} left behind", p.display());
        }
        // copy never repairs: every snapshot object arrives byte for byte.
        assert!(k.status.success(), "{case}: copy: {}", log(&k));
        let copied = home.path().join("copied/v2");
        for n in backups(home.path()) {
            if snapstore::Snapshot::parse(&format!("v2/{n}")).is_err() {
                continue;
            }
            let a = std::fs::read(v2(home.path()).join(&n)).unwrap();
            let b = std::fs::read(copied.join(&n)).unwrap_or_default();
            assert!(a == b, "{case}: copy of {n} differs");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corruption_table_uncompressed_etcd34() {
    run_table(EtcdVersion::V34, Compression::None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corruption_table_gzip_etcd35() {
    run_table(EtcdVersion::V35, Compression::Gzip).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corruption_table_zlib_etcd34() {
    run_table(EtcdVersion::V34, Compression::Zlib).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corruption_table_lzw_etcd35() {
    run_table(EtcdVersion::V35, Compression::Lzw).await;
}

/// zstd (etcdbr's extension): the same table, every reader included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corruption_table_zstd_etcd34() {
    run_table(EtcdVersion::V34, Compression::Zstd).await;
}

//! Backups written by the original (Go) tool, read by etcdbr; and etcdbr's delta JSON equal to
//! Go's byte for byte. The fixtures and how they were made: `tests/fixtures/original/README.md`.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use etcdbr::compress::Compression;
use etcdbr::delta_format::{self, DeltaEncoder, Event};
use sha2::{Digest, Sha256};
use snapstore::provider::LocalStore;
use snapstore::{Kind, Provider, SnapStore, StoreConfig};
use tokio::io::AsyncReadExt;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/original")
}

fn store(prefix: &str) -> SnapStore {
    let mut config = StoreConfig::default();
    prefix.clone_into(&mut config.prefix);
    SnapStore::with_objects(
        Arc::new(LocalStore::new(fixtures()).unwrap()),
        Provider::Local,
        &config,
    )
}

fn put(key: &str, value: &[u8], create: i64, rev: i64, version: i64, lease: i64) -> Event {
    Event {
        delete: false,
        key: key.into(),
        create_revision: create,
        mod_revision: rev,
        version,
        value: value.to_vec(),
        lease,
    }
}

fn del(key: &str, rev: i64) -> Event {
    Event {
        delete: true,
        key: key.into(),
        create_revision: 0,
        mod_revision: rev,
        version: 0,
        value: vec![],
        lease: 0,
    }
}

fn expected() -> Vec<Event> {
    vec![
        put("a", b"10", 2, 6, 2, 0),
        del("b", 7),
        put("e", b"5", 8, 8, 1, 0),
        put("f", b"6", 8, 8, 1, 0),
        put("leased", b"l", 9, 9, 1, 7_587_869_323_512_432_135),
        put("b", b"again", 10, 10, 1, 0),
        del("e", 11),
        del("f", 11),
        put("big", &[b'x'; 3000], 12, 12, 1, 0),
        put("empty", b"", 13, 13, 1, 0),
    ]
}

async fn read(store: &SnapStore, s: &snapstore::Snapshot) -> Vec<u8> {
    let mut raw = Vec::new();
    store
        .fetch(s)
        .await
        .unwrap()
        .read_to_end(&mut raw)
        .await
        .unwrap();
    let mut out = Vec::new();
    Compression::from_suffix(&s.compression_suffix)
        .unwrap()
        .decompress(&raw[..], &mut out)
        .unwrap();
    out
}

#[tokio::test]
async fn reads_the_originals_objects_with_every_compression() {
    for (prefix, compression) in [
        ("none", Compression::None),
        ("gzip", Compression::Gzip),
        ("zlib", Compression::Zlib),
        ("lzw", Compression::Lzw),
    ] {
        let store = store(prefix);
        let list = store.list().await.unwrap();
        assert_eq!(list.len(), 2, "{prefix}");
        let set = store.latest_set().await.unwrap();
        let full = set.full.unwrap();
        assert_eq!((full.kind, full.last_revision.get()), (Kind::Full, 5));
        assert_eq!(
            Compression::from_suffix(&full.compression_suffix).unwrap(),
            compression
        );
        assert_eq!(full.created_on.timestamp(), 1_700_000_000);

        let db = read(&store, &full).await;
        assert_eq!(
            db.len(),
            24_608,
            "{prefix}: the snapshot stream with its trailer"
        );
        let (body, trailer) = db.split_at(db.len() - 32);
        assert_eq!(Sha256::digest(body).as_slice(), trailer);
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), &db).unwrap();
        let bolt = bbolt::Db::open(tmp.path()).unwrap();
        assert_eq!(etcd_datadir::current_revision(&bolt).unwrap().get(), 5);

        assert_eq!(set.deltas.len(), 1);
        let d = &set.deltas[0];
        assert_eq!((d.start_revision.get(), d.last_revision.get()), (6, 13));
        let events = delta_format::decode(&read(&store, d).await).unwrap();
        let got: Vec<Event> = events.iter().map(|e| e.event.clone()).collect();
        assert_eq!(got, expected(), "{prefix}");
        let ist: DateTime<Utc> = "2023-11-14T22:15:02.258109Z".parse().unwrap();
        assert_eq!(
            events[4].time, ist,
            "a +05:30 time from Go is read as the same instant"
        );
    }
}

#[tokio::test]
async fn our_delta_json_equals_gos() {
    let store = store("none");
    let set = store.latest_set().await.unwrap();
    let go_object = read(&store, &set.deltas[0]).await;
    let go_json = std::str::from_utf8(&go_object[..go_object.len() - 32]).unwrap();

    let mut enc = DeltaEncoder::new();
    for e in delta_format::decode(&go_object).unwrap() {
        enc.push(&e.event, e.time);
    }
    let ours = enc.finish();
    let ours_json = std::str::from_utf8(&ours[..ours.len() - 32]).unwrap();
    // Go kept the event's +05:30 zone; etcdbr writes every time in UTC. Otherwise: identical.
    let go_in_utc = go_json.replace(
        "2023-11-15T03:45:02.258109+05:30",
        "2023-11-14T22:15:02.258109Z",
    );
    assert_eq!(ours_json, go_in_utc);
    assert_ne!(go_json, go_in_utc, "the fixture does carry a non-UTC time");
}

/// Go's `compress/*` readers (what the original restores with) read what etcdbr writes: gzip and
/// zlib come from the parallel encoder, several blocks long, lzw from the serial one.
#[test]
fn go_reads_our_compressed_snapshots() {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let data: Vec<u8> = (0..5 * 1024 * 1024 + 77)
        .map(|i: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if i % 3000 < 1000 {
                b"etcd"[i % 4]
            } else {
                (x >> 58) as u8 + b'0'
            }
        })
        .collect();
    let want: String = Sha256::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for c in [Compression::Gzip, Compression::Zlib, Compression::Lzw] {
        let path = dir.path().join(format!("snap{}", c.suffix()));
        let f = std::fs::File::create(&path).unwrap();
        c.compress(&data[..], f).unwrap();
        files.push(path);
    }
    let program =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/go-decompress/main.go");
    let out = std::process::Command::new("go")
        .arg("run")
        .arg(&program)
        .args(&files)
        .env("GO111MODULE", "off")
        .env("GOCACHE", dir.path().join("gocache"))
        .output()
        .expect("go is not installed; run scripts/setup.sh");
    assert!(
        out.status.success(),
        "go failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    for line in stdout.lines() {
        assert!(line.starts_with(&want), "Go decoded other bytes: {line}");
    }
}

/// The original's backup sets, in each compression, restore natively into a data dir that a
/// stock etcd 3.4 boots from, holding the base's keys changed by every delta event.
#[tokio::test]
async fn restores_the_originals_backups_into_a_data_dir_etcd_boots() {
    use std::collections::BTreeMap;
    use testkit::{Etcd, EtcdVersion};

    let mut want: BTreeMap<Vec<u8>, Vec<u8>> = [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]
        .into_iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
    for e in expected() {
        if e.delete {
            want.remove(&e.key);
        } else {
            want.insert(e.key, e.value);
        }
    }
    for prefix in ["none", "gzip", "zlib", "lzw"] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let peer = format!("http://127.0.0.1:{}", testkit::free_port());
        let mut opts = etcdbr::restore::RestoreOptions::new(dir.clone());
        opts.initial_cluster = format!("default={peer}");
        opts.initial_advertise_peer_urls = vec![peer.clone()];
        opts.temp_dir = tmp.path().join("restore-tmp");
        opts.format = etcd_datadir::restore::DataDirFormat::V34;
        let report = etcdbr::restore::restore(&store(prefix), &opts)
            .await
            .unwrap();
        assert_eq!(report.stats.revision.get(), 13, "{prefix}");

        let mut etcd = Etcd::on_data_dir(
            EtcdVersion::V34,
            &dir,
            &["--initial-cluster-token=etcd-cluster"],
        );
        etcd.set_member("default", &peer);
        etcd.restart().await;
        assert_eq!(etcd.revision().await, 13, "{prefix}");
        let mut c = etcd.client().await.unwrap();
        let all = c
            .get("", Some(etcd_client::GetOptions::new().with_all_keys()))
            .await
            .unwrap();
        let got: BTreeMap<Vec<u8>, Vec<u8>> = all
            .kvs()
            .iter()
            .map(|kv| (kv.key().to_vec(), kv.value().to_vec()))
            .collect();
        assert!(got == want, "{prefix}: restored keys differ");
    }
}

//! `etcdbrctl verify` and `etcdbrctl list` beyond the corruption table (where verify is a reader
//! of every row): a full snapshot whose db has a broken page under a valid sha256, `--all`, a
//! point in time, a live etcd that holds something else, usage errors, and `list`'s JSON.

use std::path::Path;
use std::process::Output;

use crate::common::*;
use sha2::Digest;
use testkit::{Etcd, EtcdVersion};

fn run(home: &Path, args: &[&str]) -> (Output, serde_json::Value) {
    let o = bin()
        .env("HOME", home)
        .args(args)
        .args(["--storage-provider=Local", "--store-container=backups"])
        .args(
            (args[0] == "verify")
                .then(|| ["--restoration-temp-snapshots-dir".into(), home.join("vtmp")])
                .into_iter()
                .flatten(),
        )
        .output()
        .unwrap();
    let json = serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null);
    (o, json)
}

fn verify(home: &Path, extra: &[&str]) -> (Output, serde_json::Value) {
    let mut args = vec!["verify", "--output=json"];
    args.extend_from_slice(extra);
    run(home, &args)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Two sets: a full snapshot and deltas, then a second full snapshot and deltas.
async fn two_sets(source: &Etcd) -> tempfile::TempDir {
    let mut c = source.client().await.unwrap();
    let home = tempfile::tempdir().unwrap();
    for set in 0..2 {
        let before = backups(home.path()).len();
        let child = start_snapshot(source, home.path()).await;
        while backups(home.path()).len() == before {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        for i in 0..20 {
            c.put(format!("/s{set}/k{i}"), "v", None).await.unwrap();
        }
        c.delete(format!("/s{set}/k1"), None).await.unwrap();
        wait_for_backup(home.path(), source.revision().await).await;
        stop_snapshot(child);
    }
    home
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_all_sets_points_in_time_and_the_live_etcd() {
    let source = Etcd::start(EtcdVersion::V35).await;
    let home = two_sets(&source).await;
    let last = source.revision().await;
    let mut c = source.client().await.unwrap();

    // Every set, each compared with the live etcd.
    let (o, v) = verify(home.path(), &["--all", "--endpoints", &source.client_url]);
    assert!(o.status.success(), "{}\n{v}", stderr(&o));
    let sets = v["sets"].as_array().unwrap();
    assert_eq!(sets.len(), 2, "{v}");
    for s in sets {
        assert_eq!(s["ok"], true, "{v}");
        assert_eq!(s["live"], "matched", "{v}");
        let rev = s["revision"].as_i64().unwrap();
        assert_eq!(
            s["hashkv"].as_u64().unwrap(),
            u64::from(c.hash_kv(rev).await.unwrap().hash()),
            "{v}"
        );
    }
    assert_eq!(sets[1]["revision"], last);
    assert_eq!(sets[1]["keys"], 38, "20 keys a set, one deleted in each");
    assert!(
        stderr(&o).contains("Progress: fetching Full-"),
        "progress lines when stderr is not a terminal: {}",
        stderr(&o)
    );

    // A point in time.
    let target = last - 5;
    let (o, v) = verify(
        home.path(),
        &[
            &format!("--restore-to-revision={target}"),
            "--endpoints",
            &source.client_url,
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(v["sets"][0]["revision"], target);
    assert_eq!(v["sets"][0]["live"], "matched");

    // The table form.
    let (o, _) = run(home.path(), &["verify", "--all"]);
    assert!(o.status.success());
    let table = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        table.lines().filter(|l| l.starts_with("OK ")).count(),
        2,
        "{table}"
    );

    // Usage: exit 2 and a message.
    let (o, _) = verify(home.path(), &["--snapshot=Full-00000000-00000001-1.gz"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no full snapshot named"),
        "{}",
        stderr(&o)
    );
    let (o, _) = verify(
        home.path(),
        &[&format!("--restore-to-revision={}", last + 1)],
    );
    assert_eq!(o.status.code(), Some(2));
    let (o, _) = verify(home.path(), &["--all", "--snapshot=x"]);
    assert_eq!(o.status.code(), Some(2), "clap refuses the combination");

    // A live etcd that holds something else at the same revision: a mismatch, exit 1.
    let other = Etcd::start(EtcdVersion::V35).await;
    let mut oc = other.client().await.unwrap();
    while other.revision().await < last {
        oc.put("/other", "x", None).await.unwrap();
    }
    let (o, v) = verify(home.path(), &["--endpoints", &other.client_url]);
    assert_eq!(o.status.code(), Some(1), "{}\n{v}", stderr(&o));
    assert_eq!(v["sets"][0]["failure"]["kind"], "mismatch", "{v}");

    // list: the two sets, oldest first, with their deltas.
    let (o, l) = run(home.path(), &["list", "--output=json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let sets = l["sets"].as_array().unwrap();
    assert_eq!(sets.len(), 2, "{l}");
    assert_eq!(sets[1]["lastRevision"], last);
    assert!(
        sets[0]["deltas"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["role"] == "applied")
    );
    assert_eq!(sets[1]["full"]["compression"], "gzip");
    assert!(sets[1]["full"]["size"].as_u64().unwrap() > 0);
    let (o, _) = run(home.path(), &["list"]);
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("latest set") && table.contains("set 2: restores revisions"),
        "{table}"
    );
}

/// Decompresses a gzip object.
fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(b), &mut out).unwrap();
    out
}

fn gzip(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_a_broken_page_under_a_valid_hash() {
    let source = Etcd::start(EtcdVersion::V34).await;
    let mut c = source.client().await.unwrap();
    for i in 0..3000 {
        c.put(format!("/k{i:05}"), vec![b'v'; 200], None)
            .await
            .unwrap();
    }
    let home = tempfile::tempdir().unwrap();
    stop_snapshot(start_snapshot(&source, home.path()).await);
    let full = backups(home.path())
        .into_iter()
        .find(|n| n.starts_with("Full-"))
        .unwrap();
    let path = v2(home.path()).join(&full);
    let plain = gunzip(&std::fs::read(&path).unwrap());
    let mut db = plain[..plain.len() - 32].to_vec();
    // The first leaf of the key bucket gets a page type bbolt never writes; the sha256 trailer
    // is recomputed, so only a page-by-page check can tell.
    let (leaf, page_size) = {
        let tmp = home.path().join("db");
        std::fs::write(&tmp, &db).unwrap();
        let d = bbolt::Db::open(&tmp).unwrap();
        let Some(bbolt::Bucket::Paged { root, .. }) = d.bucket(b"key").unwrap() else {
            panic!("the key bucket is paged");
        };
        let leaves = d.leaf_refs(root).unwrap();
        assert!(leaves.len() > 2);
        (leaves[1].1.0 as usize, d.page_size() as usize)
    };
    db[leaf * page_size + 8..leaf * page_size + 10].copy_from_slice(&0x77u16.to_le_bytes());
    let mut object = db.clone();
    object.extend_from_slice(&sha2::Sha256::digest(&db));
    std::fs::write(&path, gzip(&object)).unwrap();

    let (o, v) = verify(home.path(), &[]);
    assert_eq!(o.status.code(), Some(1), "{}\n{v}", stderr(&o));
    let failure = &v["sets"][0]["failure"];
    assert_eq!(failure["kind"], "database", "{v}");
    let message = failure["message"].as_str().unwrap();
    assert!(
        message.contains("page check") && message.contains(&format!("Pgid({leaf})")),
        "the message names the page: {v}"
    );
    assert!(!home.path().join("vtmp").exists(), "scratch space removed");
}

/// A metric's value in the Prometheus text, 0 when absent.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_verifies_on_its_schedule_and_exports_the_verdicts() {
    use crate::common::sidecar::Sidecar;
    let etcd = Etcd::start(EtcdVersion::V35).await;
    let mut c = etcd.client().await.unwrap();
    let home = tempfile::tempdir().unwrap();
    crate::common::sidecar::single_member_conf(home.path(), &etcd);
    for i in 0..50 {
        c.put(format!("/k{i}"), "v", None).await.unwrap();
    }
    let sc = Sidecar::start(
        home.path(),
        "m0",
        &etcd,
        testkit::free_port(),
        &["--verify-schedule=@every 1s"],
    );
    sc.wait_health(200).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let text = sc.http("GET", "/metrics").1;
        if metric(&text, "etcdbr_verification_last_success_timestamp") > 0.0 {
            assert!(
                metric(
                    &text,
                    "etcdbr_verification_duration_seconds_count{succeeded=\"true\"}"
                ) >= 1.0
            );
            assert_eq!(
                metric(
                    &text,
                    "etcdbr_verification_failures_total{kind=\"corrupt\"}"
                ),
                0.0
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no verification: {}",
            sc.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Damage the full snapshot: the next runs count a corrupt backup.
    let full = backups(home.path())
        .into_iter()
        .find(|n| n.starts_with("Full-"))
        .unwrap();
    let path = v2(home.path()).join(&full);
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes.truncate(n / 2);
    std::fs::write(&path, bytes).unwrap();
    loop {
        let text = sc.http("GET", "/metrics").1;
        if metric(
            &text,
            "etcdbr_verification_failures_total{kind=\"corrupt\"}",
        ) >= 1.0
        {
            assert!(
                metric(
                    &text,
                    "etcdbr_verification_duration_seconds_count{succeeded=\"false\"}"
                ) >= 1.0
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no failure counted: {}",
            sc.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(sc.log().contains("is bad"), "the log names the bad set");
}

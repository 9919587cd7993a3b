//! Point-in-time restore end to end: a chain of two backup sets of real etcd 3.4 and 3.5 with
//! puts, overwrites, deletes, delete-ranges, transactions and leases, restored to a dozen target
//! revisions and times; each restored etcd boots, and its `hashkv` and every key at the target
//! equal the source's there. Also the revision bump: a watch from before the restore is
//! cancelled as compacted.

use std::path::Path;
use std::time::Duration;

use crate::common::*;
use testkit::etcd_client::{
    Client, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp, WatchOptions,
};
use testkit::{Etcd, EtcdVersion};

/// Revisions of interest the workload made.
#[derive(Debug, Default)]
struct Marks {
    first_full: i64,
    txn: i64,
    before_delete_range: i64,
    second_full: i64,
    last: i64,
}

async fn rev(c: &mut Client) -> i64 {
    c.get("/", None).await.unwrap().header().unwrap().revision()
}

/// Puts, overwrites, a delete, a transaction, a delete-range, a leased key: about 30 revisions.
async fn writes(c: &mut Client, round: u32, lease: i64, marks: &mut Marks) {
    for i in 0..10 {
        c.put(format!("/p{round}/k{i}"), format!("v{i}"), None)
            .await
            .unwrap();
    }
    c.put(format!("/p{round}/k1"), "over", None).await.unwrap();
    c.delete(format!("/p{round}/k2"), None).await.unwrap();
    c.txn(Txn::new().and_then(vec![
        TxnOp::put(format!("/p{round}/t1"), "a", None),
        TxnOp::delete(format!("/p{round}/k3"), None),
        TxnOp::put(format!("/p{round}/k4"), "in-txn", None),
    ]))
    .await
    .unwrap();
    marks.txn = rev(c).await;
    c.put(
        format!("/p{round}/leased"),
        "l",
        Some(PutOptions::new().with_lease(lease)),
    )
    .await
    .unwrap();
    marks.before_delete_range = rev(c).await;
    c.delete(
        format!("/p{round}/k"),
        Some(DeleteOptions::new().with_prefix()),
    )
    .await
    .unwrap();
    for i in 0..5 {
        c.put(format!("/p{round}/after{i}"), "x", None)
            .await
            .unwrap();
    }
}

/// Backs up `source` as two sets: a full snapshot, deltas; a second full snapshot, deltas.
async fn two_sets(source: &Etcd, c: &mut Client, lease: i64) -> (tempfile::TempDir, Marks) {
    let home = tempfile::tempdir().unwrap();
    let mut marks = Marks {
        first_full: rev(c).await,
        ..Marks::default()
    };
    let child = start_snapshot(source, home.path()).await;
    writes(c, 1, lease, &mut marks).await;
    wait_for_backup(home.path(), rev(c).await).await;
    c.put("/between", "deltas", None).await.unwrap();
    stop_snapshot(child);
    // `snapshot` starts with a full snapshot: the second set.
    marks.second_full = rev(c).await;
    let child = start_with_new_full(source, home.path()).await;
    let mut round2 = Marks::default();
    writes(c, 2, lease, &mut round2).await;
    wait_for_backup(home.path(), rev(c).await).await;
    for i in 0..5 {
        c.put(format!("/tail/k{i}"), "t", None).await.unwrap();
    }
    wait_for_backup(home.path(), rev(c).await).await;
    stop_snapshot(child);
    marks.last = rev(c).await;
    (home, marks)
}

/// Starts `etcdbrctl snapshot` on a store that has backups, and waits for its first full snapshot.
async fn start_with_new_full(source: &Etcd, home: &Path) -> std::process::Child {
    let fulls = || {
        backups(home)
            .iter()
            .filter(|n| n.starts_with("Full-"))
            .count()
    };
    let before = fulls();
    let child = start_snapshot(source, home).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while fulls() == before {
        assert!(std::time::Instant::now() < deadline, "no new full snapshot");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child
}

async fn keys_at(c: &mut Client, at: i64) -> Vec<KvRow> {
    let r = c
        .get(
            "",
            Some(GetOptions::new().with_all_keys().with_revision(at)),
        )
        .await
        .unwrap();
    kv_rows(&r)
}

/// Restores `home` to revision `n`, boots `version` on it, and compares it with `source` at `n`.
async fn check_revision(home: &Path, version: EtcdVersion, source: &mut Client, n: i64) {
    let out_dir = tempfile::tempdir().unwrap();
    let data = out_dir.path().join("data");
    let peer = format!("http://127.0.0.1:{}", testkit::free_port());
    let out = restore(home, &data, &peer, &[&format!("--restore-to-revision={n}")]);
    assert!(
        out.status.success(),
        "restore to {n}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut restored = Etcd::on_data_dir(version, &data, &["--initial-cluster-token=tok"]);
    restored.set_member("r1", &peer);
    restored.restart().await;
    assert_eq!(restored.revision().await, n, "{version:?}: revision");
    let mut r = restored.client().await.unwrap();
    assert_eq!(
        r.hash_kv(n).await.unwrap().hash(),
        source.hash_kv(n).await.unwrap().hash(),
        "{version:?}: hashkv at {n}"
    );
    assert!(
        keys_at(&mut r, n).await == keys_at(source, n).await,
        "{version:?}: keys differ at {n}"
    );
}

fn restore_fails(home: &Path, extra: &[&str], needle: &str) {
    let out_dir = tempfile::tempdir().unwrap();
    let data = out_dir.path().join("data");
    let out = restore(home, &data, "http://127.0.0.1:2380", extra);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{extra:?} restored; wanted {needle:?}"
    );
    assert!(
        err.contains(needle),
        "{extra:?}: stderr lacks {needle:?}:\n{err}"
    );
    assert!(!data.exists() && !etcd_datadir_part(&data).exists());
}

async fn point_in_time(version: EtcdVersion) {
    let source = Etcd::start(version).await;
    let mut c = source.client().await.unwrap();
    let lease = c.lease_grant(3600, None).await.unwrap().id();
    let (home, m) = two_sets(&source, &mut c, lease).await;
    let listing = backups(home.path());
    // One revision inside the first delta, one in a later delta of the second set.
    let targets = [
        m.first_full,
        m.first_full + 1,
        m.first_full + 5,
        m.txn,
        m.txn - 1,
        m.before_delete_range,
        m.before_delete_range + 1,
        m.second_full,
        m.second_full + 1,
        m.last - 3,
        m.last,
    ];
    for n in targets {
        check_revision(home.path(), version, &mut c, n).await;
    }
    // Past the end; below the oldest full snapshot.
    restore_fails(
        home.path(),
        &[&format!("--restore-to-revision={}", m.last + 1)],
        &format!("above the last backed-up revision {}", m.last),
    );
    if m.first_full > 1 {
        restore_fails(
            home.path(),
            &[&format!("--restore-to-revision={}", m.first_full - 1)],
            "below the oldest full snapshot",
        );
    }
    // A deliberately removed delta: its range cannot be restored, and the error names it.
    let holed = copy_store(home.path());
    let removed = listing
        .iter()
        .filter(|n| n.starts_with("Incr-"))
        .find(|n| {
            let first: i64 = n.split('-').nth(1).unwrap().parse().unwrap();
            first > m.second_full
        })
        .expect("a delta of the second set")
        .clone();
    std::fs::remove_file(v2(holed.path()).join(&removed)).unwrap();
    let first: i64 = removed.split('-').nth(1).unwrap().parse().unwrap();
    restore_fails(
        holed.path(),
        &[&format!("--restore-to-revision={first}")],
        &format!("revisions {first}.."),
    );
    // Below the hole restores.
    check_revision(holed.path(), version, &mut c, m.second_full).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_to_revision_35() {
    point_in_time(EtcdVersion::V35).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_to_revision_34() {
    point_in_time(EtcdVersion::V34).await;
}

/// `(revision, time)` of every event of the deltas of `home`, in order.
fn event_times(home: &Path) -> Vec<(i64, chrono::DateTime<chrono::Utc>)> {
    let mut out = Vec::new();
    for n in backups(home).iter().filter(|n| n.starts_with("Incr-")) {
        let gz = std::fs::read(v2(home).join(n)).unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&gz[..]), &mut bytes)
            .unwrap();
        let json = &bytes[..bytes.len() - 32];
        let events: Vec<serde_json::Value> = serde_json::from_slice(json).unwrap();
        for e in events {
            let r = e["etcdEvent"]["kv"]["mod_revision"].as_i64().unwrap();
            let t = chrono::DateTime::parse_from_rfc3339(e["time"].as_str().unwrap())
                .unwrap()
                .with_timezone(&chrono::Utc);
            out.push((r, t));
        }
    }
    out.sort_by_key(|(r, _)| *r);
    out
}

fn resolved(out: &std::process::Output) -> i64 {
    let err = String::from_utf8_lossy(&out.stderr);
    let at = err
        .find("resolved to revision ")
        .unwrap_or_else(|| panic!("no resolution in:\n{err}"));
    err[at + "resolved to revision ".len()..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_to_time_resolves_to_the_last_revision_at_or_before_it() {
    let source = Etcd::start(EtcdVersion::V35).await;
    let mut c = source.client().await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let base = rev(&mut c).await;
    let child = start_snapshot(&source, home.path()).await;
    // Writes in three bursts a second and a half apart, so that times between bursts exist.
    for burst in 0..3 {
        for i in 0..5 {
            c.put(format!("/b{burst}/k{i}"), "v", None).await.unwrap();
        }
        c.txn(Txn::new().and_then(vec![
            TxnOp::put(format!("/b{burst}/t1"), "a", None),
            TxnOp::put(format!("/b{burst}/t2"), "b", None),
        ]))
        .await
        .unwrap();
        wait_for_backup(home.path(), rev(&mut c).await).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    stop_snapshot(child);
    let events = event_times(home.path());
    assert_eq!(events.last().unwrap().0, rev(&mut c).await);
    // The oracle: the last revision whose first event is at or before t.
    let expect = |t: chrono::DateTime<chrono::Utc>| {
        let mut r = base;
        for (rev, time) in &events {
            if *rev > r && *time <= t {
                r = *rev;
            } else if *rev > r {
                break;
            }
        }
        r
    };
    let ns = chrono::Duration::nanoseconds(1);
    let mut times = Vec::new();
    for (i, (r, t)) in events.iter().enumerate() {
        // At an event, just before and just after it, at each burst's first and last revisions.
        if i == 0 || events[i - 1].1 != *t || events.get(i + 1).is_none_or(|n| n.0 != *r) {
            times.extend([*t, *t - ns, *t + ns]);
        }
    }
    times.push(events.last().unwrap().1 + chrono::Duration::seconds(3600));
    times.dedup();
    assert!(times.len() >= 6);
    for t in times.into_iter().take(14) {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let stamp = t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let out = restore(
            home.path(),
            &data,
            "http://127.0.0.1:2380",
            &[&format!("--restore-to-time={stamp}")],
        );
        assert!(
            out.status.success(),
            "{stamp}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(resolved(&out), expect(t), "{stamp}");
        let db = bbolt::Db::open(data.join("member/snap/db")).unwrap();
        assert_eq!(
            etcd_datadir::current_revision(&db).unwrap().get(),
            expect(t),
            "{stamp}: the data dir's revision"
        );
    }
    restore_fails(
        home.path(),
        &["--restore-to-time=2001-01-01T00:00:00Z"],
        "before the oldest full snapshot",
    );
    // A time and a revision together is a usage error.
    let out = restore(
        home.path(),
        &home.path().join("x"),
        "http://127.0.0.1:2380",
        &[
            "--restore-to-time=2001-01-01T00:00:00Z",
            "--restore-to-revision=3",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
}

async fn bump_cancels_old_watches(version: EtcdVersion) {
    let source = Etcd::start(version).await;
    let mut c = source.client().await.unwrap();
    let lease = c.lease_grant(3600, None).await.unwrap().id();
    let home = tempfile::tempdir().unwrap();
    let child = start_snapshot(&source, home.path()).await;
    writes(&mut c, 1, lease, &mut Marks::default()).await;
    wait_for_backup(home.path(), rev(&mut c).await).await;
    stop_snapshot(child);
    let last = source.revision().await;
    let target = last - 5;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let peer = format!("http://127.0.0.1:{}", testkit::free_port());
    let out = restore(
        home.path(),
        &data,
        &peer,
        &[
            &format!("--restore-to-revision={target}"),
            "--bump-revision=1000",
            "--mark-compacted",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut restored = Etcd::on_data_dir(version, &data, &["--initial-cluster-token=tok"]);
    restored.set_member("r1", &peer);
    restored.restart().await;
    let bumped = target + 1000;
    let mut r = restored.client().await.unwrap();
    assert_eq!(restored.revision().await, bumped, "{version:?}");
    // A client that saw revision `last` before the restore watches on from there.
    let mut stream = r
        .watch(
            "/",
            Some(WatchOptions::new().with_prefix().with_start_revision(last)),
        )
        .await
        .unwrap();
    let resp = loop {
        let resp = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("the watch answers")
            .unwrap()
            .unwrap();
        if !resp.created() || resp.canceled() {
            break resp;
        }
    };
    assert!(resp.canceled(), "{version:?}: {resp:?}");
    assert_eq!(resp.compact_revision(), bumped, "{version:?}");
    // The keys at the target are kept, new writes go on above the bump.
    let put = r.put("/after-restore", "x", None).await.unwrap();
    assert_eq!(put.header().unwrap().revision(), bumped + 1);
    let want = keys_at(&mut c, target).await;
    let got = r
        .get(
            "",
            Some(GetOptions::new().with_all_keys().with_revision(bumped)),
        )
        .await
        .unwrap();
    assert!(
        kv_rows(&got) == want,
        "{version:?}: keys at the bumped revision"
    );
    // etcdutl's rule: the two flags go together.
    let out = restore(
        home.path(),
        &dir.path().join("y"),
        &peer,
        &["--bump-revision=5"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--mark-compacted"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bump_revision_and_mark_compacted_cancel_old_watches_35() {
    bump_cancels_old_watches(EtcdVersion::V35).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bump_revision_and_mark_compacted_cancel_old_watches_34() {
    bump_cancels_old_watches(EtcdVersion::V34).await;
}

fn db_revision(data_dir: &Path) -> i64 {
    let db = bbolt::Db::open(data_dir.join("member/snap/db")).unwrap();
    etcd_datadir::current_revision(&db).unwrap().get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initialize_and_the_server_restore_to_a_point_in_time() {
    use crate::common::sidecar::Sidecar;
    let source = Etcd::start(EtcdVersion::V35).await;
    let mut c = source.client().await.unwrap();
    let lease = c.lease_grant(3600, None).await.unwrap().id();
    let home = tempfile::tempdir().unwrap();
    let child = start_snapshot(&source, home.path()).await;
    writes(&mut c, 1, lease, &mut Marks::default()).await;
    wait_for_backup(home.path(), rev(&mut c).await).await;
    stop_snapshot(child);
    let target = rev(&mut c).await - 7;

    // initialize: a missing data dir is restored, to the target.
    let data = home.path().join("init/data");
    let out = bin()
        .env("HOME", home.path())
        .env_remove("POD_NAMESPACE")
        .env_remove("ETCD_CONF")
        .args([
            "initialize",
            "--storage-provider=Local",
            "--store-container=backups",
        ])
        .args(["--data-dir", data.to_str().unwrap()])
        .arg(format!("--restore-to-revision={target}"))
        .args([
            "--restoration-temp-snapshots-dir",
            home.path().join("rtmp").to_str().unwrap(),
        ])
        .args([
            "--snapstore-temp-directory",
            home.path().join("stmp").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(db_revision(&data), target);

    // server: its start-up restore (driven over HTTP, as etcd-wrapper does) restores the target.
    crate::common::sidecar::single_member_conf(home.path(), &source);
    let sc = Sidecar::start(
        home.path(),
        "m0",
        &source,
        testkit::free_port(),
        &[
            &format!("--restore-to-revision={target}"),
            "--bump-revision=100",
            "--mark-compacted",
        ],
    );
    sc.wait_serving().await;
    assert_eq!(sc.http("GET", "/initialization/start?mode=sanity").0, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, s) = sc.http("GET", "/initialization/status");
        if s == "Successful" {
            break;
        }
        assert!(
            s != "Failed" && std::time::Instant::now() < deadline,
            "{s}:\n{}",
            sc.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(db_revision(&home.path().join("m0-restored")), target + 100);
}

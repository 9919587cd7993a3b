//! The fault matrix: the snapshotter against real etcd 3.4 and 3.5 under ordinary faults (etcd
//! killed, compacted, rolled back; the store failing, resetting, stalling, read-only, full).
//! Every case ends in a restore booted by a stock etcd and compared with the source: the
//! revision the backups claim is etcd's, and keys and `hashkv` at it are equal.
//! `docs/reliability.md` lists the cases; the snapshotter process killed mid-upload is in the
//! binary's `tests/faults.rs`, leader changes in its `tests/cluster.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::*;
use etcdbr::compress::Compression;
use snapstore::{Kind, Provider, SnapStore, StoreConfig};
use testkit::etcd_client::{self, Client};
use testkit::proxy::{Fault, FaultProxy};
use testkit::{Etcd, EtcdVersion};

fn one_second_deltas(f: &Fixture) -> etcdbr::snapshotter::SnapshotterOptions {
    options(
        f,
        Compression::Gzip,
        Duration::from_secs(1),
        10 * 1024 * 1024,
    )
}

async fn puts(c: &mut Client, prefix: &str, n: usize) {
    for i in 0..n {
        c.put(format!("{prefix}/k{i:03}"), format!("v{i}"), None)
            .await
            .unwrap();
    }
}

/// Waits until the store's latest set reaches etcd's current revision.
async fn wait_caught_up(store: &SnapStore, etcd: &Etcd) {
    let target = etcd.revision().await;
    wait_for(
        &format!("the backups to reach revision {target}"),
        async || {
            store
                .latest_set()
                .await
                .ok()
                .and_then(|s| s.last_revision())
                .is_some_and(|r| r.get() >= target)
        },
    )
    .await;
}

async fn compact_now(etcd: &Etcd, c: &mut Client) -> i64 {
    let rev = etcd.revision().await;
    c.compact(
        rev,
        Some(etcd_client::CompactionOptions::new().with_physical()),
    )
    .await
    .unwrap();
    rev
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_killed_mid_period_and_restarted() {
    let mut etcd = Etcd::start(EtcdVersion::V34).await;
    let f = fixture();
    let mut opts = one_second_deltas(&f);
    opts.delta_period = Duration::from_secs(3);
    let run = start(&etcd, &f, opts);
    wait_for("the full snapshot", async || {
        count(&f.store, Kind::Full).await == 1
    })
    .await;
    let mut c = etcd.client().await.unwrap();
    puts(&mut c, "/before", 30).await;
    // Killed with events buffered and not yet saved: they are read again from etcd.
    etcd.kill();
    etcd.restart().await;
    let mut c = etcd.client().await.unwrap();
    puts(&mut c, "/after", 30).await;
    wait_caught_up(&f.store, &etcd).await;
    run.stop().await;
    assert_eq!(count(&f.store, Kind::Full).await, 1, "the chain resumed");
    assert_restores_source(&f.store, &etcd).await;
}

/// Defect 1 of the reliability issue, as `snapshot` hit it: etcd killed mid-period and
/// restarted, written and compacted before the snapshotter reconnects. The watch the resumed
/// session opens is cancelled by etcd; that must lead to a full snapshot, not to a session that
/// waits for ever on a cancelled watch while saying "Taking delta snapshot".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_compacted_past_a_running_snapshotter_takes_a_full_snapshot() {
    let mut etcd = Etcd::start(EtcdVersion::V35).await;
    let f = fixture();
    let mut opts = one_second_deltas(&f);
    opts.delta_period = Duration::from_secs(3);
    opts.backoff = etcdbr::backoff::ExponentialBackoff::new(3, 3, Duration::from_secs(3));
    let heard = Arc::new(Recorder::default());
    opts.events = etcdbr::events::Events::none().with(heard.clone());
    let run = start(&etcd, &f, opts);
    wait_for("the full snapshot", async || {
        count(&f.store, Kind::Full).await == 1
    })
    .await;
    let mut c = etcd.client().await.unwrap();
    puts(&mut c, "/lost-in-memory", 20).await;
    etcd.kill();
    // etcd comes back, is written and compacted before the snapshotter can reach it again: on
    // another client port first, then on its own.
    let mut elsewhere = Etcd::on_data_dir(etcd.version, etcd.data_dir(), &[]);
    elsewhere.set_member(&etcd.name, &etcd.peer_url);
    elsewhere.restart().await;
    let mut c = elsewhere.client().await.unwrap();
    c.put("/one", "put", None).await.unwrap();
    let compacted = compact_now(&elsewhere, &mut c).await;
    elsewhere.stop();
    etcd.restart().await;
    let mut c = etcd.client().await.unwrap();
    wait_for("a full snapshot at the compacted revision", async || {
        count(&f.store, Kind::Full).await == 2
    })
    .await;
    puts(&mut c, "/later", 20).await;
    wait_caught_up(&f.store, &etcd).await;
    run.stop().await;
    let set = f.store.latest_set().await.unwrap();
    assert!(set.full.unwrap().last_revision.get() >= compacted);
    let heard = heard.heard();
    assert!(
        heard
            .iter()
            .any(|l| l.starts_with("failed: ") && l.contains("has been compacted")),
        "the cancelled watch is reported as a failure: {heard:?}"
    );
    assert!(
        heard
            .iter()
            .any(|l| l.contains("SnapshotRequired { kind: Full }")),
        "{heard:?}"
    );
    assert_restores_source(&f.store, &etcd).await;
}

/// The server's variant of defect 1: the snapshotter stopped at a revision etcd then compacts
/// past; the resumed session must take a full snapshot and go on with deltas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_compacted_past_a_stopped_snapshotter_takes_a_full_snapshot() {
    let etcd = Etcd::start(EtcdVersion::V34).await;
    let mut c = etcd.client().await.unwrap();
    let f = fixture();
    let run = start(&etcd, &f, one_second_deltas(&f));
    wait_for("the full snapshot", async || {
        count(&f.store, Kind::Full).await == 1
    })
    .await;
    puts(&mut c, "/saved", 10).await;
    wait_caught_up(&f.store, &etcd).await;
    run.stop().await;
    puts(&mut c, "/unsaved", 10).await;
    compact_now(&etcd, &mut c).await;
    let mut opts = one_second_deltas(&f);
    opts.start_with_full_snapshot = false;
    let run = start(&etcd, &f, opts);
    wait_for("a new full snapshot", async || {
        count(&f.store, Kind::Full).await == 2
    })
    .await;
    puts(&mut c, "/resumed", 10).await;
    wait_caught_up(&f.store, &etcd).await;
    run.stop().await;
    assert_restores_source(&f.store, &etcd).await;
}

/// Defect 2's setting with the snapshotter running: etcd rolled back to a copy of its data dir
/// taken at an earlier revision. The snapshotter starts a new chain with a full snapshot, and
/// the restore is the new history (the old deltas above the new base are never applied).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_rolled_back_under_a_running_snapshotter() {
    let mut etcd = Etcd::start(EtcdVersion::V34).await;
    let f = fixture();
    let run = start(&etcd, &f, one_second_deltas(&f));
    wait_for("the full snapshot", async || {
        count(&f.store, Kind::Full).await == 1
    })
    .await;
    let mut c = etcd.client().await.unwrap();
    puts(&mut c, "/old", 10).await;
    wait_caught_up(&f.store, &etcd).await;
    let copy = f.temp.join("copy");
    etcd.copy_data_dir(&copy).await;
    let mut c = etcd.client().await.unwrap();
    puts(&mut c, "/old-after-copy", 20).await;
    wait_caught_up(&f.store, &etcd).await;
    // Not in the same second as the new full snapshot (that would be ambiguous by name).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    etcd.roll_back_to(&copy).await;
    wait_for("a new full snapshot", async || {
        count(&f.store, Kind::Full).await == 2
    })
    .await;
    let mut c = etcd.client().await.unwrap();
    puts(&mut c, "/rolled", 30).await;
    wait_caught_up(&f.store, &etcd).await;
    run.stop().await;
    let set = f.store.latest_set().await.unwrap();
    assert!(
        !set.abandoned.is_empty(),
        "the old history's deltas are left out"
    );
    assert_restores_source(&f.store, &etcd).await;
}

/// The rollback under a stopped snapshotter, written past the last backed-up revision: etcd's
/// revision alone does not show it; the events at that revision do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_rolled_back_under_a_stopped_snapshotter_and_written_past_it() {
    let mut etcd = Etcd::start(EtcdVersion::V35).await;
    let f = fixture();
    let run = start(&etcd, &f, one_second_deltas(&f));
    wait_for("the full snapshot", async || {
        count(&f.store, Kind::Full).await == 1
    })
    .await;
    let mut c = etcd.client().await.unwrap();
    puts(&mut c, "/old", 10).await;
    wait_caught_up(&f.store, &etcd).await;
    let copy = f.temp.join("copy");
    etcd.copy_data_dir(&copy).await;
    let mut c = etcd.client().await.unwrap();
    puts(&mut c, "/old-after-copy", 20).await;
    wait_caught_up(&f.store, &etcd).await;
    run.stop().await;
    let saved = f
        .store
        .latest_set()
        .await
        .unwrap()
        .last_revision()
        .unwrap()
        .get();
    etcd.roll_back_to(&copy).await;
    let mut c = etcd.client().await.unwrap();
    puts(&mut c, "/rolled", 30).await;
    assert!(etcd.revision().await > saved);
    let mut opts = one_second_deltas(&f);
    opts.start_with_full_snapshot = false;
    let run = start(&etcd, &f, opts);
    wait_for("a new full snapshot", async || {
        count(&f.store, Kind::Full).await == 2
    })
    .await;
    puts(&mut c, "/after", 5).await;
    wait_caught_up(&f.store, &etcd).await;
    run.stop().await;
    assert_restores_source(&f.store, &etcd).await;
}

/// An S3 store (moto) behind a fault proxy, and a switch that turns the fault on and off.
struct FaultyS3 {
    _server: testkit::stores::StoreServer,
    _proxy: FaultProxy,
    store: SnapStore,
    on: Arc<AtomicBool>,
    failed: Arc<AtomicUsize>,
}

async fn faulty_s3(
    fault: impl Fn(&testkit::proxy::RequestHead) -> Option<Fault> + Send + Sync + 'static,
) -> FaultyS3 {
    let server = testkit::stores::moto();
    let upstream = server.endpoint.trim_start_matches("http://").to_owned();
    let on = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let (on2, failed2) = (Arc::clone(&on), Arc::clone(&failed));
    let proxy = FaultProxy::start_with(&upstream, move |r| {
        let f = on2.load(Ordering::SeqCst).then(|| fault(r)).flatten();
        if f.is_some() {
            failed2.fetch_add(1, Ordering::SeqCst);
        }
        f
    })
    .await;
    let creds = server.dir().join("credentials.json");
    std::fs::write(
        &creds,
        r#"{"accessKeyID":"AKID","secretAccessKey":"SECRET","region":"us-east-1","s3ForcePathStyle":true}"#,
    )
    .unwrap();
    let env: BTreeMap<String, String> = [(
        "AWS_APPLICATION_CREDENTIALS_JSON".to_owned(),
        creds.display().to_string(),
    )]
    .into();
    let mut c = StoreConfig::default();
    c.provider = Some(Provider::S3);
    c.container.clone_from(&server.bucket);
    c.endpoint_override.clone_from(&proxy.endpoint);
    c.prefix = "faults".into();
    let store = SnapStore::open_with_env(&c, env).unwrap();
    FaultyS3 {
        _server: server,
        _proxy: proxy,
        store,
        on,
        failed,
    }
}

/// The store faults of the matrix: while the fault is on, writes keep coming; when it clears,
/// the chain must be complete (failed uploads are taken again from etcd, never skipped).
async fn store_fault_case(
    version: EtcdVersion,
    fault_for: Duration,
    fault: impl Fn(&testkit::proxy::RequestHead) -> Option<Fault> + Send + Sync + 'static,
) -> usize {
    let etcd = Etcd::start(version).await;
    let s3 = faulty_s3(fault).await;
    let mut f = fixture();
    f.store = s3.store.clone();
    let run = start(&etcd, &f, one_second_deltas(&f));
    wait_for("the full snapshot", async || {
        count(&f.store, Kind::Full).await == 1
    })
    .await;
    let mut c = etcd.client().await.unwrap();
    s3.on.store(true, Ordering::SeqCst);
    let writer = {
        let mut c = c.clone();
        tokio::spawn(async move {
            for round in 0..5 {
                puts(&mut c, &format!("/during/{round}"), 10).await;
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
        })
    };
    tokio::time::sleep(fault_for).await;
    s3.on.store(false, Ordering::SeqCst);
    writer.await.unwrap();
    puts(&mut c, "/after", 10).await;
    wait_caught_up(&f.store, &etcd).await;
    run.stop().await;
    assert_restores_source(&f.store, &etcd).await;
    s3.failed.load(Ordering::SeqCst)
}

fn is_put(r: &testkit::proxy::RequestHead) -> bool {
    r.method == "PUT" || r.method == "POST"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_failing_consecutive_requests() {
    let n = Arc::new(AtomicUsize::new(0));
    // Three failures in a row take the retry layer 1 + 2 s (and jitter) to get through.
    let failed = store_fault_case(EtcdVersion::V34, Duration::from_secs(9), move |_| {
        (n.fetch_add(1, Ordering::SeqCst) < 3).then_some(Fault::Status(500))
    })
    .await;
    assert_eq!(failed, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_resetting_connections() {
    let failed = store_fault_case(EtcdVersion::V35, Duration::from_secs(3), |r| {
        is_put(r).then_some(Fault::Reset)
    })
    .await;
    assert!(failed > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_stalling() {
    let failed = store_fault_case(EtcdVersion::V34, Duration::from_secs(4), |_| {
        Some(Fault::Stall(Duration::from_secs(2)))
    })
    .await;
    assert!(failed > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_read_only_for_a_while() {
    let failed = store_fault_case(EtcdVersion::V35, Duration::from_secs(5), |r| {
        is_put(r).then_some(Fault::Status(403))
    })
    .await;
    assert!(failed > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_full_for_a_while() {
    let failed = store_fault_case(EtcdVersion::V34, Duration::from_secs(5), |r| {
        is_put(r).then_some(Fault::Status(507))
    })
    .await;
    assert!(failed > 0);
}

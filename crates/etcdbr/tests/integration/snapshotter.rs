//! The snapshotter against real etcd 3.4 and 3.5 processes and a Local store.

use std::time::Duration;

use crate::common::*;
use etcdbr::compress::Compression;
use snapstore::Kind;
use testkit::etcd_client;
use testkit::{Etcd, EtcdVersion};

async fn full_and_deltas(version: EtcdVersion, compression: Compression) {
    let etcd = Etcd::start(version).await;
    let mut c = etcd.client().await.unwrap();
    workload(&mut c, 0).await;
    let f = fixture();
    let run = start(
        &etcd,
        &f,
        options(&f, compression, Duration::from_secs(1), 10 * 1024 * 1024),
    );
    wait_for("the full snapshot", async || {
        count(&f.store, Kind::Full).await == 1
    })
    .await;
    workload(&mut c, 1).await;
    // Round 1 in a periodic delta, round 2 in a later one or the flush on stop.
    wait_for("a periodic delta", async || {
        count(&f.store, Kind::Incr).await >= 1
    })
    .await;
    workload(&mut c, 2).await;
    run.stop().await;
    let (full, deltas) = verify_chain(&f.store, &etcd).await;
    assert!(full.snap_name.ends_with(compression.suffix()));
    assert!(
        deltas.len() >= 2,
        "periodic deltas and the flush on stop: {}",
        deltas.len()
    );
    let big = deltas
        .iter()
        .any(|d| d.snap_name.ends_with(compression.suffix()));
    assert!(big);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd34_full_and_deltas_cover_every_revision_gzip() {
    full_and_deltas(EtcdVersion::V34, Compression::Gzip).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd35_full_and_deltas_cover_every_revision_zlib() {
    full_and_deltas(EtcdVersion::V35, Compression::Zlib).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd35_full_and_deltas_cover_every_revision_lzw() {
    full_and_deltas(EtcdVersion::V35, Compression::Lzw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd34_full_and_deltas_uncompressed() {
    full_and_deltas(EtcdVersion::V34, Compression::None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limit_splits_deltas() {
    let etcd = Etcd::start(EtcdVersion::V34).await;
    let mut c = etcd.client().await.unwrap();
    let f = fixture();
    let run = start(
        &etcd,
        &f,
        options(&f, Compression::Gzip, Duration::from_secs(3600), 4096),
    );
    wait_for("the full snapshot", async || {
        count(&f.store, Kind::Full).await == 1
    })
    .await;
    for i in 0..300 {
        c.put(format!("key-{i}"), vec![b'v'; 100], None)
            .await
            .unwrap();
    }
    wait_for("deltas cut by the memory limit", async || {
        count(&f.store, Kind::Incr).await >= 5
    })
    .await;
    run.stop().await;
    let (_, deltas) = verify_chain(&f.store, &etcd).await;
    assert!(deltas.len() >= 5, "{}", deltas.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_the_chain_after_etcd_restarts() {
    let mut etcd = Etcd::start(EtcdVersion::V35).await;
    let f = fixture();
    let run = start(
        &etcd,
        &f,
        options(
            &f,
            Compression::Gzip,
            Duration::from_secs(1),
            10 * 1024 * 1024,
        ),
    );
    wait_for("the full snapshot", async || {
        count(&f.store, Kind::Full).await == 1
    })
    .await;
    let mut c = etcd.client().await.unwrap();
    workload(&mut c, 0).await;
    let saved = etcd.revision().await;
    let store = f.store.clone();
    wait_for("round 0 saved", async || {
        store
            .latest_set()
            .await
            .unwrap()
            .last_revision()
            .is_some_and(|r| r.get() == saved)
    })
    .await;
    etcd.kill();
    etcd.restart().await;
    let mut c = etcd.client().await.unwrap();
    workload(&mut c, 1).await;
    let target = etcd.revision().await;
    let store = f.store.clone();
    wait_for("the chain to reach the new revision", async || {
        store
            .latest_set()
            .await
            .unwrap()
            .last_revision()
            .is_some_and(|r| r.get() == target)
    })
    .await;
    run.stop().await;
    assert_eq!(
        count(&f.store, Kind::Full).await,
        1,
        "the chain resumed without a new full snapshot"
    );
    verify_chain(&f.store, &etcd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_watch_revision_forces_a_full_snapshot() {
    let etcd = Etcd::start(EtcdVersion::V34).await;
    let mut c = etcd.client().await.unwrap();
    let f = fixture();
    let run = start(
        &etcd,
        &f,
        options(
            &f,
            Compression::Gzip,
            Duration::from_secs(1),
            10 * 1024 * 1024,
        ),
    );
    wait_for("the full snapshot", async || {
        count(&f.store, Kind::Full).await == 1
    })
    .await;
    run.stop().await;
    workload(&mut c, 0).await;
    let rev = etcd.revision().await;
    c.compact(
        rev,
        Some(etcd_client::CompactionOptions::new().with_physical()),
    )
    .await
    .unwrap();

    let mut opts = options(
        &f,
        Compression::Gzip,
        Duration::from_secs(1),
        10 * 1024 * 1024,
    );
    opts.start_with_full_snapshot = false;
    let run = start(&etcd, &f, opts);
    wait_for("a new full snapshot", async || {
        count(&f.store, Kind::Full).await == 2
    })
    .await;
    workload(&mut c, 1).await;
    run.stop().await;
    let (full, _) = verify_chain(&f.store, &etcd).await;
    assert_eq!(full.last_revision.get(), rev);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_deltas_disabled_only_full_snapshots_are_taken() {
    let etcd = Etcd::start(EtcdVersion::V35).await;
    let mut c = etcd.client().await.unwrap();
    let f = fixture();
    let run = start(
        &etcd,
        &f,
        options(&f, Compression::Gzip, Duration::ZERO, 10 * 1024 * 1024),
    );
    wait_for("the full snapshot", async || {
        count(&f.store, Kind::Full).await == 1
    })
    .await;
    workload(&mut c, 0).await;
    let e = run.handle.delta().await.unwrap_err().to_string();
    assert!(e.contains("delta snapshots are disabled"), "{e}");
    let full = run.handle.full(false).await.unwrap();
    assert_eq!(full.last_revision.get(), etcd.revision().await);
    run.stop().await;
    assert_eq!(count(&f.store, Kind::Full).await, 2);
    assert_eq!(count(&f.store, Kind::Incr).await, 0);
}

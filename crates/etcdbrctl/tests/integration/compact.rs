//! `etcdbrctl compact` through the binary: a chain with thousands of delta events folded into
//! one full snapshot restores to the same keys, values and revision as the chain itself.

use std::path::Path;

use crate::common::{KvRow, compact, kv_rows, names, v2};
use testkit::etcd_client::{Client, DeleteOptions, GetOptions};
use testkit::{Etcd, EtcdVersion};

/// Every live key with its value and revisions, as etcd reports them.
async fn contents(c: &mut Client) -> Vec<KvRow> {
    let r = c
        .get(vec![0u8], Some(GetOptions::new().with_from_key()))
        .await
        .unwrap();
    kv_rows(&r)
}

async fn restore_and_read(
    home: &Path,
    name: &str,
) -> (i64, Vec<(Vec<u8>, Vec<u8>, i64, i64, i64, i64)>) {
    let data = home.join(name);
    let peer = format!("http://127.0.0.1:{}", testkit::free_port());
    let out = crate::common::restore(home, &data, &peer, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut etcd = Etcd::on_data_dir(EtcdVersion::V35, &data, &["--initial-cluster-token=tok"]);
    etcd.set_member("r1", &peer);
    etcd.restart().await;
    let mut c = etcd.client().await.unwrap();
    (etcd.revision().await, contents(&mut c).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_snapshot_restores_to_the_same_state() {
    compacts_and_restores(&[], ".gz").await;
}

/// The compacted db streams into the upload whatever the policy: uncompressed, and zlib
/// (one stream, no units) too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncompressed_and_zlib_chains_compact_too() {
    compacts_and_restores(&["--compress-snapshots=false"], "").await;
    compacts_and_restores(&["--compression-policy=zlib"], ".zlib").await;
}

async fn compacts_and_restores(policy: &[&str], suffix: &str) {
    let etcd = Etcd::start(EtcdVersion::V35).await;
    let mut c = etcd.client().await.unwrap();
    for i in 0..300 {
        c.put(format!("/base/{i:03}"), format!("b{i}"), None)
            .await
            .unwrap();
    }
    let home = tempfile::tempdir().unwrap();
    let child = crate::common::start_snapshot_with(&etcd, home.path(), policy).await;
    let lease = c.lease_grant(3600, None).await.unwrap().id();
    for round in 0..4 {
        for i in 0..800 {
            c.put(format!("/d/{:03}", i % 500), format!("r{round}-{i}"), None)
                .await
                .unwrap();
        }
        c.delete(
            format!("/d/{round}"),
            Some(DeleteOptions::new().with_prefix()),
        )
        .await
        .unwrap();
        c.put(
            format!("/leased/{round}"),
            "l",
            Some(testkit::etcd_client::PutOptions::new().with_lease(lease)),
        )
        .await
        .unwrap();
    }
    c.delete("/base/000", None).await.unwrap(); // the newest write is a delete
    let rev = etcd.revision().await;
    crate::common::wait_for_backup(home.path(), rev).await;
    crate::common::stop_snapshot(child);
    let chain = names(&v2(home.path()));
    assert!(
        chain.iter().filter(|n| n.starts_with("Incr-")).count() >= 2,
        "{chain:?}"
    );

    let (chain_rev, chain_state) = restore_and_read(home.path(), "from-chain").await;
    assert_eq!(chain_rev, rev);

    let out = compact(home.path());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let after = names(&v2(home.path()));
    let new: Vec<_> = after.iter().filter(|n| !chain.contains(n)).collect();
    assert_eq!(new.len(), 1, "{after:?}");
    assert!(
        new[0].starts_with(&format!("Full-00000000-{rev:08}-"))
            && new[0].split('-').nth(3).is_some_and(|t| t.ends_with(suffix)
                && t.trim_end_matches(suffix)
                    .bytes()
                    .all(|b| b.is_ascii_digit())),
        "{new:?}"
    );
    assert!(!home.path().join("scratch").exists() && !home.path().join("scratch.part").exists());
    assert!(
        std::fs::read_dir(home.path().join("tmp"))
            .unwrap()
            .next()
            .is_none(),
        "temp files left"
    );

    // The latest set is now the compacted snapshot alone; it restores to the same state.
    let (compacted_rev, compacted_state) = restore_and_read(home.path(), "from-compacted").await;
    assert_eq!(compacted_rev, rev);
    assert_eq!(compacted_state.len(), chain_state.len());
    assert!(compacted_state == chain_state, "restored keys differ");
    assert!(log.contains("Compacted snapshot name"), "{log}");
}

#[test]
fn compact_of_an_empty_store_fails_clearly() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join("backups")).unwrap();
    let out = compact(home.path());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no full snapshot"), "{err}");
}

//! `etcdbrctl snapshot` then `etcdbrctl restore`, end to end with real etcd 3.4 and 3.5, and
//! restore's failure modes on damaged stores.

use std::path::Path;

use crate::common::*;
use testkit::etcd_client::{Client, GetOptions};
use testkit::{Etcd, EtcdVersion};

async fn kvs(c: &mut Client, rev: i64) -> Vec<KvRow> {
    // Keys only (values are covered by hashkv): three 1.5 MiB values exceed the client message limit.
    let r = c
        .get(
            "",
            Some(
                GetOptions::new()
                    .with_all_keys()
                    .with_keys_only()
                    .with_revision(rev),
            ),
        )
        .await
        .unwrap();
    kv_rows(&r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_then_restore_boots_etcd_34_and_35_with_the_same_data() {
    let source = Etcd::start_with(EtcdVersion::V34, &["--max-request-bytes=3145728"]).await;
    let mut c = source.client().await.unwrap();
    let lease = c.lease_grant(3600, None).await.unwrap().id();
    workload(&mut c, 0, lease).await;
    let home = back_up(&source, &mut c, lease).await;
    let last = source.revision().await;
    let middle = last - 50;
    assert!(
        names(&v2(home.path()))
            .iter()
            .filter(|n| n.starts_with("Incr-"))
            .count()
            >= 2
    );

    for boot in [EtcdVersion::V34, EtcdVersion::V35] {
        let out_dir = tempfile::tempdir().unwrap();
        let data_dir = out_dir.path().join("data");
        let peer = format!("http://127.0.0.1:{}", testkit::free_port());
        let out = restore(home.path(), &data_dir, &peer, &[]);
        assert!(
            out.status.success(),
            "restore failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!etcd_datadir_part(&data_dir).exists());
        assert!(
            !home.path().join("restore-tmp").exists(),
            "temp snapshots removed"
        );
        let mut restored = Etcd::on_data_dir(
            boot,
            &data_dir,
            &["--initial-cluster-token=tok", "--max-request-bytes=3145728"],
        );
        restored.set_member("r1", &peer);
        restored.restart().await;
        let mut r = restored.client().await.unwrap();
        assert_eq!(restored.revision().await, last, "{boot:?}");
        for rev in [last, middle] {
            assert!(
                kvs(&mut r, rev).await == kvs(&mut c, rev).await,
                "{boot:?}: keys differ at revision {rev}"
            );
            assert_eq!(
                r.hash_kv(rev).await.unwrap().hash(),
                c.hash_kv(rev).await.unwrap().hash(),
                "{boot:?}: hashkv at {rev}"
            );
        }
        let ttl = r
            .lease_time_to_live(
                lease,
                Some(testkit::etcd_client::LeaseTimeToLiveOptions::new().with_keys()),
            )
            .await
            .unwrap();
        assert_eq!(
            ttl.keys().len(),
            3,
            "{boot:?}: the lease stays attached to its three keys"
        );
    }
}

fn fails(home: &Path, data_dir: &Path, needle: &str) {
    let out = restore(home, data_dir, "http://127.0.0.1:2380", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "restore succeeded; wanted {needle:?}"
    );
    assert!(err.contains(needle), "stderr lacks {needle:?}:\n{err}");
    assert!(!err.contains("panicked"));
    assert!(!etcd_datadir_part(data_dir).exists(), ".part left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_or_missing_backups_fail_clearly_and_leave_the_target_untouched() {
    let source = Etcd::start_with(EtcdVersion::V35, &["--max-request-bytes=3145728"]).await;
    let mut c = source.client().await.unwrap();
    let lease = c.lease_grant(3600, None).await.unwrap().id();
    let good = back_up(&source, &mut c, lease).await;
    let all = names(&v2(good.path()));
    let full = all.iter().find(|n| n.starts_with("Full-")).unwrap().clone();
    let deltas: Vec<String> = all
        .iter()
        .filter(|n| n.starts_with("Incr-"))
        .cloned()
        .collect();
    assert!(deltas.len() >= 3, "{deltas:?}");
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("data");

    // An empty store.
    let empty = tempfile::tempdir().unwrap();
    fails(empty.path(), &target, "no full snapshot found");
    assert!(!target.exists());

    // A flipped byte in the full snapshot: gzip's own CRC, or (uncompressed) the sha256 trailer.
    let h = copy_store(good.path());
    let p = v2(h.path()).join(&full);
    let mut b = std::fs::read(&p).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x40;
    std::fs::write(&p, &b).unwrap();
    fails(h.path(), &target, &full);
    let h = copy_store(good.path());
    let gz = v2(h.path()).join(&full);
    let mut db = Vec::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(&gz).unwrap())
        .read_to_end(&mut db)
        .unwrap();
    db[8192 + 100] ^= 1;
    std::fs::remove_file(&gz).unwrap();
    std::fs::write(v2(h.path()).join(full.trim_end_matches(".gz")), &db).unwrap();
    fails(h.path(), &target, "SHA256 hash does not match");

    // A truncated delta.
    let h = copy_store(good.path());
    let p = v2(h.path()).join(&deltas[1]);
    let b = std::fs::read(&p).unwrap();
    std::fs::write(&p, &b[..b.len() / 2]).unwrap();
    fails(h.path(), &target, &deltas[1]);

    // A delta missing in the middle of the chain.
    let h = copy_store(good.path());
    std::fs::remove_file(v2(h.path()).join(&deltas[1])).unwrap();
    fails(h.path(), &target, "the delta chain has a gap");

    // An existing data dir, and an existing .part: refused, contents untouched.
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("keep"), "x").unwrap();
    let out1 = restore(good.path(), &target, "http://127.0.0.1:2380", &[]);
    assert!(!out1.status.success());
    assert!(String::from_utf8_lossy(&out1.stderr).contains("already exists"));
    assert_eq!(std::fs::read(target.join("keep")).unwrap(), b"x");
    std::fs::remove_dir_all(&target).unwrap();
    let part = etcd_datadir_part(&target);
    std::fs::create_dir_all(&part).unwrap();
    let out2 = restore(good.path(), &target, "http://127.0.0.1:2380", &[]);
    assert!(!out2.status.success());
    assert!(String::from_utf8_lossy(&out2.stderr).contains(".part already exists"));
    assert!(part.exists() && !target.exists());
    std::fs::remove_dir_all(&part).unwrap();

    // Inconsistent cluster flags.
    let out3 = bin()
        .env("HOME", good.path())
        .args([
            "restore",
            "--storage-provider=Local",
            "--store-container=backups",
            "--data-dir",
            target.to_str().unwrap(),
        ])
        .args([
            "--name",
            "x",
            "--initial-cluster",
            "r1=http://127.0.0.1:2380",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out3.stderr)
            .contains("member name \"x\" is not in --initial-cluster")
    );

    // And the intact store restores.
    let ok = restore(good.path(), &target, "http://127.0.0.1:2380", &[]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

use std::io::Read;

//! The compression policies through the binary: a chain whose policy changes from gzip to zstd
//! mid-way (gzip full snapshot and deltas, then zstd deltas) verifies, restores, copies and
//! compacts; its objects decode with the stock `gzip` and `zstd` tools.

use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::common::sidecar::Sidecar;
use crate::common::{
    assert_restores, bin, compact, copy_store, kv_rows, names, start_snapshot_with, stop_snapshot,
    v2, wait_for_backup, workload,
};
use testkit::{Etcd, EtcdVersion};

/// `tool -dc file`, which must succeed.
fn decoded_by(tool: &str, file: &Path) -> Vec<u8> {
    let out = Command::new(tool).arg("-dc").arg(file).output().unwrap();
    assert!(
        out.status.success(),
        "{tool} -dc {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_switched_from_gzip_to_zstd_verifies_restores_copies_and_compacts() {
    // The workload puts a 1.5 MiB value.
    let etcd = Etcd::start_with(EtcdVersion::V35, &["--max-request-bytes=3145728"]).await;
    let mut c = etcd.client().await.unwrap();
    let lease = c.lease_grant(3600, None).await.unwrap().id();
    workload(&mut c, 0, lease).await;
    let home = tempfile::tempdir().unwrap();
    let gzip = start_snapshot_with(&etcd, home.path(), &["--compression-policy=gzip"]).await;
    workload(&mut c, 1, lease).await;
    wait_for_backup(home.path(), etcd.revision().await).await;
    stop_snapshot(gzip);
    // The same store, the policy changed: the server (which, unlike `snapshot`, resumes the
    // store's chain) goes on with zstd deltas.
    crate::common::sidecar::single_member_conf(home.path(), &etcd);
    let mut zstd = Sidecar::start(
        home.path(),
        "m0",
        &etcd,
        testkit::free_port(),
        &["--compression-policy=zstd"],
    );
    zstd.wait_health(200).await;
    for round in 2..=3 {
        workload(&mut c, round, lease).await;
        wait_for_backup(home.path(), etcd.revision().await).await;
    }
    assert!(zstd.terminate(), "{}", zstd.log());
    let rev = etcd.revision().await;
    let all = names(&v2(home.path()));
    let fulls: Vec<_> = all.iter().filter(|n| n.starts_with("Full-")).collect();
    assert!(fulls.len() == 1 && fulls[0].ends_with(".gz"), "{all:?}");
    let zst: Vec<_> = all.iter().filter(|n| n.ends_with(".zst")).collect();
    assert!(!zst.is_empty(), "no zstd delta: {all:?}");
    assert!(
        all.iter()
            .any(|n| n.starts_with("Incr-") && n.ends_with(".gz"))
    );

    // The stock tools read our objects: gzip gives etcd's snapshot (db + sha256 trailer), zstd
    // (which skips the index frames) the delta's JSON with its sha256 trailer.
    let db = decoded_by("gzip", &v2(home.path()).join(fulls[0]));
    let (body, trailer) = db.split_at(db.len() - 32);
    assert_eq!(Sha256::digest(body).as_slice(), trailer);
    for n in &zst {
        let delta = decoded_by("zstd", &v2(home.path()).join(n));
        let (json, trailer) = delta.split_at(delta.len() - 32);
        assert!(json.starts_with(b"[{") && json.ends_with(b"]"), "{n}");
        assert_eq!(Sha256::digest(json).as_slice(), trailer, "{n}");
    }

    // `list` names both policies; `verify` passes.
    let out = bin()
        .env("HOME", home.path())
        .args([
            "list",
            "--storage-provider=Local",
            "--store-container=backups",
        ])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    assert!(table.contains("zstd") && table.contains("gzip"), "{table}");
    let out = bin()
        .env("HOME", home.path())
        .args([
            "verify",
            "--storage-provider=Local",
            "--store-container=backups",
            "--restoration-temp-snapshots-dir",
        ])
        .arg(home.path().join("verify-tmp"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert_restores(home.path(), &mut c, rev).await;

    // A copy of the mixed chain restores.
    let copied = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(copied.path().join("src")).unwrap();
    std::os::unix::fs::symlink(
        home.path().join("backups"),
        copied.path().join("src/backups"),
    )
    .unwrap();
    let out = bin()
        .env_clear()
        .env("HOME", copied.path())
        .args([
            "copy",
            "--storage-provider=Local",
            "--store-container=backups",
            "--source-store-container=src/backups",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(names(&v2(copied.path())), all);
    assert_restores(copied.path(), &mut c, rev).await;

    // Compaction folds it into one zstd full snapshot (the newest object's policy).
    let compacted = copy_store(home.path());
    let out = compact(compacted.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new: Vec<_> = names(&v2(compacted.path()))
        .into_iter()
        .filter(|n| !all.contains(n))
        .collect();
    assert!(
        new.len() == 1 && new[0].starts_with(&format!("Full-00000000-{rev:08}-")),
        "{new:?}"
    );
    assert!(new[0].ends_with(".zst"), "{new:?}");
    let db = decoded_by("zstd", &v2(compacted.path()).join(&new[0]));
    let (body, trailer) = db.split_at(db.len() - 32);
    assert_eq!(Sha256::digest(body).as_slice(), trailer);
    // `hashkv` covers the history above the compacted revision, so a compacted store is
    // compared by its live keys, values and their revisions.
    let data = compacted.path().join("restored");
    let peer = format!("http://127.0.0.1:{}", testkit::free_port());
    let out = crate::common::restore(compacted.path(), &data, &peer, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut r = Etcd::on_data_dir(EtcdVersion::V35, &data, &["--initial-cluster-token=tok"]);
    r.set_member("r1", &peer);
    r.restart().await;
    assert_eq!(r.revision().await, rev);
    let mut rc = r.client().await.unwrap();
    // One round at a time: each holds a 1.5 MiB value, all four exceed a response's limit.
    for round in 0..=3 {
        let prefix = || Some(testkit::etcd_client::GetOptions::new().with_prefix());
        let key = format!("/r{round}/");
        let want = kv_rows(&c.get(key.as_str(), prefix()).await.unwrap());
        let got = kv_rows(&rc.get(key.as_str(), prefix()).await.unwrap());
        assert!(!want.is_empty() && got == want, "round {round}: other keys");
    }
}

//! Helpers shared by the binary's integration tests.

#![allow(dead_code)]

pub mod sidecar;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use testkit::Etcd;
use testkit::etcd_client::{Client, DeleteOptions, PutOptions, Txn, TxnOp};

/// A key as etcd reports it: key, value, create and mod revision, version, lease.
pub type KvRow = (Vec<u8>, Vec<u8>, i64, i64, i64, i64);

/// The rows of a range response, in its order.
pub fn kv_rows(r: &testkit::etcd_client::GetResponse) -> Vec<KvRow> {
    r.kvs()
        .iter()
        .map(|kv| {
            (
                kv.key().to_vec(),
                kv.value().to_vec(),
                kv.create_revision(),
                kv.mod_revision(),
                kv.version(),
                kv.lease(),
            )
        })
        .collect()
}

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_etcdbrctl"))
}

pub fn v2(home: &Path) -> PathBuf {
    home.join("backups/v2")
}

pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

pub async fn workload(c: &mut Client, round: u32, lease: i64) {
    for i in 0..100 {
        c.put(format!("/r{round}/k{i:03}"), format!("v{i}"), None)
            .await
            .unwrap();
    }
    c.put(format!("/r{round}/k001"), "again", None)
        .await
        .unwrap();
    c.delete(format!("/r{round}/k002"), None).await.unwrap();
    c.put(format!("/r{round}/k002"), "recreated", None)
        .await
        .unwrap();
    c.txn(Txn::new().and_then(vec![
        TxnOp::put(format!("/r{round}/t1"), "a", None),
        TxnOp::delete(format!("/r{round}/k003"), None),
        TxnOp::put(format!("/r{round}/t2"), "b", None),
    ]))
    .await
    .unwrap();
    c.delete(
        format!("/r{round}/k05"),
        Some(DeleteOptions::new().with_prefix()),
    )
    .await
    .unwrap();
    c.put(
        format!("/r{round}/leased"),
        "l",
        Some(PutOptions::new().with_lease(lease)),
    )
    .await
    .unwrap();
    c.put(format!("/r{round}/big"), vec![b'q'; 1_572_864], None)
        .await
        .unwrap();
}

/// Starts `etcdbrctl snapshot` into the Local container `backups` below `home`, with 1 s deltas,
/// and waits until its full snapshot is stored.
pub async fn start_snapshot(etcd: &Etcd, home: &Path) -> Child {
    start_snapshot_with(etcd, home, &[]).await
}

/// [`start_snapshot`] with `extra` flags.
pub async fn start_snapshot_with(etcd: &Etcd, home: &Path, extra: &[&str]) -> Child {
    let child = bin()
        .env("HOME", home)
        .args([
            "snapshot",
            "--storage-provider=Local",
            "--store-container=backups",
            "--endpoints",
            &etcd.client_url,
        ])
        // Once a year, unless `extra` says otherwise: the schedule never fires during a test.
        .args(
            (!extra.iter().any(|a| a.starts_with("--schedule="))).then_some("--schedule=0 0 1 1 *"),
        )
        .args([
            "--delta-snapshot-period=1s",
            "--garbage-collection-period=0s",
        ])
        .args([
            "--snapstore-temp-directory",
            home.join("tmp").to_str().unwrap(),
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !names(&v2(home)).iter().any(|n| n.starts_with("Full-")) {
        assert!(Instant::now() < deadline, "no full snapshot");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child
}

/// Stops a snapshotter with SIGTERM (it saves a last delta) and checks it exited cleanly.
pub fn stop_snapshot(mut child: Child) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}

/// The backups' names in the Local store below `home`.
pub fn backups(home: &Path) -> Vec<String> {
    names(&v2(home))
}

/// The newest revision in the Local store below `home`.
pub fn latest_backup(home: &Path) -> i64 {
    backups(home)
        .iter()
        .filter_map(|n| n.split('-').nth(2)?.parse().ok())
        .max()
        .unwrap_or(0)
}

/// Waits until the store below `home` holds revision `target`.
pub async fn wait_for_backup(home: &Path, target: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while latest_backup(home) < target {
        assert!(
            Instant::now() < deadline,
            "no backup reached revision {target}: {:?}",
            backups(home)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Backs up `etcd` with the real binary while three workload rounds run; returns HOME.
pub async fn back_up(etcd: &Etcd, c: &mut Client, lease: i64) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let child = start_snapshot(etcd, home.path()).await;
    // Three rounds, each saved in its own delta(s): two by the period, the last by the SIGTERM flush.
    for round in 1..=2 {
        workload(c, round, lease).await;
        let target = etcd.revision().await;
        wait_for_backup(home.path(), target).await;
    }
    c.put("/final", "f", None).await.unwrap();
    stop_snapshot(child);
    home
}

pub fn restore(home: &Path, data_dir: &Path, peer: &str, extra: &[&str]) -> Output {
    bin()
        .env("HOME", home)
        .args([
            "restore",
            "--storage-provider=Local",
            "--store-container=backups",
        ])
        .args([
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--name",
            "r1",
            "--initial-cluster-token",
            "tok",
        ])
        .args([
            "--initial-cluster",
            &format!("r1={peer}"),
            "--initial-advertise-peer-urls",
            peer,
        ])
        .args([
            "--restoration-temp-snapshots-dir",
            home.join("restore-tmp").to_str().unwrap(),
        ])
        .args(extra)
        .output()
        .unwrap()
}

pub fn etcd_datadir_part(data_dir: &Path) -> PathBuf {
    let mut s = data_dir.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

pub fn copy_store(from: &Path) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(v2(home.path())).unwrap();
    for n in names(&v2(from)) {
        std::fs::copy(v2(from).join(&n), v2(home.path()).join(&n)).unwrap();
    }
    home
}

/// The etcd configuration a druid-managed cluster mounts, for `members`.
pub fn cluster_conf(members: &[Etcd]) -> String {
    let initial: Vec<String> = members
        .iter()
        .enumerate()
        .map(|(i, m)| format!("m{i}={}", m.peer_url))
        .collect();
    let mut conf = format!(
        "name: placeholder\ndata-dir: /var/etcd/data/new.etcd\ninitial-cluster: {}\n",
        initial.join(",")
    );
    for (key, url) in [
        (
            "initial-advertise-peer-urls",
            (|m| m.peer_url.clone()) as fn(&Etcd) -> String,
        ),
        ("advertise-client-urls", |m| m.client_url.clone()),
    ] {
        conf.push_str(&format!("{key}:\n"));
        for (i, m) in members.iter().enumerate() {
            conf.push_str(&format!("  m{i}:\n  - {}\n", url(m)));
        }
    }
    conf
}

/// A digest of a directory tree (paths, sizes, contents), to show it is as it was.
pub fn tree(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                out.extend(tree(&p));
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    out
}

/// Runs `etcdbrctl compact` on the Local store below `home` (scratch in `home/scratch`, temp
/// files in `home/tmp` and `home/rtmp`).
pub fn compact(home: &Path) -> std::process::Output {
    bin()
        .env_clear()
        .env("HOME", home)
        .args([
            "compact",
            "--storage-provider=Local",
            "--store-container=backups",
        ])
        .args(["--data-dir", home.join("scratch").to_str().unwrap()])
        .args([
            "--snapstore-temp-directory",
            home.join("tmp").to_str().unwrap(),
        ])
        .args([
            "--restoration-temp-snapshots-dir",
            home.join("rtmp").to_str().unwrap(),
        ])
        .output()
        .unwrap()
}

/// Restores the Local store below `home` with the binary, boots etcd 3.5 on it, and checks that
/// it is at `rev` with the same `hashkv` there as the cluster `source` reaches.
pub async fn assert_restores(home: &Path, source: &mut Client, rev: i64) {
    assert_restores_with(home, source, rev, &[]).await;
}

/// [`assert_restores`] with `extra` restore flags (into a new data dir each time).
pub async fn assert_restores_with(home: &Path, source: &mut Client, rev: i64, extra: &[&str]) {
    let data = home.join(format!("restored-{}", testkit::free_port()));
    let peer = format!("http://127.0.0.1:{}", testkit::free_port());
    let out = restore(home, &data, &peer, extra);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut r = Etcd::on_data_dir(
        testkit::EtcdVersion::V35,
        &data,
        &["--initial-cluster-token=tok"],
    );
    r.set_member("r1", &peer);
    r.restart().await;
    assert_eq!(r.revision().await, rev);
    let mut rc = r.client().await.unwrap();
    assert_eq!(
        rc.hash_kv(rev).await.unwrap().hash(),
        source.hash_kv(rev).await.unwrap().hash()
    );
}

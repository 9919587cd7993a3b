//! The WAL and `.snap` etcdbr writes equal, byte for byte, what `etcdctl snapshot restore`
//! (3.4.23) and `etcdutl snapshot restore` (3.5) write for the same name, URLs and token.

use std::path::Path;
use std::process::Command;

use etcd_datadir::cluster::Cluster;
use etcd_datadir::{snap, wal};
use testkit::{Etcd, EtcdVersion};

async fn snapshot_file(dir: &Path) -> std::path::PathBuf {
    let etcd = Etcd::start(EtcdVersion::V34).await;
    etcd.etcdctl_ok(&["put", "a", "1"]);
    let f = dir.join("snap.db");
    etcd.etcdctl_ok(&["snapshot", "save", f.to_str().unwrap()]);
    f
}

fn restore_with_etcd(
    version: EtcdVersion,
    snapshot: &Path,
    out: &Path,
    name: &str,
    cluster: &str,
    token: &str,
    peer: &str,
) {
    let (tool, api) = match version {
        EtcdVersion::V34 => ("etcdctl", Some("3")),
        EtcdVersion::V35 => ("etcdutl", None),
    };
    let mut cmd = Command::new(version.binary(tool));
    if let Some(api) = api {
        cmd.env("ETCDCTL_API", api);
    }
    let o = cmd
        .args([
            "snapshot",
            "restore",
            snapshot.to_str().unwrap(),
            "--name",
            name,
            "--initial-cluster",
            cluster,
        ])
        .args([
            "--initial-cluster-token",
            token,
            "--initial-advertise-peer-urls",
            peer,
            "--data-dir",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{tool} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn compare(
    version: EtcdVersion,
    snapshot: &Path,
    name: &str,
    initial_cluster: &str,
    token: &str,
    peer: &str,
) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("restored");
    restore_with_etcd(version, snapshot, &out, name, initial_cluster, token, peer);
    let cluster = Cluster::new(initial_cluster, token).unwrap();
    let member = cluster.member(name, &[peer.to_owned()]).unwrap().id;

    let theirs = std::fs::read(out.join("member/wal").join(wal::file_name(0, 0))).unwrap();
    let ours = wal::restore_wal(&cluster, member, version == EtcdVersion::V35);
    assert_eq!(
        &theirs[..ours.len()],
        &ours[..],
        "{version:?} WAL for {initial_cluster}"
    );
    assert!(
        theirs[ours.len()..].iter().all(|&b| b == 0),
        "the rest of their WAL is preallocated zeros"
    );

    let n = cluster.members.len() as u64;
    let theirs = std::fs::read(out.join("member/snap").join(snap::file_name(1, n))).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&snap::restore_snap(&cluster)),
        String::from_utf8_lossy(&theirs)
    );
    assert_eq!(
        snap::restore_snap(&cluster),
        theirs,
        "{version:?} .snap for {initial_cluster}"
    );

    // And our reader accepts theirs.
    let contents = wal::read(&out.join("member/wal")).unwrap();
    assert_eq!(contents.metadata, Some((member.0, cluster.id.0)));
    assert_eq!(contents.entries.len() as u64, n);
    assert_eq!(contents.state.unwrap().commit, n);
    let s = snap::read(&out.join("member/snap").join(snap::file_name(1, n))).unwrap();
    assert_eq!((s.index, s.term), (n, 1));
}

#[tokio::test]
async fn wal_and_snap_equal_etcdctl_34_and_etcdutl_35() {
    let tmp = tempfile::tempdir().unwrap();
    let snapshot = snapshot_file(tmp.path()).await;
    for version in [EtcdVersion::V34, EtcdVersion::V35] {
        compare(
            version,
            &snapshot,
            "r1",
            "r1=http://127.0.0.1:24801",
            "tok1",
            "http://127.0.0.1:24801",
        );
        compare(
            version,
            &snapshot,
            "r2",
            "r1=http://127.0.0.1:24801,r2=http://127.0.0.1:24802,r3=http://127.0.0.1:24803",
            "tok3",
            "http://127.0.0.1:24802",
        );
        compare(
            version,
            &snapshot,
            "etcd-main-0",
            "etcd-main-0=https://etcd-main-0.etcd-main-peer.ns.svc:2380",
            "etcd-cluster",
            "https://etcd-main-0.etcd-main-peer.ns.svc:2380",
        );
    }
}

//! Native compaction against etcd's own: the same history compacted by etcd 3.4/3.5 at its current
//! revision and by `compact_db` leaves the same `key` bucket and compaction marks.

use etcd_datadir::compact::compact_db;
use etcd_datadir::current_revision;
use etcd_datadir::restore::DataDirFormat;
use testkit::etcd_client::{CompactionOptions, DeleteOptions, Txn, TxnOp};
use testkit::{Etcd, EtcdVersion};

fn entries(path: &std::path::Path, bucket: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let db = bbolt::Db::open(path).unwrap();
    let b = db.bucket(bucket).unwrap().unwrap();
    let mut c = db.cursor(&b).unwrap();
    let mut out = Vec::new();
    let mut e = c.first().unwrap();
    while let Some(entry) = e {
        out.push((entry.key.to_vec(), entry.value.to_vec()));
        e = c.next().unwrap();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matches_etcd_35s_compaction() {
    matches(EtcdVersion::V35, DataDirFormat::V35).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matches_etcd_34s_compaction() {
    matches(EtcdVersion::V34, DataDirFormat::V34).await;
}

async fn matches(version: EtcdVersion, format: DataDirFormat) {
    let etcd = Etcd::start(version).await;
    let mut c = etcd.client().await.unwrap();
    for round in 0..5 {
        for i in 0..400 {
            c.put(format!("/k/{i:04}"), format!("v{round}-{i}"), None)
                .await
                .unwrap();
        }
        c.delete(
            format!("/k/{:02}", round * 3),
            Some(DeleteOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    }
    c.txn(Txn::new().and_then(vec![
        TxnOp::put("/t/a", "1", None),
        TxnOp::put("/t/b", "2", None),
        TxnOp::delete("/k/0399", None),
    ]))
    .await
    .unwrap();
    c.put("/last", "x", None).await.unwrap();
    c.delete("/last", None).await.unwrap(); // the newest write is a delete
    let rev = etcd.revision().await;

    let dir = tempfile::tempdir().unwrap();
    let before = dir.path().join("before.db");
    etcd.etcdctl_ok(&["snapshot", "save", before.to_str().unwrap()]);
    c.compact(rev, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
    let by_etcd = dir.path().join("by-etcd.db");
    etcd.etcdctl_ok(&["snapshot", "save", by_etcd.to_str().unwrap()]);

    let ours = dir.path().join("ours.db");
    let stats = compact_db(&before, &ours, format).unwrap();
    assert_eq!(stats.revision.get(), rev);
    assert!(stats.entries_after < stats.entries_before);
    let (a, b) = (entries(&ours, b"key"), entries(&by_etcd, b"key"));
    let only_ours: Vec<_> = a
        .iter()
        .filter(|e| !b.contains(e))
        .map(|e| (e.0.clone(), String::from_utf8_lossy(&e.1).into_owned()))
        .collect();
    let only_etcd: Vec<_> = b
        .iter()
        .filter(|e| !a.contains(e))
        .map(|e| (e.0.clone(), String::from_utf8_lossy(&e.1).into_owned()))
        .collect();
    assert!(
        only_ours.is_empty() && only_etcd.is_empty(),
        "only ours: {only_ours:?}\nonly etcd's: {only_etcd:?}"
    );
    let marks = |p: &std::path::Path| -> Vec<(Vec<u8>, Vec<u8>)> {
        entries(p, b"meta")
            .into_iter()
            .filter(|(k, _)| k.ends_with(b"CompactRev"))
            .collect()
    };
    assert_eq!(marks(&ours), marks(&by_etcd));
    let db = bbolt::Db::open(&ours).unwrap();
    assert_eq!(current_revision(&db).unwrap().get(), rev);
    bbolt::check(&db).unwrap();

    // The layout planned from the entries' lengths alone gives the metas and size the written
    // file has, so the file can be streamed metas first.
    let mut plan = etcd_datadir::compact::plan(&before, format).unwrap();
    let (metas, size) = plan.layout().unwrap();
    let written = std::fs::read(&ours).unwrap();
    assert_eq!(size, written.len() as u64);
    assert!(metas[..] == written[..metas.len()], "planned metas differ");
}

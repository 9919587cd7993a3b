//! Reading snapshots written by real etcd 3.4 and 3.5.

use etcd_datadir::current_revision;
use testkit::{Etcd, EtcdVersion};

async fn check(version: EtcdVersion) {
    let etcd = Etcd::start(version).await;
    let mut c = etcd.client().await.unwrap();
    for i in 0..3000 {
        c.put(format!("k{i:05}"), vec![b'v'; 300], None)
            .await
            .unwrap();
    }
    c.put("big", vec![7u8; 1_500_000], None).await.unwrap();
    c.delete("k00001", None).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snap.db");
    etcd.etcdctl_ok(&["snapshot", "save", file.to_str().unwrap()]);
    let db = bbolt::Db::open(&file).unwrap();
    assert_eq!(db.file_len() % 4096, 32, "stream keeps the sha256 trailer");
    assert_eq!(current_revision(&db).unwrap().get(), etcd.revision().await);

    // Walk the key bucket in order: every key a revision key, strictly ascending.
    let key = db.bucket(b"key").unwrap().unwrap();
    let mut cur = db.cursor(&key).unwrap();
    let mut prev: Option<Vec<u8>> = None;
    let mut n = 0;
    let mut e = cur.first().unwrap();
    while let Some(entry) = e {
        assert!(etcd_datadir::revision::RevKey::from_bytes(entry.key).is_some());
        if let Some(p) = &prev {
            assert!(p.as_slice() < entry.key);
        }
        prev = Some(entry.key.to_vec());
        n += 1;
        e = cur.next().unwrap();
    }
    assert_eq!(n, 3002, "3000 puts, the big value, one delete");
    let names: Vec<String> = db
        .bucket_names()
        .unwrap()
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    assert!(
        names.contains(&"key".to_string()) && names.contains(&"meta".to_string()),
        "{names:?}"
    );

    // After compaction with deletes as the newest writes, the revision comes from finishedCompactRev.
    c.put("gone", "x", None).await.unwrap();
    c.delete("gone", None).await.unwrap();
    let rev = etcd.revision().await;
    c.compact(
        rev,
        Some(testkit::etcd_client::CompactionOptions::new().with_physical()),
    )
    .await
    .unwrap();
    let file2 = dir.path().join("snap2.db");
    etcd.etcdctl_ok(&["snapshot", "save", file2.to_str().unwrap()]);
    let db2 = bbolt::Db::open(&file2).unwrap();
    assert_eq!(current_revision(&db2).unwrap().get(), rev);
}

#[tokio::test]
async fn reads_the_revision_of_an_etcd_34_snapshot() {
    check(EtcdVersion::V34).await;
}

#[tokio::test]
async fn reads_the_revision_of_an_etcd_35_snapshot() {
    check(EtcdVersion::V35).await;
}

//! A natively restored data dir boots stock etcd 3.4.23 and 3.5 with the source's keys,
//! revisions, hashes, members and leases.

use etcd_datadir::cluster::Cluster;
use etcd_datadir::restore::{Change, DataDirFormat, RestoreOptions, RestoreWriter};
use testkit::etcd_client::{
    self, Client, DeleteOptions, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions,
};
use testkit::{Etcd, EtcdVersion};

const BIG: usize = 1_572_864; // 1.5 MiB

/// Writes the workload of the issue: puts, deletes, txns, delete-range, re-create after delete,
/// leased keys, a 1.5 MiB value.
async fn workload(c: &mut Client, lease_before: i64) {
    for i in 0..200 {
        c.put(format!("/d/k{i:03}"), format!("v{i}"), None)
            .await
            .unwrap();
    }
    c.put("/d/k001", "overwritten", None).await.unwrap();
    c.delete("/d/k002", None).await.unwrap();
    c.put("/d/k002", "recreated", None).await.unwrap();
    c.txn(Txn::new().and_then(vec![
        TxnOp::put("/d/t1", "a", None),
        TxnOp::put("/d/t2", "b", None),
        TxnOp::delete("/d/k003", None),
        TxnOp::put("/d/k004", "txn", None),
    ]))
    .await
    .unwrap();
    c.delete("/d/k1", Some(DeleteOptions::new().with_prefix()))
        .await
        .unwrap();
    c.put(
        "/d/leased-old",
        "x",
        Some(PutOptions::new().with_lease(lease_before)),
    )
    .await
    .unwrap();
    c.put("/d/big", vec![b'z'; BIG], None).await.unwrap();
    c.put("/d/empty", "", None).await.unwrap();
}

type Kv = (Vec<u8>, Vec<u8>, i64, i64, i64, i64);

fn assert_same(got: &[Kv], want: &[Kv], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: number of keys");
    for (g, w) in got.iter().zip(want) {
        if g != w {
            let short = |k: &Kv| {
                (
                    String::from_utf8_lossy(&k.0).into_owned(),
                    k.1.len(),
                    k.2,
                    k.3,
                    k.4,
                    k.5,
                )
            };
            panic!("{what}: got {:?}, want {:?}", short(g), short(w));
        }
    }
}

async fn all_kvs(c: &mut Client, rev: i64) -> Vec<Kv> {
    let r = c
        .get(
            "",
            Some(GetOptions::new().with_all_keys().with_revision(rev)),
        )
        .await
        .unwrap();
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

async fn restore_and_boot(format: DataDirFormat, boot: EtcdVersion) {
    let source = Etcd::start_with(EtcdVersion::V34, &["--max-request-bytes=3145728"]).await;
    let mut c = source.client().await.unwrap();
    let lease_before = c.lease_grant(3600, None).await.unwrap().id();
    for i in 0..50 {
        c.put(format!("/base/{i}"), format!("b{i}"), None)
            .await
            .unwrap();
    }
    c.put(
        "/base/leased",
        "l",
        Some(PutOptions::new().with_lease(lease_before)),
    )
    .await
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let snapshot = tmp.path().join("snap.db");
    source.etcdctl_ok(&["snapshot", "save", snapshot.to_str().unwrap()]);
    let base_rev = source.revision().await;

    let mut w = c
        .watch(
            "",
            Some(
                WatchOptions::new()
                    .with_all_keys()
                    .with_start_revision(base_rev - 3),
            ),
        )
        .await
        .unwrap();
    workload(&mut c, lease_before).await;
    let middle = source.revision().await - 10;
    let last = source.revision().await;
    let mut changes = Vec::new();
    while changes
        .last()
        .is_none_or(|c: &Change| c.mod_revision < last)
    {
        let resp = w.message().await.unwrap().unwrap();
        for ev in resp.events() {
            let kv = ev.kv().unwrap();
            changes.push(Change {
                delete: ev.event_type() == EventType::Delete,
                key: kv.key().to_vec(),
                create_revision: kv.create_revision(),
                mod_revision: kv.mod_revision(),
                version: kv.version(),
                value: kv.value().to_vec(),
                lease: kv.lease(),
            });
        }
    }

    let peer = format!("http://127.0.0.1:{}", testkit::free_port());
    let cluster = Cluster::new(&format!("r1={peer}"), "tok").unwrap();
    let member = cluster.members[0].id;
    let dir = tmp.path().join("restored");
    let mut rw = RestoreWriter::create(
        &snapshot,
        &dir,
        RestoreOptions {
            cluster,
            member,
            format,
            durable: true,
        },
    )
    .unwrap();
    for ch in &changes {
        rw.apply(ch).unwrap();
    }
    let stats = rw.finish().unwrap();
    assert_eq!(stats.base_revision.get(), base_rev);
    assert_eq!(stats.revision.get(), last);
    assert_eq!(
        stats.skipped_events, 4,
        "the overlap with the base (revisions base-3..=base) is skipped"
    );
    assert_eq!(stats.dropped_leases, 0);

    // The db passes Go bbolt's check (etcdctl snapshot status) and ours.
    let db_path = etcd_datadir::layout::db_path(&dir);
    let status = source.etcdctl_ok(&[
        "snapshot",
        "status",
        db_path.to_str().unwrap(),
        "-w",
        "json",
    ]);
    assert!(status.contains(&format!("\"revision\":{last}")), "{status}");
    let db = bbolt::Db::open(&db_path).unwrap();
    assert_eq!(bbolt::check(&db).unwrap(), vec![]);
    let native_hash = etcd_datadir::hashkv::hash_kv(&db, last).unwrap().0;
    let native_hash_middle = etcd_datadir::hashkv::hash_kv(&db, middle).unwrap().0;
    drop(db);

    let mut restored = Etcd::on_data_dir(boot, &dir, &["--initial-cluster-token=tok"]);
    restored.set_member("r1", &peer);
    restored.restart().await;
    let mut r = restored.client().await.unwrap();
    assert_eq!(restored.revision().await, last);
    for rev in [last, middle] {
        assert_same(
            &all_kvs(&mut r, rev).await,
            &all_kvs(&mut c, rev).await,
            &format!("kvs at {rev}"),
        );
        let h_src = c.hash_kv(rev).await.unwrap().hash();
        assert_eq!(
            r.hash_kv(rev).await.unwrap().hash(),
            h_src,
            "hashkv at {rev}"
        );
    }
    assert_eq!(
        r.hash_kv(last).await.unwrap().hash(),
        native_hash,
        "native hashkv equals etcd's"
    );
    assert_eq!(r.hash_kv(middle).await.unwrap().hash(), native_hash_middle);
    let members = r.member_list().await.unwrap();
    assert_eq!(members.members().len(), 1);
    assert_eq!(members.members()[0].name(), "r1");
    assert_eq!(
        members.members()[0].peer_urls(),
        std::slice::from_ref(&peer)
    );
    // The lease from before the snapshot is attached to its keys.
    let ttl = r
        .lease_time_to_live(
            lease_before,
            Some(etcd_client::LeaseTimeToLiveOptions::new().with_keys()),
        )
        .await
        .unwrap();
    let mut keys: Vec<&[u8]> = ttl.keys().iter().map(Vec::as_slice).collect();
    keys.sort();
    assert_eq!(keys, [b"/base/leased".as_slice(), b"/d/leased-old"]);
    // Writes, compaction and a restart work.
    r.put("/after", "restore", None).await.unwrap();
    assert_eq!(restored.revision().await, last + 1);
    r.compact(
        last,
        Some(etcd_client::CompactionOptions::new().with_physical()),
    )
    .await
    .unwrap();
    drop(r);
    restored.restart().await;
    let mut r = restored.client().await.unwrap();
    let got = r.get("/after", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"restore");
    assert_eq!(restored.revision().await, last + 1);
}

/// A lease granted after the base snapshot is not in the backup: its keys are restored without
/// it instead of pointing at a lease that does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_granted_after_the_snapshot_is_dropped() {
    let source = Etcd::start(EtcdVersion::V35).await;
    let mut c = source.client().await.unwrap();
    let old = c.lease_grant(3600, None).await.unwrap().id();
    let tmp = tempfile::tempdir().unwrap();
    let snapshot = tmp.path().join("snap.db");
    source.etcdctl_ok(&["snapshot", "save", snapshot.to_str().unwrap()]);
    let base = source.revision().await;
    let new = c.lease_grant(3600, None).await.unwrap().id();
    let changes = [("old", old), ("new", new), ("none", 0)]
        .iter()
        .enumerate()
        .map(|(i, (k, lease))| Change {
            key: k.as_bytes().to_vec(),
            create_revision: base + 1 + i as i64,
            mod_revision: base + 1 + i as i64,
            version: 1,
            value: b"v".to_vec(),
            lease: *lease,
            ..Change::default()
        })
        .collect::<Vec<_>>();
    let cluster = Cluster::new("r1=http://127.0.0.1:2380", "t").unwrap();
    let member = cluster.members[0].id;
    let dir = tmp.path().join("out");
    let mut w = RestoreWriter::create(
        &snapshot,
        &dir,
        RestoreOptions {
            cluster,
            member,
            format: DataDirFormat::V35,
            durable: true,
        },
    )
    .unwrap();
    for ch in &changes {
        w.apply(ch).unwrap();
    }
    let stats = w.finish().unwrap();
    assert_eq!(stats.dropped_leases, 1);
    let db = bbolt::Db::open(etcd_datadir::layout::db_path(&dir)).unwrap();
    let key = db.bucket(b"key").unwrap().unwrap();
    let mut cur = db.cursor(&key).unwrap();
    let mut leases = Vec::new();
    let mut e = cur.first().unwrap();
    while let Some(x) = e {
        let kv = etcd_datadir::kv::KeyValue::decode(x.value).unwrap();
        leases.push((String::from_utf8(kv.key).unwrap(), kv.lease));
        e = cur.next().unwrap();
    }
    assert_eq!(
        leases,
        [
            ("old".to_string(), old),
            ("new".to_string(), 0),
            ("none".to_string(), 0)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v35_format_boots_etcd_35() {
    restore_and_boot(DataDirFormat::V35, EtcdVersion::V35).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v35_format_boots_etcd_34() {
    restore_and_boot(DataDirFormat::V35, EtcdVersion::V34).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v34_format_boots_etcd_34() {
    restore_and_boot(DataDirFormat::V34, EtcdVersion::V34).await;
}

//! Helpers shared by the integration tests: a Local store fixture, running a snapshotter, and
//! verifying a stored chain against etcd itself.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use etcdbr::compress::Compression;
use etcdbr::delta_format;
use etcdbr::etcd::EtcdOptions;
use etcdbr::snapshotter::{FullSnapshotOptions, Snapshotter, SnapshotterOptions};
use sha2::{Digest, Sha256};
use snapstore::provider::LocalStore;
use snapstore::{Kind, Provider, SnapStore, Snapshot, StoreConfig};
use testkit::Etcd;
use testkit::etcd_client::{
    self, Client, EventType as WatchEventType, PutOptions, Txn, TxnOp, WatchOptions,
};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

pub struct Fixture {
    _dir: tempfile::TempDir,
    pub store: SnapStore,
    pub temp: std::path::PathBuf,
}

pub fn fixture() -> Fixture {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("info,h2=warn,tower=warn")
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let objects = Arc::new(LocalStore::new(dir.path().join("store")).unwrap());
    let store = SnapStore::with_objects(objects, Provider::Local, &StoreConfig::default());
    let temp = dir.path().join("tmp");
    std::fs::create_dir_all(&temp).unwrap();
    Fixture {
        _dir: dir,
        store,
        temp,
    }
}

pub fn options(
    f: &Fixture,
    compression: Compression,
    delta_period: Duration,
    limit: usize,
) -> SnapshotterOptions {
    let full = FullSnapshotOptions {
        temp_dir: f.temp.clone(),
        compression,
        snapshot_timeout: Duration::from_secs(60),
    };
    // Once a year: the schedule never fires during a test.
    let mut o = SnapshotterOptions::new("0 0 1 1 *".parse().unwrap(), full);
    o.delta_period = delta_period;
    o.delta_memory_limit = limit;
    o.backoff = etcdbr::backoff::ExponentialBackoff::new(2, 3, Duration::from_secs(2));
    o
}

pub fn etcd_options(etcd: &Etcd) -> EtcdOptions {
    let mut o = EtcdOptions::default();
    o.endpoints = vec![etcd.client_url.clone()];
    o.connection_timeout = Duration::from_secs(5);
    o
}

pub struct Running {
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<etcdbr::Result<()>>,
    pub handle: etcdbr::snapshotter::SnapshotterHandle,
}

pub fn start(etcd: &Etcd, f: &Fixture, opts: SnapshotterOptions) -> Running {
    start_with(etcd_options(etcd), f, opts)
}

pub fn start_with(etcd: EtcdOptions, f: &Fixture, opts: SnapshotterOptions) -> Running {
    let s = Snapshotter::new(etcd, f.store.clone(), opts);
    let handle = s.handle();
    let stop = CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(async move { s.run(token).await });
    Running { stop, task, handle }
}

impl Running {
    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

pub async fn wait_for(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    for _ in 0..300 {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

pub async fn read_object(store: &SnapStore, s: &Snapshot) -> Vec<u8> {
    let mut body = store.fetch(s).await.unwrap();
    let mut raw = Vec::new();
    body.read_to_end(&mut raw).await.unwrap();
    let mut out = Vec::new();
    Compression::from_suffix(&s.compression_suffix)
        .unwrap()
        .decompress(&raw[..], &mut out)
        .unwrap();
    out
}

/// A workload with every kind of change: puts, overwrites, deletes, a delete-range, multi-op
/// transactions, a re-create after delete, keys under a lease, and a value over 1 MiB.
pub async fn workload(c: &mut Client, round: u32) {
    for i in 0..40 {
        c.put(format!("/w{round}/k{i:03}"), format!("v{i}"), None)
            .await
            .unwrap();
    }
    for i in 0..10 {
        c.put(format!("/w{round}/k{i:03}"), format!("v{i}-second"), None)
            .await
            .unwrap();
    }
    c.delete(format!("/w{round}/k005"), None).await.unwrap();
    c.put(format!("/w{round}/k005"), "recreated", None)
        .await
        .unwrap();
    let txn = Txn::new().and_then(vec![
        TxnOp::put(format!("/w{round}/txn-a"), "1", None),
        TxnOp::put(format!("/w{round}/txn-b"), "2", None),
        TxnOp::delete(format!("/w{round}/k010"), None),
        TxnOp::put(format!("/w{round}/k011"), "in-txn", None),
    ]);
    c.txn(txn).await.unwrap();
    let lease = c.lease_grant(600, None).await.unwrap().id();
    c.put(
        format!("/w{round}/leased"),
        "l",
        Some(PutOptions::new().with_lease(lease)),
    )
    .await
    .unwrap();
    c.put(format!("/w{round}/big"), vec![b'x'; 1_200_000], None)
        .await
        .unwrap();
    c.delete(
        format!("/w{round}/k02"),
        Some(etcd_client::DeleteOptions::new().with_prefix()),
    )
    .await
    .unwrap();
}

/// Checks the stored chain: the full snapshot keeps a valid trailer and is named after its
/// db's true revision; deltas follow it without gap or overlap; every event equals what an
/// independent watch of etcd reports, field by field.
pub async fn verify_chain(store: &SnapStore, etcd: &Etcd) -> (Snapshot, Vec<Snapshot>) {
    let set = store.latest_set().await.unwrap();
    let full = set.full.clone().expect("a full snapshot");
    let db = read_object(store, &full).await;
    let (body, trailer) = db.split_at(db.len() - 32);
    assert_eq!(
        Sha256::digest(body).as_slice(),
        trailer,
        "full snapshot keeps etcd's sha256 trailer"
    );
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), &db).unwrap();
    let rev = etcd_datadir_revision(tmp.path());
    assert_eq!(
        rev,
        full.last_revision.get(),
        "full snapshot named after its true revision"
    );

    let mut events = Vec::new();
    let mut next = full.last_revision.get() + 1;
    for d in &set.deltas {
        assert_eq!(d.kind, Kind::Incr);
        assert_eq!(
            d.start_revision.get(),
            next,
            "delta {} starts right after the previous snapshot",
            d.snap_name
        );
        let obj = read_object(store, d).await;
        let evs = delta_format::decode(&obj).unwrap();
        assert!(!evs.is_empty(), "no empty delta objects");
        assert_eq!(
            evs.first().unwrap().event.mod_revision,
            d.start_revision.get()
        );
        assert_eq!(
            evs.last().unwrap().event.mod_revision,
            d.last_revision.get()
        );
        next = d.last_revision.get() + 1;
        events.extend(evs.into_iter().map(|e| e.event));
    }
    // Revisions contiguous: each event's revision equals the previous one or the next.
    let mut prev = full.last_revision.get();
    for e in &events {
        assert!(
            e.mod_revision == prev || e.mod_revision == prev + 1,
            "gap or disorder at {}",
            e.mod_revision
        );
        prev = e.mod_revision;
    }
    let current = etcd.revision().await;
    assert_eq!(prev, current, "the chain reaches etcd's current revision");

    // Field-by-field comparison with what etcd itself reports from the same revision.
    let expected = watch_events(etcd, full.last_revision.get() + 1, current).await;
    assert_eq!(events.len(), expected.len());
    for (got, want) in events.iter().zip(&expected) {
        assert_eq!(got, want);
    }
    (full, set.deltas)
}

pub fn etcd_datadir_revision(path: &std::path::Path) -> i64 {
    let db = bbolt::Db::open(path).unwrap();
    etcd_datadir::current_revision(&db).unwrap().get()
}

pub async fn watch_events(etcd: &Etcd, from: i64, to: i64) -> Vec<delta_format::Event> {
    let mut out = Vec::new();
    if from > to {
        return out;
    }
    let mut c = etcd.client().await.unwrap();
    let mut w = c
        .watch(
            "",
            Some(
                WatchOptions::new()
                    .with_all_keys()
                    .with_start_revision(from),
            ),
        )
        .await
        .unwrap();
    while out
        .last()
        .is_none_or(|e: &delta_format::Event| e.mod_revision < to)
    {
        let resp = w.message().await.unwrap().unwrap();
        for ev in resp.events() {
            let kv = ev.kv().unwrap();
            out.push(delta_format::Event {
                delete: ev.event_type() == WatchEventType::Delete,
                key: kv.key().to_vec(),
                create_revision: kv.create_revision(),
                mod_revision: kv.mod_revision(),
                version: kv.version(),
                value: kv.value().to_vec(),
                lease: kv.lease(),
            });
        }
    }
    out
}

pub async fn count(store: &SnapStore, kind: Kind) -> usize {
    store
        .list()
        .await
        .unwrap()
        .iter()
        .filter(|s| s.kind == kind && !s.is_chunk)
        .count()
}

/// Restores the store's latest set natively, boots a stock etcd of `etcd`'s version on it, and
/// compares it with the source: the restored revision is the last the backups claim and etcd's
/// current one (no revision lost, none invented), and every key and `hashkv` at it are equal.
/// Returns the revision.
pub async fn assert_restores_source(store: &SnapStore, etcd: &Etcd) -> i64 {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let peer = format!("http://127.0.0.1:{}", testkit::free_port());
    let mut o = etcdbr::restore::RestoreOptions::new(data.clone());
    o.name = "r1".into();
    o.initial_cluster = format!("r1={peer}");
    o.initial_cluster_token = "tok".into();
    o.initial_advertise_peer_urls = vec![peer.clone()];
    o.temp_dir = dir.path().join("tmp");
    let progress = Arc::new(Progress::default());
    o.events = etcdbr::events::Events::none().with(progress.clone());
    let report = etcdbr::restore::restore(store, &o).await.unwrap();
    let rev = report.stats.revision.get();
    progress.assert_reached(rev, report.deltas);
    let claimed = store.latest_set().await.unwrap().last_revision().unwrap();
    assert_eq!(
        rev,
        claimed.get(),
        "the restore reaches what the backups claim"
    );
    assert_eq!(
        rev,
        etcd.revision().await,
        "the backups reach etcd's revision"
    );
    let mut restored = Etcd::on_data_dir(
        etcd.version,
        &data,
        &["--initial-cluster-token=tok", "--max-request-bytes=3145728"],
    );
    restored.set_member("r1", &peer);
    restored.restart().await;
    assert_eq!(restored.revision().await, rev);
    let (mut src, mut dst) = (
        etcd.client().await.unwrap(),
        restored.client().await.unwrap(),
    );
    let keys = |rev| {
        Some(
            etcd_client::GetOptions::new()
                .with_all_keys()
                .with_keys_only()
                .with_revision(rev),
        )
    };
    let rows = |r: etcd_client::GetResponse| -> Vec<(Vec<u8>, i64, i64, i64)> {
        r.kvs()
            .iter()
            .map(|kv| {
                (
                    kv.key().to_vec(),
                    kv.create_revision(),
                    kv.mod_revision(),
                    kv.version(),
                )
            })
            .collect()
    };
    assert_eq!(
        rows(dst.get("", keys(rev)).await.unwrap()),
        rows(src.get("", keys(rev)).await.unwrap()),
        "keys at revision {rev}"
    );
    assert_eq!(
        dst.hash_kv(rev).await.unwrap().hash(),
        src.hash_kv(rev).await.unwrap().hash(),
        "hashkv at revision {rev}"
    );
    rev
}

/// Keeps what a restore reports: the revision it plans to reach, each delta applied as
/// (applied, of, revision), and the revision built.
#[derive(Default)]
struct Progress(std::sync::Mutex<Heard>);

#[derive(Default, Clone)]
struct Heard {
    started: Option<i64>,
    applied: Vec<(usize, usize, i64)>,
    built: Option<i64>,
}

impl etcdbr::events::Observer for Progress {
    fn observe(&self, event: &etcdbr::events::Event<'_>) {
        use etcdbr::events::Event;
        let mut p = self.0.lock().unwrap();
        match event {
            Event::RestoreStarted { revision, .. } => p.started = Some(revision.get()),
            Event::DeltaApplied {
                applied,
                of,
                revision,
                ..
            } => p.applied.push((*applied, *of, revision.get())),
            Event::RestoreBuilt { revision, .. } => p.built = Some(revision.get()),
            _ => {}
        }
    }
}

impl Progress {
    /// The restore announced `rev`, reported each of its `deltas` in order with a rising
    /// revision ending at `rev`, and reported reaching `rev`.
    fn assert_reached(&self, rev: i64, deltas: usize) {
        let Heard {
            started,
            applied,
            built,
        } = self.0.lock().unwrap().clone();
        assert_eq!(started, Some(rev), "the planned revision");
        assert_eq!(built, Some(rev), "the built revision");
        let steps: Vec<(usize, usize)> = applied.iter().map(|&(a, of, _)| (a, of)).collect();
        assert_eq!(steps, (1..=deltas).map(|a| (a, deltas)).collect::<Vec<_>>());
        assert!(applied.windows(2).all(|w| w[0].2 < w[1].2), "{applied:?}");
        if let Some(last) = applied.last() {
            assert_eq!(last.2, rev, "the last delta reaches the restored revision");
        }
    }
}

/// An observer that keeps what it hears, as text (for tests of what the engine reports).
#[derive(Default)]
pub struct Recorder(std::sync::Mutex<Vec<String>>);

impl etcdbr::events::Observer for Recorder {
    fn observe(&self, event: &etcdbr::events::Event<'_>) {
        let line = match event {
            etcdbr::events::Event::SnapshotterFailed { error } => {
                format!("failed: {}", etcdbr::error_chain(*error))
            }
            other => format!("{other:?}"),
        };
        self.0.lock().unwrap().push(line);
    }
}

impl Recorder {
    /// What was heard so far.
    pub fn heard(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

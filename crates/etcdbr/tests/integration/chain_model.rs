//! The delta chain against a model: a random stream of etcd transactions (puts, overwrites,
//! deletes, several changes a revision) is cut into deltas at random revision boundaries, with
//! duplicates under other timestamps, overlapping deltas and deltas inside others thrown in,
//! stored in a Local store above a full snapshot; the native restore (to the end, and to a
//! random revision) must hold every change exactly once, as the stream made it, and nothing
//! after the target.

use std::collections::BTreeMap;
use std::sync::Arc;

use bbolt::DbWriter;
use etcd_datadir::kv::KeyValue;
use etcd_datadir::revision::RevKey;
use etcdbr::delta_format::{DeltaEncoder, Event};
use etcdbr::restore::{RestoreOptions, restore};
use etcdbr_types::Revision;
use proptest::prelude::*;
use sha2::{Digest, Sha256};
use snapstore::provider::LocalStore;
use snapstore::{Provider, Selection, SnapStore, StoreConfig, Target};

/// The base full snapshot's revision.
const BASE: i64 = 5;

/// One change of a transaction: put (key index, value) or delete of a live key.
#[derive(Debug, Clone)]
enum Op {
    Put(usize, u8),
    Delete(usize),
}

/// Turns transactions into the events etcd's watch reports, tracking each key's generation.
fn events(txns: &[Vec<Op>]) -> Vec<Event> {
    // key index -> (create revision, version), for live keys.
    let mut live: BTreeMap<usize, (i64, i64)> = BTreeMap::new();
    let mut out = Vec::new();
    let mut rev = BASE;
    for txn in txns {
        let mut changes = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for op in txn {
            let (k, delete, v) = match *op {
                Op::Put(k, v) => (k, false, v),
                Op::Delete(k) => (k, true, 0),
            };
            if !seen.insert(k) || (delete && !live.contains_key(&k)) {
                continue; // one change a key a transaction; deleting nothing changes nothing
            }
            changes.push((k, delete, v));
        }
        if changes.is_empty() {
            continue; // an empty transaction makes no revision
        }
        rev += 1;
        for (k, delete, v) in changes {
            let key = format!("/k/{k}").into_bytes();
            if delete {
                live.remove(&k);
                out.push(Event {
                    delete: true,
                    key,
                    mod_revision: rev,
                    ..Event::default()
                });
            } else {
                let (create, version) = live.get(&k).map_or((rev, 1), |&(c, v)| (c, v + 1));
                live.insert(k, (create, version));
                out.push(Event {
                    key,
                    create_revision: create,
                    mod_revision: rev,
                    version,
                    value: vec![v; 1 + usize::from(v % 7)],
                    ..Event::default()
                });
            }
        }
    }
    out
}

/// A `key` bucket entry as read back: revision key and the decoded value.
type Row = (RevKey, KeyValue);

/// What the restored `key` bucket must hold above the base: every event once, in order.
fn expected(events: &[Event], upto: i64) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut sub = 0;
    let mut prev = 0;
    for e in events.iter().filter(|e| e.mod_revision <= upto) {
        sub = if e.mod_revision == prev { sub + 1 } else { 0 };
        prev = e.mod_revision;
        rows.push((
            RevKey {
                main: e.mod_revision,
                sub,
                tombstone: e.delete,
            },
            KeyValue {
                key: e.key.clone(),
                create_revision: e.create_revision,
                mod_revision: if e.delete { 0 } else { e.mod_revision },
                version: e.version,
                value: e.value.clone(),
                lease: 0,
            },
        ));
    }
    rows
}

fn restored_rows(data_dir: &std::path::Path) -> Vec<Row> {
    let db = bbolt::Db::open(data_dir.join("member/snap/db")).unwrap();
    let b = db.bucket(b"key").unwrap().unwrap();
    let mut c = db.cursor(&b).unwrap();
    let mut e = c.first().unwrap();
    let mut rows = Vec::new();
    while let Some(x) = e {
        let k = RevKey::from_bytes(x.key).unwrap();
        if k.main > BASE {
            rows.push((k, KeyValue::decode(x.value).unwrap()));
        }
        e = c.next().unwrap();
    }
    rows
}

/// A base db at revision [`BASE`]: one key put at each revision 2..=BASE, and `meta`.
fn base_db() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut w = DbWriter::create(&path).unwrap();
    let mut b = w.bucket(b"key", 0);
    for rev in 2..=BASE {
        let kv = KeyValue {
            key: format!("/base/{rev}").into_bytes(),
            create_revision: rev,
            mod_revision: rev,
            version: 1,
            value: b"b".to_vec(),
            lease: 0,
        };
        let key = RevKey {
            main: rev,
            sub: 0,
            tombstone: false,
        };
        b.put(&key.to_bytes(), &kv.encode()).unwrap();
    }
    b.finish().unwrap();
    let mut b = w.bucket(b"meta", 0);
    b.put(b"consistent_index", &1u64.to_be_bytes()).unwrap();
    b.finish().unwrap();
    w.finish().unwrap();
    let mut db = std::fs::read(&path).unwrap();
    let hash = Sha256::digest(&db);
    db.extend_from_slice(&hash);
    db
}

/// The deltas stored: a cover of the stream cut at `cuts`, then `extras` (ranges of revisions
/// from the stream, as duplicates, overlaps or deltas inside others), each at its own time.
fn store_chain(dir: &std::path::Path, events: &[Event], cuts: &[usize], extras: &[(usize, usize)]) {
    let v2 = dir.join("store/v2");
    std::fs::create_dir_all(&v2).unwrap();
    std::fs::write(v2.join("Full-00000000-00000005-1000"), base_db()).unwrap();
    let revs: Vec<i64> = {
        let mut r: Vec<i64> = events.iter().map(|e| e.mod_revision).collect();
        r.dedup();
        r
    };
    let mut ranges = Vec::new();
    let mut from = 0;
    for &c in cuts.iter().chain(std::iter::once(&revs.len())) {
        let to = c.clamp(from, revs.len());
        if to > from {
            ranges.push((revs[from], revs[to - 1]));
            from = to;
        }
    }
    for &(a, b) in extras {
        let (a, b) = (a % revs.len(), b % revs.len());
        ranges.push((revs[a.min(b)], revs[a.max(b)]));
    }
    for (i, (first, last)) in ranges.into_iter().enumerate() {
        let mut enc = DeltaEncoder::new();
        for e in events
            .iter()
            .filter(|e| (first..=last).contains(&e.mod_revision))
        {
            enc.push(e, chrono::Utc::now());
        }
        let name = format!("Incr-{first:08}-{last:08}-{}", 1001 + i);
        std::fs::write(v2.join(name), enc.finish()).unwrap();
    }
}

fn run_restore(dir: &std::path::Path, selection: Selection) -> std::path::PathBuf {
    let objects = Arc::new(LocalStore::new(dir.join("store")).unwrap());
    let store = SnapStore::with_objects(objects, Provider::Local, &StoreConfig::default());
    let data = dir.join(format!("data-{:?}", selection.target).replace([' ', '(', ')'], ""));
    let mut opts = RestoreOptions::new(data.clone());
    opts.temp_dir = dir.join("tmp");
    opts.durable = false;
    opts.selection = selection;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(restore(&store, &opts)).unwrap();
    data
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..12usize, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        1 => (0..12usize).prop_map(Op::Delete),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn any_cut_of_the_stream_restores_each_change_once(
        txns in prop::collection::vec(prop::collection::vec(op(), 1..4), 1..60),
        cuts in prop::collection::vec(0..60usize, 0..8),
        extras in prop::collection::vec((any::<usize>(), any::<usize>()), 0..5),
        target in any::<usize>(),
    ) {
        let events = events(&txns);
        prop_assume!(!events.is_empty());
        let mut cuts = cuts;
        cuts.sort_unstable();
        let dir = tempfile::tempdir().unwrap();
        store_chain(dir.path(), &events, &cuts, &extras);
        let last = events.last().unwrap().mod_revision;

        let data = run_restore(dir.path(), Selection::latest());
        prop_assert_eq!(restored_rows(&data), expected(&events, last));

        let revs: Vec<i64> = (BASE..=last).collect();
        let at = revs[target % revs.len()];
        let data = run_restore(
            dir.path(),
            Selection { target: Target::Revision(Revision(at)), ..Selection::default() },
        );
        prop_assert_eq!(restored_rows(&data), expected(&events, at));
        let db = bbolt::Db::open(data.join("member/snap/db")).unwrap();
        prop_assert_eq!(etcd_datadir::current_revision(&db).unwrap().get(), at);
    }
}

//! The writer against a model: random buckets of random keys and values, written fresh, then
//! changed over several append sessions (keys appended after a bucket's last, buckets replaced
//! with some keys deleted and values changed, buckets added); after every session the file is
//! reopened, passes the page-by-page check, and reads back exactly as a `BTreeMap` model says.

use std::collections::BTreeMap;

use bbolt::{Db, DbWriter, check};
use proptest::prelude::*;

type Model = BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>;

/// One change of an append session.
#[derive(Debug, Clone)]
enum Op {
    /// Keys after the bucket's last one (a bucket index into the model, wrapping).
    Append(usize, Vec<(Vec<u8>, Vec<u8>)>),
    /// The bucket rewritten: every `n`th key dropped, values of the others changed.
    Replace(usize, usize, u8),
    /// A bucket the file does not have yet.
    Add(Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>),
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 1..24)
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    // Mostly small values, some spanning pages (overflow).
    prop_oneof![
        8 => prop::collection::vec(any::<u8>(), 0..64),
        1 => prop::collection::vec(any::<u8>(), 3000..9000),
    ]
}

fn entries() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
    prop::collection::vec((key(), value()), 0..120)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (any::<usize>(), entries()).prop_map(|(b, e)| Op::Append(b, e)),
        (any::<usize>(), 2..5usize, any::<u8>()).prop_map(|(b, n, v)| Op::Replace(b, n, v)),
        (key(), entries()).prop_map(|(n, e)| Op::Add(n, e)),
    ]
}

fn read(path: &std::path::Path) -> Model {
    let db = Db::open(path).unwrap();
    let mut out = Model::new();
    for name in db.bucket_names().unwrap() {
        let b = db.bucket(&name).unwrap().unwrap();
        let mut entries = BTreeMap::new();
        let mut c = db.cursor(&b).unwrap();
        let mut e = c.first().unwrap();
        while let Some(x) = e {
            entries.insert(x.key.to_vec(), x.value.to_vec());
            e = c.next().unwrap();
        }
        out.insert(name, entries);
    }
    out
}

fn assert_matches(path: &std::path::Path, model: &Model) -> Result<(), TestCaseError> {
    let db = Db::open(path).unwrap();
    let findings = check(&db).unwrap();
    prop_assert!(findings.is_empty(), "page check: {findings:?}");
    let got = read(path);
    prop_assert_eq!(got.len(), model.len(), "buckets");
    for (name, want) in model {
        prop_assert_eq!(got.get(name), Some(want), "bucket {:?}", name);
    }
    Ok(())
}

fn bucket_at(model: &Model, i: usize) -> Option<Vec<u8>> {
    (!model.is_empty()).then(|| {
        model
            .keys()
            .nth(i % model.len())
            .cloned()
            .unwrap_or_default()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn writer_matches_a_btreemap_model(
        initial in prop::collection::btree_map(key(), prop::collection::btree_map(key(), value(), 0..200), 0..5),
        sessions in prop::collection::vec(prop::collection::vec(op(), 1..4), 1..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut model: Model = initial;
        let mut w = DbWriter::create(&path).unwrap();
        for (name, entries) in &model {
            let mut b = w.bucket(name, 1);
            for (k, v) in entries {
                b.put(k, v).unwrap();
            }
            b.finish().unwrap();
        }
        w.finish().unwrap();
        assert_matches(&path, &model)?;

        for session in sessions {
            let mut w = DbWriter::append(&path).unwrap();
            let mut touched = std::collections::BTreeSet::new();
            for op in session {
                match op {
                    Op::Append(i, new) => {
                        let Some(name) = bucket_at(&model, i) else { continue };
                        if !touched.insert(name.clone()) {
                            continue; // one change of a bucket per session
                        }
                        let bucket = model.get_mut(&name).unwrap();
                        let mut new: BTreeMap<Vec<u8>, Vec<u8>> = new.into_iter().collect();
                        if let Some(last) = bucket.keys().next_back().cloned() {
                            new.retain(|k, _| *k > last);
                        }
                        w.begin_bucket_append(&name).unwrap();
                        for (k, v) in &new {
                            w.put(k, v).unwrap();
                        }
                        w.end_bucket().unwrap();
                        bucket.extend(new);
                    }
                    Op::Replace(i, nth, byte) => {
                        let Some(name) = bucket_at(&model, i) else { continue };
                        if !touched.insert(name.clone()) {
                            continue;
                        }
                        let kept: BTreeMap<Vec<u8>, Vec<u8>> = model[&name]
                            .iter()
                            .enumerate()
                            .filter(|(j, _)| j % nth != 0)
                            .map(|(_, (k, v))| {
                                let mut v = v.clone();
                                v.push(byte);
                                (k.clone(), v)
                            })
                            .collect();
                        w.begin_bucket(&name, 2);
                        for (k, v) in &kept {
                            w.put(k, v).unwrap();
                        }
                        w.end_bucket().unwrap();
                        model.insert(name, kept);
                    }
                    Op::Add(name, new) => {
                        if model.contains_key(&name) || !touched.insert(name.clone()) {
                            continue;
                        }
                        let new: BTreeMap<Vec<u8>, Vec<u8>> = new.into_iter().collect();
                        w.begin_bucket(&name, 3);
                        for (k, v) in &new {
                            w.put(k, v).unwrap();
                        }
                        w.end_bucket().unwrap();
                        model.insert(name, new);
                    }
                }
            }
            w.finish().unwrap();
            assert_matches(&path, &model)?;
        }
    }
}

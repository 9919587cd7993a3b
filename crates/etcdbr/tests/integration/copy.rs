//! Copying between real Local stores: what the copier reports to its observers.

use std::sync::{Arc, Mutex};

use chrono::{Duration, Utc};
use etcdbr::copy::{CopyOptions, copy_backups};
use etcdbr::events::{Event, Events, Observer};
use etcdbr_types::Revision;
use snapstore::provider::LocalStore;
use snapstore::{Kind, ObjectStore, Provider, SnapStore, Snapshot, StoreConfig};
use testkit::FaultyStore;
use tokio_util::sync::CancellationToken;

/// Keeps each `ObjectCopied` event as (object name, bytes, ok).
#[derive(Default)]
struct Copied(Mutex<Vec<(String, u64, bool)>>);

impl Observer for Copied {
    fn observe(&self, event: &Event<'_>) {
        if let Event::ObjectCopied {
            snapshot,
            bytes,
            ok,
        } = event
        {
            let row = (snapshot.snap_name.clone(), *bytes, *ok);
            self.0.lock().unwrap().push(row);
        }
    }
}

fn store(objects: Arc<dyn ObjectStore>) -> SnapStore {
    SnapStore::with_objects(objects, Provider::Local, &StoreConfig::default())
}

/// A full snapshot and two deltas, each object `body`.
async fn one_set(objects: &Arc<dyn ObjectStore>, body: &'static [u8]) -> Vec<Snapshot> {
    let t = Utc::now() - Duration::hours(1);
    let set = [
        Snapshot::new(Kind::Full, Revision(0), Revision(10), t, ".gz", false, "v2"),
        Snapshot::new(
            Kind::Incr,
            Revision(11),
            Revision(20),
            t,
            ".gz",
            false,
            "v2",
        ),
        Snapshot::new(
            Kind::Incr,
            Revision(21),
            Revision(30),
            t,
            ".gz",
            false,
            "v2",
        ),
    ];
    for s in &set {
        objects.put(&s.key(), Box::new(body), None).await.unwrap();
    }
    set.to_vec()
}

#[tokio::test]
async fn every_object_copied_or_failed_is_reported_and_present_ones_are_not() {
    let (src_dir, dst_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let src: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(src_dir.path()).unwrap());
    let dst: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dst_dir.path()).unwrap());
    let set = one_set(&src, b"seven b").await;
    // The destination already has the full snapshot; writing the last delta fails there.
    dst.put(&set[0].key(), Box::new(&b"seven b"[..]), None)
        .await
        .unwrap();
    let refused = set[2].key();
    let dst: Arc<dyn ObjectStore> = Arc::new(FaultyStore::new(dst, move |op, key, _| {
        op == "put" && key.starts_with(&refused)
    }));
    let heard = Arc::new(Copied::default());
    let mut opts = CopyOptions::default();
    opts.events = Events::none().with(heard.clone());
    let err = copy_backups(&store(src), &store(dst), &opts, &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, etcdbr::Error::CopyFailed { failed: 1, .. }),
        "{err}"
    );
    let mut rows = heard.0.lock().unwrap().clone();
    rows.sort();
    assert_eq!(
        rows,
        vec![
            (set[1].snap_name.clone(), 7, true),
            (set[2].snap_name.clone(), 0, false),
        ],
        "one event per object tried; the full snapshot already there is skipped silently"
    );
}

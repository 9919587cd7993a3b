//! Garbage collection executed against a real Local store.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use etcdbr::gc::{self, GcOptions, GcPolicy};
use etcdbr_types::Revision;
use snapstore::provider::LocalStore;
use snapstore::{Kind, ObjectStore, Provider, SnapStore, Snapshot, StoreConfig};
use testkit::FaultyStore;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 31, 10, 30, 0).unwrap()
}

/// Hourly full snapshots for 40 days, each followed by two deltas.
async fn populate(objects: &Arc<dyn ObjectStore>) -> Vec<Snapshot> {
    let mut out = Vec::new();
    let mut rev = 1;
    let start = now() - Duration::days(40);
    for h in 0..(40 * 24) {
        let t = start + Duration::hours(h);
        let full = Snapshot::new(
            Kind::Full,
            Revision(0),
            Revision(rev),
            t,
            ".gz",
            false,
            "v2",
        );
        let d1 = Snapshot::new(
            Kind::Incr,
            Revision(rev + 1),
            Revision(rev + 5),
            t + Duration::minutes(20),
            ".gz",
            false,
            "v2",
        );
        let d2 = Snapshot::new(
            Kind::Incr,
            Revision(rev + 6),
            Revision(rev + 9),
            t + Duration::minutes(40),
            ".gz",
            false,
            "v2",
        );
        rev += 10;
        for s in [full, d1, d2] {
            objects
                .put(&s.key(), Box::new(&b"x"[..]), None)
                .await
                .unwrap();
            out.push(s);
        }
    }
    out
}

fn store(objects: Arc<dyn ObjectStore>) -> SnapStore {
    SnapStore::with_objects(objects, Provider::Local, &StoreConfig::default())
}

#[tokio::test]
async fn exponential_keeps_the_documented_shape() {
    let dir = tempfile::tempdir().unwrap();
    let objects: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path()).unwrap());
    let all = populate(&objects).await;
    let store = store(Arc::clone(&objects));
    let plan = gc::plan(
        &store.list().await.unwrap(),
        now(),
        &GcOptions::new(GcPolicy::Exponential),
    );
    let report = gc::execute(&store, &plan, |_, _| {}).await;
    assert_eq!(report.failures, 0);
    let left = store.list().await.unwrap();
    let fulls: Vec<&Snapshot> = left.iter().filter(|s| s.kind == Kind::Full).collect();
    let deltas: Vec<&Snapshot> = left.iter().filter(|s| s.kind == Kind::Incr).collect();
    // Only the latest set keeps its deltas.
    let newest = all
        .iter()
        .filter(|s| s.kind == Kind::Full)
        .map(|s| s.last_revision)
        .max()
        .unwrap();
    assert_eq!(deltas.len(), 2);
    assert!(deltas.iter().all(|d| d.start_revision > newest));
    // Hourly today (the hours since midnight plus the current hour's snapshot), daily for the week,
    // weekly for four weeks, nothing older than five weeks.
    assert!(
        fulls
            .iter()
            .all(|s| now() - s.created_on < Duration::days(36)),
        "nothing older than five weeks"
    );
    let today = fulls
        .iter()
        .filter(|s| s.created_on.date_naive() == now().date_naive())
        .count();
    assert_eq!(
        today, 10,
        "one per hour of today: 00:30 ... 09:30 (the newest)"
    );
    assert!(
        fulls.len() < 11 + 8 + 5 + 2,
        "condensed to about one per day and one per week: {}",
        fulls.len()
    );
    assert_eq!(report.snapshots_deleted, all.len() - left.len());
}

#[tokio::test]
async fn limit_based_keeps_max_backups_and_a_failing_delta_protects_its_full_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let local: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path()).unwrap());
    let all = populate(&local).await;
    // Deleting the deltas of the second-oldest set fails: its full snapshot must stay.
    let protected_full = all[3].clone();
    let (d1, d2) = (all[4].key(), all[5].key());
    let faulty: Arc<dyn ObjectStore> = Arc::new(FaultyStore::new(local, move |op, key, _| {
        op == "delete" && (key == d1 || key == d2)
    }));
    let store = store(faulty);
    let mut opts = GcOptions::new(GcPolicy::LimitBased);
    opts.max_backups = 3;
    let plan = gc::plan(&store.list().await.unwrap(), now(), &opts);
    let report = gc::execute(&store, &plan, |_, _| {}).await;
    assert_eq!(report.failures, 2);
    let left = store.list().await.unwrap();
    let fulls: Vec<&Snapshot> = left.iter().filter(|s| s.kind == Kind::Full).collect();
    assert_eq!(fulls.len(), 4, "three newest plus the protected one");
    assert!(fulls.iter().any(|s| **s == protected_full));
    assert_eq!(
        left.iter().filter(|s| s.kind == Kind::Incr).count(),
        4,
        "the failing two and the latest set's two"
    );
}

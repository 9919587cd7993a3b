//! Snapshot Leases: never lowered, conflicts retried, errors named, the observer catching up.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use etcdbr::events::{Event, Events};
use etcdbr_k8s::{Kube, LeaseApi, Renewal, SnapshotLeaseNames, SnapshotLeases};
use etcdbr_types::Revision;
use snapstore::{BackupSet, Kind, Snapshot};
use testkit::KubeApi;
use testkit::kube_api::{ADMIN_TOKEN, SIDECAR_TOKEN};
use tokio_util::sync::CancellationToken;

const NS: &str = "shoot--dev";

async fn client(api: &KubeApi, dir: &tempfile::TempDir, token: &str) -> Kube {
    let path = api.kubeconfig(&dir.path().join(format!("{token}.yaml")), token, NS);
    Kube::from_kubeconfig(&path, NS).await.unwrap()
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn a_revision_is_raised_never_lowered_and_conflicts_are_retried() {
    let api = KubeApi::start_new().await;
    let dir = tempfile::tempdir().unwrap();
    api.create_lease(NS, "etcd-main-full-snap");
    let leases = LeaseApi::new(&client(&api, &dir, SIDECAR_TOKEN).await);
    let t = Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap();
    let r = leases
        .raise_revision("etcd-main-full-snap", 11, t, false)
        .await
        .unwrap();
    assert_eq!(r, Renewal::Raised);
    assert_eq!(api.holder(NS, "etcd-main-full-snap").as_deref(), Some("11"));
    let lease = api.lease(NS, "etcd-main-full-snap").unwrap();
    assert_eq!(lease["spec"]["renewTime"], "2026-12-01T10:00:00.000000Z");
    assert_eq!(
        lease["metadata"]["labels"]["app.kubernetes.io/managed-by"], "etcd-druid",
        "what druid set is kept"
    );
    // Lower: kept, nothing written.
    let before = api.lease(NS, "etcd-main-full-snap").unwrap();
    let r = leases
        .raise_revision("etcd-main-full-snap", 5, t, false)
        .await
        .unwrap();
    assert_eq!(r, Renewal::Kept(11));
    assert_eq!(api.lease(NS, "etcd-main-full-snap").unwrap(), before);
    // Lower with always_renew (the delta Lease): the revision stays, the time moves.
    let later = t + chrono::Duration::minutes(1);
    leases
        .raise_revision("etcd-main-full-snap", 5, later, true)
        .await
        .unwrap();
    assert_eq!(api.holder(NS, "etcd-main-full-snap").as_deref(), Some("11"));
    // Two conflicting writes: retried from a fresh read.
    api.conflict_next_writes(2);
    let r = leases
        .raise_revision("etcd-main-full-snap", 20, t, false)
        .await
        .unwrap();
    assert_eq!(r, Renewal::Raised);
    assert_eq!(api.holder(NS, "etcd-main-full-snap").as_deref(), Some("20"));
    // A storm: a clear error.
    api.conflict_next_writes(100);
    let e = leases
        .raise_revision("etcd-main-full-snap", 30, t, false)
        .await
        .unwrap_err();
    assert!(
        matches!(e, etcdbr_k8s::Error::Conflicts { .. }),
        "{}",
        etcdbr::error_chain(&e)
    );
    api.conflict_next_writes(0);
    let patches = api.seen().iter().filter(|(m, _, _)| m == "PATCH").count();
    assert!(patches >= 8, "{:?}", api.seen());
    assert!(
        api.seen()
            .iter()
            .filter(|(m, _, _)| m == "PATCH")
            .all(|(_, _, ct)| ct == "application/merge-patch+json"),
        "{:?}",
        api.seen()
    );
    assert!(
        !api.seen().iter().any(|(m, _, _)| m == "POST"),
        "the sidecar never creates a Lease"
    );
}

#[tokio::test]
async fn errors_name_the_lease_and_the_cause() {
    let api = KubeApi::start_new().await;
    let dir = tempfile::tempdir().unwrap();
    let leases = LeaseApi::new(&client(&api, &dir, SIDECAR_TOKEN).await);
    let t = Utc::now();
    // Missing: 404, not created.
    let e = leases
        .raise_revision("absent", 1, t, false)
        .await
        .unwrap_err();
    let msg = etcdbr::error_chain(&e);
    assert_eq!(e.api_code(), Some(404), "{msg}");
    assert!(
        msg.contains(&format!("{NS}/absent")) && msg.contains("not found"),
        "{msg}"
    );
    assert!(api.lease(NS, "absent").is_none());
    // A wrong token: 401, named.
    api.create_lease(NS, "l");
    let wrong = LeaseApi::new(&client(&api, &dir, "not-a-token").await);
    let e = wrong.raise_revision("l", 1, t, false).await.unwrap_err();
    let msg = etcdbr::error_chain(&e);
    assert_eq!(e.api_code(), Some(401), "{msg}");
    assert!(
        msg.contains(&format!("{NS}/l")) && msg.contains("Unauthorized"),
        "{msg}"
    );
    assert!(
        !msg.contains("not-a-token"),
        "the token is never printed: {msg}"
    );
    // Not a revision: named with its value.
    let admin = LeaseApi::new(&client(&api, &dir, ADMIN_TOKEN).await);
    admin
        .heartbeat("l", "abc", &Default::default())
        .await
        .unwrap();
    let e = leases.raise_revision("l", 1, t, false).await.unwrap_err();
    assert!(etcdbr::error_chain(&e).contains("\"abc\""), "{e}");
}

fn snap(kind: Kind, first: i64, last: i64) -> Snapshot {
    let t = Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap() + chrono::Duration::seconds(last);
    Snapshot::new(kind, Revision(first), Revision(last), t, ".gz", false, "v2")
}

#[tokio::test]
async fn the_observer_follows_the_engine_and_catches_up_after_an_outage() {
    let mut api = KubeApi::start_new().await;
    let dir = tempfile::tempdir().unwrap();
    let names = SnapshotLeaseNames {
        full: "etcd-main-full-snap".into(),
        delta: "etcd-main-delta-snap".into(),
    };
    api.create_lease(NS, &names.full);
    api.create_lease(NS, &names.delta);
    let kube = client(&api, &dir, SIDECAR_TOKEN).await;
    let stop = CancellationToken::new();
    // At start-up: what the store's latest set says; no delta yet is "0".
    let full = snap(Kind::Full, 0, 1);
    let set = BackupSet {
        full: Some(full.clone()),
        ..BackupSet::default()
    };
    let leases = SnapshotLeases::start(&kube, names.clone(), &set, stop.clone());
    wait_for("the start-up values", || {
        api.holder(NS, &names.full).as_deref() == Some("1")
            && api.holder(NS, &names.delta).as_deref() == Some("0")
    })
    .await;
    assert_eq!(
        api.lease(NS, &names.full).unwrap()["spec"]["renewTime"],
        "2026-12-01T09:00:01.000000Z",
        "the full Lease's renewTime is the snapshot's creation time"
    );
    let events = Events::none().with(leases.clone());
    let took = Duration::from_secs(1);
    events.emit(&Event::SnapshotSaved {
        snapshot: &snap(Kind::Full, 0, 11),
        took,
    });
    events.emit(&Event::SnapshotSaved {
        snapshot: &snap(Kind::Incr, 12, 30),
        took,
    });
    wait_for("full 11, delta 30", || {
        api.holder(NS, &names.full).as_deref() == Some("11")
            && api.holder(NS, &names.delta).as_deref() == Some("30")
    })
    .await;
    // A skipped delta renews the delta Lease's time.
    let renewed = api.lease(NS, &names.delta).unwrap()["spec"]["renewTime"].clone();
    tokio::time::sleep(Duration::from_millis(20)).await;
    events.emit(&Event::DeltaSkipped);
    wait_for("a renewal after a skipped delta", || {
        api.lease(NS, &names.delta).unwrap()["spec"]["renewTime"] != renewed
    })
    .await;
    // The API server goes away; snapshots go on; the Leases catch up when it is back.
    api.stop().await;
    events.emit(&Event::SnapshotSaved {
        snapshot: &snap(Kind::Incr, 31, 40),
        took,
    });
    events.emit(&Event::SnapshotSaved {
        snapshot: &snap(Kind::Full, 0, 45),
        took,
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    api.start().await;
    wait_for("the Leases to catch up", || {
        api.holder(NS, &names.full).as_deref() == Some("45")
            && api.holder(NS, &names.delta).as_deref() == Some("40")
    })
    .await;
    // A Lease deleted mid-run is not recreated; the other goes on.
    api.delete_lease(NS, &names.delta);
    events.emit(&Event::SnapshotSaved {
        snapshot: &snap(Kind::Incr, 46, 50),
        took,
    });
    events.emit(&Event::SnapshotSaved {
        snapshot: &snap(Kind::Full, 0, 50),
        took,
    });
    wait_for("the full Lease at 50", || {
        api.holder(NS, &names.full).as_deref() == Some("50")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(api.lease(NS, &names.delta).is_none(), "not recreated");
    stop.cancel();
    drop(Arc::clone(&leases));
}

#[tokio::test]
async fn kubectl_reads_what_was_written() {
    let api = KubeApi::start_new().await;
    let dir = tempfile::tempdir().unwrap();
    api.create_lease(NS, "etcd-main-full-snap");
    let leases = LeaseApi::new(&client(&api, &dir, SIDECAR_TOKEN).await);
    let t = Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap();
    leases
        .raise_revision("etcd-main-full-snap", 4242, t, false)
        .await
        .unwrap();
    let kubeconfig = api.kubeconfig(&dir.path().join("kubectl.yaml"), ADMIN_TOKEN, NS);
    // On a blocking thread: this test's runtime also serves the API server.
    let home = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("kubectl")
            .env("HOME", home)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["get", "lease", "-o", "json"])
            .output()
    })
    .await
    .unwrap()
    .expect("kubectl (scripts/setup.sh installs kubernetes-client)");
    assert!(
        out.status.success(),
        "kubectl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let item = &list["items"][0];
    assert_eq!(item["metadata"]["name"], "etcd-main-full-snap");
    assert_eq!(item["spec"]["holderIdentity"], "4242");
    assert_eq!(item["spec"]["renewTime"], "2026-12-01T10:00:00.000000Z");
}

/// The API server gone for a minute while snapshots go on: every write is retried (the delay
/// grows to 30 s at most) and the Leases hold the newest revisions soon after it is back.
#[tokio::test]
async fn a_minute_without_the_api_server_is_caught_up() {
    let mut api = KubeApi::start_new().await;
    let dir = tempfile::tempdir().unwrap();
    let names = SnapshotLeaseNames::default();
    api.create_lease(NS, &names.full);
    api.create_lease(NS, &names.delta);
    let kube = client(&api, &dir, SIDECAR_TOKEN).await;
    let stop = CancellationToken::new();
    let leases = SnapshotLeases::start(&kube, names.clone(), &BackupSet::default(), stop.clone());
    let events = Events::none().with(leases.clone());
    wait_for("delta 0", || {
        api.holder(NS, &names.delta).as_deref() == Some("0")
    })
    .await;
    api.stop().await;
    let took = Duration::from_secs(1);
    for i in 1..=12 {
        let rev = i * 100;
        events.emit(&Event::SnapshotSaved {
            snapshot: &snap(Kind::Incr, rev - 99, rev),
            took,
        });
        if i % 4 == 0 {
            events.emit(&Event::SnapshotSaved {
                snapshot: &snap(Kind::Full, 0, rev),
                took,
            });
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    api.start().await;
    // The longest retry delay is 30 s: caught up within it (and a margin).
    for _ in 0..800 {
        if api.holder(NS, &names.full).as_deref() == Some("1200")
            && api.holder(NS, &names.delta).as_deref() == Some("1200")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(api.holder(NS, &names.full).as_deref(), Some("1200"));
    assert_eq!(api.holder(NS, &names.delta).as_deref(), Some("1200"));
    stop.cancel();
}

//! The member Lease heartbeat against real etcd.

use std::time::Duration;

use etcdbr_k8s::{Kube, MemberHeartbeat, member_identity};
use testkit::kube_api::SIDECAR_TOKEN;
use testkit::{Etcd, EtcdVersion, KubeApi};
use tokio_util::sync::CancellationToken;

const NS: &str = "shoot--dev";

fn etcd_options(etcd: &Etcd) -> etcdbr::etcd::EtcdOptions {
    let mut o = etcdbr::etcd::EtcdOptions::default();
    o.endpoints = vec![etcd.client_url.clone()];
    o.connection_timeout = Duration::from_secs(2);
    o
}

async fn heartbeat_names_the_member_and_stops_claiming_while_etcd_is_down(v: EtcdVersion) {
    let api = KubeApi::start_new().await;
    let dir = tempfile::tempdir().unwrap();
    api.create_lease(NS, "etcd-main-0");
    let path = api.kubeconfig(&dir.path().join("k.yaml"), SIDECAR_TOKEN, NS);
    let kube = Kube::from_kubeconfig(&path, NS).await.unwrap();
    let mut etcd = Etcd::start(v).await;
    let mut c = etcd.client().await.unwrap();
    let status = c.status().await.unwrap();
    let h = status.header().unwrap();
    let expected = member_identity(h.member_id(), h.cluster_id(), true);
    let stop = CancellationToken::new();
    let beat = MemberHeartbeat::new(
        &kube,
        "etcd-main-0".into(),
        etcd_options(&etcd),
        Duration::from_millis(300),
        false,
    );
    let task = tokio::spawn(beat.run(stop.clone()));
    let renew = |api: &KubeApi| api.lease(NS, "etcd-main-0").unwrap()["spec"]["renewTime"].clone();
    for _ in 0..100 {
        if api.holder(NS, "etcd-main-0").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(api.holder(NS, "etcd-main-0"), Some(expected.clone()));
    assert!(expected.ends_with(":Leader"), "{expected}");
    let lease = api.lease(NS, "etcd-main-0").unwrap();
    assert_eq!(
        lease["metadata"]["annotations"]["member.etcd.gardener.cloud/tls-enabled"],
        "false"
    );
    let first = renew(&api);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let second = renew(&api);
    assert_ne!(first, second, "renewTime advances every heartbeat");
    // etcd down: no renewal (the Lease ages, as druid expects of a member that cannot say).
    etcd.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let while_down = renew(&api);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(renew(&api), while_down, "not renewed while etcd is down");
    assert_eq!(api.holder(NS, "etcd-main-0"), Some(expected.clone()));
    // Back: renewed again.
    etcd.restart().await;
    for _ in 0..200 {
        if renew(&api) != while_down {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ne!(renew(&api), while_down, "renewed again once etcd is back");
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn heartbeat_etcd34() {
    heartbeat_names_the_member_and_stops_claiming_while_etcd_is_down(EtcdVersion::V34).await;
}

#[tokio::test]
async fn heartbeat_etcd35() {
    heartbeat_names_the_member_and_stops_claiming_while_etcd_is_down(EtcdVersion::V35).await;
}

//! The Leases etcd-druid reads, written by the binary as druid runs it, against the in-test
//! Kubernetes API server and real etcd: the checks of druid's own e2e tests (a fresh cluster's
//! full Lease at the first full snapshot and delta `"0"`; a full snapshot raising the full Lease;
//! deltas raising the delta Lease; after `compact`, full == delta == the last revision), the
//! member Lease's holder and renewals, and an API server that is down when the sidecar starts.

use std::time::{Duration, Instant};

use crate::common::sidecar::{Sidecar, json};
use crate::common::{bin, wait_for_backup};
use testkit::kube_api::SIDECAR_TOKEN;
use testkit::{Etcd, EtcdVersion, KubeApi};

const NS: &str = "shoot--dev--main";
const FULL: &str = "etcd-main-full-snap";
const DELTA: &str = "etcd-main-delta-snap";
const MEMBER: &str = "etcd-main-0";

async fn wait_for(what: &str, sc: &Sidecar, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{}",
            sc.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn druid_leases(v: EtcdVersion) {
    let mut api = KubeApi::start_new().await;
    for name in [FULL, DELTA, MEMBER] {
        api.create_lease(NS, name);
    }
    // The API server is down when the sidecar starts: backups go on, the Leases catch up.
    api.stop().await;
    let etcd = Etcd::start(v).await;
    let mut c = etcd.client().await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(&home.path().join("kubeconfig"), SIDECAR_TOKEN, NS);
    let kubeconfig = kubeconfig.to_str().unwrap().to_owned();
    std::fs::write(
        home.path().join("etcd.conf.yaml.in"),
        format!(
            "name: etcd-config\ndata-dir: /var/etcd/data/new.etcd\ninitial-cluster: {MEMBER}={peer}\n\
             initial-advertise-peer-urls:\n  {MEMBER}:\n  - {peer}\nadvertise-client-urls:\n  {MEMBER}:\n  - {client}\n",
            peer = etcd.peer_url,
            client = etcd.client_url
        ),
    )
    .unwrap();
    let env = [("KUBECONFIG", kubeconfig.as_str()), ("POD_NAMESPACE", NS)];
    let lease_flags = [
        "--enable-snapshot-lease-renewal=true",
        "--full-snapshot-lease-name=etcd-main-full-snap",
        "--delta-snapshot-lease-name=etcd-main-delta-snap",
        "--enable-member-lease-renewal=true",
        "--k8s-heartbeat-duration=1s",
    ];
    let mut sc = Sidecar::start_with_env(
        home.path(),
        MEMBER,
        &etcd,
        testkit::free_port(),
        &lease_flags,
        &env,
    );
    sc.wait_health(200).await;
    wait_for_backup(home.path(), 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        sc.log().contains("not renewed")
            || sc.log().contains("Could not update the snapshot Lease"),
        "the outage is logged:\n{}",
        sc.log()
    );
    api.start().await;

    // A fresh cluster: full = the first full snapshot's revision, delta = "0".
    let first = etcd.revision().await.to_string();
    wait_for("full = first revision, delta = 0", &sc, || {
        api.holder(NS, FULL).as_deref() == Some(first.as_str())
            && api.holder(NS, DELTA).as_deref() == Some("0")
    })
    .await;

    // The member Lease: this member, the cluster, Leader; renewed every heartbeat.
    let status = c.status().await.unwrap();
    let h = status.header().unwrap();
    let me = format!("{:x}:{:x}:Leader", h.member_id(), h.cluster_id());
    wait_for("the member Lease", &sc, || {
        api.holder(NS, MEMBER).as_deref() == Some(me.as_str())
    })
    .await;
    let lease = api.lease(NS, MEMBER).unwrap();
    assert_eq!(
        lease["metadata"]["annotations"]["member.etcd.gardener.cloud/tls-enabled"],
        "false"
    );
    let renewed = lease["spec"]["renewTime"].clone();
    wait_for("the next heartbeat", &sc, || {
        api.lease(NS, MEMBER).unwrap()["spec"]["renewTime"] != renewed
    })
    .await;

    // 10 writes and a full snapshot: the full Lease is the new revision.
    for i in 0..10 {
        c.put(format!("/k{i}"), "v", None).await.unwrap();
    }
    let (code, body) = sc.http("POST", "/snapshot/full");
    assert_eq!(code, 200, "{body}");
    let full = json(&body)["lastRevision"].as_i64().unwrap().to_string();
    assert_eq!(full, etcd.revision().await.to_string());
    wait_for("full = the new full snapshot", &sc, || {
        api.holder(NS, FULL).as_deref() == Some(full.as_str())
    })
    .await;

    // Deltas: the delta Lease follows the last delta.
    for i in 0..15 {
        c.put(format!("/d{i}"), "v", None).await.unwrap();
    }
    let (code, body) = sc.http("POST", "/snapshot/delta");
    assert_eq!(code, 200, "{body}");
    let delta = etcd.revision().await.to_string();
    wait_for("delta = the last delta", &sc, || {
        api.holder(NS, DELTA).as_deref() == Some(delta.as_str())
    })
    .await;
    assert_eq!(api.holder(NS, FULL).as_deref(), Some(full.as_str()));

    // compact, as druid's Job runs it: full == delta == the last revision.
    assert!(sc.terminate(), "{}", sc.log());
    let last = etcd.revision().await.to_string();
    wait_for("the final delta's Lease", &sc, || {
        api.holder(NS, DELTA).as_deref() == Some(last.as_str())
    })
    .await;
    let out = bin()
        .env_clear()
        .env("HOME", home.path())
        .envs(env)
        .args([
            "compact",
            "--storage-provider=Local",
            "--store-container=backups",
        ])
        .arg(format!(
            "--data-dir={}",
            home.path().join("compaction.etcd").display()
        ))
        .arg(format!(
            "--restoration-temp-snapshots-dir={}",
            home.path().join("compaction.restoration.temp").display()
        ))
        .arg(format!(
            "--snapstore-temp-directory={}",
            home.path().join("tmp").display()
        ))
        .args([
            "--metrics-scrape-wait-duration=0s",
            "--enable-snapshot-lease-renewal=true",
            "--full-snapshot-lease-name=etcd-main-full-snap",
            "--delta-snapshot-lease-name=etcd-main-delta-snap",
            "--embedded-etcd-quota-bytes=8589934592",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        api.holder(NS, FULL).as_deref(),
        Some(last.as_str()),
        "full == the last revision after compact"
    );
    assert_eq!(api.holder(NS, DELTA).as_deref(), Some(last.as_str()));
    assert!(
        !api.seen()
            .iter()
            .any(|(m, _, _)| m == "POST" || m == "DELETE"),
        "the sidecar and the Job never create or delete a Lease"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn druid_leases_etcd34() {
    druid_leases(EtcdVersion::V34).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn druid_leases_etcd35() {
    druid_leases(EtcdVersion::V35).await;
}

/// Each member's ID, from its own etcd.
async fn member_id(m: &Etcd) -> u64 {
    let mut c = m.client().await.unwrap();
    c.status().await.unwrap().header().unwrap().member_id()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_leases_name_each_member_and_follow_leadership() {
    let api = KubeApi::start_new().await;
    let members = Etcd::start_cluster(EtcdVersion::V35, 3).await;
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("etcd.conf.yaml.in"),
        crate::common::cluster_conf(&members),
    )
    .unwrap();
    for i in 0..3 {
        api.create_lease(NS, &format!("m{i}"));
    }
    let kubeconfig = api.kubeconfig(&home.path().join("kubeconfig"), SIDECAR_TOKEN, NS);
    let kubeconfig = kubeconfig.to_str().unwrap().to_owned();
    let env = [("KUBECONFIG", kubeconfig.as_str()), ("POD_NAMESPACE", NS)];
    let port = testkit::free_port();
    let flags = [
        "--enable-member-lease-renewal=true",
        "--k8s-heartbeat-duration=1s",
    ];
    let sidecars: Vec<Sidecar> = members
        .iter()
        .enumerate()
        .map(|(i, m)| Sidecar::start_with_env(home.path(), &format!("m{i}"), m, port, &flags, &env))
        .collect();
    let mut ids = Vec::new();
    for m in &members {
        ids.push(member_id(m).await);
    }
    let mut c = members[0].client().await.unwrap();
    let cluster = c.status().await.unwrap().header().unwrap().cluster_id();
    let expect = |leader: usize| -> Vec<String> {
        (0..3)
            .map(|i| {
                let role = if i == leader { "Leader" } else { "Member" };
                format!("{:x}:{cluster:x}:{role}", ids[i])
            })
            .collect()
    };
    let holders = |api: &KubeApi| -> Vec<String> {
        (0..3)
            .map(|i| api.holder(NS, &format!("m{i}")).unwrap_or_default())
            .collect()
    };
    let leader = crate::common::sidecar::leader_index(&members, &[true; 3]).await;
    let want = expect(leader);
    wait_for("each member's Lease", &sidecars[0], || {
        holders(&api) == want
    })
    .await;

    // Leadership moves: the roles in the Leases follow.
    let target = (leader + 1) % 3;
    let mut lc = members[leader].client().await.unwrap();
    lc.move_leader(ids[target]).await.unwrap();
    let want = expect(target);
    wait_for("the roles after the move", &sidecars[target], || {
        holders(&api) == want
    })
    .await;
}

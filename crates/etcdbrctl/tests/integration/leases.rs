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
async fn member_leases_name_each_member_and_follow_leadership_etcd34() {
    member_leases_follow_leadership(EtcdVersion::V34).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_leases_name_each_member_and_follow_leadership_etcd35() {
    member_leases_follow_leadership(EtcdVersion::V35).await;
}

async fn member_leases_follow_leadership(v: EtcdVersion) {
    let api = KubeApi::start_new().await;
    let members = Etcd::start_cluster(v, 3).await;
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

/// etcd-druid's sidecar command line (its `getBackupRestoreContainerCommandArgs`, in order, for
/// a Local store with member and snapshot Leases, as `../shared/reference/druid-contract.md`
/// gives it), with only the paths and the ports pointed into the test: the container name
/// comes from `STORAGE_CONTAINER` alone, durations are Go's `Duration.String()` values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn druids_command_line_runs_unchanged() {
    let api = KubeApi::start_new().await;
    for name in [FULL, DELTA, MEMBER] {
        api.create_lease(NS, name);
    }
    // etcd named as druid names the member, so the peer URL check finds it.
    let etcd_dir = tempfile::tempdir().unwrap();
    let mut etcd = Etcd::on_data_dir(EtcdVersion::V34, &etcd_dir.path().join("data"), &[]);
    let peer = etcd.peer_url.clone();
    etcd.set_member(MEMBER, &peer);
    etcd.restart().await;
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("var/etcd/data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        home.path().join("etcd.conf.yaml"),
        format!(
            "name: etcd-config\ndata-dir: /var/etcd/data/new.etcd\nmetrics: basic\nsnapshot-count: 75000\n\
             enable-v2: false\nquota-backend-bytes: 8589934592\nlistener-metrics-url: http://0.0.0.0:2381\n\
             initial-cluster: {MEMBER}={peer}\ninitial-cluster-token: etcd-cluster\ninitial-cluster-state: new\n\
             auto-compaction-mode: periodic\nauto-compaction-retention: 30m\n\
             initial-advertise-peer-urls:\n  {MEMBER}:\n  - {peer}\nadvertise-client-urls:\n  {MEMBER}:\n  - {client}\n",
            peer = etcd.peer_url,
            client = etcd.client_url
        ),
    )
    .unwrap();
    let kubeconfig = api.kubeconfig(&home.path().join("kubeconfig"), SIDECAR_TOKEN, NS);
    let port = testkit::free_port();
    let d = |p: &str| data.join(p).display().to_string();
    let args: Vec<String> = vec![
        "server".into(),
        format!("--server-port={port}"),
        "--enable-snapshot-lease-renewal=true".into(),
        format!("--full-snapshot-lease-name={FULL}"),
        format!("--delta-snapshot-lease-name={DELTA}"),
        "--storage-provider=Local".into(),
        "--store-prefix=etcd-main".into(),
        "--schedule=0 */24 * * *".into(),
        "--delta-snapshot-period=2s".into(),
        "--delta-snapshot-retention-period=0s".into(),
        "--delta-snapshot-memory-limit=104857600".into(),
        "--garbage-collection-policy=LimitBased".into(),
        "--max-backups=7".into(),
        "--garbage-collection-period=1m0s".into(),
        "--compress-snapshots=true".into(),
        "--compression-policy=gzip".into(),
        "--etcd-snapshot-timeout=15m".into(),
        "--defragmentation-schedule=0 0 */3 * *".into(),
        "--etcd-defrag-timeout=15m".into(),
        "--auto-compaction-mode=periodic".into(),
        "--auto-compaction-retention=30m".into(),
        "--insecure-transport=true".into(),
        "--insecure-skip-tls-verify=true".into(),
        format!("--endpoints={}", etcd.client_url),
        format!("--service-endpoints={}", etcd.client_url),
        format!("--data-dir={}", d("new.etcd")),
        format!("--restoration-temp-snapshots-dir={}", d("restoration.temp")),
        format!("--snapstore-temp-directory={}", d("temp")),
        "--etcd-connection-timeout=5m".into(),
        "--use-etcd-wrapper=true".into(),
        "--enable-member-lease-renewal=true".into(),
        "--k8s-heartbeat-duration=10s".into(),
        "--embedded-etcd-quota-bytes=8589934592".into(),
        "--enable-profiling=true".into(),
        "--etcd-connection-timeout-leader-election=5s".into(),
        "--reelection-period=5s".into(),
    ];
    let log = home.path().join("sidecar.log");
    let mut child = bin()
        .env_clear()
        .env("HOME", home.path())
        .env("POD_NAME", MEMBER)
        .env("POD_NAMESPACE", NS)
        .env("STORAGE_CONTAINER", "etcd-main-bucket")
        .env("ETCD_CONF", home.path().join("etcd.conf.yaml"))
        .env("KUBECONFIG", &kubeconfig)
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    // The store is $HOME/<STORAGE_CONTAINER>/<prefix>/v2, as the original's Local provider.
    let store = home.path().join("etcd-main-bucket/etcd-main/v2");
    let deadline = Instant::now() + Duration::from_secs(60);
    while crate::common::names(&store)
        .iter()
        .all(|n| !n.starts_with("Full-"))
    {
        assert!(
            Instant::now() < deadline,
            "no full snapshot in {}:\n{}",
            store.display(),
            text()
        );
        assert!(child.try_wait().unwrap().is_none(), "exited:\n{}", text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rev = etcd.revision().await.to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    while api.holder(NS, FULL).as_deref() != Some(rev.as_str()) || api.holder(NS, MEMBER).is_none()
    {
        assert!(Instant::now() < deadline, "Leases not written:\n{}", text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (code, _) =
        crate::common::sidecar::http("GET", &format!("http://127.0.0.1:{port}/healthz"));
    assert_eq!(code, 200, "{}", text());
    let log_text = text();
    assert!(!log_text.contains("ERROR"), "{log_text}");
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success(), "{}", text());
}

/// The in-cluster configuration, as in a pod: no kubeconfig, `KUBERNETES_SERVICE_HOST`/`PORT`,
/// and the service account's token and CA at their fixed path, which the sidecar gets in a
/// private mount namespace of its own (`unshare`, a tmpfs over `/run`), so the machine's `/run`
/// is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cluster_service_account_renews_the_member_lease() {
    let api = KubeApi::start_new().await;
    api.create_lease(NS, MEMBER);
    let etcd = Etcd::start(EtcdVersion::V35).await;
    let home = tempfile::tempdir().unwrap();
    let sa = home.path().join("serviceaccount");
    std::fs::create_dir_all(&sa).unwrap();
    std::fs::write(sa.join("token"), SIDECAR_TOKEN).unwrap();
    std::fs::copy(api.ca(), sa.join("ca.crt")).unwrap();
    std::fs::write(sa.join("namespace"), NS).unwrap();
    let port: u16 = api.url().rsplit(':').next().unwrap().parse().unwrap();
    let log = home.path().join("sidecar.log");
    let script = "mount -t tmpfs none /run && mkdir -p /run/secrets/kubernetes.io && \
                  cp -r \"$SA\" /run/secrets/kubernetes.io/serviceaccount && exec \"$@\"";
    let mut child = std::process::Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(env!("CARGO_BIN_EXE_etcdbrctl"))
        .args([
            "server",
            "--enable-member-lease-renewal=true",
            "--k8s-heartbeat-duration=1s",
        ])
        .arg(format!("--endpoints={}", etcd.client_url))
        .arg(format!("--server-port={}", testkit::free_port()))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SA", &sa)
        .env("HOME", home.path())
        .env("POD_NAME", MEMBER)
        .env("POD_NAMESPACE", NS)
        .env("ETCD_CONF", home.path().join("none"))
        .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .env("KUBERNETES_SERVICE_PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("unshare (util-linux)");
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    while api.holder(NS, MEMBER).is_none() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "exited (a private mount namespace needs root or CAP_SYS_ADMIN):\n{}",
            text()
        );
        assert!(Instant::now() < deadline, "no renewal:\n{}", text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(api.holder(NS, MEMBER).unwrap().ends_with(":Leader"));
    assert!(text().contains("https://127.0.0.1"), "{}", text());
    let _ = child.kill();
    let _ = child.wait();
}

//! `etcdbrctl server` against real etcd: the single-member flow through the HTTP API, every
//! path and status code, `/metrics` parsed, `/config` rendered, and a three-member cluster with
//! a sidecar beside each member where only the leader's backs up and a new leader takes over
//! without a gap in the chain, and a member that lost its data replaced by a learner that its
//! sidecar promotes.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::bin;
use testkit::{Etcd, EtcdVersion};

struct Sidecar {
    child: Option<Child>,
    host: String,
    port: u16,
    log: PathBuf,
}

impl Sidecar {
    fn start(home: &Path, name: &str, etcd: &Etcd, port: u16, extra: &[&str]) -> Sidecar {
        let log = home.join(format!("{name}.log"));
        let child = bin()
            .env_clear()
            .env("HOME", home)
            .env("POD_NAME", name)
            .env("ETCD_CONF", home.join("etcd.conf.yaml.in"))
            .args(["server", "--endpoints", &etcd.client_url])
            .args(["--storage-provider=Local", "--store-container=backups"])
            .arg(format!("--server-port={port}"))
            .arg(format!(
                "--server-bind-address={}",
                etcd.client_url
                    .trim_start_matches("http://")
                    .split(':')
                    .next()
                    .unwrap()
            ))
            .args(["--reelection-period=2s", "--delta-snapshot-period=1s"])
            // Once a year: the full snapshot schedule never fires during a test.
            .arg("--schedule=0 0 1 1 *")
            .args(["--garbage-collection-period=0s"])
            .args([
                "--snapstore-temp-directory",
                home.join(format!("{name}-tmp")).to_str().unwrap(),
            ])
            .args([
                "--data-dir",
                home.join(format!("{name}-restored")).to_str().unwrap(),
            ])
            .args([
                "--restoration-temp-snapshots-dir",
                home.join(format!("{name}-rtmp")).to_str().unwrap(),
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let host = etcd
            .client_url
            .trim_start_matches("http://")
            .split(':')
            .next()
            .unwrap()
            .to_owned();
        Sidecar {
            child: Some(child),
            host,
            port,
            log,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.host, self.port)
    }

    fn http(&self, method: &str, path: &str) -> (u16, String) {
        http(method, &self.url(path))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_health(&self, code: u16) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.http("GET", "/healthz").0 != code {
            assert!(
                Instant::now() < deadline,
                "healthz never {code}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the HTTP API answers at all (any status).
    async fn wait_serving(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.http("GET", "/healthz").0 == 0 {
            assert!(Instant::now() < deadline, "never served:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap();
        c.wait().unwrap().success()
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn http(method: &str, url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-m", "60", "-X", method, "-w", "\n%{http_code}", url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn backups(home: &Path) -> Vec<String> {
    common::names(&home.join("backups/v2"))
}

fn newest_revision(home: &Path) -> i64 {
    backups(home)
        .iter()
        .filter_map(|n| n.split('-').nth(2)?.parse().ok())
        .max()
        .unwrap_or(0)
}

async fn wait_backup(home: &Path, rev: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while newest_revision(home) < rev {
        assert!(
            Instant::now() < deadline,
            "no backup reached revision {rev}: {:?}",
            backups(home)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every metric the reference lists (§7.6).
const METRICS: &[&str] = &[
    "etcdbr_snapshot_duration_seconds",
    "etcdbr_snapshot_gc_total",
    "etcdbr_snapshot_latest_revision",
    "etcdbr_snapshot_latest_timestamp",
    "etcdbr_snapshot_required",
    "etcdbr_validation_duration_seconds",
    "etcdbr_restoration_duration_seconds",
    "etcdbr_defragmentation_duration_seconds",
    "etcdbr_snapstore_latest_deltas_total",
    "etcdbr_snapstore_latest_deltas_revisions_total",
    "etcdbr_snapshotter_failure",
    "etcdbr_cluster_size",
    "etcdbr_is_learner",
    "etcdbr_is_learner_count_total",
    "etcdbr_add_learner_duration_seconds",
    "etcdbr_member_remove_duration_seconds",
    "etcdbr_member_promote_duration_seconds",
    "etcdbr_network_transmitted_bytes",
    "etcdbr_network_received_bytes",
];

/// Parses Prometheus text: every sample line is `name[{labels}] value`; returns the TYPE lines.
fn parse_prometheus(text: &str) -> Vec<(String, String)> {
    let mut types = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line");
            types.push((name.to_owned(), kind.to_owned()));
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample {line:?}"));
        assert!(
            value.parse::<f64>().is_ok() || value == "+Inf",
            "bad value in {line:?}"
        );
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name in {line:?}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "{line:?}"
            );
        }
    }
    types
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_member_http_api() {
    let etcd = Etcd::start(EtcdVersion::V35).await;
    let mut c = etcd.client().await.unwrap();
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("etcd.conf.yaml.in"),
        format!(
            "name: placeholder\ndata-dir: /var/etcd/data/new.etcd\ninitial-cluster: m0={peer}\n\
             initial-advertise-peer-urls:\n  m0:\n  - {peer}\nadvertise-client-urls:\n  m0:\n  - {client}\n",
            peer = etcd.peer_url,
            client = etcd.client_url
        ),
    )
    .unwrap();
    let mut sc = Sidecar::start(home.path(), "m0", &etcd, testkit::free_port(), &[]);
    sc.wait_health(200).await;
    assert_eq!(json(&sc.http("GET", "/healthz").1)["health"], true);
    wait_backup(home.path(), 1).await;

    // Initialization: New -> Progress -> Successful, read once, then New again.
    assert_eq!(
        sc.http("GET", "/initialization/status"),
        (200, "New".into())
    );
    assert_eq!(sc.http("GET", "/initialization/start?mode=sanity").0, 200);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, s) = sc.http("GET", "/initialization/status");
        assert_eq!(code, 200);
        if s == "Successful" {
            break;
        }
        assert!(s == "Progress" || s == "New", "{s}");
        assert!(
            s != "Failed" && Instant::now() < deadline,
            "{s}:\n{}",
            sc.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sc.http("GET", "/initialization/status").1, "New");
    assert!(
        home.path().join("m0-restored/member/snap/db").exists(),
        "restored from the backup"
    );
    sc.wait_health(200).await;

    // Deltas and full snapshots over HTTP.
    for i in 0..20 {
        c.put(format!("/k{i}"), "v", None).await.unwrap();
    }
    let rev = etcd.revision().await;
    let (code, body) = sc.http("POST", "/snapshot/delta");
    assert_eq!(code, 200, "{body}");
    let d = json(&body);
    assert_eq!(d["kind"], "Incr");
    assert_eq!(d["lastRevision"], rev);
    assert_eq!(
        sc.http("GET", "/snapshot/delta"),
        (200, "null".into()),
        "no new events"
    );
    assert_eq!(sc.http("GET", "/snapshot/full?final=maybe").0, 400);
    assert_eq!(sc.http("DELETE", "/snapshot/full").0, 405);
    assert_eq!(sc.http("PUT", "/initialization/start").0, 405);
    assert_eq!(sc.http("GET", "/nope").0, 404);
    let (code, body) = sc.http("GET", "/snapshot/full");
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["isFinal"], false);
    let (code, body) = sc.http("POST", "/snapshot/full?final=true");
    assert_eq!(code, 200, "{body}");
    let f = json(&body);
    assert_eq!(f["isFinal"], true);
    assert_eq!(f["lastRevision"], rev);
    let name = f["snapName"].as_str().unwrap().to_owned();
    assert!(name.ends_with(".gz.final"), "{name}");
    assert_eq!(
        json(&sc.http("GET", "/snapshot/full?final=true").1)["snapName"],
        name,
        "skipped: nothing changed"
    );
    let latest = json(&sc.http("GET", "/snapshot/latest").1);
    assert_eq!(latest["fullSnapshot"]["snapName"], name);
    assert!(latest["deltaSnapshots"].is_null(), "{latest}");

    // Metrics: Prometheus text with every metric of the original.
    let (code, text) = sc.http("GET", "/metrics");
    assert_eq!(code, 200);
    let types = parse_prometheus(&text);
    for m in METRICS {
        assert!(types.iter().any(|(n, _)| n == m), "{m} missing");
    }
    assert!(types.contains(&("etcdbr_snapshotter_failure".into(), "counter".into())));
    assert!(types.contains(&(
        "etcdbr_snapshot_duration_seconds".into(),
        "histogram".into()
    )));
    assert!(
        text.contains("etcdbr_snapshot_latest_revision{kind=\"Full\"} ")
            && text.contains("etcdbr_cluster_size 1"),
        "{text}"
    );

    // /config: this member's name and URLs, a new single-member cluster.
    let (code, cfg) = sc.http("GET", "/config");
    assert_eq!(code, 200, "{cfg}");
    assert!(
        cfg.contains("name: m0") && cfg.contains("initial-cluster-state: new"),
        "{cfg}"
    );
    assert!(
        cfg.contains(&format!("initial-advertise-peer-urls: {}", etcd.peer_url)),
        "{cfg}"
    );
    assert!(home.path().join("etcd.conf.yaml").exists());

    // SIGTERM: the writes just made are saved as a last delta.
    c.put("/last", "x", None).await.unwrap();
    let rev = etcd.revision().await;
    assert!(sc.terminate(), "{}", sc.log());
    assert_eq!(
        newest_revision(home.path()),
        rev,
        "{:?}",
        backups(home.path())
    );
}

async fn leader_index(members: &[Etcd], alive: &[bool]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for (i, m) in members.iter().enumerate().filter(|(i, _)| alive[*i]) {
            if let Ok(mut c) = m.client().await
                && let Ok(st) = c.status().await
                && st.header().map(|h| h.member_id()) == Some(st.leader())
            {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "no etcd leader");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_one_backs_up_and_a_new_leader_takes_over() {
    let mut members = Etcd::start_cluster(EtcdVersion::V35, 3).await;
    let home = tempfile::tempdir().unwrap();
    // Every sidecar on the same port, each on its member's address (as in pods).
    let port = testkit::free_port();
    let sidecars: Vec<Sidecar> = members
        .iter()
        .enumerate()
        .map(|(i, m)| Sidecar::start(home.path(), &format!("m{i}"), m, port, &[]))
        .collect();
    let mut alive = vec![true; 3];
    let leader = leader_index(&members, &alive).await;
    sidecars[leader].wait_health(200).await;
    wait_backup(home.path(), 1).await;
    let mut c = members[leader].client().await.unwrap();
    for i in 0..50 {
        c.put(format!("/a/{i}"), "v", None).await.unwrap();
    }
    let rev = members[leader].revision().await;
    wait_backup(home.path(), rev).await;
    for (i, s) in sidecars.iter().enumerate() {
        let saved = s.log().matches("Successfully saved").count();
        if i == leader {
            assert!(
                saved >= 2,
                "the leader's sidecar saved {saved}:\n{}",
                s.log()
            );
        } else {
            assert_eq!(saved, 0, "follower m{i} uploaded:\n{}", s.log());
            assert_eq!(s.http("GET", "/healthz").0, 503);
        }
    }
    // A follower forwards snapshot requests to the leader's sidecar.
    let follower = (leader + 1) % 3;
    let (code, body) = sidecars[follower].http("GET", "/snapshot/latest");
    assert_eq!(code, 200, "{body}\n{}", sidecars[follower].log());
    assert!(json(&body)["fullSnapshot"]["snapName"].is_string());
    c.put("/fwd", "v", None).await.unwrap();
    let (code, body) = sidecars[follower].http("POST", "/snapshot/delta");
    assert_eq!(code, 200, "{body}");

    // The leader's etcd dies: another member leads, its sidecar takes over.
    members[leader].kill();
    alive[leader] = false;
    let new_leader = leader_index(&members, &alive).await;
    assert_ne!(new_leader, leader);
    sidecars[new_leader].wait_health(200).await;
    let mut c = members[new_leader].client().await.unwrap();
    for i in 0..50 {
        c.put(format!("/b/{i}"), "v", None).await.unwrap();
    }
    let rev = members[new_leader].revision().await;
    wait_backup(home.path(), rev).await;
    assert!(
        sidecars[new_leader]
            .log()
            .contains("Successfully saved delta snapshot"),
        "{}",
        sidecars[new_leader].log()
    );

    // The chain restores (a gap would fail it) to the cluster's state.
    let data = home.path().join("restored");
    let peer = format!("http://127.0.0.1:{}", testkit::free_port());
    let out = common::restore(home.path(), &data, &peer, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut r = Etcd::on_data_dir(EtcdVersion::V35, &data, &["--initial-cluster-token=tok"]);
    r.set_member("r1", &peer);
    r.restart().await;
    assert_eq!(r.revision().await, rev);
    let mut rc = r.client().await.unwrap();
    assert_eq!(
        rc.hash_kv(rev).await.unwrap().hash(),
        c.hash_kv(rev).await.unwrap().hash()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_config_file_and_secondary_sync() {
    let etcd = Etcd::start(EtcdVersion::V35).await;
    let mut c = etcd.client().await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let certs = testkit::TestCerts::generate();
    // The file sets the secondary sync and a port; the command line's port wins.
    let config = home.path().join("server.yaml");
    std::fs::write(
        &config,
        "serverConfig:\n  port: 1\nsecondarySnapstoreConfig:\n  StoreConfig:\n    provider: Local\n    container: second\n  \
         backupSyncEnabled: true\n  syncPeriod: 2s\nrestorationConfig:\n  restoreDataDir: ignored\n",
    )
    .unwrap();
    let port = testkit::free_port();
    let sc = Sidecar::start(
        home.path(),
        "m0",
        &etcd,
        port,
        &[
            "--config-file",
            config.to_str().unwrap(),
            "--server-cert",
            certs.server_cert.to_str().unwrap(),
            "--server-key",
            certs.server_key.to_str().unwrap(),
        ],
    );
    let https = |path: &str, ca: bool| {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-i", "-m", "10"]);
        if ca {
            cmd.arg("--cacert").arg(&certs.ca);
        }
        let out = cmd
            .arg(format!("https://127.0.0.1:{port}{path}"))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !https("/healthz", true).1.starts_with("HTTP/1.1 200") {
        assert!(Instant::now() < deadline, "{}", sc.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, resp) = https("/healthz", true);
    assert!(
        resp.to_ascii_lowercase()
            .contains("strict-transport-security"),
        "{resp}"
    );
    assert!(
        !https("/healthz", false).0,
        "an unknown CA is refused by the client"
    );
    assert_eq!(
        sc.http("GET", "/healthz").0,
        0,
        "no plain HTTP on the TLS port"
    );
    assert!(
        sc.log().contains("restoreDataDir is ignored"),
        "{}",
        sc.log()
    );

    for i in 0..10 {
        c.put(format!("/s/{i}"), "v", None).await.unwrap();
    }
    let rev = etcd.revision().await;
    wait_backup(home.path(), rev).await;
    let second = home.path().join("second/v2");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let primary = backups(home.path());
        let copied = common::names(&second);
        if !primary.is_empty() && primary.iter().all(|n| copied.contains(n)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "secondary {copied:?} lags primary {primary:?}:\n{}",
            sc.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_lost_its_data_is_replaced_by_a_learner_and_promoted() {
    let mut members = Etcd::start_cluster(EtcdVersion::V35, 3).await;
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("etcd.conf.yaml.in"),
        common::cluster_conf(&members),
    )
    .unwrap();
    let port = testkit::free_port();
    let sidecars: Vec<Sidecar> = members
        .iter()
        .enumerate()
        .map(|(i, m)| Sidecar::start(home.path(), &format!("m{i}"), m, port, &[]))
        .collect();
    let leader = leader_index(&members, &[true; 3]).await;
    let mut c = members[leader].client().await.unwrap();
    for i in 0..200 {
        c.put(format!("/k/{i:03}"), format!("v{i}"), None)
            .await
            .unwrap();
    }
    let rev = members[leader].revision().await;
    sidecars[leader].wait_health(200).await;
    wait_backup(home.path(), rev).await;

    // A follower's volume is lost: its etcd stops and its data dir is gone.
    let f = (leader + 1) % 3;
    members[f].kill();
    sidecars[f].wait_serving().await;
    let (code, _) = sidecars[f].http("GET", "/initialization/start?mode=sanity");
    assert_eq!(code, 200);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, status) = sidecars[f].http("GET", "/initialization/status");
        if status == "Successful" {
            break;
        }
        assert!(
            status != "Failed" && Instant::now() < deadline,
            "initialization {status}:\n{}",
            sidecars[f].log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Not restored from the store: removed and added back as a learner, data dir empty.
    let data = home.path().join(format!("m{f}-restored"));
    assert!(!data.exists(), "{}", sidecars[f].log());
    let list = c.member_list().await.unwrap();
    let me = list
        .members()
        .iter()
        .find(|m| m.peer_urls().contains(&members[f].peer_url))
        .unwrap_or_else(|| panic!("not re-added: {:?}\n{}", list.members(), sidecars[f].log()));
    assert!(me.is_learner(), "{me:?}");

    // etcd joins the existing cluster as that learner; the sidecar promotes it once in sync.
    members[f].start_on(&data, &["--initial-cluster-state=existing"]);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let list = c.member_list().await.unwrap();
        let m = list
            .members()
            .iter()
            .find(|m| m.peer_urls().contains(&members[f].peer_url))
            .unwrap();
        if !m.is_learner() && m.name() == format!("m{f}") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never promoted: {m:?}\n{}\netcd:\n{}",
            sidecars[f].log(),
            members[f].log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        sidecars[f].log().contains("has been promoted"),
        "{}",
        sidecars[f].log()
    );
    // The replaced member serves the cluster's data.
    let mut fc = members[f].client().await.unwrap();
    let got = fc.get("/k/199", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"v199");
    // Once it has applied the cluster's revision, its history hashes the same.
    let now = members[leader].revision().await;
    let want = c.hash_kv(now).await.unwrap().hash();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match fc.hash_kv(now).await {
            Ok(h) if h.hash() == want => break,
            other => assert!(
                Instant::now() < deadline,
                "hashkv at {now}: {other:?}, want {want}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_member_is_added_as_a_learner_on_scale_up() {
    let members = Etcd::start_cluster(EtcdVersion::V35, 3).await;
    let home = tempfile::tempdir().unwrap();
    let mut new = Etcd::new_member(&members, home.path());
    let mut conf = common::cluster_conf(&members);
    // The configuration druid renders for four replicas.
    conf = conf.replace(
        &format!("m2={}", members[2].peer_url),
        &format!("m2={},m3={}", members[2].peer_url, new.peer_url),
    );
    conf = conf.replace(
        "advertise-client-urls:\n",
        &format!("  m3:\n  - {}\nadvertise-client-urls:\n", new.peer_url),
    );
    conf.push_str(&format!("  m3:\n  - {}\n", new.client_url));
    std::fs::write(home.path().join("etcd.conf.yaml.in"), conf).unwrap();
    let sc = Sidecar::start(home.path(), "m3", &new, testkit::free_port(), &[]);
    // Whatever the data dir holds is wiped: the learner copies the data from the leader.
    let data = home.path().join("m3-restored");
    std::fs::create_dir_all(data.join("member/wal")).unwrap();
    sc.wait_serving().await;
    assert_eq!(sc.http("GET", "/initialization/start").0, 200);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, status) = sc.http("GET", "/initialization/status");
        if status == "Successful" {
            break;
        }
        assert!(
            status != "Failed" && Instant::now() < deadline,
            "initialization {status}:\n{}",
            sc.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(!data.exists(), "{}", sc.log());
    let mut c = members[0].client().await.unwrap();
    let list = c.member_list().await.unwrap();
    assert_eq!(list.members().len(), 4, "{:?}", list.members());
    assert!(
        list.members()
            .iter()
            .any(|m| m.is_learner() && m.peer_urls().contains(&new.peer_url)),
        "{:?}\n{}",
        list.members(),
        sc.log()
    );
    new.start_on(&data, &["--initial-cluster-state=existing"]);
    let deadline = Instant::now() + Duration::from_secs(90);
    while !c
        .member_list()
        .await
        .unwrap()
        .members()
        .iter()
        .any(|m| m.name() == "m3" && !m.is_learner())
    {
        assert!(
            Instant::now() < deadline,
            "never promoted:\n{}\netcd:\n{}",
            sc.log(),
            new.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_peer_url_is_applied_and_etcd_wrapper_asked_to_restart_etcd() {
    use std::io::{BufRead, BufReader, Write};
    let etcd = Etcd::start(EtcdVersion::V35).await;
    let home = tempfile::tempdir().unwrap();
    // etcd-wrapper listens on port 9095 of etcd's host.
    let wrapper = std::net::TcpListener::bind("127.0.0.1:9095")
        .expect("port 9095 (etcd-wrapper's) must be free on 127.0.0.1 for this test");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((mut conn, _)) = wrapper.accept() {
            let mut line = String::new();
            let _ = BufReader::new(&conn).read_line(&mut line);
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
            let _ = tx.send(line);
        }
    });
    let new_peer = format!("http://127.0.0.1:{}", testkit::free_port());
    std::fs::write(
        home.path().join("etcd.conf.yaml.in"),
        format!(
            "name: placeholder\ninitial-cluster: default={new_peer}\n\
             initial-advertise-peer-urls:\n  default:\n  - {new_peer}\n\
             advertise-client-urls:\n  default:\n  - {}\n",
            etcd.client_url
        ),
    )
    .unwrap();
    let sc = Sidecar::start(
        home.path(),
        "default",
        &etcd,
        testkit::free_port(),
        &["--use-etcd-wrapper"],
    );
    let request = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("etcd-wrapper was not called:\n{}", sc.log()));
    assert!(request.starts_with("POST /stop "), "{request}");
    let mut c = etcd.client().await.unwrap();
    let list = c.member_list().await.unwrap();
    assert_eq!(list.members()[0].peer_urls(), [new_peer], "{}", sc.log());
    assert!(
        sc.log().contains("peerURLs found to be changed"),
        "{}",
        sc.log()
    );
}

//! `etcdbrctl server` against real etcd, one member: the flow through the HTTP API, every path
//! and status code, `/metrics` parsed, `/config` rendered, HTTPS, the config file, secondary
//! sync, and a changed peer URL applied at start-up. Clusters are in `cluster.rs`.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::sidecar::{Sidecar, json};
use crate::common::{backups, latest_backup, wait_for_backup};
use testkit::{Etcd, EtcdVersion};

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
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_start_time_seconds",
    "process_max_fds",
    "process_open_fds",
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
    crate::common::sidecar::single_member_conf(home.path(), &etcd);
    let mut sc = Sidecar::start(home.path(), "m0", &etcd, testkit::free_port(), &[]);
    sc.wait_health(200).await;
    assert_eq!(json(&sc.http("GET", "/healthz").1)["health"], true);
    wait_for_backup(home.path(), 1).await;

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
    let (code, body) = sc.http("GET", "/snapshot/full?final=maybe");
    assert_eq!(code, 400);
    assert!(
        json(&body)["error"]
            .as_str()
            .unwrap()
            .contains("final=\"maybe\" is not a boolean"),
        "{body}"
    );
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
        latest_backup(home.path()),
        rev,
        "{:?}",
        backups(home.path())
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
    wait_for_backup(home.path(), rev).await;
    let second = home.path().join("second/v2");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let primary = backups(home.path());
        let copied = crate::common::names(&second);
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

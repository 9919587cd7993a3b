//! etcd-wrapper's start-up protocol, as it calls the sidecar (`internal/bootstrap` and
//! `internal/brclient` of gardener/etcd-wrapper): over HTTPS without a client certificate,
//! `GET /initialization/status` every second until it says `New`, `GET
//! /initialization/start?mode=full`, the status polled until `Successful`, then `GET /config`,
//! which must be an etcd configuration etcd itself starts from (string URLs, every other key of
//! the mounted file passed through). Then the calls etcd-druid makes: `/snapshot/full` by GET and
//! POST (200 and the snapshot's JSON) and `/snapshot/delta` (`null` when there is nothing new).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::EtcdVersion;

use crate::common::bin;

const MEMBER: &str = "etcd-main-0";

fn https(ca: &std::path::Path, method: &str, url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-m",
            "30",
            "-X",
            method,
            "-w",
            "\n%{http_code}",
            "--cacert",
        ])
        .arg(ca)
        .arg(url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

async fn etcd_wrapper_protocol(v: EtcdVersion) {
    let home = tempfile::tempdir().unwrap();
    let certs = testkit::TestCerts::generate();
    let (client, peer) = (testkit::free_port(), testkit::free_port());
    let (client_url, peer_url) = (
        format!("http://127.0.0.1:{client}"),
        format!("http://127.0.0.1:{peer}"),
    );
    let data_dir = home.path().join("var/etcd/data/new.etcd");
    // The volume is mounted (the data dir inside it does not exist yet).
    std::fs::create_dir_all(data_dir.parent().unwrap()).unwrap();
    // The config map as etcd-druid writes it (URLs as maps; keys the sidecar does not know).
    std::fs::write(
        home.path().join("etcd.conf.yaml"),
        format!(
            "name: etcd-config\ndata-dir: {data}\nmetrics: basic\nsnapshot-count: 75000\nenable-v2: false\n\
             quota-backend-bytes: 8589934592\nlisten-client-urls: {client_url}\nlisten-peer-urls: {peer_url}\n\
             initial-cluster-token: etcd-cluster\ninitial-cluster-state: new\nauto-compaction-mode: periodic\n\
             auto-compaction-retention: \"30m\"\nnext-cluster-version-compatible: true\n\
             peer-transport-security:\n  skip-client-san-verification: true\n\
             initial-cluster: {MEMBER}={peer_url}\n\
             initial-advertise-peer-urls:\n  {MEMBER}:\n  - {peer_url}\nadvertise-client-urls:\n  {MEMBER}:\n  - {client_url}\n",
            data = data_dir.display()
        ),
    )
    .unwrap();
    let port = testkit::free_port();
    let log = home.path().join("sidecar.log");
    let mut sidecar = bin()
        .env_clear()
        .env("HOME", home.path())
        .env("POD_NAME", MEMBER)
        .env("POD_NAMESPACE", "shoot--dev")
        .env("STORAGE_CONTAINER", "bucket")
        .env("ETCD_CONF", home.path().join("etcd.conf.yaml"))
        .args([
            "server",
            "--storage-provider=Local",
            "--store-prefix=etcd-main",
        ])
        .arg(format!("--server-port={port}"))
        .arg(format!("--endpoints={client_url}"))
        .arg(format!("--data-dir={}", data_dir.display()))
        .arg(format!(
            "--restoration-temp-snapshots-dir={}",
            home.path().join("rtmp").display()
        ))
        .arg(format!(
            "--snapstore-temp-directory={}",
            home.path().join("tmp").display()
        ))
        .arg(format!("--server-cert={}", certs.server_cert.display()))
        .arg(format!("--server-key={}", certs.server_key.display()))
        .args([
            "--use-etcd-wrapper=true",
            "--delta-snapshot-period=1s",
            "--schedule=0 0 1 1 *",
            "--reelection-period=2s",
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    let url = |p: &str| format!("https://127.0.0.1:{port}{p}");

    // The wrapper: status every second until New, start, then until Successful.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, body) = https(&certs.ca, "GET", &url("/initialization/status"));
        if code == 200 && body == "New" {
            break;
        }
        assert!(
            sidecar.try_wait().unwrap().is_none(),
            "the sidecar exited:\n{}",
            text()
        );
        assert!(
            Instant::now() < deadline,
            "status {code} {body:?}:\n{}",
            text()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (code, body) = https(&certs.ca, "GET", &url("/initialization/start?mode=full"));
    assert_eq!(code, 200, "{body}\n{}", text());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, body) = https(&certs.ca, "GET", &url("/initialization/status"));
        assert!([200, 201, 202].contains(&code), "{code} {body}");
        assert_ne!(body, "Failed", "{}", text());
        if body == "Successful" {
            break;
        }
        assert!(Instant::now() < deadline, "{}", text());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (code, config) = https(&certs.ca, "GET", &url("/config"));
    assert_eq!(code, 200, "{config}");
    let parsed: Value = serde_saphyr::from_str(&config).unwrap();
    assert_eq!(parsed["name"], MEMBER);
    assert_eq!(
        parsed["initial-advertise-peer-urls"],
        peer_url.as_str(),
        "a string"
    );
    assert_eq!(
        parsed["advertise-client-urls"],
        client_url.as_str(),
        "a string"
    );
    assert_eq!(parsed["metrics"], "basic", "unknown keys pass through");
    assert_eq!(parsed["next-cluster-version-compatible"], true);
    assert_eq!(
        parsed["peer-transport-security"]["skip-client-san-verification"],
        true
    );
    assert_eq!(parsed["quota-backend-bytes"], 8_589_934_592_i64);

    // etcd starts from it, as etcd-wrapper starts it.
    let rendered = home.path().join("rendered.conf.yaml");
    std::fs::write(&rendered, &config).unwrap();
    let mut etcd = Command::new(v.binary("etcd"))
        .arg("--config-file")
        .arg(&rendered)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(home.path().join("etcd.log")).unwrap())
        .spawn()
        .unwrap();
    let mut c = None;
    for _ in 0..100 {
        if let Ok(mut cl) = testkit::etcd_client::Client::connect([client_url.as_str()], None).await
            && cl.status().await.is_ok()
        {
            c = Some(cl);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut c = c.unwrap_or_else(|| {
        panic!(
            "etcd did not start from /config:\n{}",
            std::fs::read_to_string(home.path().join("etcd.log")).unwrap_or_default()
        )
    });
    for i in 0..5 {
        c.put(format!("/w/{i}"), "v", None).await.unwrap();
    }

    // etcd-druid's calls.
    let deadline = Instant::now() + Duration::from_secs(60);
    while https(&certs.ca, "GET", &url("/healthz")).0 != 200 {
        assert!(Instant::now() < deadline, "{}", text());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for method in ["GET", "POST"] {
        let (code, body) = https(&certs.ca, method, &url("/snapshot/full"));
        assert_eq!(code, 200, "{method} /snapshot/full: {body}\n{}", text());
        let s: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(s["kind"], "Full", "{body}");
        assert_eq!(s["lastRevision"], 6, "{body}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = https(&certs.ca, "POST", &url("/snapshot/delta"));
        assert_eq!(code, 200, "{body}");
        if body == "null" {
            break;
        }
        assert!(Instant::now() < deadline, "{body}");
    }
    let _ = Command::new("kill")
        .args(["-TERM", &sidecar.id().to_string()])
        .status();
    assert!(sidecar.wait().unwrap().success(), "{}", text());
    let _ = etcd.kill();
    let _ = etcd.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_wrapper_protocol_etcd34() {
    etcd_wrapper_protocol(EtcdVersion::V34).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_wrapper_protocol_etcd35() {
    etcd_wrapper_protocol(EtcdVersion::V35).await;
}

//! Who may call the sidecar's HTTP API, and how much: a bearer token (401/403 with a JSON error,
//! `/healthz` open, `/metrics` optionally, the token never logged, a rotated token picked up),
//! client certificates over HTTPS, size limits on queries and bodies, and one snapshot request
//! of a kind at a time. curl is the client throughout.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::sidecar::Sidecar;
use crate::common::*;
use testkit::{Etcd, EtcdVersion};

/// `curl` with `args`, then the URL: (status code, headers and body).
fn curl(args: &[&str], url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-i", "-m", "60", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_token_guards_every_endpoint_but_healthz() {
    let etcd = Etcd::start(EtcdVersion::V35).await;
    let mut c = etcd.client().await.unwrap();
    // A db large enough that a full snapshot takes a while: concurrent requests overlap.
    for i in 0..2000 {
        c.put(format!("/k{i:05}"), vec![b'x'; 10_000], None)
            .await
            .unwrap();
    }
    let home = tempfile::tempdir().unwrap();
    crate::common::sidecar::single_member_conf(home.path(), &etcd);
    let token = home.path().join("token");
    std::fs::write(&token, "tok-4f1d9c\n").unwrap();
    let sc = Sidecar::start(
        home.path(),
        "m0",
        &etcd,
        testkit::free_port(),
        &["--server-auth-token-file", token.to_str().unwrap()],
    );
    sc.wait_health(200).await;
    let bearer = "Authorization: Bearer tok-4f1d9c";

    let (code, resp) = curl(&[], &sc.url("/snapshot/latest"));
    assert_eq!(code, 401, "{resp}");
    assert!(
        resp.contains("\"error\":") && resp.contains("bearer token"),
        "{resp}"
    );
    assert!(
        resp.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{resp}"
    );
    let (code, resp) = curl(
        &["-H", "Authorization: Bearer nope"],
        &sc.url("/snapshot/latest"),
    );
    assert_eq!(code, 403, "{resp}");
    assert_eq!(curl(&["-H", bearer], &sc.url("/snapshot/latest")).0, 200);
    for path in [
        "/metrics",
        "/config",
        "/initialization/status",
        "/snapshot/full",
        "/nope",
    ] {
        assert_eq!(curl(&[], &sc.url(path)).0, 401, "{path}");
    }
    assert_eq!(curl(&["-H", bearer], &sc.url("/metrics")).0, 200);
    assert_eq!(curl(&[], &sc.url("/healthz")).0, 200, "/healthz stays open");

    // Limits: a long query, a large body.
    let long = format!("/snapshot/latest?x={}", "a".repeat(3000));
    assert_eq!(curl(&["-H", bearer], &sc.url(&long)).0, 414);
    let big = home.path().join("big");
    std::fs::write(&big, vec![b'b'; 100_000]).unwrap();
    let (code, resp) = curl(
        &[
            "-H",
            bearer,
            "-X",
            "POST",
            "--data-binary",
            &format!("@{}", big.display()),
        ],
        &sc.url("/snapshot/latest"),
    );
    assert_eq!(code, 413, "{resp}");

    // Twenty concurrent full snapshot requests: one runs, the others are told to retry.
    let before = backups(home.path())
        .iter()
        .filter(|n| n.starts_with("Full-"))
        .count();
    let url = sc.url("/snapshot/full");
    let answers: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|_| s.spawn(|| curl(&["-H", bearer, "-X", "POST"], &url).0))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = answers.iter().filter(|c| **c == 200).count();
    let busy = answers.iter().filter(|c| **c == 429).count();
    assert_eq!(ok + busy, 20, "{answers:?}");
    assert!(ok >= 1 && busy >= 1, "{answers:?}");
    let after = backups(home.path())
        .iter()
        .filter(|n| n.starts_with("Full-"))
        .count();
    assert!(
        after - before <= ok,
        "{} snapshots for {ok} accepted requests",
        after - before
    );

    // Rotation: the new token is taken, the old one refused.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&token, "tok-rotated\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while curl(
        &["-H", "Authorization: Bearer tok-rotated"],
        &sc.url("/snapshot/latest"),
    )
    .0 != 200
    {
        assert!(
            Instant::now() < deadline,
            "the rotated token is never accepted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(curl(&["-H", bearer], &sc.url("/snapshot/latest")).0, 403);
    let log = sc.log();
    assert!(
        !log.contains("tok-4f1d9c") && !log.contains("tok-rotated"),
        "a token in the log"
    );
    assert!(
        log.contains("may be read by others"),
        "a 0644 token file is warned about"
    );
    assert!(
        log.contains("Refused GET /snapshot/latest"),
        "refusals are logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_and_an_open_metrics_endpoint() {
    let etcd = Etcd::start(EtcdVersion::V35).await;
    let home = tempfile::tempdir().unwrap();
    crate::common::sidecar::single_member_conf(home.path(), &etcd);
    let certs = testkit::TestCerts::generate();
    let token = home.path().join("token");
    std::fs::write(&token, "t0k").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let port = testkit::free_port();
    let sc = Sidecar::start(
        home.path(),
        "m0",
        &etcd,
        port,
        &[
            "--server-cert",
            certs.server_cert.to_str().unwrap(),
            "--server-key",
            certs.server_key.to_str().unwrap(),
            "--server-client-ca",
            certs.ca.to_str().unwrap(),
            "--server-auth-token-file",
            token.to_str().unwrap(),
            "--server-auth-skip-metrics",
        ],
    );
    let url = |p: &str| format!("https://127.0.0.1:{port}{p}");
    let ca = certs.ca.to_str().unwrap();
    let client = [
        "--cacert",
        ca,
        "--cert",
        certs.client_cert.to_str().unwrap(),
        "--key",
        certs.client_key.to_str().unwrap(),
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    while curl(&client, &url("/healthz")).0 != 200 {
        assert!(Instant::now() < deadline, "{}", sc.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Without a client certificate the handshake fails: no HTTP answer at all.
    assert_eq!(curl(&["--cacert", ca], &url("/healthz")).0, 0);
    // With one, the token is still needed, but /metrics is open.
    assert_eq!(curl(&client, &url("/metrics")).0, 200);
    assert_eq!(curl(&client, &url("/snapshot/latest")).0, 401);
    let mut with_token = client.to_vec();
    with_token.extend(["-H", "Authorization: Bearer t0k"]);
    assert_eq!(curl(&with_token, &url("/snapshot/latest")).0, 200);
    assert!(
        !sc.log().contains("may be read by others"),
        "a 0600 file is not warned about"
    );
}

#[test]
fn unusable_auth_settings_are_refused_at_start() {
    let home = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        bin()
            .env("HOME", home.path())
            .args(["server", "--storage-provider=Local", "--store-container=b"])
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run(&["--server-auth-token-file", "/nonexistent/token"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("--server-auth-token-file /nonexistent/token: no such file")
    );
    let ca = home.path().join("ca.pem");
    std::fs::write(&ca, "x").unwrap();
    let o = run(&["--server-client-ca", ca.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("give --server-cert and --server-key too"));
}

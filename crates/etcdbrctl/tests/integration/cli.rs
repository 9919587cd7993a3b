//! The `etcdbrctl` binary: flags, errors, and a real backup run ended by SIGTERM.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use testkit::{Etcd, EtcdVersion};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_etcdbrctl"))
}

fn run(args: &[&str]) -> Output {
    bin()
        .args(args)
        .env("HOME", std::env::temp_dir())
        .output()
        .unwrap()
}

/// Every flag the original's `snapshot` registers (reference §1.2-1.6).
const SNAPSHOT_FLAGS: &[&str] = &[
    "--endpoints",
    "--service-endpoints",
    "--etcd-username",
    "--etcd-password",
    "--etcd-connection-timeout",
    "--etcd-snapshot-timeout",
    "--etcd-defrag-timeout",
    "--insecure-transport",
    "--insecure-skip-tls-verify",
    "--cert",
    "--key",
    "--cacert",
    "--storage-provider",
    "--store-container",
    "--store-endpoint-override",
    "--store-prefix",
    "--max-parallel-chunk-uploads",
    "--min-chunk-size",
    "--snapstore-temp-directory",
    "--schedule",
    "--delta-snapshot-period",
    "--delta-snapshot-memory-limit",
    "--garbage-collection-period",
    "--garbage-collection-policy",
    "--max-backups",
    "--delta-snapshot-retention-period",
    "--compress-snapshots",
    "--compression-policy",
    "--backoff-multiplier",
    "--backoff-attempt-limit",
    "--backoff-threshold-time",
    "--defragmentation-schedule",
];

#[test]
fn snapshot_help_lists_every_flag_of_the_original_with_its_default() {
    let out = run(&["snapshot", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in SNAPSHOT_FLAGS {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    for default in [
        "http://127.0.0.1:2379",
        "[default: 30s]",
        "[default: 15m0s]",
        "[default: 8m0s]",
        "[default: 5242880]",
        "[default: /tmp]",
        "\"0 */1 * * *\"",
        "[default: 20s]",
        "[default: 10485760]",
        "[default: 1m0s]",
        "[default: Exponential]",
        "[default: 7]",
        "[default: 0s]",
        "[default: gzip]",
        "[default: 2m8s]",
        "\"0 0 */3 * *\"",
    ] {
        assert!(help.contains(default), "--help lacks default {default}");
    }
    for short in ["-e, --endpoints", "-s, --schedule", "-m, --max-backups"] {
        assert!(help.contains(short), "--help lacks {short}");
    }
}

#[test]
fn version_and_subcommands() {
    let out = run(&["--version"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("etcdbrctl Version: "));
    let out = run(&["-v"]);
    assert!(out.status.success());
    let out = run(&["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for sub in [
        "snapshot",
        "restore",
        "compact",
        "initialize",
        "server",
        "copy",
    ] {
        assert!(help.contains(sub), "{sub} missing from --help");
    }
    let out = run(&["server", "--help"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--server-port"));
}

fn fails_with(args: &[&str], needles: &[&str]) {
    let out = run(args);
    assert!(!out.status.success(), "{args:?} succeeded");
    let err = String::from_utf8_lossy(&out.stderr);
    for n in needles {
        assert!(err.contains(n), "{args:?}: stderr lacks {n:?}:\n{err}");
    }
    assert!(!err.contains("panicked"), "{args:?} panicked:\n{err}");
}

#[test]
fn bad_flags_fail_with_a_message_naming_them() {
    fails_with(
        &["snapshot", "--delta-snapshot-period", "20"],
        &["--delta-snapshot-period", "invalid duration"],
    );
    fails_with(
        &["snapshot", "--etcd-connection-timeout=-1s"],
        &["--etcd-connection-timeout", "negative"],
    );
    fails_with(
        &["snapshot", "--schedule", "every hour"],
        &["--schedule", "invalid cron schedule"],
    );
    fails_with(
        &["snapshot", "--defragmentation-schedule", "0 0 */3 * * *"],
        &["expected 5 fields"],
    );
    fails_with(
        &["snapshot", "--garbage-collection-policy", "Forever"],
        &["Exponential or LimitBased"],
    );
    fails_with(
        &["snapshot", "--compress-snapshots=maybe"],
        &["--compress-snapshots", "invalid boolean"],
    );
    fails_with(&["snapshot", "--max-backups=-1"], &["--max-backups"]);
    fails_with(
        &["snapshot", "--compression-policy", "xz"],
        &["--compression-policy", "gzip, zlib, lzw or zstd"],
    );
    fails_with(
        &["snapshot", "--storage-provider", "s3"],
        &["unsupported storage provider \"s3\"", "Local, S3"],
    );
    fails_with(
        &["snapshot", "--storage-provider", "GCS"],
        &["--store-container", "STORAGE_CONTAINER"],
    );
    fails_with(
        &["snapshot", "--min-chunk-size", "1000"],
        &["--min-chunk-size", "5 MiB"],
    );
    fails_with(
        &["snapshot", "--max-parallel-chunk-uploads", "0"],
        &["--max-parallel-chunk-uploads"],
    );
    fails_with(
        &[
            "snapshot",
            "--garbage-collection-policy",
            "LimitBased",
            "--max-backups",
            "0",
        ],
        &["--max-backups"],
    );
    fails_with(
        &["snapshot", "--etcd-snapshot-timeout", "10s"],
        &["--etcd-snapshot-timeout", "--etcd-connection-timeout"],
    );
    fails_with(&["snapshot", "--cert", "/x.pem"], &["--cert and --key"]);
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_backs_up_and_flushes_pending_events_on_sigterm() {
    let etcd = Etcd::start(EtcdVersion::V34).await;
    let mut c = etcd.client().await.unwrap();
    for i in 0..50 {
        c.put(format!("before-{i}"), "x", None).await.unwrap();
    }
    let home = tempfile::tempdir().unwrap();
    let child = bin()
        .env("HOME", home.path())
        .args([
            "snapshot",
            "--store-container=backups",
            "--store-prefix=etcd-main",
        ])
        .args([
            "--endpoints",
            &etcd.client_url,
            "--delta-snapshot-period=10m",
            "--garbage-collection-period=0s",
        ])
        .args([
            "--snapstore-temp-directory",
            home.path().join("tmp").to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let v2 = home.path().join("backups/etcd-main/v2");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !files(&v2).iter().any(|f| f.starts_with("Full-")) {
        assert!(Instant::now() < deadline, "no full snapshot written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let full = files(&v2)
        .into_iter()
        .find(|f| f.starts_with("Full-"))
        .unwrap();
    assert_eq!(
        full,
        format!(
            "Full-00000000-{:08}-{}.gz",
            51,
            full.rsplit('-').next().unwrap().trim_end_matches(".gz")
        )
    );
    tokio::time::sleep(Duration::from_millis(500)).await; // the watch is open
    for i in 0..30 {
        c.put(format!("after-{i}"), "y", None).await.unwrap();
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit status {:?}; log:\n{log}",
        out.status
    );
    assert!(
        log.contains("Applied watch on etcd from revision: 52"),
        "{log}"
    );
    let deltas: Vec<String> = files(&v2)
        .into_iter()
        .filter(|f| f.starts_with("Incr-"))
        .collect();
    assert_eq!(deltas.len(), 1, "{deltas:?}");
    assert!(
        deltas[0].starts_with("Incr-00000052-00000081-"),
        "{deltas:?}"
    );
    assert!(
        files(&v2).iter().all(|f| !f.starts_with('.')),
        "no temp files left"
    );
}

#[test]
fn an_unusable_temp_directory_is_an_error_at_start() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let out = bin()
        .env("HOME", home.path())
        .args(["snapshot", "--endpoints", "http://127.0.0.1:1"])
        .args(["--storage-provider=Local", "--store-container=b"])
        .arg("--snapstore-temp-directory")
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--snapstore-temp-directory") && err.contains("is not usable"),
        "{err}"
    );
}

#[test]
fn an_etcd_endpoint_that_does_not_resolve_is_named() {
    let home = tempfile::tempdir().unwrap();
    let log = home.path().join("log");
    let mut child = bin()
        .env("HOME", home.path())
        .args([
            "snapshot",
            "--endpoints",
            "http://no-such-host.invalid:2379",
        ])
        .args(["--storage-provider=Local", "--store-container=b"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let want = "cannot resolve the host of the etcd endpoint http://no-such-host.invalid:2379";
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains(want)
    {
        assert!(
            Instant::now() < deadline,
            "{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// `--log-format` and `--log-level` on every subcommand; JSON is one object a line with time,
/// level and message; a fatal error is printed once. (A flag clap cannot parse is a usage error,
/// printed by clap with the usage, exit code 2, not a log line.)
#[test]
fn every_subcommand_logs_as_asked_and_says_a_fatal_error_once() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    let data = data.to_str().unwrap();
    let cases: &[&[&str]] = &[
        &["restore", "--storage-provider=Local", "--data-dir", data],
        &["compact", "--storage-provider=Local", "--data-dir", data],
        &["initialize", "--storage-provider=S3", "--data-dir", data],
        &[
            "snapshot",
            "--endpoints=http://127.0.0.1:1",
            "--etcd-connection-timeout=1s",
            "--storage-provider=S3",
        ],
        &[
            "copy",
            "--storage-provider=Local",
            "--source-storage-provider=Local",
            "--max-parallel-copy-operations=0",
        ],
        &[
            "server",
            "--server-port=0",
            "--endpoints=http://127.0.0.1:1",
            "--k8s-heartbeat-duration=0s",
            "--enable-member-lease-renewal=true",
        ],
    ];
    for args in cases {
        let out = bin()
            .env_clear()
            .env("HOME", home.path())
            .args(*args)
            .args(["--log-format=json", "--log-level=debug"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<serde_json::Value> = stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {l}"))
            })
            .collect();
        assert!(!lines.is_empty(), "{args:?}");
        for l in &lines {
            assert!(
                l["time"].is_string() && l["level"].is_string() && l["message"].is_string(),
                "{l}"
            );
        }
        let errors: Vec<&serde_json::Value> =
            lines.iter().filter(|l| l["level"] == "error").collect();
        assert_eq!(errors.len(), 1, "{args:?}: the fatal error once:\n{stderr}");
        assert_eq!(
            lines.last().unwrap()["level"],
            "error",
            "{args:?}: last:\n{stderr}"
        );
        // Text: the error once, as the last line.
        let out = bin()
            .env_clear()
            .env("HOME", home.path())
            .args(*args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().last().unwrap_or_default();
        assert!(last.starts_with("error: "), "{args:?}:\n{stderr}");
        let message = last.trim_start_matches("error: ");
        assert_eq!(
            stderr.matches(message).count(),
            1,
            "{args:?} printed the error once:\n{stderr}"
        );
    }
}

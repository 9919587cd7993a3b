//! The fault matrix rows that need the real binary: `snapshot` and `server` killed (SIGKILL)
//! while an upload is under way, and the server telling, through `/healthz` and
//! `etcdbr_snapshot_required`, that backups are not being made while the store refuses them.
//! The store is moto behind a fault proxy; every case ends in a restore by the binary,
//! booted by a stock etcd and compared with the source.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::bin;
use crate::common::sidecar::http;
use snapstore::{Provider, SnapStore, StoreConfig};
use testkit::proxy::{Fault, FaultProxy, RequestHead};
use testkit::{Etcd, EtcdVersion};

/// moto behind a proxy that applies `fault` to the requests it picks while `on`.
struct Store {
    _server: testkit::stores::StoreServer,
    proxy: FaultProxy,
    bucket: String,
    creds: PathBuf,
    on: Arc<AtomicBool>,
    hits: Arc<AtomicUsize>,
    view: SnapStore,
}

async fn store(pick: impl Fn(&RequestHead) -> bool + Send + Sync + 'static, fault: Fault) -> Store {
    let server = testkit::stores::moto();
    let upstream = server.endpoint.trim_start_matches("http://").to_owned();
    let on = Arc::new(AtomicBool::new(false));
    let hits = Arc::new(AtomicUsize::new(0));
    let (on2, hits2) = (Arc::clone(&on), Arc::clone(&hits));
    let proxy = FaultProxy::start_with(&upstream, move |r| {
        (on2.load(Ordering::SeqCst) && pick(r)).then(|| {
            hits2.fetch_add(1, Ordering::SeqCst);
            fault
        })
    })
    .await;
    let creds = server.dir().join("aws.json");
    std::fs::write(
        &creds,
        r#"{"accessKeyID":"a","secretAccessKey":"b","region":"us-east-1","s3ForcePathStyle":true}"#,
    )
    .unwrap();
    let mut config = StoreConfig::default();
    config.provider = Some(Provider::S3);
    config.container.clone_from(&server.bucket);
    config.endpoint_override.clone_from(&server.endpoint);
    let env: BTreeMap<String, String> = [(
        "AWS_APPLICATION_CREDENTIALS_JSON".to_owned(),
        creds.display().to_string(),
    )]
    .into();
    let view = SnapStore::open_with_env(&config, env).unwrap();
    Store {
        bucket: server.bucket.clone(),
        _server: server,
        proxy,
        creds,
        on,
        hits,
        view,
    }
}

impl Store {
    /// The binary with this store's flags (through the proxy).
    fn command(&self, home: &Path, subcommand: &str) -> Command {
        let mut c = bin();
        c.env_clear()
            .env("HOME", home)
            .env("AWS_APPLICATION_CREDENTIALS_JSON", &self.creds)
            .args([subcommand, "--storage-provider=S3"])
            .arg(format!("--store-container={}", self.bucket))
            .arg(format!("--store-endpoint-override={}", self.proxy.endpoint));
        c
    }

    async fn last_revision(&self) -> i64 {
        self.view
            .latest_set()
            .await
            .ok()
            .and_then(|s| s.last_revision())
            .map_or(0, |r| r.get())
    }

    async fn wait_for(&self, rev: i64) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while self.last_revision().await < rev {
            assert!(
                Instant::now() < deadline,
                "the store never reached revision {rev}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn wait_hits(&self, n: usize, log: &Path) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.hits.load(Ordering::SeqCst) < n {
            assert!(
                Instant::now() < deadline,
                "no request was caught:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn spawn(mut c: Command, log: &Path) -> Child {
    c.stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn snapshotter_flags(home: &Path, etcd: &Etcd) -> Vec<String> {
    vec![
        "--endpoints".into(),
        etcd.client_url.clone(),
        "--schedule=0 0 1 1 *".into(),
        "--delta-snapshot-period=1s".into(),
        "--garbage-collection-period=0s".into(),
        "--snapstore-temp-directory".into(),
        home.join("tmp").display().to_string(),
    ]
}

fn terminate(mut child: Child) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}

/// Restores the store with the binary, boots etcd on it, compares with `source` at its revision.
async fn assert_restores(store: &Store, home: &Path, source: &Etcd) {
    let rev = source.revision().await;
    assert_eq!(
        store.last_revision().await,
        rev,
        "the backups reach etcd's revision"
    );
    store.on.store(false, Ordering::SeqCst);
    let data = home.join("restored");
    let peer = format!("http://127.0.0.1:{}", testkit::free_port());
    let out = store
        .command(home, "restore")
        .args(["--data-dir", data.to_str().unwrap()])
        .args(["--name", "r1", "--initial-cluster-token", "tok"])
        .args(["--initial-cluster", &format!("r1={peer}")])
        .args(["--initial-advertise-peer-urls", &peer])
        .args([
            "--restoration-temp-snapshots-dir",
            home.join("rtmp").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut r = Etcd::on_data_dir(source.version, &data, &["--initial-cluster-token=tok"]);
    r.set_member("r1", &peer);
    r.restart().await;
    assert_eq!(r.revision().await, rev);
    let mut rc = r.client().await.unwrap();
    let mut sc = source.client().await.unwrap();
    assert_eq!(
        rc.hash_kv(rev).await.unwrap().hash(),
        sc.hash_kv(rev).await.unwrap().hash(),
        "hashkv at {rev}"
    );
}

async fn puts(etcd: &Etcd, prefix: &str, n: usize) {
    let mut c = etcd.client().await.unwrap();
    for i in 0..n {
        c.put(format!("{prefix}/{i:03}"), vec![b'v'; 200], None)
            .await
            .unwrap();
    }
}

/// A PUT of an object whose name has `kind` (`Full-` or `Incr-`), stalled for a minute: the
/// process is killed while it waits.
fn stalled_upload_of(kind: &'static str) -> impl Fn(&RequestHead) -> bool + Send + Sync {
    move |r| (r.method == "PUT" || r.method == "POST") && r.target.contains(kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_killed_mid_full_upload() {
    let etcd = Etcd::start(EtcdVersion::V34).await;
    puts(&etcd, "/before", 50).await;
    let s = store(
        stalled_upload_of("Full-"),
        Fault::Stall(Duration::from_secs(60)),
    )
    .await;
    let home = tempfile::tempdir().unwrap();
    let log = home.path().join("snapshot.log");
    s.on.store(true, Ordering::SeqCst);
    let mut c = s.command(home.path(), "snapshot");
    c.args(snapshotter_flags(home.path(), &etcd));
    let mut child = spawn(c, &log);
    s.wait_hits(1, &log).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        s.last_revision().await,
        0,
        "no partial full snapshot is visible"
    );
    s.on.store(false, Ordering::SeqCst);
    let mut c = s.command(home.path(), "snapshot");
    c.args(snapshotter_flags(home.path(), &etcd));
    let child = spawn(c, &log);
    puts(&etcd, "/after", 50).await;
    s.wait_for(etcd.revision().await).await;
    terminate(child);
    assert_restores(&s, home.path(), &etcd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_delta_upload() {
    let etcd = Etcd::start(EtcdVersion::V35).await;
    let s = store(
        stalled_upload_of("Incr-"),
        Fault::Stall(Duration::from_secs(60)),
    )
    .await;
    let home = tempfile::tempdir().unwrap();
    let log = home.path().join("server.log");
    let server = |s: &Store| {
        let mut c = s.command(home.path(), "server");
        c.args(snapshotter_flags(home.path(), &etcd))
            .arg(format!("--server-port={}", testkit::free_port()))
            .args(["--reelection-period=2s", "--data-dir"])
            .arg(home.path().join("data"));
        c
    };
    let mut child = spawn(server(&s), &log);
    s.wait_for(1).await;
    puts(&etcd, "/before", 50).await;
    s.wait_for(etcd.revision().await).await;
    s.on.store(true, Ordering::SeqCst);
    puts(&etcd, "/stalled", 50).await;
    s.wait_hits(1, &log).await;
    child.kill().unwrap();
    child.wait().unwrap();
    s.on.store(false, Ordering::SeqCst);
    // The restarted server resumes the chain from the store: the events of the killed upload
    // are read again from etcd.
    let child = spawn(server(&s), &log);
    puts(&etcd, "/after", 50).await;
    s.wait_for(etcd.revision().await).await;
    terminate(child);
    assert_restores(&s, home.path(), &etcd).await;
}

/// Defect 1's other half: while backups are not being made, `/healthz` says so (503) and
/// `etcdbr_snapshot_required` is set; both clear once deltas are stored again, and no revision
/// is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_snapshot_required_tell_when_backups_fail() {
    let etcd = Etcd::start(EtcdVersion::V34).await;
    let s = store(
        |r| r.method == "PUT" || r.method == "POST",
        Fault::Status(403),
    )
    .await;
    let home = tempfile::tempdir().unwrap();
    let log = home.path().join("server.log");
    let port = testkit::free_port();
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let mut c = s.command(home.path(), "server");
    c.args(snapshotter_flags(home.path(), &etcd))
        .arg(format!("--server-port={port}"))
        .args(["--reelection-period=2s", "--data-dir"])
        .arg(home.path().join("data"));
    let child = spawn(c, &log);
    let wait = |code: u16| {
        let log = log.clone();
        let url = url("/healthz");
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while http("GET", &url).0 != code {
                assert!(
                    Instant::now() < deadline,
                    "/healthz never {code}:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    wait(200).await;
    s.wait_for(1).await;
    s.on.store(true, Ordering::SeqCst);
    puts(&etcd, "/refused", 20).await;
    wait(503).await;
    let (_, metrics) = http("GET", &url("/metrics"));
    assert!(
        metrics.contains("etcdbr_snapshot_required{kind=\"Incr\"} 1"),
        "{metrics}"
    );
    s.on.store(false, Ordering::SeqCst);
    wait(200).await;
    puts(&etcd, "/accepted", 20).await;
    s.wait_for(etcd.revision().await).await;
    let (_, metrics) = http("GET", &url("/metrics"));
    assert!(
        metrics.contains("etcdbr_snapshot_required{kind=\"Incr\"} 0"),
        "{metrics}"
    );
    terminate(child);
    assert_restores(&s, home.path(), &etcd).await;
}

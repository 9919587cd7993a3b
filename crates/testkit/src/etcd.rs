//! A real etcd process for tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::ports::free_port;

/// Which etcd release to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtcdVersion {
    /// etcd 3.4.23 from Debian bookworm (`/usr/bin/etcd`).
    V34,
    /// etcd 3.5.x unpacked by `scripts/setup.sh` into `~/.cache/etcdbr/etcd-3.5`.
    V35,
}

impl EtcdVersion {
    /// Directory holding `etcd` and `etcdctl` (and `etcdutl` for 3.5).
    #[must_use]
    pub fn bin_dir(self) -> PathBuf {
        match self {
            EtcdVersion::V34 => std::env::var_os("ETCDBR_ETCD34_BIN")
                .map_or_else(|| PathBuf::from("/usr/bin"), PathBuf::from),
            EtcdVersion::V35 => std::env::var_os("ETCDBR_ETCD35_BIN").map_or_else(
                || {
                    let cache = std::env::var_os("ETCDBR_CACHE").map_or_else(
                        || {
                            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                                .join(".cache/etcdbr")
                        },
                        PathBuf::from,
                    );
                    cache.join("etcd-3.5/usr/bin")
                },
                PathBuf::from,
            ),
        }
    }

    /// Path of one of the release's binaries; panics with a setup hint when missing.
    #[must_use]
    pub fn binary(self, name: &str) -> PathBuf {
        let p = self.bin_dir().join(name);
        assert!(
            p.exists(),
            "{} not found: run scripts/setup.sh to install etcd 3.4 and 3.5",
            p.display()
        );
        p
    }
}

/// A running etcd member on loopback with a temporary data directory. Killed on drop.
pub struct Etcd {
    /// Which release.
    pub version: EtcdVersion,
    /// Member name.
    pub name: String,
    /// Client URL (`http://127.0.0.1:<port>`).
    pub client_url: String,
    /// Peer URL.
    pub peer_url: String,
    data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    child: Option<Child>,
    log: PathBuf,
    extra: Vec<String>,
    tls: Option<ClientTls>,
    initial_cluster: Option<String>,
}

/// The files a TLS client of a test etcd uses.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// CA that signed the server certificate.
    pub ca: PathBuf,
    /// Client certificate.
    pub cert: PathBuf,
    /// Client key.
    pub key: PathBuf,
}

impl Etcd {
    /// Starts a fresh single-member etcd and waits until it serves requests.
    pub async fn start(version: EtcdVersion) -> Etcd {
        Etcd::start_with(version, &[]).await
    }

    /// Like [`Etcd::start`], with extra etcd flags.
    pub async fn start_with(version: EtcdVersion, extra: &[&str]) -> Etcd {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data_dir = tmp.path().join("data");
        let mut e = Etcd::on_data_dir(version, &data_dir, extra);
        e._tmp = Some(tmp);
        e.launch().await;
        e
    }

    /// Starts a fresh etcd serving clients over TLS with client-certificate authentication.
    pub async fn start_tls(version: EtcdVersion, certs: &crate::TestCerts) -> Etcd {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data_dir = tmp.path().join("data");
        let (sc, sk, ca) = (
            certs.server_cert.display(),
            certs.server_key.display(),
            certs.ca.display(),
        );
        let extra = [
            format!("--cert-file={sc}"),
            format!("--key-file={sk}"),
            format!("--trusted-ca-file={ca}"),
            "--client-cert-auth".to_owned(),
        ];
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let mut e = Etcd::on_data_dir(version, &data_dir, &extra);
        e.client_url = e.client_url.replace("http://", "https://");
        e.tls = Some(ClientTls {
            ca: certs.ca.clone(),
            cert: certs.client_cert.clone(),
            key: certs.client_key.clone(),
        });
        e._tmp = Some(tmp);
        e.launch().await;
        e
    }

    /// An etcd for an existing data directory (not started yet; call [`Etcd::restart`]).
    #[must_use]
    pub fn on_data_dir(version: EtcdVersion, data_dir: &Path, extra: &[&str]) -> Etcd {
        let (cp, pp) = (free_port(), free_port());
        Etcd {
            version,
            name: "default".into(),
            client_url: format!("http://127.0.0.1:{cp}"),
            peer_url: format!("http://127.0.0.1:{pp}"),
            log: data_dir.with_extension("log"),
            data_dir: data_dir.to_path_buf(),
            _tmp: None,
            child: None,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            tls: None,
            initial_cluster: None,
        }
    }

    /// Starts a fresh cluster of `n` members (`m0`, `m1`, …) on loopback, member `i` on
    /// `127.0.0.<i+1>`, and waits until every member serves requests.
    pub async fn start_cluster(version: EtcdVersion, n: usize) -> Vec<Etcd> {
        let mut members: Vec<Etcd> = (0..n)
            .map(|i| {
                let tmp = tempfile::tempdir().expect("temp dir");
                let mut e = Etcd::on_data_dir(version, &tmp.path().join("data"), &[]);
                e.name = format!("m{i}");
                // Each member on its own loopback address, as pods have their own IPs.
                let host = format!("127.0.0.{}", i + 1);
                e.client_url = e.client_url.replace("127.0.0.1", &host);
                e.peer_url = e.peer_url.replace("127.0.0.1", &host);
                e._tmp = Some(tmp);
                e
            })
            .collect();
        let cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        for m in &mut members {
            m.initial_cluster = Some(cluster.clone());
            m.spawn();
        }
        for m in &mut members {
            m.wait_ready().await;
        }
        members
    }

    /// Sets the member name and peer URL used at the next (re)start.
    pub fn set_member(&mut self, name: &str, peer_url: &str) {
        name.clone_into(&mut self.name);
        peer_url.clone_into(&mut self.peer_url);
    }

    /// A member to add to the cluster of `members` (not started): named `m<n>` on the next
    /// loopback address, its `initial-cluster` naming every member and itself.
    #[must_use]
    pub fn new_member(members: &[Etcd], dir: &Path) -> Etcd {
        let i = members.len();
        let mut e = Etcd::on_data_dir(members[0].version, &dir.join("data"), &[]);
        e.name = format!("m{i}");
        let host = format!("127.0.0.{}", i + 1);
        e.client_url = e.client_url.replace("127.0.0.1", &host);
        e.peer_url = e.peer_url.replace("127.0.0.1", &host);
        let mut cluster: Vec<String> = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect();
        cluster.push(format!("{}={}", e.name, e.peer_url));
        e.initial_cluster = Some(cluster.join(","));
        e
    }

    /// Starts this member again, stopped first if running, on `data_dir` with `extra` flags
    /// added, without waiting for it to serve (a learner refuses linearizable reads).
    pub fn start_on(&mut self, data_dir: &Path, extra: &[&str]) {
        self.kill();
        data_dir.clone_into(&mut self.data_dir);
        self.log = data_dir.with_extension("log");
        self.extra.extend(extra.iter().map(|s| (*s).to_owned()));
        self.spawn();
    }

    /// The data directory.
    #[must_use]
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    async fn launch(&mut self) {
        self.spawn();
        self.wait_ready().await;
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("etcd log file");
        let mut cmd = Command::new(self.version.binary("etcd"));
        cmd.arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen-client-urls")
            .arg(&self.client_url)
            .arg("--advertise-client-urls")
            .arg(&self.client_url)
            .arg("--listen-peer-urls")
            .arg(&self.peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&self.peer_url)
            .arg("--initial-cluster")
            .arg(
                self.initial_cluster
                    .clone()
                    .unwrap_or_else(|| format!("{}={}", self.name, self.peer_url)),
            )
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        self.child = Some(cmd.spawn().expect("spawn etcd"));
    }

    async fn wait_ready(&mut self) {
        // Long enough for etcd to rebuild its index over an 8 GiB db (the benchmark's dataset C).
        let deadline = Instant::now() + Duration::from_secs(180);
        let mut last_error;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "etcd exited with {status} during start-up; log:\n{}",
                    self.log_tail()
                );
            }
            match self.client().await {
                Ok(mut c) => match c.status().await {
                    Ok(_) if c.get("health-probe", None).await.is_ok() => return,
                    Ok(_) => last_error = "get failed".into(),
                    Err(e) => last_error = format!("{e:?}"),
                },
                Err(e) => last_error = format!("{e:?}"),
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not become ready in 30s (last error: {last_error}); log:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last lines of etcd's log.
    #[must_use]
    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// A client connected to this member.
    ///
    /// # Errors
    /// Connecting fails.
    pub async fn client(&self) -> Result<etcd_client::Client, etcd_client::Error> {
        let mut opts = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(10));
        if let Some(t) = &self.tls {
            let read = |p: &PathBuf| std::fs::read(p).expect("read test cert");
            opts = opts.with_tls(
                etcd_client::TlsOptions::new()
                    .ca_certificate(etcd_client::Certificate::from_pem(read(&t.ca)))
                    .identity(etcd_client::Identity::from_pem(read(&t.cert), read(&t.key))),
            );
        }
        etcd_client::Client::connect([self.client_url.as_str()], Some(opts)).await
    }

    /// Stops etcd (SIGKILL) and waits for it; the data directory stays.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops etcd gracefully (SIGTERM), waiting up to 10 s.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops etcd gracefully, copies its data directory to `to` (which must not exist), and
    /// starts it again on the same ports.
    pub async fn copy_data_dir(&mut self, to: &Path) {
        self.stop();
        copy_tree(&self.data_dir, to);
        self.launch().await;
    }

    /// Rolls etcd back to an earlier copy of its data directory (from [`Etcd::copy_data_dir`]):
    /// stops it, replaces the data directory with the copy, and starts it on the same ports.
    pub async fn roll_back_to(&mut self, copy: &Path) {
        self.stop();
        std::fs::remove_dir_all(&self.data_dir).expect("remove the data dir");
        copy_tree(copy, &self.data_dir);
        self.launch().await;
    }

    /// Starts etcd again on the same data directory and ports.
    pub async fn restart(&mut self) {
        self.kill();
        self.launch().await;
    }

    /// Runs this release's `etcdctl` against the member and returns its output.
    #[must_use]
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(self.version.binary("etcdctl"));
        cmd.env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(&self.client_url);
        if let Some(t) = &self.tls {
            cmd.arg("--cacert")
                .arg(&t.ca)
                .arg("--cert")
                .arg(&t.cert)
                .arg("--key")
                .arg(&t.key);
        }
        cmd.args(args).output().expect("run etcdctl")
    }

    /// Runs `etcdctl` and returns stdout, panicking on failure.
    pub fn etcdctl_ok(&self, args: &[&str]) -> String {
        let out = self.etcdctl(args);
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The member's current revision, asked as an authenticated user.
    pub async fn revision_as(&self, user: &str, password: &str) -> i64 {
        let opts = etcd_client::ConnectOptions::new().with_user(user, password);
        let mut c = etcd_client::Client::connect([self.client_url.as_str()], Some(opts))
            .await
            .expect("connect");
        c.get("revision-probe", None)
            .await
            .expect("get")
            .header()
            .expect("header")
            .revision()
    }

    /// The member's current revision.
    pub async fn revision(&self) -> i64 {
        let mut c = self.client().await.expect("connect");
        c.get("revision-probe", None)
            .await
            .expect("get")
            .header()
            .expect("header")
            .revision()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `cp -a from to`.
fn copy_tree(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp");
    assert!(
        st.success(),
        "cp -a {} {} failed",
        from.display(),
        to.display()
    );
}

//! A sidecar (`etcdbrctl server`) beside a test etcd, and what the server tests ask of it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use testkit::Etcd;

use super::bin;

pub struct Sidecar {
    child: Option<Child>,
    host: String,
    port: u16,
    log: PathBuf,
}

impl Sidecar {
    pub fn start(home: &Path, name: &str, etcd: &Etcd, port: u16, extra: &[&str]) -> Sidecar {
        Sidecar::start_with_env(home, name, etcd, port, extra, &[])
    }

    /// As [`Sidecar::start`], with more variables (`KUBECONFIG`, `POD_NAMESPACE`, ...).
    pub fn start_with_env(
        home: &Path,
        name: &str,
        etcd: &Etcd,
        port: u16,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Sidecar {
        let log = home.join(format!("{name}.log"));
        let child = bin()
            .env_clear()
            .envs(env.iter().copied())
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

    pub fn url(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.host, self.port)
    }

    pub fn http(&self, method: &str, path: &str) -> (u16, String) {
        http(method, &self.url(path))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn wait_health(&self, code: u16) {
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
    pub async fn wait_serving(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.http("GET", "/healthz").0 == 0 {
            assert!(Instant::now() < deadline, "never served:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn terminate(&mut self) -> bool {
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

/// Writes `ETCD_CONF` (the sidecar's `etcd.conf.yaml.in` below `home`) for a one-member cluster
/// whose member `m0` is `etcd`.
pub fn single_member_conf(home: &Path, etcd: &Etcd) {
    std::fs::write(
        home.join("etcd.conf.yaml.in"),
        format!(
            "name: placeholder\ndata-dir: /var/etcd/data/new.etcd\ninitial-cluster: m0={peer}\n\
             initial-advertise-peer-urls:\n  m0:\n  - {peer}\nadvertise-client-urls:\n  m0:\n  - {client}\n",
            peer = etcd.peer_url,
            client = etcd.client_url
        ),
    )
    .unwrap();
}

pub fn http(method: &str, url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-m", "60", "-X", method, "-w", "\n%{http_code}", url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

pub fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

pub async fn leader_index(members: &[Etcd], alive: &[bool]) -> usize {
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

//! The server as a sidecar: idle RSS and CPU, then RSS and CPU while etcd takes a steady rate
//! of writes.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use testkit::Etcd;

use crate::dataset::random_value;
use crate::process::{cpu_seconds, terminate};

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Samples RSS every 200 ms for `d`; returns (max, last) in KiB.
async fn sample(pid: u32, d: Duration) -> (u64, u64) {
    let end = Instant::now() + d;
    let (mut max, mut last) = (0, 0);
    while Instant::now() < end {
        last = rss_kib(pid);
        max = max.max(last);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (max, last)
}

/// What to measure.
pub(crate) struct Run {
    /// Seconds measured idle.
    pub idle: u64,
    /// Seconds of writing.
    pub seconds: u64,
    /// Puts per second.
    pub rate: u64,
    /// Value size.
    pub size: usize,
    /// Both Lease renewals on, against the in-test API server.
    pub leases: bool,
}

pub(crate) async fn sidecar(etcd: &Etcd, etcdbrctl: &Path, run: &Run) -> anyhow::Result<()> {
    let Run {
        idle,
        seconds,
        rate,
        size,
        leases,
    } = *run;
    let home = tempfile::tempdir()?;
    let port = testkit::free_port();
    let mut cmd = Command::new(etcdbrctl);
    // The API server lives in this process: its work is not the sidecar's.
    let _api = if leases {
        let api = testkit::KubeApi::start_new().await;
        for name in [
            "etcd-bench-full-snap",
            "etcd-bench-delta-snap",
            "etcd-bench-0",
        ] {
            api.create_lease("bench", name);
        }
        let kubeconfig = api.kubeconfig(
            &home.path().join("kubeconfig"),
            testkit::kube_api::SIDECAR_TOKEN,
            "bench",
        );
        cmd.env("KUBECONFIG", kubeconfig)
            .env("POD_NAMESPACE", "bench")
            .env("POD_NAME", "etcd-bench-0")
            .env("ETCD_CONF", home.path().join("no-etcd-conf"));
        Some(api)
    } else {
        None
    };
    let lease_flags: &[&str] = if leases {
        &[
            "--enable-snapshot-lease-renewal=true",
            "--full-snapshot-lease-name=etcd-bench-full-snap",
            "--delta-snapshot-lease-name=etcd-bench-delta-snap",
            "--enable-member-lease-renewal=true",
            "--k8s-heartbeat-duration=10s",
        ]
    } else {
        &[]
    };
    let mut child = cmd
        .env("HOME", home.path())
        .args([
            "server",
            "--storage-provider=Local",
            "--store-container=store",
        ])
        .args(["--endpoints", &etcd.client_url])
        .arg(format!("--server-port={port}"))
        .arg("--server-bind-address=127.0.0.1")
        .arg("--snapstore-temp-directory")
        .arg(home.path().join("tmp"))
        .args(lease_flags)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(home.path().join("server.log"))?)
        .spawn()?;
    let pid = child.id();
    let store = home.path().join("store/v2");
    let t = Instant::now();
    while crate::process::files(&store, "Full-").is_empty() {
        if t.elapsed() > Duration::from_secs(120) {
            bail!("no full snapshot");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu0 = cpu_seconds(pid);
    let (idle_max, idle_last) = sample(pid, Duration::from_secs(idle)).await;
    let idle_cpu = cpu_seconds(pid) - cpu0;

    // A steady writer: `rate` puts a second, spread over 32 tasks.
    let puts = Arc::new(AtomicU64::new(0));
    let client = etcd.client().await?;
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..32u64)
        .map(|w| {
            let (mut c, puts) = (client.clone(), Arc::clone(&puts));
            let value = random_value(w, size);
            tokio::spawn(async move {
                let mut i = 0u64;
                loop {
                    let due = start + Duration::from_secs_f64((i * 32 + w) as f64 / rate as f64);
                    if due >= end {
                        return;
                    }
                    tokio::time::sleep_until(due.into()).await;
                    if c.put(format!("/sidecar/{w}/{}", i % 1000), value.clone(), None)
                        .await
                        .is_ok()
                    {
                        puts.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    let cpu1 = cpu_seconds(pid);
    let (busy_max, _) = sample(pid, Duration::from_secs(seconds)).await;
    for t in tasks {
        t.await?;
    }
    let busy_cpu = cpu_seconds(pid) - cpu1;
    let done = puts.load(Ordering::Relaxed);
    terminate(&mut child)?;
    let with = if leases {
        ", member and snapshot Leases on"
    } else {
        ""
    };
    println!("sidecar (etcdbrctl server, Local store, default flags: 20s deltas, gzip{with})");
    println!(
        "idle {idle}s: RSS {:.1} MiB (max {:.1} MiB), CPU {:.3}s ({:.2}% of a core)",
        idle_last as f64 / 1024.0,
        idle_max as f64 / 1024.0,
        idle_cpu,
        idle_cpu / idle as f64 * 100.0
    );
    println!(
        "{seconds}s of {rate} puts/s ({} puts done, {:.0}/s, {size} B values): peak RSS {:.1} MiB, CPU {:.2}s ({:.1}% of a core)",
        done,
        done as f64 / seconds as f64,
        busy_max as f64 / 1024.0,
        busy_cpu,
        busy_cpu / seconds as f64 * 100.0
    );
    Ok(())
}

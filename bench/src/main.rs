//! `etcdbr-bench`: measures etcdbrctl against a real etcd, as whole processes.
//!
//! ```text
//! cargo build --release -p etcdbrctl -p etcdbr-bench
//! target/release/etcdbr-bench --keys 100000 --value-size 1024 full
//! target/release/etcdbr-bench --keys 100000 ingest --seconds 60
//! ```
//!
//! `full`: loads the dataset, then for each compression runs `etcdbrctl snapshot` until its full
//! snapshot object appears (wall time, peak RSS from `/proc/<pid>/status` VmHWM), next to
//! `etcdctl snapshot save` and `gzip -6` of the same db as references.
//! `ingest`: runs `etcdbrctl snapshot` with a 10 s delta period while writers put as fast as they
//! can, then stops it with SIGTERM and reports events per second, deltas written and peak RSS,
//! and checks that the stored chain reaches etcd's last revision.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use testkit::{Etcd, EtcdVersion};

#[derive(Parser)]
struct Args {
    /// Keys in the dataset (A: 100000; B: 1000000)
    #[arg(long, default_value_t = 100_000)]
    keys: usize,
    /// Value size in bytes
    #[arg(long, default_value_t = 1024)]
    value_size: usize,
    /// Path of the etcdbrctl binary
    #[arg(long, default_value = "target/release/etcdbrctl")]
    etcdbrctl: PathBuf,
    /// etcd release: 3.4 or 3.5
    #[arg(long, default_value = "3.5")]
    etcd: String,
    /// Runs per measurement (the median is reported)
    #[arg(long, default_value_t = 3)]
    runs: usize,
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Full snapshot into a Local store, per compression, with references
    Full,
    /// Delta ingest under the fastest writer
    Ingest {
        /// Seconds of writing
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Concurrent writers
        #[arg(long, default_value_t = 64)]
        writers: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let version = if args.etcd == "3.4" {
        EtcdVersion::V34
    } else {
        EtcdVersion::V35
    };
    let etcdbrctl = std::fs::canonicalize(&args.etcdbrctl)
        .with_context(|| format!("{} (build it first)", args.etcdbrctl.display()))?;
    let etcd = Etcd::start_with(
        version,
        &[
            "--quota-backend-bytes=8589934592",
            "--auto-compaction-retention=0",
        ],
    )
    .await;
    println!("etcd {:?} at {}", version, etcd.client_url);
    match args.what {
        What::Full => {
            load(&etcd, args.keys, args.value_size).await?;
            full(&etcd, &etcdbrctl, args.runs)?;
        }
        What::Ingest { seconds, writers } => {
            load(&etcd, args.keys.min(10_000), args.value_size).await?;
            ingest(&etcd, &etcdbrctl, seconds, writers, args.value_size).await?;
        }
    }
    Ok(())
}

/// Puts `keys` keys of `size` bytes, 16 concurrent transactions of 128 puts each.
async fn load(etcd: &Etcd, keys: usize, size: usize) -> anyhow::Result<()> {
    use futures::StreamExt;
    let started = Instant::now();
    let client = etcd.client().await?;
    let value = vec![b'v'; size];
    futures::stream::iter((0..keys).step_by(128))
        .map(|start| {
            let mut c = client.clone();
            let value = value.clone();
            async move {
                let ops: Vec<_> = (start..(start + 128).min(keys))
                    .map(|i| {
                        testkit::etcd_client::TxnOp::put(
                            format!("/bench/key-{i:08}"),
                            value.clone(),
                            None,
                        )
                    })
                    .collect();
                c.txn(testkit::etcd_client::Txn::new().and_then(ops))
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<()>, _>>()?;
    let status = etcd.client().await?.status().await?;
    println!(
        "loaded {keys} keys of {size} B in {:.1}s; db size {:.1} MB; revision {}",
        started.elapsed().as_secs_f64(),
        status.db_size() as f64 / 1e6,
        etcd.revision().await
    );
    Ok(())
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn files(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn spawn_snapshot(
    etcdbrctl: &Path,
    etcd: &Etcd,
    home: &Path,
    extra: &[&str],
) -> anyhow::Result<Child> {
    Ok(Command::new(etcdbrctl)
        .env("HOME", home)
        .args([
            "snapshot",
            "--storage-provider=Local",
            "--store-container=store",
            "--garbage-collection-period=0s",
        ])
        .args([
            "--endpoints",
            &etcd.client_url,
            "--snapstore-temp-directory",
            home.join("tmp").to_str().unwrap_or("/tmp"),
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(home.join("etcdbrctl.log"))?)
        .spawn()?)
}

fn terminate(child: &mut Child) -> anyhow::Result<()> {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    let status = child.wait()?;
    if !status.success() {
        bail!("etcdbrctl exited with {status}");
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn full(etcd: &Etcd, etcdbrctl: &Path, runs: usize) -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let saved = scratch.path().join("etcdctl.db");
    let mut t_save = Vec::new();
    for _ in 0..runs {
        let _ = std::fs::remove_file(&saved);
        let t = Instant::now();
        etcd.etcdctl_ok(&["snapshot", "save", saved.to_str().unwrap_or_default()]);
        t_save.push(t.elapsed().as_secs_f64());
    }
    let db_size = std::fs::metadata(&saved)?.len();
    let mut t_gzip = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let st = Command::new("gzip")
            .args(["-6", "-c"])
            .stdin(std::fs::File::open(&saved)?)
            .stdout(std::fs::File::create(scratch.path().join("db.gz"))?)
            .status()?;
        if !st.success() {
            bail!("gzip failed");
        }
        t_gzip.push(t.elapsed().as_secs_f64());
    }
    let (save, gz) = (median(t_save), median(t_gzip));
    println!("db {:.1} MB", db_size as f64 / 1e6);
    println!(
        "{:<34} {:>9} {:>10} {:>10}",
        "stage", "wall s", "MB/s", "peak RSS"
    );
    println!(
        "{:<34} {:>9.3} {:>10.1} {:>10}",
        "etcdctl snapshot save",
        save,
        db_size as f64 / 1e6 / save,
        "-"
    );
    println!(
        "{:<34} {:>9.3} {:>10.1} {:>10}",
        "gzip -6 of that file",
        gz,
        db_size as f64 / 1e6 / gz,
        "-"
    );
    println!(
        "{:<34} {:>9.3} {:>10.1} {:>10}",
        "etcdctl save + gzip -6",
        save + gz,
        db_size as f64 / 1e6 / (save + gz),
        "-"
    );
    for (name, flags) in [
        (
            "etcdbrctl full, uncompressed",
            &["--compress-snapshots=false"][..],
        ),
        ("etcdbrctl full, gzip", &["--compression-policy=gzip"][..]),
        ("etcdbrctl full, zlib", &["--compression-policy=zlib"][..]),
        ("etcdbrctl full, lzw", &["--compression-policy=lzw"][..]),
    ] {
        let mut walls = Vec::new();
        let mut rss = Vec::new();
        for _ in 0..runs {
            let home = tempfile::tempdir()?;
            std::fs::create_dir_all(home.path().join("tmp"))?;
            let store = home.path().join("store/v2");
            let mut args = vec!["--delta-snapshot-period=0s"];
            args.extend_from_slice(flags);
            let t = Instant::now();
            let mut child = spawn_snapshot(etcdbrctl, etcd, home.path(), &args)?;
            while files(&store, "Full-").is_empty() {
                if let Some(st) = child.try_wait()? {
                    bail!(
                        "etcdbrctl exited early with {st}; see {}",
                        home.path().join("etcdbrctl.log").display()
                    );
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            walls.push(t.elapsed().as_secs_f64());
            rss.push(peak_rss_kib(child.id()) as f64);
            terminate(&mut child)?;
        }
        let w = median(walls);
        println!(
            "{:<34} {:>9.3} {:>10.1} {:>7.1} MiB",
            name,
            w,
            db_size as f64 / 1e6 / w,
            median(rss) / 1024.0
        );
    }
    Ok(())
}

async fn ingest(
    etcd: &Etcd,
    etcdbrctl: &Path,
    seconds: u64,
    writers: usize,
    size: usize,
) -> anyhow::Result<()> {
    let home = tempfile::tempdir()?;
    std::fs::create_dir_all(home.path().join("tmp"))?;
    let store = home.path().join("store/v2");
    let mut child = spawn_snapshot(
        etcdbrctl,
        etcd,
        home.path(),
        &["--delta-snapshot-period=10s"],
    )?;
    while files(&store, "Full-").is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let start_rev = etcd.revision().await;
    let stop = Arc::new(AtomicBool::new(false));
    let puts = Arc::new(AtomicU64::new(0));
    let client = etcd.client().await?;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (stop, puts, mut c) = (Arc::clone(&stop), Arc::clone(&puts), client.clone());
        let value = vec![b'w'; size];
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if c.put(format!("/ingest/{w}/{}", i % 1000), value.clone(), None)
                    .await
                    .is_ok()
                {
                    puts.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        }));
    }
    let pid = child.id();
    let t = Instant::now();
    let mut peak = 0;
    while t.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        peak = peak.max(peak_rss_kib(pid));
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await?;
    }
    let elapsed = t.elapsed().as_secs_f64();
    let end_rev = etcd.revision().await;
    let t_stop = Instant::now();
    peak = peak.max(peak_rss_kib(pid));
    terminate(&mut child)?;
    let deltas = files(&store, "Incr-");
    let last = deltas
        .iter()
        .filter_map(|p| {
            p.file_name()?
                .to_string_lossy()
                .split('-')
                .nth(2)?
                .parse::<i64>()
                .ok()
        })
        .max()
        .unwrap_or(0);
    println!("writers: {writers}, value size {size} B, {seconds} s");
    println!(
        "puts acknowledged: {} ({:.0}/s)",
        puts.load(Ordering::Relaxed),
        puts.load(Ordering::Relaxed) as f64 / elapsed
    );
    println!(
        "revisions written: {} ({:.0}/s)",
        end_rev - start_rev,
        (end_rev - start_rev) as f64 / elapsed
    );
    println!(
        "delta objects: {}; last delta revision {last}; etcd revision {end_rev}; stop took {:.2}s",
        deltas.len(),
        t_stop.elapsed().as_secs_f64()
    );
    println!("snapshotter peak RSS: {:.1} MiB", peak as f64 / 1024.0);
    if last != end_rev {
        bail!("the chain ends at {last}, etcd is at {end_rev}");
    }
    Ok(())
}

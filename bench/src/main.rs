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
    /// Restore of the full snapshot alone and with `--events` delta events, with references
    Restore {
        /// Delta events (puts) written after the full snapshot
        #[arg(long, default_value_t = 100_000)]
        events: usize,
    },
    /// Reference for `ingest`: the same writers, with a bare watcher that only counts events
    WatchReference {
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
        What::Restore { events } => {
            load(&etcd, args.keys, args.value_size).await?;
            restore_bench(&etcd, &etcdbrctl, events, args.value_size, args.runs).await?;
        }
        What::WatchReference { seconds, writers } => {
            load(&etcd, args.keys.min(10_000), args.value_size).await?;
            watch_reference(&etcd, seconds, writers, args.value_size).await?;
        }
        What::Ingest { seconds, writers } => {
            load(&etcd, args.keys.min(10_000), args.value_size).await?;
            ingest(&etcd, &etcdbrctl, seconds, writers, args.value_size).await?;
        }
    }
    Ok(())
}

/// A value of `size` printable pseudo-random bytes (base64 alphabet): compresses to about 75%,
/// like typical etcd payloads, unlike a run of one byte.
fn random_value(seed: u64, size: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x % 64) as usize]
        })
        .collect()
}

/// Puts `keys` keys of `size` bytes, 16 concurrent transactions of 128 puts each.
async fn load(etcd: &Etcd, keys: usize, size: usize) -> anyhow::Result<()> {
    use futures::StreamExt;
    let started = Instant::now();
    let client = etcd.client().await?;
    futures::stream::iter((0..keys).step_by(128))
        .map(|start| {
            let mut c = client.clone();
            async move {
                let ops: Vec<_> = (start..(start + 128).min(keys))
                    .map(|i| {
                        testkit::etcd_client::TxnOp::put(
                            format!("/bench/key-{i:08}"),
                            random_value(i as u64, size),
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

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
        })
        .unwrap_or(0.0)
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

/// Starts `writers` tasks that put `size`-byte values as fast as they can until `stop`.
async fn spawn_writers(
    etcd: &Etcd,
    writers: usize,
    size: usize,
    stop: &Arc<AtomicBool>,
    puts: &Arc<AtomicU64>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let client = etcd.client().await?;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (stop, puts, mut c) = (Arc::clone(stop), Arc::clone(puts), client.clone());
        let value = random_value(w as u64, size);
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
    Ok(tasks)
}

async fn watch_reference(
    etcd: &Etcd,
    seconds: u64,
    writers: usize,
    size: usize,
) -> anyhow::Result<()> {
    let start_rev = etcd.revision().await;
    let seen = Arc::new(AtomicU64::new(start_rev as u64));
    let c = etcd.client().await?;
    let opts = testkit::etcd_client::WatchOptions::new()
        .with_all_keys()
        .with_start_revision(start_rev + 1);
    let mut w = c
        .watch_client()
        .max_decoding_message_size(i32::MAX as usize)
        .watch("", Some(opts))
        .await?;
    let seen2 = Arc::clone(&seen);
    let watcher = tokio::spawn(async move {
        while let Ok(Some(resp)) = w.message().await {
            if let Some(ev) = resp.events().last().and_then(|e| e.kv()) {
                seen2.store(ev.mod_revision() as u64, Ordering::Relaxed);
            }
        }
    });
    let stop = Arc::new(AtomicBool::new(false));
    let puts = Arc::new(AtomicU64::new(0));
    let tasks = spawn_writers(etcd, writers, size, &stop, &puts).await?;
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await?;
    }
    let elapsed = t.elapsed().as_secs_f64();
    let end_rev = etcd.revision().await;
    let at_end = seen.load(Ordering::Relaxed) as i64;
    let t2 = Instant::now();
    while (seen.load(Ordering::Relaxed) as i64) < end_rev && t2.elapsed() < Duration::from_secs(120)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    watcher.abort();
    println!("writers: {writers}, value size {size} B, {seconds} s");
    println!(
        "revisions written: {} ({:.0}/s)",
        end_rev - start_rev,
        (end_rev - start_rev) as f64 / elapsed
    );
    println!(
        "bare watcher: {:.0} events/s while writing; lag when writing stopped: {} revisions; caught up {:.1}s later",
        (at_end - start_rev) as f64 / elapsed,
        end_rev - at_end,
        t2.elapsed().as_secs_f64()
    );
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
    let tasks = spawn_writers(etcd, writers, size, &stop, &puts).await?;
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
    let cpu = cpu_seconds(pid);
    terminate(&mut child)?;
    let mut ranges: Vec<(i64, i64)> = files(&store, "Incr-")
        .iter()
        .filter_map(|p| {
            let name = p.file_name()?.to_string_lossy().into_owned();
            let mut t = name.split('-').skip(1);
            Some((t.next()?.parse().ok()?, t.next()?.parse().ok()?))
        })
        .collect();
    ranges.sort_unstable();
    for w in ranges.windows(2) {
        if w[1].0 != w[0].1 + 1 {
            bail!("gap in the delta chain between {:?} and {:?}", w[0], w[1]);
        }
    }
    let last = ranges.last().map_or(0, |r| r.1);
    let stop_secs = t_stop.elapsed().as_secs_f64();
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
        "delta objects: {} (contiguous); last delta revision {last}; etcd revision {end_rev}; stop (catch-up + final delta) took {stop_secs:.2}s",
        ranges.len()
    );
    println!(
        "events saved per second (writing + stop): {:.0}/s; lag at exit: {} revisions",
        (last - start_rev) as f64 / (elapsed + stop_secs),
        end_rev - last
    );
    println!(
        "snapshotter peak RSS: {:.1} MiB; CPU {cpu:.1} s",
        peak as f64 / 1024.0
    );
    Ok(())
}

/// Runs a command under `/usr/bin/time`; returns (wall seconds, peak RSS KiB).
fn timed(cmd: &mut Command) -> anyhow::Result<(f64, u64)> {
    let out_file = tempfile::NamedTempFile::new()?;
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(std::ffi::OsStr::to_owned).collect();
    let envs: Vec<_> = cmd
        .get_envs()
        .map(|(k, v)| (k.to_owned(), v.map(std::ffi::OsStr::to_owned)))
        .collect();
    let mut t = Command::new("/usr/bin/time");
    t.arg("-f")
        .arg("%e %M")
        .arg("-o")
        .arg(out_file.path())
        .arg(program)
        .args(args);
    for (k, v) in envs {
        if let Some(v) = v {
            t.env(k, v);
        }
    }
    let st = t.stdout(Stdio::null()).stderr(Stdio::null()).status()?;
    if !st.success() {
        bail!("{:?} failed with {st}", t);
    }
    let text = std::fs::read_to_string(out_file.path())?;
    let mut it = text.split_whitespace();
    let wall = it.next().and_then(|x| x.parse().ok()).unwrap_or(0.0);
    let rss = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
    Ok((wall, rss))
}

async fn restore_bench(
    etcd: &Etcd,
    etcdbrctl: &Path,
    events: usize,
    size: usize,
    runs: usize,
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
    let base_rev = etcd.revision().await;
    {
        use futures::StreamExt;
        let client = etcd.client().await?;
        futures::stream::iter(0..events)
            .map(|i| {
                let mut c = client.clone();
                async move {
                    c.put(
                        format!("/delta/{:06}", i % 50_000),
                        random_value(i as u64, size),
                        None,
                    )
                    .await
                    .map(|_| ())
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<()>, _>>()?;
    }
    let end_rev = etcd.revision().await;
    let last_delta = || {
        files(&store, "Incr-")
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
            .unwrap_or(0)
    };
    let t = Instant::now();
    while last_delta() < end_rev {
        if t.elapsed() > Duration::from_secs(600) {
            bail!("the snapshotter did not catch up");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    terminate(&mut child)?;
    println!(
        "full snapshot at revision {base_rev}; {} delta revisions in {} delta objects",
        end_rev - base_rev,
        files(&store, "Incr-").len()
    );
    if let Some(keep) = std::env::var_os("ETCDBR_BENCH_KEEP") {
        // Keeps the store for profiling: HOME=$ETCDBR_BENCH_KEEP etcdbrctl restore --store-container=store ...
        let dst = Path::new(&keep).join("store/v2");
        std::fs::create_dir_all(&dst)?;
        for f in files(&store, "") {
            std::fs::copy(&f, dst.join(f.file_name().unwrap_or_default()))?;
        }
    }

    // A store holding the full snapshot alone.
    let full_only = tempfile::tempdir()?;
    std::fs::create_dir_all(full_only.path().join("store/v2"))?;
    for f in files(&store, "Full-") {
        std::fs::copy(
            &f,
            full_only
                .path()
                .join("store/v2")
                .join(f.file_name().unwrap_or_default()),
        )?;
    }
    // The references take the full snapshot alone: our stored object, decompressed.
    let scratch = tempfile::tempdir()?;
    let saved = scratch.path().join("full.db");
    let full = files(&store, "Full-")
        .into_iter()
        .next()
        .context("no full snapshot")?;
    let st = Command::new("gzip")
        .arg("-dc")
        .arg(&full)
        .stdout(std::fs::File::create(&saved)?)
        .status()?;
    if !st.success() {
        bail!("gzip -dc {} failed", full.display());
    }
    let db_size = std::fs::metadata(&saved)?.len();
    let etcdutl = EtcdVersion::V35.binary("etcdutl");
    let mut rows = Vec::new();
    let mut measure = |name: &str, make: &dyn Fn(&Path) -> Command| -> anyhow::Result<()> {
        let mut walls = Vec::new();
        let mut rss = Vec::new();
        for i in 0..runs {
            let out = scratch.path().join(format!("out-{}-{i}", name.len()));
            let _ = std::fs::remove_dir_all(&out);
            let (w, r) = timed(&mut make(&out))?;
            walls.push(w);
            rss.push(r as f64);
            let _ = std::fs::remove_dir_all(&out);
        }
        rows.push((name.to_owned(), median(walls), median(rss) / 1024.0));
        Ok(())
    };
    measure("cp of the db", &|out: &Path| {
        let mut c = Command::new("cp");
        c.arg(&saved).arg(out);
        c
    })?;
    measure("etcdutl snapshot restore (full only)", &|out: &Path| {
        let mut c = Command::new(&etcdutl);
        c.args(["snapshot", "restore"])
            .arg(&saved)
            .arg("--data-dir")
            .arg(out);
        c
    })?;
    let restore_cmd = |home: &Path, out: &Path| {
        let mut c = Command::new(etcdbrctl);
        c.env("HOME", home)
            .args([
                "restore",
                "--storage-provider=Local",
                "--store-container=store",
                "--data-dir",
            ])
            .arg(out)
            .arg("--restoration-temp-snapshots-dir")
            .arg(home.join("restore-tmp"));
        c
    };
    measure("etcdbrctl restore (full only)", &|out: &Path| {
        restore_cmd(full_only.path(), out)
    })?;
    measure("etcdbrctl restore (full + deltas)", &|out: &Path| {
        restore_cmd(home.path(), out)
    })?;
    println!(
        "full snapshot db {:.1} MB; {} runs each, medians",
        db_size as f64 / 1e6,
        runs
    );
    println!("{:<40} {:>9} {:>10}", "stage", "wall s", "peak RSS");
    for (name, wall, rss) in &rows {
        println!("{name:<40} {wall:>9.3} {rss:>6.1} MiB");
    }
    let delta_time = rows[3].1 - rows[2].1;
    println!(
        "delta apply: {} revisions in {:.3}s more than the full snapshot alone ({:.0} revisions/s)",
        end_rev - base_rev,
        delta_time,
        (end_rev - base_rev) as f64 / delta_time.max(1e-3)
    );
    Ok(())
}

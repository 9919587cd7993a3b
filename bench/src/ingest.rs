//! Delta ingest under the fastest writer, and the bare-watcher reference.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use testkit::Etcd;

use crate::dataset::random_value;
use crate::process::{cpu_seconds, files, peak_rss_kib, spawn_snapshot, terminate};

/// Starts `writers` tasks that put `size`-byte values as fast as they can until `stop`.
pub(crate) async fn spawn_writers(
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

pub(crate) async fn watch_reference(
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

pub(crate) async fn ingest(
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

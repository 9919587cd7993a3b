//! Restore of the full snapshot alone and with deltas, next to `etcdutl snapshot restore`, and
//! `compact` of the same chain.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use testkit::{Etcd, EtcdVersion};

use crate::dataset::random_value;
use crate::process::{files, median, spawn_snapshot, terminate, timed_watching};

/// Where a restore into `out` is built (`<out>.part`).
fn layout_part(out: &Path) -> std::path::PathBuf {
    let mut p = out.as_os_str().to_owned();
    p.push(".part");
    p.into()
}

pub(crate) async fn restore_bench(
    etcd: &Etcd,
    etcdbrctl: &Path,
    events: usize,
    size: usize,
    runs: usize,
    compression: &str,
) -> anyhow::Result<()> {
    let policy = if compression == "none" {
        "--compress-snapshots=false".to_owned()
    } else {
        format!("--compression-policy={compression}")
    };
    let home = tempfile::tempdir()?;
    std::fs::create_dir_all(home.path().join("tmp"))?;
    let store = home.path().join("store/v2");
    let mut child = spawn_snapshot(
        etcdbrctl,
        etcd,
        home.path(),
        &["--delta-snapshot-period=10s", &policy],
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
    let name = full.file_name().unwrap_or_default().to_string_lossy();
    let parsed = snapstore::Snapshot::parse(&format!("v2/{name}"))?;
    let stored = std::io::BufReader::new(std::fs::File::open(&full)?);
    // Encrypted runs (ETCDBR_ENCRYPTION_* set for etcdbrctl): the identity opens the object.
    let plain: Box<dyn std::io::Read + Send> = if parsed.encrypted {
        let identity = std::env::var_os("ETCDBR_ENCRYPTION_IDENTITY_FILE")
            .context("an encrypted store needs ETCDBR_ENCRYPTION_IDENTITY_FILE")?;
        let keyring = snapstore::Keyring::from_files(None, Some(Path::new(&identity)))?;
        keyring.open(&name, stored)?
    } else {
        Box::new(stored)
    };
    etcdbr::compress::Compression::from_suffix(&parsed.compression_suffix)?
        .decompress(plain, std::fs::File::create(&saved)?)?;
    let db_size = std::fs::metadata(&saved)?.len();
    let etcdutl = EtcdVersion::V35.binary("etcdutl");
    let mut rows = Vec::new();
    let mut measure = |name: &str, make: &dyn Fn(&Path) -> Command| -> anyhow::Result<()> {
        let mut walls = Vec::new();
        let mut rss = Vec::new();
        let mut disk = 0;
        for i in 0..runs {
            let out = scratch.path().join(format!("out-{}-{i}", name.len()));
            let _ = std::fs::remove_dir_all(&out).or_else(|_| std::fs::remove_file(&out));
            // What the command writes: its output (the data dir, or compact's whole scratch
            // tree, whose store copy is subtracted below) and the restore's temp dirs.
            let watch = [
                out.clone(),
                layout_part(&out),
                home.path().join("restore-tmp"),
                full_only.path().join("restore-tmp"),
            ];
            let mut cmd = make(&out);
            let before = crate::process::disk_bytes(&out);
            let t = timed_watching(&mut cmd, &watch)?;
            walls.push(t.wall);
            rss.push(t.rss_kib as f64);
            disk = disk.max(t.peak_disk.saturating_sub(before));
            // A directory, or for `cp` a file.
            let _ = std::fs::remove_dir_all(&out).or_else(|_| std::fs::remove_file(&out));
        }
        rows.push((name.to_owned(), median(walls), median(rss) / 1024.0, disk));
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
    let middle = base_rev + (end_rev - base_rev) / 2;
    measure(
        "etcdbrctl restore --restore-to-revision (half the deltas)",
        &|out: &Path| {
            let mut c = restore_cmd(home.path(), out);
            c.arg(format!("--restore-to-revision={middle}"));
            c
        },
    )?;
    measure("etcdbrctl verify (full + deltas)", &|out: &Path| {
        let mut c = Command::new(etcdbrctl);
        c.env("HOME", home.path())
            .args([
                "verify",
                "--storage-provider=Local",
                "--store-container=store",
                "--restoration-temp-snapshots-dir",
            ])
            .arg(out);
        c
    })?;
    measure("etcdbrctl compact (full + deltas)", &|out: &Path| {
        // Each run compacts its own copy of the chain (the copy is made before timing starts).
        let dst = out.join("store/v2");
        std::fs::create_dir_all(&dst).expect("create the store copy");
        for f in files(&store, "") {
            std::fs::copy(&f, dst.join(f.file_name().unwrap_or_default())).expect("copy the store");
        }
        let mut c = Command::new(etcdbrctl);
        c.env("HOME", out)
            .args([
                "compact",
                "--storage-provider=Local",
                "--store-container=store",
            ])
            .arg("--data-dir")
            .arg(out.join("scratch"))
            .arg("--snapstore-temp-directory")
            .arg(out.join("tmp"))
            .arg("--restoration-temp-snapshots-dir")
            .arg(out.join("restore-tmp"));
        c
    })?;
    println!(
        "full snapshot db {:.1} MB, backups compressed with {compression}; {} runs each, medians",
        db_size as f64 / 1e6,
        runs
    );
    println!(
        "{:<58} {:>9} {:>10} {:>12}",
        "stage", "wall s", "peak RSS", "peak disk"
    );
    for (name, wall, rss, disk) in &rows {
        println!(
            "{name:<58} {wall:>9.3} {rss:>6.1} MiB {:>8.1} MB",
            *disk as f64 / 1e6
        );
    }
    let wall = |stage: &str| {
        rows.iter()
            .find(|(n, _, _, _)| n.starts_with(stage))
            .map_or(f64::NAN, |r| r.1)
    };
    let chain = wall("etcdbrctl restore (full + deltas)");
    let delta_time = chain - wall("etcdbrctl restore (full only)");
    println!(
        "delta apply: {} revisions in {:.3}s more than the full snapshot alone ({:.0} revisions/s)",
        end_rev - base_rev,
        delta_time,
        (end_rev - base_rev) as f64 / delta_time.max(1e-3)
    );
    println!(
        "compact / restore of the same chain: {:.2}x",
        wall("etcdbrctl compact") / chain.max(1e-3)
    );
    println!(
        "restore to the middle revision / restore of the whole chain: {:.2}x; verify / restore: {:.2}x",
        wall("etcdbrctl restore --restore-to-revision") / chain.max(1e-3),
        wall("etcdbrctl verify") / chain.max(1e-3)
    );
    Ok(())
}

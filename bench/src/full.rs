//! Full snapshots per compression, next to `etcdctl snapshot save` and `gzip -6`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::bail;
use testkit::Etcd;

use crate::process::{files, median, peak_rss_kib, spawn_snapshot, terminate};

pub(crate) fn full(etcd: &Etcd, etcdbrctl: &Path, runs: usize) -> anyhow::Result<()> {
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

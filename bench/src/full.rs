//! Full snapshots per compression, next to `etcdctl snapshot save` and `gzip -6`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::bail;
use testkit::Etcd;

use crate::process::{files, median, peak_rss_kib, spawn_snapshot, terminate};

pub(crate) fn full(
    etcd: &Etcd,
    etcdbrctl: &Path,
    runs: usize,
    compressions: &[String],
) -> anyhow::Result<()> {
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
    let gz_file = scratch.path().join("db.gz");
    for _ in 0..runs {
        let t = Instant::now();
        let st = Command::new("gzip")
            .args(["-6", "-c"])
            .stdin(std::fs::File::open(&saved)?)
            .stdout(std::fs::File::create(&gz_file)?)
            .status()?;
        if !st.success() {
            bail!("gzip failed");
        }
        t_gzip.push(t.elapsed().as_secs_f64());
    }
    let (save, gz) = (median(t_save), median(t_gzip));
    let gz_size = std::fs::metadata(&gz_file)?.len();
    std::fs::remove_file(&gz_file)?;
    println!("db {:.1} MB", db_size as f64 / 1e6);
    println!(
        "{:<34} {:>9} {:>10} {:>10} {:>14}",
        "stage", "wall s", "MB/s", "peak RSS", "object bytes"
    );
    println!(
        "{:<34} {:>9.3} {:>10.1} {:>10}",
        "etcdctl snapshot save",
        save,
        db_size as f64 / 1e6 / save,
        "-"
    );
    println!(
        "{:<34} {:>9.3} {:>10.1} {:>10} {gz_size:>14}",
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
    for compression in compressions {
        let (name, flag) = if compression == "none" {
            (
                "etcdbrctl full, uncompressed".to_owned(),
                "--compress-snapshots=false".to_owned(),
            )
        } else {
            (
                format!("etcdbrctl full, {compression}"),
                format!("--compression-policy={compression}"),
            )
        };
        let flags = [flag.as_str()];
        let mut walls = Vec::new();
        let mut rss = Vec::new();
        let mut size = 0;
        for _ in 0..runs {
            let home = tempfile::tempdir()?;
            std::fs::create_dir_all(home.path().join("tmp"))?;
            let store = home.path().join("store/v2");
            let mut args = vec!["--delta-snapshot-period=0s"];
            args.extend_from_slice(&flags);
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
            size = files(&store, "Full-")
                .first()
                .and_then(|f| std::fs::metadata(f).ok())
                .map_or(0, |m| m.len());
        }
        let w = median(walls);
        println!(
            "{:<34} {:>9.3} {:>10.1} {:>7.1} MiB {size:>14}",
            name,
            w,
            db_size as f64 / 1e6 / w,
            median(rss) / 1024.0
        );
    }
    Ok(())
}

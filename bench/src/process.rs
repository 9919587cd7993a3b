//! Running and measuring processes: etcdbrctl snapshot children, /proc readings, /usr/bin/time.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::bail;
use testkit::Etcd;

pub(crate) fn peak_rss_kib(pid: u32) -> u64 {
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
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
        })
        .unwrap_or(0.0)
}

pub(crate) fn files(dir: &Path, prefix: &str) -> Vec<PathBuf> {
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

pub(crate) fn spawn_snapshot(
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
            // Only the start-up full snapshot: an hourly one firing mid-run would fold the
            // measured deltas into a new full snapshot.
            "--schedule=0 0 1 1 *",
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

pub(crate) fn terminate(child: &mut Child) -> anyhow::Result<()> {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    let status = child.wait()?;
    if !status.success() {
        bail!("etcdbrctl exited with {status}");
    }
    Ok(())
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Bytes allocated on disk under `path` (a file or a tree), as `du` counts them.
pub(crate) fn disk_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.blocks() * 512;
    }
    std::fs::read_dir(path)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| disk_bytes(&e.path()))
                .sum()
        })
        .unwrap_or(0)
}

/// A command's measurements.
pub(crate) struct Timed {
    /// Wall seconds.
    pub(crate) wall: f64,
    /// Peak RSS, KiB.
    pub(crate) rss_kib: u64,
    /// The most disk the watched paths held at once, sampled every 50 ms.
    pub(crate) peak_disk: u64,
}

/// Runs a command under `/usr/bin/time`, sampling the disk that `watch` (paths that may not
/// exist yet) holds.
pub(crate) fn timed_watching(cmd: &mut Command, watch: &[PathBuf]) -> anyhow::Result<Timed> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let (stop, peak) = (AtomicBool::new(false), AtomicU64::new(0));
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let now: u64 = watch.iter().map(|p| disk_bytes(p)).sum();
                peak.fetch_max(now, Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        });
        let r = run_timed(cmd);
        stop.store(true, Ordering::Relaxed);
        r.map(|(wall, rss_kib)| Timed {
            wall,
            rss_kib,
            peak_disk: peak.load(Ordering::Relaxed),
        })
    })
}

/// Runs a command under `/usr/bin/time`; returns (wall seconds, peak RSS KiB).
fn run_timed(cmd: &mut Command) -> anyhow::Result<(f64, u64)> {
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
    // The command's log goes to a file, shown (its end) when the command fails.
    let log = tempfile::NamedTempFile::new()?;
    let st = t.stdout(Stdio::null()).stderr(log.reopen()?).status()?;
    if !st.success() {
        let text = std::fs::read_to_string(log.path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        bail!("{:?} failed with {st}; the end of its log:\n{tail}", t);
    }
    let text = std::fs::read_to_string(out_file.path())?;
    let mut it = text.split_whitespace();
    let wall = it.next().and_then(|x| x.parse().ok()).unwrap_or(0.0);
    let rss = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
    Ok((wall, rss))
}

//! Metrics read from `/proc` at scrape time: the original's network counters
//! (`etcdbr_network_{transmitted,received}_bytes`, from `/proc/<pid>/net/dev`) and the standard
//! `process_*` metrics Prometheus clients expose.

use std::fmt::Write as _;

use super::fmt_f64;

fn sample(out: &mut String, name: &str, kind: &str, help: &str, v: f64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name} {}", fmt_f64(v));
}

/// Bytes (received, transmitted) over every interface of this process' network namespace.
fn net_dev() -> (f64, f64) {
    let text = std::fs::read_to_string("/proc/self/net/dev").unwrap_or_default();
    let mut rx = 0.0;
    let mut tx = 0.0;
    for line in text.lines().skip(2) {
        let Some((_, counters)) = line.split_once(':') else {
            continue;
        };
        let f: Vec<f64> = counters
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if f.len() >= 9 {
            rx += f[0];
            tx += f[8];
        }
    }
    (rx, tx)
}

struct Stat {
    cpu_seconds: f64,
    start_seconds: f64,
    vsize: f64,
    rss_bytes: f64,
}

fn stat() -> Option<Stat> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name, which may contain spaces.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    // Times are in clock ticks and the RSS in pages, both as the system defines them (pages
    // are 64 KiB on some arm64 kernels).
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let page = rustix::param::page_size() as f64;
    let boot: f64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())?;
    Some(Stat {
        cpu_seconds: (num(11) + num(12)) / ticks,
        start_seconds: boot + num(19) / ticks,
        vsize: num(20),
        rss_bytes: num(21) * page,
    })
}

/// The soft limit on open files, from `/proc/self/limits` (`None` when unlimited or unreadable).
fn max_open_files() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub(super) fn encode(out: &mut String) {
    let (rx, tx) = net_dev();
    sample(
        out,
        "etcdbr_network_transmitted_bytes",
        "counter",
        "The total number of bytes transmitted over the network.",
        tx,
    );
    sample(
        out,
        "etcdbr_network_received_bytes",
        "counter",
        "The total number of bytes received over the network.",
        rx,
    );
    if let Some(s) = stat() {
        sample(
            out,
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            s.cpu_seconds,
        );
        sample(
            out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            s.rss_bytes,
        );
        sample(
            out,
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            s.vsize,
        );
        sample(
            out,
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            s.start_seconds,
        );
    }
    if let Some(max) = max_open_files() {
        sample(
            out,
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            max,
        );
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        sample(
            out,
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            fds.count() as f64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resident_size_agrees_with_the_kernels_own_figure() {
        let kib = |text: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap()
        };
        let before = kib(&std::fs::read_to_string("/proc/self/status").unwrap()) * 1024.0;
        let rss = stat().unwrap().rss_bytes;
        let after = kib(&std::fs::read_to_string("/proc/self/status").unwrap()) * 1024.0;
        // Pages times the system's page size, not times 4096 (64 KiB pages on some arm64).
        assert!(
            rss >= before.min(after) * 0.9 && rss <= before.max(after) * 1.1,
            "{rss} vs VmRSS {before}..{after}"
        );
        assert!(max_open_files().is_some_and(|m| m >= 64.0));
    }
}

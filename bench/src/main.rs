//! `etcdbr-bench`: measures etcdbrctl against a real etcd, as whole processes.
//!
//! ```text
//! cargo build --release -p etcdbrctl -p etcdbr-bench
//! target/release/etcdbr-bench --keys 100000 --value-size 1024 full
//! target/release/etcdbr-bench --keys 100000 ingest --seconds 60
//! ```
//!
//! Dataset C (8 GiB class, built once and kept with `--data-dir`):
//!
//! ```text
//! target/release/etcdbr-bench --keys 5500000 --quota-gib 16 --data-dir /var/tmp/dataset-c --runs 1 full --compressions none,gzip,zstd
//! target/release/etcdbr-bench --keys 5500000 --quota-gib 16 --data-dir /var/tmp/dataset-c --runs 1 restore --events 1000000
//! ```
//!
//! `full`: loads the dataset, then for each compression runs `etcdbrctl snapshot` until its full
//! snapshot object appears (wall time, peak RSS from `/proc/<pid>/status` VmHWM), next to
//! `etcdctl snapshot save` and `gzip -6` of the same db as references.
//! `ingest`: runs `etcdbrctl snapshot` with a 10 s delta period while writers put as fast as they
//! can, then stops it with SIGTERM and reports events per second, deltas written and peak RSS,
//! and checks that the stored chain reaches etcd's last revision.

mod dataset;
mod full;
mod ingest;
mod process;
mod restore;
mod sidecar;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use testkit::{Etcd, EtcdVersion};

use dataset::load;

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
    /// etcd's data directory, kept after the run: a later run on the same directory reuses
    /// the dataset instead of loading it again (dataset C takes minutes to load)
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// etcd's --quota-backend-bytes, in GiB (dataset C with its deltas needs more than 8)
    #[arg(long, default_value_t = 8)]
    quota_gib: u64,
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Full snapshot into a Local store, per compression, with references
    Full {
        /// Compressions to measure, comma-separated
        #[arg(long, value_delimiter = ',', default_value = "none,gzip,zlib,lzw,zstd")]
        compressions: Vec<String>,
    },
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
        /// Compression of the backups
        #[arg(long, default_value = "gzip", value_parser = ["gzip", "zlib", "lzw", "zstd", "none"])]
        compression: String,
    },
    /// The server as a sidecar: idle RSS/CPU, then RSS/CPU under a steady write rate
    Sidecar {
        /// Seconds measured idle
        #[arg(long, default_value_t = 60)]
        idle: u64,
        /// Seconds of writing
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Puts per second
        #[arg(long, default_value_t = 5000)]
        rate: u64,
        /// With both Kubernetes Lease renewals on, as etcd-druid runs it (member Lease every
        /// 10 s), against the in-test API server
        #[arg(long)]
        leases: bool,
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
    let quota = format!("--quota-backend-bytes={}", args.quota_gib << 30);
    // A raft snapshot every 10,000 entries: a kept --data-dir then restarts without replaying
    // the whole load from its WAL (5 GB and minutes for dataset C at etcd's default of 100,000).
    let flags = [
        quota.as_str(),
        "--auto-compaction-retention=0",
        "--snapshot-count=10000",
    ];
    let (etcd, loaded) = match &args.data_dir {
        None => (Etcd::start_with(version, &flags).await, false),
        Some(dir) => {
            let loaded = dir.join("member").exists();
            let mut etcd = Etcd::on_data_dir(version, dir, &flags);
            etcd.restart().await;
            (etcd, loaded)
        }
    };
    println!("etcd {:?} at {}", version, etcd.client_url);
    let load = |keys: usize| {
        let etcd = &etcd;
        async move {
            if loaded {
                dataset::reused(etcd).await
            } else {
                load(etcd, keys, args.value_size).await
            }
        }
    };
    match args.what {
        What::Full { compressions } => {
            load(args.keys).await?;
            full::full(&etcd, &etcdbrctl, args.runs, &compressions)?;
        }
        What::Restore {
            events,
            compression,
        } => {
            load(args.keys).await?;
            restore::restore_bench(
                &etcd,
                &etcdbrctl,
                events,
                args.value_size,
                args.runs,
                &compression,
            )
            .await?;
        }
        What::Sidecar {
            idle,
            seconds,
            rate,
            leases,
        } => {
            load(args.keys.min(10_000)).await?;
            let run = sidecar::Run {
                idle,
                seconds,
                rate,
                size: args.value_size,
                leases,
            };
            sidecar::sidecar(&etcd, &etcdbrctl, &run).await?;
        }
        What::WatchReference { seconds, writers } => {
            load(args.keys.min(10_000)).await?;
            ingest::watch_reference(&etcd, seconds, writers, args.value_size).await?;
        }
        What::Ingest { seconds, writers } => {
            load(args.keys.min(10_000)).await?;
            ingest::ingest(&etcd, &etcdbrctl, seconds, writers, args.value_size).await?;
        }
    }
    Ok(())
}

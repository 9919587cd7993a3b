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
        /// Compression of the backups
        #[arg(long, default_value = "gzip", value_parser = ["gzip", "zlib", "lzw", "none"])]
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
            full::full(&etcd, &etcdbrctl, args.runs)?;
        }
        What::Restore {
            events,
            compression,
        } => {
            load(&etcd, args.keys, args.value_size).await?;
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
            load(&etcd, args.keys.min(10_000), args.value_size).await?;
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
            load(&etcd, args.keys.min(10_000), args.value_size).await?;
            ingest::watch_reference(&etcd, seconds, writers, args.value_size).await?;
        }
        What::Ingest { seconds, writers } => {
            load(&etcd, args.keys.min(10_000), args.value_size).await?;
            ingest::ingest(&etcd, &etcdbrctl, seconds, writers, args.value_size).await?;
        }
    }
    Ok(())
}

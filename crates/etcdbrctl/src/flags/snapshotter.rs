//! Snapshotter, compression, backoff and defragmentation flags.

use std::time::Duration;

use clap::Args;
use etcdbr::backoff::ExponentialBackoff;
use etcdbr::compress::Compression;
use etcdbr::gc::{GcOptions, GcPolicy};
use etcdbr::schedule::Schedule;

use super::values::{go_bool, go_duration};

/// When to take snapshots and how long to keep them.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Snapshots and garbage collection")]
pub struct SnapshotterFlags {
    /// Cron schedule of full snapshots: 5 fields in local time, @hourly-style, or @every <duration>
    #[arg(short = 's', long, default_value = "0 */1 * * *", value_parser = str::parse::<Schedule>)]
    pub schedule: Schedule,

    /// Period after which buffered events are saved as a delta snapshot; below 1s delta
    /// snapshots are disabled
    #[arg(long, value_parser = go_duration, default_value = "20s")]
    pub delta_snapshot_period: Duration,

    /// Buffered event bytes that trigger a delta snapshot before the period ends
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    pub delta_snapshot_memory_limit: usize,

    /// Period of garbage collection of old backups; 1s or less disables it
    #[arg(long, value_parser = go_duration, default_value = "1m0s")]
    pub garbage_collection_period: Duration,

    /// Garbage collection policy: Exponential or LimitBased
    #[arg(long, default_value = "Exponential", value_parser = str::parse::<GcPolicy>)]
    pub garbage_collection_policy: GcPolicy,

    /// Full snapshots kept by the LimitBased policy
    #[arg(short = 'm', long, default_value_t = 7)]
    pub max_backups: usize,

    /// Deltas of older backup sets younger than this are kept (the latest set is always kept)
    #[arg(long, value_parser = go_duration, default_value = "0s")]
    pub delta_snapshot_retention_period: Duration,
}

impl SnapshotterFlags {
    /// Checks combinations the parsers cannot.
    ///
    /// # Errors
    /// A message naming the flag.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.garbage_collection_policy == GcPolicy::LimitBased && self.max_backups == 0 {
            anyhow::bail!(
                "--max-backups must be greater than zero for --garbage-collection-policy=LimitBased"
            );
        }
        Ok(())
    }

    /// The GC options these flags describe.
    pub fn gc_options(&self, is_swift: bool) -> GcOptions {
        let mut o = GcOptions::new(self.garbage_collection_policy);
        o.max_backups = self.max_backups;
        o.delta_retention = self.delta_snapshot_retention_period;
        o.is_swift = is_swift;
        o
    }

    /// The snapshotter's options: these flags with `compression`, `backoff`, and full snapshots
    /// staged in `temp_dir` within `snapshot_timeout`.
    pub fn snapshotter_options(
        &self,
        compression: etcdbr::compress::Compression,
        backoff: &BackoffFlags,
        temp_dir: &std::path::Path,
        snapshot_timeout: Duration,
    ) -> etcdbr::snapshotter::SnapshotterOptions {
        let full = etcdbr::snapshotter::FullSnapshotOptions {
            temp_dir: temp_dir.to_path_buf(),
            compression,
            snapshot_timeout,
        };
        let mut opts = etcdbr::snapshotter::SnapshotterOptions::new(self.schedule.clone(), full);
        opts.delta_period = self.delta_snapshot_period;
        opts.delta_memory_limit = self.delta_memory_limit();
        opts.backoff = backoff.backoff();
        opts
    }

    /// `--delta-snapshot-memory-limit`, with the original's reset of values below 1.
    pub fn delta_memory_limit(&self) -> usize {
        if self.delta_snapshot_memory_limit < 1 {
            tracing::info!(
                "Found delta snapshot memory limit {} bytes less than 1 byte. Setting it to default: {} ",
                self.delta_snapshot_memory_limit,
                10 * 1024 * 1024
            );
            return 10 * 1024 * 1024;
        }
        self.delta_snapshot_memory_limit
    }
}

/// Compression of uploaded snapshots.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Compression")]
pub struct CompressionFlags {
    /// Compress snapshots before upload
    #[arg(long, value_name = "BOOL", value_parser = go_bool, default_value = "true", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub compress_snapshots: bool,

    /// Compression policy: gzip (.gz), zlib (.zlib) or lzw (.Z), as the original; or zstd
    /// (.zst), an etcdbr extension the original cannot restore from. gzip and zstd restore on
    /// every core
    #[arg(long, default_value = "gzip")]
    pub compression_policy: String,
}

impl CompressionFlags {
    /// The compression to use.
    ///
    /// # Errors
    /// An unknown policy while compression is enabled.
    pub fn compression(&self) -> anyhow::Result<Compression> {
        Compression::from_flags(self.compress_snapshots, &self.compression_policy)
            .map_err(|e| anyhow::anyhow!("--compression-policy: {e}"))
    }
}

/// Restart backoff of a failed snapshotter.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Retry backoff")]
pub struct BackoffFlags {
    /// Factor between consecutive retry delays (starting at 1s)
    #[arg(long, default_value_t = 2)]
    pub backoff_multiplier: u32,

    /// Retries after which the delay stays at --backoff-threshold-time
    #[arg(long, default_value_t = 6)]
    pub backoff_attempt_limit: u32,

    /// Largest retry delay
    #[arg(long, value_parser = go_duration, default_value = "2m8s")]
    pub backoff_threshold_time: Duration,
}

impl BackoffFlags {
    /// The backoff policy.
    pub fn backoff(&self) -> ExponentialBackoff {
        ExponentialBackoff::new(
            self.backoff_multiplier,
            self.backoff_attempt_limit,
            self.backoff_threshold_time,
        )
    }
}

/// Scheduled defragmentation, and etcdbr's scheduled verification.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Defragmentation and verification")]
pub struct DefragFlags {
    /// Cron schedule of defragmenting every etcd member: 5 fields in local time, @daily-style, or @every <duration>
    #[arg(long, default_value = "0 0 */3 * *", value_parser = str::parse::<Schedule>)]
    pub defragmentation_schedule: Schedule,

    /// Cron schedule of verifying the latest backup set (as `etcdbrctl verify` does: restored into
    /// scratch space below --restoration-temp-snapshots-dir, checked, removed); results in the
    /// etcdbr_verification_* metrics and the log. Off when not given (etcdbr's; the original has none)
    #[arg(long, value_parser = str::parse::<Schedule>)]
    pub verify_schedule: Option<Schedule>,
}

//! `etcdbrctl compact`: fold the latest backup set into one new full snapshot.

use std::time::Duration;

use clap::Args;
use etcdbr::compact::CompactOptions;

use crate::flags::restoration::RestorationFlags;
use crate::flags::store::{StoreFlags, open_checked};
use crate::flags::values::{go_bool, go_duration};

/// Flags of `compact`.
#[derive(Debug, Args)]
pub struct CompactArgs {
    #[command(flatten)]
    compactor: CompactorFlags,
    #[command(flatten)]
    restoration: RestorationFlags,
    #[command(flatten)]
    store: StoreFlags,
}

/// The original's compactor flags.
#[derive(Debug, Args)]
#[command(next_help_heading = "Compaction")]
struct CompactorFlags {
    /// Accepted for compatibility; the compacted database is always written compact (no
    /// defragmentation needed)
    #[arg(long, value_name = "BOOL", value_parser = go_bool, default_value = "true", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    defragment: bool,

    /// Accepted for compatibility; no effect (no etcd runs during compaction)
    #[arg(long, value_parser = go_duration, default_value = "30m", hide_short_help = true)]
    etcd_snapshot_timeout: Duration,

    /// Accepted for compatibility; no effect (no etcd runs during compaction)
    #[arg(long, value_parser = go_duration, default_value = "8m", hide_short_help = true)]
    etcd_defrag_timeout: Duration,

    /// Name of the Kubernetes Lease holding the full snapshot revision (see --enable-snapshot-lease-renewal)
    #[arg(long, default_value = "full-snapshot-revisions")]
    full_snapshot_lease_name: String,

    /// Name of the Kubernetes Lease holding the delta snapshot revision
    #[arg(long, default_value = "delta-snapshot-revisions")]
    delta_snapshot_lease_name: String,

    /// Update the full snapshot Lease after the upload. Not supported yet: a warning is logged
    /// and the compaction goes on
    #[arg(long, value_name = "BOOL", value_parser = go_bool, default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    enable_snapshot_lease_renewal: bool,

    /// Wait this long after the upload before exiting, so that Prometheus can scrape the job
    #[arg(long, value_parser = go_duration, default_value = "0s")]
    metrics_scrape_wait_duration: Duration,
}

/// Compacts the store's latest backup set into a new full snapshot.
///
/// # Errors
/// Invalid flags, an empty store, a scratch directory that exists, corrupt backups, or
/// store failures.
pub async fn run(args: CompactArgs) -> anyhow::Result<()> {
    args.restoration.validate()?;
    let config = args.store.to_required_config()?;
    if args.compactor.enable_snapshot_lease_renewal {
        tracing::warn!(
            "--enable-snapshot-lease-renewal: updating the {:?} Lease is not supported by etcdbrctl yet; the compaction goes on without it",
            args.compactor.full_snapshot_lease_name
        );
    }
    let store = open_checked(&config).await?;
    let opts = CompactOptions::new(args.restoration.to_options(), config.temp_dir.clone());
    etcdbr::compact::compact(&store, &opts).await?;
    if !args.compactor.metrics_scrape_wait_duration.is_zero() {
        tokio::time::sleep(args.compactor.metrics_scrape_wait_duration).await;
    }
    Ok(())
}

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

    /// Update the full snapshot Lease (--full-snapshot-lease-name, in POD_NAMESPACE) with the
    /// compacted snapshot's revision after the upload, as etcd-druid's compaction Job expects
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
    // Connect first: a missing Kubernetes configuration fails before any work.
    let leases = if args.compactor.enable_snapshot_lease_renewal {
        Some(etcdbr_k8s::LeaseApi::new(
            &etcdbr_k8s::Kube::connect().await?,
        ))
    } else {
        None
    };
    let store = open_checked(&config).await?;
    let progress = crate::progress::Progress::new();
    let mut restore = args.restoration.to_options();
    restore.events = progress.events();
    let opts = CompactOptions::new(restore, config.temp_dir.clone());
    let report = etcdbr::compact::compact(&store, &opts).await?;
    if let Some(leases) = leases {
        update_full_lease(
            &leases,
            &args.compactor.full_snapshot_lease_name,
            &report.snapshot,
        )
        .await;
    }
    if !args.compactor.metrics_scrape_wait_duration.is_zero() {
        tokio::time::sleep(args.compactor.metrics_scrape_wait_duration).await;
    }
    Ok(())
}

/// Raises the full snapshot Lease to the compacted snapshot. A failure is logged, not fatal (as
/// the original): the snapshot is stored, and the sidecar's next full snapshot renews the Lease.
async fn update_full_lease(leases: &etcdbr_k8s::LeaseApi, name: &str, s: &snapstore::Snapshot) {
    let rev = s.last_revision.get();
    match leases.raise_revision(name, rev, s.created_on, false).await {
        Ok(r) => tracing::info!("Full snapshot Lease {name}: revision {rev} ({r:?})"),
        Err(e) => tracing::warn!(
            "The compacted snapshot is stored, but the full snapshot Lease {name} was not updated: {}",
            etcdbr::error_chain(&e)
        ),
    }
}

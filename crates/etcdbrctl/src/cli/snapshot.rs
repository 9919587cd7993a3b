//! `etcdbrctl snapshot`: back up a running etcd until stopped.

use clap::Args;
use etcdbr::service::{BackupOptions, BackupService};
use snapstore::Provider;
use tokio_util::sync::CancellationToken;

use crate::flags::etcd::EtcdFlags;
use crate::flags::snapshotter::{BackoffFlags, CompressionFlags, DefragFlags, SnapshotterFlags};
use crate::flags::store::{StoreFlags, open_checked};
use crate::flags::values::fmt_go_duration;

/// Flags of `snapshot`.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[command(flatten)]
    etcd: EtcdFlags,
    #[command(flatten)]
    store: StoreFlags,
    #[command(flatten)]
    snapshotter: SnapshotterFlags,
    #[command(flatten)]
    compression: CompressionFlags,
    #[command(flatten)]
    backoff: BackoffFlags,
    #[command(flatten)]
    defrag: DefragFlags,
}

/// Runs the snapshotter, GC and defragmentation until `stop` is cancelled.
///
/// # Errors
/// Invalid flags or an unusable store; etcd and store failures during the run are retried.
pub async fn run(args: SnapshotArgs, stop: CancellationToken) -> anyhow::Result<()> {
    let etcd = args.etcd.to_options();
    etcd.validate()?;
    args.snapshotter.validate()?;
    let compression = args.compression.compression()?;
    let store_config = args.store.to_required_config()?;
    create_temp_dir(&store_config.temp_dir)?;
    let store = open_checked(&store_config).await?;
    tracing::info!(
        "Snapshotting etcd {:?} into {} store {:?} (prefix {:?}): full snapshots on \"{}\", deltas every {}, compression {}",
        etcd.endpoints,
        store.provider(),
        store_config.container,
        store.layout_prefix(),
        args.snapshotter.schedule,
        fmt_go_duration(args.snapshotter.delta_snapshot_period),
        compression
    );
    tracing::info!(
        "Defragmentation schedule: \"{}\"",
        args.defrag.defragmentation_schedule
    );

    let snapshotter = args.snapshotter.snapshotter_options(
        compression,
        &args.backoff,
        &store_config.temp_dir,
        etcd.snapshot_timeout,
    );
    let mut backup = BackupOptions::new(
        snapshotter,
        args.snapshotter
            .gc_options(store_config.provider == Some(Provider::Swift)),
        args.snapshotter.garbage_collection_period,
        args.defrag.defragmentation_schedule,
    );
    if let Some(schedule) = args.defrag.verify_schedule {
        // Scratch space below the snapshotter's temp dir (restore flags are not taken here).
        let verify = etcdbr::verify::VerifyOptions::new(store_config.temp_dir.join("verify"));
        backup.verify = Some((schedule, verify));
    }
    BackupService::new(etcd, store, backup).run(stop).await?;
    tracing::info!("Shutting down...");
    Ok(())
}

/// Creates `--snapstore-temp-directory` when missing (mode 0700) and checks that a file can be
/// written in it, so an unusable one is an error at start rather than a snapshot retried for ever.
///
/// # Errors
/// The directory cannot be created or written.
pub fn create_temp_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.exists() {
        tracing::info!(
            "Temporary directory {} does not exist. Creating it...",
            dir.display()
        );
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot create --snapstore-temp-directory {}: {e}",
                    dir.display()
                )
            })?;
    }
    tempfile::tempfile_in(dir).map_err(|e| {
        anyhow::anyhow!(
            "--snapstore-temp-directory {} is not usable: cannot write a file in it: {e}",
            dir.display()
        )
    })?;
    Ok(())
}

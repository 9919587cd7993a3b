//! `etcdbrctl restore`: build an etcd data directory from the latest backup set.

use clap::Args;

use crate::flags::restoration::RestorationFlags;
use crate::flags::store::{StoreFlags, open_checked};

/// Flags of `restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    restoration: RestorationFlags,
    #[command(flatten)]
    store: StoreFlags,
}

/// Restores the latest full snapshot and its deltas into `--data-dir`.
///
/// # Errors
/// Invalid flags, an empty store, corrupt backups, or a target that exists.
pub async fn run(args: RestoreArgs) -> anyhow::Result<()> {
    args.restoration.validate()?;
    let config = args.store.to_required_config()?;
    let store = open_checked(&config).await?;
    let opts = args.restoration.to_options();
    let report = etcdbr::restore::restore(&store, &opts).await?;
    tracing::info!(
        "Restored {} from {} and {} deltas: revision {}",
        opts.data_dir.display(),
        report.full.snap_name,
        report.deltas,
        report.stats.revision.get()
    );
    Ok(())
}

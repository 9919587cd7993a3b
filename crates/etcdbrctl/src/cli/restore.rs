//! `etcdbrctl restore`: build an etcd data directory from the latest backup set, or from a point
//! in time or a chosen full snapshot.

use clap::Args;

use crate::flags::restoration::RestorationFlags;
use crate::flags::store::{StoreFlags, open_checked};
use crate::flags::target::{BumpFlags, TargetFlags};

/// Flags of `restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    restoration: RestorationFlags,
    #[command(flatten)]
    target: TargetFlags,
    #[command(flatten)]
    bump: BumpFlags,
    #[command(flatten)]
    store: StoreFlags,
}

/// Restores the chosen backup (by default the latest full snapshot and its deltas) into
/// `--data-dir`.
///
/// # Errors
/// Invalid flags, an empty store, a target the store cannot reach, corrupt backups, or a target
/// directory that exists.
pub async fn run(args: RestoreArgs) -> anyhow::Result<()> {
    args.restoration.validate()?;
    let mut opts = args.restoration.to_options();
    crate::flags::target::apply(&args.target, &args.bump, &mut opts)?;
    let progress = crate::progress::Progress::new();
    opts.events = progress.events();
    let config = args.store.to_required_config()?;
    let store = open_checked(&config).await?;
    let report = etcdbr::restore::restore(&store, &opts).await?;
    drop(progress);
    tracing::info!(
        "Restored {} from {} and {} deltas: revision {}{}",
        opts.data_dir.display(),
        report.full.snap_name,
        report.deltas,
        report.stats.revision.get(),
        report
            .stats
            .bumped_revision
            .map(|b| format!(", bumped to {} and marked compacted", b.get()))
            .unwrap_or_default()
    );
    Ok(())
}

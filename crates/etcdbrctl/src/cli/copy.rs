//! `etcdbrctl copy`: copy backups from a source store to the destination store.

use std::time::Duration;

use clap::Args;
use etcdbr::copy::CopyOptions;
use tokio_util::sync::CancellationToken;

use crate::flags::store::{SourceStoreFlags, StoreFlags, open_checked};
use crate::flags::values::{go_bool, go_duration};

/// Flags of `copy`.
#[derive(Debug, Args)]
pub struct CopyArgs {
    #[command(flatten)]
    copier: CopierFlags,
    #[command(flatten)]
    store: StoreFlags,
    #[command(flatten)]
    source: SourceStoreFlags,
}

/// The copier's own flags (the original's `copierOptions`).
#[derive(Debug, Args)]
#[command(next_help_heading = "Copy")]
struct CopierFlags {
    /// Number of backup sets (a full snapshot and its deltas) to copy, newest first; -1 copies all
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    max_backups_to_copy: i64,

    /// Copy only backup sets whose full snapshot is younger than this many days; -1 disables the filter
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    max_backup_age: i64,

    /// Number of objects copied at once
    #[arg(long, default_value_t = 10)]
    max_parallel_copy_operations: usize,

    /// Wait until the source holds a final full snapshot (taken with /snapshot/full?final=true)
    /// before copying
    #[arg(long, value_name = "BOOL", value_parser = go_bool, default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    wait_for_final_snapshot: bool,

    /// Stop waiting for a final full snapshot after this long and copy anyway; 0 waits for ever
    #[arg(long, value_parser = go_duration, default_value = "0s")]
    wait_for_final_snapshot_timeout: Duration,

    /// Rewrite every object for the recipients of --encryption-recipients-file, those the
    /// destination already has too, keeping their names (.final included): a key rotation.
    /// Objects are decrypted with --encryption-identity-file (or
    /// --source-encryption-identity-file) as they stream, never to disk. With the same store as
    /// source and destination it rotates the keys in place: each object is replaced only when
    /// its new version is stored whole
    #[arg(long)]
    reencrypt: bool,
}

impl CopierFlags {
    fn to_options(&self) -> anyhow::Result<CopyOptions> {
        if self.max_parallel_copy_operations == 0 {
            anyhow::bail!("--max-parallel-copy-operations must be greater than 0");
        }
        let mut o = CopyOptions::default();
        o.max_backups = usize::try_from(self.max_backups_to_copy).ok();
        o.max_backup_age = u64::try_from(self.max_backup_age)
            .ok()
            .map(|days| Duration::from_secs(days.saturating_mul(86_400)));
        o.parallel = self.max_parallel_copy_operations;
        o.wait_for_final = self.wait_for_final_snapshot;
        o.wait_for_final_timeout = (!self.wait_for_final_snapshot_timeout.is_zero())
            .then_some(self.wait_for_final_snapshot_timeout);
        o.reencrypt = self.reencrypt;
        Ok(o)
    }
}

/// Copies the source store's backups into the destination store.
///
/// # Errors
/// Invalid flags, an unreachable store, or objects that could not be copied.
pub async fn run(args: CopyArgs, stop: CancellationToken) -> anyhow::Result<()> {
    let mut opts = args.copier.to_options()?;
    let progress = crate::progress::Progress::new();
    opts.events = progress.events();
    let dest_config = args.store.to_config()?;
    if dest_config.provider.is_none() {
        anyhow::bail!("--storage-provider (the destination store) is required");
    }
    let source_config = args.source.to_config(&dest_config)?;
    let source = open_checked(&source_config).await?;
    let dest = open_checked(&dest_config).await?;
    etcdbr::copy::copy_backups(&source, &dest, &opts, &stop).await?;
    Ok(())
}

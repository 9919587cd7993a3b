//! `etcdbrctl initialize`: validate the data directory, restore it when invalid.

use clap::Args;
use etcd_datadir::validate::ValidationMode;
use etcdbr::initialize::{InitializeOptions, initialize};

use crate::flags::etcd::EtcdFlags;
use crate::flags::restoration::RestorationFlags;
use crate::flags::store::{StoreFlags, open_checked};
use crate::flags::target::{BumpFlags, TargetFlags};

/// Flags of `initialize`.
#[derive(Debug, Args)]
pub struct InitializeArgs {
    /// Validation mode: full (structure, revision, and every page of the db, WAL and snap) or sanity
    #[arg(long, default_value = "full", value_parser = parse_mode)]
    validation_mode: ValidationMode,
    #[command(flatten)]
    etcd: EtcdFlags,
    #[command(flatten)]
    store: StoreFlags,
    #[command(flatten)]
    restoration: RestorationFlags,
    #[command(flatten)]
    target: TargetFlags,
    #[command(flatten)]
    bump: BumpFlags,
}

fn parse_mode(s: &str) -> Result<ValidationMode, String> {
    match s {
        "full" => Ok(ValidationMode::Full),
        "sanity" => Ok(ValidationMode::Sanity),
        other => Err(format!(
            "validation mode {other:?} is not supported; use full or sanity"
        )),
    }
}

/// Validates `--data-dir` and restores it from the store when it is invalid.
///
/// # Errors
/// Invalid flags, a refusal (wrong volume, locked db), or a failed restore.
pub async fn run(args: InitializeArgs) -> anyhow::Result<()> {
    args.restoration.validate()?;
    args.etcd.to_options().validate()?;
    let config = args.store.to_config()?;
    let store = match config.provider {
        Some(_) => Some(open_checked(&config).await?),
        None => {
            tracing::info!(
                "No --storage-provider given: skipping the revision check against backups."
            );
            None
        }
    };
    let mut restore = args.restoration.to_options();
    crate::flags::target::apply(&args.target, &args.bump, &mut restore)?;
    let progress = crate::progress::Progress::new();
    restore.events = progress.events();
    let mut opts = InitializeOptions::new(restore, args.validation_mode);
    opts.namespace = std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|n| !n.is_empty());
    opts.snapstore_temp_dir = Some(config.temp_dir.clone());
    // As the original, a multi-member etcd configuration (`ETCD_CONF`) makes the member's
    // decisions those of a cluster member: scale-up and replacement by a learner.
    let etcd_conf = etcdbr_server::etcd_conf::path_from_env();
    opts.member = etcdbr_server::etcd_conf::member_control(&etcd_conf, &args.etcd.to_options())
        .map_err(|e| anyhow::anyhow!("the etcd config file {}: {e}", etcd_conf.display()))?;
    if let Some(m) = &opts.member {
        tracing::info!("Member {} of a {}-member cluster", m.name, m.cluster_size);
    }
    let report = initialize(store.as_ref(), &opts).await?;
    tracing::info!(
        "Initialization done: {:?}, {}",
        report.validation.status,
        report.outcome.describe()
    );
    Ok(())
}

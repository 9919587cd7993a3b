//! Restoration flags (the original's `RestorationConfig`), shared by `restore`, `initialize`,
//! `compact` and `server`.

use std::path::PathBuf;

use clap::Args;
use etcd_datadir::restore::DataDirFormat;
use etcdbr::restore::RestoreOptions;

use super::values::{go_bool, go_duration};

/// How to build the restored data directory.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Restoration")]
pub struct RestorationFlags {
    /// Initial cluster configuration of the restored member, name=peerURL[,name=peerURL...]
    #[arg(long, default_value = "default=http://localhost:2380")]
    pub initial_cluster: String,

    /// Initial cluster token of the restored cluster
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,

    /// Path of the data directory to create; it must not exist
    #[arg(short = 'd', long, default_value = "default.etcd")]
    pub data_dir: PathBuf,

    /// Directory where snapshots wait while being applied (a per-run subdirectory is used and removed)
    #[arg(long, default_value = "default.restoration.tmp")]
    pub restoration_temp_snapshots_dir: PathBuf,

    /// Peer URLs this member advertises (repeat the flag for several); must match its entry in --initial-cluster
    #[arg(long, default_value = "http://localhost:2380", action = clap::ArgAction::Append)]
    pub initial_advertise_peer_urls: Vec<String>,

    /// Name of the restored member
    #[arg(long, default_value = "default")]
    pub name: String,

    /// Do not verify the full snapshot's sha256 trailer
    #[arg(long, value_name = "BOOL", value_parser = go_bool, default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub skip_hash_check: bool,

    /// Delta snapshots downloaded ahead of the one being applied
    #[arg(long, default_value_t = 6)]
    pub max_fetchers: usize,

    /// Data-directory conventions to write: 3.4 or 3.5 (3.5 also boots etcd 3.4; 3.6 uses the 3.5 layout, untested)
    #[arg(long, default_value = "3.5", value_parser = parse_format)]
    pub target_etcd_version: DataDirFormat,

    /// Accepted for compatibility; no effect (the original's embedded etcd client limit)
    #[arg(long, default_value_t = 10 * 1024 * 1024, hide_short_help = true)]
    pub max_call_send_message_size: usize,

    /// Accepted for compatibility; no effect (the original's embedded etcd request limit)
    #[arg(long, default_value_t = 10 * 1024 * 1024, hide_short_help = true)]
    pub max_request_bytes: usize,

    /// Accepted for compatibility; no effect (the original's embedded etcd transaction limit)
    #[arg(long, default_value_t = 10240, hide_short_help = true)]
    pub max_txn_ops: usize,

    /// Accepted for compatibility; no effect (the original's embedded etcd quota; etcdbr writes a compact db and no etcd runs during restore)
    #[arg(long, default_value_t = 8 * 1024 * 1024 * 1024, hide_short_help = true)]
    pub embedded_etcd_quota_bytes: u64,

    /// Accepted for compatibility; no effect (compaction mode of the original's embedded etcd)
    #[arg(long, default_value = "periodic", hide_short_help = true)]
    pub auto_compaction_mode: String,

    /// Accepted for compatibility; no effect (compaction retention of the original's embedded etcd)
    #[arg(long, default_value = "30m", hide_short_help = true)]
    pub auto_compaction_retention: String,
}

fn parse_format(s: &str) -> Result<DataDirFormat, String> {
    match s {
        "3.4" => Ok(DataDirFormat::V34),
        "3.5" | "3.6" => Ok(DataDirFormat::V35),
        other => Err(format!(
            "unsupported etcd version {other:?}: use 3.4, 3.5 or 3.6"
        )),
    }
}

impl RestorationFlags {
    /// Checks values the parsers cannot.
    ///
    /// # Errors
    /// A message naming the flag.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.max_fetchers == 0 {
            anyhow::bail!("--max-fetchers must be greater than zero");
        }
        if !matches!(self.auto_compaction_mode.as_str(), "periodic" | "revision") {
            anyhow::bail!("--auto-compaction-mode must be periodic or revision");
        }
        if self.auto_compaction_mode == "periodic" {
            go_duration(&self.auto_compaction_retention)
                .map_err(|e| anyhow::anyhow!("--auto-compaction-retention: {e}"))?;
        }
        Ok(())
    }

    /// The engine's restore options.
    pub fn to_options(&self) -> RestoreOptions {
        let mut o = RestoreOptions::new(self.data_dir.clone());
        o.initial_cluster.clone_from(&self.initial_cluster);
        o.initial_cluster_token
            .clone_from(&self.initial_cluster_token);
        o.name.clone_from(&self.name);
        o.initial_advertise_peer_urls = self
            .initial_advertise_peer_urls
            .iter()
            .flat_map(|u| u.split(','))
            .map(str::to_owned)
            .collect();
        o.skip_hash_check = self.skip_hash_check;
        o.max_fetchers = self.max_fetchers;
        o.temp_dir.clone_from(&self.restoration_temp_snapshots_dir);
        o.format = self.target_etcd_version;
        o
    }
}

//! etcd connection flags (the original's `EtcdConnectionConfig`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use etcdbr::etcd::EtcdOptions;

use super::values::{go_bool, go_duration};

/// How to reach etcd.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "etcd connection")]
pub struct EtcdFlags {
    /// Comma separated list of etcd client URLs
    #[arg(
        short = 'e',
        long,
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,

    /// Comma separated list of etcd endpoints reached through a (Kubernetes) service: how a member
    /// of a multi-member cluster reaches the others for membership changes (default: every
    /// member's advertise-client-urls in ETCD_CONF)
    #[arg(long, value_delimiter = ',')]
    pub service_endpoints: Vec<String>,

    /// etcd user name, if etcd has auth enabled (used only together with --etcd-password)
    #[arg(long, default_value = "")]
    pub etcd_username: String,

    /// etcd password, if etcd has auth enabled; never logged
    #[arg(long, default_value = "", hide_default_value = true)]
    pub etcd_password: String,

    /// Timeout for connecting to etcd and for short etcd calls
    #[arg(long, value_parser = go_duration, default_value = "30s")]
    pub etcd_connection_timeout: Duration,

    /// Timeout for receiving a whole full snapshot from etcd
    #[arg(long, value_parser = go_duration, default_value = "15m0s")]
    pub etcd_snapshot_timeout: Duration,

    /// Timeout for defragmenting one etcd member
    #[arg(long, value_parser = go_duration, default_value = "8m0s")]
    pub etcd_defrag_timeout: Duration,

    /// Connect without TLS (unless --cert, --key or --cacert is given)
    #[arg(long, value_name = "BOOL", value_parser = go_bool, default_value = "true", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub insecure_transport: bool,

    /// Skip verifying etcd's server certificate. Defaults to false (the original defaults to
    /// true, which silently disables verification)
    #[arg(long, value_name = "BOOL", value_parser = go_bool, default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub insecure_skip_tls_verify: bool,

    /// Client TLS certificate file (PEM)
    #[arg(long)]
    pub cert: Option<PathBuf>,

    /// Client TLS key file (PEM)
    #[arg(long)]
    pub key: Option<PathBuf>,

    /// CA bundle to verify etcd's server certificate (PEM)
    #[arg(long)]
    pub cacert: Option<PathBuf>,
}

impl EtcdFlags {
    /// The engine's connection options.
    pub fn to_options(&self) -> EtcdOptions {
        let mut o = EtcdOptions::default();
        o.endpoints.clone_from(&self.endpoints);
        o.service_endpoints.clone_from(&self.service_endpoints);
        o.username.clone_from(&self.etcd_username);
        o.password.clone_from(&self.etcd_password);
        o.connection_timeout = self.etcd_connection_timeout;
        o.snapshot_timeout = self.etcd_snapshot_timeout;
        o.defrag_timeout = self.etcd_defrag_timeout;
        o.insecure_transport = self.insecure_transport;
        o.insecure_skip_verify = self.insecure_skip_tls_verify;
        o.cert_file.clone_from(&self.cert);
        o.key_file.clone_from(&self.key);
        o.ca_file.clone_from(&self.cacert);
        o
    }
}

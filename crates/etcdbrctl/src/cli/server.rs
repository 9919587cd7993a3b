//! `etcdbrctl server`: the sidecar (HTTP API, initialization, leader election, and on the
//! leader the snapshotter, GC, defragmentation and secondary sync).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use etcdbr::initialize::{InitializeOptions, ValidationMode};
use etcdbr_k8s::SnapshotLeaseNames;
use etcdbr_server::leases::LeaseOptions;
use etcdbr_server::{SecondaryOptions, ServerOptions};
use snapstore::Provider;
use tokio_util::sync::CancellationToken;

use crate::flags::etcd::EtcdFlags;
use crate::flags::restoration::RestorationFlags;
use crate::flags::snapshotter::{BackoffFlags, CompressionFlags, DefragFlags, SnapshotterFlags};
use crate::flags::store::{SecondaryStoreFlags, StoreFlags};
use crate::flags::target::{BumpFlags, TargetFlags};
use crate::flags::values::{go_bool, go_duration};

/// Flags of `server`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    #[command(flatten)]
    server: ServerFlags,
    #[command(flatten)]
    etcd: EtcdFlags,
    #[command(flatten)]
    store: StoreFlags,
    #[command(flatten)]
    secondary: SecondaryStoreFlags,
    #[command(flatten)]
    secondary_sync: SecondarySyncFlags,
    #[command(flatten)]
    snapshotter: SnapshotterFlags,
    #[command(flatten)]
    compression: CompressionFlags,
    #[command(flatten)]
    backoff: BackoffFlags,
    #[command(flatten)]
    defrag: DefragFlags,
    #[command(flatten)]
    restoration: RestorationFlags,
    #[command(flatten)]
    target: TargetFlags,
    #[command(flatten)]
    bump: BumpFlags,
    #[command(flatten)]
    health: HealthFlags,
}

/// The HTTP server and leader election.
#[derive(Debug, Args)]
#[command(next_help_heading = "Server")]
struct ServerFlags {
    /// Port of the HTTP API
    #[arg(short = 'p', long, default_value_t = 8080)]
    server_port: u16,

    /// Address the HTTP API listens on (an etcdbr addition; the original listens on every interface)
    #[arg(long, default_value = "0.0.0.0")]
    server_bind_address: std::net::IpAddr,

    /// TLS certificate of the HTTP API (PEM); HTTPS when given with --server-key
    #[arg(long, default_value = "")]
    server_cert: String,

    /// TLS key of the HTTP API (PEM)
    #[arg(long, default_value = "")]
    server_key: String,

    /// File holding a bearer token every API call but /healthz (and /metrics with
    /// --server-auth-skip-metrics) must send as "Authorization: Bearer <token>"; re-read when it
    /// changes. Off when not given, as in the original, whose API is open (etcdbr's)
    #[arg(long, value_name = "FILE")]
    server_auth_token_file: Option<PathBuf>,

    /// Serve /metrics without the bearer token (for a Prometheus that has none)
    #[arg(long, value_name = "BOOL", value_parser = go_bool, default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    server_auth_skip_metrics: bool,

    /// CA bundle (PEM): HTTPS clients must present a certificate it signed (needs --server-cert
    /// and --server-key; a follower forwards to the leader with its own server certificate, which
    /// must then allow client authentication) (etcdbr's)
    #[arg(long, value_name = "FILE")]
    server_client_ca: Option<PathBuf>,

    /// Accepted for compatibility; Go's pprof endpoints do not exist in etcdbr (a warning is logged)
    #[arg(long, value_name = "BOOL", value_parser = go_bool, default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    enable_profiling: bool,

    /// How often this sidecar asks its etcd member whether it leads (more than 1s)
    #[arg(long, value_parser = go_duration, default_value = "5s")]
    reelection_period: Duration,

    /// Timeout of the leader check's etcd call (more than 1s)
    #[arg(long, value_parser = go_duration, default_value = "5s")]
    etcd_connection_timeout_leader_election: Duration,

    /// YAML file with the original's configuration keys; its values apply where the same flag is
    /// not given on the command line
    #[arg(long, default_value = "")]
    config_file: String,

    /// After updating this member's changed peer URLs at start-up, ask etcd-wrapper (port 9095 on
    /// etcd's host) to restart etcd so that it uses them
    #[arg(long, value_name = "BOOL", value_parser = go_bool, default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    use_etcd_wrapper: bool,
}

/// Copying backups to the secondary store.
#[derive(Debug, Args)]
#[command(next_help_heading = "Secondary snapshot store")]
struct SecondarySyncFlags {
    /// Copy backups to the --secondary-* store from the leader, and garbage-collect it with the same policy
    #[arg(long, value_name = "BOOL", value_parser = go_bool, default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    secondary_backup_sync_enabled: bool,

    /// How often new backups are copied to the secondary store
    #[arg(long, value_parser = go_duration, default_value = "1h")]
    secondary_backup_sync_period: Duration,
}

/// The Kubernetes Leases etcd-druid reads (client from KUBECONFIG or the pod's service account;
/// namespace from POD_NAMESPACE; the member Lease is `[<member-name-prefix>-]$POD_NAME`).
#[derive(Debug, Args)]
#[command(next_help_heading = "Kubernetes leases")]
struct HealthFlags {
    /// Keep the full and delta snapshot Leases at the latest snapshots' revisions (etcd-druid's
    /// BackupReady condition and compaction read them; they must exist: they are never created)
    #[arg(long, value_name = "BOOL", value_parser = go_bool, default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    enable_snapshot_lease_renewal: bool,

    /// Renew this member's Lease every --k8s-heartbeat-duration with
    /// `<memberID>:<clusterID>:<Leader|Member>` (etcd-druid's member readiness reads it)
    #[arg(long, value_name = "BOOL", value_parser = go_bool, default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    enable_member_lease_renewal: bool,

    /// Member Lease renewal period
    #[arg(long, value_parser = go_duration, default_value = "30s")]
    k8s_heartbeat_duration: Duration,

    /// Name of the full snapshot Lease
    #[arg(long, default_value = "full-snapshot-revisions")]
    full_snapshot_lease_name: String,

    /// Name of the delta snapshot Lease
    #[arg(long, default_value = "delta-snapshot-revisions")]
    delta_snapshot_lease_name: String,
}

/// Runs the sidecar until `stop` fires.
///
/// # Errors
/// Invalid flags, an unusable store or TLS files, or a port that cannot be bound.
pub async fn run(args: ServerArgs, stop: CancellationToken) -> anyhow::Result<()> {
    warn_unsupported(&args);
    let opts = resolve(&args)?;
    if let Some(store) = &opts.store {
        crate::cli::snapshot::create_temp_dir(&store.temp_dir)?;
    }
    etcdbr_server::run(opts, stop).await?;
    Ok(())
}

/// Says which accepted flags do nothing in etcdbr.
fn warn_unsupported(args: &ServerArgs) {
    if args.server.enable_profiling {
        tracing::warn!("--enable-profiling: etcdbr has no Go pprof endpoints; ignored");
    }
}

impl HealthFlags {
    /// The Leases to keep.
    fn to_options(&self) -> anyhow::Result<LeaseOptions> {
        if self.enable_member_lease_renewal && self.k8s_heartbeat_duration.is_zero() {
            anyhow::bail!("--k8s-heartbeat-duration must be greater than zero");
        }
        for (flag, name) in [
            ("--full-snapshot-lease-name", &self.full_snapshot_lease_name),
            (
                "--delta-snapshot-lease-name",
                &self.delta_snapshot_lease_name,
            ),
        ] {
            if self.enable_snapshot_lease_renewal && name.is_empty() {
                anyhow::bail!("{flag} must name a Lease");
            }
        }
        Ok(LeaseOptions {
            snapshot: self
                .enable_snapshot_lease_renewal
                .then(|| SnapshotLeaseNames {
                    full: self.full_snapshot_lease_name.clone(),
                    delta: self.delta_snapshot_lease_name.clone(),
                }),
            heartbeat: self
                .enable_member_lease_renewal
                .then_some(self.k8s_heartbeat_duration),
        })
    }
}

/// The server's flags resolved into its options, once: every value validated, every default
/// applied. Touches nothing but the TLS files' existence.
fn resolve(args: &ServerArgs) -> anyhow::Result<ServerOptions> {
    let etcd = args.etcd.to_options();
    etcd.validate()?;
    args.snapshotter.validate()?;
    args.restoration.validate()?;
    let s = &args.server;
    if s.reelection_period <= Duration::from_secs(1) {
        anyhow::bail!("--reelection-period must be more than 1s");
    }
    if s.etcd_connection_timeout_leader_election <= Duration::from_secs(1) {
        anyhow::bail!("--etcd-connection-timeout-leader-election must be more than 1s");
    }
    let store = args.store.to_config()?;
    if store.keys.recipients.is_some() && store.keys.identities.is_none() {
        tracing::warn!(
            "--encryption-recipients-file without --encryption-identity-file: the backups are encrypted, but this server cannot restore from them at start-up"
        );
    }
    let snapshotter = args.snapshotter.snapshotter_options(
        args.compression.compression()?,
        &args.backoff,
        &store.temp_dir,
        etcd.snapshot_timeout,
    );
    let mut restore = args.restoration.to_options();
    crate::flags::target::apply(&args.target, &args.bump, &mut restore)?;
    let mut initialize = InitializeOptions::new(restore, ValidationMode::Full);
    initialize.namespace = std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|n| !n.is_empty());
    initialize.snapstore_temp_dir = Some(store.temp_dir.clone());

    let mut opts = ServerOptions::new(
        etcd,
        snapshotter,
        args.defrag.defragmentation_schedule.clone(),
        initialize,
    );
    opts.gc = args
        .snapshotter
        .gc_options(store.provider == Some(Provider::Swift));
    opts.gc_period = args.snapshotter.garbage_collection_period;
    opts.verify_schedule
        .clone_from(&args.defrag.verify_schedule);
    opts.secondary = secondary(args, &store)?;
    opts.store = store.provider.is_some().then_some(store);
    opts.port = s.server_port;
    opts.bind = s.server_bind_address;
    opts.tls = tls(s)?;
    opts.auth = auth(s, opts.tls.is_some())?;
    opts.reelection_period = s.reelection_period;
    opts.leader_etcd_timeout = s.etcd_connection_timeout_leader_election;
    opts.use_etcd_wrapper = s.use_etcd_wrapper;
    opts.leases = args.health.to_options()?;
    opts.etcd_conf = etcdbr_server::etcd_conf::path_from_env();
    Ok(opts)
}

/// `--server-cert` and `--server-key`: both or neither, and both files present.
fn tls(s: &ServerFlags) -> anyhow::Result<Option<(PathBuf, PathBuf)>> {
    match (s.server_cert.is_empty(), s.server_key.is_empty()) {
        (true, true) => Ok(None),
        (false, false) => {
            for (flag, f) in [
                ("--server-cert", &s.server_cert),
                ("--server-key", &s.server_key),
            ] {
                if !std::path::Path::new(f).is_file() {
                    anyhow::bail!("{flag} {f}: no such file");
                }
            }
            Ok(Some((
                PathBuf::from(&s.server_cert),
                PathBuf::from(&s.server_key),
            )))
        }
        _ => anyhow::bail!("--server-cert and --server-key must be given together"),
    }
}

/// `--server-auth-token-file`, `--server-client-ca`: the files present, the CA only with HTTPS.
fn auth(s: &ServerFlags, https: bool) -> anyhow::Result<etcdbr_server::auth::AuthOptions> {
    for (flag, f) in [
        ("--server-auth-token-file", &s.server_auth_token_file),
        ("--server-client-ca", &s.server_client_ca),
    ] {
        if let Some(f) = f
            && !f.is_file()
        {
            anyhow::bail!("{flag} {}: no such file", f.display());
        }
    }
    if s.server_client_ca.is_some() && !https {
        anyhow::bail!(
            "--server-client-ca verifies HTTPS clients: give --server-cert and --server-key too"
        );
    }
    if s.server_auth_skip_metrics && s.server_auth_token_file.is_none() {
        tracing::warn!("--server-auth-skip-metrics has no effect without --server-auth-token-file");
    }
    Ok(etcdbr_server::auth::AuthOptions {
        token_file: s.server_auth_token_file.clone(),
        metrics_open: s.server_auth_skip_metrics,
        client_ca: s.server_client_ca.clone(),
    })
}

/// The secondary store when its sync is enabled (it then needs a provider).
fn secondary(
    args: &ServerArgs,
    primary: &snapstore::StoreConfig,
) -> anyhow::Result<Option<SecondaryOptions>> {
    match (
        args.secondary_sync.secondary_backup_sync_enabled,
        args.secondary.to_config(primary)?,
    ) {
        (true, Some(c)) => Ok(Some(SecondaryOptions {
            store: c,
            sync_period: args.secondary_sync.secondary_backup_sync_period,
        })),
        (true, None) => {
            anyhow::bail!("--secondary-backup-sync-enabled needs a --secondary-storage-provider")
        }
        (false, _) => Ok(None),
    }
}

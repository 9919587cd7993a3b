//! The etcdbr sidecar (`etcdbrctl server`), a drop-in for the original's: an HTTP API
//! (`/initialization/*`, `/snapshot/*`, `/healthz`, `/metrics`, `/config`), leader election
//! over etcd's `Status`, and on the leader only the snapshotter, garbage collection,
//! defragmentation and the secondary-store sync.
//!
//! - [`http`]: the routes, with the original's paths, status codes and bodies.
//! - [`leader`]: the election loop and the leader's duties.
//! - [`delegate`]: forwarding snapshot requests from a follower to the leader's sidecar.
//! - [`etcd_conf`]: `/config`, the etcd configuration rendered for this member.
//! - [`state`]: what the HTTP handlers and the election loop share.

pub mod auth;
pub mod delegate;
mod error;
pub mod etcd_conf;
pub mod http;
pub mod leader;
pub mod leases;
pub mod metrics;
pub mod peer_url;
pub mod query;
pub mod snapshot_json;
pub mod state;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use etcdbr::etcd::EtcdOptions;
use etcdbr::gc::GcOptions;
use etcdbr::initialize::InitializeOptions;
use etcdbr::schedule::Schedule;
use etcdbr::snapshotter::SnapshotterOptions;
use snapstore::StoreConfig;
use tokio_util::sync::CancellationToken;

pub use error::{ServerError, SiblingError, TlsError};

/// The second store kept in sync with the first (`--secondary-*`).
#[derive(Debug, Clone)]
pub struct SecondaryOptions {
    /// Where.
    pub store: StoreConfig,
    /// How often the leader copies new backups there (`--secondary-backup-sync-period`).
    pub sync_period: Duration,
}

/// Everything the sidecar needs, from its flags or config file.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerOptions {
    /// The etcd member this sidecar stands beside (its first endpoint is the member itself).
    pub etcd: EtcdOptions,
    /// The backup store; `None` runs the server without a snapshotter.
    pub store: Option<StoreConfig>,
    /// The secondary store, when its sync is enabled.
    pub secondary: Option<SecondaryOptions>,
    /// The snapshotter's schedule and settings.
    pub snapshotter: SnapshotterOptions,
    /// Garbage collection policy.
    pub gc: GcOptions,
    /// Garbage collection period.
    pub gc_period: Duration,
    /// `--defragmentation-schedule`.
    pub defrag_schedule: Schedule,
    /// `--verify-schedule`: the leader verifies the latest backup set on it (etcdbr's).
    pub verify_schedule: Option<Schedule>,
    /// How `/initialization/start` validates and restores.
    pub initialize: InitializeOptions,
    /// `--server-port`.
    pub port: u16,
    /// Bind address (the original listens on every interface).
    pub bind: std::net::IpAddr,
    /// `--server-cert` and `--server-key`: HTTPS when both are given.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `--reelection-period`.
    pub reelection_period: Duration,
    /// `--etcd-connection-timeout-leader-election`.
    pub leader_etcd_timeout: Duration,
    /// The etcd configuration file `/config` renders (`ETCD_CONF`).
    pub etcd_conf: PathBuf,
    /// `--use-etcd-wrapper`: after a peer URL update, ask etcd-wrapper to restart etcd.
    pub use_etcd_wrapper: bool,
    /// The Kubernetes Leases kept for etcd-druid.
    pub leases: leases::LeaseOptions,
    /// Who may call the HTTP API (`--server-auth-token-file`, `--server-client-ca`).
    pub auth: auth::AuthOptions,
}

impl ServerOptions {
    /// Options with the original's defaults: no store, port 8080 on every interface, plain
    /// HTTP, leader checks every 5 s with a 5 s timeout, Exponential GC every minute.
    #[must_use]
    pub fn new(
        etcd: EtcdOptions,
        snapshotter: SnapshotterOptions,
        defrag_schedule: Schedule,
        initialize: InitializeOptions,
    ) -> ServerOptions {
        ServerOptions {
            etcd,
            store: None,
            secondary: None,
            snapshotter,
            gc: GcOptions::new(etcdbr::gc::GcPolicy::Exponential),
            gc_period: Duration::from_secs(60),
            defrag_schedule,
            verify_schedule: None,
            initialize,
            port: 8080,
            bind: std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            tls: None,
            reelection_period: Duration::from_secs(5),
            leader_etcd_timeout: Duration::from_secs(5),
            etcd_conf: PathBuf::from(etcd_conf::DEFAULT_ETCD_CONF),
            use_etcd_wrapper: false,
            leases: leases::LeaseOptions::default(),
            auth: auth::AuthOptions::default(),
        }
    }
}

/// Runs the sidecar until `stop` fires; then the leader's snapshotter saves its last delta.
///
/// # Errors
/// The port cannot be bound, the TLS files are unusable, or the store cannot be opened.
pub async fn run(mut opts: ServerOptions, stop: CancellationToken) -> Result<(), ServerError> {
    let member = etcd_conf::member_control(&opts.etcd_conf, &opts.etcd).map_err(|source| {
        ServerError::EtcdConf {
            path: opts.etcd_conf.clone(),
            source,
        }
    })?;
    if let Some(m) = &member {
        tracing::info!(
            "Member {} of a {}-member cluster (reached at {:?})",
            m.name,
            m.cluster_size,
            m.cluster.endpoints
        );
    }
    // The cluster's size: ETCD_CONF's members, else --initial-cluster's.
    let cluster_size = member.as_ref().map_or_else(
        || {
            opts.initialize
                .restore
                .initial_cluster
                .split(',')
                .filter(|m| !m.is_empty())
                .count()
        },
        |m| m.cluster_size,
    );
    metrics::metrics()
        .cluster_size
        .set(&[], cluster_size as f64);
    opts.initialize.member = member;
    opts.initialize.events = metrics::events();
    let store = match &opts.store {
        Some(c) => {
            let s = snapstore::SnapStore::open(c)?;
            s.check_access().await?;
            Some(s)
        }
        None => None,
    };
    let leases = leases::start(&opts.leases, &opts.etcd_conf, &opts.etcd, &stop).await?;
    let shared = Arc::new(state::Shared::new(&opts, store, leases));
    let gate = match &opts.auth.token_file {
        Some(path) => Some(Arc::new(auth::Gate {
            token: auth::TokenCheck::load(path)?,
            metrics_open: opts.auth.metrics_open,
        })),
        None => None,
    };
    let listener = http::bind(&opts).await?;
    tracing::info!(
        "Serving the etcdbr HTTP API on {}://{}",
        if opts.tls.is_some() { "https" } else { "http" },
        listener
            .local_addr()
            .map_or_else(|_| "?".into(), |a| a.to_string())
    );
    let server = tokio::spawn(http::serve(
        listener,
        http::tls_acceptor(&opts)?,
        gate,
        Arc::clone(&shared),
        stop.clone(),
    ));
    leader::run(Arc::clone(&shared), opts, stop.clone()).await;
    stop.cancel();
    let _ = server.await;
    Ok(())
}

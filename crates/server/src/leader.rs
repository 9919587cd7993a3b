//! Leader election and the leader's duties (reference §7.2). Every `--reelection-period` the
//! sidecar asks its own etcd member for `Status`: the member leads when the status' member id
//! is its leader; a member that is a learner is promoted (etcd accepts once it has caught up).
//! Only the leader's sidecar runs the snapshotter, GC, defragmentation, the secondary sync and
//! the scheduled verification;
//! losing leadership (or etcd becoming unreachable) stops them, after the snapshotter saved its
//! pending events. A new leader resumes the store's chain from its newest revision, so the chain
//! has no gap across the hand-over (at most an overlap, which restore skips).

use std::sync::Arc;
use std::time::Duration;

use etcd_client::Client;
use etcdbr::error_chain;
use etcdbr::etcd::EtcdOptions;
use etcdbr::service::{BackupOptions, BackupService, Secondary};
use snapstore::SnapStore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::ServerOptions;
use crate::state::Shared;

/// What this sidecar's member is, as its etcd says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The member leads the raft group: this sidecar backs up.
    Leader,
    /// Another member leads.
    Follower,
    /// etcd did not answer, or has no leader.
    Unknown,
}

/// Asks etcd about its member with a connection reused across periods.
struct RoleProbe {
    etcd: EtcdOptions,
    timeout: Duration,
    client: Option<Client>,
    /// Whether the member was a learner at the last answer.
    learner: bool,
}

impl RoleProbe {
    fn new(etcd: &EtcdOptions, timeout: Duration) -> RoleProbe {
        let mut etcd = etcd.clone();
        etcd.endpoints.truncate(1);
        etcd.connection_timeout = timeout;
        RoleProbe {
            etcd,
            timeout,
            client: None,
            learner: false,
        }
    }

    async fn role(&mut self) -> Role {
        if self.client.is_none() {
            match self.etcd.connect().await {
                Ok(c) => self.client = Some(c),
                Err(e) => {
                    tracing::warn!("Leader election: etcd unreachable: {}", error_chain(&e));
                    return Role::Unknown;
                }
            }
        }
        let Some(c) = self.client.as_mut() else {
            return Role::Unknown;
        };
        match tokio::time::timeout(self.timeout, c.status()).await {
            Ok(Ok(st)) => {
                self.learner = st.is_learner();
                let me = st.header().map_or(0, |h| h.member_id());
                match st.leader() {
                    0 => Role::Unknown,
                    l if l == me => Role::Leader,
                    _ => Role::Follower,
                }
            }
            Ok(Err(e)) => {
                tracing::warn!("Leader election: etcd status failed: {e}");
                self.client = None;
                Role::Unknown
            }
            Err(_) => {
                tracing::warn!(
                    "Leader election: etcd status timed out after {:?}",
                    self.timeout
                );
                self.client = None;
                Role::Unknown
            }
        }
    }
}

/// Runs the election loop until `stop`; the leader's duties stop cleanly first.
pub async fn run(shared: Arc<Shared>, opts: ServerOptions, stop: CancellationToken) {
    let mut probe = RoleProbe::new(&opts.etcd, opts.leader_etcd_timeout);
    let mut role = Role::Unknown;
    let mut duties: Option<(CancellationToken, JoinHandle<()>)> = None;
    tracing::info!(
        "Starting leader election every {:?}",
        opts.reelection_period
    );
    let mut peer_urls_checked = false;
    loop {
        let now = probe.role().await;
        if now != Role::Unknown && !peer_urls_checked {
            // Once etcd answers, as the original does before electing.
            crate::peer_url::update_if_changed(&shared, opts.use_etcd_wrapper).await;
            peer_urls_checked = true;
        }
        if now != role {
            tracing::info!("Leader election: {role:?} -> {now:?}");
            if now == Role::Leader {
                let token = stop.child_token();
                let task = tokio::spawn(lead(Arc::clone(&shared), opts.clone(), token.clone()));
                duties = Some((token, task));
            } else if let Some((token, task)) = duties.take() {
                tracing::info!("backup-restore stops leading...");
                token.cancel();
                let _ = task.await;
                shared.set_health(503);
            }
            role = now;
        }
        if role == Role::Follower
            && probe.learner
            && let Some(m) = shared.initialize.member.as_ref()
        {
            // etcd accepts the promotion only once the learner has caught up with the leader.
            if let Err(e) = m.promote().await {
                tracing::warn!("Cannot promote the learner: {}", error_chain(&e));
            }
        }
        if role == Role::Leader && duties.as_ref().is_some_and(|(_, t)| !t.is_finished()) {
            // Not healthy while backups are not being made (a failing snapshotter).
            let failing = shared.snapshotter().is_some_and(|h| !h.is_healthy());
            shared.set_health(if shared.initializing() || failing {
                503
            } else {
                200
            });
        }
        tokio::select! {
            () = tokio::time::sleep(opts.reelection_period) => {}
            () = stop.cancelled() => break,
        }
    }
    if let Some((token, task)) = duties.take() {
        token.cancel();
        let _ = task.await;
    }
    shared.set_health(503);
    tracing::info!("Shutting down...");
}

/// The leader's duties until `token` fires: the backup service of the configured store.
async fn lead(shared: Arc<Shared>, opts: ServerOptions, token: CancellationToken) {
    let Some(store) = shared.store.clone() else {
        tracing::info!("No store configured: serving without a snapshotter");
        shared.set_health(200);
        token.cancelled().await;
        return;
    };
    let mut snapshotter = opts.snapshotter.clone();
    snapshotter.start_with_full_snapshot = false;
    let mut backup = BackupOptions::new(
        snapshotter,
        opts.gc.clone(),
        opts.gc_period,
        opts.defrag_schedule.clone(),
    );
    backup.events = crate::metrics::events();
    if let Some(schedule) = &opts.verify_schedule {
        let mut verify =
            etcdbr::verify::VerifyOptions::new(opts.initialize.restore.temp_dir.clone());
        verify.max_fetchers = opts.initialize.restore.max_fetchers;
        backup.verify = Some((schedule.clone(), verify));
    }
    if let Some(leases) = &shared.leases
        && let Some(observer) = leases.snapshot_observer(&store, &token).await
    {
        backup.events = backup.events.with(observer);
    }
    backup.secondary =
        opts.secondary
            .as_ref()
            .and_then(|secondary| match SnapStore::open(&secondary.store) {
                Ok(store) => Some(Secondary {
                    store,
                    sync_period: secondary.sync_period,
                }),
                Err(e) => {
                    tracing::error!(
                        "Cannot open the secondary store; backups are not synced there: {}",
                        error_chain(&e)
                    );
                    None
                }
            });
    let service = BackupService::new(opts.etcd.clone(), store, backup);
    shared.set_snapshotter(Some(service.handle()));
    shared.set_health(200);
    if let Err(e) = service.run(token.clone()).await {
        tracing::error!("Snapshotter stopped: {}", error_chain(&e));
    }
    shared.set_snapshotter(None);
    token.cancel();
    tracing::info!("Snapshotter stopped.");
}

//! What the HTTP handlers and the election loop share: the `/healthz` status, the
//! initialization state machine, the leader's snapshotter handle, and the store.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Mutex, RwLock};

use etcdbr::etcd::EtcdOptions;
use etcdbr::initialize::InitializeOptions;
use etcdbr::snapshotter::SnapshotterHandle;
use snapstore::SnapStore;

use crate::ServerOptions;

/// The initialization states of the original, as `/initialization/status` spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitStatus {
    /// Nothing started (or a final state was read).
    New,
    /// Validating or restoring.
    Progress,
    /// Done: the data directory is valid (or was restored).
    Successful,
    /// Done: it failed.
    Failed,
}

impl InitStatus {
    /// The status text.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            InitStatus::New => "New",
            InitStatus::Progress => "Progress",
            InitStatus::Successful => "Successful",
            InitStatus::Failed => "Failed",
        }
    }
}

/// State shared by the HTTP API and the election loop.
#[derive(Debug)]
pub struct Shared {
    health: AtomicU16,
    init: Mutex<InitStatus>,
    snapshotter: RwLock<Option<SnapshotterHandle>>,
    /// The backup store, when one is configured.
    pub store: Option<SnapStore>,
    /// How to reach etcd.
    pub etcd: EtcdOptions,
    /// How initialization validates and restores.
    pub initialize: InitializeOptions,
    /// This server's port (a follower forwards to the same port on the leader's host).
    pub port: u16,
    /// Whether this server (and so every sidecar) serves HTTPS.
    pub tls: bool,
    /// The etcd configuration file `/config` renders.
    pub etcd_conf: std::path::PathBuf,
    /// The Kubernetes client of the Leases, when any is kept.
    pub(crate) leases: Option<crate::leases::Leases>,
    /// One `/snapshot/full` request at a time.
    pub(crate) full_requests: std::sync::Arc<tokio::sync::Semaphore>,
    /// One `/snapshot/delta` request at a time.
    pub(crate) delta_requests: std::sync::Arc<tokio::sync::Semaphore>,
    /// With `--server-client-ca`, the certificate and key a follower presents when it forwards
    /// to the leader's sidecar (its own server certificate).
    pub(crate) client_identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl Shared {
    /// Fresh state: `/healthz` 503, initialization `New`, no snapshotter.
    #[must_use]
    pub(crate) fn new(
        opts: &ServerOptions,
        store: Option<SnapStore>,
        leases: Option<crate::leases::Leases>,
    ) -> Shared {
        Shared {
            health: AtomicU16::new(503),
            init: Mutex::new(InitStatus::New),
            snapshotter: RwLock::new(None),
            store,
            etcd: opts.etcd.clone(),
            initialize: opts.initialize.clone(),
            port: opts.port,
            tls: opts.tls.is_some(),
            etcd_conf: opts.etcd_conf.clone(),
            leases,
            full_requests: std::sync::Arc::new(tokio::sync::Semaphore::new(1)),
            delta_requests: std::sync::Arc::new(tokio::sync::Semaphore::new(1)),
            client_identity: opts.auth.client_ca.as_ref().and(opts.tls.clone()),
        }
    }

    /// The `/healthz` status code.
    #[must_use]
    pub fn health(&self) -> u16 {
        self.health.load(Ordering::SeqCst)
    }

    /// Sets the `/healthz` status code.
    pub fn set_health(&self, code: u16) {
        self.health.store(code, Ordering::SeqCst);
    }

    /// The leader's snapshotter, when this sidecar leads.
    #[must_use]
    pub fn snapshotter(&self) -> Option<SnapshotterHandle> {
        self.snapshotter.read().ok().and_then(|s| s.clone())
    }

    /// Installs or removes the snapshotter handle.
    pub fn set_snapshotter(&self, h: Option<SnapshotterHandle>) {
        if let Ok(mut s) = self.snapshotter.write() {
            *s = h;
        }
    }

    /// Moves `New` to `Progress`; false when initialization already ran or runs.
    pub fn start_initialization(&self) -> bool {
        let mut s = self
            .init
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *s == InitStatus::New {
            *s = InitStatus::Progress;
            true
        } else {
            false
        }
    }

    /// Whether initialization is running (`/healthz` stays 503 meanwhile).
    #[must_use]
    pub fn initializing(&self) -> bool {
        *self
            .init
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            == InitStatus::Progress
    }

    /// Records the end of initialization.
    pub fn finish_initialization(&self, ok: bool) {
        let mut s = self
            .init
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *s = if ok {
            InitStatus::Successful
        } else {
            InitStatus::Failed
        };
    }

    /// The status, resetting a final one to `New` as the original does on read.
    pub fn read_initialization(&self) -> InitStatus {
        let mut s = self
            .init
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = *s;
        if matches!(now, InitStatus::Successful | InitStatus::Failed) {
            *s = InitStatus::New;
        }
        now
    }
}

//! The Kubernetes Leases etcd-druid reads, written beside the engine rather than inside it.
//!
//! - [`client`]: a Kubernetes client from `KUBECONFIG` (development) or the pod's service
//!   account (in-cluster), in the namespace `POD_NAMESPACE` names.
//! - [`lease`]: reading and renewing one Lease: a revision that is never lowered (the snapshot
//!   Leases, written with optimistic locking and retried on conflict) or a heartbeat.
//! - [`snapshot`]: [`SnapshotLeases`], an engine [`etcdbr::events::Observer`] that keeps the full
//!   and delta snapshot Leases at the store's latest revisions, written by a task of its own so
//!   that an unreachable API server never slows or fails a backup.
//! - [`member`]: the member Lease heartbeat: `<memberID>:<clusterID>:<Leader|Member>` from
//!   etcd's status, renewed every period, and not renewed while etcd cannot say.

pub mod client;
mod error;
pub mod lease;
pub mod member;
pub mod snapshot;

pub use client::Kube;
pub use error::Error;
pub use lease::{LeaseApi, Renewal};
pub use member::{MemberHeartbeat, member_identity};
pub use snapshot::{SnapshotLeaseNames, SnapshotLeases};

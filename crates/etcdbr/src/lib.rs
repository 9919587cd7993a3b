//! The etcdbr engine: everything between etcd and the object store.
//!
//! - [`service`]: the snapshotter, GC, defragmentation and secondary sync, run together.
//! - [`snapshotter`]: full snapshots on a cron schedule and delta snapshots in between.
//! - [`initialize`]: validate a data directory and restore it when invalid.
//! - [`restore`]: the latest backup set into a data directory, natively.
//! - [`compact`]: the latest backup set folded into one new full snapshot, natively.
//! - [`copy`]: backups from one store to another.
//! - [`compress`]: the gzip, zlib and LZW codecs and their name suffixes.
//! - [`delta_format`]: the delta snapshot JSON with its sha256 trailer.
//! - [`gc`]: the Exponential and LimitBased retention policies as pure plans.
//! - [`defrag`]: scheduled defragmentation of every member.
//! - [`etcd`]: connecting to etcd with the original's flags.
//! - [`schedule`]: cron schedules.
//! - [`events`]: what the engine tells its observers (metrics, Leases, progress).

pub mod backoff;
pub mod compact;
pub mod compress;
pub mod copy;
pub mod defrag;
pub mod delta_format;
mod error;
pub mod etcd;
pub mod events;
pub mod gc;
pub mod initialize;
pub mod member;
mod pipe;
pub mod restore;
pub mod schedule;
pub mod service;
pub mod snapshotter;
mod trailer;
pub mod verify;

pub use error::{Error, RestoreFailure, Result, error_chain};

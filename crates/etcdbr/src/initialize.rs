//! `initialize`: validate the data directory and restore it when it is not valid, with the
//! original's decisions.
//!
//! A valid data dir is kept. A wrong volume, a db locked by another process, or an unknown
//! status is an error. Anything else is restored: from the store's latest backup set into
//! `<data-dir>.part`, then swapped in. With no store, or an empty one, there is nothing to
//! restore from: a missing or empty data dir is left for etcd to bootstrap, but one holding
//! data is kept and initialization fails saying why, so that the operator decides (the
//! original removes it, and with it data that etcd may still be able to start from).
//!
//! In a multi-member cluster ([`InitializeOptions::member`]), a member the running cluster does
//! not list is a scale-up: its data dir is wiped and it is added as a learner, without
//! validation. A listed member whose data dir is not valid is replaced rather than restored:
//! removed from the cluster, wiped, and added back as a learner that copies the data from the
//! leader (a restore would fork it from the others). A cluster that cannot be reached is being
//! bootstrapped, and its members are validated and restored as single members.

use std::path::PathBuf;

use etcd_datadir::layout;
use etcd_datadir::validate::{
    Action, DataDirStatus, Validation, ValidationInput, decide, validate,
};
use snapstore::SnapStore;

use crate::error::{Error, Result};
use crate::events::{Event, Events};
use crate::member::MemberControl;
use crate::restore::{RestoreOptions, build_part, swap_in};

/// The validation modes (`--validation-mode`, `/initialization/start?mode=`).
pub use etcd_datadir::validate::ValidationMode;

/// Inputs of [`initialize`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct InitializeOptions {
    /// Where and how to restore (its `data_dir` is the one validated).
    pub restore: RestoreOptions,
    /// `--validation-mode`.
    pub mode: ValidationMode,
    /// `POD_NAMESPACE`, for the wrong-volume guard.
    pub namespace: Option<String>,
    /// `--snapstore-temp-directory`, emptied and recreated at the end unless it is `/tmp`.
    pub snapstore_temp_dir: Option<PathBuf>,
    /// This member and its cluster when the etcd configuration names several members: the
    /// multi-member decisions apply.
    pub member: Option<MemberControl>,
    /// Who hears about validation and restoration.
    pub events: Events,
}

impl InitializeOptions {
    /// Options validating and restoring `restore.data_dir` in `mode`.
    #[must_use]
    pub fn new(restore: RestoreOptions, mode: ValidationMode) -> InitializeOptions {
        InitializeOptions {
            restore,
            mode,
            namespace: None,
            snapstore_temp_dir: None,
            member: None,
            events: Events::none(),
        }
    }
}

/// What [`initialize`] found and did.
#[derive(Debug, Clone)]
pub struct InitializeReport {
    /// The validation verdict.
    pub validation: Validation,
    /// The action the verdict called for.
    pub action: Action,
    /// What was done.
    pub outcome: Outcome,
}

/// What [`initialize`] did to the data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Kept as it was (valid).
    Kept,
    /// Restored from the store.
    Restored,
    /// Nothing to restore from and no data in it: left for etcd to bootstrap a new member.
    Bootstrap,
    /// Wiped, and the member (re)added to its cluster as a learner.
    Learner,
}

impl Outcome {
    /// For logs.
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            Outcome::Kept => "data directory kept",
            Outcome::Restored => "data directory restored",
            Outcome::Bootstrap => "no backup and no data: etcd bootstraps a new member",
            Outcome::Learner => "member (re)added to its cluster as a learner",
        }
    }
}

/// Why initialization refuses to go on.
#[derive(Debug, thiserror::Error)]
#[error("won't initialize etcd: {status:?}: {reason}")]
pub struct InitializeRefused {
    /// The status.
    pub status: DataDirStatus,
    /// Why.
    pub reason: String,
}

/// Validates and, when needed, restores the data directory.
///
/// # Errors
/// A refusal ([`Error::Refused`]), or a failed restore.
pub async fn initialize(
    store: Option<&SnapStore>,
    opts: &InitializeOptions,
) -> Result<InitializeReport> {
    let data_dir = opts.restore.data_dir.clone();
    let member = opts.member.as_ref().filter(|m| m.cluster_size > 1);
    let mut member_was_running = false;
    if let Some(m) = member {
        match m.is_member_in_cluster().await {
            Ok(true) => member_was_running = true,
            Ok(false) => {
                tracing::info!("Cluster scale-up detected: adding {} as a learner", m.name);
                m.add_learner_with_retry(&data_dir).await?;
                return Ok(InitializeReport {
                    validation: Validation::new(
                        DataDirStatus::NotExist,
                        "scale-up: the data dir was wiped and the member added as a learner",
                    ),
                    action: Action::Restore,
                    outcome: Outcome::Learner,
                });
            }
            Err(e) => tracing::info!(
                "The cluster cannot be reached ({}): no scale-up; validating as a bootstrap",
                crate::snapshotter::error_chain(&e)
            ),
        }
    }
    let latest = match store {
        Some(s) => s
            .latest_set()
            .await?
            .last_revision()
            .map(etcdbr_types::Revision::get),
        None => None,
    };
    let input = ValidationInput {
        data_dir: data_dir.clone(),
        mode: opts.mode,
        namespace: opts.namespace.clone(),
        store_configured: store.is_some(),
        latest_backup_revision: latest,
        cluster_size: member.map_or(1, |m| m.cluster_size),
    };
    tracing::info!(
        "Validating the data directory {} ({:?} mode)...",
        data_dir.display(),
        opts.mode
    );
    let validation_started = std::time::Instant::now();
    let validation = tokio::task::spawn_blocking(move || validate(&input))
        .await
        .map_err(|e| Error::Io {
            what: "validation".into(),
            source: std::io::Error::other(e),
        })?;
    opts.events.emit(&Event::Validated {
        took: validation_started.elapsed(),
        ok: decide(validation.status) != Action::Fail,
    });
    let action = decide(validation.status);
    tracing::info!(
        "Data directory status: {:?}: {}",
        validation.status,
        validation.reason
    );
    // A cluster member whose data cannot be trusted is replaced, not restored.
    let replace = member.filter(|_| {
        member_was_running
            || matches!(
                validation.status,
                DataDirStatus::InvalidInMultiNode | DataDirStatus::Corrupt
            )
    });
    let outcome = match (action, replace) {
        (Action::Keep, _) => Outcome::Kept,
        (Action::Fail, _) => {
            return Err(InitializeRefused {
                status: validation.status,
                reason: validation.reason.clone(),
            }
            .into());
        }
        (Action::Restore, Some(m)) => {
            let started = std::time::Instant::now();
            let r = m.replace(&data_dir).await;
            opts.events.emit(&Event::Restored {
                member_replaced: true,
                took: started.elapsed(),
                ok: r.is_ok(),
            });
            r?;
            Outcome::Learner
        }
        (Action::Restore, None) => match (store, latest.is_some()) {
            (Some(store), true) => {
                let started = std::time::Instant::now();
                let r = restore(store, opts).await;
                opts.events.emit(&Event::Restored {
                    member_replaced: false,
                    took: started.elapsed(),
                    ok: r.is_ok(),
                });
                r?;
                Outcome::Restored
            }
            _ => nothing_to_restore_from(&data_dir, &validation)?,
        },
    };
    if let Some(tmp) = opts
        .snapstore_temp_dir
        .as_ref()
        .filter(|t| t.as_os_str() != "/tmp" && !t.as_os_str().is_empty())
    {
        let _ = std::fs::remove_dir_all(tmp);
        std::fs::create_dir_all(tmp)
            .map_err(Error::io(format!("cannot create {}", tmp.display())))?;
    }
    Ok(InitializeReport {
        validation,
        action,
        outcome,
    })
}

/// An invalid data dir and no backup: a missing or empty one is for etcd to bootstrap; one
/// holding data is never deleted (etcd may start from it, or an operator may want it).
fn nothing_to_restore_from(dir: &std::path::Path, validation: &Validation) -> Result<Outcome> {
    let empty = match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(_) => false,
    };
    if empty {
        tracing::info!(
            "No snapshot found and no data in the data directory: etcd bootstraps a new member."
        );
        return Ok(Outcome::Bootstrap);
    }
    Err(InitializeRefused {
        status: validation.status,
        reason: format!(
            "{}; the store holds no backup to restore it from, so the data directory is kept as it is: start etcd on it if it can, or move it away to start a new empty member",
            validation.reason
        ),
    }
    .into())
}

/// Restores the latest backup set into `<data-dir>.part` and swaps it in.
async fn restore(store: &SnapStore, opts: &InitializeOptions) -> Result<()> {
    let data_dir = &opts.restore.data_dir;
    let part = layout::part_dir(data_dir);
    remove_leftover(&part)?;
    tracing::info!("Finding latest set of snapshot to recover from...");
    let report = build_part(store, &opts.restore).await?;
    swap_in(&part, data_dir)?;
    tracing::info!(
        "Successfully restored the etcd data directory {} at revision {} from {} and {} deltas in {:.3}s",
        data_dir.display(),
        report.stats.revision,
        report.full.snap_name,
        report.deltas,
        report.seconds
    );
    Ok(())
}

/// Removes what an interrupted restore left at `<data-dir>.part` (a directory or, put there by
/// anything else, a file).
fn remove_leftover(part: &std::path::Path) -> Result<()> {
    let removed = match std::fs::symlink_metadata(part) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(part),
        Ok(_) => std::fs::remove_file(part),
        Err(_) => return Ok(()),
    };
    tracing::info!(
        "Removing the leftover {} of an earlier restore",
        part.display()
    );
    removed.map_err(Error::io(format!("cannot remove {}", part.display())))
}

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

use std::path::{Path, PathBuf};

use etcdbr_types::Revision;

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

/// Where this member stands in its cluster, as initialization sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// A single-member cluster (or no etcd configuration naming several members).
    Single,
    /// A multi-member cluster that lists this member.
    Listed,
    /// A multi-member cluster that does not list this member: a scale-up.
    NotListed,
    /// A multi-member cluster that cannot be reached: it is being bootstrapped.
    Unreachable,
}

/// What initialization will do, decided from what was found ([`plan`]).
#[derive(Debug)]
pub enum InitializePlan {
    /// The data dir is valid: keep it.
    Keep,
    /// Restore the latest backup set into it.
    Restore,
    /// Replace the member: remove it from the cluster, wipe the data dir, add it back as a
    /// learner (a restore would fork it from the other members).
    Replace,
    /// A scale-up: wipe the data dir and add the member as a learner, without validating.
    ScaleUp,
    /// Nothing to restore from and no data: leave it for etcd to bootstrap.
    Bootstrap,
    /// Refuse: an operator must act.
    Refuse(InitializeRefused),
}

/// The decisions of the original's initializer, as a pure function of what was found:
/// `membership`, the validation verdict (`None` only for a scale-up, which is not validated),
/// whether the store holds a backup, and whether the data dir is missing or empty.
#[must_use]
pub fn plan(
    membership: Membership,
    validation: Option<&Validation>,
    has_backup: bool,
    data_dir_empty: bool,
) -> InitializePlan {
    if membership == Membership::NotListed {
        return InitializePlan::ScaleUp;
    }
    let Some(v) = validation else {
        return InitializePlan::Refuse(InitializeRefused {
            status: DataDirStatus::Unknown,
            reason: "the data directory was not validated".into(),
        });
    };
    let refuse = |reason: String| {
        InitializePlan::Refuse(InitializeRefused {
            status: v.status,
            reason,
        })
    };
    match decide(v.status) {
        Action::Keep => InitializePlan::Keep,
        Action::Fail => refuse(v.reason.clone()),
        Action::Restore => {
            // A cluster member whose data cannot be trusted is replaced, not restored.
            let replace = membership == Membership::Listed
                || (membership != Membership::Single
                    && matches!(
                        v.status,
                        DataDirStatus::InvalidInMultiNode | DataDirStatus::Corrupt
                    ));
            if replace {
                InitializePlan::Replace
            } else if has_backup {
                InitializePlan::Restore
            } else if data_dir_empty {
                InitializePlan::Bootstrap
            } else {
                refuse(format!(
                    "{}; the store holds no backup to restore it from, so the data directory is kept as it is: start etcd on it if it can, or move it away to start a new empty member",
                    v.reason
                ))
            }
        }
    }
}

/// Validates and, when needed, restores the data directory: finds the member's standing and
/// the data dir's state, [`plan`]s, then carries the plan out.
///
/// # Errors
/// A refusal ([`Error::Refused`]), or a failed restore or membership change.
pub async fn initialize(
    store: Option<&SnapStore>,
    opts: &InitializeOptions,
) -> Result<InitializeReport> {
    let data_dir = &opts.restore.data_dir;
    let member = opts.member.as_ref().filter(|m| m.cluster_size > 1);
    let membership = membership(member).await;
    let (validation, has_backup) = if membership == Membership::NotListed {
        let v = Validation::new(
            DataDirStatus::NotExist,
            "scale-up: the data dir was wiped and the member added as a learner",
        );
        (v, false)
    } else {
        let latest = match store {
            Some(s) => s.latest_set().await?.last_revision(),
            None => None,
        };
        (
            validate_data_dir(opts, store.is_some(), latest, member).await?,
            latest.is_some(),
        )
    };
    let validated = (membership != Membership::NotListed).then_some(&validation);
    let step = plan(membership, validated, has_backup, is_empty(data_dir));
    tracing::info!("Initialization plan: {step:?}");
    let outcome = execute(step, store, opts, member).await?;
    clean_temp_dir(opts)?;
    Ok(InitializeReport {
        action: decide(validation.status),
        validation,
        outcome,
    })
}

/// Asks the cluster whether it lists this member.
async fn membership(member: Option<&MemberControl>) -> Membership {
    let Some(m) = member else {
        return Membership::Single;
    };
    match m.is_member_in_cluster().await {
        Ok(true) => Membership::Listed,
        Ok(false) => {
            tracing::info!("Cluster scale-up detected: {} is not a member yet", m.name);
            Membership::NotListed
        }
        Err(e) => {
            tracing::info!(
                "The cluster cannot be reached ({}): no scale-up; validating as a bootstrap",
                crate::error_chain(&e)
            );
            Membership::Unreachable
        }
    }
}

/// Validates the data dir (on a blocking thread), reporting the verdict.
async fn validate_data_dir(
    opts: &InitializeOptions,
    store_configured: bool,
    latest_backup_revision: Option<Revision>,
    member: Option<&MemberControl>,
) -> Result<Validation> {
    let input = ValidationInput {
        data_dir: opts.restore.data_dir.clone(),
        mode: opts.mode,
        namespace: opts.namespace.clone(),
        store_configured,
        latest_backup_revision,
        cluster_size: member.map_or(1, |m| m.cluster_size),
    };
    tracing::info!(
        "Validating the data directory {} ({:?} mode)...",
        input.data_dir.display(),
        opts.mode
    );
    let started = std::time::Instant::now();
    let validation = tokio::task::spawn_blocking(move || validate(&input))
        .await
        .map_err(|e| Error::Io {
            what: "validation".into(),
            source: std::io::Error::other(e),
        })?;
    opts.events.emit(&Event::Validated {
        took: started.elapsed(),
        ok: decide(validation.status) != Action::Fail,
    });
    tracing::info!(
        "Data directory status: {:?}: {}",
        validation.status,
        validation.reason
    );
    Ok(validation)
}

/// Carries a plan out.
async fn execute(
    step: InitializePlan,
    store: Option<&SnapStore>,
    opts: &InitializeOptions,
    member: Option<&MemberControl>,
) -> Result<Outcome> {
    let data_dir = &opts.restore.data_dir;
    match (step, member, store) {
        (InitializePlan::Keep, ..) => Ok(Outcome::Kept),
        (InitializePlan::Refuse(why), ..) => Err(why.into()),
        (InitializePlan::Bootstrap, ..) => {
            tracing::info!(
                "No snapshot found and no data in the data directory: etcd bootstraps a new member."
            );
            Ok(Outcome::Bootstrap)
        }
        (InitializePlan::ScaleUp, Some(m), _) => {
            tracing::info!("Adding {} to the cluster as a learner", m.name);
            m.add_learner_with_retry(data_dir).await?;
            Ok(Outcome::Learner)
        }
        (InitializePlan::Replace, Some(m), _) => {
            let started = std::time::Instant::now();
            let r = m.replace(data_dir).await;
            opts.events.emit(&Event::Restored {
                member_replaced: true,
                took: started.elapsed(),
                ok: r.is_ok(),
            });
            r.map(|()| Outcome::Learner)
        }
        (InitializePlan::Restore, _, Some(store)) => {
            let started = std::time::Instant::now();
            let r = restore(store, opts).await;
            opts.events.emit(&Event::Restored {
                member_replaced: false,
                took: started.elapsed(),
                ok: r.is_ok(),
            });
            r.map(|()| Outcome::Restored)
        }
        // A replace or scale-up is only planned for a cluster member, a restore only with a
        // backup (so a store).
        (step, ..) => Err(InitializeRefused {
            status: DataDirStatus::Unknown,
            reason: format!("initialization planned {step:?} without the member or store it needs"),
        }
        .into()),
    }
}

/// Whether `dir` is missing or holds nothing.
fn is_empty(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Empties and recreates `--snapstore-temp-directory` (unless it is `/tmp`), as the original.
fn clean_temp_dir(opts: &InitializeOptions) -> Result<()> {
    if let Some(tmp) = opts
        .snapstore_temp_dir
        .as_ref()
        .filter(|t| t.as_os_str() != "/tmp" && !t.as_os_str().is_empty())
    {
        let _ = std::fs::remove_dir_all(tmp);
        std::fs::create_dir_all(tmp)
            .map_err(Error::io(format!("cannot create {}", tmp.display())))?;
    }
    Ok(())
}

/// Restores the latest backup set into `<data-dir>.part` and swaps it in.
async fn restore(store: &SnapStore, opts: &InitializeOptions) -> Result<()> {
    let data_dir = &opts.restore.data_dir;
    let part = layout::part_dir(data_dir);
    remove_leftover(&part)?;
    tracing::info!("Finding latest set of snapshot to recover from...");
    let restore = RestoreOptions {
        events: opts.events.clone(),
        ..opts.restore.clone()
    };
    let report = build_part(store, &restore).await?;
    swap_in(&part, data_dir)?;
    tracing::info!(
        "Successfully restored the etcd data directory {} at revision {} from {} and {} deltas in {:.3}s",
        data_dir.display(),
        report.stats.revision.get(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn v(status: DataDirStatus) -> Validation {
        Validation::new(status, "why")
    }

    fn name(p: &InitializePlan) -> &'static str {
        match p {
            InitializePlan::Keep => "keep",
            InitializePlan::Restore => "restore",
            InitializePlan::Replace => "replace",
            InitializePlan::ScaleUp => "scale-up",
            InitializePlan::Bootstrap => "bootstrap",
            InitializePlan::Refuse(_) => "refuse",
        }
    }

    #[test]
    fn plans_as_the_original_decides_but_never_deletes_data() {
        use DataDirStatus as S;
        use Membership as M;
        // (membership, status, has backup, data dir empty) -> plan
        let table = [
            (M::Single, S::Valid, true, false, "keep"),
            (M::Single, S::NotExist, true, true, "restore"),
            (M::Single, S::Corrupt, true, false, "restore"),
            (
                M::Single,
                S::RevisionConsistencyError,
                true,
                false,
                "restore",
            ),
            (M::Single, S::NotExist, false, true, "bootstrap"),
            (M::Single, S::InvalidStructure, false, true, "bootstrap"),
            (M::Single, S::Corrupt, false, false, "refuse"),
            (M::Single, S::InvalidStructure, false, false, "refuse"),
            (M::Single, S::WrongVolumeMounted, true, false, "refuse"),
            (M::Single, S::FailToOpenBoltDb, true, false, "refuse"),
            (M::Single, S::Unknown, true, false, "refuse"),
            (M::Listed, S::Valid, true, false, "keep"),
            (M::Listed, S::NotExist, true, true, "replace"),
            (M::Listed, S::Corrupt, false, false, "replace"),
            (M::Unreachable, S::InvalidInMultiNode, true, true, "replace"),
            (M::Unreachable, S::Corrupt, true, false, "replace"),
            (M::Unreachable, S::NotExist, true, true, "restore"),
            (M::Unreachable, S::NotExist, false, true, "bootstrap"),
            (M::Unreachable, S::WrongVolumeMounted, true, false, "refuse"),
        ];
        for (m, status, backup, empty, want) in table {
            let got = plan(m, Some(&v(status)), backup, empty);
            assert_eq!(
                name(&got),
                want,
                "{m:?} {status:?} backup={backup} empty={empty}"
            );
        }
        // A scale-up is planned without validating.
        assert_eq!(name(&plan(M::NotListed, None, true, false)), "scale-up");
        // A refusal for want of a backup keeps the validator's reason and says what to do.
        let InitializePlan::Refuse(r) = plan(M::Single, Some(&v(S::Corrupt)), false, false) else {
            panic!("not refused");
        };
        assert!(
            r.reason.starts_with("why; the store holds no backup"),
            "{}",
            r.reason
        );
    }
}

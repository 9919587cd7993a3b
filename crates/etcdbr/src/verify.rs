//! `verify`: proves that backup sets restore, before the day they are needed, without touching
//! any data directory.
//!
//! For each chosen set: every object the restore needs is downloaded, decompressed and its
//! sha256 checked (and the other deltas of the set too), the chain is checked for gaps, the set is
//! restored natively into scratch space below the temp dir, the restored db is checked page by
//! page, and its native `hashkv`, revision and key count are reported. With a live etcd, the
//! `hashkv` is compared with the live one at the restored revision when etcd still has it. The
//! scratch space is removed afterwards: disk holds one restored db at a time.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;
use etcd_datadir::restore::DataDirFormat;
use etcdbr_types::Revision;
use snapstore::{Plan, SelectError, Selection, SnapStore, Snapshot, Stop};

use crate::error::{Error, RestoreFailure, Result, error_chain};
use crate::etcd::EtcdOptions;
use crate::events::{Event, Events};
use crate::restore::{RestoreOptions, build_planned, for_each_delta_event, plan};

/// Which sets to verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// What a plain restore would restore (the default).
    Latest,
    /// Every set of the store's history.
    All,
    /// One set, or one point in it.
    Selected(Selection),
}

/// How to verify.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VerifyOptions {
    /// The sets.
    pub scope: Scope,
    /// Scratch space for the restored db and the downloaded deltas (removed afterwards).
    pub temp_dir: PathBuf,
    /// Deltas downloaded ahead of the one being applied.
    pub max_fetchers: usize,
    /// Compare with this etcd's `hashkv` at the restored revision, when it still has it.
    pub live: Option<EtcdOptions>,
    /// Who hears about it ([`Event::Verified`] per run, restore progress per set).
    pub events: Events,
}

impl VerifyOptions {
    /// Options verifying the latest set, with scratch space in `temp_dir`.
    #[must_use]
    pub fn new(temp_dir: PathBuf) -> VerifyOptions {
        VerifyOptions {
            scope: Scope::Latest,
            temp_dir,
            max_fetchers: 6,
            live: None,
            events: Events::none(),
        }
    }
}

/// What kind of problem a bad set has; the metrics count failures by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// An object is damaged: it does not decompress, its sha256 does not match, its content is
    /// not what its name says.
    Corrupt,
    /// The chain is broken: revisions no delta holds, or a history that cannot be told.
    Chain,
    /// The restored database fails the page-by-page check.
    Database,
    /// The restored `hashkv` differs from the live etcd's at the same revision.
    Mismatch,
    /// The store failed (listing, an object that cannot be read).
    Store,
    /// The set differs from its signed manifest: an object was removed, replaced or added.
    Tampered,
    /// Anything else (scratch disk, the live etcd).
    Other,
}

impl FailureKind {
    /// The name in metrics labels and JSON.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Corrupt => "corrupt",
            FailureKind::Chain => "chain",
            FailureKind::Database => "database",
            FailureKind::Mismatch => "mismatch",
            FailureKind::Store => "store",
            FailureKind::Tampered => "tampered",
            FailureKind::Other => "other",
        }
    }
}

/// Why a set is bad.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The kind.
    pub kind: FailureKind,
    /// The object at fault, when one is.
    pub object: Option<String>,
    /// What is wrong, with its causes.
    pub message: String,
}

/// The comparison with the live etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Live {
    /// No endpoint was given.
    NotAsked,
    /// The live `hashkv` at the restored revision is the restored one.
    Matched,
    /// Not compared, and why (etcd compacted the revision, or has not reached it).
    Skipped(String),
}

/// The verdict on one set.
#[derive(Debug, Clone)]
pub struct SetReport {
    /// The set's full snapshot (or, when the store has none, empty).
    pub full: String,
    /// Deltas applied.
    pub deltas: usize,
    /// Objects downloaded and checked.
    pub objects: usize,
    /// The restored revision.
    pub revision: Option<Revision>,
    /// The restored state's `hashkv` at that revision.
    pub hash: Option<u32>,
    /// Keys alive at that revision.
    pub keys: Option<u64>,
    /// The live comparison.
    pub live: Live,
    /// How long this set took.
    pub took: Duration,
    /// Why the set is bad; `None`: verified.
    pub failure: Option<Failure>,
}

impl SetReport {
    /// Whether the set verified.
    #[must_use]
    pub fn ok(&self) -> bool {
        self.failure.is_none()
    }
}

/// Verifies the sets of `opts.scope`; one report per set. Failures of a set are in its report
/// (and reported as [`Event::Verified`]); the `Err` case is only for what stops verifying at all.
///
/// # Errors
/// The store cannot be listed, or the selection names nothing in it.
pub async fn verify(store: &SnapStore, opts: &VerifyOptions) -> Result<Vec<SetReport>> {
    let started = Instant::now();
    let plans = match plans(store, &opts.scope).await {
        Ok(p) => p,
        Err(e) => {
            // A store whose chain is broken is a bad backup, not a usage error.
            if let Some(failure) = classify_chain(&e) {
                let report = SetReport {
                    full: String::new(),
                    deltas: 0,
                    objects: 0,
                    revision: None,
                    hash: None,
                    keys: None,
                    live: Live::NotAsked,
                    took: started.elapsed(),
                    failure: Some(failure),
                };
                emit(opts, std::slice::from_ref(&report), started.elapsed());
                return Ok(vec![report]);
            }
            return Err(e);
        }
    };
    let created_temp_dir = !opts.temp_dir.exists();
    let mut reports = Vec::new();
    for plan in plans {
        reports.push(verify_set(store, opts, plan).await);
    }
    if created_temp_dir {
        let _ = std::fs::remove_dir(&opts.temp_dir);
    }
    emit(opts, &reports, started.elapsed());
    Ok(reports)
}

fn emit(opts: &VerifyOptions, reports: &[SetReport], took: Duration) {
    let failure = reports.iter().find_map(|r| r.failure.as_ref());
    opts.events.emit(&Event::Verified {
        sets: reports.len(),
        failure: failure.map(|f| f.kind.as_str()),
        took,
    });
}

async fn plans(store: &SnapStore, scope: &Scope) -> Result<Vec<Plan>> {
    match scope {
        Scope::Latest => Ok(vec![plan(store, &Selection::latest()).await?]),
        Scope::Selected(s) => Ok(vec![plan(store, s).await?]),
        Scope::All => {
            let listing = store.list().await?;
            let sets = snapstore::select::history(&listing)
                .map_err(|e| Error::from(RestoreFailure::from(e)))?;
            if sets.is_empty() {
                return Err(RestoreFailure::NoFullSnapshot.into());
            }
            let mut out = Vec::new();
            for set in sets.iter().rev() {
                let name = set.full.as_ref().map(|f| f.snap_name.clone());
                let selection = Selection {
                    snapshot: name,
                    ..Selection::default()
                };
                match snapstore::select::plan(&listing, &selection) {
                    Ok(p) => out.push(p),
                    // A gap is this set's verdict, found again when it is verified.
                    Err(SelectError::Chain(_)) => out.push(Plan {
                        set: set.clone(),
                        chain: Vec::new(),
                        stop: Stop::End,
                    }),
                    Err(e) => return Err(Error::Store(e.into())),
                }
            }
            Ok(out)
        }
    }
}

async fn verify_set(store: &SnapStore, opts: &VerifyOptions, plan: Plan) -> SetReport {
    let started = Instant::now();
    let full = plan.full().snap_name.clone();
    let mut report = SetReport {
        full: full.clone(),
        deltas: 0,
        objects: 1 + plan.chain.len(),
        revision: None,
        hash: None,
        keys: None,
        live: Live::NotAsked,
        took: Duration::ZERO,
        failure: None,
    };
    tracing::info!(
        "Verifying the backup set of {full} ({} deltas)",
        plan.chain.len()
    );
    let outcome = check_set(store, opts, plan, &mut report).await;
    report.took = started.elapsed();
    match outcome {
        Ok(()) => tracing::info!(
            "Verified the backup set of {full}: revision {}, hashkv {}, {} keys, in {:.3}s",
            report.revision.map_or(0, Revision::get),
            report.hash.unwrap_or(0),
            report.keys.unwrap_or(0),
            report.took.as_secs_f64()
        ),
        Err(f) => {
            tracing::error!(
                "The backup set of {full} is bad: {}{}",
                f.object
                    .as_ref()
                    .map(|o| format!("{o}: "))
                    .unwrap_or_default(),
                f.message
            );
            report.failure = Some(f);
        }
    }
    report
}

async fn check_set(
    store: &SnapStore,
    opts: &VerifyOptions,
    plan: Plan,
    report: &mut SetReport,
) -> std::result::Result<(), Failure> {
    // A gap the plan did not see (a set planned whole for `--all`).
    if plan.stop == Stop::End
        && let Err(e) = plan.set.chain()
    {
        return Err(classify(&Error::from(RestoreFailure::from(e))));
    }
    let other = |what: &str, e: std::io::Error| Failure {
        kind: FailureKind::Other,
        object: None,
        message: format!("{what}: {e}"),
    };
    // Sets planned whole for `--all` are not checked against their manifests yet.
    store
        .check_plan(&plan)
        .await
        .map_err(|e| classify(&Error::from(e)))?;
    std::fs::create_dir_all(&opts.temp_dir).map_err(|e| other("cannot create the temp dir", e))?;
    let scratch = tempfile::Builder::new()
        .prefix("etcdbr-verify-")
        .tempdir_in(&opts.temp_dir)
        .map_err(|e| other("cannot create scratch space", e))?;
    let mut restore = RestoreOptions::new(scratch.path().join("data"));
    restore.temp_dir = scratch.path().join("fetch");
    restore.max_fetchers = opts.max_fetchers;
    restore.format = DataDirFormat::V35;
    restore.durable = false;
    restore.events = opts.events.clone();
    let covered = covered_deltas(&plan);
    let built = build_planned(store, &restore, plan, Utc::now())
        .await
        .map_err(|e| classify(&e))?;
    report.deltas = built.deltas;
    for d in &covered {
        for_each_delta_event(store, d, (), |(), _| Ok(()))
            .await
            .map_err(|e| classify(&e))?;
        report.objects += 1;
    }
    let part = etcd_datadir::layout::part_dir(&restore.data_dir);
    let db_path = etcd_datadir::layout::db_path(&part);
    let revision = built.stats.revision;
    let checked = tokio::task::spawn_blocking(move || inspect(&db_path, revision.get()))
        .await
        .map_err(|e| other("the database check", std::io::Error::other(e)))??;
    report.revision = Some(revision);
    report.hash = Some(checked.hash);
    report.keys = Some(checked.keys);
    if let Some(etcd) = &opts.live {
        report.live = compare_live(etcd, revision, &checked).await?;
    }
    Ok(())
}

/// The set's deltas a restore to its end does not apply (duplicates, deltas inside others): they
/// are checked too, as a later restore may need them if another copy goes bad.
fn covered_deltas(plan: &Plan) -> Vec<Snapshot> {
    if plan.stop != Stop::End || plan.chain.is_empty() {
        return Vec::new();
    }
    plan.set
        .deltas
        .iter()
        .filter(|d| !plan.chain.iter().any(|s| s.snapshot == **d))
        .filter(|d| {
            d.last_revision
                <= plan
                    .chain
                    .last()
                    .map_or(d.last_revision, |s| s.snapshot.last_revision)
        })
        .cloned()
        .collect()
}

/// Checks the restored db page by page; its `hashkv` and live keys at `rev`.
fn inspect(db_path: &std::path::Path, rev: i64) -> std::result::Result<Inspection, Failure> {
    let bad = |message: String| Failure {
        kind: FailureKind::Database,
        object: None,
        message,
    };
    let db =
        bbolt::Db::open(db_path).map_err(|e| bad(format!("the restored db does not open: {e}")))?;
    let findings =
        bbolt::check(&db).map_err(|e| bad(format!("the restored db cannot be checked: {e}")))?;
    if let Some(first) = findings.first() {
        return Err(bad(format!(
            "the restored db fails the page check ({} findings; the first: {first})",
            findings.len()
        )));
    }
    let (hash, _) = etcd_datadir::hashkv::hash_kv(&db, rev).map_err(|e| bad(e.to_string()))?;
    // The per-key index spills beside the restored db, in the verification's scratch space.
    let scratch = db_path.parent().unwrap_or(std::path::Path::new("."));
    let keys =
        etcd_datadir::hashkv::live_keys(&db, rev, scratch).map_err(|e| bad(e.to_string()))?;
    let compacted = etcd_datadir::compacted_revision(&db)
        .map_err(|e| bad(e.to_string()))?
        .map_or(0, Revision::get);
    Ok(Inspection {
        hash,
        keys,
        compacted,
    })
}

/// What the restored db holds.
struct Inspection {
    hash: u32,
    keys: u64,
    compacted: i64,
}

async fn compare_live(
    etcd: &EtcdOptions,
    revision: Revision,
    restored: &Inspection,
) -> std::result::Result<Live, Failure> {
    let hash = restored.hash;
    let other = |e: &Error| Failure {
        kind: FailureKind::Other,
        object: None,
        message: format!("cannot compare with the live etcd: {}", error_chain(e)),
    };
    let mut client = etcd.connect().await.map_err(|e| other(&e))?;
    let live_rev = crate::etcd::current_revision(&mut client, etcd.connection_timeout)
        .await
        .map_err(|e| other(&e))?;
    if live_rev < revision.get() {
        return Ok(Live::Skipped(format!(
            "etcd is at revision {live_rev}, below the backup's {}",
            revision.get()
        )));
    }
    match client.hash_kv(revision.get()).await {
        Ok(r) if r.hash() == hash => Ok(Live::Matched),
        // etcd hashes only what its compaction kept: a later compaction changes its hash.
        // (etcd says -1 when it never compacted.)
        Ok(r) if r.compact_version().max(0) != restored.compacted => Ok(Live::Skipped(format!(
            "etcd compacted at revision {} and the backup at {}: their hashes cover different history",
            r.compact_version().max(0),
            restored.compacted
        ))),
        Ok(r) => Err(Failure {
            kind: FailureKind::Mismatch,
            object: None,
            message: format!(
                "the restored state's hashkv at revision {} is {hash}, the live etcd's is {} (its compaction revision {}): the backup does not hold what etcd holds",
                revision.get(),
                r.hash(),
                r.compact_version()
            ),
        }),
        Err(e) if e.to_string().contains("compacted") => Ok(Live::Skipped(format!(
            "etcd has compacted revision {}",
            revision.get()
        ))),
        Err(e) => Err(other(&Error::Etcd {
            op: "hashkv",
            source: e,
        })),
    }
}

/// The object a tamper finding names.
fn tampered_object(t: &snapstore::manifest::Tamper) -> Option<String> {
    use snapstore::manifest::Tamper as T;
    match t {
        T::Missing { object, .. } | T::Foreign { object, .. } | T::Changed { object, .. } => {
            Some(object.clone())
        }
        T::Unsigned { set, .. }
        | T::NotSigned { set }
        | T::PreviousReplaced { set, .. }
        | T::WrongSet { set, .. } => Some(set.clone()),
        _ => None,
    }
}

fn classify_chain(e: &Error) -> Option<Failure> {
    matches!(
        e,
        Error::Restore(RestoreFailure::Chain(_))
            | Error::Store(snapstore::Error::Chain(_) | snapstore::Error::Tampered(_))
    )
    .then(|| classify(e))
}

/// The kind of a restore error, and the object it names.
fn classify(e: &Error) -> Failure {
    use RestoreFailure as R;
    let (kind, object) = match e {
        Error::Restore(r) => match r {
            R::MissingHash(n) | R::NotADatabase(n) | R::HashMismatch(n) => {
                (FailureKind::Corrupt, Some(n.clone()))
            }
            R::BadSize { name, .. }
            | R::Decompress { name, .. }
            | R::Delta { name, .. }
            | R::DeltaRange { name, .. } => (FailureKind::Corrupt, Some(name.clone())),
            R::Suffix(n, _) => (FailureKind::Corrupt, Some(n.clone())),
            R::Crypt(c) => match c {
                snapstore::CryptError::BadHeader { name, .. } => {
                    (FailureKind::Corrupt, Some(name.clone()))
                }
                other => (FailureKind::Other, other.object().map(str::to_owned)),
            },
            R::Chain(_) | R::TargetNotReached { .. } => (FailureKind::Chain, None),
            R::Build(_) => (FailureKind::Corrupt, None),
            _ => (FailureKind::Other, None),
        },
        Error::Store(snapstore::Error::Chain(_)) => (FailureKind::Chain, None),
        Error::Store(snapstore::Error::Tampered(t)) => (FailureKind::Tampered, tampered_object(t)),
        Error::Store(_) => (FailureKind::Store, None),
        _ => (FailureKind::Other, None),
    };
    // A fetched object whose sha256 differs from its signed entry fails as a read error.
    let (kind, object) = match find_tamper(e) {
        Some(t) => (FailureKind::Tampered, tampered_object(t).or(object)),
        None => (kind, object),
    };
    Failure {
        kind,
        object,
        message: error_chain(e),
    }
}

/// The tamper finding somewhere in `e`'s causes (io errors included).
fn find_tamper<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a snapstore::manifest::Tamper> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<snapstore::manifest::Tamper>() {
            return Some(t);
        }
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|i| i.downcast_ref::<snapstore::manifest::Tamper>())
        {
            return Some(inner);
        }
        cur = err.source();
    }
    None
}

/// Verifies on `schedule` until `stop`: the leader's `--verify-schedule`. Each run reports
/// [`Event::Verified`]; a bad backup is logged as an error, and the next run is on schedule.
pub async fn run_periodically(
    store: SnapStore,
    schedule: crate::schedule::Schedule,
    opts: VerifyOptions,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        let now = chrono::Local::now();
        let Some(next) = schedule.next_after(now) else {
            tracing::warn!(
                "Verification schedule {schedule} never fires again; verification stops"
            );
            return;
        };
        tracing::info!("Next backup verification at {next}");
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
        let run = verify(&store, &opts);
        tokio::select! {
            result = run => match result {
                Ok(reports) if reports.iter().all(SetReport::ok) => {}
                Ok(_) => tracing::error!("Backup verification found a bad backup (see above)"),
                Err(e) => {
                    opts.events.emit(&Event::Verified {
                        sets: 0,
                        failure: Some(FailureKind::Store.as_str()),
                        took: Duration::ZERO,
                    });
                    tracing::error!("Backup verification could not run: {}", error_chain(&e));
                }
            },
            () = stop.cancelled() => return,
        }
    }
}

//! `etcdbrctl verify`: prove that backups restore, without touching any data directory.
//! Exit codes: 0 every set verified, 1 a backup is bad, 2 usage (or verification could not run).

use std::path::PathBuf;

use clap::Args;
use etcdbr::verify::{Live, Scope, SetReport, VerifyOptions, verify};
use serde_json::{Value, json};

use super::list::Output;
use crate::flags::store::{StoreFlags, open_checked};
use crate::flags::target::TargetFlags;

/// Flags of `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Verify every backup set of the store, not only the latest
    #[arg(long, conflicts_with_all = ["snapshot", "restore_to_revision", "restore_to_time"])]
    all: bool,
    #[command(flatten)]
    target: TargetFlags,
    #[command(flatten)]
    live: LiveFlags,
    /// Scratch space for the restored db (one set at a time; removed afterwards)
    #[arg(long, default_value = "default.restoration.tmp")]
    restoration_temp_snapshots_dir: PathBuf,
    /// Delta snapshots downloaded ahead of the one being applied
    #[arg(long, default_value_t = 6)]
    max_fetchers: usize,
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(flatten)]
    store: StoreFlags,
}

/// The live etcd to compare with.
#[derive(Debug, Args)]
#[command(next_help_heading = "Live comparison")]
struct LiveFlags {
    /// etcd client URLs: compare the restored hashkv with etcd's at the same revision, when etcd
    /// still has that revision (not compacted); a mismatch fails the set
    #[arg(short = 'e', long, value_delimiter = ',')]
    endpoints: Vec<String>,
    /// CA bundle to verify etcd's certificate (PEM)
    #[arg(long)]
    cacert: Option<PathBuf>,
    /// Client TLS certificate file (PEM)
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Client TLS key file (PEM)
    #[arg(long)]
    key: Option<PathBuf>,
    /// etcd user name, if etcd has auth enabled
    #[arg(long, default_value = "")]
    etcd_username: String,
    /// etcd password, if etcd has auth enabled; never logged
    #[arg(long, default_value = "", hide_default_value = true)]
    etcd_password: String,
}

impl LiveFlags {
    fn to_options(&self) -> anyhow::Result<Option<etcdbr::etcd::EtcdOptions>> {
        if self.endpoints.is_empty() {
            return Ok(None);
        }
        let mut o = etcdbr::etcd::EtcdOptions::default();
        o.endpoints.clone_from(&self.endpoints);
        o.ca_file.clone_from(&self.cacert);
        o.cert_file.clone_from(&self.cert);
        o.key_file.clone_from(&self.key);
        o.insecure_transport = o.ca_file.is_none() && o.cert_file.is_none();
        o.username.clone_from(&self.etcd_username);
        o.password.clone_from(&self.etcd_password);
        o.validate()?;
        Ok(Some(o))
    }
}

/// Verifies the chosen sets and prints the verdicts; `Ok(false)` when a backup is bad.
///
/// # Errors
/// Invalid flags, or the store cannot be listed or holds nothing the flags name (usage).
pub async fn run(args: VerifyArgs) -> anyhow::Result<bool> {
    if args.max_fetchers == 0 {
        anyhow::bail!("--max-fetchers must be greater than zero");
    }
    let selection = args.target.selection();
    let mut opts = VerifyOptions::new(args.restoration_temp_snapshots_dir.clone());
    opts.scope = if args.all {
        Scope::All
    } else if selection == snapstore::Selection::latest() {
        Scope::Latest
    } else {
        Scope::Selected(selection)
    };
    opts.max_fetchers = args.max_fetchers;
    opts.live = args.live.to_options()?;
    let progress = crate::progress::Progress::new();
    opts.events = progress.events();
    let config = args.store.to_required_config()?;
    let store = open_checked(&config).await?;
    let reports = verify(&store, &opts).await?;
    // With a signing key, every set is checked against its manifest too.
    let audit = match config.keys.signing {
        Some(_) => Some(store.audit().await?),
        None => None,
    };
    drop(progress);
    let ok =
        reports.iter().all(SetReport::ok) && audit.as_ref().is_none_or(|a| a.findings.is_empty());
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "ok": ok,
                "sets": reports.iter().map(report_json).collect::<Vec<_>>(),
                "manifests": audit.as_ref().map(audit_json),
            }))?
        ),
        Output::Table => {
            print!("{}", table(&reports));
            if let Some(a) = &audit {
                print!("{}", audit_table(a));
            }
        }
    }
    Ok(ok)
}

fn audit_json(a: &snapstore::Audit) -> Value {
    json!({
        "ok": a.findings.is_empty(),
        "signedSets": a.signed_sets,
        "unsignedSets": a.unsigned_sets,
        "findings": a.findings.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "notes": a.notes,
    })
}

fn audit_table(a: &snapstore::Audit) -> String {
    let status = if a.findings.is_empty() { "OK " } else { "BAD" };
    let mut out = format!(
        "{status} manifests: {} signed sets, {} unsigned (before signing began), {} findings\n",
        a.signed_sets,
        a.unsigned_sets,
        a.findings.len()
    );
    for f in &a.findings {
        out.push_str(&format!("BAD {f}\n"));
    }
    for n in &a.notes {
        out.push_str(&format!("    note: {n}\n"));
    }
    out
}

fn live(l: &Live) -> String {
    match l {
        Live::NotAsked => "not asked".into(),
        Live::Matched => "matched".into(),
        Live::Skipped(why) => format!("skipped: {why}"),
    }
}

fn report_json(r: &SetReport) -> Value {
    json!({
        "ok": r.ok(),
        "full": r.full,
        "deltas": r.deltas,
        "objects": r.objects,
        "revision": r.revision.map(etcdbr_types::Revision::get),
        "hashkv": r.hash,
        "keys": r.keys,
        "live": live(&r.live),
        "seconds": r.took.as_secs_f64(),
        "failure": r.failure.as_ref().map(|f| json!({
            "kind": f.kind.as_str(),
            "object": f.object,
            "message": f.message,
        })),
    })
}

fn table(reports: &[SetReport]) -> String {
    let mut out = String::new();
    for r in reports {
        let status = if r.ok() { "OK " } else { "BAD" };
        let set = if r.full.is_empty() {
            "the store".to_owned()
        } else {
            r.full.clone()
        };
        match &r.failure {
            None => out.push_str(&format!(
                "{status} {set}: {} deltas, {} objects checked, revision {}, hashkv {}, {} keys, live etcd: {}, {:.1}s\n",
                r.deltas,
                r.objects,
                r.revision.map_or(0, etcdbr_types::Revision::get),
                r.hash.unwrap_or(0),
                r.keys.unwrap_or(0),
                live(&r.live),
                r.took.as_secs_f64()
            )),
            Some(f) => out.push_str(&format!(
                "{status} {set}: {}: {}{}\n",
                f.kind.as_str(),
                f.object
                    .as_ref()
                    .map(|o| format!("{o}: "))
                    .unwrap_or_default(),
                f.message
            )),
        }
    }
    out
}

//! The command line: one file per subcommand, each parsing flags, calling the engine, and
//! reporting.

pub mod compact;
pub mod copy;
pub mod initialize;
pub mod list;
pub mod restore;
pub mod server;
pub mod snapshot;
pub mod verify;

use clap::{Parser, Subcommand};

/// Continuous backup and restore for etcd: full snapshots on a schedule, delta snapshots in
/// between, stored in an object store; drop-in compatible with gardener's etcd-backup-restore.
#[derive(Debug, Parser)]
#[command(
    name = "etcdbrctl",
    disable_version_flag = true,
    propagate_version = false
)]
pub struct Cli {
    /// Print version information and exit
    #[arg(short = 'v', long = "version", global = false)]
    pub version: bool,

    /// Log level: the original's logrus numbers (4 info, 5 debug, 6 trace) or a name (error,
    /// warn, info, debug, trace); RUST_LOG, when set, wins
    #[arg(long, global = true, value_name = "LEVEL", value_parser = crate::logging::parse_level, default_value = "4")]
    pub log_level: &'static str,

    /// Log format: text (one readable line an event) or json (one object a line: time, level,
    /// message, fields)
    #[arg(long, global = true, value_enum, default_value_t = crate::logging::LogFormat::Text)]
    pub log_format: crate::logging::LogFormat,

    /// The subcommand
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands of the original.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Take full and delta snapshots of a running etcd periodically
    #[command(
        long_about = "Backs up a running etcd at regular intervals: a full snapshot on the --schedule cron, \
delta snapshots (watch events) every --delta-snapshot-period, old backups garbage-collected by \
--garbage-collection-policy. Backups go to the --storage-provider store (Local: a directory below $HOME). \
On SIGTERM or SIGINT pending events are saved as a last delta before exiting."
    )]
    Snapshot(Box<snapshot::SnapshotArgs>),
    /// Restore an etcd data directory from the latest full snapshot and its deltas, or a point in time
    #[command(
        long_about = "Builds an etcd data directory from the store's latest full snapshot and the delta snapshots \
after it (or, with --restore-to-revision, --restore-to-time or --snapshot, the state at a revision, at an \
instant, or of a chosen full snapshot; see `etcdbrctl list`), without running etcd: the snapshot's sha256 is verified, every delta's events are applied as new \
revisions (a revision gap is an error), leases present in the full snapshot stay attached, and the membership \
is rewritten for --initial-cluster. The directory is built in <data-dir>.part and renamed into place only on \
success; --data-dir must not exist. Exits non-zero when the store has no full snapshot."
    )]
    Restore(Box<restore::RestoreArgs>),
    /// Restore the latest backup set and upload it as one new full snapshot
    #[command(
        long_about = "Folds the store's latest backup set (the newest full snapshot and the deltas after it) into one new full snapshot, without running etcd: the set is restored natively into <data-dir>.part (scratch, removed afterwards; --data-dir must not exist), the database is compacted at its last revision as etcd compacts (older revisions and deleted keys dropped), and the result is uploaded as Full-00000000-<revision>-<now> with the newest snapshot's compression and the base's .final mark. The old snapshots are left for garbage collection. Fails when the store has no full snapshot."
    )]
    Compact(Box<compact::CompactArgs>),
    /// Validate the etcd data directory and restore it from the store when it is invalid
    #[command(
        long_about = "Validates --data-dir as the original's initializer does: the wrong-volume guard \
(safe_guard, when POD_NAMESPACE is set), the directory structure, the db revision against the newest backup \
(counting writes still pending in the WAL, which etcd replays at start), and in full mode every page of the db, \
the WAL and the .snap files. A valid directory is kept; an invalid one is restored from the store into \
<data-dir>.part and swapped in. With no store or an empty one there is nothing to restore from: a missing or \
empty data dir is left for etcd to bootstrap, and one holding data is kept and initialization fails, saying why \
(the original removes it). A wrong volume or a db locked by a running etcd is an error."
    )]
    Initialize(Box<initialize::InitializeArgs>),
    /// Run as a sidecar: HTTP API, initialization, leader election, snapshots, GC, defragmentation
    #[command(
        long_about = "Runs beside an etcd member: an HTTP API on --server-port (/initialization/start and \
/initialization/status for etcd's start-up script, /snapshot/full[?final=true], /snapshot/delta, \
/snapshot/latest, /healthz, /metrics, /config), and leader election: every --reelection-period the sidecar asks \
its etcd member (the first of --endpoints) whether it leads. Only the leader's sidecar takes snapshots, \
garbage-collects, defragments and syncs the secondary store; snapshot requests reaching a follower are \
forwarded to the leader's sidecar. At start the leader resumes the store's chain with an initial delta, or \
takes a full snapshot when none exists, the last is final, or it is older than the schedule's window. \
--config-file takes the original's YAML; flags given on the command line win over it."
    )]
    Server(Box<server::ServerArgs>),
    /// Copy backups from a source store to a destination store
    #[command(
        long_about = "Copies backup sets (a full snapshot and its deltas) from the --source-* store to the store named by the unprefixed store flags, newest first, filtered by --max-backups-to-copy and --max-backup-age. Objects the destination already has are skipped (names compared without .final), and .final is dropped at the destination. Each object streams from store to store; an interrupted copy leaves no partial object, so running it again finishes the job. Empty --source-storage-provider and --source-store-prefix are taken from the destination flags; the source's credentials are read from the SOURCE_-prefixed variables."
    )]
    Copy(Box<copy::CopyArgs>),
    /// List the store's backup sets: full snapshots, their deltas, revisions, times, sizes (etcdbr)
    #[command(
        long_about = "Lists the store's backup sets, oldest first: each full snapshot and the deltas a restore applies on it, with their revisions, creation times, sizes as stored, compression, .final mark and chunk objects. Deltas a restore does not apply are flagged (covered by another delta, an overlap applied from a later revision, after a gap), and so are snapshots in no set. The summary gives the revisions and times each set restores, which is what --restore-to-revision, --restore-to-time and --snapshot choose from. --output=json for scripts."
    )]
    List(Box<list::ListArgs>),
    /// Prove that backups restore, without touching any data directory (etcdbr)
    #[command(
        long_about = "Verifies backup sets (the latest by default; --all for every set; --snapshot or --restore-to-revision/--restore-to-time for one): every object is downloaded, decompressed and its sha256 checked, the chain is checked for gaps, the set is restored natively into scratch space below --restoration-temp-snapshots-dir, the restored db is checked page by page, and its hashkv, revision and key count are reported. With --endpoints, the hashkv is compared with the live etcd's at the same revision when etcd still has it, and a mismatch fails. Exit codes: 0 every set verified, 1 a backup is bad (the output names the object and what is wrong), 2 usage or verification could not run. --output=json for monitoring."
    )]
    Verify(Box<verify::VerifyArgs>),
}

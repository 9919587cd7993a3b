//! The harness in its tiny mode, as part of the test suite, so that `bench/` keeps building and
//! running (figures are printed, not checked). Each mode starts its own etcd; they run in
//! parallel with the other tests, on the binaries the test build already made.

use std::path::PathBuf;
use std::process::Command;

/// The etcdbrctl binary the workspace's test build put next to the harness.
fn etcdbrctl() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_BIN_EXE_etcdbr-bench")).with_file_name("etcdbrctl");
    assert!(
        p.exists(),
        "{} is missing: run the workspace's tests (they build it) or `cargo build -p etcdbrctl` \
         in the same profile first",
        p.display()
    );
    p
}

fn tiny(mode: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_etcdbr-bench"))
        .args(["--keys", "2000", "--runs", "1", "--etcdbrctl"])
        .arg(etcdbrctl())
        .args(mode)
        .output()
        .unwrap();
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "etcdbr-bench {mode:?}: {}",
        out.status
    );
}

#[test]
fn full() {
    tiny(&["full"]);
}

#[test]
fn restore_and_compact() {
    tiny(&["restore", "--events", "2000"]);
}

#[test]
fn ingest() {
    tiny(&["ingest", "--seconds", "3", "--writers", "8"]);
}

#[test]
fn sidecar() {
    tiny(&["sidecar", "--idle", "2", "--seconds", "3", "--rate", "200"]);
}

#[test]
fn sidecar_with_leases() {
    tiny(&[
        "sidecar",
        "--idle",
        "2",
        "--seconds",
        "3",
        "--rate",
        "200",
        "--leases",
    ]);
}

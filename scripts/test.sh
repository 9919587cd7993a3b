#!/usr/bin/env bash
# Runs every check and test of etcdbr: formatting, clippy, and the test suites (unit tests and
# integration tests against real etcd 3.4 and 3.5 processes and real storage servers). Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh >/dev/null
scripts/setup-stores.sh >/dev/null

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo deny (deny.toml: licenses, banned crates such as a second TLS stack, sources)"
DENY="${ETCDBR_CACHE:-$HOME/.cache/etcdbr}/cargo-deny/bin/cargo-deny"
"$DENY" --log-level error check bans licenses sources
# RustSec advisories need their database from GitHub, which not every machine reaches.
if timeout 60 "$DENY" --log-level error fetch db >/dev/null 2>&1; then
  "$DENY" --log-level error check advisories
else
  echo "cargo deny: advisories NOT checked: the RustSec advisory database cannot be fetched from this machine"
fi
echo "== tests"
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast "$@"
  cargo test --workspace --doc --locked
else
  cargo test --workspace --locked --no-fail-fast "$@"
fi

# The benchmark harness runs in its tiny mode among the tests (bench/tests/tiny.rs), on the
# binaries the test build made: a separate `cargo build` would compile them again.

echo "== fuzz targets, 3 s each (keeps fuzz/ from rotting; scripts/fuzz.sh for real runs)"
# Unoptimized fuzz builds: the optimized build of every target took 11 minutes of CI.
FUZZ_BUILD=--dev ETCDBRCTL="${CARGO_TARGET_DIR:-target}/debug/etcdbrctl" scripts/fuzz.sh 3

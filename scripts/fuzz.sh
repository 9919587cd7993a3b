#!/usr/bin/env bash
# Fuzzes every parser of untrusted bytes with cargo-fuzz (libFuzzer), on the stable toolchain.
#
#   scripts/fuzz.sh [seconds per target] [target ...]     # default: 60 s, every target
#   FUZZ_RUNS=10000000 scripts/fuzz.sh 0 delta_json       # a number of executions instead
#
# How it runs on stable: `cargo fuzz` needs nightly only for a sanitizer's -Z flags. With
# `--sanitizer none` every flag it passes (the sancov passes, -Cllvm-args) is stable. etcdbr has
# no unsafe code, so AddressSanitizer would only watch the dependencies; libFuzzer still finds
# every panic, and `-a` (debug assertions) turns arithmetic overflow into one. For ASan anyway:
# RUSTC_BOOTSTRAP=1 FUZZ_SANITIZER=address scripts/fuzz.sh (the stable toolchain ships its
# runtime).
#
# Seed corpora come from the test fixtures (objects written by the original's Go code, a data
# dir restored from them) and a few hand-written inputs; what libFuzzer finds grows
# fuzz/corpus/<target> (not committed). A crash leaves its input in fuzz/artifacts/<target>/
# and fails the script; each crash fixed becomes a regression test. At the end a table gives the
# executions per target.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
shift || true
all=(snapshot_name delta_json bbolt_db wal snap_file credentials config_file http_query sealed)
if [ "$#" -gt 0 ]; then targets=("$@"); else targets=("${all[@]}"); fi
sanitizer="${FUZZ_SANITIZER:-none}"

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# The fuzz crate is its own workspace: start from the main lock file so it builds the same
# dependency versions.
[ -f fuzz/Cargo.lock ] || cp Cargo.lock fuzz/Cargo.lock

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
seeds="$scratch/seeds"
fixtures=crates/etcdbr/tests/fixtures/original
mkdir -p "$seeds"
for t in "${all[@]}"; do mkdir -p "$seeds/$t" "fuzz/corpus/$t"; done

# Snapshot names, as the original writes them and as they appear in a listing.
i=0
for n in v2/Full-00000000-00000005-1700000000.gz v2/Incr-00000006-00000013-1700000100 \
  v2/Full-00000000-00000010-200.gz.final v2/Full-00000000-00000010-200.gz/0000000001 \
  v1/Backup-1700000000/Full-00000000-00000010-1700000000 prefix/v2/Incr-00000011-00000020-300.zlib \
  v2/Incr-00000011-00000020-300.Z; do
  printf '%s' "$n" >"$seeds/snapshot_name/$i"
  i=$((i + 1))
done

# Deltas: the original's objects (JSON + sha256 trailer) and their JSON alone.
cp "$fixtures/none/v2/Incr-00000006-00000013-1700000100" "$seeds/delta_json/original"
head -c -32 "$fixtures/none/v2/Incr-00000006-00000013-1700000100" >"$seeds/delta_json/json"
printf '[]' >"$seeds/delta_json/empty"

# A data dir restored from the original's backups: its db, WAL and .snap.
mkdir -p "$scratch/home/store"
cp -r "$fixtures/none/v2" "$scratch/home/store/"
# ETCDBRCTL: a binary already built (scripts/test.sh passes the test build's).
etcdbrctl="${ETCDBRCTL:-}"
if [ -z "$etcdbrctl" ]; then
  cargo build -q -p etcdbrctl
  etcdbrctl="${CARGO_TARGET_DIR:-target}/debug/etcdbrctl"
fi
HOME="$scratch/home" "$etcdbrctl" restore --storage-provider=Local --store-container=store \
  --data-dir "$scratch/data" --restoration-temp-snapshots-dir "$scratch/tmp" >/dev/null 2>&1
cp "$scratch/data/member/snap/db" "$seeds/bbolt_db/restored"
head -c -32 "$fixtures/none/v2/Full-00000000-00000005-1700000000" >"$seeds/bbolt_db/original"
cp "$scratch"/data/member/wal/*.wal "$seeds/wal/restored"
cp "$scratch"/data/member/snap/*.snap "$seeds/snap_file/restored"

# Credentials (JSON form), the server's config file, query strings.
printf '{"accessKeyID":"AKIA","secretAccessKey":"s","region":"eu-west-1","s3ForcePathStyle":true}' \
  >"$seeds/credentials/s3"
printf '{"a":null,"b":"x"}' >"$seeds/credentials/null"
cat >"$seeds/config_file/example" <<'YAML'
etcdConnectionConfig:
  endpoints:
  - "http://localhost:2379"
  connectionTimeout: 10s
serverConfig:
  port: 8080
snapshotterConfig:
  schedule: "0 */1 * * *"
  deltaSnapshotPeriod: 20s
snapstoreConfig:
  provider: "Local"
restorationConfig:
  restoreDataDir: "default.etcd"
  restoreToRevision: 12
YAML
printf '\000{"manifest":{"version":1,"set":"Full-00000000-00000010-1.gz","previous":null,"objects":[{"name":"Full-00000000-00000010-1.gz.age","size":5,"sha256":"00"}]},"key":"AA==","signature":"AA=="}' >"$seeds/sealed/manifest"
printf '\001age-encryption.org/v1\n-> X25519 kQp840WItdq5v5sIFXXn2JHMpSdstlZgX5cD+rJqHl4\nS0ViL11pJOt/mxlN9PulA+pcPJdomlET4VQx+kTYcGU\n-> etcdbr-recipients age170d7qn6gw7pws20pe3947gt48f8axa30pw34g63lt4x2r4004ejswvf9ej\n\n--- AAAA\n' >"$seeds/sealed/age"
printf 'final=true' >"$seeds/http_query/final"
printf 'mode=sanity&x=%%41+b' >"$seeds/http_query/mode"

status=0
report=()
for t in "${targets[@]}"; do
  log="fuzz/$t.log"
  # -a: debug assertions and overflow checks; -O: optimized (the default, said for clarity).
  # FUZZ_BUILD=--dev builds without optimizations: a third of the build time, for short runs
  # that only keep the targets building and running (scripts/test.sh).
  if [ -n "${FUZZ_RUNS:-}" ]; then limit=(-runs="$FUZZ_RUNS"); else limit=(-max_total_time="$secs"); fi
  if ! cargo fuzz run --sanitizer "$sanitizer" "${FUZZ_BUILD:--O}" -a "$t" "fuzz/corpus/$t" "$seeds/$t" -- \
    "${limit[@]}" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 >"$log" 2>&1; then
    echo "FAIL $t: see $log and fuzz/artifacts/$t/" >&2
    tail -40 "$log" >&2
    status=1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  report+=("$(printf '%-14s %12s runs %8s/s  cov %s' "$t" "${runs:-?}" "${rate:-?}" "${cov:-?}")")
done
if [ -n "${FUZZ_RUNS:-}" ]; then per="$FUZZ_RUNS runs"; else per="${secs}s"; fi
printf '%s\n' "fuzzing, $per per target, sanitizer $sanitizer:" "${report[@]}"
exit "$status"

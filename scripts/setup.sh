#!/usr/bin/env bash
# Installs what etcdbr's build and tests need on a fresh Debian 12 machine. Idempotent.
#
#   - protoc and its well-known types (etcd-client's build script compiles etcd's protos)
#   - etcd 3.4.23 (etcd, etcdctl) from Debian bookworm, installed system-wide
#   - etcd 3.5.x (etcd, etcdctl, etcdutl) from Debian's newer suites, unpacked into a cache
#     folder ($ETCDBR_CACHE/etcd-3.5/usr/bin), never installed system-wide
#   - psmisc/time for the benchmark harness (/usr/bin/time -v)
#   - Go (golang-go), whose compress/* readers check our compressed snapshots
#   - age, the reference CLI, which checks our encrypted objects both ways
#   - cargo-deny (from crates.io, into $ETCDBR_CACHE/cargo-deny), which checks the dependency
#     tree against deny.toml
#   - cargo-fuzz (from crates.io, into $ETCDBR_CACHE/cargo-fuzz), which runs the fuzz targets
#
# Prints the path of the etcd 3.5 bin dir as its last line; tests find it through
# ETCDBR_ETCD35_BIN or the default cache location.
set -euo pipefail

CACHE=${ETCDBR_CACHE:-$HOME/.cache/etcdbr}
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

need_apt=()
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
# protoc's well-known types (google/protobuf/descriptor.proto), imported by etcd's protos
[ -f /usr/include/google/protobuf/descriptor.proto ] || need_apt+=(libprotobuf-dev)
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need_apt+=(etcd-client)
[ -x /usr/bin/time ] || need_apt+=(time)
# Go's standard library decompresses our snapshots in tests/compat.rs, as the original reads them.
command -v go >/dev/null 2>&1 || need_apt+=(golang-go)
# An independent client reads the Leases etcdbr writes to the in-test API server (Debian's
# kubernetes-client, unless a kubectl is already installed).
command -v kubectl >/dev/null 2>&1 || need_apt+=(kubernetes-client)
# The reference age CLI decrypts what etcdbr encrypts and encrypts what it reads (tests/crypt.rs).
command -v age >/dev/null 2>&1 || need_apt+=(age)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # The Debian package starts a system etcd on 2379; tests pick their own ports, but a
  # stray daemon is confusing, so stop it when systemd is present.
  if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now etcd >/dev/null 2>&1 || true; fi
fi

# cargo-deny, built once into the cache (about two minutes).
if [ ! -x "$CACHE/cargo-deny/bin/cargo-deny" ]; then
  echo "setup: installing cargo-deny" >&2
  cargo install --quiet --locked --root "$CACHE/cargo-deny" cargo-deny@0.20.2 >&2
fi

# cargo-fuzz, built once into the cache (about a minute and a half).
if [ ! -x "$CACHE/cargo-fuzz/bin/cargo-fuzz" ]; then
  echo "setup: installing cargo-fuzz" >&2
  cargo install --quiet --locked --root "$CACHE/cargo-fuzz" cargo-fuzz@0.13.2 >&2
fi

# etcd 3.5 from a newer Debian suite, with a private apt state so /etc/apt is untouched.
E35="$CACHE/etcd-3.5"
if [ ! -x "$E35/usr/bin/etcd" ] || [ ! -x "$E35/usr/bin/etcdutl" ]; then
  A="$CACHE/apt-alt"
  rm -rf "$A" "$E35"
  mkdir -p "$A/lists/partial" "$A/cache/archives/partial" "$E35" "$A/debs"
  fetched=""
  for suite in trixie sid; do
    echo "deb http://deb.debian.org/debian $suite main" > "$A/sources.list"
    O=(-o "Dir::Etc::SourceList=$A/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
       -o "Dir::State::Lists=$A/lists" -o "Dir::Cache=$A/cache" -o "APT::Get::List-Cleanup=0")
    if apt-get "${O[@]}" -qq update 2>/dev/null; then
      ver=$(apt-cache "${O[@]}" show etcd-server 2>/dev/null | awk '/^Version:/{print $2; exit}')
      case "$ver" in
        3.5.*)
          (cd "$A/debs" && apt-get "${O[@]}" -qq download "etcd-server=$ver" "etcd-client=$ver")
          fetched=$ver; break ;;
      esac
    fi
  done
  if [ -z "$fetched" ]; then echo "setup: no etcd 3.5.x found in Debian trixie or sid" >&2; exit 1; fi
  for f in "$A"/debs/*.deb; do dpkg-deb -x "$f" "$E35"; done
  echo "setup: etcd $fetched unpacked into $E35" >&2
fi

etcd --version | sed -n 1p >&2
"$E35/usr/bin/etcd" --version | sed -n 1p >&2
protoc --version >&2
echo "$E35/usr/bin"

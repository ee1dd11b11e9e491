#!/usr/bin/env bash
# deploy/local/cluster.sh: coordinator flags reach the coordinator, and stop
# returns only once every process has exited.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=$(mktemp -d /tmp/cairn-cluster-sh.XXXXXX)
trap '"$ROOT/deploy/local/cluster.sh" stop "$DATA" >/dev/null 2>&1; rm -rf "$DATA"' EXIT
fail=0
check() { if eval "$1"; then echo "ok: $2"; else echo "FAIL: $2"; fail=1; fi; }

CAIRN_COORDINATOR_FLAGS="--metrics-listen=127.0.0.1:0 --pending-timeout=77" \
  "$ROOT/deploy/local/cluster.sh" start "$DATA" 2 >/dev/null || { echo "FAIL: start"; exit 1; }
check 'grep -q "metrics on http://127.0.0.1:" "$DATA/logs/coordinator.log"' \
  "CAIRN_COORDINATOR_FLAGS reach the coordinator (--metrics-listen)"
pids="$(cat "$DATA"/writer*.pid "$DATA"/coordinator.pid)"
"$ROOT/deploy/local/cluster.sh" stop "$DATA"
alive=""
for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive="$alive $pid"; done
check '[ -z "$alive" ]' "stop returns after every process exited (alive:$alive)"
check 'grep -q "stopped" "$DATA/logs/coordinator.log"' "the coordinator stopped cleanly"
exit $fail

#!/usr/bin/env bash
# Starts (or stops) a local Cairn cluster: one coordinator and N shard writers
# on 127.0.0.1, local storage and the RocksDB catalog under one data folder.
#
#   deploy/local/cluster.sh start DATA_DIR [WRITERS]   prints the coordinator address
#   (CAIRN_COORDINATOR_FLAGS="--metrics-listen=127.0.0.1:9090 --pending-timeout=60 ..."
#   adds flags to the coordinator, CAIRN_WRITER_FLAGS="--inventory-sha256=true ..."
#   to every writer)
#   deploy/local/cluster.sh stop DATA_DIR   returns once every process has exited
#   (SIGTERM; SIGKILL after CAIRN_STOP_TIMEOUT seconds, default 15)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${CAIRN_BIN_DIR:-$ROOT/build/bin}
cmd=${1:?usage: cluster.sh start|stop DATA_DIR [WRITERS]}
DATA=${2:?usage: cluster.sh start|stop DATA_DIR [WRITERS]}
WRITERS=${3:-2}

# shellcheck source=deploy/local/lib.sh
. "$ROOT/deploy/local/lib.sh"

case "$cmd" in
  start)
    mkdir -p "$DATA/logs" "$DATA/storage"
    # shellcheck disable=SC2086  # CAIRN_COORDINATOR_FLAGS: extra flags, split on spaces
    "$BIN/cairn-coordinator" --listen=127.0.0.1:0 --db="$DATA/catalog" --storage="$DATA/storage" \
      ${CAIRN_COORDINATOR_FLAGS:-} >"$DATA/logs/coordinator.out" 2>"$DATA/logs/coordinator.log" &
    echo $! >"$DATA/coordinator.pid"
    COORD=$(wait_listening "$DATA/logs/coordinator.out")
    for i in $(seq 0 $((WRITERS - 1))); do
      # shellcheck disable=SC2086  # CAIRN_WRITER_FLAGS: extra flags, split on spaces
      "$BIN/cairn-writer" --coordinator="$COORD" --listen=127.0.0.1:0 ${CAIRN_WRITER_FLAGS:-} \
        >"$DATA/logs/writer$i.out" 2>"$DATA/logs/writer$i.log" &
      echo $! >"$DATA/writer$i.pid"
      wait_listening "$DATA/logs/writer$i.out" >/dev/null
    done
    echo "$COORD" >"$DATA/coordinator.addr"
    echo "$COORD"
    ;;
  stop)
    # The processes are not this shell's children (another invocation
    # started them): wait for them by polling.
    pids=()
    for pidfile in "$DATA"/writer*.pid "$DATA"/coordinator.pid; do
      [ -f "$pidfile" ] || continue
      pid=$(cat "$pidfile")
      kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
      rm -f "$pidfile"
    done
    deadline=$((SECONDS + ${CAIRN_STOP_TIMEOUT:-15}))
    for pid in "${pids[@]}"; do
      while kill -0 "$pid" 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
          echo "cluster.sh: process $pid did not stop on SIGTERM; killing it" >&2
          kill -KILL "$pid" 2>/dev/null || true
          break
        fi
        sleep 0.05
      done
    done
    ;;
  *) echo "usage: cluster.sh start|stop DATA_DIR [WRITERS]" >&2; exit 2 ;;
esac

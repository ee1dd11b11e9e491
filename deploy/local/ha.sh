#!/usr/bin/env bash
# A local high-availability Cairn cluster on 127.0.0.1: a 3-member etcd
# (Debian's etcd-server), two coordinators sharing its catalog (one leads, the
# other stands by) and N shard writers, local storage under one data folder.
#
#   deploy/local/ha.sh start DATA_DIR [WRITERS]   prints "ADDR_A,ADDR_B" (give it
#                                                 to --coordinator as is)
#   deploy/local/ha.sh stop DATA_DIR              stops everything, waits for exit
#
# Try a failover: kill "$(cat DATA_DIR/coordinator0.pid)" and keep saving with
# the same --coordinator list; the standby leads within the lease TTL (5 s).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${CAIRN_BIN_DIR:-$ROOT/build/bin}
cmd=${1:?usage: ha.sh start|stop DATA_DIR [WRITERS]}
DATA=${2:?usage: ha.sh start|stop DATA_DIR [WRITERS]}
WRITERS=${3:-2}

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# shellcheck source=deploy/local/lib.sh
. "$ROOT/deploy/local/lib.sh"

case "$cmd" in
  start)
    command -v etcd >/dev/null || { echo "ha.sh: etcd not installed (scripts/install-deps.sh)" >&2; exit 1; }
    mkdir -p "$DATA/logs" "$DATA/storage"
    clients=() peers=() cluster=""
    for i in 0 1 2; do
      clients+=("127.0.0.1:$(free_port)")
      peers+=("127.0.0.1:$(free_port)")
      cluster+="${cluster:+,}e$i=http://${peers[$i]}"
    done
    for i in 0 1 2; do
      etcd --name="e$i" --data-dir="$DATA/etcd$i" \
        --listen-client-urls="http://${clients[$i]}" --advertise-client-urls="http://${clients[$i]}" \
        --listen-peer-urls="http://${peers[$i]}" --initial-advertise-peer-urls="http://${peers[$i]}" \
        --initial-cluster="$cluster" --initial-cluster-token=cairn-local --initial-cluster-state=new \
        --log-level=warn >"$DATA/logs/etcd$i.log" 2>&1 &
      echo $! >"$DATA/etcd$i.pid"
    done
    endpoints=$(IFS=,; echo "${clients[*]}")
    for _ in $(seq 1 100); do
      etcdctl --endpoints="$endpoints" endpoint health >/dev/null 2>&1 && break
      sleep 0.2
    done
    addrs=()
    for i in 0 1; do
      addrs+=("127.0.0.1:$(free_port)")
      # shellcheck disable=SC2086  # CAIRN_COORDINATOR_FLAGS: extra flags, split on spaces
      "$BIN/cairn-coordinator" --listen="${addrs[$i]}" --catalog="etcd://$endpoints/cairn" \
        --storage="$DATA/storage" ${CAIRN_COORDINATOR_FLAGS:-} \
        >"$DATA/logs/coordinator$i.out" 2>"$DATA/logs/coordinator$i.log" &
      echo $! >"$DATA/coordinator$i.pid"
      [ "$i" = 0 ] && wait_listening "$DATA/logs/coordinator0.out" 300 >/dev/null
    done
    COORD=$(IFS=,; echo "${addrs[*]}")
    for i in $(seq 0 $((WRITERS - 1))); do
      # shellcheck disable=SC2086  # CAIRN_WRITER_FLAGS: extra flags, split on spaces
      "$BIN/cairn-writer" --coordinator="$COORD" --listen=127.0.0.1:0 ${CAIRN_WRITER_FLAGS:-} \
        >"$DATA/logs/writer$i.out" 2>"$DATA/logs/writer$i.log" &
      echo $! >"$DATA/writer$i.pid"
      wait_listening "$DATA/logs/writer$i.out" >/dev/null
    done
    echo "$endpoints" >"$DATA/etcd.endpoints"
    echo "$COORD" >"$DATA/coordinator.addr"
    echo "$COORD"
    ;;
  stop)
    pids=()
    for pidfile in "$DATA"/writer*.pid "$DATA"/coordinator*.pid "$DATA"/etcd*.pid; do
      [ -f "$pidfile" ] || continue
      pid=$(cat "$pidfile")
      kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
      rm -f "$pidfile"
    done
    for pid in "${pids[@]}"; do  # wait for every process, not only our children
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done
    ;;
  *) echo "usage: ha.sh start|stop DATA_DIR [WRITERS]" >&2; exit 2 ;;
esac

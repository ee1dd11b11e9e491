#!/usr/bin/env bash
# The scale benchmark in one command: a local cluster (coordinator + 4
# writers) in a temp folder, bench/scale_bench against it, the cluster
# stopped. Prints scale_bench's key=value lines and a summary.
#
#   bench/scale.sh [--etcd] [--shards=1024,4096,16384] [--threads=64] [--jobs=64] [--job-shards=64]
# Quick run: bench/scale.sh --shards=256,1024 --jobs=8 --job-shards=16
# --etcd: the catalog on a local 3-member etcd with 2 coordinators
# (deploy/local/ha.sh) instead of the embedded RocksDB; the figures are the
# leader's.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CAIRN_BIN_DIR:-$ROOT/build/bin}
export CAIRN_BIN_DIR=$BIN
[ -x "$BIN/scale_bench" ] || { echo "scale.sh: $BIN/scale_bench missing (build first)" >&2; exit 2; }
LAUNCHER=cluster.sh PIDFILE=coordinator.pid
if [ "${1:-}" = "--etcd" ]; then
  shift
  LAUNCHER=ha.sh PIDFILE=coordinator0.pid
fi
TMP=$(mktemp -d /tmp/cairn-scale.XXXXXX)
cleanup() { "$ROOT/deploy/local/$LAUNCHER" stop "$TMP/cluster" 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
COORD=$("$ROOT/deploy/local/$LAUNCHER" start "$TMP/cluster" 4)
"$BIN/scale_bench" --coordinator="$COORD" --coordinator-pid="$(cat "$TMP/cluster/$PIDFILE")" "$@" \
  | tee "$TMP/out.txt"
/usr/bin/python3 - "$TMP/out.txt" <<'PYEOF'
import re, sys
kv = dict(l.strip().split("=", 1) for l in open(sys.argv[1]) if "=" in l)
sizes = sorted(int(m.group(1)) for k in kv for m in [re.fullmatch(r"shards(\d+)_s", k)] if m)
print("\nshards | seconds | reports/s | coordinator CPU ms/shard | RSS MiB per 1k")
for n in sizes:
    print(f"{n:6d} | {float(kv[f'shards{n}_s']):7.2f} | {float(kv[f'shards{n}_per_s']):9.0f} | "
          f"{float(kv[f'shards{n}_cpu_ms_per_shard']):24.3f} | {float(kv[f'shards{n}_rss_mib_per_1k']):6.2f}")
if len(sizes) > 1:
    r = float(kv["ratio_largest_smallest"]); s = float(kv["size_ratio"])
    print(f"time({sizes[-1]})/time({sizes[0]}) = {r:.1f} for {s:.0f}x the shards (target for 16k/1k: <= 18)")
    c0 = float(kv[f"shards{sizes[0]}_cpu_ms_per_shard"]); c1 = float(kv[f"shards{sizes[-1]}_cpu_ms_per_shard"])
    print(f"coordinator CPU per shard {sizes[-1]} vs {sizes[0]}: {c1 / c0:.2f}x (target: within 1.25x)")
if "jobs_s" in kv:
    print(f"many jobs at once: {float(kv['jobs_per_s']):.0f} shard saves/s, "
          f"{float(kv['jobs_cpu_ms_per_shard']):.3f} coordinator CPU ms/shard")
PYEOF

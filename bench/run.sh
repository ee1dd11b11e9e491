#!/usr/bin/env bash
# The checkpoint performance benchmark in one command: starts a local cluster
# (coordinator + 2 writers) in a temp folder under /tmp, runs
# checkpoint_bench against it, runs the PyTorch baseline, stops the cluster
# and prints the table (figure | cairn | baseline | ratio | target | met?).
# Builds nothing: binaries come from $CAIRN_BIN_DIR (default build/bin).
#
#   bench/run.sh [--gib=2] [--repeats=3] [other checkpoint_bench flags]
#
# Defaults (a few minutes, about 20 GB of scratch disk, 8 GiB of RAM):
#   --gib=2 --workers=4 --repeats=3 --big-shard-gib=4 --small-shard-gib=1
#   --tiny=100000 --tiny-large=1000000 --partial-tensors=10000
# Quick run: bench/run.sh --gib=0.25 --repeats=1 --big-shard-gib=1
#   --small-shard-gib=0.25 --tiny=10000 --tiny-large=100000
# Figure 3 needs Debian's python3-torch (bench/install-bench-deps.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CAIRN_BIN_DIR:-$ROOT/build/bin}
export CAIRN_BIN_DIR=$BIN
PY=/usr/bin/python3

GIB=2
REPEATS=3
ARGS=()
for a in "$@"; do
  case "$a" in
    --gib=*) GIB=${a#--gib=} ;;
    --repeats=*) REPEATS=${a#--repeats=}; ARGS+=("$a") ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) ARGS+=("$a") ;;
  esac
done
for b in checkpoint_bench cairn-coordinator cairn-writer; do
  [ -x "$BIN/$b" ] || { echo "run.sh: $BIN/$b missing (build first, or set CAIRN_BIN_DIR)" >&2; exit 2; }
done

TMP=$(mktemp -d /tmp/cairn-bench.XXXXXX)
CLUSTER=$TMP/cluster
cleanup() {
  "$ROOT/deploy/local/cluster.sh" stop "$CLUSTER" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

echo "[run] cluster in $CLUSTER (binaries from $BIN)" >&2
show_logs() { tail -n 5 "$CLUSTER"/logs/*.log >&2 || true; }
COORD=$("$ROOT/deploy/local/cluster.sh" start "$CLUSTER" 2) || { show_logs; exit 1; }
"$BIN/checkpoint_bench" --coordinator="$COORD" --cluster="$CLUSTER" --gib="$GIB" \
  --sizes-out="$TMP/sizes.txt" "${ARGS[@]}" >"$TMP/cairn.txt" || { show_logs; exit 1; }
"$ROOT/deploy/local/cluster.sh" stop "$CLUSTER"
rm -rf "$CLUSTER/storage"   # free the disk before the PyTorch part

if "$PY" -c 'import torch' 2>/dev/null; then
  "$PY" "$ROOT/bench/torch_baseline.py" "$TMP/sizes.txt" "$TMP/torch" "$REPEATS" >"$TMP/torch.json"
else
  echo '{"skipped": "skipped: install python3-torch (bench/install-bench-deps.sh)"}' >"$TMP/torch.json"
fi

"$PY" - "$TMP/cairn.txt" "$TMP/torch.json" <<'PYEOF'
import json, sys
r = {}
for line in open(sys.argv[1]):
    k, _, v = line.strip().partition("=")
    r[k] = v
torch = json.load(open(sys.argv[2]))
f = lambda k: float(r[k])
MiB = 1 << 20
rows = []

def row(fig, cairn, base, ratio, target, met):
    rows.append((fig, cairn, base, "-" if ratio is None else "%.2f" % ratio, target,
                 "-" if met is None else ("yes" if met else "NO")))

def gbs(nbytes, s):
    return "%.2f s (%.2f GB/s)" % (s, nbytes / s / 1e9)

if "save_cairn_s" in r:
    b = f("state_bytes")
    c, p = f("save_cairn_s"), f("save_plain_s")
    label = "1 save %.2f GiB, %s workers -> 2 writers" % (b / (1 << 30), r["workers"])
    row(label, gbs(b, c), gbs(b, p) + " write+fsync", p / c, ">= 0.8", p / c >= 0.8)
if "restore_cairn_s" in r:
    b = f("state_bytes")
    c, p = f("restore_cairn_s"), f("restore_plain_s")
    row("2 restore, every CRC checked", gbs(b, c), gbs(f("restore_file_bytes"), p) + " read()",
        p / c, ">= 0.8", p / c >= 0.8)
if "skipped" in torch:
    row("3 vs PyTorch", torch["skipped"], "", None, "", None)
else:
    if "save_cairn_s" in r:
        c, t = f("save_cairn_s"), torch["save_s"]
        row("3a save vs torch.save+fsync", "%.2f s" % c, "%.2f s" % t, t / c, ">= 1.5 (x faster)", t / c >= 1.5)
    if "restore_cairn_s" in r:
        c, t = f("restore_cairn_s"), torch["load_s"]
        row("3b restore vs torch.load", "%.2f s" % c, "%.2f s" % t, t / c, ">= 1.5 (x faster)", t / c >= 1.5)
if "async_stall_s" in r:
    c, m = f("async_stall_s"), f("async_memcpy_s")
    row("4 async save stall, %d MiB" % (f("async_bytes") / MiB), "%.1f ms" % (c * 1e3),
        "%.1f ms memcpy" % (m * 1e3), c / m, "<= 1.5", c / m <= 1.5)
    row("4b  async: until durable", "%.2f s" % f("async_durable_s"), "", None, "(reported)", None)
elif "async_skipped" in r:
    row("4 async save stall", "skipped: " + r["async_skipped"], "", None, "<= 1.5", None)
if "partial_bytes_read" in r:
    got = f("partial_bytes_read")
    want = f("partial_tensor_bytes") + f("partial_index_bytes")
    row("5 partial restore, 1 of %s tensors" % r["partial_tensors"], "%d B read" % got,
        "%d B (tensor %d + index %d)" % (want, f("partial_tensor_bytes"), f("partial_index_bytes")),
        got / want, "<= 1.1", got / want <= 1.1)
if "memory_big_peak_kib" in r:
    big, small = f("memory_big_peak_kib") / 1024, f("memory_small_peak_kib") / 1024
    row("6 writer peak RSS, %g GiB shard" % f("memory_big_gib"), "%.0f MiB" % big,
        "%.0f MiB (%g GiB shard)" % (small, f("memory_small_gib")), big / small,
        "<= 512 MiB, ratio <= 1.2", big <= 512 and big / small <= 1.2)
if "scale_large_s" in r:
    c, s = f("scale_large_s"), f("scale_small_s")
    row("7 scale: save+commit %s vs %s tiny" % (r["scale_large_n"], r["scale_small_n"]),
        "%.2f s" % c, "%.2f s" % s, c / s, "<= 12", c / s <= 12)

hdr = ("figure", "cairn", "baseline", "ratio", "target", "met?")
w = [max(len(str(x[i])) for x in rows + [hdr]) for i in range(6)]
line = lambda x: "| " + " | ".join(str(v).ljust(w[i]) for i, v in enumerate(x)) + " |"
print(line(hdr))
print("|" + "|".join("-" * (n + 2) for n in w) + "|")
for x in rows:
    print(line(x))
print("medians of %s runs; all runs (s):" % r.get("repeats", "?"))
for k in sorted(r):
    if k.endswith("_runs"):
        print("  %s: %s" % (k[:-5], r[k]))
if "save_runs" in torch:
    print("  torch_save: %s" % ",".join("%.4g" % x for x in torch["save_runs"]))
    print("  torch_load: %s" % ",".join("%.4g" % x for x in torch["load_runs"]))
    print("  plain write+fsync in the torch window (disk drift check for 3a): %s"
          % ",".join("%.4g" % x for x in torch["plain_write_runs"]))
print("benchmark time: %.0f s (cairn part)" % f("bench_seconds"))
PYEOF

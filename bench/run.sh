#!/usr/bin/env bash
# The checkpoint performance benchmark in one command: starts a local cluster
# (coordinator + 2 writers) in a temp folder under /tmp, runs
# checkpoint_bench against it (the PyTorch baseline runs as its coprocess,
# taking turns with Cairn in the same minutes), stops the cluster
# and prints the table (figure | cairn | baseline | ratio | target | met?).
# Builds nothing: binaries come from $CAIRN_BIN_DIR (default build/bin).
#
#   bench/run.sh [--gib=2] [--repeats=3] [other checkpoint_bench flags]
#
# Defaults (a few minutes, about 20 GB of scratch disk, 8 GiB of RAM):
#   --gib=2 --workers=4 --repeats=5 --big-shard-gib=4 --small-shard-gib=1
#   --tiny=100000 --tiny-large=1000000 --partial-tensors=10000
# Quick run: bench/run.sh --gib=0.25 --repeats=1 --big-shard-gib=1
#   --small-shard-gib=0.25 --tiny=10000 --tiny-large=100000
# Figure 3 needs Debian's python3-torch (bench/install-bench-deps.sh).
# Then the CLI figures (bench/cli_bench.sh: 4 x cairn save vs dd, writer CPU
# seconds per GiB, cairn restore vs cat with its peak RSS; 1 GiB, its own
# cluster); --skip-cli leaves them out.
# Then Orbax side by side (bench/orbax_bench.sh, same --gib; needs the test
# environment of scripts/pyenv.sh; CAIRN_BENCH_ORBAX=0 skips it).
# CAIRN_WRITER_FLAGS="--inventory-sha256=true" runs the writers with flags.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CAIRN_BIN_DIR:-$ROOT/build/bin}
export CAIRN_BIN_DIR=$BIN
PY=/usr/bin/python3

GIB=2
REPEATS=5
CLI=1
ARGS=()
for a in "$@"; do
  case "$a" in
    --gib=*) GIB=${a#--gib=} ;;
    --repeats=*) REPEATS=${a#--repeats=} ;;
    --skip-cli) CLI=0 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
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
TORCH=()
if "$PY" -c 'import torch' 2>/dev/null; then
  TORCH=(--torch-script="$ROOT/bench/torch_baseline.py")
else
  echo "[run] figure 3 skipped: install python3-torch (bench/install-bench-deps.sh)" >&2
fi
"$BIN/checkpoint_bench" --coordinator="$COORD" --cluster="$CLUSTER" --gib="$GIB" \
  --repeats="$REPEATS" "${TORCH[@]}" "${ARGS[@]}" >"$TMP/cairn.txt" || { show_logs; exit 1; }
"$ROOT/deploy/local/cluster.sh" stop "$CLUSTER"
if [ "$CLI" = 1 ]; then
  echo "[run] CLI figures (bench/cli_bench.sh)" >&2
  "$ROOT/bench/cli_bench.sh" --repeats="$REPEATS" >>"$TMP/cairn.txt" 2>/dev/null
fi

"$PY" - "$TMP/cairn.txt" <<'PYEOF'
import statistics, sys
r = {}
for line in open(sys.argv[1]):
    k, _, v = line.strip().partition("=")
    r[k] = v
f = lambda k: float(r[k])
runs = lambda k: [float(x) for x in r[k + "_runs"].split(",")]
MiB = 1 << 20
rows = []

def row(fig, cairn, base, ratio, target, met):
    rows.append((fig, cairn, base, "-" if ratio is None else "%.2f" % ratio, target,
                 "-" if met is None else ("yes" if met else "NO")))

def gbs(nbytes, s):
    return "%.2f s (%.2f GB/s)" % (s, nbytes / s / 1e9)

def paired(base, cairn):
    """Median over repeats of base/cairn, each pair timed back to back."""
    return statistics.median(b / c for b, c in zip(runs(base), runs(cairn)))

if "save_cairn_s" in r:
    b = f("state_bytes")
    c, p = f("save_cairn_s"), f("save_plain_s")
    label = "1 save %.2f GiB, %s workers -> 2 writers" % (b / (1 << 30), r["workers"])
    ratio = paired("save_plain_s", "save_cairn_s")
    row(label, gbs(b, c), gbs(b, p) + " write+fsync", ratio, ">= 0.8", ratio >= 0.8)
if "restore_cairn_s" in r:
    b = f("state_bytes")
    p = f("restore_plain_s")
    ratio = paired("restore_plain_s", "restore_cairn_s")
    row("2 restore, every CRC checked (copies)", gbs(b, f("restore_cairn_s")),
        gbs(f("restore_file_bytes"), p) + " read()", ratio, ">= 0.8", ratio >= 0.8)
    if "restore_into_s" in r:
        ratio = paired("restore_plain_warm_s", "restore_into_s")
        row("2i restore into memory in use (into)", gbs(b, f("restore_into_s")),
            gbs(f("restore_file_bytes"), f("restore_plain_warm_s")) + " read() into it",
            ratio, ">= 0.8", ratio >= 0.8)
    ratio = paired("restore_plain_s", "restore_mapped_s")
    row("2m restore, every CRC checked (map_files)", gbs(b, f("restore_mapped_s")),
        gbs(f("restore_file_bytes"), p) + " read()", ratio, ">= 0.8", ratio >= 0.8)
if "save_torch_s" in r:
    ratio = paired("save_torch_s", "save_cairn_s")
    row("3a save vs torch.save+fsync", "%.2f s" % f("save_cairn_s"),
        "%.2f s (torch %s)" % (f("save_torch_s"), r.get("torch_version", "?")),
        ratio, ">= 1.5 (x faster)", ratio >= 1.5)
    ratio = paired("save_plain_s", "save_torch_s")
    row("3a' (bound) torch.save vs write+fsync", "%.2f s torch" % f("save_torch_s"),
        "%.2f s write+fsync" % f("save_plain_s"), ratio, "(reported)", None)
if "load_torch_s" in r:
    ratio = paired("load_torch_s", "restore_cairn_s")
    row("3b restore vs torch.load", "%.2f s" % f("restore_cairn_s"), "%.2f s" % f("load_torch_s"),
        ratio, ">= 1.5 (x faster)", ratio >= 1.5)
    ratio = paired("load_torch_s", "restore_mapped_s")
    row("3b' restore (map_files) vs torch.load", "%.2f s" % f("restore_mapped_s"),
        "%.2f s" % f("load_torch_s"), ratio, ">= 1.5 (x faster)", ratio >= 1.5)
if "save_torch_s" not in r and "save_cairn_s" in r:
    row("3 vs PyTorch", "skipped: install python3-torch", "", None, "", None)
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
if "cli_bytes" in r:
    gib = f("cli_bytes") / (1 << 30)
    med = lambda k: statistics.median(runs(k))
    ratio = paired("cli_dd_s", "cli_save_s")
    row("C1 %s x cairn save, %.2f GiB (fsync'd, committed)" % (r["cli_shards"], gib),
        "%.2f s" % med("cli_save_s"), "%.2f s %s x dd conv=fsync" % (med("cli_dd_s"), r["cli_shards"]),
        ratio, ">= 0.9", ratio >= 0.9)
    cpu = med("cli_writer_cpu_s") / gib
    row("C2 writer CPU per GiB saved", "%.2f s/GiB" % cpu, "", None, "<= 0.65 s/GiB", cpu <= 0.65)
    ratio = paired("cli_cat_st_s", "cli_restore_st_s")
    row("C3 cairn restore --to=x.safetensors", "%.2f s" % med("cli_restore_st_s"),
        "%.2f s cat of the data files" % med("cli_cat_st_s"), ratio, ">= 0.8", ratio >= 0.8)
    ratio = paired("cli_catsync_st_s", "cli_restore_st_s")
    row("C3' the same vs cat + sync (its durability)", "%.2f s" % med("cli_restore_st_s"),
        "%.2f s cat + sync" % med("cli_catsync_st_s"), ratio, "(reported)", None)
    rss = max(runs("cli_restore_st_rss_kib")) / 1024
    row("C3m cairn restore peak RSS (highest)", "%.0f MiB" % rss, "", None, "<= 256 MiB per GiB",
        rss <= 256 * gib)
    ratio = paired("cli_cat_prefix_s", "cli_restore_prefix_s")
    row("C4 cairn restore --to=PREFIX (whole)", "%.2f s" % med("cli_restore_prefix_s"),
        "%.2f s cat of the data files" % med("cli_cat_prefix_s"), ratio, ">= 0.8", ratio >= 0.8)
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
print("ratios: median over repeats of baseline/cairn, each pair timed back to back;")
print("times: medians of %s runs; all runs (s):" % r.get("repeats", "?"))
for k in sorted(r):
    if k.endswith("_runs"):
        print("  %s: %s" % (k[:-5], r[k]))
print("benchmark time: %.0f s" % f("bench_seconds"))
PYEOF

if [ "${CAIRN_BENCH_ORBAX:-1}" != 0 ]; then
  echo
  echo "Orbax side by side (bench/orbax_bench.sh --gib=$GIB):"
  "$ROOT/bench/orbax_bench.sh" --gib="$GIB" 2>"$TMP/orbax.err" ||
    { tail -n 20 "$TMP/orbax.err" >&2; echo "orbax figures: failed (above)"; }
fi

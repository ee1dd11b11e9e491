#!/usr/bin/env bash
# The CLI paths users run, against their plain-file baselines in the same
# minute (bench/run.sh runs this after the C++ figures; it also runs alone):
#
#   C1 4 x `cairn save` (one shard each, fsync'd, the last committed)
#      vs 4 x `dd conv=fsync` of the same files, run in parallel
#   C2 writer CPU seconds per GiB saved (utime+stime of every cairn-writer
#      from /proc/PID/stat, around C1's saves)
#   C3 `cairn restore --from=PREFIX --to=x.safetensors` vs `cat` of the
#      checkpoint's data files into one file; and the restore's peak RSS
#      (/usr/bin/time's maxresident)
#      (and vs cat followed by sync of its output: a restored file is fsync'd)
#   C4 `cairn restore --from=PREFIX --to=OTHER_PREFIX` vs the same `cat`
#
# Each shard file holds 128+64+32+24+8 MiB float tensors (256 MiB; --mib
# scales them). Ratios are medians over --repeats of back-to-back pairs,
# baseline/cairn, the order alternating; page cache dropped is not possible
# without root, so both sides of a pair read warm files.
#
#   bench/cli_bench.sh [--repeats=5] [--mib=256] [--shards=4]
# Needs build/bin (or $CAIRN_BIN_DIR); writers get $CAIRN_WRITER_FLAGS.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CAIRN_BIN_DIR:-$ROOT/build/bin}
export CAIRN_BIN_DIR=$BIN
PY=/usr/bin/python3
REPEATS=5
MIB=256
SHARDS=4
for a in "$@"; do
  case "$a" in
    --repeats=*) REPEATS=${a#--repeats=} ;;
    --mib=*) MIB=${a#--mib=} ;;
    --shards=*) SHARDS=${a#--shards=} ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "cli_bench.sh: unknown flag $a" >&2; exit 2 ;;
  esac
done
for b in cairn cairn-coordinator cairn-writer; do
  [ -x "$BIN/$b" ] || { echo "cli_bench.sh: $BIN/$b missing (build first)" >&2; exit 2; }
done
[ -x /usr/bin/time ] || { echo "cli_bench.sh: /usr/bin/time missing (apt-get install time)" >&2; exit 2; }

TMP=$(mktemp -d /tmp/cairn-cli-bench.XXXXXX)
CLUSTER=$TMP/cluster
cleanup() {
  "$ROOT/deploy/local/cluster.sh" stop "$CLUSTER" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
COORD=$("$ROOT/deploy/local/cluster.sh" start "$CLUSTER" 2) || { tail -n 5 "$CLUSTER"/logs/*.log >&2; exit 1; }

# Shard files: float32 tensors of 128, 64, 32, 24, 8 MiB (scaled by --mib/256).
"$PY" - "$TMP" "$SHARDS" "$MIB" <<'PYEOF'
import json, os, struct, sys
d, shards, mib = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
block = os.urandom(1 << 20)
for s in range(shards):
    sizes = [int(m * mib / 256 * (1 << 20)) // 4 * 4 for m in (128, 64, 32, 24, 8)]
    header, off = {}, 0
    for i, n in enumerate(sizes):
        header["s%d.t%d" % (s, i)] = {"dtype": "F32", "shape": [n // 4], "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(os.path.join(d, "w%d.safetensors" % s), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        left = off
        while left > 0:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n
PYEOF

now() { date +%s.%N; }
# Sum of utime+stime (clock ticks) of every writer.
writer_ticks() {
  local t=0 f
  for f in "$CLUSTER"/writer*.pid; do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$(cat "$f")/stat")))
  done
  echo "$t"
}
HZ=$(getconf CLK_TCK)
echo 0 >"$TMP/step"
save_all() {  # prints wall seconds and writer CPU seconds (runs in a subshell: step in a file)
  local STEP=$(($(cat "$TMP/step") + 1))
  echo $STEP >"$TMP/step"
  local t0 c0 t1 c1 pids=() i
  sync
  c0=$(writer_ticks); t0=$(now)
  for i in $(seq 0 $((SHARDS - 1))); do
    "$BIN/cairn" save --coordinator="$COORD" --job=bench --step=$STEP --from="$TMP/w$i.safetensors" \
      --shard=$i/$SHARDS --progress=never >/dev/null &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  t1=$(now); c1=$(writer_ticks)
  echo "$(echo "$t1 - $t0" | bc -l) $(echo "($c1 - $c0) / $HZ" | bc -l)"
}
dd_all() {
  local t0 t1 pids=() i
  sync
  t0=$(now)
  for i in $(seq 0 $((SHARDS - 1))); do
    dd if="$TMP/w$i.safetensors" of="$TMP/dd$i" bs=4M conv=fsync status=none &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  t1=$(now)
  rm -f "$TMP"/dd*
  echo "$t1 - $t0" | bc -l
}
# Keeps only the newest checkpoint (disk space).
"$BIN/cairn" policy --coordinator="$COORD" --job=bench --keep-last=1 >/dev/null 2>&1 || true

SAVE=() DD=() CPU=()
save_all >/dev/null; dd_all >/dev/null  # warm-up
for r in $(seq 1 "$REPEATS"); do
  if [ $((r % 2)) = 1 ]; then read -r s c < <(save_all); d=$(dd_all)
  else d=$(dd_all); read -r s c < <(save_all); fi
  SAVE+=("$s"); CPU+=("$c"); DD+=("$d")
done
BYTES=$(cat "$TMP"/w*.safetensors | wc -c)
PREFIX=$CLUSTER/storage/bench/ckpt-$(cat "$TMP/step")/variables
DATA_FILES=("$PREFIX".data-*)

cat_all() { local t0; t0=$(now); cat "${DATA_FILES[@]}" >"$TMP/cat.out"; echo "$(now) - $t0" | bc -l; rm -f "$TMP/cat.out"; }
# cat, then sync of the output: the same durability as cairn restore's output.
catsync_all() {
  local t0; t0=$(now); cat "${DATA_FILES[@]}" >"$TMP/cat.out"; sync "$TMP/cat.out"
  echo "$(now) - $t0" | bc -l; rm -f "$TMP/cat.out"
}
# restore_to DST: prints wall seconds and max RSS (KiB).
restore_to() {
  local t0 t1 rss
  rm -rf "$TMP/out"; mkdir -p "$TMP/out"
  t0=$(now)
  /usr/bin/time -f '%M' -o "$TMP/rss" "$BIN/cairn" restore --from="$PREFIX" --to="$TMP/out/$1" \
    --progress=never >/dev/null
  t1=$(now)
  rss=$(tail -n 1 "$TMP/rss")
  rm -rf "$TMP/out"
  echo "$(echo "$t1 - $t0" | bc -l) $rss"
}
RST=() RSS=() CAT=() RPF=() CATP=() CATS=()
cat_all >/dev/null; restore_to x.safetensors >/dev/null
for r in $(seq 1 "$REPEATS"); do
  if [ $((r % 2)) = 1 ]; then read -r s m < <(restore_to x.safetensors); c=$(cat_all)
  else c=$(cat_all); read -r s m < <(restore_to x.safetensors); fi
  RST+=("$s"); RSS+=("$m"); CAT+=("$c")
  CATS+=("$(catsync_all)")
  if [ $((r % 2)) = 1 ]; then read -r s m < <(restore_to variables); c=$(cat_all)
  else c=$(cat_all); read -r s m < <(restore_to variables); fi
  RPF+=("$s"); CATP+=("$c")
done

join() { local IFS=,; echo "$*"; }
{
echo "cli_bytes=$BYTES"
echo "cli_shards=$SHARDS"
echo "cli_save_s_runs=$(join "${SAVE[@]}")"
echo "cli_dd_s_runs=$(join "${DD[@]}")"
echo "cli_writer_cpu_s_runs=$(join "${CPU[@]}")"
echo "cli_restore_st_s_runs=$(join "${RST[@]}")"
echo "cli_restore_st_rss_kib_runs=$(join "${RSS[@]}")"
echo "cli_cat_st_s_runs=$(join "${CAT[@]}")"
echo "cli_catsync_st_s_runs=$(join "${CATS[@]}")"
echo "cli_restore_prefix_s_runs=$(join "${RPF[@]}")"
echo "cli_cat_prefix_s_runs=$(join "${CATP[@]}")"
} >"$TMP/result.txt"
cat "$TMP/result.txt"
# A human summary on stderr (bench/run.sh prints the table from stdout).
"$PY" - "$TMP/result.txt" >&2 <<'PYEOF'
import statistics, sys
r = dict(l.strip().partition("=")[::2] for l in open(sys.argv[1]))
runs = lambda k: [float(x) for x in r[k + "_runs"].split(",")]
med = lambda k: statistics.median(runs(k))
pair = lambda b, c: statistics.median(x / y for x, y in zip(runs(b), runs(c)))
gib = float(r["cli_bytes"]) / (1 << 30)
print("C1 %s x cairn save: %.2f s, dd conv=fsync %.2f s, ratio %.2f (target >= 0.9)" % (
    r["cli_shards"], med("cli_save_s"), med("cli_dd_s"), pair("cli_dd_s", "cli_save_s")))
print("C2 writer CPU: %.2f s/GiB (target <= 0.65)" % (med("cli_writer_cpu_s") / gib))
print("C3 restore to .safetensors: %.2f s, cat %.2f s, ratio %.2f (>= 0.8); peak RSS %.0f MiB (<= 256 for 1 GiB)" % (
    med("cli_restore_st_s"), med("cli_cat_st_s"), pair("cli_cat_st_s", "cli_restore_st_s"),
    max(runs("cli_restore_st_rss_kib")) / 1024))
print("C3' restore to .safetensors vs cat + sync (its durability): cat+sync %.2f s, ratio %.2f" % (
    med("cli_catsync_st_s"), pair("cli_catsync_st_s", "cli_restore_st_s")))
print("C4 restore to a prefix: %.2f s, cat %.2f s, ratio %.2f (>= 0.8)" % (
    med("cli_restore_prefix_s"), med("cli_cat_prefix_s"), pair("cli_cat_prefix_s", "cli_restore_prefix_s")))
PYEOF

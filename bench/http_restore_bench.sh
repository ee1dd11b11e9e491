#!/usr/bin/env bash
# Restore throughput over plain HTTP (nginx on 127.0.0.1) as a ratio to curl
# downloading the same objects from the same server in the same run.
#   bench/http_restore_bench.sh [MIB] [REPEATS]
# Cairn reads every tensor into memory with CRC checks (parallel ranged GETs);
# curl downloads each data file and the index to /dev/null, 4 in parallel.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CAIRN_BIN_DIR:-$ROOT/build/bin}
MIB=${1:-512}
REPEATS=${2:-3}
WORK=$(mktemp -d /tmp/cairn-http-bench.XXXXXX)
trap '"$ROOT/tests/servers/nginx.sh" stop "$WORK/nginx" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT

mkdir -p "$WORK/www"
/usr/bin/python3 - "$WORK/state.safetensors" "$MIB" <<'PY'
import json, os, struct, sys
path, mib = sys.argv[1], int(sys.argv[2])
sizes = [64 << 20, 16 << 20, 4 << 20, 1 << 20]
header, blobs, off, i, total = {}, [], 0, 0, mib << 20
while off < total:
    n = min(sizes[i % 4], total - off) // 4 * 4
    if n == 0: break
    header["t%04d" % i] = {"dtype": "F32", "shape": [n // 4], "data_offsets": [off, off + n]}
    off += n; i += 1
h = json.dumps(header, separators=(",", ":")).encode()
h += b" " * ((8 - (8 + len(h)) % 8) % 8)
with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h)
    left = off
    while left:
        n = min(left, 8 << 20); f.write(os.urandom(n)); left -= n
PY
"$BIN/cairn" convert "$WORK/state.safetensors" "$WORK/www/ckpt/variables" --shards=4 >/dev/null
rm -f "$WORK/state.safetensors"
eval "$("$ROOT/tests/servers/nginx.sh" start "$WORK/nginx" "$WORK/www")"
URLS=()
for f in "$WORK"/www/ckpt/*; do URLS+=(-o /dev/null "$CAIRN_HTTP_URL/ckpt/$(basename "$f")"); done
BYTES=$(du -cb "$WORK"/www/ckpt/* | tail -1 | cut -f1)

curl_once() {
  local t0 t1
  t0=$(date +%s.%N)
  curl -sf --no-progress-meter -Z --parallel-max 4 "${URLS[@]}"
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.4f\n", b - a}' 
}
cairn_once() { "$BIN/restore_bench" "$CAIRN_HTTP_URL/ckpt/variables" --threads=4 | sed -E 's/restore_seconds=([0-9.]+).*/\1/'; }

curl_once >/dev/null; cairn_once >/dev/null  # warm caches and connections
C=(); K=()
for _ in $(seq 1 "$REPEATS"); do C+=("$(curl_once)"); K+=("$(cairn_once)"); done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
CM=$(median "${C[@]}"); KM=$(median "${K[@]}")
printf 'http restore benchmark: %d MiB checkpoint (4 data files), median of %d runs, nginx on 127.0.0.1\n' "$MIB" "$REPEATS"
printf '%-34s %9s %9s\n' figure seconds GB/s
awk -v b="$BYTES" -v c="$CM" -v k="$KM" 'BEGIN {
  printf "%-34s %9.3f %9.2f\n", "curl, 4 parallel downloads", c, b / c / 1e9
  printf "%-34s %9.3f %9.2f\n", "cairn restore, CRC-checked", k, b / k / 1e9
  printf "ratio (cairn / curl throughput): %.2f  (target >= 0.9)\n", c / k
}' 

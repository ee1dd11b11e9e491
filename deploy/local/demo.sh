#!/usr/bin/env bash
# Cairn's main job on the embedded default: a coordinator and two shard
# writers on 127.0.0.1 (local files + RocksDB under one data folder); a
# simulated 4-worker training job with a partitioned embedding saves several
# steps, lists them, restores the newest and an older step onto 2 workers,
# and checks every byte. Then the CLI inspects and verifies what was written.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${CAIRN_BIN_DIR:-$ROOT/build/bin}
DATA=${CAIRN_DEMO_DIR:-$ROOT/build/demo}
rm -rf "$DATA" && mkdir -p "$DATA"
trap '"$ROOT/deploy/local/cluster.sh" stop "$DATA"' EXIT

echo "== starting a local cluster in $DATA (coordinator + 2 writers)"
COORD=$("$ROOT/deploy/local/cluster.sh" start "$DATA" 2)
echo "   coordinator at $COORD"

"$BIN/cairn-demo" --coordinator="$COORD" --job=demo --workers=4 --restore-workers=2 --steps=4

NEWEST=$(sed -n 's/^model_checkpoint_path: "\(.*\)"/\1/p' "$DATA/storage/demo/checkpoint")
echo "== the TensorFlow 'checkpoint' state file names $NEWEST"
cat "$DATA/storage/demo/checkpoint"
echo "== cairn list"
"$BIN/cairn" list --coordinator="$COORD" --job=demo
echo "== cairn inspect / verify of the newest checkpoint"
"$BIN/cairn" inspect "$DATA/storage/demo/$NEWEST"
"$BIN/cairn" verify "$DATA/storage/demo/$NEWEST"
if [ -f "$ROOT/../shared/tools/tfbundle.py" ]; then
  echo "== independent check with ../shared/tools/tfbundle.py"
  /usr/bin/python3 "$ROOT/../shared/tools/tfbundle.py" check "$DATA/storage/demo/$NEWEST" >"$DATA/check.json"
  grep -E '"(num_shards|entries|problems)"' "$DATA/check.json"
fi
echo "== restore the newest step to a safetensors file with the CLI"
"$BIN/cairn" restore --coordinator="$COORD" --job=demo --to="$DATA/newest.safetensors"
echo
echo "demo OK (data in $DATA)"

#!/usr/bin/env bash
# Cairn's main job on the embedded default: a small model's weights, one of
# them partitioned, go from a safetensors file into a sharded TensorFlow
# checkpoint and back, checked byte for byte on the way.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CAIRN="$ROOT/build/bin/cairn"
DATA=${CAIRN_DEMO_DIR:-$ROOT/build/demo}
rm -rf "$DATA" && mkdir -p "$DATA"

echo "== 1. make a model: dense layers, an embedding table and a step counter"
/usr/bin/python3 - "$DATA/model.safetensors" <<'PY'
import json, struct, sys, random
random.seed(7)
tensors = {
    "dense/kernel": ("F32", [64, 32]),
    "dense/bias": ("F32", [32]),
    "embedding": ("F32", [1000, 16]),
    "global_step": ("I64", []),
}
size = {"F32": 4, "I64": 8}
header, blobs, off = {}, [], 0
for name, (dt, shape) in sorted(tensors.items(), key=lambda kv: (-size[kv[1][0]], kv[0])):
    n = 1
    for d in shape: n *= d
    if dt == "F32": data = struct.pack("<%df" % n, *[random.uniform(-1, 1) for _ in range(n)])
    else: data = struct.pack("<q", 1000)
    header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(data)]}
    blobs.append(data); off += len(data)
h = json.dumps(header, separators=(",", ":")).encode()
h += b" " * ((8 - (8 + len(h)) % 8) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
PY

echo "== 2. convert to a TensorFlow V2 checkpoint with 2 data files"
"$CAIRN" convert "$DATA/model.safetensors" "$DATA/ckpt-1000/variables" --shards=2
ls -l "$DATA/ckpt-1000"

echo "== 3. inspect it"
"$CAIRN" inspect "$DATA/ckpt-1000/variables"

echo "== 4. verify every checksum"
"$CAIRN" verify "$DATA/ckpt-1000/variables"

if [ -f "$ROOT/../shared/tools/tfbundle.py" ]; then
  echo "== 5. independent check with ../shared/tools/tfbundle.py"
  /usr/bin/python3 "$ROOT/../shared/tools/tfbundle.py" check "$DATA/ckpt-1000/variables" >"$DATA/check.json"
  grep -E '"(num_shards|entries|problems)"' "$DATA/check.json"
fi

echo "== 6. convert back and compare byte for byte"
"$CAIRN" convert "$DATA/ckpt-1000/variables" "$DATA/roundtrip.safetensors"
cmp "$DATA/model.safetensors" "$DATA/roundtrip.safetensors"
echo
echo "demo OK: model.safetensors -> 2-shard checkpoint -> safetensors, identical ($(stat -c %s "$DATA/model.safetensors") bytes)"

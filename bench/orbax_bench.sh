#!/usr/bin/env bash
# Orbax side by side (bench/orbax_bench.py), runnable alone: makes or reuses
# the test environment (scripts/pyenv.sh: jax, orbax from PyPI) and runs the
# bench with the built cairn package. Builds nothing.
#
#   bench/orbax_bench.sh [--gib=2] [--rounds=3]
#
# About 3 x 2 GiB of RAM for the state and its restores, 5 GiB of scratch
# disk under /tmp, a few minutes on 2 cores.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CAIRN_BIN_DIR:-$ROOT/build/bin}
for b in cairn-coordinator cairn-writer; do
  [ -x "$BIN/$b" ] || { echo "orbax_bench.sh: $BIN/$b missing (build first, or set CAIRN_BIN_DIR)" >&2; exit 2; }
done
PY=$("$ROOT/scripts/pyenv.sh" | tail -1)
export CAIRN_BIN_DIR=$BIN PYTHONPATH="$(dirname "$BIN")/python${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL=2
exec "$PY" "$ROOT/bench/orbax_bench.py" "$@"

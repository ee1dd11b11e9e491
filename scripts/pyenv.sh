#!/usr/bin/env bash
# Creates (or reuses) the Python virtual environment the TensorFlow / Keras /
# Orbax tests and benchmarks run in, and prints its interpreter's path as the
# last line of stdout.
#
#   scripts/pyenv.sh            # -> /root/.cache/cairn/venv-<hash>/bin/python
#
# The environment is made by Debian's /usr/bin/python3 -m venv
# --system-site-packages (Debian's NumPy and torch stay visible) and holds the
# pinned packages of python/requirements-test.txt. Its path is keyed by that
# file's hash, so changing a pin builds a new one; an environment that finished
# installing has a .complete marker and is reused in well under a second. pip's
# own cache (~/.cache/pip) keeps a rebuild from downloading the wheels again.
# CAIRN_VENV_ROOT overrides ~/.cache/cairn. Exit status 1 if pip failed (the
# half-made environment is removed).
set -euo pipefail
cd "$(dirname "$0")/.."
REQ=python/requirements-test.txt
ROOT=${CAIRN_VENV_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/cairn}
hash=$(sha256sum "$REQ" | cut -c1-12)
VENV="$ROOT/venv-$hash"
if [ -f "$VENV/.complete" ] && "$VENV/bin/python" -c '' 2>/dev/null; then
  echo "$VENV/bin/python"
  exit 0
fi
mkdir -p "$ROOT"
# One installer at a time (parallel CI stages, two checkouts).
exec 9>"$ROOT/.lock"
flock 9
if [ ! -f "$VENV/.complete" ]; then
  rm -rf "$VENV"
  echo "pyenv: creating $VENV from $REQ" >&2
  /usr/bin/python3 -m venv --system-site-packages "$VENV" >&2
  if ! "$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off \
       -q -r "$REQ" >&2; then
    echo "pyenv: pip install -r $REQ failed" >&2
    rm -rf "$VENV"
    exit 1
  fi
  touch "$VENV/.complete"
  # Older environments (other pins) are left for pip's cache to make cheap;
  # remove those not used for a week.
  find "$ROOT" -maxdepth 1 -name 'venv-*' -type d ! -path "$VENV" -mtime +7 \
    -exec rm -rf {} + 2>/dev/null || true
fi
echo "$VENV/bin/python"

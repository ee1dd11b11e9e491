#!/usr/bin/env bash
# Creates (or reuses) the Python virtual environment the TensorFlow / Keras /
# JAX tests and the Orbax benchmark run in, and prints its interpreter's path
# as the last line of stdout.
#
#   scripts/pyenv.sh            # -> ~/.cache/cairn/venv-<hash>/bin/python
#
# The environment is made by Debian's /usr/bin/python3 -m venv
# --system-site-packages and holds the pinned packages of
# python/requirements-test.txt. Its path is keyed by that file's hash, so
# changing a pin makes a new one; one that finished installing has a
# .complete marker and is reused at once. Wheels are kept in
# ~/.cache/cairn/wheels (pip download; pip's HTTP cache is not relied on: the
# index may forbid caching), so a new environment downloads only what changed.
# CAIRN_VENV_ROOT overrides ~/.cache/cairn. Exit status 1 if pip failed (the
# half-made environment is removed).
set -euo pipefail
cd "$(dirname "$0")/.."
REQ=python/requirements-test.txt
ROOT=${CAIRN_VENV_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/cairn}
hash=$(sha256sum "$REQ" | cut -c1-12)
VENV="$ROOT/venv-$hash"
WHEELS="$ROOT/wheels"
if [ -f "$VENV/.complete" ] && "$VENV/bin/python" -c '' 2>/dev/null; then
  echo "$VENV/bin/python"
  exit 0
fi
mkdir -p "$ROOT" "$WHEELS"
# One installer at a time (two checkouts, parallel stages).
exec 9>"$ROOT/.lock"
flock 9
if [ ! -f "$VENV/.complete" ]; then
  rm -rf "$VENV"
  echo "pyenv: creating $VENV from $REQ" >&2
  /usr/bin/python3 -m venv --system-site-packages "$VENV" >&2
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  sed -n '/^[^#].*# *no-deps/!p' "$REQ" >"$tmp/deps.txt"
  sed -n 's/^\([^#][^ ]*\) *# *no-deps.*/\1/p' "$REQ" >"$tmp/nodeps.txt"
  pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
  if ! { "${pip[@]}" download -d "$WHEELS" -r "$tmp/deps.txt" >&2 &&
         "${pip[@]}" download -d "$WHEELS" --no-deps -r "$tmp/nodeps.txt" >&2 &&
         "${pip[@]}" install --no-index --find-links "$WHEELS" -r "$tmp/deps.txt" >&2 &&
         "${pip[@]}" install --no-index --find-links "$WHEELS" --no-deps -r "$tmp/nodeps.txt" >&2; }; then
    echo "pyenv: installing $REQ failed" >&2
    rm -rf "$VENV"
    exit 1
  fi
  touch "$VENV/.complete"
  # Environments of older pins: removed once unused for a week.
  find "$ROOT" -maxdepth 1 -name 'venv-*' -type d ! -path "$VENV" -mtime +7 \
    -exec rm -rf {} + 2>/dev/null || true
fi
echo "$VENV/bin/python"

#!/usr/bin/env bash
# README command 1: installs dependencies, builds Cairn, and runs its main job
# on the embedded default (local files, everything on this machine).
set -euo pipefail
cd "$(dirname "$0")/.."
export CCACHE_BASEDIR="$(pwd)" CCACHE_NOHASHDIR=1
./scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build -j"$(nproc)"
exec ./deploy/local/demo.sh

#!/usr/bin/env bash
# Installs what bench/run.sh needs beyond scripts/install-deps.sh: Debian's
# PyTorch, for the torch.save / torch.load baseline (figure 3). Run as root or
# with sudo. Not part of scripts/install-deps.sh on purpose (it is large).
set -euo pipefail
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get install -y --no-install-recommends python3-torch

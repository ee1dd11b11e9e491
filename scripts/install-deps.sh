#!/usr/bin/env bash
# Installs every build and test dependency of Cairn from Debian 12 packages.
# Idempotent: packages already present are skipped quickly by apt.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git python3 strace
  clang libclang-rt-14-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  librocksdb-dev libabsl-dev libssl-dev libcurl4-openssl-dev libxml2-dev libsnappy-dev
  libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev libcpp-httplib-dev
  # The TLS tests make throwaway certificates with the openssl tool.
  openssl
  # Test servers (tests/servers/): single-node Ceph object gateway (S3) and
  # nginx for plain-HTTP reads. ceph-mgr is not needed for S3.
  ceph-mon ceph-osd radosgw ceph-common nginx curl
  # deploy manifest checks (tests/deploy_manifests_test.py)
  python3-yaml
  # the status page test renders it in headless Chromium
  chromium
  # promtool: /metrics and deploy/prometheus/ alert rules are checked with it
  prometheus
  # The Python package (python/, built for /usr/bin/python3): pybind11 headers,
  # NumPy; PyTorch for the train/kill/resume example test (large: ~45 s here).
  pybind11-dev python3-dev python3-numpy python3-torch
  # The HA catalog: etcd's v3 schemas (the coordinator's etcd client is
  # generated from them) and etcd itself for the tests.
  golang-etcd-server-dev etcd-server etcd-client
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# Package scripts must not start system services (nginx on port 80, ceph
# daemons): the tests run their own. Add a deny-all policy-rc.d only for the
# duration of the install if the machine has none.
added_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod 755 /usr/sbin/policy-rc.d
  added_policy=1
fi
status=0
$SUDO apt-get update -qq && \
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" || status=$?
[ -n "$added_policy" ] && $SUDO rm -f /usr/sbin/policy-rc.d
exit $status

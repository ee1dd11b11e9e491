#!/usr/bin/env bash
# Throwaway single-node Ceph object gateway (S3) for tests.
#
#   ceph_rgw.sh start DIR   # prints `export AWS_...=...` lines (also in DIR/env.sh)
#   ceph_rgw.sh stop DIR    # radosgw, then osd, then mon; safe to call twice
#   ceph_rgw.sh status DIR  # exit 0 if all three daemons of DIR are running
#
#   eval "$(tests/servers/ceph_rgw.sh start /tmp/rgw)" && ... ; tests/servers/ceph_rgw.sh stop /tmp/rgw
#
# One mon + one OSD + radosgw (beast on 127.0.0.1, free port), cephx on, pools of
# size 1, all state under DIR (ceph.conf, keyrings, data, run, log); -c CONF is
# passed to every command, nothing in /etc/ceph, no systemd, no mgr (S3 does not
# need one). An S3 user with a fixed test key is created, and bucket `cairn-test`.
# Path-style addressing only (no rgw dns name): http://127.0.0.1:PORT/BUCKET/KEY.
#
# Object store (CEPH_RGW_STORE):
#   memstore (default): data in the OSD's RAM, device bounded by
#     CEPH_RGW_MEMSTORE_BYTES (default 2 GiB). Fastest start (~2-3 s here).
#     Deleted data is only freed by RGW garbage collection (after ~10-20 s as
#     configured here), and a full memstore makes PUTs hang instead of failing,
#     so keep a test's live data well under the bound. Nothing survives a stop
#     (the OSD shuts down fast without saving).
#   bluestore: on a sparse file DIR/osd.0.block of CEPH_RGW_BLUESTORE_BYTES
#     (default 20 GiB apparent size, only what is written uses disk), for tests
#     storing several hundred MiB. Start ~10 s here.
#
# Other knobs: CEPH_RGW_START_TIMEOUT (default 60 s, whole start),
# CEPH_RGW_ACCESS_KEY / CEPH_RGW_SECRET_KEY (fixed defaults below).
set -euo pipefail
unset CEPH_ARGS CEPH_CONF

ACCESS_KEY=${CEPH_RGW_ACCESS_KEY:-CAIRNTESTACCESSKEY01}
SECRET_KEY=${CEPH_RGW_SECRET_KEY:-cairnTestSecretKey0123456789abcdefghijkl}
REGION=us-east-1
BUCKET=cairn-test
RGW_NAME=client.rgw.cairn
MARKER=.cairn-ceph-rgw
STORE=${CEPH_RGW_STORE:-memstore}
MEMSTORE_BYTES=${CEPH_RGW_MEMSTORE_BYTES:-2147483648}
BLUESTORE_BYTES=${CEPH_RGW_BLUESTORE_BYTES:-21474836480}
START_TIMEOUT=${CEPH_RGW_START_TIMEOUT:-60}

usage() { echo "usage: $0 start|stop|status DIR" >&2; exit 2; }
log() { echo "ceph_rgw: $*" >&2; }

[ $# -eq 2 ] || usage
CMD=$1
if [ "$CMD" != start ] && [ ! -d "$2" ]; then
  [ "$CMD" = stop ] && exit 0
  echo "not running"; exit 1
fi
mkdir -p "$2" || { log "cannot create $2"; exit 1; }
DIR=$(cd "$2" && pwd)
CONF=$DIR/ceph.conf
RUN=$DIR/run
HERE=$(cd "$(dirname "$0")" && pwd)
LOGD=$DIR/log

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# pid_of NAME: prints the pid recorded for daemon NAME (mon/osd/rgw) if that
# process is still alive and is the expected binary.
pid_of() {
  local name=$1 pid exe
  [ -f "$RUN/$name.spid" ] || return 1
  read -r pid exe < "$RUN/$name.spid" || return 1
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  # Guard against pid reuse: the process must still run the same binary.
  [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$exe" ] || return 1
  # A zombie is as good as gone.
  [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 1
  echo "$pid"
}

any_running() {
  local n
  for n in rgw osd mon; do pid_of "$n" >/dev/null && return 0; done
  return 1
}

# stop_one NAME: SIGTERM, wait up to 20 s, then SIGKILL.
stop_one() {
  local name=$1 pid i
  pid=$(pid_of "$name") || { rm -f "$RUN/$name.spid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 200; i++)); do
    pid_of "$name" >/dev/null || break
    sleep 0.1
  done
  if pid_of "$name" >/dev/null; then
    log "$name (pid $pid) did not exit within 20 s of SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do pid_of "$name" >/dev/null || break; sleep 0.1; done
  fi
  rm -f "$RUN/$name.spid"
}

do_stop() {
  [ -d "$RUN" ] || return 0
  # radosgw before the OSD: with the OSD gone radosgw hangs in shutdown.
  stop_one rgw
  stop_one osd
  stop_one mon
}

# launch NAME BINARY ARGS...: starts a daemon in the foreground mode of ceph
# (-f), detached into its own session, output to DIR/log/NAME.out.
launch() {
  local name=$1 bin; shift
  bin=$(command -v "$1"); shift
  bin=$(readlink -f "$bin")
  setsid "$bin" "$@" </dev/null >"$LOGD/$name.out" 2>&1 &
  local pid=$! i
  echo "$pid $bin" > "$RUN/$name.spid"
  # Until the exec is done /proc/PID/exe is still bash: wait for it, so that
  # pid_of does not take the daemon for dead.
  for ((i = 0; i < 100; i++)); do
    [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$bin" ] && return 0
    [ -d "/proc/$pid" ] || return 0
    sleep 0.02
  done
}

DEADLINE=0
ms_now() { date +%s%3N; }
secs_since() { local d=$(( $(ms_now) - $1 )); printf '%d.%01d' $((d / 1000)) $((d % 1000 / 100)); }
remaining() { local r=$((DEADLINE - SECONDS)); [ $r -gt 0 ] && echo $r || echo 1; }

fail() {
  log "FAILED: $*"
  local f
  for f in "$LOGD"/*.out "$LOGD"/mon.a.log "$LOGD"/osd.0.log "$LOGD"/$RGW_NAME.log; do
    [ -s "$f" ] || continue
    echo "----- tail of $f -----" >&2
    tail -n 25 "$f" >&2
  done
  log "stopping what was started (state left in $DIR)"
  do_stop
  exit 1
}

# check_alive NAME...: fails if a daemon that should be running died.
check_alive() {
  local n
  for n in "$@"; do pid_of "$n" >/dev/null || fail "$n exited during start (see $LOGD)"; done
}

# ceph_cli ARGS...: the ceph CLI bounded by the remaining start time.
ceph_cli() {
  timeout "$(remaining)" ceph -c "$CONF" --connect-timeout "$(remaining)" "$@"
}

write_conf() {
  local mon_port=$1 rgw_port=$2 fsid=$3
  cat > "$CONF" <<EOF
# Generated by tests/servers/ceph_rgw.sh for a throwaway test cluster.
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$mon_port
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
run dir = $RUN
admin socket = $RUN/\$cluster-\$name.asok
pid file = $RUN/\$name.pid
log file = $LOGD/\$name.log
crash dir = $DIR/crash
mon cluster log file = $LOGD/cluster.log
log to stderr = false
err to stderr = true
# One OSD, pools of size 1.
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool delete = true
# Fast paxos: cold start ~13 s -> ~3 s.
paxos propose interval = 0.05
paxos min wait = 0.01
# No mgr in this cluster; do not warn about it.
mon mgr mkfs grace = 31536000
mon data avail warn = 2
mon data avail crit = 1
# Keep the thread count (and idle CPU) modest on a small machine.
ms async op threads = 2

[mon]
# The mon's keyring is mon data/keyring (ceph-mon --mkfs copies it there; the
# data folder must be empty before --mkfs).
mon data = $DIR/mon.\$id

[osd]
keyring = $DIR/osd.\$id/keyring
osd data = $DIR/osd.\$id
osd objectstore = $STORE
memstore device bytes = $MEMSTORE_BYTES
bluestore block path = $DIR/osd.\$id.block
bluestore block create = true
bluestore block size = $BLUESTORE_BYTES
bluestore fsck on mount = false
bluestore cache size = 268435456
osd memory target = 1073741824
osd op num shards = 2
osd op num threads per shard = 1

[client]
keyring = $DIR/keyring.admin

[$RGW_NAME]
keyring = $DIR/rgw/keyring
rgw data = $DIR/rgw
rgw frontends = beast endpoint=127.0.0.1:$rgw_port
rgw thread pool size = 64
rgw enable usage log = false
rgw gc obj min wait = 10
rgw gc processor period = 10
EOF
}

do_start() {
  local t0
  t0=$(ms_now)
  DEADLINE=$((SECONDS + START_TIMEOUT))
  if any_running; then
    log "a cluster is already running in $DIR (stop it first: $0 stop $DIR)"
    exit 1
  fi
  if [ -n "$(ls -A "$DIR")" ] && [ ! -f "$DIR/$MARKER" ]; then
    log "$DIR is not empty and was not made by this script; refusing to use it"
    exit 1
  fi
  case $STORE in memstore|bluestore) ;; *) log "CEPH_RGW_STORE must be memstore or bluestore"; exit 2;; esac
  # Stale state from an earlier run of this script: start afresh.
  rm -rf "$DIR"/mon.a "$DIR"/osd.0 "$DIR"/osd.0.block "$DIR"/rgw "$RUN" "$LOGD" "$DIR"/crash \
         "$DIR"/keyring.* "$DIR"/monmap "$DIR"/env.sh "$CONF"
  touch "$DIR/$MARKER"
  mkdir -p "$RUN" "$LOGD" "$DIR/mon.a" "$DIR/osd.0" "$DIR/rgw" "$DIR/crash"

  local mon_port rgw_port fsid
  mon_port=$(free_port)
  rgw_port=$(free_port)
  while [ "$rgw_port" = "$mon_port" ]; do rgw_port=$(free_port); done
  fsid=$(python3 -c 'import uuid; print(uuid.uuid4())')
  write_conf "$mon_port" "$rgw_port" "$fsid"

  # Keys and the first monitor.
  ceph-authtool --create-keyring "$DIR/keyring.mon" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool --create-keyring "$DIR/keyring.admin" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
  ceph-authtool "$DIR/keyring.mon" --import-keyring "$DIR/keyring.admin" >/dev/null
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" "$DIR/monmap" >/dev/null
  ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/keyring.mon" \
    > "$LOGD/mon-mkfs.out" 2>&1 || fail "ceph-mon --mkfs"
  launch mon ceph-mon -c "$CONF" -i a -f

  # The OSD: register it (waits for the mon to answer), then mkfs and start.
  local osd_uuid osd_secret osd_id
  osd_uuid=$(python3 -c 'import uuid; print(uuid.uuid4())')
  osd_secret=$(ceph-authtool --gen-print-key)
  check_alive mon
  osd_id=$(echo "{\"cephx_secret\": \"$osd_secret\"}" |
           ceph_cli osd new "$osd_uuid" -i - 2>"$LOGD/osd-new.out") || fail "ceph osd new (mon not answering?)"
  [ "$osd_id" = 0 ] || fail "expected osd id 0, got '$osd_id'"
  ceph-authtool --create-keyring "$DIR/osd.0/keyring" --name osd.0 --add-key "$osd_secret" >/dev/null
  timeout "$(remaining)" ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$osd_uuid" \
    > "$LOGD/osd-mkfs.out" 2>&1 || fail "ceph-osd --mkfs"
  launch osd ceph-osd -c "$CONF" -i 0 -f

  # The gateway's key, then radosgw (it creates its pools, so it waits for the OSD).
  ceph_cli auth get-or-create "$RGW_NAME" mon 'allow rw' osd 'allow rwx' \
    -o "$DIR/rgw/keyring" 2>"$LOGD/rgw-auth.out" || fail "ceph auth get-or-create $RGW_NAME"
  check_alive mon osd
  launch rgw radosgw -c "$CONF" -n "$RGW_NAME" -f

  local url=http://127.0.0.1:$rgw_port
  until curl -s -o /dev/null --max-time 2 "$url/"; do
    check_alive mon osd rgw
    [ $SECONDS -lt $DEADLINE ] || fail "radosgw did not answer on $url within ${START_TIMEOUT}s"
    sleep 0.2
  done
  local t_rgw
  t_rgw=$(secs_since "$t0")

  timeout "$(remaining)" radosgw-admin -c "$CONF" user create --uid=cairn-test \
    --display-name="Cairn tests" --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" \
    > "$LOGD/user-create.out" 2>&1 || fail "radosgw-admin user create"

  # Create the test bucket (the signature check also proves the user works).
  AWS_ENDPOINT_URL=$url AWS_ACCESS_KEY_ID=$ACCESS_KEY AWS_SECRET_ACCESS_KEY=$SECRET_KEY \
    AWS_REGION=$REGION timeout "$(remaining)" python3 "$HERE/s3req.py" PUT "/$BUCKET" \
    > "$LOGD/create-bucket.out" 2>&1 ||
    fail "creating bucket $BUCKET: $(cat "$LOGD/create-bucket.out" 2>/dev/null)"

  cat > "$DIR/env.sh" <<EOF
export AWS_ENDPOINT_URL=$url
export AWS_ACCESS_KEY_ID=$ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$SECRET_KEY
export AWS_REGION=$REGION
EOF
  cat "$DIR/env.sh"
  log "ready at $url ($STORE; radosgw answered after ${t_rgw}s, ready after $(secs_since "$t0")s)"
}

case $CMD in
  start) do_start ;;
  stop) do_stop ;;
  status)
    for n in mon osd rgw; do pid_of "$n" >/dev/null || { echo "$n not running"; exit 1; }; done
    echo "running"; cat "$DIR/env.sh" 2>/dev/null ;;
  *) usage ;;
esac

#!/usr/bin/env bash
# Smoke test of the test servers: starts a Ceph RGW, the fault proxy in front
# of it and nginx, all in a temporary folder, checks them with curl (AWS SigV4)
# and s3req.py, and stops everything. Ends with "smoke: N passed, N failed".
#   tests/servers/smoke.sh          (KEEP=1 keeps the temporary folder)
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d /tmp/cairn-servers-smoke.XXXXXX)
RGW_DIR=$TMP/rgw
NGINX_DIR=$TMP/nginx
WWW=$TMP/www
PROXY_PID=""
pass=0
fail=0

cleanup() {
  [ -n "$PROXY_PID" ] && kill -TERM "$PROXY_PID" 2>/dev/null && wait "$PROXY_PID" 2>/dev/null
  PROXY_PID=""
  "$HERE/nginx.sh" stop "$NGINX_DIR" || true
  "$HERE/ceph_rgw.sh" stop "$RGW_DIR" || true
  if [ -n "${KEEP:-}" ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

# check NAME EXPECTED ACTUAL
check() {
  if [ "$2" = "$3" ]; then
    pass=$((pass + 1)); echo "ok   $1"
  else
    fail=$((fail + 1)); echo "FAIL $1: expected '$2', got '$3'"
  fi
}
now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$(now) - $1:.1f}')"; }

# s3curl ENDPOINT ARGS...: curl signed with AWS SigV4. curl 7.88 does not add
# x-amz-content-sha256 itself and RGW requires it, so it is sent as
# UNSIGNED-PAYLOAD (curl signs it). Prints the HTTP status.
s3curl() {
  local ep=$1; shift
  curl -s -o "$TMP/body" -w '%{http_code}' --max-time 60 \
    --aws-sigv4 "aws:amz:$AWS_REGION:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
    -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$@"
}

# s3_roundtrip LABEL ENDPOINT BUCKET: bucket create, PUT, GET, Range GET, HEAD,
# list, DELETE object, GET 404, DELETE bucket.
s3_roundtrip() {
  local label=$1 ep=$2 b=$3
  check "$label: create bucket $b" 200 "$(s3curl "$ep" -X PUT "$ep/$b")"
  check "$label: PUT small object" 200 "$(s3curl "$ep" -T "$TMP/small.txt" "$ep/$b/dir/small.txt")"
  check "$label: PUT 20 MiB object" 200 "$(s3curl "$ep" -T "$TMP/big.bin" "$ep/$b/big.bin")"
  check "$label: GET small object" 200 "$(s3curl "$ep" "$ep/$b/dir/small.txt")"
  check "$label: GET small body" "$(cat "$TMP/small.txt")" "$(cat "$TMP/body")"
  check "$label: GET 20 MiB object" 200 "$(s3curl "$ep" "$ep/$b/big.bin")"
  check "$label: GET 20 MiB body" "$(sha256sum < "$TMP/big.bin")" "$(sha256sum < "$TMP/body")"
  check "$label: Range GET" 206 "$(s3curl "$ep" -r 1000-1999 "$ep/$b/big.bin")"
  check "$label: Range body" "$(tail -c +1001 "$TMP/big.bin" | head -c 1000 | sha256sum)" \
    "$(sha256sum < "$TMP/body")"
  check "$label: HEAD" 200 "$(s3curl "$ep" -I "$ep/$b/big.bin")"
  check "$label: list objects" 200 "$(s3curl "$ep" "$ep/$b?list-type=2&prefix=dir%2F")"
  check "$label: list has key" 1 "$(grep -c '<Key>dir/small.txt</Key>' "$TMP/body")"
  check "$label: DELETE small" 204 "$(s3curl "$ep" -X DELETE "$ep/$b/dir/small.txt")"
  check "$label: DELETE big" 204 "$(s3curl "$ep" -X DELETE "$ep/$b/big.bin")"
  check "$label: GET deleted" 404 "$(s3curl "$ep" "$ep/$b/dir/small.txt")"
  check "$label: DELETE bucket" 204 "$(s3curl "$ep" -X DELETE "$ep/$b")"
}

# start_proxy ARGS...: starts fault_proxy.py; sets PROXY_PID and PROXY_URL.
start_proxy() {
  local out=$TMP/proxy.out i
  : > "$out"
  python3 "$HERE/fault_proxy.py" "$@" > "$out" 2> "$TMP/proxy.err" &
  PROXY_PID=$!
  for ((i = 0; i < 100; i++)); do grep -q '^listening on ' "$out" && break; sleep 0.05; done
  PROXY_URL=http://$(sed -n 's/^listening on //p' "$out")
}
stop_proxy() {
  kill -TERM "$PROXY_PID"; wait "$PROXY_PID"; PROXY_PID=""
  echo "     $(cat "$TMP/proxy.err")"
}

echo "hello from cairn $(date)" > "$TMP/small.txt"
head -c $((20 << 20)) /dev/urandom > "$TMP/big.bin"

# --- Ceph RGW -------------------------------------------------------------
t=$(now)
if ! "$HERE/ceph_rgw.sh" start "$RGW_DIR" > "$TMP/rgw.env"; then
  check "ceph_rgw.sh start" 0 1
  echo "smoke: $pass passed, $fail failed"; exit 1
fi
RGW_START=$(elapsed "$t")
check "ceph_rgw.sh start (took ${RGW_START}s)" 0 0
check "env.sh matches stdout" "$(cat "$TMP/rgw.env")" "$(cat "$RGW_DIR/env.sh")"
eval "$(cat "$TMP/rgw.env")"
"$HERE/ceph_rgw.sh" start "$RGW_DIR" > /dev/null 2>&1
check "second start refused while running" 1 $?

RGW=$AWS_ENDPOINT_URL
check "bucket cairn-test exists" 200 "$(s3curl "$RGW" -I "$RGW/cairn-test")"
s3_roundtrip "rgw" "$RGW" cairn-smoke
check "wrong secret refused" 403 "$(AWS_SECRET_ACCESS_KEY=wrong s3curl "$RGW" "$RGW/cairn-test")"
check "wrong secret code" 1 "$(grep -c SignatureDoesNotMatch "$TMP/body")"
check "anonymous refused" 403 "$(curl -s -o /dev/null -w '%{http_code}' "$RGW/cairn-test/x")"
check "s3req.py signed PUT" 0 "$(python3 "$HERE/s3req.py" PUT /cairn-test/s3req.txt --data-file "$TMP/small.txt" 2>/dev/null; echo $?)"
check "s3req.py GET" "$(cat "$TMP/small.txt")" "$(python3 "$HERE/s3req.py" GET /cairn-test/s3req.txt 2>/dev/null)"
check "s3req.py DELETE" 0 "$(python3 "$HERE/s3req.py" DELETE /cairn-test/s3req.txt 2>/dev/null; echo $?)"

# --- fault proxy in front of RGW -----------------------------------------
start_proxy --listen-port=0 --upstream="$RGW" --fault-rate=0 --seed=1 --log="$TMP/proxy.log"
s3_roundtrip "proxy rate 0" "$PROXY_URL" cairn-smoke-proxy
stop_proxy
check "proxy rate 0: requests logged" 12 "$(grep -c ' fault=none ' "$TMP/proxy.log")"
check "proxy rate 0: no faults logged" 0 "$(grep ' fault=' "$TMP/proxy.log" | grep -vc ' fault=none ')"

start_proxy --upstream="$RGW" --fault-rate=1 --faults=error500 --seed=2
check "fault error500" 500 "$(s3curl "$PROXY_URL" -T "$TMP/small.txt" "$PROXY_URL/cairn-test/f")"
check "fault error500 body" 1 "$(grep -c '<Code>InternalError</Code>' "$TMP/body")"
stop_proxy
start_proxy --upstream="$RGW" --fault-rate=1 --faults=slowdown503 --seed=2
check "fault slowdown503" 503 "$(s3curl "$PROXY_URL" "$PROXY_URL/cairn-test/f")"
check "fault slowdown503 body" 1 "$(grep -c '<Code>SlowDown</Code>' "$TMP/body")"
stop_proxy
start_proxy --upstream="$RGW" --fault-rate=1 --faults=drop_before --seed=2
curl -s -o /dev/null "$PROXY_URL/cairn-test/f"
check "fault drop_before: curl empty reply" 52 $?
stop_proxy
start_proxy --upstream="$RGW" --fault-rate=1 --faults=drop_after --seed=2
s3curl "$PROXY_URL" -T "$TMP/small.txt" "$PROXY_URL/cairn-test/dropped-after" > /dev/null
check "fault drop_after: curl empty reply" 52 $?
check "fault drop_after: PUT reached RGW" 200 "$(s3curl "$RGW" "$RGW/cairn-test/dropped-after")"
s3curl "$RGW" -X DELETE "$RGW/cairn-test/dropped-after" > /dev/null
stop_proxy
start_proxy --upstream="$RGW" --fault-rate=1 --faults=slow --seed=2
t=$(now)
check "fault slow: still answers" 404 "$(s3curl "$PROXY_URL" "$PROXY_URL/cairn-test/none")"
check "fault slow: took >= 0.2 s" 1 "$(python3 -c "print(int($(now) - $t >= 0.2))")"
stop_proxy
start_proxy --upstream="$RGW" --fault-rate=0.3 --seed=5 --log="$TMP/proxy-mix.log"
for i in $(seq 1 20); do s3curl "$PROXY_URL" "$PROXY_URL/cairn-test/none$i" >/dev/null 2>&1; done
stop_proxy
check "proxy rate 0.3: 20 requests logged" 20 "$(grep -c ' GET /cairn-test/none' "$TMP/proxy-mix.log")"

# --- nginx ---------------------------------------------------------------
mkdir -p "$WWW/sub"
cp "$TMP/big.bin" "$WWW/sub/big.bin"
cp "$TMP/small.txt" "$WWW/small.txt"
t=$(now)
if "$HERE/nginx.sh" start "$NGINX_DIR" "$WWW" > "$TMP/nginx.env"; then
  check "nginx.sh start (took $(elapsed "$t")s)" 0 0
  eval "$(cat "$TMP/nginx.env")"
  H=$CAIRN_HTTP_URL
  hc() { curl -s -o "$TMP/body" -w '%{http_code}' "$@"; }
  check "nginx GET" 200 "$(hc "$H/small.txt")"
  check "nginx GET body" "$(cat "$TMP/small.txt")" "$(cat "$TMP/body")"
  check "nginx GET 20 MiB" "$(sha256sum < "$TMP/big.bin")" "$(curl -s "$H/sub/big.bin" | sha256sum)"
  check "nginx Range GET" 206 "$(hc -r 5-14 "$H/sub/big.bin")"
  check "nginx Range body" "$(tail -c +6 "$TMP/big.bin" | head -c 10 | sha256sum)" "$(sha256sum < "$TMP/body")"
  check "nginx no autoindex" 403 "$(hc "$H/sub/")"
  check "nginx missing file" 404 "$(hc "$H/nope")"
  check "nginx PUT refused" 403 "$(hc -X PUT -d x "$H/small.txt")"
  start_proxy --upstream="$H" --fault-rate=0
  check "nginx via fault proxy" 206 "$(hc -r 5-14 "$PROXY_URL/sub/big.bin")"
  check "nginx via fault proxy body" "$(tail -c +6 "$TMP/big.bin" | head -c 10 | sha256sum)" "$(sha256sum < "$TMP/body")"
  stop_proxy
  "$HERE/nginx.sh" stop "$NGINX_DIR"
  check "nginx stopped" 000 "$(hc --max-time 2 "$H/small.txt")"
else
  check "nginx.sh start" 0 1
fi

# --- stop ------------------------------------------------------------------
t=$(now)
"$HERE/ceph_rgw.sh" stop "$RGW_DIR"
check "ceph_rgw.sh stop (took $(elapsed "$t")s)" 0 $?
"$HERE/ceph_rgw.sh" stop "$RGW_DIR"
check "ceph_rgw.sh stop again" 0 $?
check "rgw stopped" 000 "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$RGW/")"
left=$(pgrep -f -- "$TMP" | tr '\n' ' ')
check "no processes left under $TMP" "" "$left"

echo "smoke: RGW start ${RGW_START}s"
echo "smoke: $pass passed, $fail failed"
[ "$fail" -eq 0 ]

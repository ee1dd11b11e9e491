# Shared by cluster.sh and ha.sh (sourced, not run).

# wait_listening FILE [TRIES]: prints HOST:PORT once the server has printed
# "listening on HOST:PORT" to FILE (checking every 0.1 s, TRIES times,
# default 100); fails, naming the server's log, if it never does.
wait_listening() {
  for _ in $(seq 1 "${2:-100}"); do
    if grep -q '^listening on ' "$1" 2>/dev/null; then sed -n 's/^listening on //p' "$1"; return 0; fi
    sleep 0.1
  done
  echo "server did not start; see ${1%.out}.log" >&2
  return 1
}

# Sourced by scripts that run a real megakerneld (deploy/run.sh, tests/bench/grpc_bench.sh).
# start_megakerneld <binary> <log file> [flags...]: starts it on 127.0.0.1 (a free port), waits
# until it listens, and sets $server (its pid) and $target (host:port). The caller owns cleanup.
start_megakerneld() {
  local binary=$1 log=$2
  shift 2
  "$binary" --listen=127.0.0.1:0 "$@" >"$log" 2>&1 &
  server=$!
  for _ in $(seq 1 300); do
    grep -q "listening on" "$log" && break
    kill -0 "$server" 2>/dev/null || { cat "$log"; return 1; }
    sleep 0.1  # startup poll: the log line is the readiness signal
  done
  target=$(grep -o 'listening on [0-9.]*:[0-9]*' "$log" | awk '{print $3}')
  [ -n "$target" ]
}

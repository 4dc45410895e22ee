#!/usr/bin/env bash
# gRPC benchmark (label perf): starts megakerneld (CPU engine) on 127.0.0.1 port 0 and runs
# `mkctl bench --mode=suite`, which measures the product's RPCs and, on the same channel, the
# Diagnostics echo baselines, and prints `bench:` lines with the ratios.
# usage: grpc_bench.sh <megakerneld> <mkctl>
set -euo pipefail
megakerneld=$1
mkctl=$2
log=$(mktemp)
"$megakerneld" --listen=127.0.0.1:0 --engine=cpu >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 300); do
  grep -q "listening on" "$log" && break
  kill -0 $server 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.1
done
target=$(grep -o 'listening on [0-9.]*:[0-9]*' "$log" | awk '{print $3}')
echo "# grpc: megakerneld $(grep -o 'engine [a-z]* ([^)]*)' "$log"), $(nproc) cores"
"$mkctl" bench --mode=suite --target="$target"
kill -TERM $server
wait $server

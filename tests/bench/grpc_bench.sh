#!/usr/bin/env bash
# gRPC benchmark (label perf): starts megakerneld (CPU engine; MK_SERVER_FLAGS=--engine=auto on
# a GPU machine picks the CUDA engine) on 127.0.0.1 port 0 and runs
# `mkctl bench --mode=suite`, which measures the product's RPCs and, on the same channel, the
# Diagnostics echo baselines, and prints `bench:` lines with the ratios.
# usage: grpc_bench.sh <megakerneld> <mkctl>
set -euo pipefail
megakerneld=$1
mkctl=$2
source "$(dirname "${BASH_SOURCE[0]}")/../../deploy/start_megakerneld.sh"
log=$(mktemp)
trap 'kill ${server:-} 2>/dev/null || true; rm -f "$log"' EXIT
# MK_SERVER_FLAGS: extra megakerneld flags (e.g. --claim_batch=256) for experiments.
# shellcheck disable=SC2086
start_megakerneld "$megakerneld" "$log" --engine=cpu --metrics_listen= ${MK_SERVER_FLAGS:-}
echo "# grpc: megakerneld $(grep -o 'engine [a-z]* ([^)]*)' "$log"), $(nproc) cores"
quick=false
if [ "${MK_BENCH_QUICK:-0}" = 1 ]; then quick=true; fi
"$mkctl" bench --mode=suite --quick="$quick" --target="$target"
kill -TERM $server
wait $server

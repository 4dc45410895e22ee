#!/usr/bin/env bash
# The README's run command: install what is missing, build, and run the main job:
# megakerneld on the embedded default engine (--engine=auto: the CUDA engine when this build has
# it and a GPU is present, else the CPU engine), driven by a short mkctl demo workload, then
# stopped with SIGTERM (which drains). MK_ENGINE overrides the engine; MK_KEEP_RUNNING=1 leaves
# the server up after the demo until Ctrl-C.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
bash deploy/build.sh >/dev/null

source deploy/start_megakerneld.sh
log=$(mktemp)
resources=$(mktemp -d)
trap 'kill ${server:-} 2>/dev/null || true; rm -rf "$log" "$resources"' EXIT
mkdir -p "$resources/tenants/0"  # development mode: every caller is tenant 0
head -c 1048576 /dev/urandom >"$resources/tenants/0/weights.bin"
start_megakerneld ./build/server/megakerneld "$log" --engine="${MK_ENGINE:-auto}" \
  --metrics_listen=127.0.0.1:0 --resource_root="$resources"
cat "$log"
mkctl=./build/client/mkctl

echo; echo "== mkctl publish: 3 x ATOMIC_ADD(5) on scratch word 0, waiting for the results"
$mkctl publish --target="$target" --opcode=2 --args=5,0 --count=3 --wait=2s
echo; echo "== mkctl publish: LOAD_U32 of word 0 (tickets only), then mkctl poll"
tickets=$($mkctl publish --target="$target" --opcode=3 --args=0 | awk '/tickets/ {print $NF}')
$mkctl poll --target="$target" --tickets="${tickets%%..*}" --wait=2s
echo; echo "== mkctl publish: a slot that faults (index outside the scratch window)"
$mkctl publish --target="$target" --opcode=3 --args=100000 --wait=2s
echo; echo "== resources: register a 1 MiB file, LOAD_MISS it (io_uring read), CHECKSUM it"
id=$($mkctl resources --target="$target" --register=weights.bin | awk '{print $NF}')
$mkctl publish --target="$target" --opcode=$((0xFFFD)) --args="$id,0" --wait=5s
$mkctl publish --target="$target" --opcode=$((0xFFF0)) --args="$id,0,0,0" --wait=5s
$mkctl resources --target="$target"

echo; echo "== mkctl bench: 2 s closed loop, 2 callers, batches of 64 NOPs"
$mkctl bench --target="$target" --duration=2s --concurrency=2 --batch=64 2>/dev/null
metrics=$(grep -o 'metrics on http://[0-9.:]*/metrics' "$log" | awk '{print $3}')
echo; echo "== Prometheus metrics ($metrics), a few families"
curl -s "$metrics" | grep -E '^mk_(slots_completed_total|slot_latency_seconds_count|watchdog_stalled|ring_capacity_slots|io_requests_total|resident_bytes)'
echo; echo "== mkctl top: one frame"
$mkctl top --target="$target" --iterations=2 --interval=500ms | tail -n 16
if [ "${MK_KEEP_RUNNING:-0}" = 1 ]; then
  echo; echo "megakerneld keeps serving on $target (Ctrl-C to stop)"
  wait $server
else
  echo; echo "== SIGTERM: megakerneld drains and exits"
  kill -TERM $server
  wait $server
  tail -n 2 "$log"
fi

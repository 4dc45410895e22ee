#!/usr/bin/env bash
# Builds here and packages what the GPU machine runs into .gpu-bundle (git-ignored): the engine
# suites, the CUDA engine tests and benchmark, megakerneld and mkctl. Then run, in ONE device
# call from the repository root (carry [".gpu-bundle"]):
#   bash deploy/gpu/device_suite.sh
# which runs the GPU suite with MK_REQUIRE_GPU=1, compute-sanitizer memcheck and racecheck on
# it, the CUDA engine benchmark, the io benchmark (file -> device-resident loads; needs fio on
# the machine or in .gpu-bundle/bin) and the gRPC benchmark on the CUDA engine.
# usage: deploy/gpu/run_suite.sh
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo_root"
bash deploy/build.sh
bash deploy/gpu/build_fio.sh  # the io benchmark's baseline; the GPU machine has no fio
b=build
bash deploy/gpu/package.sh \
  $b/tests/engine_suite/engine_conformance \
  $b/tests/engine_suite/engine_concurrency \
  $b/tests/engine_suite/engine_resources \
  $b/tests/engine_suite/engine_tenancy \
  $b/tests/engine_suite/engine_buffers \
  $b/tests/gpu/cuda_engine_test \
  $b/tests/bench/cuda_engine_bench \
  $b/tests/bench/engine_cpu_bench \
  $b/tests/bench/io_bench \
  $b/tests/bench/tenancy_bench \
  $b/server/megakerneld \
  $b/client/mkctl \
  $b/fio/fio
echo "now run on the device: bash deploy/gpu/device_suite.sh (carry .gpu-bundle)"

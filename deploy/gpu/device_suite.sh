#!/usr/bin/env bash
# Runs on the GPU machine from the repository root, with .gpu-bundle carried (see
# run_suite.sh). Every step prints `=== exit N: step`; the script fails if any step failed.
# MK_BENCH_QUICK=1 shortens the benchmarks; MK_SUITE_STEPS limits the steps (e.g. "tests bench";
# "soak", the soak against the CUDA engine, runs only when named);
# MK_BENCH_TIMEOUT bounds the CUDA and io benchmarks (seconds, default 300). A build configured
# with -DMK_ENABLE_PROFILING=ON logs the engine's dispatch timing (docs/performance.md).
set -uo pipefail
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib MK_REQUIRE_GPU=1
bin=$PWD/.gpu-bundle/bin
steps=${MK_SUITE_STEPS:-tests sanitizer bench io grpc}
rc=0
step() {
  echo "=== $*"
  "$@"
  local s=$?
  echo "=== exit $s: $*"
  [ $s -eq 0 ] || rc=1
}
nvidia-smi --query-gpu=name,driver_version,pci.bus_id --format=csv,noheader
# Where the GPU sits relative to the host's CPUs and memory: a far NUMA node doubles PCIe latency.
nvidia-smi topo -m 2>/dev/null | head -4
lscpu 2>/dev/null | grep -E '^(Model name|NUMA node|Socket|Thread)' || true
if [[ " $steps " == *" tests "* ]]; then
  step env MK_TEST_ENGINE=cuda timeout 300 "$bin/engine_conformance" --gtest_brief=1
  step env MK_TEST_ENGINE=cuda timeout 300 "$bin/engine_concurrency" --gtest_brief=1
  step env MK_TEST_ENGINE=cuda timeout 300 "$bin/engine_resources" --gtest_brief=1
  step env MK_TEST_ENGINE=cuda timeout 300 "$bin/engine_tenancy" --gtest_brief=1
  step env MK_TEST_ENGINE=cuda timeout 300 "$bin/engine_buffers" --gtest_brief=1
  step timeout 300 "$bin/cuda_engine_test" --gtest_brief=1 --gtest_filter='-*UnresponsiveKernel*'
  # Leaves a kernel running until its process ends: a process of its own.
  step timeout 120 "$bin/cuda_engine_test" --gtest_brief=1 --gtest_filter='*UnresponsiveKernel*'
fi
if [[ " $steps " == *" sanitizer "* ]]; then
  sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  # The kernel runs many times slower under the sanitizer: give its stop longer than 2 s.
  export MK_TEST_CUDA_STOP_TIMEOUT=30s
  for tool in memcheck racecheck; do
    # Under racecheck the conformance suite runs without scout warps: racecheck starves blocks
    # whose scouts run outside the block's barriers (the kernel's stops take seconds and tests
    # time out, while the same binary passes at once without them). The scouts' shared
    # words are atomics only; racecheck still runs them in cuda_engine_test and the resource
    # suite below, and memcheck everywhere.
    scouts=1
    [ "$tool" = racecheck ] && scouts=0
    step env MK_TEST_ENGINE=cuda MK_TEST_CUDA_SCOUT_WARPS=$scouts timeout 300 "$sanitizer" \
      --tool "$tool" --error-exitcode 9 "$bin/engine_conformance" --gtest_brief=1
    step timeout 300 "$sanitizer" --tool "$tool" --error-exitcode 9 "$bin/cuda_engine_test" \
      --gtest_brief=1 --gtest_filter='-*ProducersPublish*:*OneKernelLaunch*:*UnresponsiveKernel*'
    step env MK_TEST_ENGINE=cuda timeout 300 "$sanitizer" --tool "$tool" --error-exitcode 9 \
      "$bin/engine_resources" --gtest_brief=1 --gtest_filter='*/threads:-*Concurrent*'
    step env MK_TEST_ENGINE=cuda timeout 300 "$sanitizer" --tool "$tool" --error-exitcode 9 \
      "$bin/engine_tenancy" --gtest_brief=1
  done
fi
if [[ " $steps " == *" bench "* ]]; then
  step timeout "${MK_BENCH_TIMEOUT:-300}" "$bin/cuda_engine_bench"
  # One tenant flooding a partition against a victim's round trips (docs/security.md).
  step timeout "${MK_BENCH_TIMEOUT:-300}" "$bin/tenancy_bench" cuda
fi
if [[ " $steps " == *" io "* ]]; then
  # fio is the baseline: the machine's, or one carried in the bundle.
  step env PATH="$bin:$PATH" timeout "${MK_BENCH_TIMEOUT:-300}" "$bin/io_bench"
fi
if [[ " $steps " == *" grpc "* ]]; then
  step env MK_SERVER_FLAGS=--engine=auto timeout 300 bash tests/bench/grpc_bench.sh \
    "$bin/megakerneld" "$bin/mkctl"
fi
# Only when asked for (MK_SUITE_STEPS=soak): the soak against the CUDA engine, MK_SOAK_SECONDS
# (120) of open loop with faults, a drain and a restart (docs/soak.md). Needs python3.
if [[ " $steps " == *" soak "* ]]; then
  step timeout 900 python3 tests/soak/soak.py --megakerneld="$bin/megakerneld" \
    --mkctl="$bin/mkctl" --engine=cuda --duration="${MK_SOAK_SECONDS:-120}" \
    ${MK_SOAK_REPORT:+--report="$MK_SOAK_REPORT"}
fi
exit $rc

#!/usr/bin/env bash
# The README's test command: install, build, and run the whole test suite (every label but
# perf), then the concurrency tests again under ThreadSanitizer, then the unit and integration
# tests again under AddressSanitizer + UndefinedBehaviorSanitizer (leaks included), then every
# libFuzzer target for MK_FUZZ_SECONDS (15) each (clang, preset fuzz; docs/fuzzing.md). GPU
# tests skip with their reason on a machine without a CUDA device (MK_REQUIRE_GPU=1 turns that
# skip into a failure). MK_SKIP_TSAN=1, MK_SKIP_ASAN=1 and MK_SKIP_FUZZ=1 skip those passes.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
bash deploy/build.sh
ctest --preset default
if [ "${MK_SKIP_TSAN:-0}" != 1 ]; then
  cmake --preset tsan >/dev/null
  cmake --build --preset tsan --target mk_concurrency_tests
  ctest --preset tsan
fi
if [ "${MK_SKIP_ASAN:-0}" != 1 ]; then
  cmake --preset asan >/dev/null
  cmake --build --preset asan --target mk_unit_integration_tests
  ctest --preset asan
fi
if [ "${MK_SKIP_FUZZ:-0}" != 1 ]; then
  cmake --preset fuzz -DMK_FUZZ_SECONDS="${MK_FUZZ_SECONDS:-15}" >/dev/null
  cmake --build --preset fuzz
  ctest --preset fuzz
fi

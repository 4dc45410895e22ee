#!/usr/bin/env bash
# clang-tidy (the repository's .clang-tidy) over every host translation unit the build compiles
# from the source tree: modules and tests, not generated code, not .cu. Prints each finding and
# fails when there is one. Skips (exit 77, ctest's skip code) where clang-tidy is not installed.
# usage: tests/lint/clang_tidy.sh <source root> <build dir with compile_commands.json>
set -uo pipefail
root=$1
build=$2
tidy=$(command -v run-clang-tidy-14 || command -v run-clang-tidy || true)
if [ -z "$tidy" ] || ! command -v clang-tidy >/dev/null; then
  echo "clang-tidy is not installed: skipped (apt-get install clang-tidy)"
  exit 77
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$tidy" -quiet -p "$build" -j "$(nproc)" \
  "^$root/(base|proto|engine|io|metrics|server|client|tests)/.*\.cc\$" >"$out" 2>&1
status=$?
# run-clang-tidy colors its output: strip the escapes before reading the findings.
plain=$(sed 's/\x1b\[[0-9;]*m//g' "$out")
findings=$(echo "$plain" | grep -E '^/.*: (warning|error): ' | sort -u)
if [ -n "$findings" ]; then
  echo "$findings"
  echo "clang-tidy: $(echo "$findings" | wc -l) findings"
  exit 1
fi
# run-clang-tidy prints one command line per translation unit it checked.
units=$(echo "$plain" | grep -c '^clang-tidy' || true)
if [ "$status" -ne 0 ] || [ "$units" -eq 0 ]; then
  echo "$plain" | tail -n 40
  echo "clang-tidy: run-clang-tidy exited $status after $units translation units; see above"
  exit 1
fi
echo "clang-tidy: clean ($units translation units)"

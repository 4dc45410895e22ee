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
# run-clang-tidy colors its output: strip the escapes before reading the findings.
findings=$(sed 's/\x1b\[[0-9;]*m//g' "$out" | grep -E '^/.*: (warning|error): ' | sort -u)
if [ -n "$findings" ]; then
  echo "$findings"
  echo "clang-tidy: $(echo "$findings" | wc -l) findings"
  exit 1
fi
echo "clang-tidy: clean ($(grep -c 'clang-tidy' "$out" || true) translation units)"

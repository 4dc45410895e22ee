#!/usr/bin/env bash
# clang-format (the repository's .clang-format) over every C++ and CUDA source of the tree:
# prints the files that differ from their formatted form and fails when there is one. Skips
# (exit 77, ctest's skip code) where clang-format is not installed.
# usage: tests/lint/clang_format.sh <source root>
set -uo pipefail
root=$1
if ! command -v clang-format >/dev/null; then
  echo "clang-format is not installed: skipped (apt-get install clang-format)"
  exit 77
fi
cd "$root" || exit 1
if git rev-parse --git-dir >/dev/null 2>&1; then
  files=$(git ls-files '*.cc' '*.h' '*.cu' '*.cuh')
else
  files=$(find base proto engine io metrics server client tests \
               \( -name '*.cc' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \))
fi
bad=0
for f in $files; do
  if ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then
    echo "not clang-formatted: $f (clang-format -i $f)"
    bad=$((bad + 1))
  fi
done
[ "$bad" -eq 0 ] || { echo "clang-format: $bad files differ"; exit 1; }
echo "clang-format: $(echo "$files" | wc -w) files formatted"

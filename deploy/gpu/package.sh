#!/usr/bin/env bash
# Packages built binaries with the shared libraries they need that a bare GPU machine (Ubuntu,
# driver only) lacks, into .gpu-bundle/{bin,lib} (git-ignored), for the device tool to carry.
# On the device: export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib; .gpu-bundle/bin/<binary>.
# usage: deploy/gpu/package.sh <binary>...
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bundle="$repo_root/.gpu-bundle"
rm -rf "$bundle"
mkdir -p "$bundle/bin" "$bundle/lib"
# glibc, the C++ runtime and zlib are on every target; everything else travels.
system='^(linux-vdso|ld-linux|libc\.|libm\.|libmvec\.|libpthread|libdl\.|librt\.|libstdc\+\+|libgcc_s|libz\.)'
for binary in "$@"; do
  cp "$binary" "$bundle/bin/"
  ldd "$binary" | awk '/=> \// {print $1, $3}' | while read -r name path; do
    if ! [[ "$name" =~ $system ]]; then cp -L "$path" "$bundle/lib/$name"; fi
  done
done
# Debug info stays here: the bundle must fit the device tool's carry limit.
strip --strip-debug "$bundle"/bin/* "$bundle"/lib/* 2>/dev/null || true
du -sh "$bundle" | awk '{print "bundle:", $1}'

#!/usr/bin/env bash
# Builds a self-contained fio (the io benchmark's baseline) for the GPU machine, which has no
# fio and cannot install one. Debian's fio links ~80 MB of optional engines (Ceph, HTTP, ...),
# more than the device tool carries; this builds the same Debian release from its source
# package with those engines disabled (io_uring and libaio stay built in).
# Output: build/fio/fio. usage: deploy/gpu/build_fio.sh
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out="$repo_root/build/fio"
[ -x "$out/fio" ] && { echo "fio: $out/fio (already built)"; exit 0; }
work=$(mktemp -d)
trap 'rm -rf "$work" /etc/apt/sources.list.d/mk-fio-src.sources' EXIT
# Source packages come from the same archive as the binaries.
cat > /etc/apt/sources.list.d/mk-fio-src.sources <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
apt-get update -qq
(cd "$work" && apt-get source -qq --download-only fio >/dev/null 2>&1)
tar -xzf "$work"/fio_*.orig.tar.gz -C "$work"
cd "$work"/fio-*/
./configure --disable-native --disable-http --disable-rados --disable-rbd --disable-gfapi \
  --disable-rdma --disable-libnfs --disable-pmem --disable-xnvme --disable-libzbc \
  --disable-dfs --disable-numa --disable-tcmalloc >/dev/null
make -j"$(nproc)" fio >/dev/null
mkdir -p "$out"
cp fio "$out/fio"
strip "$out/fio"
echo "fio: $out/fio ($(./fio --version))"

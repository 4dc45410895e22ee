#!/usr/bin/env bash
# Installs everything megakerneld needs on a fresh Debian 12 machine (run as root).
# Idempotent and quiet when everything is already present.
#
# - Debian 12 packages through apt-get (only the missing ones are installed). `civetweb` (the
#   binary) is needed only because libcivetweb-dev's CMake config checks that it exists.
# - prometheus-cpp 1.0 (core + pull) from Debian 13 packages, unpacked into a project-local
#   prefix (.deps/prometheus-cpp) instead of /usr: Debian 12 does not ship it, and the trixie
#   dev package would drag a trixie libcurl into the system. A separate apt configuration reads
#   the trixie index without touching the system's sources.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
deps_dir="${MK_DEPS_DIR:-$repo_root/.deps}"
prom_prefix="$deps_dir/prometheus-cpp"

packages=(
  build-essential cmake ninja-build pkg-config ccache
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libssl-dev
  libabsl-dev liburing-dev libxxhash-dev libgtest-dev libgmock-dev libbenchmark-dev
  libcivetweb-dev civetweb zlib1g-dev libcurl4-openssl-dev
  prometheus python3-grpcio python3-grpc-tools fio curl ca-certificates openssl
  clang libclang-rt-14-dev  # the fuzz preset: clang and libFuzzer's runtime (docs/fuzzing.md)
)

log() { printf 'bootstrap: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  log "must run as root (it installs Debian packages); rerun with sudo"
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${#missing[@]} Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

prom_cmake_dir="$prom_prefix/usr/lib/x86_64-linux-gnu/cmake/prometheus-cpp"
if [ ! -f "$prom_cmake_dir/prometheus-cpp-config.cmake" ]; then
  log "fetching prometheus-cpp 1.0 from Debian 13 into $prom_prefix"
  apt_dir="$deps_dir/apt-trixie"
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$apt_dir/debs"
  cat > "$apt_dir/trixie.sources" <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  apt_opts=(
    -o "Dir::Etc::SourceList=/dev/null"
    -o "Dir::Etc::SourceParts=$apt_dir"
    -o "Dir::State::Lists=$apt_dir/lists"
    -o "Dir::Cache::Archives=$apt_dir/archives"
    -o "Dir::State::Status=/var/lib/dpkg/status"
    -o "APT::Get::List-Cleanup=0"
  )
  apt-get "${apt_opts[@]}" update -qq
  (cd "$apt_dir/debs" && apt-get "${apt_opts[@]}" download -qq \
      prometheus-cpp-dev libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0 \
      libprometheus-cpp-push1.0)
  rm -rf "$prom_prefix"
  mkdir -p "$prom_prefix"
  for deb in "$apt_dir"/debs/*.deb; do
    dpkg -x "$deb" "$prom_prefix"
  done
  if [ ! -f "$prom_cmake_dir/prometheus-cpp-config.cmake" ]; then
    log "prometheus-cpp unpacked but $prom_cmake_dir/prometheus-cpp-config.cmake is missing"
    exit 1
  fi
fi

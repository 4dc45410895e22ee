#!/usr/bin/env bash
# Installs what is missing (deploy/bootstrap.sh) and builds the default preset.
# Shared by deploy/run.sh and deploy/test.sh.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
bash deploy/bootstrap.sh
cmake --preset default >/dev/null
cmake --build --preset default

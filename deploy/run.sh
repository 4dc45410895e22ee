#!/usr/bin/env bash
# The README's run command: install what is missing, build, and run the main job: the embedded
# default engine (--engine=auto: CUDA when this build has it and a device is present, else the
# CPU engine) with a short demo workload. The gRPC server megakerneld is not built yet; this
# script will start it instead once it exists.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
bash deploy/build.sh
exec ./build/engine/engine_demo --engine="${MK_ENGINE:-auto}"

#!/usr/bin/env bash
# Brings compute-sanitizer (PyPI's nvidia-cuda-sanitizer-api, about 18 MB)
# into DIR (default .devdeps/sanitizer, git-ignored) for a GPU machine that
# cannot reach PyPI: run it here, carry .devdeps there, and tests/gpu/run.sh
# finds it. A CUDA toolkit that has compute-sanitizer needs none of this.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-.devdeps/sanitizer}
mkdir -p "$dir"
pip download -q nvidia-cuda-sanitizer-api --no-deps -d "$dir"
python3 -m zipfile -e "$dir"/nvidia_cuda_sanitizer_api-*.whl "$dir"
chmod +x "$dir"/nvidia/*/compute-sanitizer/compute-sanitizer
ls "$dir"/nvidia/*/compute-sanitizer/compute-sanitizer

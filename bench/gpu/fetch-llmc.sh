#!/usr/bin/env bash
# Places a pinned copy of karpathy/llm.c in .llmc/ (git-ignored, never
# committed) for bench/gpu/run.sh to build and run beside tide on the GPU,
# with NVIDIA's cudnn-frontend headers in .llmc/cudnn-frontend/include (where
# llm.c's Makefile looks for them with USE_CUDNN=1: its cuDNN flash attention).
# Run it where git can reach the sources (the device machine has no network),
# then name .llmc in the device call's carry:
#   bench/gpu/fetch-llmc.sh [LLMC_SOURCE [FRONTEND_SOURCE]]
# A source is a git URL or a local clone / bare mirror; default: the mirrors
# at /work/.mirror/{karpathy+llm.c,NVIDIA+cudnn-frontend}/repo where they
# exist, else GitHub.
#
# cudnn-frontend is pinned at v1.16.0: v1.8.0 (llm.c's time) does not compile
# with CUDA 13 (cudaGraphGetEdges changed); v1.16.0 compiles with llm.c's
# cudnn_att.cpp under nvcc 13.0 (checked on a machine without a GPU).
#
# llm.c is written for CUDA 12; CUDA 13 changed cudaMemAdvise's location
# argument from a device number to a cudaMemLocation, so the copy gets one
# small edit: its out-of-memory fallback (cudaMallocConditionallyManaged in
# llmc/cuda_utils.cuh) names the host location in whichever form the CUDA
# version takes. Nothing else is changed.
set -euo pipefail
cd "$(dirname "$0")/../.."
PIN=f1e2ace651495b74ae22d45d1723443fd00ecd3a      # llm.c master, "Merge pull request #801", 2025-05-10
FE_PIN=be6c079be8aaffa0fc079fcf039887e637c289c7   # cudnn-frontend v1.16.0, 2025-11-06
dest=.llmc
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# gitdir SOURCE MIRROR URL NAME PIN: a git directory holding PIN
gitdir() {
  local src=$1 mirror=$2 url=$3 name=$4 pin=$5 g
  if [ -z "$src" ]; then if [ -d "$mirror" ]; then src=$mirror; else src=$url; fi; fi
  if [ -d "$src" ]; then g=$src; [ -d "$src/.git" ] && g=$src/.git
  else git clone --quiet --bare "$src" "$tmp/$name.git" >&2; g=$tmp/$name.git; fi
  if ! git --git-dir="$g" cat-file -e "$pin^{commit}" 2>/dev/null; then
    echo "fetch-llmc: $src does not hold the pinned commit $pin" >&2; return 1
  fi
  echo "$g"
}
g=$(gitdir "${1:-}" /work/.mirror/karpathy+llm.c/repo https://github.com/karpathy/llm.c.git llm.c $PIN)
fe=$(gitdir "${2:-}" /work/.mirror/NVIDIA+cudnn-frontend/repo https://github.com/NVIDIA/cudnn-frontend.git cudnn-frontend $FE_PIN)
rm -rf "$dest"; mkdir -p "$dest/cudnn-frontend"
git --git-dir="$g" archive "$PIN" | tar -x -C "$dest"
git --git-dir="$fe" archive "$FE_PIN" include LICENSE.txt | tar -x -C "$dest/cudnn-frontend"
printf 'llm.c %s\ncudnn-frontend %s (v1.16.0)\n' "$PIN" "$FE_PIN" > "$dest/PINNED_COMMITS"

f=$dest/llmc/cuda_utils.cuh
grep -q 'cudaMemAdviseSetPreferredLocation, cudaCpuDeviceId)' "$f" || {
  echo "fetch-llmc: $f no longer has the cudaMemAdvise call this script adapts to CUDA 13" >&2; exit 1; }
sed -i 's/cudaMemAdviseSetPreferredLocation, cudaCpuDeviceId)/cudaMemAdviseSetPreferredLocation, TIDE_BENCH_HOST_LOCATION)/' "$f"
sed -i '/^int cudaMallocConditionallyManaged(/i\
// (added by tide bench/gpu/fetch-llmc.sh: CUDA 13 takes a cudaMemLocation here)\
#if CUDART_VERSION >= 13000\
#define TIDE_BENCH_HOST_LOCATION (cudaMemLocation{cudaMemLocationTypeHost, 0})\
#else\
#define TIDE_BENCH_HOST_LOCATION cudaCpuDeviceId\
#endif' "$f"
grep -q TIDE_BENCH_HOST_LOCATION "$f"
echo "llm.c $PIN in $dest ($(du -sh "$dest" | cut -f1)); carry '$dest' to the device with bench/gpu/run.sh"

#!/usr/bin/env bash
# Installs what tide needs from Debian's packages, builds it, then either
# runs the main job, recipes/codeparrot.lua (`./setup.sh run`) or every test (`./setup.sh test`:
# the plain build, then the same suite built with ASan+UBSan).
set -euo pipefail
cd "$(dirname "$0")"
mode=${1:-run}
jobs=$(nproc 2>/dev/null || echo 2)

install_deps() {
  local pkgs=(build-essential cmake pkg-config libluajit-5.1-dev libopenblas-dev libopenblas-openmp-dev libedit-dev zlib1g-dev libsnappy-dev libzstd-dev tmux
              libpython3-stdlib  # Python's sources: the local corpus of tide.data.build_corpus
              python3  # runs HumanEval's candidates (recipes/humaneval.lua, its tests)
              openmpi-bin libopenmpi-dev)  # tide.dist's MPI backend and its tests under mpirun
  local missing=()
  for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
}

build() {  # build DIR [cmake args...]
  local dir=$1; shift
  cmake -S . -B "$dir" "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
}

install_deps
case "$mode" in
  run)
    build build -DCMAKE_BUILD_TYPE=Release
    ./build/tide recipes/codeparrot.lua "${@:2}"
    ;;
  test)
    build build -DCMAKE_BUILD_TYPE=Release
    (cd build && ctest --output-on-failure -j "$jobs")
    # the sanitizer build leaves CUDA out: nvcc objects are not instrumented
    build build-asan -DCMAKE_BUILD_TYPE=Debug -DTIDE_SANITIZE=ON -DTIDE_CUDA=OFF
    # the emulated CUDA tests run once here (their second schedule seed ran in the plain build)
    (cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
       ctest --output-on-failure -j "$jobs" -E 'seed7$')
    ;;
  *)
    echo "usage: ./setup.sh run [recipe args] | ./setup.sh test" >&2
    exit 2
    ;;
esac

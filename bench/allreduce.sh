#!/usr/bin/env bash
# All-reduce bus bandwidth over 2 CPU ranks: tide.dist.all_reduce against
# Open MPI's own MPI_Allreduce on the same buffers in the same processes
# (bench/allreduce.lua), once with tide's cross-rank call check (the default)
# and once without it (TIDE_DIST_CHECK=0).
#   bench/allreduce.sh [ranks] [rounds] [sizes in MB, comma-separated]
set -euo pipefail
cd "$(dirname "$0")/.."
np=${1:-2}
rounds=${2:-5}
sizes=${3:-1,4,16,64,256}
command -v mpirun >/dev/null || { echo "mpirun is not installed (Debian: openmpi-bin libopenmpi-dev)"; exit 1; }
[ -f build/libtide_mpi.so ] || { echo "build/libtide_mpi.so is missing: build tide with Open MPI installed"; exit 1; }
root=()
[ "$(id -u)" -eq 0 ] && root=(--allow-run-as-root)
mpirun --version | head -1
echo "load: $(uptime | sed "s/.*load average/load average/") on $(nproc) cores"
for check in 1 0; do
  mpirun -np "$np" --oversubscribe "${root[@]}" --bind-to none -x OMP_NUM_THREADS=1 -x TIDE_DIST_CHECK=$check \
    ./build/tide bench/allreduce.lua --rounds="$rounds" --sizes="$sizes"
done

#!/usr/bin/env bash
# Runs a tide command on NP local processes under Open MPI's mpirun, as the
# distributed tests need it:  bash tests/dist/run_mpi.sh NP TIDE_EXE ARGS...
# Exits 77 (ctest's skip) where mpirun or tide's MPI backend is missing;
# adds --allow-run-as-root when run as root (CI runs as root) and keeps each
# rank to one OpenMP thread (the ranks share the machine's cores).
set -u
np=$1 exe=$2
shift 2
if ! command -v mpirun >/dev/null 2>&1; then
  echo "skipped: mpirun is not installed (Debian: apt-get install openmpi-bin libopenmpi-dev)"; exit 77
fi
# the plugin lies beside tide, or in the build directory above tests/ (tide-cudaemu)
if [ ! -f "$(dirname "$exe")/libtide_mpi.so" ] && [ ! -f "$(dirname "$exe")/../libtide_mpi.so" ]; then
  echo "skipped: no libtide_mpi.so beside $exe (tide was built without Open MPI)"; exit 77
fi
root=()
[ "$(id -u)" -eq 0 ] && root=(--allow-run-as-root)
# a hung test is killed here rather than by ctest's 25-minute default
exec timeout -k 10 300 mpirun -np "$np" --oversubscribe "${root[@]}" --bind-to none \
  -x OMP_NUM_THREADS=1 -x TIDE_DIST_TIMEOUT="${TIDE_DIST_TIMEOUT:-120}" "$exe" "$@"

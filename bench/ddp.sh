#!/usr/bin/env bash
# DDP step time on 2 CPU ranks against 1 with the same per-rank batch, tide
# (bench/ddp.lua under mpirun, Open MPI) beside PyTorch DDP over gloo
# (bench/ddp_peer.py), same model, same run, ROUNDS alternating rounds; the
# best median of each configuration counts. Per system it prints
#   efficiency = step(1 rank) / step(2 ranks)    (1.0: data parallelism free)
#   exposed    = step(2) - step(1)               (what the second rank added)
#   hidden     = 1 - exposed / all-reduce alone  (share of the gradient
#                all-reduce that the step did not pay for; <= 0 when nothing
#                overlaps, or when the ranks slow each other down otherwise)
# and tide's time inside its collectives during backward (starting the
# buckets' all-reduces) and after it (waiting for them: the exposed part),
# with its own hidden share 1 - (that time) / (all-reduce alone), for the
# overlapped all-reduce (all_reduce_async, the default) and the blocking one
# in the hooks (--overlap=0), ZeRO-1's step and memory per rank.
#   bench/ddp.sh [batch] [rounds]       (python from $TIDE_REF_PYTHON)
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-4}
rounds=${2:-2}
py=${TIDE_REF_PYTHON:-python3}
MPI=(mpirun -np 2 --oversubscribe --bind-to none -x OMP_NUM_THREADS=1)
[ "$(id -u)" -eq 0 ] && MPI+=(--allow-run-as-root)
declare -A best
keep() {  # keep NAME LINE: the smallest median step of NAME
  local ms
  ms=$(echo "$2" | sed -E 's/.*median step ([0-9.]+) ms.*/\1/')
  if [ -z "${best[$1]:-}" ] || awk -v a="$ms" -v b="${best[$1]%% *}" 'BEGIN { exit !(a < b) }'; then
    best[$1]="$ms $2"
  fi
}
for r in $(seq "$rounds"); do
  l=$(./build/tide bench/ddp.lua --batch="$B"); echo "round $r: $l"; keep t1 "$l"
  l=$("${MPI[@]}" ./build/tide bench/ddp.lua --batch="$B"); echo "round $r: $l"; keep t2 "$l"
  l=$("${MPI[@]}" ./build/tide bench/ddp.lua --batch="$B" --overlap=0); echo "round $r: $l"; keep tb "$l"
  l=$("${MPI[@]}" ./build/tide bench/ddp.lua --batch="$B" --zero=1); echo "round $r: $l"; keep tz "$l"
  l=$("$py" bench/ddp_peer.py 1 "$B" 2>/dev/null); echo "round $r: $l"; keep p1 "$l"
  l=$("$py" bench/ddp_peer.py 2 "$B" 2>/dev/null); echo "round $r: $l"; keep p2 "$l"
done
ar_of() { echo "$1" | sed -E 's/.*alone ([0-9.]+) ms.*/\1/'; }
report() {  # NAME STEP1 STEP2 ALLREDUCE
  awk -v n="$1" -v a="$2" -v b="$3" -v ar="$4" 'BEGIN {
    printf "%s: 1 rank %.0f ms, 2 ranks %.0f ms, efficiency %.2f, exposed %.0f ms, all-reduce alone %.1f ms, hidden %s\n",
      n, a, b, a / b, b - a, ar, (ar > 0 ? sprintf("%.2f", 1 - (b - a) / ar) : "n/a") }'
}
report tide "${best[t1]%% *}" "${best[t2]%% *}" "$(ar_of "${best[t2]}")"
report "tide blocking" "${best[t1]%% *}" "${best[tb]%% *}" "$(ar_of "${best[tb]}")"
report torch "${best[p1]%% *}" "${best[p2]%% *}" "$(ar_of "${best[p2]}")"
echo "tide 2 ranks: ${best[t2]#* }"
echo "tide 2 ranks, blocking all-reduce in the hooks: ${best[tb]#* }"
echo "tide ZeRO-1:  ${best[tz]#* }"
echo "load average while it ran: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
awk -v t="${best[t2]%% *}" -v p="${best[p2]%% *}" 'BEGIN { printf "2-rank step tide / torch: %.2fx (time; < 1 is tide faster)\n", t / p }'

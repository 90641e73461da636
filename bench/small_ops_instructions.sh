#!/usr/bin/env bash
# Instructions per call of small ops from Lua, for two builds of tide, counted
# by callgrind (the same count on a busy machine as on an idle one, where
# wall-clock timings of a 100 ns op are noise). Each op's loop is counted,
# the empty loop's count is subtracted, and the rest divided by the calls.
#   bench/small_ops_instructions.sh OLD_TIDE NEW_TIDE [ops...]
set -euo pipefail
cd "$(dirname "$0")/.."
old=$1 new=$2; shift 2
ops=("$@"); [ ${#ops[@]} -gt 0 ] || ops=(add add_ t matmul sum exp softmax layernorm)
n=20000
count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$1" bench/small_ops.lua --op="$2" --n=$n 2>&1 |
            sed -nE 's/.*Collected : ([0-9]+).*/\1/p'; }
base_old=$(count "$old" none) base_new=$(count "$new" none)
printf "%-10s %14s %14s %9s\n" op "old instr/call" "new instr/call" new/old
for op in "${ops[@]}"; do
  o=$(count "$old" "$op") w=$(count "$new" "$op")
  awk -v op="$op" -v o="$o" -v w="$w" -v bo="$base_old" -v bn="$base_new" -v n=$n \
    'BEGIN { a = (o - bo) / n; b = (w - bn) / n; printf "%-10s %14.0f %14.0f %9.3f\n", op, a, b, b / a }'
done

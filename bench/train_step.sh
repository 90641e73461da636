#!/usr/bin/env bash
# One GPT-2 training step (4 layers, 256 dims, 4 heads, vocab 8192, T=128,
# B=8), tide against PyTorch eager, same threads, same run: each side runs
# ROUNDS times alternately (20 timed steps after 3 warm-up steps each) and
# the best of its medians counts, so drift and a cold first run hit both alike.
#   bench/train_step.sh [threads] [rounds]    (python from $TIDE_REF_PYTHON)
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
rounds=${2:-3}
py=${TIDE_REF_PYTHON:-python3}
best_t=0 best_p=0
for r in $(seq "$rounds"); do
  tl=$(./build/tide bench/train_step.lua --threads="$threads")
  pl=$("$py" bench/train_step.py "$threads" 2>/dev/null)
  echo "round $r: $tl"
  echo "round $r: $pl"
  t=$(echo "$tl" | sed -E 's/.* ([0-9]+) tokens\/s.*/\1/')
  p=$(echo "$pl" | sed -E 's/.* ([0-9]+) tokens\/s.*/\1/')
  [ "$t" -gt "$best_t" ] && best_t=$t
  [ "$p" -gt "$best_p" ] && best_p=$p
done
awk -v t="$best_t" -v p="$best_p" -v n="$threads" \
  'BEGIN { printf "threads %d: tide %d tokens/s, torch %d tokens/s, tide / torch %.2fx\n", n, t, p, t / p }'
echo "peaks: tide = engine tensor bytes (tide.memory().peak), torch = process RSS"

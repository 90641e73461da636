#!/usr/bin/env bash
# recipes/codeparrot.lua's training loop, tide against the Hugging Face
# course's loop in PyTorch eager, in the same run on the same machine:
#  - tokens/s of a training step with the keytoken-weighted loss (GPT-2
#    "small" of the recipe: 4 layers of 128, vocab 8192, 16 x 128 tokens), on
#    the same batches (packed by a run of the recipe), same thread count;
#  - the keytoken loss's cost over the plain loss on each side (steps
#    alternate between the two within one process);
#    and the two losses alone, forward and backward from the same logits;
#  - start-up: from the shell launching the process to the end of its first
#    training step (imports, tokenizer, model, batches, one step).
# Each side runs ROUNDS times alternately; the best median counts.
#   bench/codeparrot.sh [threads=2] [rounds=2] [steps=16]   (python: $TIDE_REF_PYTHON, torch + transformers)
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
rounds=${2:-2}
steps=${3:-16}
py=${TIDE_REF_PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=$threads

# the data: one step of the recipe builds (or reuses) the corpus, trains the
# tokenizer and packs the shards; the batches both sides read are dumped once
./build/tide recipes/codeparrot.lua --out="$tmp/run" --steps=1 --model=tiny --eval_batches=1 --max_new_tokens=1 \
  --min_drop=0 --save_every=0 >"$tmp/prep.log" 2>&1 || { cat "$tmp/prep.log"; exit 1; }
./build/tide bench/codeparrot.lua --run="$tmp/run" --dump="$tmp/batches.safetensors" --n=$((steps + 2))

field() { echo "$1" | sed -E "s/.*$2 ([0-9.]+).*/\1/"; }
best_tk=0 best_tp=0 best_pk=0 best_pp=0 su_t=999 su_p=999
for r in $(seq "$rounds"); do
  t0=$(date +%s.%N)
  out=$(./build/tide bench/codeparrot.lua --run="$tmp/run" --batches="$tmp/batches.safetensors" --threads="$threads" --steps="$steps")
  tl=$(echo "$out" | tail -1)
  su=$(awk -v a="$(field "$out" first_step_end)" -v b="$t0" 'BEGIN { printf "%.3f", a - b }')
  echo "round $r: $tl  start-up ${su} s"
  echo "round $r: $(echo "$out" | grep 'loss alone')"
  su_t=$(awk -v a="$su" -v b="$su_t" 'BEGIN { print (a < b) ? a : b }')
  k=$(echo "$tl" | sed -E 's/.*keytoken step [0-9.]+ ms  ([0-9]+) tokens.*/\1/'); [ "$k" -gt "$best_tk" ] && best_tk=$k
  p=$(echo "$tl" | sed -E 's/.*plain step [0-9.]+ ms  ([0-9]+) tokens.*/\1/'); [ "$p" -gt "$best_tp" ] && best_tp=$p

  t0=$(date +%s.%N)
  out=$("$py" bench/codeparrot_peer.py "$tmp/run" "$tmp/batches.safetensors" "$threads" "$steps" 2>/dev/null)
  pl=$(echo "$out" | tail -1)
  su=$(awk -v a="$(field "$out" first_step_end)" -v b="$t0" 'BEGIN { printf "%.3f", a - b }')
  echo "round $r: $pl  start-up ${su} s"
  echo "round $r: $(echo "$out" | grep 'loss alone')"
  su_p=$(awk -v a="$su" -v b="$su_p" 'BEGIN { print (a < b) ? a : b }')
  k=$(echo "$pl" | sed -E 's/.*keytoken step [0-9.]+ ms  ([0-9]+) tokens.*/\1/'); [ "$k" -gt "$best_pk" ] && best_pk=$k
  p=$(echo "$pl" | sed -E 's/.*plain step [0-9.]+ ms  ([0-9]+) tokens.*/\1/'); [ "$p" -gt "$best_pp" ] && best_pp=$p
done
awk -v tk="$best_tk" -v tp="$best_tp" -v pk="$best_pk" -v pp="$best_pp" -v st="$su_t" -v sp="$su_p" -v n="$threads" 'BEGIN {
  printf "threads %d, keytoken loop: tide %d tokens/s, torch %d tokens/s, tide / torch %.2fx\n", n, tk, pk, tk / pk
  printf "keytoken loss cost over the plain loss (step time): tide %+.1f%%, torch %+.1f%%\n", (tp / tk - 1) * 100, (pp / pk - 1) * 100
  printf "start-up to the end of the first step: tide %.2f s, torch %.2f s (%.1fx)\n", st, sp, sp / st }'

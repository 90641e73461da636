#!/usr/bin/env bash
# One GPT-2 training step (4 layers, 256 dims, 4 heads, vocab 8192, T=128,
# B=8), tide against PyTorch eager, same threads, same run; prints the ratio.
#   bench/train_step.sh [threads] [python with torch+transformers]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
py=${2:-${TIDE_REF_PYTHON:-python3}}
tide_line=$(./build/tide bench/train_step.lua --threads="$threads")
torch_line=$("$py" bench/train_step.py "$threads")
echo "$tide_line"
echo "$torch_line"
t=$(echo "$tide_line" | sed -E 's/.* ([0-9]+) tokens\/s.*/\1/')
p=$(echo "$torch_line" | sed -E 's/.* ([0-9]+) tokens\/s.*/\1/')
awk -v t="$t" -v p="$p" 'BEGIN { printf "tide / torch tokens/s: %.2fx\n", t / p }'
echo "tide peak = engine tensor bytes (tide.memory().peak); torch peak = process RSS"

#!/usr/bin/env bash
# Decoding speed of model:generate against transformers' generate with its KV
# cache, same model directory, prompt ids and thread count, in the same run:
# a random GPT-2 124M and a small GPT-2 (4 layers, 256 dims, GPT-2's
# vocabulary), batch 1 and 8, NEW new tokens after a PROMPT-token prompt,
# greedy (the two must agree token for token: the id checksums are compared)
# and one sampling row (top_k 50). Then the floor of one decode step (the
# bytes it must read over the copy bandwidth measured in the same run) and
# the time to first token of a cold recipes/generate.lua against a cold
# transformers pipeline.
#   bench/generate.sh [threads] [reps]    (python from $TIDE_REF_PYTHON; models in $DIR, default /tmp/tide-bench-generate)
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
reps=${2:-3}
py=${TIDE_REF_PYTHON:-python3}
tide=${TIDE:-./build/tide}
dir=${DIR:-/tmp/tide-bench-generate}
P=${PROMPT:-64}
N=${NEW:-128}
export OMP_NUM_THREADS=$threads
for size in 124M small; do
  [ -f "$dir/$size/model.safetensors" ] || "$tide" bench/generate.lua --save="$dir/$size" --size=$size
done
ratio() { # tide line, peer line -> "wall ratio, cpu ratio" of decoding
  local t p tc pc
  t=$(echo "$1" | sed -E 's/.* decode ([0-9.]+) tokens\/s.*/\1/')
  p=$(echo "$2" | sed -E 's/.* decode ([0-9.]+) tokens\/s.*/\1/')
  tc=$(echo "$1" | sed -E 's/.*\(cpu ([0-9.]+) ms\).*/\1/')
  pc=$(echo "$2" | sed -E 's/.*\(cpu ([0-9.]+) ms\).*/\1/')
  awk -v t="$t" -v p="$p" -v tc="$tc" -v pc="$pc" 'BEGIN { printf "%.2fx (cpu time per step %.2fx)", t / p, pc / tc }'
}
ids() { echo "$1" | head -1 | sed -E 's/.* ids ([0-9]+).*/\1/'; }
summary=()
for size in small 124M; do
  for mode in "1 0" "8 0" "8 1"; do
    set -- $mode
    b=$1 s=$2
    tsample=false; [ "$s" = 1 ] && tsample=true
    floor=""; [ "$s" = 0 ] && floor=--floor
    tl=$("$tide" bench/generate.lua --model="$dir/$size" --batch="$b" --prompt="$P" --new="$N" --sample=$tsample \
      --threads="$threads" --reps="$reps" $floor)
    pl=$("$py" bench/generate_peer.py "$dir/$size" "$threads" "$b" "$P" "$N" "$s" "$reps" 2>/dev/null)
    echo "$size: $tl"
    echo "$size: $pl"
    same=""
    if [ "$s" = 0 ]; then
      if [ "$(ids "$tl")" = "$(ids "$pl")" ]; then same="(greedy ids equal)"; else same="(GREEDY IDS DIFFER)"; fi
    fi
    summary+=("$(printf '%-5s B=%d %-6s tide/transformers decode %s %s' "$size" "$b" \
      "$([ "$s" = 1 ] && echo sample || echo greedy)" "$(ratio "$(echo "$tl" | head -1)" "$pl")" "$same")")
  done
done
printf '%s\n' "${summary[@]}"

# time to first token, cold processes (best of reps; the page cache is warm)
prompt="def fibonacci(n):"
pysrc="import torch; torch.set_num_threads($threads)
from transformers import pipeline
gen = pipeline('text-generation', model='$dir/124M', device='cpu')
print(gen('$prompt', max_new_tokens=1, do_sample=False)[0]['generated_text'])"
seconds() { # command... -> wall seconds
  local s e
  s=$(date +%s.%N)
  "$@" >/dev/null 2>&1
  e=$(date +%s.%N)
  echo "$e - $s" | bc
}
tt=9999 pt=9999
for _ in $(seq "$reps"); do
  t=$(seconds "$tide" recipes/generate.lua --model="$dir/124M" --prompt="$prompt" --max_new_tokens=1)
  p=$(seconds "$py" -c "$pysrc")
  tt=$(echo "if ($t < $tt) $t else $tt" | bc)
  pt=$(echo "if ($p < $pt) $p else $pt" | bc)
done
awk -v t="$tt" -v p="$pt" 'BEGIN { printf "time to first token, cold start, GPT-2 124M: tide recipes/generate.lua %.2f s, transformers pipeline %.2f s, transformers / tide %.1fx\n", t, p, p / t }'

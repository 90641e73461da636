#!/usr/bin/env bash
# recipes/generate.lua on a small random GPT-2 saved with GPT-2's tokenizer:
# greedy output (streamed) equals the pipeline's, the prompt can come from
# standard input, several sampled sequences are printed with their headers
# and repeat with a seed, --first_block cuts, and bad use is a clear error.
set -u
TIDE=${1:?usage: test_generate_recipe.sh path/to/tide}
case $TIDE in /*) ;; *) TIDE=$PWD/$TIDE ;; esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
"$TIDE" -e "
tide.manual_seed(3)
local tok = tide.tokenizer.load('data/gpt2')
local m = tide.gpt2.new({ vocab_size = tok:vocab_size(), n_positions = 64, n_embd = 16, n_layer = 1, n_head = 2 })
m:save_pretrained('$tmp/model')
tok:save('$tmp/model')
local gen = tide.pipeline('text-generation', '$tmp/model')
io.open('$tmp/want', 'w'):write(gen('def add(a, b):', { max_new_tokens = 12 })[1].generated_text, '\n')
" || { echo "FAIL: making the model"; exit 1; }

"$TIDE" recipes/generate.lua --model="$tmp/model" --prompt='def add(a, b):' --max_new_tokens=12 >"$tmp/got" 2>"$tmp/err"
if [ $? -ne 0 ] || ! cmp -s "$tmp/got" "$tmp/want"; then
  echo "FAIL: greedy output differs from the pipeline's:"; diff "$tmp/want" "$tmp/got"; cat "$tmp/err"; fail=1
fi
printf 'def add(a, b):' | "$TIDE" recipes/generate.lua --model="$tmp/model" --max_new_tokens=12 >"$tmp/got2" 2>&1
if ! cmp -s "$tmp/got2" "$tmp/want"; then echo "FAIL: prompt from stdin:"; cat "$tmp/got2"; fail=1; fi

run_sampled() {
  "$TIDE" recipes/generate.lua --model="$tmp/model" --prompt='x = ' --max_new_tokens=8 --do_sample=true \
    --top_k=20 --num_return_sequences=3 --seed=5 "$@"
}
run_sampled >"$tmp/s1" 2>&1 && run_sampled >"$tmp/s2" 2>&1
if [ "$(grep -c '^--- sequence [123] ---$' "$tmp/s1")" != 3 ] || ! cmp -s "$tmp/s1" "$tmp/s2"; then
  echo "FAIL: three seeded sequences:"; cat "$tmp/s1" "$tmp/s2"; fail=1
fi
run_sampled --first_block >"$tmp/s3" 2>&1 || { echo "FAIL: --first_block:"; cat "$tmp/s3"; fail=1; }

"$TIDE" recipes/generate.lua --prompt=x >"$tmp/out" 2>&1
if [ $? -ne 1 ] || ! grep -q 'generate: --model=DIR is required' "$tmp/out"; then echo "FAIL: no --model:"; cat "$tmp/out"; fail=1; fi
"$TIDE" recipes/generate.lua --model="$tmp/nothing" --prompt=x >"$tmp/out" 2>&1
if [ $? -ne 1 ] || ! grep -q 'generate: ' "$tmp/out"; then echo "FAIL: a missing model dir:"; cat "$tmp/out"; fail=1; fi
"$TIDE" recipes/generate.lua --model="$tmp/model" --prompt=x --max_new_tokens=100 >"$tmp/out" 2>&1
if [ $? -ne 1 ] || ! grep -q 'generate: ' "$tmp/out"; then echo "FAIL: beyond the context:"; cat "$tmp/out"; fail=1; fi

[ $fail = 0 ] && echo "generate recipe: ok"
exit $fail

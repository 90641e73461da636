#!/usr/bin/env bash
# recipes/feynman.lua (the llms-101 GPT-2-from-scratch tutorial) through its
# JSON Lines path on the committed rows of the tutorial's schema
# (tests/data/feynman/feynman_tiny.jsonl, made with the Parquet file by
# tools/make_feynman_parquet.py): the word count is Python's, the sections
# are split into sentences, the training loss falls, the output directory
# is a model directory whose pipeline, seeded, generates exactly what the
# recipe printed, and bad use is a clear error. A small model, a few steps.
set -u
TIDE=${1:?usage: test_feynman_recipe.sh path/to/tide}
case $TIDE in /*) ;; *) TIDE=$PWD/$TIDE ;; esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
opts=(--rows=64 --n_embd=32 --n_positions=64 --max_steps=12 --logging_steps=2 --learning_rate=3e-3 --seed=7)

"$TIDE" recipes/feynman.lua --data=tests/data/feynman/feynman_tiny.jsonl "${opts[@]}" --output_dir="$tmp/out" \
  >"$tmp/log" 2>&1 </dev/null
rc=$?
if [ $rc -ne 0 ]; then echo "FAIL: the run exited $rc"; cat "$tmp/log"; exit 1; fi
# tools/make_feynman_parquet.py printed 3448 words for these rows (Python's str.split)
grep -q '34 sections; Text size: 3448 words' "$tmp/log" || { echo "FAIL: the word count"; cat "$tmp/log"; fail=1; }
grep -q '^64 rows, [0-9]* tokens' "$tmp/log" || { echo "FAIL: 64 sentence rows expected"; cat "$tmp/log"; fail=1; }
for f in config.json model.safetensors tokenizer.json checkpoints/latest metrics.jsonl; do
  [ -e "$tmp/out/$f" ] || { echo "FAIL: the output directory has no $f"; fail=1; }
done
"$TIDE" -e "
local first, last
for line in io.lines('$tmp/out/metrics.jsonl') do
  local l = line:match('\"loss/train\":([-0-9.e]+)')
  if l then first = first or tonumber(l); last = tonumber(l) end
end
assert(first and last and last < first - 0.5, ('train loss %s -> %s'):format(tostring(first), tostring(last)))
-- the saved model and tokenizer generate, seeded, what the recipe printed
local gen = tide.pipeline('text-generation', '$tmp/out')
local want = gen('The equations of motion are', { max_length = 50, do_sample = true, temperature = 1.0, seed = 7 })[1].generated_text
local log = io.open('$tmp/log'):read('*a')
local got = log:match('%-%-%- generated %-%-%-\n(.*)\n$')
assert(got == want, ('generated:\n%s\nthe saved model gives:\n%s'):format(tostring(got), want))
assert(got:sub(1, 27) == 'The equations of motion are')
local n = #tide.tokenizer.load('$tmp/out'):encode(got)
assert(n > 5 and n <= 52, n .. ' tokens for max_length=50')
" >"$tmp/check" 2>&1 || { echo "FAIL:"; cat "$tmp/check"; cat "$tmp/log"; fail=1; }

expect_error() {
  local want=$1; shift
  "$TIDE" recipes/feynman.lua --output_dir="$tmp/bad" --max_steps=1 "$@" >"$tmp/e" 2>&1
  local rc=$?
  if [ $rc -ne 1 ] || ! grep -qF -- "$want" "$tmp/e"; then echo "FAIL: $* should fail with '$want' (exit $rc):"; cat "$tmp/e"; fail=1; fi
}
expect_error 'unknown option --epochs' --epochs=3
expect_error 'holds no text in nope' --data=tests/data/feynman/feynman_tiny.jsonl --column=nope
expect_error 'expected .parquet (or .jsonl) files' --data=recipes/feynman.lua
expect_error 'no such file or directory: /nonexistent.parquet' --data=/nonexistent.parquet
expect_error '--n_head must be an integer >= 1' --n_head=0
exit $fail

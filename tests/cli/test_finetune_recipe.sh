#!/usr/bin/env bash
# recipes/finetune.lua (the DistilGPT2/ELI5 guide) on the committed tiny
# random GPT-2 (tests/ref/finetune/tiny-gpt2, made by tools/make_finetune_ref.py)
# and the ELI5-shaped corpus: the perplexity falls by a quarter or more, the
# output directory is a complete Hugging Face model directory that tide loads
# back with the trained weights, a text-file corpus works, and bad use is a
# clear error. Seconds on 2 cores.
set -u
TIDE=${1:?usage: test_finetune_recipe.sh path/to/tide}
case $TIDE in /*) ;; *) TIDE=$PWD/$TIDE ;; esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

"$TIDE" recipes/finetune.lua --output_dir="$tmp/out" --learning_rate=5e-3 --num_train_epochs=2 >"$tmp/log" 2>&1 </dev/null
rc=$?
if [ $rc -ne 0 ]; then echo "FAIL: the run exited $rc"; cat "$tmp/log"; exit 1; fi
before=$(sed -n 's/^Perplexity before: \([0-9.]*\).*/\1/p' "$tmp/log")
after=$(sed -n 's/^Perplexity: \([0-9.]*\).*/\1/p' "$tmp/log")
if [ -z "$before" ] || [ -z "$after" ] || ! awk -v b="$before" -v a="$after" 'BEGIN { exit !(a < 0.75 * b) }'; then
  echo "FAIL: the perplexity did not fall by a quarter ($before -> $after)"; cat "$tmp/log"; fail=1
fi
grep -q 'group_texts: [0-9]* blocks of 128 tokens' "$tmp/log" || { echo "FAIL: no group_texts report"; cat "$tmp/log"; fail=1; }
for f in config.json model.safetensors tokenizer.json vocab.json merges.txt metrics.jsonl plot.svg checkpoints/latest; do
  [ -e "$tmp/out/$f" ] || { echo "FAIL: the output directory has no $f"; fail=1; }
done
# the saved model is the trained one: its eval loss on a text matches what the run printed, and it differs from the start
"$TIDE" -e "
local tok = tide.tokenizer.load('$tmp/out')
local m0 = tide.gpt2.from_pretrained('tests/ref/finetune/tiny-gpt2')
local m1 = tide.gpt2.from_pretrained('$tmp/out')
m0:eval(); m1:eval()
local ids = tide.tensor({ tok:encode('Return a new list of the items in the iterable, in order.') }, { dtype = 'i64' })
local l0, l1 = m0(ids, { labels = ids }).loss:item(), m1(ids, { labels = ids }).loss:item()
assert(l1 < l0 - 0.3, ('trained loss %.3f, start %.3f'):format(l1, l0))
assert(tok:vocab_size() == 512)
" >"$tmp/check" 2>&1 || { echo "FAIL: loading the saved model:"; cat "$tmp/check"; fail=1; }
# a second run refuses to write over the first without --overwrite
"$TIDE" recipes/finetune.lua --output_dir="$tmp/out" --max_steps=1 >"$tmp/o2" 2>&1
if [ $? -ne 1 ] || ! grep -q 'holds a run already: pass --overwrite' "$tmp/o2"; then echo "FAIL: no --overwrite:"; cat "$tmp/o2"; fail=1; fi

# plain text files: one record per file, the field 'text'
mkdir -p "$tmp/txt"
for i in 1 2 3 4 5 6; do sed -n "$((i * 8)),$((i * 8 + 40))p" recipes/finetune.lua >"$tmp/txt/part$i.txt"; done
"$TIDE" recipes/finetune.lua --data="$tmp/txt" --output_dir="$tmp/txt_out" --block_size=32 --max_steps=2 >"$tmp/t.log" 2>&1
if [ $? -ne 0 ] || ! grep -q '(text): 6 records, 4 train, 2 test' "$tmp/t.log" || ! grep -q '^Perplexity: ' "$tmp/t.log"; then
  echo "FAIL: a text-file corpus:"; cat "$tmp/t.log"; fail=1
fi

# bad use: each a message and exit 1
expect_error() {
  local want=$1; shift
  "$TIDE" recipes/finetune.lua --output_dir="$tmp/bad" "$@" >"$tmp/e" 2>&1
  local rc=$?
  if [ $rc -ne 1 ] || ! grep -qF -- "$want" "$tmp/e"; then echo "FAIL: $* should fail with '$want' (exit $rc):"; cat "$tmp/e"; fail=1; fi
}
expect_error 'unknown option --learnin_rate' --learnin_rate=1
expect_error "--block_size=256 is longer than the model's 128 positions" --block_size=256
expect_error 'no such file or directory: /nonexistent.jsonl' --data=/nonexistent.jsonl
expect_error 'gave 0 records with a answers.nope field' --field=answers.nope
expect_error '--test_size must be a fraction' --test_size=1.5
printf '{"answers": {"text": ["a", 3]}}\n' >"$tmp/bad.jsonl"
expect_error 'record 1: answers.text[2] is a number, not a string' --data="$tmp/bad.jsonl"
exit $fail

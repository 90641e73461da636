#!/usr/bin/env bash
# recipes/humaneval.lua end to end: a small random GPT-2 (GPT-2's tokenizer)
# samples completions for two problems, cut at the stop sequences and run in
# the sandbox (pass@k printed, a k above n reported as not estimable, the
# per-problem jsonl and pass_at_k.json written); a human-eval samples file
# of canonical and empty bodies gives exactly the pass@k it implies; bad use
# is a clear error. Skipped (77) without python3.
set -u
TIDE=${1:?usage: test_humaneval_recipe.sh path/to/tide}
case $TIDE in /*) ;; *) TIDE=$PWD/$TIDE ;; esac
[ -x /usr/bin/python3 ] || command -v python3 >/dev/null || { echo "skip: no python3"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
"$TIDE" -e "
tide.manual_seed(3)
local tok = tide.tokenizer.load('data/gpt2')
local m = tide.gpt2.new({ vocab_size = tok:vocab_size(), n_positions = 256, n_embd = 16, n_layer = 1, n_head = 2 })
m:save_pretrained('$tmp/model')
tok:save('$tmp/model')
" || { echo "FAIL: making the model"; exit 1; }

"$TIDE" recipes/humaneval.lua --model="$tmp/model" --limit=2 --n=3 --batch_size=2 --max_new_tokens=12 --k=1,2,5 \
  --out="$tmp/run/results.jsonl" >"$tmp/out" 2>&1
rc=$?
if [ $rc -ne 0 ] || ! grep -q '^pass@1 = ' "$tmp/out" || ! grep -q '^pass@2 = ' "$tmp/out" \
   || ! grep -q 'pass@5: not estimable, k = 5 is more than the n = 3' "$tmp/out" \
   || ! grep -q '^humaneval: 2 problems, n = 3, k = 1,2,5; sandbox: ' "$tmp/out"; then
  echo "FAIL: the model run (rc $rc):"; cat "$tmp/out"; fail=1
fi
[ "$(wc -l <"$tmp/run/results.jsonl")" = 2 ] || { echo "FAIL: results.jsonl:"; cat "$tmp/run/results.jsonl"; fail=1; }
grep -q '"pass@2"' "$tmp/run/pass_at_k.json" || { echo "FAIL: pass_at_k.json"; fail=1; }
# every completion is cut before a stop sequence
"$TIDE" -e "
for line in io.lines('$tmp/run/results.jsonl') do
  local r = tide.json.decode(line)
  assert(#r.samples == 3, 'three samples')
  for _, s in ipairs(r.samples) do
    for _, stop in ipairs({ '\ndef', '\nclass', '\nif', '\n#', '\nprint' }) do
      assert(not s.completion:find(stop, 1, true), 'a stop sequence in ' .. s.completion)
    end
    assert(type(s.result) == 'string' and type(s.passed) == 'boolean')
  end
end" || { echo "FAIL: the completions"; fail=1; }

# human-eval samples: problem 0 gets 2 canonical + 2 empty bodies, problem 1 1 + 3:
# pass@1 = (2/4 + 1/4) / 2 = 0.375, pass@2 = ((1 - 1/6) + (1 - 3/6)) / 2 = 0.6667
"$TIDE" -e "
local ce = require 'tide.code_eval'
local ps = ce.read_problems('data/humaneval/HumanEval.jsonl.gz')
local f = io.open('$tmp/samples.jsonl', 'w')
for i, good in ipairs({ 2, 1 }) do
  for j = 1, 4 do
    f:write(tide.json.encode({ task_id = ps[i].task_id, completion = j <= good and ps[i].canonical_solution or '    pass\n' }), '\n')
  end
end
f:close()" || { echo "FAIL: writing samples"; exit 1; }
"$TIDE" recipes/humaneval.lua --samples="$tmp/samples.jsonl" --limit=2 --n=4 --k=1,2 --out="$tmp/s/results.jsonl" >"$tmp/out" 2>&1
if [ $? -ne 0 ] || ! grep -q '^pass@1 = 0.3750$' "$tmp/out" || ! grep -q '^pass@2 = 0.6667$' "$tmp/out"; then
  echo "FAIL: the samples file:"; cat "$tmp/out"; fail=1
fi

# without --n, as many samples as the file holds (4 here)
"$TIDE" recipes/humaneval.lua --samples="$tmp/samples.jsonl" --limit=2 --k=1,2,5 --out="$tmp/s2/results.jsonl" >"$tmp/out" 2>&1
if [ $? -ne 0 ] || ! grep -q '^pass@2 = 0.6667$' "$tmp/out" || ! grep -q 'pass@5: not estimable, k = 5 is more than the n = 4' "$tmp/out" \
   || ! grep -q '^3 of 8 candidates passed' "$tmp/out"; then
  echo "FAIL: the samples file without --n:"; cat "$tmp/out"; fail=1
fi
"$TIDE" recipes/humaneval.lua --samples="$tmp/samples.jsonl" --limit=3 --out="$tmp/s3/results.jsonl" >"$tmp/out" 2>&1
if [ $? -ne 2 ] || ! grep -q 'has no samples for HumanEval/2' "$tmp/out"; then echo "FAIL: a problem without samples:"; cat "$tmp/out"; fail=1; fi
"$TIDE" recipes/humaneval.lua --canonical --python=/nonexistent/python3 >"$tmp/out" 2>&1
if [ $? -ne 2 ] || ! grep -q 'humaneval: cannot run /nonexistent/python3 in the sandbox' "$tmp/out"; then echo "FAIL: a missing python:"; cat "$tmp/out"; fail=1; fi

"$TIDE" recipes/humaneval.lua >"$tmp/out" 2>&1
if [ $? -ne 2 ] || ! grep -q 'humaneval: give exactly one of --model=DIR, --canonical or --samples' "$tmp/out"; then
  echo "FAIL: no source:"; cat "$tmp/out"; fail=1
fi
"$TIDE" recipes/humaneval.lua --canonical --k=1,x >"$tmp/out" 2>&1
if [ $? -ne 2 ] || ! grep -q 'humaneval: --k must be a list of positive integers' "$tmp/out"; then echo "FAIL: bad --k:"; cat "$tmp/out"; fail=1; fi
"$TIDE" recipes/humaneval.lua --samples="$tmp/samples.jsonl" --limit=2 --n=3 >"$tmp/out" 2>&1
if [ $? -ne 2 ] || ! grep -q 'has 4 samples for HumanEval/0; --n=3 expects 3' "$tmp/out"; then echo "FAIL: sample count:"; cat "$tmp/out"; fail=1; fi
"$TIDE" recipes/humaneval.lua --model="$tmp/nothing" >"$tmp/out" 2>&1
if [ $? -ne 2 ] || ! grep -q 'humaneval: ' "$tmp/out"; then echo "FAIL: a missing model:"; cat "$tmp/out"; fail=1; fi

[ $fail = 0 ] && echo "humaneval recipe: ok"
exit $fail

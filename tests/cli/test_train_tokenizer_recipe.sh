#!/usr/bin/env bash
# recipes/train_tokenizer.lua with a tiny budget: a corpus of this
# repository's Python and Lua files (CodeParrot schema), a 600-token
# vocabulary; the saved directory loads, has that many tokens and encodes
# the chapter's example function back to itself; every inspection prints;
# --length limits the documents; bad use is a clear error.
set -u
TIDE=${1:?usage: test_train_tokenizer_recipe.sh path/to/tide}
case $TIDE in /*) ;; *) TIDE=$PWD/$TIDE ;; esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
"$TIDE" -e "
local f = io.open('$tmp/corpus.jsonl', 'w')
local p = io.popen('ls tools/*.py recipes/*.lua')
for path in p:lines() do
  local h = io.open(path, 'rb'); local text = h:read('*a'); h:close()
  f:write(tide.json.encode({ repo_name = 'tide', path = path, content = text, license = 'mit' }), '\n')
end
p:close(); f:close()" || { echo "FAIL: making the corpus"; exit 1; }
ndocs=$(wc -l <"$tmp/corpus.jsonl")

"$TIDE" recipes/train_tokenizer.lua --data="$tmp/corpus.jsonl" --vocab_size=600 --out="$tmp/tok" --top=5 >"$tmp/out" 2>&1
rc=$?
for want in "trained on $ndocs documents" "saved $tmp/tok" '== the example function ==' 'GPT-2:       \["def", "Ġsay"' \
            'tokens: GPT-2 27, new ' '== the longest tokens ==' '== the first and the last tokens learned' \
            'There are in total 35 Python keywords.' '== Python keywords ==' 'runs of spaces that are single tokens: ' \
            ' 8 spaces: new \[' "$ndocs training documents: GPT-2 "; do
  grep -q -- "$want" "$tmp/out" || { echo "FAIL: the output lacks: $want"; fail=1; }
done
[ $rc -eq 0 ] || { echo "FAIL: exit $rc"; fail=1; }
[ $fail = 0 ] || cat "$tmp/out"
"$TIDE" -e "
local tok = tide.tokenizer.load('$tmp/tok')
assert(tok:vocab_size() == 600, 'vocab_size ' .. tok:vocab_size())
assert(tok.eos_id == 0, 'eos first: train_new_from_iterator keeps the added token of GPT-2')
local code = 'def say_hello():\n    print(\"Hello, World!\")\n\n# Print it\nsay_hello()\n'
assert(tok:decode(tok:encode(code)) == code)
assert(#tok:encode(code) < #code)
for _, f in ipairs({ 'tokenizer.json', 'vocab.json', 'merges.txt', 'tokenizer_config.json' }) do
  assert(io.open('$tmp/tok/' .. f), f)
end" || { echo "FAIL: the saved tokenizer"; fail=1; }

"$TIDE" recipes/train_tokenizer.lua --data="$tmp/corpus.jsonl" --vocab_size=400 --length=3 --eval_docs=2 --out="$tmp/tok3" >"$tmp/out" 2>&1
if [ $? -ne 0 ] || ! grep -q '^trained on 3 documents' "$tmp/out" || ! grep -q '^2 held-out documents' "$tmp/out"; then
  echo "FAIL: --length=3:"; cat "$tmp/out"; fail=1
fi

"$TIDE" recipes/train_tokenizer.lua --data="$tmp/none.jsonl" --out="$tmp/x" >"$tmp/out" 2>&1
if [ $? -ne 2 ] || ! grep -q 'train_tokenizer: .*none.jsonl' "$tmp/out"; then echo "FAIL: a missing corpus:"; cat "$tmp/out"; fail=1; fi
"$TIDE" recipes/train_tokenizer.lua --data="$tmp/corpus.jsonl" --vocab_size=10 --out="$tmp/x" >"$tmp/out" 2>&1
if [ $? -ne 2 ] || ! grep -q 'train_tokenizer: .*vocab_size 10 is smaller' "$tmp/out"; then echo "FAIL: a tiny vocab:"; cat "$tmp/out"; fail=1; fi
"$TIDE" recipes/train_tokenizer.lua --data="$tmp/corpus.jsonl" --vocab_size=big --out="$tmp/x" >"$tmp/out" 2>&1
if [ $? -ne 2 ] || ! grep -q 'train_tokenizer: --vocab_size must be an integer' "$tmp/out"; then echo "FAIL: --vocab_size=big:"; cat "$tmp/out"; fail=1; fi

[ $fail = 0 ] && echo "train_tokenizer recipe: ok"
exit $fail

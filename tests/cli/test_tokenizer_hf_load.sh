#!/usr/bin/env bash
# tide's tok:save of GPT-2's tokenizer loads unchanged in Hugging Face
# tokenizers (Tokenizer.from_file) and transformers (AutoTokenizer) and
# encodes test strings to tide's ids. Needs a Python with tokenizers and
# transformers ($TIDE_REF_PYTHON, or the venv tests/ref/README.md makes) and
# GPT-2's files in data/gpt2; without them it is skipped (exit 77).
set -u
TIDE=${1:-./build/tide}
GPT2=${TIDE_GPT2_DIR:-data/gpt2}
py=""
for c in "${TIDE_REF_PYTHON:-}" /tmp/refenv/bin/python python3; do
  [ -n "$c" ] || continue
  if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import tokenizers, transformers' >/dev/null 2>&1; then py=$c; break; fi
done
if [ -z "$py" ]; then
  echo "skipped: no Python with tokenizers and transformers (set TIDE_REF_PYTHON; see tests/ref/README.md)"
  exit 77
fi
if [ ! -f "$GPT2/vocab.json" ] || [ ! -f "$GPT2/merges.txt" ]; then
  echo "skipped: GPT-2's vocab.json and merges.txt not found in $GPT2"
  exit 77
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$TIDE" -e "
local tok = tide.tokenizer.load('$GPT2')
tok:save('$dir/tok')
local texts = { 'Hello world', 'def say_hello():\n    print(\"Hello, World!\")', '  \n\n\t x  ',
                'héllo wörld 日本語 🎉 e\204\129', \"it's we've I'LL 12345 ٣٤٥\" }
local ids = {}
for i, s in ipairs(texts) do ids[i] = tok:encode(s) end
tide.json.write_file('$dir/expected.json', { texts = texts, ids = ids })
" || { echo "FAIL: tide could not save the tokenizer"; exit 1; }
"$py" - "$dir" <<'PY'
import json, sys
import tokenizers, transformers
d = sys.argv[1]
exp = json.load(open(d + '/expected.json'))
t = tokenizers.Tokenizer.from_file(d + '/tok/tokenizer.json')
a = transformers.AutoTokenizer.from_pretrained(d + '/tok')
bad = 0
for s, ids in zip(exp['texts'], exp['ids']):
    for name, got in (('tokenizers', t.encode(s).ids), ('transformers', a(s)['input_ids'])):
        if got != ids:
            bad += 1
            print('FAIL: %s encodes %r to %s, tide to %s' % (name, s, got, ids))
if a.eos_token_id != 50256:
    bad += 1
    print('FAIL: transformers eos_token_id is %s' % a.eos_token_id)
print('%d texts checked with tokenizers and transformers, %d mismatches' % (len(exp['texts']), bad))
sys.exit(1 if bad else 0)
PY

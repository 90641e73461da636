#!/usr/bin/env bash
# tide's tok:save of GPT-2's tokenizer loads unchanged in Hugging Face
# tokenizers (Tokenizer.from_file) and transformers (AutoTokenizer) and
# encodes test strings to tide's ids: saved into a fresh directory (plain
# files) and saved twice into one (linked generations), and data/gpt2 as
# shipped (vocab.json, merges.txt, tokenizer_config.json). Needs a Python with tokenizers and
# transformers ($TIDE_REF_PYTHON, or the venv tests/ref/README.md makes) and
# GPT-2's files in data/gpt2; without them it is skipped (exit 77).
set -u
TIDE=${1:-./build/tide}
GPT2=${TIDE_GPT2_DIR:-data/gpt2}
source "$(dirname "$0")/ref_python.sh"
ref_python 'import tokenizers, transformers' "tokenizers and transformers"
if [ ! -f "$GPT2/vocab.json" ] || [ ! -f "$GPT2/merges.txt" ]; then
  echo "skipped: GPT-2's vocab.json and merges.txt not found in $GPT2"
  exit 77
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$TIDE" -e "
local tok = tide.tokenizer.load('$GPT2')
tok:save('$dir/tok')
tok:save('$dir/tok2')
tok:save('$dir/tok2')
local texts = { 'Hello world', 'def say_hello():\n    print(\"Hello, World!\")', '  \n\n\t x  ',
                'héllo wörld 日本語 🎉 e\204\129', \"it's we've I'LL 12345 ٣٤٥\" }
local ids = {}
for i, s in ipairs(texts) do ids[i] = tok:encode(s) end
tide.json.write_file('$dir/expected.json', { texts = texts, ids = ids })
" || { echo "FAIL: tide could not save the tokenizer"; exit 1; }
HF_HUB_OFFLINE=1 "$py" - "$dir" "$GPT2" <<'PY'
import json, sys
import tokenizers, transformers
d, gpt2 = sys.argv[1], sys.argv[2]
exp = json.load(open(d + '/expected.json'))
bad = 0
for where in (d + '/tok', d + '/tok2', gpt2):
    loaders = [('transformers', transformers.AutoTokenizer.from_pretrained(where))]
    if where != gpt2:
        t = tokenizers.Tokenizer.from_file(where + '/tokenizer.json')
        loaders.append(('tokenizers', type('T', (), {'__call__': lambda self, s, t=t: {'input_ids': t.encode(s).ids}})()))
    for s, ids in zip(exp['texts'], exp['ids']):
        for name, enc in loaders:
            got = enc(s)['input_ids']
            if got != ids:
                bad += 1
                print('FAIL: %s from %s encodes %r to %s, tide to %s' % (name, where, s, got, ids))
    a = loaders[0][1]
    if where == gpt2:
        a.save_pretrained(d + '/hf')  # transformers' own files, for tide to read back
    if a.eos_token_id != 50256 or len(a) != 50257:
        bad += 1
        print('FAIL: transformers from %s: eos_token_id %s, %d tokens' % (where, a.eos_token_id, len(a)))
print('%d texts checked with tokenizers and transformers in 3 directories, %d mismatches' % (len(exp['texts']), bad))
sys.exit(1 if bad else 0)
PY
[ $? -eq 0 ] || exit 1
# and tide reads what transformers writes (its tokenizer.json and tokenizer_config.json)
"$TIDE" -e "
local want = tide.json.read_file('$dir/expected.json')
local tok = tide.tokenizer.load('$dir/hf')
assert(tok.model_max_length == 1024 and tok.eos_id == 50256, 'model_max_length or eos_id')
for i, s in ipairs(want.texts) do
  local got = tok:encode(s)
  for k, id in ipairs(want.ids[i]) do assert(got[k] == id, 'text ' .. i .. ' differs at ' .. k) end
  assert(#got == #want.ids[i], 'text ' .. i .. ' length')
end
print('tide loads transformers\' saved GPT-2 tokenizer and encodes as before')
" || { echo "FAIL: tide cannot read transformers' files"; exit 1; }

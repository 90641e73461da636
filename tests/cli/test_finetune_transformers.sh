#!/usr/bin/env bash
# What recipes/finetune.lua saves loads in transformers as it is: after a few
# steps on the committed tiny GPT-2, AutoModelForCausalLM.from_pretrained(OUT)
# gives tide's logits and AutoTokenizer.from_pretrained(OUT) tide's ids
# (tools/check_checkpoint_transformers.py). Needs a Python with torch,
# transformers and safetensors ($TIDE_REF_PYTHON, or the venv
# tests/ref/README.md makes); without one the test is skipped (exit 77).
set -u
TIDE=${1:-./build/tide}
source "$(dirname "$0")/ref_python.sh"
ref_python 'import torch, transformers, safetensors' "torch, transformers and safetensors"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$TIDE" recipes/finetune.lua --output_dir="$dir/out" --max_steps=3 --learning_rate=1e-3 >"$dir/log" 2>&1 </dev/null \
  || { echo "FAIL: the recipe:"; cat "$dir/log"; exit 1; }
"$TIDE" -e "
local tok = tide.tokenizer.load('$dir/out')
local m = tide.gpt2.from_pretrained('$dir/out')
m:eval()
local text = 'What does json.dumps do? It serializes an object to a JSON formatted str.'
local a = tok:encode(text)
local ids = tide.tensor({ { unpack(a, 1, 20) }, { unpack(a, 21, 40) } }, { dtype = 'i64' })
tide.io.save_safetensors('$dir/check.safetensors', { input_ids = ids, logits = m(ids).logits,
  text_ids = tide.tensor(tok:encode(text), { dtype = 'i64' }) }, { tide_text = text })
" || { echo "FAIL: tide could not load what the recipe saved"; exit 1; }
"$py" tools/check_checkpoint_transformers.py "$dir/out" "$dir/check.safetensors"

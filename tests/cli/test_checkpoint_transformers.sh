#!/usr/bin/env bash
# A tide training checkpoint is a Hugging Face model directory: after a few
# training steps, save_checkpoint's directory loads in transformers
# (AutoModelForCausalLM, AutoTokenizer) as it is and gives tide's logits
# (tools/check_checkpoint_transformers.py). Needs a Python with torch,
# transformers and safetensors ($TIDE_REF_PYTHON, or the venv
# tests/ref/README.md makes); without one the test is skipped (exit 77).
set -u
TIDE=${1:-./build/tide}
source "$(dirname "$0")/ref_python.sh"
ref_python 'import torch, transformers, safetensors' "torch, transformers and safetensors"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$TIDE" -e "
local ck = require 'tide.train.checkpoint'
tide.manual_seed(11)
local tok = tide.tokenizer.load('data/gpt2')
local m = tide.gpt2.new({vocab_size = tok:vocab_size(), n_positions = 24, n_embd = 32, n_layer = 2, n_head = 4})
local opt = tide.optim.AdamW(tide.optim.grouped_params(m, 0.1), {lr = 1e-3})
local ids = tide.randint(0, tok:vocab_size(), {2, 20})
for _ = 1, 3 do
  opt:zero_grad()
  m(ids, {labels = ids}).loss:backward()
  opt:step()
end
local path = ck.save_checkpoint('$dir/run', {step = 3, model = m, optimizer = opt, tokenizer = tok})
m:eval()
local text = 'def f(x):\n    return x + 1'
tide.io.save_safetensors('$dir/check.safetensors', {input_ids = ids, logits = m(ids).logits,
  text_ids = tide.tensor(tok:encode(text), {dtype = 'i64'})}, {tide_text = text})
print(path)
" > "$dir/path.txt" || { echo "FAIL: tide could not write the checkpoint"; exit 1; }
"$py" tools/check_checkpoint_transformers.py "$(cat "$dir/path.txt")" "$dir/check.safetensors"

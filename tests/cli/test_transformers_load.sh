#!/usr/bin/env bash
# A tide-initialised GPT-2 saved with save_pretrained loads unchanged in
# transformers and gives the same logits. Needs a Python with torch and
# transformers ($TIDE_REF_PYTHON, or the venv tests/ref/README.md makes);
# without one the test is skipped (exit 77) and says so.
set -u
TIDE=${1:-./build/tide}
source "$(dirname "$0")/ref_python.sh"
ref_python 'import torch, transformers, safetensors' "torch, transformers and safetensors"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$TIDE" -e "
tide.manual_seed(11)
local m = tide.gpt2.new({vocab_size = 301, n_positions = 24, n_embd = 48, n_layer = 2, n_head = 4})
m:eval()
m:save_pretrained('$dir')
local ids = tide.randint(0, 301, {2, 20})
tide.io.save_safetensors('$dir/tide_check.safetensors', {input_ids = ids, logits = m(ids).logits})
" || { echo "FAIL: tide could not write the directory"; exit 1; }
"$py" tests/ref/check_tide_in_transformers.py "$dir"

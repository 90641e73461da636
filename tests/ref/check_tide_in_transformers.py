"""Loads a directory written by tide's save_pretrained with transformers and
compares its logits with the ones tide computed (both in DIR).

    python check_tide_in_transformers.py DIR
DIR holds config.json, model.safetensors and tide_check.safetensors
(input_ids [B, T] i64 and logits [B, T, V] f32 from tide). Exit 0 when the
relative error max|hf - tide| / max|tide| is under 1e-5."""
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

d = sys.argv[1]
torch.set_num_threads(1)
model = AutoModelForCausalLM.from_pretrained(d, attn_implementation="eager")
model.eval()
ref = load_file(f"{d}/tide_check.safetensors")
with torch.no_grad():
    logits = model(ref["input_ids"]).logits
err = (logits - ref["logits"]).abs().max().item() / ref["logits"].abs().max().item()
print(f"transformers {__import__('transformers').__version__} loaded tide's directory; logits relative error {err:.3g}")
sys.exit(0 if err < 1e-5 else 1)

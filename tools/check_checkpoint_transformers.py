"""Loads a tide training checkpoint (RUN/checkpoints/step-NNNNNN) with Hugging
Face transformers, as it is, and compares its logits with tide's.

    python tools/check_checkpoint_transformers.py CHECKPOINT_DIR CHECK_FILE

CHECKPOINT_DIR: written by tide.train.save_checkpoint (config.json,
model.safetensors, tokenizer files when a tokenizer was given, and tide's
training state beside them, which transformers ignores).
CHECK_FILE: a safetensors file tide wrote with input_ids [B, T] (i64) and
logits [B, T, V] (f32) computed by the checkpoint's model in eval mode, and
optionally text_ids [N] (i64): the tokenizer's ids of the text in
tide_text (the file's metadata).

Exit 0 when the relative error max|hf - tide| / max|tide| is under 1e-5 and,
with a tokenizer, AutoTokenizer encodes the text to the same ids."""
import os
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    d, check = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(d, attn_implementation="eager")
    model.eval()
    ref = load_file(check)
    with torch.no_grad():
        logits = model(ref["input_ids"]).logits
    err = (logits - ref["logits"]).abs().max().item() / ref["logits"].abs().max().item()
    import transformers
    print(f"transformers {transformers.__version__} loaded the checkpoint {d}; logits relative error {err:.3g}")
    ok = err < 1e-5
    if os.path.exists(os.path.join(d, "tokenizer.json")) and "text_ids" in ref:
        with safe_open(check, "pt") as f:
            text = (f.metadata() or {}).get("tide_text", "")
        tok = AutoTokenizer.from_pretrained(d)
        ids = tok(text)["input_ids"]
        same = ids == ref["text_ids"].tolist()
        print(f"AutoTokenizer loaded it; {text!r} -> {len(ids)} ids, {'the same as' if same else 'NOT the same as'} tide's")
        ok = ok and same
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

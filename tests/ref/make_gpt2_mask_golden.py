#!/usr/bin/env python3
"""Golden numbers for GPT-2 with an attention mask (padded batches).

Loads the committed tiny model (gpt2_tiny/model, made by make_gpt2_golden.py)
into transformers' GPT2LMHeadModel and runs one batch of three rows with
padding: none, left (4 pads) and right (5 pads). Writes gpt2_tiny_mask.safetensors:

  input_ids [3, 12], attention_mask [3, 12]        the batch (pads are id 511)
  logits [3, 12, 512]                              model(ids, attention_mask=mask)
  labels [3, 12], loss []                          labels = ids, -100 at pads and at
                                                   the first token after left padding
  position_ids [3, 12], logits_pos [3, 12, 512]    with position_ids = cumsum(mask) - 1,
                                                   clamped at 0, as generate() passes

Only logits at non-pad positions are meaningful: a left-pad query sees no key,
and transformers' eager and SDPA paths give it different values (checked
below). For the same reason the label of the first token after left padding is
-100: its prediction comes from a pad position. Everything else is checked to
agree between eager and SDPA before it is written.

    python make_gpt2_mask_golden.py           # regenerate, compare with the committed file
    python make_gpt2_mask_golden.py --write   # replace it
"""

import argparse
import os
import sys
import tempfile
import warnings

import torch
import transformers
from safetensors.torch import save_file
from transformers import GPT2LMHeadModel

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL_DIR = os.path.join(HERE, "gpt2_tiny", "model")
OUT = os.path.join(HERE, "gpt2_tiny_mask.safetensors")
PAD = 511
B, T = 3, 12
LEFT, RIGHT = 4, 5  # pads in rows 1 and 2
DATA_SEED = 9012


def batch():
    g = torch.Generator().manual_seed(DATA_SEED)
    ids = torch.randint(0, 511, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, :LEFT] = 0
    mask[2, T - RIGHT:] = 0
    ids[mask == 0] = PAD
    labels = ids.clone()
    labels[mask == 0] = -100
    labels[1, LEFT] = -100
    pos = (mask.cumsum(-1) - 1).clamp_min(0)
    return ids, mask, labels, pos


def run(attn, ids, mask, labels, pos):
    m = GPT2LMHeadModel.from_pretrained(MODEL_DIR, attn_implementation=attn).float().eval()
    with torch.no_grad():
        out = m(ids, attention_mask=mask, labels=labels)
        out_pos = m(ids, attention_mask=mask, position_ids=pos)
    return out.logits, out.loss, out_pos.logits


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true", help="replace the committed golden file")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")

    ids, mask, labels, pos = batch()
    logits, loss, logits_pos = run("eager", ids, mask, labels, pos)
    s_logits, s_loss, s_logits_pos = run("sdpa", ids, mask, labels, pos)
    real = mask.bool()
    for a, b in ((logits, s_logits), (logits_pos, s_logits_pos)):
        err = float((a[real] - b[real]).abs().max() / b[real].abs().max())
        assert err < 1e-5, f"eager and SDPA disagree at real tokens: {err}"
    assert abs(float(loss) - float(s_loss)) < 1e-5 * abs(float(loss)), (float(loss), float(s_loss))
    # the reason pad positions are not compared: the paths differ there
    pad_diff = float((logits[~real] - s_logits[~real]).abs().max())
    print(f"eager vs SDPA at pad positions: max diff {pad_diff:.3g} (not compared)")
    # a mask of ones is the same as no mask
    with torch.no_grad():
        m = GPT2LMHeadModel.from_pretrained(MODEL_DIR, attn_implementation="eager").float().eval()
        assert torch.equal(m(ids[:1]).logits, m(ids[:1], attention_mask=mask[:1]).logits)
        # transformers' forward does not take positions from the mask
        assert torch.equal(m(ids, attention_mask=mask).logits, logits)

    tensors = {
        "input_ids": ids, "attention_mask": mask, "labels": labels, "position_ids": pos,
        "logits": logits, "loss": loss.reshape(()), "logits_pos": logits_pos,
    }
    tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    meta = {"format": "pt"}
    if args.write:
        save_file(tensors, OUT, metadata=meta)
        print(f"wrote {OUT}")
        return 0
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "x.safetensors")
        save_file(tensors, p, metadata=meta)
        same = os.path.exists(OUT) and open(p, "rb").read() == open(OUT, "rb").read()
    print("identical to the committed golden" if same else "differs from the committed golden")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

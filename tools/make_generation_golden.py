#!/usr/bin/env python3
"""Writes tests/data/generation/tiny-gpt2/ (a small random GPT2LMHeadModel,
seeded, saved by transformers: config.json + model.safetensors) and
tests/data/generation/greedy_golden.json: transformers' generate(do_sample=False)
outputs on it (single prompt, a batch of equal-length prompts, with
repetition_penalty, with eos_token_id stopping early). Ids are 0-based, as
tide's. tests/lua/test_generation.lua checks tide against them.

Run: python tools/make_generation_golden.py  (torch + transformers, CPU)
"""
import json
import os

import torch
from transformers import GPT2Config, GPT2LMHeadModel

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, '..', 'tests', 'data', 'generation')
MODEL_DIR = os.path.join(OUT, 'tiny-gpt2')


def main():
    torch.manual_seed(1234)
    cfg = GPT2Config(vocab_size=97, n_positions=32, n_embd=32, n_layer=2, n_head=4,
                     bos_token_id=96, eos_token_id=96)
    model = GPT2LMHeadModel(cfg)
    # larger weights than the 0.02 init, so greedy choices are not all one token
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.3)
    model.eval()
    os.makedirs(MODEL_DIR, exist_ok=True)
    model.save_pretrained(MODEL_DIR, safe_serialization=True)
    for extra in os.listdir(MODEL_DIR):
        if extra not in ('config.json', 'model.safetensors'):
            os.remove(os.path.join(MODEL_DIR, extra))

    g = torch.Generator().manual_seed(99)
    single = torch.randint(0, 96, (1, 5), generator=g)
    batch = torch.randint(0, 96, (3, 6), generator=g)

    cases = []

    def run(name, ids, **kw):
        kw.setdefault('pad_token_id', 0)
        mask = kw.pop('attention_mask', None)
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids) if mask is None else mask,
                                 do_sample=False, **kw)
        case = {'name': name, 'input_ids': ids.tolist(), 'output_ids': out.tolist()}
        if mask is not None:
            case['attention_mask'] = mask.tolist()
        # eos_token_id not given: the model's own (96), as generate takes it from the config
        case['options'] = {k: v for k, v in kw.items() if v is not None}
        cases.append(case)
        return out

    run('single', single, max_new_tokens=20)
    run('batch', batch, max_new_tokens=12)
    run('repetition_penalty', batch, max_new_tokens=12, repetition_penalty=1.3)
    run('max_length', single, max_length=16)
    run('min_new_tokens', batch, max_new_tokens=8, min_new_tokens=4, eos_token_id=None)
    # eos: pick the token the first row greedily emits at step 3 as eos, so it stops early;
    # other rows continue (and get padded) until all end or max_new_tokens
    base = run('eos_base', batch, max_new_tokens=12)
    eos = int(base[0, batch.shape[1] + 2])
    run('eos', batch, max_new_tokens=12, eos_token_id=eos, pad_token_id=95)
    run('eos_min_new', batch, max_new_tokens=12, eos_token_id=eos, pad_token_id=95, min_new_tokens=5)

    # left padding: prompts of lengths 6, 3 and 4, padded on the left with 95
    lens = [6, 3, 4]
    padded = batch.clone()
    mask = torch.ones_like(batch)
    for r, n in enumerate(lens):
        padded[r, :6 - n] = 95
        mask[r, :6 - n] = 0
    run('left_padded', padded, max_new_tokens=12, attention_mask=mask, pad_token_id=95)
    run('left_padded_penalty_eos', padded, max_new_tokens=12, attention_mask=mask, pad_token_id=95,
        repetition_penalty=1.3, eos_token_id=57)

    with open(os.path.join(OUT, 'greedy_golden.json'), 'w') as f:
        json.dump({'model': 'tiny-gpt2', 'torch': torch.__version__,
                   'transformers': __import__('transformers').__version__, 'cases': cases}, f, indent=1)
        f.write('\n')


if __name__ == '__main__':
    main()

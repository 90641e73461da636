#!/usr/bin/env python3
"""Golden scores for tide's logits processors (lua/tide/generation/processors.lua).

Runs transformers' own processor classes, in the order and under the
conditions of GenerationMixin._get_logits_processor, on small fixed logits
and writes tests/data/generation/processors_golden.json. Cases cover ties at
the top-k and top-p cuts, min_tokens_to_keep, repetition penalty with
repeated ids and negative logits, prompt_ignore_length (left padding),
min_new_tokens with one or several eos ids, and the whole chain on random
logits. Values are float32 written as exact decimals; -inf as the string
"-inf". Also records transformers' error messages for bad options.

Usage: python tools/make_sampling_golden.py [OUT]   (torch + transformers on CPU)
"""
import json
import math
import os
import sys

import torch
import transformers
from transformers.generation.logits_process import (
    LogitsProcessorList,
    MinNewTokensLengthLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'data', 'generation', 'processors_golden.json')


def chain(o, prompt_length):
    """The processors generate() builds for these options, in its order (with
    generate's default top_k = 50, GenerationConfig._get_default_generation_params)."""
    procs = LogitsProcessorList()
    rp = o.get('repetition_penalty')
    if rp is not None and rp != 1.0:
        pil = o.get('prompt_ignore_length')
        if isinstance(pil, list):
            pil = torch.tensor(pil)
        procs.append(RepetitionPenaltyLogitsProcessor(float(rp), prompt_ignore_length=pil))
    eos = o.get('eos_token_id')
    if o.get('min_new_tokens') and eos is not None:
        procs.append(MinNewTokensLengthLogitsProcessor(prompt_length, o['min_new_tokens'], eos))
    if o.get('do_sample'):
        mtk = o.get('min_tokens_to_keep', 1)
        t = o.get('temperature')
        if t is not None and t != 1.0:
            procs.append(TemperatureLogitsWarper(float(t)))
        k = o.get('top_k', 50)
        if k is not None and k != 0:
            procs.append(TopKLogitsWarper(top_k=k, min_tokens_to_keep=mtk))
        p = o.get('top_p')
        if p is not None and p < 1.0:
            procs.append(TopPLogitsWarper(top_p=p, min_tokens_to_keep=mtk))
    return procs


def enc(t):
    return [[('-inf' if v == -math.inf else ('inf' if v == math.inf else float(v))) for v in row]
            for row in t.tolist()]


cases = []


def case(name, logits, input_ids, opts, prompt_length=None, warper_only=None):
    scores = torch.tensor(logits, dtype=torch.float32)
    ids = torch.tensor(input_ids, dtype=torch.long)
    if prompt_length is None:
        prompt_length = ids.shape[1]
    procs = chain(opts, prompt_length)
    out = procs(ids, scores.clone())
    cases.append({
        'name': name,
        'logits': enc(scores),
        'input_ids': input_ids,
        'prompt_length': prompt_length,
        'opts': opts,
        'processors': [type(p).__name__ for p in procs],
        'expected': enc(out),
        'kept': [[i for i, v in enumerate(row) if v != -math.inf] for row in out.tolist()],
    })


S = dict(do_sample=True)
ids1 = [[0, 1]]
# top-k: ties at the k-th value are all kept (the cut is a value, not a count)
case('top_k ties at the cut', [[3.0, 1.0, 2.0, 2.0, 0.0, -1.0, 2.0, 0.5]], ids1, dict(S, top_k=2))
case('top_k no tie', [[3.0, 1.0, 2.5, 2.0, 0.0, -1.0, 2.25, 0.5]], ids1, dict(S, top_k=3))
case('top_k min_tokens_to_keep above k', [[3.0, 1.0, 2.5, 2.0, 0.0, -1.0, 2.25, 0.5]], ids1,
     dict(S, top_k=1, min_tokens_to_keep=4))
case('top_k at least the vocabulary', [[3.0, 1.0, 2.5, 2.0]], ids1, dict(S, top_k=10))
case('top_k all equal', [[1.0, 1.0, 1.0, 1.0, 1.0]], ids1, dict(S, top_k=2))
# top-p: ties at the cut (uniform rows make cumulative sums hit 1 - top_p exactly)
case('top_p uniform cut at half', [[0.0, 0.0, 0.0, 0.0]], ids1, dict(S, top_p=0.5))
case('top_p uniform cut at three quarters', [[0.0, 0.0, 0.0, 0.0]], ids1, dict(S, top_p=0.75))
case('top_p tie straddling the cut', [[2.0, 1.0, 1.0, 1.0, 0.0, -3.0, 1.0, 2.0]], ids1, dict(S, top_p=0.6))
case('top_p tie straddling the cut 2', [[0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 3.0, -1.0]], ids1, dict(S, top_p=0.7))
case('top_p keeps the top token only', [[5.0, 1.0, 0.0, -1.0, 0.5]], ids1, dict(S, top_p=0.1))
case('top_p min_tokens_to_keep', [[5.0, 1.0, 0.0, -1.0, 0.5, 0.25]], ids1, dict(S, top_p=0.1, min_tokens_to_keep=3))
case('top_p 0.9 negative logits', [[-1.0, -2.0, -0.5, -4.0, -3.0, -2.5, -0.75, -6.0]], ids1, dict(S, top_p=0.9))
case('top_p after -inf', [[-math.inf, 1.0, 0.0, -math.inf, 2.0, 1.5]], ids1, dict(S, top_p=0.8))
# temperature
case('temperature 0.7', [[3.0, -1.25, 2.0, 0.1, -7.5, 0.0]], ids1, dict(S, temperature=0.7))
case('temperature 1.9', [[3.0, -1.25, 2.0, 0.1, -7.5, 0.0]], ids1, dict(S, temperature=1.9))
case('temperature is ignored without sampling', [[3.0, -1.25, 2.0, 0.1]], ids1, dict(do_sample=False, temperature=0.5))
# repetition penalty: repeated ids, negative and positive logits, penalty above and below 1
rp_logits = [[2.0, -1.0, 0.5, -3.0, 1.5, 0.0, 4.0, -0.25], [-2.0, 1.0, -0.5, 3.0, -1.5, 0.75, -4.0, 0.25]]
rp_ids = [[0, 1, 1, 3, 0, 5], [7, 7, 7, 2, 4, 2]]
case('repetition_penalty 1.3', rp_logits, rp_ids, dict(repetition_penalty=1.3))
case('repetition_penalty 0.6', rp_logits, rp_ids, dict(repetition_penalty=0.6))
case('repetition_penalty prompt_ignore_length', rp_logits, rp_ids,
     dict(repetition_penalty=1.3, prompt_ignore_length=[2, 4]))
# min_new_tokens
mn_logits = [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]]
mn_ids = [[0, 1, 2, 3], [3, 2, 1, 0]]
case('min_new_tokens before', mn_logits, mn_ids, dict(min_new_tokens=3, eos_token_id=5), prompt_length=2)
case('min_new_tokens reached', mn_logits, mn_ids, dict(min_new_tokens=2, eos_token_id=5), prompt_length=2)
case('min_new_tokens eos list', mn_logits, mn_ids, dict(min_new_tokens=5, eos_token_id=[0, 4]), prompt_length=2)
case('min_new_tokens without eos is off', mn_logits, mn_ids, dict(min_new_tokens=5), prompt_length=2)
# the whole chain on random logits
g = torch.Generator().manual_seed(1234)
rl = (torch.randn(3, 50, generator=g) * 2.5).tolist()
rids = torch.randint(0, 50, (3, 12), generator=g).tolist()
full = dict(S, repetition_penalty=1.2, min_new_tokens=4, eos_token_id=[7, 11], temperature=0.8, top_k=20, top_p=0.85)
case('full chain', rl, rids, full, prompt_length=9)
case('full chain min_tokens_to_keep', rl, rids, dict(full, top_k=3, top_p=0.3, min_tokens_to_keep=5), prompt_length=9)
case('full chain greedy', rl, rids, dict(repetition_penalty=1.5, min_new_tokens=2, eos_token_id=7), prompt_length=11)
case('top_p only random', rl, rids, dict(S, top_p=0.5))
g = torch.Generator().manual_seed(99)
bl = (torch.randn(2, 1000, generator=g) * 2).tolist()
bids = torch.randint(0, 1000, (2, 16), generator=g).tolist()
case('vocab 1000 top_p 0.9 top_k off', bl, bids, dict(S, top_k=0, top_p=0.9))
case('vocab 1000 top_k 200 top_p 0.8', bl, bids, dict(S, top_k=200, top_p=0.8, temperature=1.3))
case('vocab 1000 default top_k 50, top_p 0.7', bl, bids, dict(S, top_p=0.7, repetition_penalty=1.1))

# transformers' messages for bad options (tide raises the same text)
errors = []


def err(opts, f):
    try:
        f()
    except ValueError as e:
        errors.append({'opts': opts, 'message': str(e)})
        return
    raise AssertionError(f'no error for {opts}')


err(dict(do_sample=True, top_p=1.5), lambda: TopPLogitsWarper(1.5))
err(dict(do_sample=True, top_p=0.5, min_tokens_to_keep=0), lambda: TopPLogitsWarper(0.5, min_tokens_to_keep=0))
err(dict(do_sample=True, top_k=-1), lambda: TopKLogitsWarper(-1))
err(dict(do_sample=True, temperature=0.0), lambda: TemperatureLogitsWarper(0.0))
err(dict(do_sample=True, temperature=-0.5), lambda: TemperatureLogitsWarper(-0.5))
err(dict(repetition_penalty=0.0), lambda: RepetitionPenaltyLogitsProcessor(0.0))
err(dict(repetition_penalty=-1.0), lambda: RepetitionPenaltyLogitsProcessor(-1.0))
err(dict(min_new_tokens=-1, eos_token_id=0), lambda: MinNewTokensLengthLogitsProcessor(3, -1, 0))

with open(OUT, 'w') as f:
    json.dump({'generator': 'tools/make_sampling_golden.py', 'torch': torch.__version__,
               'transformers': transformers.__version__, 'cases': cases, 'errors': errors}, f, separators=(',', ':'))
    f.write('\n')
print(f'wrote {OUT}: {len(cases)} cases, {len(errors)} errors')

#!/usr/bin/env python3
"""Writes the inputs of recipes/finetune.lua's tests:

  tests/data/finetune/eli5_tiny.jsonl   an ELI5-Category-shaped corpus (q_id,
      title, selftext, category, subreddit, answers {a_id, text, score,
      text_urls}, title_urls, selftext_urls), 120 questions whose answers
      are the docstrings of this Python's standard library (local text, no
      download): 'answers.text' is a list of one to three strings, as in
      eli5_category.
  tests/ref/finetune/tiny-gpt2/         a small random GPT2LMHeadModel saved
      by transformers (n_embd 32, 2 layers, 128 positions) with a byte-level
      BPE of 512 tokens trained on that corpus by `tokenizers`, saved as
      GPT2TokenizerFast does (tokenizer.json, vocab.json, merges.txt,
      tokenizer_config.json): a stand-in for distilgpt2 of a few hundred KB.

Run: /tmp/h9model-env/bin/python tools/make_finetune_ref.py  (torch,
transformers, tokenizers; CPU, seconds). The outputs are committed; rerunning
on another Python gives another corpus.
"""
import importlib
import inspect
import json
import os
import random
import shutil

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, '..')
CORPUS = os.path.join(ROOT, 'tests', 'data', 'finetune', 'eli5_tiny.jsonl')
MODEL_DIR = os.path.join(ROOT, 'tests', 'ref', 'finetune', 'tiny-gpt2')
MODULES = ['json', 'os', 'random', 'string', 'textwrap', 'collections', 'functools', 'itertools', 'math',
           'statistics', 'fractions', 'decimal', 'heapq', 'bisect', 'shutil', 'tempfile', 'glob', 'fnmatch',
           'csv', 'base64', 'hashlib', 'zlib', 'gzip', 'difflib', 'calendar', 'datetime', 'copy', 'pprint',
           'argparse', 'logging', 'queue', 'threading', 'subprocess', 'socket', 'urllib.parse', 'html',
           'inspect', 'operator', 'pathlib', 'zipfile', 'tarfile', 'struct', 'array', 'enum', 'typing']
N_QUESTIONS = 120
CATEGORIES = ['Technology', 'Engineering', 'Mathematics', 'Other']


def paragraphs(doc):
    """The prose paragraphs of a docstring, joined into single lines."""
    out = []
    for para in inspect.cleandoc(doc).split('\n\n'):
        lines = [l.strip() for l in para.splitlines()]
        text = ' '.join(l for l in lines if l)
        # prose only: no doctest, no argument tables
        if len(text) > 40 and '>>>' not in text and not text.startswith(('-', ':', '*')):
            out.append(text[:400])
    return out


def questions():
    found = []
    for name in MODULES:
        mod = importlib.import_module(name)
        for attr in sorted(dir(mod)):
            if attr.startswith('_'):
                continue
            obj = getattr(mod, attr, None)
            if not (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj)):
                continue
            doc = inspect.getdoc(obj)
            paras = paragraphs(doc) if doc else []
            if paras:
                found.append((name, attr, paras))
    return found


def main():
    rng = random.Random(15)
    found = questions()
    rng.shuffle(found)
    found = found[:N_QUESTIONS]
    recs = []
    for i, (mod, attr, paras) in enumerate(found):
        answers = paras[:3]
        recs.append({
            'q_id': '%06x' % rng.randrange(1 << 24),
            'title': f'What does {mod}.{attr} do in Python, and why would I use it?',
            'selftext': '' if i % 3 else f'I keep seeing {attr} in code that imports {mod}.',
            'category': CATEGORIES[i % len(CATEGORIES)],
            'subreddit': 'explainlikeimfive',
            'answers': {
                'a_id': ['%07x' % rng.randrange(1 << 28) for _ in answers],
                'text': answers,
                'score': [rng.randrange(1, 200) for _ in answers],
                'text_urls': [[] for _ in answers],
            },
            'title_urls': [],
            'selftext_urls': [],
        })
    os.makedirs(os.path.dirname(CORPUS), exist_ok=True)
    with open(CORPUS, 'w', encoding='utf-8') as f:
        for r in recs:
            f.write(json.dumps(r, ensure_ascii=False) + '\n')

    # GPT-2's kind of tokenizer: byte-level BPE, <|endoftext|> its only special token
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=['<|endoftext|>'],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator((' '.join(r['answers']['text']) for r in recs), trainer=trainer)
    fast = GPT2TokenizerFast(tokenizer_object=tok, bos_token='<|endoftext|>', eos_token='<|endoftext|>',
                             unk_token='<|endoftext|>', model_max_length=128)
    eos = fast.convert_tokens_to_ids('<|endoftext|>')

    torch.manual_seed(15)
    cfg = GPT2Config(vocab_size=len(fast), n_positions=128, n_embd=32, n_layer=2, n_head=2,
                     bos_token_id=eos, eos_token_id=eos)
    model = GPT2LMHeadModel(cfg)
    if os.path.isdir(MODEL_DIR):
        shutil.rmtree(MODEL_DIR)
    os.makedirs(MODEL_DIR)
    model.save_pretrained(MODEL_DIR, safe_serialization=True)
    fast.save_pretrained(MODEL_DIR)
    for extra in os.listdir(MODEL_DIR):
        if extra not in ('config.json', 'model.safetensors', 'tokenizer.json', 'vocab.json', 'merges.txt',
                         'tokenizer_config.json', 'special_tokens_map.json'):
            os.remove(os.path.join(MODEL_DIR, extra))
    os.chmod(os.path.join(MODEL_DIR, "model.safetensors"), 0o644)
    n_ans = sum(len(r['answers']['text']) for r in recs)
    print(f'{CORPUS}: {len(recs)} questions, {n_ans} answers, {os.path.getsize(CORPUS)} bytes')
    print(f'{MODEL_DIR}: vocab {len(fast)}, {sum(p.numel() for p in model.parameters())} parameters: '
          + ', '.join(sorted(os.listdir(MODEL_DIR))))


if __name__ == '__main__':
    main()

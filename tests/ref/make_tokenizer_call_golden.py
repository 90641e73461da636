"""Golden outputs of transformers' tokenizer call for tests/lua/test_tokenizer_call.lua.

Loads GPT-2's tokenizer from data/gpt2 with transformers.AutoTokenizer (the
directory as shipped), sets pad_token = eos_token (as the Hugging Face course
does), and records tok(texts, **options) for padding, truncation, max_length,
stride, return_overflowing_tokens, return_length, padding_side and
pad_to_multiple_of; and the ByteLevel pre-tokenizer's pieces with their
offsets, turned from characters into bytes. Writes tokenizer/call.json.

    python3 -m venv /tmp/refenv && /tmp/refenv/bin/pip install transformers==5.23.0 tokenizers
    HF_HUB_OFFLINE=1 /tmp/refenv/bin/python tests/ref/make_tokenizer_call_golden.py          # compare only
    HF_HUB_OFFLINE=1 /tmp/refenv/bin/python tests/ref/make_tokenizer_call_golden.py --write  # replace it
"""
import argparse, json, os, sys

import tokenizers
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

TEXTS = [
    'Hello world',
    'def say_hello():\n    print("Hello, World!")',
    '',
    "It's a longer sentence, with punctuation; numbers 12345 and héllo wörld 日本語.",
    'a<|endoftext|>b',
]

CASES = [
    {},
    {'padding': True},
    {'padding': 'longest'},
    {'padding': 'max_length', 'max_length': 12},
    {'padding': 'max_length', 'max_length': 30},
    {'truncation': True, 'max_length': 5},
    {'truncation': 'longest_first', 'max_length': 5, 'padding': True},
    {'truncation': True, 'max_length': 7, 'padding': 'max_length'},
    {'truncation': True, 'max_length': 6, 'return_overflowing_tokens': True},
    {'truncation': True, 'max_length': 6, 'return_overflowing_tokens': True, 'stride': 2},
    {'truncation': True, 'max_length': 4, 'return_overflowing_tokens': True, 'stride': 3, 'padding': True},
    {'truncation': True, 'max_length': 1, 'return_overflowing_tokens': True},
    {'return_overflowing_tokens': True},
    {'truncation': True, 'max_length': 6, 'return_overflowing_tokens': True, 'return_length': True},
    {'return_length': True, 'padding': True},
    {'padding': True, 'padding_side': 'left'},
    {'padding': True, 'pad_to_multiple_of': 8},
    {'truncation': True, 'max_length': 12, 'padding': 'max_length', 'pad_to_multiple_of': 4},
    {'truncation': False, 'max_length': 3},
]

SINGLE = [
    ("It's a longer sentence, with punctuation", {}),
    ("It's a longer sentence, with punctuation", {'truncation': True, 'max_length': 4}),
    ("It's a longer sentence, with punctuation", {'truncation': True, 'max_length': 4, 'return_overflowing_tokens': True, 'stride': 1}),
    ("It's a longer sentence, with punctuation", {'padding': 'max_length', 'max_length': 12}),
]

PRE = ["Hello  world!", "it's  2024!\n\n  x", 'héllo wörld 日本語 🎉', '']


def plain(enc):
    return {k: [list(x) for x in v] if v and isinstance(v[0], list) else list(v) for k, v in enc.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--gpt2', default=os.path.join(ROOT, 'data', 'gpt2'))
    ap.add_argument('--write', action='store_true')
    args = ap.parse_args()
    tok = transformers.AutoTokenizer.from_pretrained(args.gpt2)
    tok.pad_token = tok.eos_token
    out = {'versions': {'transformers': transformers.__version__, 'tokenizers': tokenizers.__version__},
           'texts': TEXTS, 'batch': [], 'single': [], 'pre_tokenize': []}
    for opts in CASES:
        out['batch'].append({'options': opts, 'output': plain(tok(TEXTS, **opts))})
    for text, opts in SINGLE:
        out['single'].append({'text': text, 'options': opts, 'output': plain(tok(text, **opts))})
    pre = tok.backend_tokenizer.pre_tokenizer
    for text in PRE:
        pieces = []
        for _, (s, e) in pre.pre_tokenize_str(text):
            pieces.append([len(text[:s].encode()), len(text[:e].encode())])
        out['pre_tokenize'].append({'text': text, 'offsets': pieces})
    text = json.dumps(out, indent=1, ensure_ascii=False, sort_keys=True) + '\n'
    path = os.path.join(HERE, 'tokenizer', 'call.json')
    if args.write:
        open(path, 'w', encoding='utf-8').write(text)
        print('wrote', path)
        return 0
    old = open(path, encoding='utf-8').read() if os.path.exists(path) else None
    if old != text:
        print('differs from', path, '(run with --write to replace it)')
        return 1
    print('identical to', path)
    return 0


if __name__ == '__main__':
    sys.exit(main())

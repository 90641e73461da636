"""Golden merges and vocabularies from Hugging Face tokenizers' BpeTrainer.

Trains tokenizers.models.BPE with the ByteLevel pre-tokenizer
(add_prefix_space=False) on tests/ref/bpe_train/corpus.txt, fed one line at a
time (each line keeps its '\\n'), for several vocab_size / min_frequency /
max_token_length settings, and writes tests/ref/bpe_train/golden.json:

  {"tokenizers": version, "cases": [{"vocab_size", "min_frequency",
   "max_token_length", "vocab": [token by id], "merges": ["a b", ...]}],
   "heldout": {"text", "ids": {case index: ids}}}

It also writes tests/ref/bpe_train/train_new.json: the Hugging Face course's
case, GPT-2's tokenizer (data/gpt2, loaded by transformers' AutoTokenizer)
retrained with `train_new_from_iterator(batches of 100 lines, 32768)`:
{"transformers": version, "vocab": [token by id], "merges": [...]}. The corpus
is small, so training stops when no pair is left, before 32,768.

tests/lua/test_tokenizer_train.lua checks tide's trainer against both.

    /tmp/refenv/bin/python tests/ref/make_bpe_train_golden.py          # compare only
    /tmp/refenv/bin/python tests/ref/make_bpe_train_golden.py --write  # replace golden.json
"""
import json
import os
import sys

import tokenizers
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'bpe_train')

SETTINGS = [
    (300, 0, None), (500, 0, None), (1000, 0, None),
    (500, 2, None), (8000, 5, None), (8000, 20, None), (2000, 0, None),
    (1000, 0, 4),
]

HELDOUT = (
    "The trainer learns merges from counted pieces; a held-out text checks that\n"
    "def say_hello(name):\n    print(f'Hello, {name}!')\n\n"
    "local t = tide.tokenizer.train(lines, { vocab_size = 1000 })  -- 1000 ids\n"
    "Zürich, Ελλάδα and 🙂 are rare here.\r\n  \t trailing   \n"
)


def lines():
    with open(os.path.join(HERE, 'corpus.txt'), encoding='utf-8') as f:
        return f.read().splitlines(keepends=True)


def train(vocab_size, min_frequency, max_token_length):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    kw = dict(vocab_size=vocab_size, min_frequency=min_frequency,
              special_tokens=['<|endoftext|>'],
              initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
              show_progress=False)
    if max_token_length is not None:
        kw['max_token_length'] = max_token_length
    tok.train_from_iterator(iter(lines()), trainer=trainers.BpeTrainer(**kw))
    return tok


def train_new():
    """transformers' train_new_from_iterator on GPT-2's tokenizer, as the course runs it."""
    import tempfile
    import transformers
    from tokenizers import AddedToken, decoders, processors
    from transformers import AutoTokenizer
    gpt2 = os.path.join(HERE, '..', '..', '..', 'data', 'gpt2')
    # transformers 5 loads a fast tokenizer from tokenizer.json: build GPT-2's
    # from its vocab.json and merges.txt the way its Hub repository has it
    t = Tokenizer(models.BPE.from_file(os.path.join(gpt2, 'vocab.json'), os.path.join(gpt2, 'merges.txt')))
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    t.post_processor = processors.ByteLevel(trim_offsets=False)
    t.add_special_tokens([AddedToken('<|endoftext|>', special=True)])
    with tempfile.TemporaryDirectory() as d:
        t.save(os.path.join(d, 'tokenizer.json'))
        with open(os.path.join(d, 'tokenizer_config.json'), 'w') as f:
            json.dump({'tokenizer_class': 'GPT2Tokenizer', 'bos_token': '<|endoftext|>',
                       'eos_token': '<|endoftext|>', 'unk_token': '<|endoftext|>'}, f)
        old = AutoTokenizer.from_pretrained(d)
    ls = lines()
    new = old.train_new_from_iterator((ls[i:i + 100] for i in range(0, len(ls), 100)), 32768)
    model = json.loads(new.backend_tokenizer.to_str())['model']
    by_id = [None] * len(model['vocab'])
    for s, k in model['vocab'].items():
        by_id[k] = s
    assert None not in by_id
    merges = [m if isinstance(m, str) else ' '.join(m) for m in model['merges']]
    return {'transformers': transformers.__version__, 'vocab': by_id, 'merges': merges}


def write_or_compare(name, obj):
    text = json.dumps(obj, ensure_ascii=False, separators=(',', ':')) + '\n'
    path = os.path.join(HERE, name)
    if '--write' in sys.argv:
        with open(path, 'w', encoding='utf-8') as f:
            f.write(text)
        print('wrote', path, len(text.encode()), 'bytes')
        return True
    with open(path, encoding='utf-8') as f:
        same = f.read() == text
    print(name, 'matches' if same else 'DIFFERS')
    return same


def main():
    cases, ids = [], {}
    for i, (vs, mf, mtl) in enumerate(SETTINGS):
        tok = train(vs, mf, mtl)
        model = json.loads(tok.to_str())['model']
        vocab = model['vocab']
        by_id = [None] * len(vocab)
        for s, k in vocab.items():
            by_id[k] = s
        assert None not in by_id
        merges = [m if isinstance(m, str) else ' '.join(m) for m in model['merges']]
        cases.append({'vocab_size': vs, 'min_frequency': mf, 'max_token_length': mtl,
                      'vocab': by_id, 'merges': merges})
        ids[str(i + 1)] = tok.encode(HELDOUT).ids
    out = {'tokenizers': tokenizers.__version__, 'cases': cases,
           'heldout': {'text': HELDOUT, 'ids': ids}}
    same = write_or_compare('golden.json', out)
    same = write_or_compare('train_new.json', train_new()) and same
    return 0 if same else 1


if __name__ == '__main__':
    sys.exit(main())

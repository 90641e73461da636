"""Golden GPT-2 token ids for tests/lua/test_tokenizer.lua.

Reads tokenizer/texts.json (texts stored as hex so any bytes survive) and
GPT-2's own vocab.json/merges.txt (data/gpt2 by default), writes
tokenizer/gpt2_ids.json. Run with the reference venv:

    /tmp/refenv/bin/python tests/ref/make_tokenizer_golden.py [--gpt2 DIR]

Valid UTF-8 texts are encoded by Hugging Face `tokenizers` (BPE model,
ByteLevel pre-tokenizer, add_prefix_space=False, no added tokens, so
<|endoftext|> in text is ordinary text). `tokenizers` takes str, so texts
that are not valid UTF-8 go through a second reference: GPT-2's published
algorithm (the pattern via the `regex` module on the text decoded with
surrogateescape, where each invalid byte becomes a lone surrogate, category
Cs: neither letter, number nor space; then byte-level BPE by merge rank).
Both references are run on every valid text and must agree, which checks the
second against the first. Texts containing <|endoftext|> also get
`ids_special`: the encoding when the special token is allowed.
"""
import argparse, json, os, sys

import regex
from tokenizers import Tokenizer, AddedToken, models, pre_tokenizers, decoders

HERE = os.path.dirname(os.path.abspath(__file__))
PAT = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def bytes_to_unicode():
    keep = list(range(ord('!'), ord('~') + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    out, n = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + n)
            n += 1
    return out


class RefBPE:
    def __init__(self, vocab, merges):
        self.vocab = vocab
        self.rank = {tuple(m): i for i, m in enumerate(merges)}
        self.b2u = bytes_to_unicode()

    def piece(self, raw):
        parts = [self.b2u[b] for b in raw]
        while len(parts) > 1:
            best, at = None, -1
            for i in range(len(parts) - 1):
                r = self.rank.get((parts[i], parts[i + 1]))
                if r is not None and (best is None or r < best):
                    best, at = r, i
            if best is None:
                break
            parts[at:at + 2] = [parts[at] + parts[at + 1]]
        return [self.vocab[p] for p in parts]

    def encode(self, data):
        text = data.decode('utf-8', errors='surrogateescape')
        ids = []
        for m in PAT.findall(text):
            ids += self.piece(m.encode('utf-8', errors='surrogateescape'))
        return ids


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--gpt2', default=os.path.join(HERE, '..', '..', '..', 'shared', 'data', 'gpt2'))
    args = ap.parse_args()
    vf, mf = os.path.join(args.gpt2, 'vocab.json'), os.path.join(args.gpt2, 'merges.txt')
    tok = Tokenizer(models.BPE.from_file(vf, mf))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = Tokenizer(models.BPE.from_file(vf, mf))
    special.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    special.add_special_tokens([AddedToken('<|endoftext|>', special=True)])

    vocab = json.load(open(vf, encoding='utf-8'))
    merges = [l.split(' ') for l in open(mf, encoding='utf-8').read().split('\n')[1:] if l]
    ref = RefBPE(vocab, merges)

    texts = json.load(open(os.path.join(HERE, 'tokenizer', 'texts.json')))
    out = []
    for t in texts:
        data = bytes.fromhex(t['hex'])
        ids = ref.encode(data)
        rec = {'name': t['name'], 'ids': ids}
        try:
            s = data.decode('utf-8')
        except UnicodeDecodeError:
            s = None
        if s is not None:
            hf = tok.encode(s).ids
            if hf != ids:
                sys.exit(f"{t['name']}: tokenizers and the reference disagree:\n{hf}\n{ids}")
            assert tok.decode(hf) == s, t['name']
            if '<|endoftext|>' in s:
                rec['ids_special'] = special.encode(s).ids
        rec['source'] = 'tokenizers' if s is not None else 'reference (invalid UTF-8)'
        out.append(rec)
    with open(os.path.join(HERE, 'tokenizer', 'gpt2_ids.json'), 'w') as f:
        f.write('[\n' + ',\n'.join(json.dumps(r, separators=(',', ':')) for r in out) + '\n]\n')
    print(f'{len(out)} texts, {sum(len(r["ids"]) for r in out)} ids')


if __name__ == '__main__':
    main()

"""The seeds' data path with Hugging Face datasets, as the course and the
CodeParrot chapter write it: load_dataset('json') on the jsonl.gz, filter
with any_keyword_in_string (num_proc), tokenize with GPT-2's fast tokenizer
in a batched map (num_proc), then concatenate with EOS after every document
and cut into 1024-token sequences (the ConstantLengthDataset's packing), and
write them as uint16. Prints times and the same checksum as
bench/data_pipeline.lua.
  python bench/data_pipeline_peer.py CORPUS OUTDIR THREADS [filter|all]"""
import json
import os
import sys
import tempfile
import time

import numpy as np
from datasets import load_dataset, disable_caching
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

corpus, out, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
mode = sys.argv[4] if len(sys.argv) > 4 else 'filter'
SEQ = 1024
KEYWORDS = ['pandas', 'sklearn', 'matplotlib', 'seaborn']
disable_caching()
cache = tempfile.mkdtemp()


def any_keyword_in_string(string, keywords):
    for keyword in keywords:
        if keyword in string:
            return True
    return False


t = Tokenizer(models.BPE.from_file('data/gpt2/vocab.json', 'data/gpt2/merges.txt'))
t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
t.decoder = decoders.ByteLevel()
t.add_special_tokens([AddedToken('<|endoftext|>', special=True)])
tok = PreTrainedTokenizerFast(tokenizer_object=t, eos_token='<|endoftext|>')
eos = tok.eos_token_id

t0 = time.perf_counter()
ds = load_dataset('json', data_files=corpus, split='train', cache_dir=cache)
n = len(ds)
t_read = time.perf_counter() - t0

t0 = time.perf_counter()
# a fresh cache: the whole path converts the JSON to Arrow again, as a first run does
ds = load_dataset('json', data_files=corpus, split='train', cache_dir=tempfile.mkdtemp())
if mode == 'filter':
    ds = ds.filter(lambda b: [any_keyword_in_string(c, KEYWORDS) for c in b['content']],
                   batched=True, num_proc=threads)
ds = ds.map(lambda b: {'input_ids': [ids + [eos] for ids in tok(b['content'])['input_ids']]},
            batched=True, num_proc=threads, remove_columns=ds.column_names)
ids = np.concatenate([np.asarray(x, dtype=np.uint16) for x in ds['input_ids']]) if len(ds) else np.zeros(0, np.uint16)
nseq = len(ids) // SEQ
seqs = ids[:nseq * SEQ].reshape(nseq, SEQ)
os.makedirs(out, exist_ok=True)
header = np.zeros(256, np.int32)
header[0], header[1], header[2] = 20240520, 1, nseq * SEQ
with open(os.path.join(out, 'train_000000.bin'), 'wb') as f:
    f.write(header.tobytes())
    f.write(seqs.tobytes())
t_all = time.perf_counter() - t0
s = 0
for row in seqs[:, ::7].tolist():
    for v in row:
        s = (s * 31 + v) % 1000000007
print('datasets  records %d  read alone %.2f s  whole path %.2f s  sequences %d checksum %d' % (n, t_read, t_all, nseq, s))

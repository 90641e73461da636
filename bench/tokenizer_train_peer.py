"""Hugging Face tokenizers' BpeTrainer on the same files and settings as
bench/tokenizer_train.lua (what train_new_from_iterator runs for GPT-2):
ByteLevel pre-tokenizer, the 256-byte alphabet, <|endoftext|>, one file's
text per item. Writes OUT/merges.txt in the same format and prints the time.
  python bench/tokenizer_train_peer.py FILE_LIST OUT [VOCAB]"""
import json
import os
import sys
import time

from tokenizers import Tokenizer, models, pre_tokenizers, trainers

lst, out = sys.argv[1], sys.argv[2]
vocab = int(sys.argv[3]) if len(sys.argv) > 3 else 32768
paths = open(lst).read().split('\n')
paths = [p for p in paths if p]


def texts():
    for p in paths:
        with open(p, 'rb') as f:
            yield f.read().decode('utf-8')  # the list holds UTF-8 files only


tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=['<|endoftext|>'],
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
t0 = time.perf_counter()
tok.train_from_iterator(texts(), trainer=trainer)
dt = time.perf_counter() - t0
os.makedirs(out, exist_ok=True)
model = json.loads(tok.to_str())['model']
with open(os.path.join(out, 'merges.txt'), 'w', encoding='utf-8') as f:
    f.write('#version: 0.2\n')
    for m in model['merges']:
        f.write((m if isinstance(m, str) else ' '.join(m)) + '\n')
print('hf        vocab %d  train %.2f s' % (tok.get_vocab_size(), dt))

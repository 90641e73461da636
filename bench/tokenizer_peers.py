"""Peers of bench/tokenizer_encode.lua: Hugging Face tokenizers and tiktoken
encoding the same corpus with GPT-2's own files (no download: tiktoken is
given the local vocabulary). Prints MB/s and a checksum of the ids so the
three encoders can be seen to agree.
    python tokenizer_peers.py CORPUS GPT2_DIR THREADS"""
import json, sys, time, os

corpus_path, gpt2_dir, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.environ["RAYON_NUM_THREADS"] = str(threads)
import tiktoken
from tokenizers import Tokenizer, models, pre_tokenizers, decoders

data = open(corpus_path, "rb").read()
text = data.decode("utf-8")
docs = text.split("\n\n\n")  # the corpus joins files with two blank lines
mb = len(data) / 1e6

def best(fn, reps=3):
    t = min(_time(fn) for _ in range(reps))
    return t

def _time(fn):
    t0 = time.perf_counter(); fn(); return time.perf_counter() - t0

def checksum(ids):
    s = 0
    for i in ids:
        s = (s * 31 + i) % 1000000007
    return s

# Hugging Face tokenizers, configured as GPT-2's tokenizer.json is
hf = Tokenizer(models.BPE.from_file(f"{gpt2_dir}/vocab.json", f"{gpt2_dir}/merges.txt"))
hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
hf.decoder = decoders.ByteLevel()
ids = hf.encode(text).ids
t1 = best(lambda: hf.encode(text))
tb = best(lambda: hf.encode_batch(docs))
print(f"hf-tokenizers {len(ids)} tokens checksum {checksum(ids)}  one call {mb/t1:.2f} MB/s  batch ({threads} threads) {mb/tb:.2f} MB/s")

# tiktoken with GPT-2's ranks from the local files
byte_enc = {}
bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
cs = bs[:]
n = 0
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256 + n); n += 1
dec = {chr(c): b for b, c in zip(bs, cs)}
vocab = json.load(open(f"{gpt2_dir}/vocab.json"))
ranks = {bytes(dec[ch] for ch in tok): i for tok, i in vocab.items() if tok != "<|endoftext|>"}
enc = tiktoken.Encoding("gpt2-local", pat_str=r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
                        mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256})
ids2 = enc.encode_ordinary(text)
t1 = best(lambda: enc.encode_ordinary(text))
tb = best(lambda: enc.encode_ordinary_batch(docs, num_threads=threads))
print(f"tiktoken      {len(ids2)} tokens checksum {checksum(ids2)}  one call {mb/t1:.2f} MB/s  batch ({threads} threads) {mb/tb:.2f} MB/s")

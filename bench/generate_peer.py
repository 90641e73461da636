# transformers' peer of bench/generate.lua: generate with its KV cache on the
# same model directory, prompt ids, thread count and timing rule.
#   python bench/generate_peer.py DIR threads batch prompt new sample(0|1) reps
import sys, time, statistics
import torch
from transformers import GPT2LMHeadModel

d, threads, B, P, N, sample, reps = sys.argv[1], *map(int, sys.argv[2:8])
torch.set_num_threads(threads)
model = GPT2LMHeadModel.from_pretrained(d)
model.eval()
V = model.config.vocab_size
ids = torch.tensor([[(7 * b + 31 * t + 11) % V for t in range(P)] for b in range(B)])
mask = torch.ones_like(ids)
kw = dict(do_sample=bool(sample), eos_token_id=None, pad_token_id=0, attention_mask=mask, use_cache=True)
if sample:
    kw.update(top_k=50, temperature=1.0)


def run(new):
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        out = model.generate(ids, max_new_tokens=new, min_new_tokens=new, **kw)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    assert out.shape[1] == P + new, out.shape
    return dt, out, dc


run(2)
firsts, wholes, decodes, cpus = [], [], [], []
for _ in range(reps):
    t1, _, c1 = run(1)
    tn, out, cn = run(N)
    firsts.append(t1); wholes.append(tn); decodes.append((tn - t1) / (N - 1)); cpus.append((cn - c1) / (N - 1))
step = statistics.median_low(decodes)
new = out[:, P:].double()
chk = int((new * torch.arange(1, B * N + 1, dtype=torch.float64).view(B, N)).sum().item()) % 1000000007
print(f"hf     {'sample' if sample else 'greedy'} B={B}: prefill+1 {statistics.median_low(firsts)*1e3:.1f} ms  "
      f"decode step {step*1e3:.2f} ms (cpu {statistics.median_low(cpus)*1e3:.2f} ms)  decode {B/step:.1f} tokens/s  whole {B*N/statistics.median_low(wholes):.1f} tokens/s  "
      f"threads {torch.get_num_threads()}  ids {chk}  (torch {torch.__version__}, attn {model.config._attn_implementation})")

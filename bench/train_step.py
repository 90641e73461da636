# PyTorch eager peer of bench/train_step.lua: same config, same step.
import sys, time, resource
import torch
from transformers import GPT2Config, GPT2LMHeadModel

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
steps, warmup, B, T = 20, 3, 8, 128
torch.set_num_threads(threads)
torch.manual_seed(0)
cfg = GPT2Config(vocab_size=8192, n_positions=T, n_embd=256, n_layer=4, n_head=4,
                 resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
model = GPT2LMHeadModel(cfg)
model.train()
decay, no_decay = [], []
for mn, m in model.named_modules():
    for pn, p in m.named_parameters(recurse=False):
        (no_decay if pn == "bias" or "LayerNorm" in type(m).__name__ else decay).append(p)
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                        lr=5e-4, betas=(0.9, 0.95), eps=1e-8)
ids = torch.randint(0, 8192, (B, T))
times = []
for step in range(warmup + steps):
    t0 = time.perf_counter()
    out = model(ids, labels=ids)
    opt.zero_grad(set_to_none=True)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    dt = time.perf_counter() - t0
    if step >= warmup:
        times.append(dt)
times.sort()
median = times[(len(times) - 1) // 2]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"torch median step {median*1e3:.1f} ms  {B*T/median:.0f} tokens/s  process peak RSS {peak:.0f} MB  threads {torch.get_num_threads()}  (torch {torch.__version__}, attn {model.config._attn_implementation})")

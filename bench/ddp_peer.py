# PyTorch peer of bench/ddp.lua: the same GPT-2 (transformers), the same step,
# DistributedDataParallel over gloo (torch's CPU backend; bucket_cap_mb=25,
# all-reduce overlapped with backward by gloo's own threads) on N processes
# started here with torch.multiprocessing, one thread each.
#   python bench/ddp_peer.py NPROC [batch] [steps] [warmup]
import os, sys, time
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def run(rank, n, B, steps, warmup):
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.set_num_threads(1)
    if n > 1:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29541")
        dist.init_process_group("gloo", rank=rank, world_size=n)
    T = 128
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=8192, n_positions=T, n_embd=256, n_layer=4, n_head=4,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2LMHeadModel(cfg)
    model.train()
    numel = sum(p.numel() for p in model.parameters())
    if n > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, bucket_cap_mb=25)
    decay, no_decay = [], []
    for mn, m in model.named_modules():
        for pn, p in m.named_parameters(recurse=False):
            (no_decay if pn == "bias" or "LayerNorm" in type(m).__name__ else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=5e-4, betas=(0.9, 0.95), eps=1e-8)
    torch.manual_seed(1 + rank)
    ids = torch.randint(0, 8192, (B, T))
    times = []
    for step in range(warmup + steps):
        if n > 1:
            dist.barrier()
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
    med = times[(len(times) - 1) // 2]
    ar = 0.0
    if n > 1:
        buf = torch.ones(numel)
        ts = []
        for i in range(6):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(buf)
            buf /= n
            if i > 0:
                ts.append(time.perf_counter() - t0)
        ts.sort()
        ar = ts[(len(ts) - 1) // 2]
    if rank == 0:
        print(f"torch ranks {n} batch {B}: median step {med*1e3:.1f} ms, all-reduce of {numel*4/2**20:.1f} MB alone "
              f"{ar*1e3:.1f} ms (torch {torch.__version__}, gloo)", flush=True)
    if n > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    B = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    warmup = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    if n == 1:
        run(0, 1, B, steps, warmup)
    else:
        mp.spawn(run, args=(n, B, steps, warmup), nprocs=n)

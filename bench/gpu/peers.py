"""The peers of bench/gpu/run.sh, each timed as tide's side (bench/gpu/train_step.lua)
times itself: GPT-2 training steps (forward and loss under bf16 autocast,
backward, clip_grad_norm 1.0, fused AdamW), one step at a time between
synchronizations, the median step of the timed ones.

  --impl=hf       transformers' GPT2LMHeadModel, eager, attn_implementation='sdpa'
  --impl=nanogpt  a nanoGPT-style GPT-2 written here (Linear layers, tied lm_head,
                  F.scaled_dot_product_attention with the flash kernel) under
                  torch.compile (--no-compile: eager)
  --impl=llmc     llm.c's train_gpt2cu (--llmc_bin=, --llmc_data=): runs it and
                  reads its per-step lines; needs no torch

Other options: --B=16,32 (several sizes: one result each) --T=1024 --steps=20
--warmup=5 --budget_s=30 --device=cuda|cpu --precision=bf16|fp32
--model=gpt2|tiny --peak_tflops=989 (MFU; none: not printed).
Prints a line and a `RESULT {json}` line per size for bench/gpu/report.py.
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--impl', required=True, choices=['hf', 'nanogpt', 'llmc'])
    p.add_argument('--B', default='16', help='micro-batch sizes, comma-separated')
    p.add_argument('--T', type=int, default=1024)
    p.add_argument('--steps', type=int, default=20)
    p.add_argument('--warmup', type=int, default=5)
    p.add_argument('--budget_s', type=float, default=30.0)
    p.add_argument('--device', default='cuda', choices=['cuda', 'cpu'])
    p.add_argument('--precision', default=None, choices=['bf16', 'fp32'])
    p.add_argument('--model', default='gpt2', choices=['gpt2', 'tiny'])
    p.add_argument('--vocab', type=int, default=None, help='tiny model only (default 512)')
    p.add_argument('--compile', action=argparse.BooleanOptionalAction, default=True)
    p.add_argument('--peak_tflops', type=float, default=None)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--llmc_bin', default='.llmc/train_gpt2cu')
    p.add_argument('--llmc_data', default=None, help='pattern of llm.c token shards')
    p.add_argument('--llmc_name', default='llmc')
    a = p.parse_args()
    a.B = [int(b) for b in a.B.split(',')]
    if a.precision is None:
        a.precision = 'bf16' if a.device == 'cuda' else 'fp32'
    return a


def config(a):
    """GPT-2 124M (the released 'gpt2') or the dry run's tiny model; dropout off."""
    if a.model == 'gpt2':
        return dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12)
    return dict(vocab_size=a.vocab or 512, n_positions=max(a.T, 64), n_embd=64, n_layer=2, n_head=4)


def n_params(c):
    """Distinct parameters, lm_head tied to wte (the count tide.gpt2.num_parameters gives)."""
    C, L = c['n_embd'], c['n_layer']
    block = 2 * 2 * C + (C * 3 * C + 3 * C) + (C * C + C) + (C * 4 * C + 4 * C) + (4 * C * C + C)
    return c['vocab_size'] * C + c['n_positions'] * C + L * block + 2 * C


def flops_per_token(c, T):
    # 6N + 12 L C T: every weight forward and backward, plus attention's products
    return 6 * n_params(c) + 12 * c['n_layer'] * c['n_embd'] * T


def emit(a, result):
    c = config(a)
    result.setdefault('model', a.model)
    result.setdefault('T', a.T)
    result.setdefault('precision', a.precision)
    result.setdefault('device', a.device)
    if 'error' not in result:
        fpt = flops_per_token(c, a.T)
        result['n_params'] = n_params(c)
        result['flops_per_token'] = fpt
        result['mfu'] = result['tokens_per_s'] * fpt / (a.peak_tflops * 1e12) if a.peak_tflops else None
        mem = ''
        if result.get('peak_alloc_mb') is not None:
            mem = ', peak %.0f MiB allocated' % result['peak_alloc_mb']
            if result.get('peak_reserved_mb') is not None:
                mem += ' (%.0f MiB reserved)' % result['peak_reserved_mb']
        print('%-8s B=%d T=%d %s %s: median step %.2f ms (min %.2f, max %.2f, %d steps), %.0f tokens/s%s%s; loss %.4f -> %.4f'
              % (result['side'], result['B'], a.T, a.precision, a.device, result['step_ms_median'],
                 result['step_ms_min'], result['step_ms_max'], result['steps'], result['tokens_per_s'],
                 ', MFU %.1f%%' % (100 * result['mfu']) if result['mfu'] is not None else '', mem,
                 result['loss_first'], result['loss_last']))
    print('RESULT ' + json.dumps(result, sort_keys=True), flush=True)


def summarize(times):
    s = sorted(times)
    n = len(s)
    median = s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
    return median, s[0], s[-1]


# --- PyTorch -----------------------------------------------------------------

def torch_models():
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Attention(nn.Module):
        def __init__(self, C, H):
            super().__init__()
            self.H = H
            self.c_attn = nn.Linear(C, 3 * C)
            self.c_proj = nn.Linear(C, C)

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = self.c_attn(x).split(C, dim=2)
            # [B, T, C] -> [B, H, T, D]
            q, k, v = (t.view(B, T, self.H, C // self.H).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))

    class MLP(nn.Module):
        def __init__(self, C):
            super().__init__()
            self.c_fc = nn.Linear(C, 4 * C)
            self.c_proj = nn.Linear(4 * C, C)

        def forward(self, x):
            return self.c_proj(F.gelu(self.c_fc(x), approximate='tanh'))

    class Block(nn.Module):
        def __init__(self, C, H):
            super().__init__()
            self.ln_1 = nn.LayerNorm(C)
            self.attn = Attention(C, H)
            self.ln_2 = nn.LayerNorm(C)
            self.mlp = MLP(C)

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(nn.Module):
        """GPT-2 from its architecture: pre-norm blocks, learned positions, tanh GELU,
        the output projection tied to the token embedding; GPT-2's initialization
        (normal 0.02, residual projections scaled by 1/sqrt(2 L))."""

        def __init__(self, vocab_size, n_positions, n_embd, n_layer, n_head):
            super().__init__()
            self.wte = nn.Embedding(vocab_size, n_embd)
            self.wpe = nn.Embedding(n_positions, n_embd)
            self.h = nn.ModuleList(Block(n_embd, n_head) for _ in range(n_layer))
            self.ln_f = nn.LayerNorm(n_embd)
            self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
            self.lm_head.weight = self.wte.weight
            for name, prm in self.named_parameters():
                if name.endswith('bias'):
                    nn.init.zeros_(prm)
                elif name.endswith('c_proj.weight'):
                    nn.init.normal_(prm, 0.0, 0.02 / math.sqrt(2 * n_layer))
                elif prm.dim() == 2:
                    nn.init.normal_(prm, 0.0, 0.02)

        def forward(self, idx, targets):
            T = idx.size(1)
            x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
            for block in self.h:
                x = block(x)
            logits = self.lm_head(self.ln_f(x))
            return F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1))

    return GPT


def decay_groups(model):
    # weight decay on matrices only, as tide.optim.grouped_params and nanoGPT
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return [{'params': decay, 'weight_decay': 0.1}, {'params': no_decay, 'weight_decay': 0.0}]


def run_torch(a):
    import contextlib
    import torch
    dev = torch.device(a.device)
    torch.manual_seed(a.seed)
    # the strongest settings for f32 work that autocast leaves (nanoGPT sets these)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    c = config(a)
    name = a.impl if a.impl == 'hf' else ('nanogpt_compiled' if a.compile else 'nanogpt_eager')
    if a.impl == 'hf':
        from transformers import GPT2Config, GPT2LMHeadModel
        cfg = GPT2Config(vocab_size=c['vocab_size'], n_positions=c['n_positions'], n_embd=c['n_embd'],
                         n_layer=c['n_layer'], n_head=c['n_head'], resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                         bos_token_id=c['vocab_size'] - 1, eos_token_id=c['vocab_size'] - 1,
                         attn_implementation='sdpa')
        model = GPT2LMHeadModel(cfg).to(dev)
        attn = model.config._attn_implementation
        if attn != 'sdpa':
            raise SystemExit('peers.py: transformers chose attention %r, not sdpa' % attn)
        name = 'hf_sdpa_eager'
        loss_fn = lambda x, y, full: model(input_ids=full[:, :-1], labels=full[:, :-1]).loss  # noqa: E731
    else:
        model = torch_models()(**c).to(dev)
        fwd = torch.compile(model, dynamic=False) if a.compile else model
        loss_fn = lambda x, y, full: fwd(x, y)  # noqa: E731
    model.train()
    params = list(model.parameters())
    try:
        opt = torch.optim.AdamW(decay_groups(model), lr=6e-4, betas=(0.9, 0.95), eps=1e-8, fused=True)
    except (RuntimeError, TypeError) as e:  # an old torch without fused AdamW on this device
        print('peers.py: fused AdamW unavailable on %s (%s); using foreach' % (a.device, e), file=sys.stderr)
        opt = torch.optim.AdamW(decay_groups(model), lr=6e-4, betas=(0.9, 0.95), eps=1e-8, foreach=True)
    autocast = (lambda: torch.autocast(device_type=a.device, dtype=torch.bfloat16)) if a.precision == 'bf16' \
        else contextlib.nullcontext
    # nanoGPT: flash attention by name, the strongest PyTorch attention for bf16 causal
    # GPT-2 (f32 on CUDA, as in an fp32 run, cannot take it: flash takes only half
    # types there). transformers: PyTorch's own choice, as its users get it (flash
    # takes no explicit mask, and whether transformers passes one is its business)
    from torch.nn.attention import SDPBackend, sdpa_kernel
    if a.impl == 'nanogpt' and (a.precision == 'bf16' or a.device == 'cpu'):
        attention, sdpa = (lambda: sdpa_kernel([SDPBackend.FLASH_ATTENTION])), 'flash'
    else:
        attention, sdpa = contextlib.nullcontext, 'auto'
    sync = torch.cuda.synchronize if a.device == 'cuda' else (lambda: None)

    def step(x, y, full):
        opt.zero_grad(set_to_none=True)
        with autocast(), attention():
            loss = loss_fn(x, y, full)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return loss

    status = 0
    for B in a.B:
        try:
            g = torch.Generator(device='cpu').manual_seed(a.seed)
            # one batch of uniform random ids, reused every step (the loss falls as it is learnt);
            # x predicts y = x shifted by one; hf shifts inside, so it gets the T ids of x's span
            full = torch.randint(0, c['vocab_size'], (B, a.T + 1), generator=g).to(dev)
            x, y = full[:, :-1].contiguous(), full[:, 1:].contiguous()
            if a.device == 'cuda':
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            first = None
            for i in range(a.warmup):
                loss = step(x, y, full)
                if i == 0:
                    first = loss.item()
            sync()
            warmup_s = time.perf_counter() - t0
            times = []
            t_timed = time.perf_counter()
            for i in range(a.steps):
                t1 = time.perf_counter()
                loss = step(x, y, full)
                sync()
                times.append(time.perf_counter() - t1)
                if first is None:
                    first = loss.item()
                if i >= 2 and time.perf_counter() - t_timed > a.budget_s:
                    break
            last = loss.item()
            if not math.isfinite(last):
                raise RuntimeError('the loss is not finite: %r' % last)
            med, lo, hi = summarize(times)
            r = dict(side=name, impl=a.impl, B=B, steps=len(times), warmup=a.warmup, warmup_s=warmup_s,
                     step_ms_median=med * 1e3, step_ms_min=lo * 1e3, step_ms_max=hi * 1e3,
                     tokens_per_s=B * a.T / med, loss_first=first, loss_last=last,
                     torch=torch.__version__, sdpa=sdpa, vocab=c['vocab_size'])
            if a.impl == 'hf':
                import transformers
                r['transformers'] = transformers.__version__
            if a.device == 'cuda':
                r['peak_alloc_mb'] = torch.cuda.max_memory_allocated() / 2**20
                r['peak_reserved_mb'] = torch.cuda.max_memory_reserved() / 2**20
            emit(a, r)
        except Exception as e:  # one size failing (out of memory, say) leaves the others
            status = 1
            print('%s B=%d failed: %s: %s' % (name, B, type(e).__name__, e), file=sys.stderr)
            emit(a, dict(side=name, impl=a.impl, B=B, error=('%s: %s' % (type(e).__name__, e))[:300]))
    return status


# --- llm.c ---------------------------------------------------------------------

STEP_RE = re.compile(r'^step\s+(\d+)/(\d+) \| loss ([-\d.naif]+) .*\| ([\d.]+) ms \|')
MEM_RE = re.compile(r'device memory usage: (\d+) MiB')


def run_llmc(a):
    """train_gpt2cu from random init (-e d12) on the shards; llm.c times each step
    between two CUDA events around forward, backward, norm and update, and
    synchronizes after it; its first step (cuBLAS set-up) and the warm-up steps
    are left out. Its tokens/s is B*T over our median of its step times."""
    if not os.path.exists(a.llmc_bin):
        emit(a, dict(side=a.llmc_name, impl='llmc', B=a.B[0], error='no llm.c binary at %s' % a.llmc_bin))
        return 1
    status = 0
    for B in a.B:
        n = a.warmup + a.steps
        cmd = [os.path.abspath(a.llmc_bin), '-i', a.llmc_data, '-j', a.llmc_data, '-e', 'd12', '-b', str(B),
               '-t', str(a.T), '-x', str(n), '-v', '100000', '-m', '1', '-s', '0', '-l', '6e-4', '-c', '0.1']
        # (-v: validation only at the first and last step, on one batch (-m 1); -s 0: no
        # sampling; no -o: no logs or checkpoints; grad clipping at 1.0 is built in)
        t0 = time.perf_counter()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.budget_s,
                               cwd=os.path.dirname(os.path.abspath(a.llmc_bin)))
            out = p.stdout + p.stderr
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or b'').decode() if isinstance(e.stdout, bytes) else (e.stdout or '')
            p = None
        # llm.c's own output, beside (not in) the log of bench/gpu/run.sh's part
        with open(os.path.join(os.environ.get('BENCH_OUT', '.'), '%s_B%d.out' % (a.llmc_name, B)), 'w') as f:
            f.write(' '.join(cmd) + '\n' + out)
        steps, mem = [], None
        for line in out.splitlines():
            m = STEP_RE.match(line.strip())
            if m:
                steps.append((int(m.group(1)), float(m.group(3)), float(m.group(4))))
            m = MEM_RE.search(line)
            if m:
                mem = float(m.group(1))
        timed = [s for s in steps if s[0] > a.warmup]
        if p is None or p.returncode != 0 or not timed:
            status = 1
            tail = ' | '.join(out.strip().splitlines()[-3:])
            why = 'timed out' if p is None else 'exit %d' % p.returncode
            print('%s B=%d failed (%s, %d step lines); the end of its output:\n%s' % (
                a.llmc_name, B, why, len(steps), '\n'.join(out.strip().splitlines()[-8:])), file=sys.stderr)
            emit(a, dict(side=a.llmc_name, impl='llmc', B=B, error=('%s, %d step lines: %s' % (why, len(steps), tail))[:300]))
            continue
        med, lo, hi = summarize([s[2] / 1e3 for s in timed])
        r = dict(side=a.llmc_name, impl='llmc', B=B, steps=len(timed), warmup=a.warmup,
                 warmup_s=sum(s[2] for s in steps if s[0] <= a.warmup) / 1e3,
                 step_ms_median=med * 1e3, step_ms_min=lo * 1e3, step_ms_max=hi * 1e3,
                 tokens_per_s=B * a.T / med, loss_first=steps[0][1], loss_last=steps[-1][1],
                 peak_alloc_mb=None, device_mem_in_use_mb=mem, wall_s=time.perf_counter() - t0)
        emit(a, r)
    return status


def main():
    a = parse_args()
    if a.impl == 'llmc':
        if not a.llmc_data:
            raise SystemExit('peers.py: --impl=llmc needs --llmc_data=PATTERN (llm.c token shards)')
        return run_llmc(a)
    return run_torch(a)


if __name__ == '__main__':
    sys.exit(main())

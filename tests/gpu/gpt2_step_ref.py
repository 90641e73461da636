"""PyTorch's side of tests/gpu/gpt2_step.lua: one GPT-2 training step with
transformers on the weights and batch tide wrote, printed as one line
`REF {json}`: the loss, each parameter's gradient norm, the total gradient norm
(clip_grad_norm_ at 1.0, before clipping), and the loss on the same batch after
one fused AdamW step (lr 6e-4, betas 0.9/0.95, eps 1e-8, weight decay 0.1 on
matrices and embeddings, none on biases and layer norms: tide's grouped_params).

  python tests/gpu/gpt2_step_ref.py DIR [--device=cuda|cpu] [--precision=bf16|fp32]

DIR holds config.json and model.safetensors (tide's save_pretrained) and
batch.json ({"ids": [[...], ...]}). Exits 3 with a `skipped:` line when torch
or transformers is missing.
"""
import argparse
import contextlib
import json
import os
import sys


def main():
    p = argparse.ArgumentParser()
    p.add_argument('dir')
    p.add_argument('--device', default='cuda', choices=['cuda', 'cpu'])
    p.add_argument('--precision', default='bf16', choices=['bf16', 'fp32'])
    a = p.parse_args()
    try:
        import torch
        from transformers import GPT2LMHeadModel
    except ImportError as e:
        print('skipped: %s' % e)
        return 3
    if a.device == 'cuda' and not torch.cuda.is_available():
        print('skipped: torch sees no GPU')
        return 3
    torch.backends.cuda.matmul.allow_tf32 = False  # f32 products exact, as tide's default
    dev = torch.device(a.device)
    model = GPT2LMHeadModel.from_pretrained(a.dir, attn_implementation='sdpa').float().to(dev)
    model.train()  # dropout is 0 in the saved config
    with open(os.path.join(a.dir, 'batch.json')) as f:
        ids = torch.tensor(json.load(f)['ids'], dtype=torch.long, device=dev)
    params = [p for p in model.parameters()]
    groups = [{'params': [p for p in params if p.dim() >= 2], 'weight_decay': 0.1},
              {'params': [p for p in params if p.dim() < 2], 'weight_decay': 0.0}]
    opt = torch.optim.AdamW(groups, lr=6e-4, betas=(0.9, 0.95), eps=1e-8, fused=True)
    autocast = (lambda: torch.autocast(device_type=a.device, dtype=torch.bfloat16)) if a.precision == 'bf16' \
        else contextlib.nullcontext
    opt.zero_grad(set_to_none=True)
    with autocast():
        loss0 = model(input_ids=ids, labels=ids).loss
    loss0.backward()
    norms = {n: p.grad.float().norm().item() for n, p in model.named_parameters() if p.grad is not None}
    total = torch.nn.utils.clip_grad_norm_(params, 1.0).item()
    opt.step()
    with torch.no_grad(), autocast():
        loss1 = model(input_ids=ids, labels=ids).loss
    print('REF ' + json.dumps(dict(loss0=loss0.item(), loss1=loss1.item(), grad_norm=total, grad_norms=norms,
                                   torch=torch.__version__, device=a.device, precision=a.precision)))
    return 0


if __name__ == '__main__':
    sys.exit(main())

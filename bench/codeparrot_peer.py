# PyTorch eager peer of bench/codeparrot.lua: the Hugging Face course's
# training loop (its keytoken_weighted_loss, AdamW with decay groups, a cosine
# schedule, clip_grad_norm_ at 1.0; on one CPU process Accelerate's prepare
# and backward reduce to these calls) on the same GPT-2 shape, the same
# batches, the same tokenizer and the same thread count.
#   python bench/codeparrot_peer.py RUN BATCHES.safetensors THREADS [STEPS] [WARMUP]
import sys, time

import torch
from torch.nn import CrossEntropyLoss
from safetensors.torch import load_file
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast, get_scheduler

run, batches_path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
steps = int(sys.argv[4]) if len(sys.argv) > 4 else 16
warmup = int(sys.argv[5]) if len(sys.argv) > 5 else 2
torch.set_num_threads(threads)


# the course's function, as printed in the chapter
def keytoken_weighted_loss(inputs, logits, keytoken_ids, alpha=1.0):
    # Shift so that tokens < n predict n
    shift_labels = inputs[..., 1:].contiguous()
    shift_logits = logits[..., :-1, :].contiguous()
    # Calculate per-token loss
    loss_fct = CrossEntropyLoss(reduction="none")
    loss = loss_fct(shift_logits.view(-1, shift_logits.size(-1)), shift_labels.view(-1))
    # Resize and average loss per sample
    loss_per_sample = loss.view(shift_logits.size(0), shift_logits.size(1)).mean(axis=1)
    # Calculate and scale weighting
    weights = torch.stack([(inputs == kt).float() for kt in keytoken_ids]).sum(
        axis=[0, 2]
    )
    weights = alpha * (1.0 + weights)
    # Calculate weighted average
    weighted_loss = (loss_per_sample * weights).mean()
    return weighted_loss


def get_grouped_params(model, weight_decay=0.1, no_decay=["bias", "ln_"]):
    params_with_wd, params_without_wd = [], []
    for n, p in model.named_parameters():
        if any(nd in n for nd in no_decay):
            params_without_wd.append(p)
        else:
            params_with_wd.append(p)
    return [{"params": params_with_wd, "weight_decay": weight_decay},
            {"params": params_without_wd, "weight_decay": 0.0}]


tok = PreTrainedTokenizerFast(tokenizer_file=f"{run}/tokenizer/tokenizer.json")
keytoken_ids = [tok([w]).input_ids[0][0] for w in [" plt", " pd", " sk", " fit", " predict"]]
batches = load_file(batches_path)["input_ids"]
T = batches.shape[2]
torch.manual_seed(0)
config = GPT2Config(vocab_size=len(tok), n_positions=T, n_embd=128, n_layer=4, n_head=4,
                    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
model = GPT2LMHeadModel(config)
model.train()
optimizer = torch.optim.AdamW(get_grouped_params(model), lr=2e-3, betas=(0.9, 0.95), eps=1e-8)
lr_scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=2, num_training_steps=warmup + steps)
times = {"keytoken": [], "plain": []}
for step in range(1, warmup + steps + 1):
    kind = "keytoken" if step % 2 == 1 else "plain"
    x = batches[(step - 1) % batches.shape[0]]
    t0 = time.perf_counter()
    if kind == "plain":
        loss = model(x, labels=x).loss
    else:
        logits = model(x).logits
        loss = keytoken_weighted_loss(x, logits, keytoken_ids)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    lr_scheduler.step()
    optimizer.zero_grad()
    dt = time.perf_counter() - t0
    if step == 1:
        print(f"first_step_end {time.time():.6f}", flush=True)
    if step > warmup:
        times[kind].append(dt)


def median(t):
    t = sorted(t)
    return t[(len(t) - 1) // 2]


# the two losses alone, forward and backward from the same logits, alternating
x = batches[0]
with torch.no_grad():
    base = model(x).logits
loss_t = {"keytoken": [], "plain": []}
for rep in range(1, 21):
    kind = "keytoken" if rep % 2 == 1 else "plain"
    logits = base.clone().requires_grad_(True)
    t0 = time.perf_counter()
    if kind == "plain":
        V = logits.size(-1)
        loss = CrossEntropyLoss()(logits[:, :-1, :].reshape(-1, V), x[:, 1:].reshape(-1))
    else:
        loss = keytoken_weighted_loss(x, logits, keytoken_ids)
    loss.backward()
    loss_t[kind].append(time.perf_counter() - t0)
print(f"torch loss alone (forward + backward from logits): keytoken {median(loss_t['keytoken'])*1e3:.2f} ms"
      f"  plain {median(loss_t['plain'])*1e3:.2f} ms")

mk, mp = median(times["keytoken"]), median(times["plain"])
B = batches.shape[1]
print(f"torch keytoken step {mk*1e3:.1f} ms  {B*T/mk:.0f} tokens/s  plain step {mp*1e3:.1f} ms  {B*T/mp:.0f} tokens/s"
      f"  keytoken/plain {mk/mp:.3f}  threads {torch.get_num_threads()}  (torch {torch.__version__})")

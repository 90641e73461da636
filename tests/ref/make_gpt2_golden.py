#!/usr/bin/env python3
"""Make the GPT-2 golden files that tide's tests compare against.

Uses torch and transformers from PyPI (versions pinned in requirements.txt),
CPU only, single thread, deterministic algorithms. See README.md beside this
file for what each output holds and when to regenerate.

    python make_gpt2_golden.py            # regenerate into a temp dir, compare
                                          # with the committed files (exit 1 if
                                          # any byte differs); writes nothing
    python make_gpt2_golden.py --write    # replace tests/ref/gpt2_tiny/
"""

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import warnings

import torch
import transformers
import safetensors
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import GPT2Config, GPT2LMHeadModel

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN_DIR = os.path.join(HERE, "gpt2_tiny")

MODEL_SEED = 1234  # torch.manual_seed before GPT2LMHeadModel(config)
DATA_SEED = 5678   # private torch.Generator for the token ids

# Fields given explicitly; every other GPT2Config field keeps its default and
# is written by save_pretrained into model/config.json. bos/eos are set to the
# last id (GPT-2's <|endoftext|> convention) because the default 50256 lies
# outside a 512-token vocabulary and transformers warns about it.
TINY_CONFIG = dict(
    vocab_size=512,
    n_positions=32,
    n_embd=64,
    n_layer=2,
    n_head=4,
    resid_pdrop=0.0,
    embd_pdrop=0.0,
    attn_pdrop=0.0,
    layer_norm_epsilon=1e-5,
    initializer_range=0.02,
    activation_function="gelu_new",
    bos_token_id=511,
    eos_token_id=511,
)
B, T = 2, 16

# Keytoken-weighted loss (Hugging Face course, "Training a causal language
# model from scratch"): the ids are arbitrary small ids planted in batch 1.
KEYTOKEN_IDS = [5, 17, 42]
KEYTOKEN_ALPHA = 1.0

# Training run: the seeds' optimiser settings on a fixed batch.
TRAIN = dict(
    steps=5,
    lr=5e-4,
    betas=[0.9, 0.95],
    eps=1e-8,
    weight_decay=0.1,
    max_grad_norm=1.0,
    scheduler="cosine",
    num_warmup_steps=2,
    num_training_steps=5,
)

# Named configurations as transformers' hub config.json files define them
# (all: vocab_size 50257, n_positions 1024, other fields GPT2Config defaults).
NAMED_CONFIGS = {
    "gpt2": dict(n_embd=768, n_layer=12, n_head=12),
    "gpt2-medium": dict(n_embd=1024, n_layer=24, n_head=16),
    "gpt2-large": dict(n_embd=1280, n_layer=36, n_head=20),
    "gpt2-xl": dict(n_embd=1600, n_layer=48, n_head=25),
    "distilgpt2": dict(n_embd=768, n_layer=6, n_head=12),
}


def setup_determinism():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.set_default_dtype(torch.float32)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


NOTES = {}  # file name -> what it holds; written to manifest.json


def save_st(path, tensors, note):
    # Only one metadata key: safetensors serialises the metadata map in hash
    # order, so two keys would make the bytes differ from run to run.
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    save_file(tensors, path, metadata={"format": "pt"})
    NOTES[os.path.basename(path)] = note


def rel_err(a, b):
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30))


def load_model(model_dir, attn="eager"):
    m = GPT2LMHeadModel.from_pretrained(model_dir, attn_implementation=attn)
    m.float()
    return m


def grads_by_name(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def keytoken_weighted_loss(inputs, logits, keytoken_ids, alpha=1.0):
    """The course's PyTorch code, unchanged except reduce=False is spelled
    reduction='none' (what torch maps the legacy flag to)."""
    shift_labels = inputs[..., 1:].contiguous()
    shift_logits = logits[..., :-1, :].contiguous()
    loss_fct = torch.nn.CrossEntropyLoss(reduction="none")
    loss = loss_fct(shift_logits.view(-1, shift_logits.size(-1)), shift_labels.view(-1))
    loss_per_sample = loss.view(shift_logits.size(0), shift_logits.size(1)).mean(axis=1)
    # Counts over the whole (unshifted) input, position 0 included.
    weights = torch.stack([(inputs == kt).float() for kt in keytoken_ids]).sum(axis=[0, 2])
    weights = alpha * (1.0 + weights)
    weighted_loss = (loss_per_sample * weights).mean()
    return weighted_loss, loss_per_sample, weights


def make_inputs():
    g = torch.Generator().manual_seed(DATA_SEED)
    ids = torch.randint(0, TINY_CONFIG["vocab_size"], (B, T), generator=g, dtype=torch.int64)
    ids2 = torch.randint(0, TINY_CONFIG["vocab_size"], (B, T), generator=g, dtype=torch.int64)
    # Plant keytokens so the two samples get different weights: sample 0 has
    # 17 at position 0 (counted, though never a label), 5 twice and 42 once;
    # sample 1 has one 42 at the last position. Random ids are drawn from
    # [64, 512) elsewhere so no other keytoken appears by chance.
    ids = 64 + (ids % (TINY_CONFIG["vocab_size"] - 64))
    ids[0, 0] = 17
    ids[0, 3] = 5
    ids[0, 9] = 5
    ids[0, 12] = 42
    ids[1, T - 1] = 42
    # Batch 2 labels exercise ignore_index=-100: a run of ignored labels in
    # sample 0, and in sample 1 the first label (never used after the shift)
    # and the last one.
    labels2 = ids2.clone()
    labels2[0, 5:9] = -100
    labels2[1, 0] = -100
    labels2[1, T - 1] = -100
    return ids, ids2, labels2


def grouped_params(model, weight_decay):
    """Decay: Conv1D weights and the embeddings. No decay: every bias and
    every LayerNorm weight, chosen by module type rather than by name."""
    no_decay = set()
    for mname, mod in model.named_modules():
        for pname, _ in mod.named_parameters(recurse=False):
            full = f"{mname}.{pname}" if mname else pname
            if pname == "bias" or isinstance(mod, torch.nn.LayerNorm):
                no_decay.add(full)
    decay_names, no_decay_names, decay, nodecay = [], [], [], []
    for n, p in model.named_parameters():
        if n in no_decay:
            no_decay_names.append(n)
            nodecay.append(p)
        else:
            decay_names.append(n)
            decay.append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": nodecay, "weight_decay": 0.0},
    ]
    return groups, decay_names, no_decay_names


def seeds_grouping(model, no_decay=("bias", "LayerNorm.weight")):
    """The course's name-based grouping, recorded to show what it misses."""
    wd, nowd = [], []
    for n, _ in model.named_parameters():
        (nowd if any(nd in n for nd in no_decay) else wd).append(n)
    return wd, nowd


def count_params(cfg_kwargs):
    cfg = GPT2Config(**cfg_kwargs)
    with torch.device("meta"):
        m = GPT2LMHeadModel(cfg)
    total = sum(p.numel() for p in m.parameters())  # tied lm_head counted once
    emb = m.transformer.wte.weight.numel() + m.transformer.wpe.weight.numel()
    assert total == m.num_parameters()
    assert total - emb == m.num_parameters(exclude_embeddings=True)
    return {
        "total": total,
        "total_millions": round(total / 1e6, 1),
        "non_embedding": total - emb,
        "wte": m.transformer.wte.weight.numel(),
        "wpe": m.transformer.wpe.weight.numel(),
        "untied_total": total + m.lm_head.weight.numel(),
    }


def check_facts(model_dir, ids, tmp):
    """Assert what docs/dev/gpt2-facts.md states, so a version bump that
    changes behaviour fails loudly instead of silently changing goldens."""
    facts = []

    # 1. Init order: replay the RNG draws and compare bit for bit.
    torch.manual_seed(MODEL_SEED)
    m = GPT2LMHeadModel(GPT2Config(**TINY_CONFIG))
    torch.manual_seed(MODEL_SEED)
    V, P, C, L = (TINY_CONFIG[k] for k in ("vocab_size", "n_positions", "n_embd", "n_layer"))
    wte, wpe = torch.empty(V, C).normal_(0, 1), torch.empty(P, C).normal_(0, 1)
    blk = [[torch.empty(C, 3 * C).normal_(0, 0.02), torch.empty(C, C).normal_(0, 0.02),
            torch.empty(C, 4 * C).normal_(0, 0.02), torch.empty(4 * C, C).normal_(0, 0.02)]
           for _ in range(L)]
    wte.normal_(0, 0.02)
    wpe.normal_(0, 0.02)
    std_proj = 0.02 / math.sqrt(2 * L)
    for a, ap, f, fp in blk:
        a.normal_(0, 0.02)
        ap.normal_(0, 0.02)
        ap.normal_(0, std_proj)
        f.normal_(0, 0.02)
        fp.normal_(0, 0.02)
        fp.normal_(0, std_proj)
    sd = dict(m.named_parameters())
    assert torch.equal(sd["transformer.wte.weight"], wte)
    assert torch.equal(sd["transformer.wpe.weight"], wpe)
    for i, (a, ap, f, fp) in enumerate(blk):
        assert torch.equal(sd[f"transformer.h.{i}.attn.c_attn.weight"], a)
        assert torch.equal(sd[f"transformer.h.{i}.attn.c_proj.weight"], ap)
        assert torch.equal(sd[f"transformer.h.{i}.mlp.c_fc.weight"], f)
        assert torch.equal(sd[f"transformer.h.{i}.mlp.c_proj.weight"], fp)
    facts.append("init RNG order replayed bit-exactly")

    # 2. Tied weights: one Parameter, listed once, lm_head absent from names.
    names = [n for n, _ in m.named_parameters()]
    assert m.lm_head.weight is m.transformer.wte.weight
    assert "lm_head.weight" not in names and "lm_head.weight" in m.state_dict()
    assert not list(m.named_buffers())
    facts.append("lm_head.weight is transformer.wte.weight; named_parameters lists it once")

    # 3. Saved file: prefixed names, no lm_head.weight, no attention buffers.
    with safe_open(os.path.join(model_dir, "model.safetensors"), "pt") as f:
        keys = sorted(f.keys())
        meta = f.metadata()
    assert keys == sorted(names), keys
    assert meta == {"format": "pt"}, meta
    facts.append("model.safetensors keys == named_parameters names; metadata {'format': 'pt'}")

    # 4. eager vs sdpa attention agree.
    me, ms = load_model(model_dir, "eager"), load_model(model_dir, "sdpa")
    with torch.no_grad():
        le, ls = me(ids).logits, ms(ids).logits
    assert rel_err(ls, le) < 1e-6, rel_err(ls, le)
    facts.append(f"sdpa vs eager logits rel err {rel_err(ls, le):.2e}")

    # 5. The model's loss is the plain shifted mean cross-entropy.
    with torch.no_grad():
        out = me(ids, labels=ids)
        manual = torch.nn.functional.cross_entropy(
            out.logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))
    assert abs(float(out.loss) - float(manual)) <= 1e-6 * abs(float(manual))
    facts.append("loss == cross_entropy(logits[:, :-1], ids[:, 1:])")

    # 6. from_pretrained accepts bare names (no 'transformer.'), ignores
    #    attn.bias / attn.masked_bias, and ties lm_head.weight if present.
    bare_dir = os.path.join(tmp, "bare")
    os.makedirs(bare_dir)
    shutil.copy(os.path.join(model_dir, "config.json"), bare_dir)
    src = load_file(os.path.join(model_dir, "model.safetensors"))
    bare = {k[len("transformer."):]: v for k, v in src.items()}
    for i in range(L):
        bare[f"h.{i}.attn.bias"] = torch.tril(torch.ones(P, P, dtype=torch.bool)).view(1, 1, P, P)
        bare[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    save_file(bare, os.path.join(bare_dir, "model.safetensors"), metadata={"format": "pt"})
    mb = load_model(bare_dir)
    for n, p in mb.named_parameters():
        assert torch.equal(p, src[n]), n
    assert mb.lm_head.weight is mb.transformer.wte.weight
    facts.append("from_pretrained: bare names + attn.bias/masked_bias buffers load unchanged")

    return facts


def generate(out):
    os.makedirs(out)
    model_dir = os.path.join(out, "model")
    tmp = tempfile.mkdtemp(prefix="gpt2golden-")
    try:
        # (a) the model, exactly as save_pretrained writes it
        torch.manual_seed(MODEL_SEED)
        config = GPT2Config(**TINY_CONFIG)
        GPT2LMHeadModel(config).save_pretrained(model_dir, safe_serialization=True)

        # (b) inputs
        ids, ids2, labels2 = make_inputs()
        save_st(os.path.join(out, "inputs.safetensors"),
                {"input_ids": ids, "input_ids_2": ids2, "labels_2": labels2},
                "input_ids: batch 1 (labels = input_ids); input_ids_2 + labels_2: batch 2 "
                "(labels_2 has -100 entries)")

        facts = check_facts(model_dir, ids, tmp)

        # (c) logits, loss and every gradient; batch 2 forward
        model = load_model(model_dir)
        model.train()
        out1 = model(ids, labels=ids)
        out1.loss.backward()
        outputs = {"logits": out1.logits, "loss": out1.loss}
        outputs.update(grads_by_name(model))
        with torch.no_grad():
            out2 = model(ids2, labels=labels2)
        outputs["logits_2"] = out2.logits
        outputs["loss_2"] = out2.loss
        save_st(os.path.join(out, "outputs.safetensors"), outputs,
                "logits/loss: model(input_ids, labels=input_ids); <param name>: d loss / d param; "
                "logits_2/loss_2: model(input_ids_2, labels=labels_2), no grad")

        # gradient accumulation over the two batches, as in the seeds'
        # loop (each loss divided by the number of accumulation steps)
        model.zero_grad(set_to_none=True)
        l1 = model(ids, labels=ids).loss
        (l1 / 2).backward()
        l2 = model(ids2, labels=labels2).loss
        (l2 / 2).backward()
        accum = {"loss_1": l1, "loss_2": l2}
        accum.update(grads_by_name(model))
        save_st(os.path.join(out, "accum.safetensors"), accum,
                "<param name>: .grad after (loss_1/2).backward() then (loss_2/2).backward(); "
                "loss_1 = model(input_ids, labels=input_ids), loss_2 = model(input_ids_2, labels=labels_2)")

        # (d) keytoken-weighted loss and its gradients
        model.zero_grad(set_to_none=True)
        logits = model(ids).logits
        kt_loss, per_sample, weights = keytoken_weighted_loss(ids, logits, KEYTOKEN_IDS, KEYTOKEN_ALPHA)
        kt_loss.backward()
        kt = {"loss": kt_loss, "loss_per_sample": per_sample, "weights": weights,
              "keytoken_ids": torch.tensor(KEYTOKEN_IDS, dtype=torch.int64),
              "alpha": torch.tensor(KEYTOKEN_ALPHA, dtype=torch.float32)}
        kt.update(grads_by_name(model))
        save_st(os.path.join(out, "keytoken.safetensors"), kt,
                "loss: keytoken_weighted_loss(input_ids, model(input_ids).logits, keytoken_ids, alpha); "
                "<param name>: its gradient")

        # (e) five AdamW steps with clipping and a cosine schedule
        model = load_model(model_dir)
        model.train()
        groups, decay_names, no_decay_names = grouped_params(model, TRAIN["weight_decay"])
        opt = torch.optim.AdamW(groups, lr=TRAIN["lr"], betas=tuple(TRAIN["betas"]), eps=TRAIN["eps"])
        sched = transformers.get_scheduler(TRAIN["scheduler"], opt,
                                           num_warmup_steps=TRAIN["num_warmup_steps"],
                                           num_training_steps=TRAIN["num_training_steps"])
        losses, norms, lrs, steps = [], [], [], []
        for step in range(TRAIN["steps"]):
            opt.zero_grad(set_to_none=True)
            loss = model(ids, labels=ids).loss
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), TRAIN["max_grad_norm"])
            lr = sched.get_last_lr()[0]
            assert all(g["lr"] == lr for g in opt.param_groups)
            opt.step()
            sched.step()
            losses.append(float(loss))
            norms.append(float(norm))
            lrs.append(float(lr))
            steps.append({"step": step, "loss_before": float(loss), "grad_norm": float(norm), "lr": float(lr)})
        with torch.no_grad():
            final_loss = float(model(ids, labels=ids).loss)
        train = {"losses": torch.tensor(losses + [final_loss], dtype=torch.float32),
                 "grad_norms": torch.tensor(norms, dtype=torch.float32),
                 "lrs": torch.tensor(lrs, dtype=torch.float64)}
        train.update({n: p for n, p in model.named_parameters()})
        save_st(os.path.join(out, "train.safetensors"), train,
                "losses[k]: loss before step k (k=0..4), losses[5]: after the 5th step; grad_norms[k]: "
                "clip_grad_norm_ return value (pre-clip total norm); lrs[k]: lr used by step k; "
                "<param name>: parameters after 5 steps")
        seeds_wd, seeds_nowd = seeds_grouping(model)
        write_json(os.path.join(out, "train.json"), {
            "batch": "input_ids of inputs.safetensors, labels = input_ids, every step",
            "hyperparameters": TRAIN,
            "adamw": {"amsgrad": False, "maximize": False, "foreach": False, "fused": False,
                      "note": "torch.optim.AdamW defaults on CPU: single-tensor loop"},
            "order_per_step": ["optimizer.zero_grad(set_to_none=True)",
                               "loss = model(input_ids, labels=input_ids).loss", "loss.backward()",
                               "grad_norm = clip_grad_norm_(model.parameters(), 1.0)",
                               "lr = scheduler.get_last_lr()[0]", "optimizer.step()", "scheduler.step()"],
            "param_groups": [
                {"weight_decay": TRAIN["weight_decay"], "params": decay_names},
                {"weight_decay": 0.0, "params": no_decay_names},
            ],
            "seeds_name_based_grouping": {
                "no_decay_list": ["bias", "LayerNorm.weight"],
                "decay": seeds_wd, "no_decay": seeds_nowd,
                "note": "the course's name test never matches ln_1/ln_2/ln_f.weight, so it decays "
                        "LayerNorm weights; the goldens use the module-type grouping above",
            },
            "steps": steps,
            "final_loss": final_loss,
        })

        # (f) named configs and parameter counts
        counts = {}
        for name, arch in NAMED_CONFIGS.items():
            cfg = dict(vocab_size=50257, n_positions=1024, **arch)
            counts[name] = {"config": cfg, "vocab_50257": count_params(cfg)}
        for name in ("gpt2", "gpt2-xl"):
            cfg = dict(counts[name]["config"], vocab_size=32768)
            counts[name]["vocab_32768"] = count_params(cfg)
        counts["tiny"] = {"config": {k: TINY_CONFIG[k] for k in
                                     ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head")},
                          "vocab_512": count_params(TINY_CONFIG)}
        assert counts["gpt2"]["vocab_50257"]["total"] == 124_439_808
        assert counts["gpt2"]["vocab_32768"]["total_millions"] == 111.0
        assert counts["gpt2-xl"]["vocab_32768"]["total_millions"] == 1529.6
        write_json(os.path.join(out, "param_counts.json"), counts)

        # manifest: versions, seeds, settings, and the hash of every file
        files = {}
        for root, _, fnames in os.walk(out):
            for fn in fnames:
                p = os.path.join(root, fn)
                os.chmod(p, 0o644)
                rel = os.path.relpath(p, out)
                files[rel] = {"bytes": os.path.getsize(p), "sha256": sha256(p)}
                if fn in NOTES:
                    files[rel]["holds"] = NOTES[fn]
        write_json(os.path.join(out, "manifest.json"), {
            "generator": "tests/ref/make_gpt2_golden.py",
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                         "safetensors": safetensors.__version__,
                         "python": sys.version.split()[0]},
            "model_seed": MODEL_SEED, "data_seed": DATA_SEED,
            "config_given": TINY_CONFIG,
            "attn_implementation": "eager (sdpa agrees; see facts)",
            "keytoken_ids": KEYTOKEN_IDS, "keytoken_alpha": KEYTOKEN_ALPHA,
            "facts_checked": facts,
            "files": dict(sorted(files.items())),
        })
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def tree_hashes(root):
    res = {}
    for d, _, fnames in os.walk(root):
        for fn in fnames:
            p = os.path.join(d, fn)
            res[os.path.relpath(p, root)] = sha256(p)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true", help="replace the committed golden files")
    ap.add_argument("--out", default=None, help="write into this new directory instead (for inspection)")
    args = ap.parse_args()
    setup_determinism()

    stage = tempfile.mkdtemp(prefix="gpt2golden-out-")
    gen = os.path.join(stage, "gpt2_tiny")
    try:
        generate(gen)
        if args.out:
            shutil.copytree(gen, args.out)
            print(f"wrote {args.out}")
        elif args.write:
            if os.path.exists(GOLDEN_DIR):
                shutil.rmtree(GOLDEN_DIR)
            shutil.copytree(gen, GOLDEN_DIR)
            print(f"wrote {GOLDEN_DIR}")
        else:
            new, old = tree_hashes(gen), tree_hashes(GOLDEN_DIR) if os.path.isdir(GOLDEN_DIR) else {}
            diff = sorted(k for k in set(new) | set(old) if new.get(k) != old.get(k))
            if diff:
                print("differs from the committed goldens:", *diff, sep="\n  ")
                return 1
            print(f"identical to the committed goldens ({len(new)} files)")
        return 0
    finally:
        shutil.rmtree(stage, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

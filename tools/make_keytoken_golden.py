"""Writes tests/ref/keytoken/keytoken.safetensors: the Hugging Face course's
keytoken_weighted_loss (chapter "Training a causal language model from
scratch", the loss recipes/codeparrot.lua trains with) on fixed logits, with
its gradient with respect to the logits. tests/lua/test_keytoken_golden.lua
compares tide.losses.keytoken_weighted_loss against it.

    /tmp/h9model-env/bin/python tools/make_keytoken_golden.py           # compare; exit 1 on a difference
    /tmp/h9model-env/bin/python tools/make_keytoken_golden.py --write   # replace the golden file

Needs torch and safetensors. The cases: keytokens at the first position
(counted though never a label), at the last, several in one sample, none in
another; alpha 1 and 0.5; a keytoken list with a repeat (the course's sum
counts it twice); logits of large magnitude (a stable log-softmax matters).
"""
import os
import sys

import torch
from safetensors.torch import save_file
from torch.nn import CrossEntropyLoss


# The course's function, exactly as the chapter prints it (the line holding
# only ")" that closes .sum( is lost in the seeds' text copy of the page).
def keytoken_weighted_loss(inputs, logits, keytoken_ids, alpha=1.0):
    # Shift so that tokens < n predict n
    shift_labels = inputs[..., 1:].contiguous()
    shift_logits = logits[..., :-1, :].contiguous()
    # Calculate per-token loss
    loss_fct = CrossEntropyLoss(reduce=False)
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


def case(g, B, T, V, keytoken_ids, alpha, plant, scale):
    # ids drawn away from the keytokens, then keytokens planted where given
    lo = max(keytoken_ids) + 1
    inputs = lo + torch.randint(0, V - lo, (B, T), generator=g, dtype=torch.int64)
    for (b, t, kt) in plant:
        inputs[b, t] = kt
    logits = (scale * torch.randn(B, T, V, generator=g, dtype=torch.float32)).requires_grad_(True)
    loss = keytoken_weighted_loss(inputs, logits, keytoken_ids, alpha)
    loss.backward()
    return {"inputs": inputs, "logits": logits.detach(), "keytoken_ids": torch.tensor(keytoken_ids, dtype=torch.int64),
            "alpha": torch.tensor([alpha], dtype=torch.float32), "loss": loss.detach().reshape(1),
            "grad": logits.grad.detach()}


def main():
    write = "--write" in sys.argv[1:]
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref", "keytoken")
    g = torch.Generator().manual_seed(15)
    cases = [
        # sample 0: a keytoken at position 0 and two more; 1: none; 2: one at the last position
        case(g, 3, 9, 11, [2, 5, 7], 1.0, [(0, 0, 5), (0, 3, 2), (0, 6, 5), (2, 8, 7)], 1.0),
        case(g, 3, 9, 11, [2, 5, 7], 0.5, [(0, 0, 5), (1, 4, 7), (1, 5, 7)], 1.0),
        # a repeated keytoken id counts twice, as the course's stack-and-sum does
        case(g, 2, 16, 40, [3, 3, 9], 1.0, [(0, 2, 3), (1, 7, 9), (1, 15, 3)], 1.0),
        # large logits
        case(g, 4, 12, 50, [1, 4], 2.0, [(0, 1, 1), (1, 2, 4), (2, 3, 1), (3, 11, 4)], 30.0),
    ]
    tensors = {}
    for i, c in enumerate(cases, start=1):
        for k, v in c.items():
            tensors[f"case{i}.{k}"] = v.contiguous()
    path = os.path.join(out, "keytoken.safetensors")
    if not write:
        from safetensors.torch import load_file
        old = load_file(path)
        diff = sorted(k for k in set(old) | set(tensors)
                      if k not in old or k not in tensors or not torch.equal(old[k], tensors[k]))
        if diff:
            print(f"{path} differs from what this torch computes: {', '.join(diff)} (--write replaces it)")
            sys.exit(1)
        print(f"{path}: all {len(tensors)} tensors equal")
        return
    os.makedirs(out, exist_ok=True)
    save_file(tensors, path, metadata={
        "made_by": "tools/make_keytoken_golden.py", "torch": torch.__version__,
        "cases": str(len(cases)),
        "what": "caseN.loss = keytoken_weighted_loss(caseN.inputs, caseN.logits, caseN.keytoken_ids, caseN.alpha); "
                "caseN.grad = its gradient with respect to caseN.logits"})
    print(f"wrote {path} ({os.path.getsize(path)} bytes, {len(cases)} cases)")


if __name__ == "__main__":
    main()

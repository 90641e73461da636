#!/usr/bin/env python3
"""Writes the golden TensorBoard event file tide's reader is tested on
(tests/data/tensorboard/), with PyTorch's SummaryWriter.

  python3 tools/make_tensorboard_golden.py [OUT_DIR]   (needs torch and tensorboard)

Run once; the output is committed. It holds the three ways add_scalar writes
a scalar (simple_value by default, a DT_FLOAT tensor with new_style=True, a
DT_DOUBLE tensor with double_precision=True), with fixed wall times, plus a
text and a histogram summary that a scalar reader must skip. expected.json
lists the scalars the file holds: tag, step, value (as stored: float32 unless
double), wall_time.
"""
import glob
import json
import os
import shutil
import struct
import sys
import tempfile

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "data", "tensorboard")
    os.makedirs(out, exist_ok=True)
    tmp = tempfile.mkdtemp()
    w = SummaryWriter(log_dir=tmp)
    expected = []
    t0 = 1700000000.25
    for step in range(5):
        loss = 4.0 - 0.5 * step + 0.01 * step * step
        w.add_scalar("loss/train", loss, step, walltime=t0 + step)
        expected.append({"tag": "loss/train", "step": step, "value": f32(loss), "wall_time": t0 + step})
        lr = 3e-4 * (step + 1) / 5
        w.add_scalar("lr", lr, step, walltime=t0 + step + 0.5, new_style=True)
        expected.append({"tag": "lr", "step": step, "value": f32(lr), "wall_time": t0 + step + 0.5})
    for step, ev in ((2, 3.125), (4, 2.718281828459045)):
        w.add_scalar("loss/eval", ev, step, walltime=t0 + step + 0.75, new_style=True, double_precision=True)
        expected.append({"tag": "loss/eval", "step": step, "value": ev, "wall_time": t0 + step + 0.75})
    # a large step (a multi-byte varint) and a negative value
    w.add_scalar("grad_norm", -1.5, 123456789, walltime=t0 + 10)
    expected.append({"tag": "grad_norm", "step": 123456789, "value": -1.5, "wall_time": t0 + 10})
    w.add_text("notes", "not a scalar", 1, walltime=t0 + 11)
    w.add_histogram("weights", np.arange(8, dtype=np.float32), 1, walltime=t0 + 12)
    w.close()
    files = glob.glob(os.path.join(tmp, "*tfevents*"))
    assert len(files) == 1, files
    shutil.copy(files[0], os.path.join(out, "events.out.tfevents.pytorch"))
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump({"torch": torch.__version__, "file_version": "brain.Event:2", "scalars": expected}, f, indent=1)
        f.write("\n")
    shutil.rmtree(tmp)
    print("wrote", os.path.join(out, "events.out.tfevents.pytorch"))


if __name__ == "__main__":
    main()

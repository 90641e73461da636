#!/usr/bin/env bash
# The bf16 GPT-2 step against PyTorch (tests/gpu/gpt2_step.lua) at a tiny
# size on the emulated GPU, against transformers under bf16 autocast on the
# CPU: the same comparison tests/gpu/run.sh makes at GPT-2 124M on a GPU.
# Needs a Python with torch and transformers; skipped (exit 77) without one.
#   bash tests/gpu/gpt2_step_emu.sh build/tests/tide-cudaemu
set -u
EMU=${1:-./build/tests/tide-cudaemu}
source "$(dirname "$0")/../cli/ref_python.sh"
ref_python 'import torch, transformers, safetensors' "torch, transformers and safetensors"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$EMU" tests/gpu/gpt2_step.lua --model=tiny --B=2 --T=32 --ref_device=cpu --python="$py" --dir="$dir"

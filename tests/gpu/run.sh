#!/usr/bin/env bash
# The GPU checks of the CUDA backend, in one call on a machine with a GPU:
#   bash tests/gpu/run.sh [OUTDIR]
# 1. builds with -DTIDE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 (build-gpu/),
#    keeping every kernel's ptxas report (registers, spills);
# 2. the kernel parity tests compiled by nvcc (gpu_cuda_kernels: each CUDA
#    kernel against the CPU kernel, the tests CI runs under the emulator);
# 3. op parity, gradcheck and 20 GPT-2 training steps through Lua on cuda:0
#    against the CPU (tests/lua/cuda, the files tide-cudaemu runs in CI);
# 4. compute-sanitizer memcheck and racecheck over the kernel tests;
# 5. the caching allocator under a fragmenting workload;
# 6. flash attention against the plain kernels at GPT-2 sizes (T to 1024,
#    B*H 12 and 48, D 64, bf16), with both kernels' times (printed).
#    The fused Linear/Conv1D layers (cuBLASLt's bias, GELU and bias-gradient
#    epilogues) against the unfused ops at GPT-2 124M's four shapes, with
#    both times (tests/gpu/linear_epilogue.lua).
#    The fused residual layer norm at GPT-2 124M's size (rows 16384, C 768,
#    bf16 and f32) against the CPU, with fused and unfused times (printed).
# 7. tide.dist on the GPU: every collective and dtype on CUDA tensors through
#    NCCL in a world of one (libtide_nccl.so), and on 2 processes sharing the
#    GPU, staged through host memory and MPI (skipped where mpirun is absent:
#    add Open MPI's packages to the offline deps, TIDE_EXTRA_DEBS).
# 8. issue 14 (bf16 training): 50 steps of a small GPT-2 in bf16 on CUDA
#    tracking the CPU's f32 losses within 2e-2 (tests/gpu/train_bf16.lua);
#    a bf16 GPT-2 124M step's loss, gradient norms and post-AdamW loss against
#    transformers' on the same weights and batch (tests/gpu/gpt2_step.lua with
#    tests/gpu/gpt2_step_ref.py; python3 or TIDE_REF_PYTHON with torch and
#    transformers); the fused kernels at GPT-2 sizes against the CPU
#    (tests/gpu/fused_kernels.lua; a fused op this build lacks is skipped).
# Prints one line per step and a summary; exits 1 if a step failed. Without a
# GPU it prints `skipped: no GPU` and why, and exits 0.
#
# On a GPU machine without tide's Debian dependencies or PyPI (the lent
# device machines), first, where apt and pip work:
#   ../shared/offline-deps/fetch-deps.sh .devdeps && tests/gpu/fetch-sanitizer.sh
# then there:  source .devdeps/unpack.sh && bash tests/gpu/run.sh "$OUT"
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${1:-${OUT:-/tmp/tide-gpu}}
mkdir -p "$out"
log() { echo "[$(date +%H:%M:%S)] $*"; }

if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "skipped: no GPU (nvidia-smi is not installed: no NVIDIA driver on this machine)"; exit 0
fi
if ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
  echo "skipped: no GPU (nvidia-smi lists none: $(nvidia-smi -L 2>&1 | head -1))"; exit 0
fi
nvidia-smi -L | tee "$out/gpu.txt"
export PATH=/usr/local/cuda/bin:$PATH
jobs=$(nproc)
failed=()
step() {  # step NAME COMMAND...: runs it, logs to $out/NAME.log, records failure
  local name=$1; shift
  local t0=$SECONDS
  if "$@" >"$out/$name.log" 2>&1; then
    if grep -q '^skipped:' "$out/$name.log"; then log "skip  $name: $(grep -m1 '^skipped:' "$out/$name.log")"
    else log "ok    $name ($((SECONDS - t0)) s)"; fi
  else log "FAIL  $name ($((SECONDS - t0)) s): tail of $out/$name.log:"; tail -25 "$out/$name.log"; failed+=("$name"); fi
}

step build bash -c "cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DTIDE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 && cmake --build build-gpu -j $jobs"
if [ ! -x build-gpu/tide ] || [ ! -x build-gpu/tests/gpu_cuda_kernels ]; then
  echo "summary: the build failed; nothing else ran"; exit 1
fi
cat build-gpu/CMakeFiles/tide_engine.dir/kernels/cuda/*.ptxas.txt > "$out/ptxas.txt" 2>/dev/null
grep -h "Used [0-9]* registers" "$out/ptxas.txt" | sort | uniq -c | sort -rn | head -5 > "$out/registers.txt"

export TIDE_CUDA_POISON=1  # every allocation 0xFF, so an op that leaves elements unwritten fails parity
step kernel_parity build-gpu/tests/gpu_cuda_kernels
for f in tests/lua/cuda/test_*.lua; do
  step "lua_$(basename "$f" .lua)" build-gpu/tide test "$f"
done
step cpu_suite_on_gpu_build bash -c "cd build-gpu && ctest -j $jobs -E 'luaemu|cuda_kernels|cudaemu'"

san=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1 || true)
if [ -z "$san" ]; then san=$(ls .devdeps/sanitizer/nvidia/*/compute-sanitizer/compute-sanitizer 2>/dev/null | head -1 || true); fi
if [ -n "$san" ]; then
  step memcheck "$san" --tool memcheck --error-exitcode 1 build-gpu/tests/gpu_cuda_kernels
  step racecheck "$san" --tool racecheck --error-exitcode 1 build-gpu/tests/gpu_cuda_kernels
else
  log "skip  memcheck/racecheck: compute-sanitizer not found (CUDA toolkit bin/, or tests/gpu/fetch-sanitizer.sh where PyPI is reachable)"
fi
step optim_multi build-gpu/tide tests/gpu/optim_multi.lua
cat "$out/optim_multi.log"
step allocator build-gpu/tide tests/gpu/alloc_fragment.lua
step attention_flash build-gpu/tide tests/gpu/attention_flash.lua
cat "$out/attention_flash.log"
step linear_epilogue build-gpu/tide tests/gpu/linear_epilogue.lua
cat "$out/linear_epilogue.log"

step residual_layer_norm build-gpu/tide tests/gpu/residual_layer_norm.lua
cat "$out/residual_layer_norm.log"
step dist_nccl_world1 env TIDE_TEST_DIST_NCCL=1 build-gpu/tide test tests/lua/test_dist.lua
if command -v mpirun >/dev/null 2>&1; then
  step dist_staged_np2 bash tests/dist/run_mpi.sh 2 build-gpu/tide test tests/lua/test_dist.lua
else
  log "skip  dist_staged_np2: mpirun not found (Open MPI is not installed on this machine)"
fi
step train_bf16 build-gpu/tide tests/gpu/train_bf16.lua
grep -E '^(GPT-2|ok|FAIL)' "$out/train_bf16.log"
step gpt2_step_vs_torch build-gpu/tide tests/gpu/gpt2_step.lua --dir=/tmp/tide-gpt2-step
grep -E '^(tide|torch|[0-9]+ gradient|ok|FAIL)' "$out/gpt2_step_vs_torch.log" | head -12
step fused_kernels build-gpu/tide tests/gpu/fused_kernels.lua
grep -E '^(FAIL|skip)|checks passed' "$out/fused_kernels.log"

if [ ${#failed[@]} -eq 0 ]; then echo "summary: all GPU checks passed"; exit 0; fi
echo "summary: failed: ${failed[*]}"; exit 1

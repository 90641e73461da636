#!/usr/bin/env bash
# The GPU benchmark of issue 14, in one call on a machine with an NVIDIA GPU:
#   bash bench/gpu/run.sh [OUTDIR]             (default $OUT, else /tmp/tide-bench-gpu)
#   bash bench/gpu/run.sh --dry-run [OUTDIR]   no GPU: every part that runs on a CPU, tiny shapes
# GPT-2 124M training steps (vocab 50257, T = 1024, micro-batch 16 and 32,
# bf16 autocast with f32 master weights, fused AdamW, gradient clipping at
# 1.0, dropout off) on one GPU, in the same run, by
#   tide          bench/gpu/train_step.lua (plain loss, and the keytoken-weighted loss)
#   nanoGPT-style bench/gpu/peers.py --impl=nanogpt: torch.compile, flash SDPA
#   llm.c         train_gpt2cu from the copy bench/gpu/fetch-llmc.sh places in .llmc
#                 (with cuDNN attention where the CUDA install has cuDNN, and without)
#   transformers  bench/gpu/peers.py --impl=hf: GPT2LMHeadModel, eager, SDPA
# each printing tokens/s, MFU ((6N + 12 L C T) flops per token over the device's
# dense bf16 peak, bench/gpu/report.py) and peak memory; then a table with the
# ratios tide / peer. OUTDIR gets results.json and results.md (for
# bench/RESULTS.md), run.log (this console) and logs.tar.gz (every part's log),
# rewritten after each part so a run cut short still leaves what it measured.
#
# On the lent device machines (no network, no package registry), first, here,
# in the checkout the device call sends (where apt and git work):
#   TIDE_EXTRA_DEBS="libsnappy1v5 libsnappy-dev libzstd1 libzstd-dev zlib1g zlib1g-dev pkgconf pkgconf-bin libpkgconf3" \
#     ../shared/offline-deps/fetch-deps.sh .devdeps     # LuaJIT, OpenBLAS, libedit, Parquet's codecs
#   bench/gpu/fetch-llmc.sh                            # llm.c and cudnn-frontend, pinned, in .llmc
# then the device call: carry [".devdeps", ".llmc"], command
#   bash bench/gpu/run.sh "$OUT"            with timeout_s 600
# (.devdeps is sourced here when LuaJIT is not installed.) Environment:
# BENCH_BUDGET_S (seconds for the whole run), BENCH_WORK (scratch folder),
# BENCH_TIDE (a tide executable built already: no build), BENCH_CMAKE_ARGS
# (more cmake -D options), BENCH_LLMC_CUDNN=0 (llm.c without cuDNN only),
# TIDE_REF_PYTHON (the Python with torch; python3).
#
# Time budget: BENCH_BUDGET_S (default 540 s, under the device call's 600).
# Parts run in this order, each under `timeout` with min(its cap, what is left
# of the budget - 10 s); a part that would get less than its floor is skipped
# and the table says so. Caps (expected time on an H100/H200 in brackets):
#   build tide (CUDA, Release, target tide; llm.c builds beside it)  300 (60-150)
#   llm.c token shard written by tide                                  30 (3)
#   tide B=16, plain and keytoken: 5 warm-up + up to 20 timed steps   90 (20-40)
#   nanoGPT compiled B=16 (torch.compile's first step ~1 min)         150 (60-90)
#   llm.c with cuDNN B=16                                              60 (10-20)
#   transformers eager B=16                                            75 (20-30)
#   the same four at B=32                                   90/150/60/75 (25-45/60-90/10-20/20-35)
#   llm.c without cuDNN B=16, B=32                                  45 each (10-20)
# Expected in all: about 7 minutes. Timed steps stop early after 15 s (at
# least 3), so a slow side costs at most its warm-up + 15 s per variant.
set -uo pipefail
cd "$(dirname "$0")/../.."
dry=0
if [ "${1:-}" = --dry-run ]; then dry=1; shift; fi
out=${1:-${OUT:-/tmp/tide-bench-gpu}}
work=${BENCH_WORK:-/tmp/tide-bench-gpu-work}
budget=${BENCH_BUDGET_S:-$([ $dry = 1 ] && echo 1200 || echo 540)}
py=${TIDE_REF_PYTHON:-python3}
t_begin=$SECONDS
mkdir -p "$out" && rm -rf "$work" && mkdir -p "$work" || { echo "cannot create $out and $work"; exit 1; }
out=$(cd "$out" && pwd)
log() { echo "[$(date -u +%H:%M:%S) +$((SECONDS - t_begin))s] $*"; }

# everything below runs in main, whose output goes to the console and to
# OUTDIR/run.log (a pipeline, so the log is complete when the script returns)
main() {

gpu=0
if [ $dry = 0 ]; then
  if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "skipped: no GPU (nvidia-smi is not installed: no NVIDIA driver on this machine); bench/gpu/run.sh --dry-run runs the CPU parts"; exit 0
  fi
  if ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
    echo "skipped: no GPU (nvidia-smi lists none: $(nvidia-smi -L 2>&1 | head -1)); bench/gpu/run.sh --dry-run runs the CPU parts"; exit 0
  fi
  gpu=1
fi

# --- parts ---------------------------------------------------------------------
mem_pid=
mem_start() {  # nvidia-smi samples the device's used memory while a part runs
  [ $gpu = 1 ] || return 0
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 -lms 200 > "$work/mem_$1.txt" 2>/dev/null &
  mem_pid=$!
}
mem_stop() { if [ -n "$mem_pid" ]; then kill "$mem_pid" 2>/dev/null; wait "$mem_pid" 2>/dev/null; mem_pid=; fi; }
publish() {  # results so far into OUTDIR (quietly; the table is printed at the end)
  python3 bench/gpu/report.py "$work" "$out" > "$work/report.txt" 2>&1 || { echo "report.py failed:"; cat "$work/report.txt"; }
  tar czf "$out/logs.tar.gz" -C "$work" --exclude='llmc-*' --exclude='llmc-data' --exclude='inductor' . 2>/dev/null
}
skip() {  # skip NAME WHY
  log "skip  $1: $2"; printf '%s\tskipped\t0\t%s\n' "$1" "$2" >> "$work/parts.tsv"
}
# part NAME CAP FLOOR COMMAND...: runs COMMAND under timeout, its output in $work/NAME.log
part() {
  local name=$1 cap=$2 floor=$3; shift 3
  local left=$((budget - (SECONDS - t_begin) - 10))
  local lim=$((cap < left ? cap : left))
  if [ "$lim" -lt "$floor" ]; then skip "$name" "out of time (${left} s left of the ${budget} s budget, it needs ${floor})"; return 1; fi
  log "run   $name (up to $lim s)"
  mem_start "$name"
  local t0=$SECONDS rc
  timeout -k 10 "$lim" "$@" > "$work/$name.log" 2>&1
  rc=$?
  mem_stop
  local dt=$((SECONDS - t0)) status=ok note=
  if [ $rc = 124 ] || [ $rc = 137 ]; then status=timeout; note="stopped at its limit of $lim s"
  elif [ $rc != 0 ]; then status=failed; note="exit $rc"; fi
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$dt" "$note" >> "$work/parts.tsv"
  if [ $status = ok ]; then
    log "ok    $name ($dt s)"; grep -E 'tokens/s|llm.c DataLoader|llmc_data' "$work/$name.log" | sed 's/^/      /'
  else
    log "FAIL  $name ($dt s, $note): tail of its log:"; grep -v '^RESULT ' "$work/$name.log" | tail -15 | sed 's/^/      /'
  fi
  publish
  [ $status = ok ]
}

# --- the machine ------------------------------------------------------------------
gpu_name=cpu; peak=
if [ $gpu = 1 ]; then
  gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader -i 0 | head -1)
  peak=$(python3 bench/gpu/report.py --peak-for "$gpu_name")
  cc_cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader -i 0 | head -1 | tr -d '. ')
  nvidia-smi -L
  nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.sm,clocks.max.sm,power.limit,temperature.gpu --format=csv
  if [ -n "$peak" ]; then log "device: $gpu_name, dense bf16 peak $peak TFLOP/s (bench/gpu/report.py's table)"
  else log "device: $gpu_name: no bf16 peak known for it, so no MFU"; fi
fi
export BENCH_OUT=$work
env_json() {
  DEVICE_NAME="$gpu_name" MODE=$([ $dry = 1 ] && echo dry-run || echo gpu) BUDGET=$budget PY="$py" GPU=$gpu python3 - <<'EOF' > "$work/env.json"
import json, os, subprocess, time
def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=60).stdout.strip()
    except Exception:
        return ''
e = dict(date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), device_name=os.environ['DEVICE_NAME'],
         mode=os.environ['MODE'], budget_s=int(os.environ['BUDGET']))
e['commit'] = sh('git rev-parse --short HEAD 2>/dev/null') or 'unknown (no .git here)'
if os.environ['GPU'] == '1':
    e['driver'] = sh('nvidia-smi --query-gpu=driver_version,memory.total --format=csv,noheader -i 0')
    used = sh('nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0')
    e['smi_baseline_mb'] = float(used) if used else None
    e['nvcc'] = sh('nvcc --version | tail -2 | head -1')
# versions without importing (importing torch and transformers takes seconds)
vers = sh(os.environ['PY'] + ' -c "import importlib.metadata as m; print(m.version(\'torch\'), m.version(\'transformers\'))"').split()
if len(vers) == 2:
    e['torch'], e['transformers'] = vers
e['llmc'] = sh('cat .llmc/PINNED_COMMITS 2>/dev/null').replace('\n', '; ')
print(json.dumps(e, indent=1))
EOF
}
env_json
printf '' > "$work/parts.tsv"

have_torch=0
if "$py" -c 'import importlib.util as u, sys; sys.exit(u.find_spec("torch") is None)' >/dev/null 2>&1; then have_torch=1; fi

# --- dry run: the CPU parts, tiny shapes -----------------------------------------
if [ $dry = 1 ]; then
  tide=build/tide
  if [ ! -x $tide ]; then echo "dry run: build/tide is missing: cmake -S . -B build -DTIDE_CUDA=OFF && cmake --build build --target tide tide-cudaemu"; exit 1; fi
  log "dry run: tiny GPT-2 (2 layers, 64 dims, vocab 512), fp32 on the CPU; the GPU run's shapes are GPT-2 124M, T=1024, B=16/32, bf16"
  for B in 2 4; do
    part "tide_B$B" 120 10 $tide bench/gpu/train_step.lua --device=cpu --model=tiny --precision=fp32 --B=$B --T=64 --steps=5 --warmup=2
  done
  if [ -x build/tests/tide-cudaemu ]; then
    # the emulated GPU (tests/cudaemu): the CUDA code path, bf16 when tide.autocast exists
    prec=fp32
    if build/tests/tide-cudaemu -e 'os.exit(type(tide.autocast) == "function" and 0 or 1)' >/dev/null 2>&1; then prec=bf16; fi
    part tide_emu_B2 300 10 build/tests/tide-cudaemu bench/gpu/train_step.lua --device=cuda --model=tiny --vocab=128 \
      --precision=$prec --B=2 --T=32 --steps=2 --warmup=1 --name=tide_emu
  else
    skip tide_emu_B2 "build/tests/tide-cudaemu is not built"
  fi
  if [ $have_torch = 1 ]; then
    compile=--compile; [ "${DRY_COMPILE:-1}" = 0 ] && compile=--no-compile
    part nanogpt_B2 600 10 "$py" bench/gpu/peers.py --impl=nanogpt $compile --device=cpu --model=tiny --B=2 --T=64 --steps=5 --warmup=2
    for B in 2 4; do
      part "hf_B$B" 180 10 "$py" bench/gpu/peers.py --impl=hf --device=cpu --model=tiny --B=$B --T=64 --steps=5 --warmup=2
    done
  else
    skip peers "no torch in $py (TIDE_REF_PYTHON=python with torch and transformers)"
  fi
  if [ -f .llmc/train_gpt2.cu ]; then
    part llmc_data 60 5 $tide bench/gpu/llmc_data.lua --dir="$work/llmc-data"
    # llm.c's own DataLoader reads the shard as train_gpt2cu will
    if cc -O1 -I.llmc bench/gpu/llmc_shard_check.c -o "$work/llmc_shard_check" -lm > "$work/llmc_shard_check_build.log" 2>&1; then
      part llmc_shard_check 60 5 "$work/llmc_shard_check" "$work/llmc-data/train_*.bin" 32 1024
    else
      skip llmc_shard_check "cc could not build bench/gpu/llmc_shard_check.c ($(tail -1 "$work/llmc_shard_check_build.log"))"
    fi
    skip llmc_B16 "train_gpt2cu needs a GPU (dry run); on one: .llmc/train_gpt2cu -i '$work/llmc-data/train_*.bin' -e d12 -b 16 -t 1024 ..."
  else
    skip llmc_B16 "no llm.c copy in .llmc (bench/gpu/fetch-llmc.sh places one)"
  fi
  publish
  log "dry run done; results in $out"
  cat "$work/report.txt"
  exit 0
fi

# --- on the GPU -----------------------------------------------------------------------
# the Debian libraries of .devdeps are for tide alone: Python and llm.c keep the system's
orig_ld_path=${LD_LIBRARY_PATH-}
if ! command -v pkg-config >/dev/null 2>&1 || ! pkg-config --exists luajit 2>/dev/null; then
  if [ -f .devdeps/unpack.sh ]; then
    source .devdeps/unpack.sh
    # pkg-config itself may come from .devdeps (pkgconf)
    command -v pkg-config >/dev/null 2>&1 || export PATH=$PATH:/tmp/tide-deps/usr/bin
  else
    log "LuaJIT is not installed and there is no .devdeps to unpack (see this script's header)"
  fi
fi
export PATH=/usr/local/cuda/bin:$PATH
missing=
for m in luajit libedit libzstd; do pkg-config --exists $m 2>/dev/null || missing="$missing $m(pkg-config)"; done
for h in snappy-c.h zlib.h; do
  [ -f /usr/include/$h ] || [ -f /tmp/tide-deps/usr/include/$h ] || missing="$missing $h"
done
[ -n "$missing" ] && log "warning: the build will likely fail, not found:$missing (add their -dev packages to .devdeps: see the header)"
jobs=$(nproc)
cuda_home=$(dirname "$(dirname "$(command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)")")

# llm.c builds beside tide (it is one or two nvcc processes; tide's build takes the other cores)
llmc_pids=()
llmc_libs=$work/llmc-lib
mkdir -p "$llmc_libs"
cudnn_inc= cudnn_lib= cudnn_why=
if [ "${BENCH_LLMC_CUDNN:-1}" = 0 ]; then
  cudnn_why="BENCH_LLMC_CUDNN=0"
elif [ -f "$cuda_home/include/cudnn.h" ] && ls "$cuda_home"/lib64/libcudnn.so* >/dev/null 2>&1; then
  cudnn_inc=$cuda_home/include; cudnn_lib=$cuda_home/lib64
else
  # PyTorch's wheel of cuDNN (nvidia-cudnn-cu13): headers and libcudnn.so.9, no unversioned name
  d=$(python3 -c 'import nvidia.cudnn as m, os; print(list(m.__path__)[0])' 2>/dev/null || true)
  if [ -n "$d" ] && [ -f "$d/include/cudnn.h" ] && [ -e "$d/lib/libcudnn.so.9" ]; then
    cudnn_inc=$d/include; cudnn_lib=$d/lib; ln -sf "$d/lib/libcudnn.so.9" "$llmc_libs/libcudnn.so"
  else
    cudnn_why="no cuDNN in $cuda_home or in python3's nvidia.cudnn"
  fi
fi
nvml=
if printf '#include <nvml.h>\n' | g++ -E -I"$cuda_home/include" -x c++ - >/dev/null 2>&1; then
  # llm.c uses NVML when nvml.h exists: link against the driver's libnvidia-ml, or else the
  # toolkit's link-time stub library (lib64/stubs; the driver's copy is loaded at run time)
  lib=$(ldconfig -p 2>/dev/null | awk '/libnvidia-ml.so.1 /{print $NF; exit}')
  [ -z "$lib" ] && lib=$(ls "$cuda_home"/lib64/stubs/libnvidia-ml.so 2>/dev/null | head -1)
  [ -n "$lib" ] && ln -sf "$lib" "$llmc_libs/libnvidia-ml.so"
  nvml=-lnvidia-ml
fi
llmc_build() {  # llmc_build cudnn|plain: a copy of .llmc built in $work/llmc-VARIANT
  local v=$1 d=$work/llmc-$1
  cp -r .llmc "$d" || return 1
  local args=(train_gpt2cu GPU_COMPUTE_CAPABILITY=${cc_cap:-90} NO_MULTI_GPU=1 NO_USE_MPI=1)
  if [ "$v" = cudnn ]; then
    args+=(USE_CUDNN=1 "CUDNN_FRONTEND_PATH=cudnn-frontend/include -I$cudnn_inc" "NVCC_LDFLAGS=-lcublas -lcublasLt -lcudnn $nvml")
  else
    args+=(USE_CUDNN=0 "NVCC_LDFLAGS=-lcublas -lcublasLt $nvml")
  fi
  (cd "$d" && LIBRARY_PATH=$llmc_libs:${cudnn_lib:+$cudnn_lib:}$cuda_home/lib64:${LIBRARY_PATH:-} timeout 300 make "${args[@]}")
}
if [ -f .llmc/train_gpt2.cu ]; then
  if [ -n "$cudnn_inc" ]; then llmc_build cudnn > "$work/build_llmc_cudnn.log" 2>&1 & llmc_pids+=($!); fi
  llmc_build plain > "$work/build_llmc_plain.log" 2>&1 & llmc_pids+=($!)
  log "llm.c: building in the background (cuDNN: ${cudnn_inc:-no, $cudnn_why}; NVML: ${nvml:-no})"
fi

tide=${BENCH_TIDE:-build-gpu/tide}
if [ -n "${BENCH_TIDE:-}" ]; then
  skip build "BENCH_TIDE=$BENCH_TIDE: that tide is used as it is"
else
  part build 300 60 bash -c "cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DTIDE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    ${BENCH_CMAKE_ARGS:-} && cmake --build build-gpu -j $jobs --target tide"
fi
tide_ok=1
if [ ! -x $tide ]; then
  tide_ok=0; log "tide did not build (build.log above); the peers still run"
elif ! $tide -e 'os.exit(tide.cuda.is_available() and 0 or 1)' >/dev/null 2>&1; then
  log "warning: tide sees no GPU: $($tide -e 'print(tide.cuda.device_count(), tide.cuda.runtime())' 2>&1 | head -2)"
fi

gpt2=(--device=cuda --model=gpt2 --precision=bf16 --T=1024 --steps=20 --warmup=5 --budget_s=15 ${peak:+--peak_tflops=$peak})
tide_args=()
if [ $tide_ok = 1 ] && ! $tide -e 'os.exit(type(tide.autocast) == "function" and 0 or 1)' >/dev/null 2>&1; then
  # without issue 14's autocast, tide's figure is f32 with TF32 products, named so in the table
  log "warning: this tide has no tide.autocast (bf16 mixed precision): its side runs in f32 with TF32 as tide_tf32"
  tide_args=(--precision=fp32 --tf32 --name=tide_tf32)
fi
llmc_ran_data=0
llmc_data() {  # the shard llm.c reads, once (tide writes it; the CUDA build runs on the CPU here)
  [ $llmc_ran_data = 1 ] && return 0
  llmc_ran_data=1
  if [ $tide_ok = 1 ]; then part llmc_data 30 5 $tide bench/gpu/llmc_data.lua --dir="$work/llmc-data"
  else skip llmc_data "tide did not build, and tide writes llm.c's shard"; fi
}
llmc_waited=0
llmc_wait() {
  [ $llmc_waited = 1 ] && return 0
  llmc_waited=1
  local p; for p in "${llmc_pids[@]}"; do wait "$p"; done
  local v
  for v in cudnn plain; do
    if [ -x "$work/llmc-$v/train_gpt2cu" ]; then log "llm.c ($v) built"
    elif [ -f "$work/build_llmc_$v.log" ]; then log "llm.c ($v) did not build: $(grep -m3 -iE 'error|fatal' "$work/build_llmc_$v.log" | tr '\n' ' ' | cut -c1-300)"; fi
  done
}
run_llmc() {  # run_llmc cudnn|plain B CAP
  local v=$1 B=$2 cap=$3 name=llmc; [ "$v" = cudnn ] && name=llmc_cudnn
  if [ ! -f .llmc/train_gpt2.cu ]; then skip "${name}_B$B" "no llm.c copy in .llmc (bench/gpu/fetch-llmc.sh, then carry .llmc)"; return; fi
  if [ "$v" = cudnn ] && [ -z "$cudnn_inc" ]; then skip "${name}_B$B" "$cudnn_why"; return; fi
  llmc_wait; llmc_data
  if [ ! -x "$work/llmc-$v/train_gpt2cu" ]; then skip "${name}_B$B" "train_gpt2cu ($v) did not build (build_llmc_$v.log)"; return; fi
  if [ ! -f "$work/llmc-data/train_000000.bin" ]; then skip "${name}_B$B" "no token shard"; return; fi
  part "${name}_B$B" "$cap" 20 env LD_LIBRARY_PATH=${cudnn_lib:+$cudnn_lib:}$cuda_home/lib64${orig_ld_path:+:$orig_ld_path} \
    python3 bench/gpu/peers.py --impl=llmc --llmc_name=$name --llmc_bin="$work/llmc-$v/train_gpt2cu" \
    --llmc_data="$work/llmc-data/train_*.bin" --B=$B --T=1024 --steps=20 --warmup=5 --budget_s=$((cap - 5)) \
    ${peak:+--peak_tflops=$peak}
}
run_tide() {
  if [ $tide_ok = 1 ]; then part "tide_B$1" "$2" 30 $tide bench/gpu/train_step.lua "${gpt2[@]}" "${tide_args[@]}" --B=$1
  else skip "tide_B$1" "tide did not build"; fi
}
run_torch() {  # run_torch nanogpt|hf B CAP FLOOR
  if [ $have_torch = 0 ]; then skip "$1_B$2" "no torch in $py"; return; fi
  part "$1_B$2" "$3" "$4" env LD_LIBRARY_PATH="$orig_ld_path" TORCHINDUCTOR_CACHE_DIR="$work/inductor" \
    "$py" bench/gpu/peers.py --impl=$1 "${gpt2[@]}" --B=$2
}

for B in 16 32; do
  run_tide $B 90
  run_torch nanogpt $B 150 60
  run_llmc cudnn $B 60
  run_torch hf $B 75 30
done
for B in 16 32; do run_llmc plain $B 45; done
llmc_wait

publish
log "done in $((SECONDS - t_begin)) s; results in $out (results.md, results.json, run.log, logs.tar.gz)"
cat "$work/report.txt"
if [ $tide_ok = 1 ] && grep -q $'^tide_B16\tok' "$work/parts.tsv"; then echo "summary: tide and the peers ran (see the table)"; exit 0; fi
echo "summary: tide's GPT-2 124M step did not run (see its part's log)"; exit 1
}

main 2>&1 | tee "$out/run.log"
exit "${PIPESTATUS[0]}"

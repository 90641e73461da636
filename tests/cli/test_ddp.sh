#!/usr/bin/env bash
# Data-parallel training on 2 CPU ranks under Open MPI's mpirun
# (tests/cli/ddp_run.lua: a tiny GPT-2, 20 steps, shuffled shards):
#  - 2 ranks with batch 4 each equal 1 process with batch 8, within 1e-6
#    relative per step (loss and gradient norm);
#  - two 2-rank runs are bit-for-bit identical;
#  - ZeRO-1 (zero = 1) equals plain DDP within 1e-6, and so does gradient
#    accumulation with no_sync (2 micro-batches of 2), which must reduce each
#    bucket once per step, not once per micro-batch;
#  - a 2-rank checkpoint resumes on 1 process (batch 8) and continues as the
#    2-rank run did (1e-6); resumed on 2 ranks it continues bit for bit; a
#    ZeRO-1 checkpoint resumes on 1 process without zero;
#  - a rank SIGKILLed mid-step ends the job, with an error naming it, within 60 s.
# Skipped (77) without mpirun or without tide's MPI backend.
set -u
TIDE=${1:-./build/tide}
TIDE=$(cd "$(dirname "$TIDE")" && pwd)/$(basename "$TIDE")
here=$(cd "$(dirname "$0")" && pwd)
run="$here/ddp_run.lua"
command -v mpirun > /dev/null || { echo "SKIP: no mpirun (apt-get install openmpi-bin libopenmpi-dev)"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

[ -f "$(dirname "$TIDE")/libtide_mpi.so" ] || { echo "SKIP: $(dirname "$TIDE")/libtide_mpi.so is missing (built without Open MPI)"; exit 77; }
# as tests/dist/run_mpi.sh: each rank one thread, no binding (the ranks share
# the cores), a collective that waits 60 s ends its process
# the sanitizer build's leak check is off in MPI's processes, as in
# tests/dist/run_mpi.sh (Open MPI's components unload at finalize and their
# allocations show as leaks no suppression can name); the single-process
# runs here keep it
MPI=(env "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" mpirun -np 2 --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 -x TIDE_DIST_TIMEOUT=60)
[ "$(id -u)" -eq 0 ] && MPI+=(--allow-run-as-root)

# the data, written once by a single process
"$TIDE" "$run" --out="$dir/prep" --data="$dir/data" --steps=1 > /dev/null 2> "$dir/prep.err" ||
  { cat "$dir/prep.err"; fail "the single-process run could not prepare the data"; }

# a first 2-rank run tells whether MPI works here at all
timeout 300 "${MPI[@]}" "$TIDE" "$run" --out="$dir/a" --data="$dir/data" --save_at=10 > "$dir/a.txt" 2> "$dir/a.err" ||
  { cat "$dir/a.err"; fail "the 2-rank run failed"; }

# lines "step N loss %a norm %a | loss norm" -> compare
steps_of() { grep '^step ' "$1"; }
bitwise() {  # $1 $2: the %a columns of two runs are identical (over the steps both printed)
  diff <(steps_of "$1" | cut -d'|' -f1) <(steps_of "$2" | cut -d'|' -f1) > /dev/null
}
close() {  # $1 $2 [first step]: |a - b| <= 1e-6 * |b| for loss and norm at every step
  local first=${3:-1}
  local n
  n=$(join <(steps_of "$1" | awk -v f="$first" '$2 >= f { print $2, $8, $9 }' | sort -k1,1) \
           <(steps_of "$2" | awk -v f="$first" '$2 >= f { print $2, $8, $9 }' | sort -k1,1) |
      awk 'function bad(a, b) { d = a - b; if (d < 0) d = -d; m = b < 0 ? -b : b; return d > 1e-6 * m }
           { n++; if (bad($2, $4) || bad($3, $5)) { print "step " $1 ": " $2 " vs " $4 ", norm " $3 " vs " $5 > "/dev/stderr"; bad_n++ } }
           END { print (bad_n ? -1 : n) }')
  [ "$n" -gt 0 ] 2> /dev/null
}
count() { steps_of "$1" | wc -l; }

[ "$(count "$dir/a.txt")" -eq 20 ] || fail "the 2-rank run printed $(count "$dir/a.txt") steps, expected 20"

# 1 process with the same global batch
"$TIDE" "$run" --out="$dir/one" --data="$dir/data" --batch=8 > "$dir/one.txt" 2> "$dir/one.err" ||
  { cat "$dir/one.err"; fail "the 1-process run failed"; }
close "$dir/a.txt" "$dir/one.txt" || fail "2 ranks x batch 4 differ from 1 process x batch 8 by more than 1e-6"
# it learned something (the comparison is not between two flat lines)
first=$(steps_of "$dir/one.txt" | head -1 | awk '{ print $8 }')
last=$(steps_of "$dir/one.txt" | tail -1 | awk '{ print $8 }')
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 0.05) }' || fail "the loss did not fall ($first -> $last)"

# bit for bit between two 2-rank runs
timeout 300 "${MPI[@]}" "$TIDE" "$run" --out="$dir/b" --data="$dir/data" > "$dir/b.txt" 2> "$dir/b.err" ||
  { cat "$dir/b.err"; fail "the second 2-rank run failed"; }
bitwise "$dir/a.txt" "$dir/b.txt" || fail "two 2-rank runs differ"
# the blocking all-reduce in the hooks (overlap = false) gives the same bits
timeout 300 "${MPI[@]}" "$TIDE" "$run" --out="$dir/nb" --data="$dir/data" --overlap=0 > "$dir/nb.txt" 2> "$dir/nb.err" ||
  { cat "$dir/nb.err"; fail "the 2-rank run with overlap = false failed"; }
bitwise "$dir/a.txt" "$dir/nb.txt" || fail "overlap = false differs from the overlapped run"

# ZeRO-1 against plain DDP
timeout 300 "${MPI[@]}" "$TIDE" "$run" --out="$dir/z" --data="$dir/data" --zero=1 --save_at=10 > "$dir/z.txt" 2> "$dir/z.err" ||
  { cat "$dir/z.err"; fail "the ZeRO-1 run failed"; }
[ "$(count "$dir/z.txt")" -eq 20 ] || fail "the ZeRO-1 run printed $(count "$dir/z.txt") steps"
close "$dir/z.txt" "$dir/a.txt" || fail "ZeRO-1 differs from DDP by more than 1e-6"

# no_sync accumulation: 2 micro-batches of 2 per rank
timeout 300 "${MPI[@]}" "$TIDE" "$run" --out="$dir/acc" --data="$dir/data" --batch=2 --accum=2 > "$dir/acc.txt" 2> "$dir/acc.err" ||
  { cat "$dir/acc.err"; fail "the accumulation run failed"; }
close "$dir/acc.txt" "$dir/a.txt" || fail "gradient accumulation with no_sync differs from one batch by more than 1e-6"
read -r _ reduces _ buckets < <(grep '^reduces ' "$dir/acc.txt")
[ "$reduces" -eq $((20 * buckets)) ] ||
  fail "accumulation ran $reduces bucket reductions for 20 steps of $buckets buckets: no_sync did not skip the first micro-batch"
[ "$buckets" -gt 1 ] || fail "the test model should span several buckets, got $buckets"

# resume a 2-rank checkpoint on 1 process, and on 2 ranks
ck="$dir/a/checkpoints/step-000010"
[ -f "$ck/optimizer.safetensors" ] || fail "the 2-rank run wrote no checkpoint at step 10"
"$TIDE" "$run" --out="$dir/r1" --data="$dir/data" --batch=8 --resume="$ck" > "$dir/r1.txt" 2> "$dir/r1.err" ||
  { cat "$dir/r1.err"; fail "resuming the 2-rank checkpoint on 1 process failed"; }
[ "$(count "$dir/r1.txt")" -eq 10 ] || fail "the resumed run printed $(count "$dir/r1.txt") steps, expected 10"
close "$dir/r1.txt" "$dir/a.txt" 11 || fail "1 process resumed from the 2-rank checkpoint differs from the 2-rank run"
timeout 300 "${MPI[@]}" "$TIDE" "$run" --out="$dir/r2" --data="$dir/data" --resume="$ck" > "$dir/r2.txt" 2> "$dir/r2.err" ||
  { cat "$dir/r2.err"; fail "resuming on 2 ranks failed"; }
bitwise "$dir/r2.txt" <(steps_of "$dir/a.txt" | awk '$2 > 10') || fail "2 ranks resumed from step 10 differ from the uninterrupted run"
"$TIDE" "$run" --out="$dir/rz" --data="$dir/data" --batch=8 --resume="$dir/z/checkpoints/step-000010" > "$dir/rz.txt" 2> "$dir/rz.err" ||
  { cat "$dir/rz.err"; fail "resuming the ZeRO-1 checkpoint on 1 process failed"; }
close "$dir/rz.txt" "$dir/z.txt" 11 || fail "1 process resumed from the ZeRO-1 checkpoint differs from the ZeRO-1 run"

# a rank killed mid-step: the job ends, naming it, within 60 s
t0=$(date +%s)
timeout 120 "${MPI[@]}" "$TIDE" "$run" --out="$dir/k" --data="$dir/data" --kill_rank=1 --kill_step=5 > "$dir/k.txt" 2> "$dir/k.err"
rc=$?
t=$(( $(date +%s) - t0 ))
[ "$rc" -ne 0 ] || fail "the job with a killed rank exited 0"
[ "$rc" -ne 124 ] || fail "the job with a killed rank still ran after 120 s"
[ "$t" -le 60 ] || fail "the job with a killed rank took $t s to end"
grep -qi "rank 1\|rank: 1" "$dir/k.err" || { cat "$dir/k.err"; fail "the error does not name the killed rank"; }
[ "$(count "$dir/k.txt")" -le 4 ] || fail "the job printed steps after the kill"
# the recipe under 2 ranks: rank 0 alone prepares the data and writes the
# run's files; with batch 2 per rank it logs what 1 process with batch 4 logs
opts=(--steps=20 --corpus="$dir/corpus.jsonl.gz" --corpus_mb=1 --vocab_size=300 --seq_length=16 --grad_accum=2
      --model=tiny --min_drop=0 --log_every=5 --eval_every=10 --save_every=10)
"$TIDE" recipes/codeparrot.lua "${opts[@]}" --batch_size=4 --out="$dir/rec1" > "$dir/rec1.out" 2>&1 < /dev/null ||
  { cat "$dir/rec1.out"; fail "the recipe on 1 process failed"; }
timeout 300 "${MPI[@]}" "$TIDE" recipes/codeparrot.lua "${opts[@]}" --batch_size=2 --out="$dir/rec2" > "$dir/rec2.out" 2>&1 < /dev/null ||
  { cat "$dir/rec2.out"; fail "the recipe on 2 ranks failed"; }
[ "$(ls "$dir/rec2/tb" | wc -l)" -eq 1 ] || fail "the 2-rank recipe wrote $(ls "$dir/rec2/tb" | wc -l) TensorBoard files, expected rank 0's alone"
metric() { grep "\"$2\":" "$1/metrics.jsonl" | sed -E 's#.*"step":([0-9]+),.*"'"$2"'":([-0-9.e+]+).*#\1 \2#'; }
for m in loss/train loss/eval grad_norm; do
  a=$(metric "$dir/rec1" "$m"); b=$(metric "$dir/rec2" "$m")
  [ -n "$a" ] && [ "$(echo "$a" | wc -l)" -eq "$(echo "$b" | wc -l)" ] || fail "the recipe's $m: 1 process logged [$a], 2 ranks [$b]"
  paste <(echo "$a") <(echo "$b") | awk -v m="$m" '{ d = $2 - $4; if (d < 0) d = -d; if ($1 != $3 || d > 1e-5 * ($2 < 0 ? -$2 : $2)) { print "FAIL: the recipe'"'"'s " m " at step " $1 ": " $2 " (1 process) vs " $4 " (2 ranks)"; bad = 1 } } END { exit bad }' ||
    exit 1
done

echo "ok: DDP = 1 process, bitwise repeatable, ZeRO-1, no_sync, resume across world sizes, killed rank (${t}s)"

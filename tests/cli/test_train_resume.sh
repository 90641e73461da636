#!/usr/bin/env bash
# Kill and resume, bit for bit: a tiny GPT-2 run (tests/cli/train_resume_run.lua:
# dropout, gradient accumulation 2, shuffled shards, evaluations, a checkpoint
# every 3 micro-steps) is SIGKILLed at a random micro-step, four seeds: after
# a backward, or inside a checkpoint (before a file, before the rename, before
# `latest` is replaced). Resumed with --resume=auto, every loss, gradient
# norm, learning rate and evaluation after the resume point must equal the
# uninterrupted run's, printed with %a.
set -u
TIDE=${1:-./build/tide}
here=$(cd "$(dirname "$0")" && pwd)
run="$here/train_resume_run.lua"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$TIDE" "$run" --out="$dir/ref" --data="$dir/data" > "$dir/ref.txt" || fail "the uninterrupted run failed"
n=$(grep -c ' loss ' "$dir/ref.txt")
[ "$n" -eq 60 ] || fail "the uninterrupted run printed $n losses, expected 60"

stages=(step file rename latest)
for seed in 1 2 3 4; do
  # the kill point from the seed (awk's seeded generator: repeatable), one
  # seed per stage
  k=$(awk -v s="$seed" 'BEGIN { srand(s * 104729); print 1 + int(rand() * 57) }')
  stage=${stages[$((seed - 1))]}
  # a checkpoint is written after every third micro-step: kill inside one there
  if [ "$stage" != step ]; then k=$(( (k / 3 + 1) * 3 )); fi
  r="$dir/run$seed"
  # in the background and waited for, so that the shell does not report the kill
  "$TIDE" "$run" --out="$r" --data="$dir/data" --kill_at="$k" --kill_stage="$stage" > "$r.killed.txt" 2>&1 &
  wait $! 2>/dev/null
  rc=$?
  [ "$rc" -eq 137 ] || fail "seed $seed: the run killed at micro-step $k ($stage) exited $rc, not 137 (SIGKILL)"
  # what it printed before dying is the reference's beginning
  m=$(wc -l < "$r.killed.txt")
  head -n "$m" "$dir/ref.txt" | cmp -s - "$r.killed.txt" || fail "seed $seed: the killed run's output differs before the kill"
  "$TIDE" "$run" --out="$r" --data="$dir/data" --resume=auto > "$r.resumed.txt" 2> "$r.err" ||
    { cat "$r.err"; fail "seed $seed: the resumed run failed"; }
  first=$(head -n 1 "$r.resumed.txt" | cut -d' ' -f1-2)
  line=$(grep -n -F -m1 "$first " "$dir/ref.txt" | cut -d: -f1)
  [ -n "$line" ] || fail "seed $seed: the resumed run starts at '$first', which the reference never prints"
  tail -n "+$line" "$dir/ref.txt" > "$r.expected.txt"
  if ! cmp -s "$r.expected.txt" "$r.resumed.txt"; then
    diff "$r.expected.txt" "$r.resumed.txt" | head -n 10
    fail "seed $seed: the losses after resuming differ from the uninterrupted run's"
  fi
  echo "seed $seed: killed at micro-step $k ($stage); $(cat "$r.err" | tr -d '\n'); $(wc -l < "$r.resumed.txt") lines after it identical"
done
echo "ok"

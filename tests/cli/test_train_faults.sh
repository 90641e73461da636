#!/usr/bin/env bash
# Issue 12, faults: a Ctrl-C during training finishes the step, writes a
# checkpoint, prints how to resume and exits 130; a second Ctrl-C (here while
# the checkpoint's on_save runs) ends the process at once; a NaN loss at step
# k stops the run with a message naming the step, the micro-batch and the
# last good checkpoint, and --skip_nonfinite skips that update and counts it.
# The run is tests/cli/train_faults_run.lua (the Trainer on a tiny GPT-2).
#   bash tests/cli/test_train_faults.sh path/to/tide
set -u
TIDE=${1:?usage: test_train_faults.sh path/to/tide}
case $TIDE in /*) ;; *) TIDE=$PWD/$TIDE ;; esac
RUN=tests/cli/train_faults_run.lua
tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
fail=0

# waits (up to 60 s) for a line in a file
wait_for() {
  for _ in $(seq 600); do grep -q "$1" "$2" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}

# 1. one Ctrl-C: exit 130, a checkpoint, the resume command
"$TIDE" $RUN --out="$tmp/run" >"$tmp/out" 2>"$tmp/err" </dev/null &
pid=$!
if ! wait_for '^started' "$tmp/out"; then echo "FAIL: the run did not start:"; cat "$tmp/err"; exit 1; fi
kill -INT "$pid"
wait "$pid"; rc=$?; pid=
if [ "$rc" -ne 130 ]; then echo "FAIL: Ctrl-C: exit status $rc, expected 130"; cat "$tmp/err"; fail=1; fi
if ! grep -q "^interrupted: stopped after step [0-9]*; checkpoint $tmp/run/checkpoints/step-0*[0-9]*" "$tmp/err"; then
  echo "FAIL: Ctrl-C: no 'interrupted ... checkpoint' line:"; cat "$tmp/err"; fail=1
fi
if ! grep -q "^to resume: tide $RUN --out=$tmp/run --resume=auto" "$tmp/err"; then
  echo "FAIL: Ctrl-C: no resume command:"; cat "$tmp/err"; fail=1
fi
step=$(sed -n 's/^interrupted: stopped after step \([0-9]*\);.*/\1/p' "$tmp/err")
if [ -z "$step" ] || [ ! -d "$(printf '%s/run/checkpoints/step-%06d' "$tmp" "$step")" ]; then
  echo "FAIL: Ctrl-C: no checkpoint directory for step '$step':"; ls -R "$tmp/run"; fail=1
fi
# the resume command continues from there
"$TIDE" $RUN --out="$tmp/run" --steps=$((step + 2)) --resume=auto >"$tmp/out2" 2>"$tmp/err2" </dev/null
rc=$?
if [ "$rc" -ne 0 ] || ! grep -q "at step $step\$" "$tmp/out2" || ! grep -q "^done: step $((step + 2))," "$tmp/out2"; then
  echo "FAIL: resume: exit status $rc:"; cat "$tmp/out2" "$tmp/err2"; fail=1
fi

# 2. a second Ctrl-C while the checkpoint is being saved: out at once
"$TIDE" $RUN --out="$tmp/run2" --slow_save=20 >"$tmp/out" 2>"$tmp/err" </dev/null &
pid=$!
if ! wait_for '^started' "$tmp/out"; then echo "FAIL: the second run did not start:"; cat "$tmp/err"; exit 1; fi
kill -INT "$pid"
if ! wait_for '^saved ' "$tmp/out"; then echo "FAIL: no checkpoint after the first Ctrl-C"; cat "$tmp/err"; fail=1; fi
t0=$(date +%s)
kill -INT "$pid"
wait "$pid"; rc=$?; pid=
t1=$(date +%s)
if [ "$rc" -ne 130 ] || [ $((t1 - t0)) -ge 15 ] || grep -q '^to resume' "$tmp/err"; then
  echo "FAIL: second Ctrl-C: exit status $rc after $((t1 - t0)) s, expected 130 at once without the resume line"
  cat "$tmp/err"; fail=1
fi

# 3. a NaN loss at step 4 of a run with 2 micro-batches per step: stop, naming both and the checkpoint
"$TIDE" $RUN --out="$tmp/run3" --steps=10 --nan_at=4 --accum=2 >"$tmp/out" 2>"$tmp/err" </dev/null
rc=$?
if [ "$rc" -ne 1 ]; then echo "FAIL: NaN: exit status $rc, expected 1"; cat "$tmp/err"; fail=1; fi
if ! grep -q "step 4: the loss is nan at micro-batch 1 of 2: training diverged; last good checkpoint: none" "$tmp/err"; then
  echo "FAIL: NaN: no message naming step, micro-batch and checkpoint:"; cat "$tmp/err"; fail=1
fi
if grep -q '^done' "$tmp/out"; then echo "FAIL: NaN: the run went on"; fail=1; fi
# 4. --skip_nonfinite: the update is skipped and counted, the run ends
"$TIDE" $RUN --out="$tmp/run4" --steps=10 --nan_at=4 --skip_nonfinite >"$tmp/out" 2>"$tmp/err" </dev/null
rc=$?
if [ "$rc" -ne 0 ] || ! grep -q '^done: step 10, skipped 1$' "$tmp/out" \
   || ! grep -q 'step 4: the loss is nan at micro-batch 1 of 1: update skipped (1 so far)' "$tmp/err"; then
  echo "FAIL: --skip_nonfinite: exit status $rc:"; cat "$tmp/out" "$tmp/err"; fail=1
fi
[ $fail -eq 0 ] && echo "train faults: passed"
exit $fail

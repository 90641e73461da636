#!/usr/bin/env bash
# Issue 12, items 6 and 8 together: recipes/codeparrot.lua interrupted by
# Ctrl-C (with --grad_accum=2 and evaluations) exits 130 with a resume
# command; running that command finishes the run, and every loss the two
# halves logged to metrics.jsonl is bitwise (%a) the uninterrupted run's. The
# run directory has checkpoints, metrics.jsonl, tb/, plot.svg and model/.
# A 1 MB corpus, a 300-token vocabulary and 30 steps keep it to seconds.
#   bash tests/cli/test_train_recipe_resume.sh path/to/tide
set -u
TIDE=${1:?usage: test_train_recipe_resume.sh path/to/tide}
case $TIDE in /*) ;; *) TIDE=$PWD/$TIDE ;; esac
tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
fail=0
opts=(--steps=30 --corpus="$tmp/corpus.jsonl.gz" --corpus_mb=1 --vocab_size=300 --batch_size=2 --seq_length=16
      --model=tiny --grad_accum=2 --log_every=1 --eval_every=7 --save_every=10 --min_drop=0)

"$TIDE" recipes/codeparrot.lua "${opts[@]}" --out="$tmp/a" >"$tmp/a.out" 2>&1 </dev/null
rc=$?
if [ "$rc" -ne 0 ]; then echo "FAIL: the uninterrupted run: exit status $rc"; cat "$tmp/a.out"; exit 1; fi
for f in checkpoints/latest checkpoints/step-000030/model.safetensors metrics.jsonl tb plot.svg model/model.safetensors; do
  [ -e "$tmp/a/$f" ] || { echo "FAIL: the run directory has no $f"; fail=1; }
done

"$TIDE" recipes/codeparrot.lua "${opts[@]}" --out="$tmp/b" >"$tmp/b.out" 2>"$tmp/b.err" </dev/null &
pid=$!
for _ in $(seq 600); do grep -q '"step":1[2-9],' "$tmp/b/metrics.jsonl" 2>/dev/null && break; sleep 0.05; done
kill -INT "$pid"
wait "$pid"; rc=$?; pid=
cmd=$(sed -n 's/^to resume: tide //p' "$tmp/b.err")
if [ "$rc" -ne 130 ] || [ -z "$cmd" ]; then
  echo "FAIL: Ctrl-C: exit status $rc (expected 130) and resume command '$cmd':"; cat "$tmp/b.err"; exit 1
fi
# the command as printed (its arguments have no spaces here)
"$TIDE" $cmd >"$tmp/b2.out" 2>&1 </dev/null
rc=$?
if [ "$rc" -ne 0 ] || ! grep -q '^resumed from .* at step [0-9]*$' "$tmp/b2.out"; then
  echo "FAIL: the resumed run: exit status $rc"; cat "$tmp/b2.out"; fail=1
fi

# every train and eval loss, by step, as %a
dump='for _, r in ipairs(tide.train.read_metrics(arg[1])) do
  for _, k in ipairs({ "loss/train", "loss/eval" }) do
    if r[k] then print(("%d %s %a"):format(r.step, k, r[k])) end
  end
end'
"$TIDE" -e "$dump" "$tmp/a" | sort -u >"$tmp/a.losses"
"$TIDE" -e "$dump" "$tmp/b" | sort -u >"$tmp/b.losses"
if [ "$(grep -c 'loss/train' "$tmp/a.losses")" -ne 30 ] || ! cmp -s "$tmp/a.losses" "$tmp/b.losses"; then
  echo "FAIL: the interrupted and resumed run's losses differ from the uninterrupted run's:"
  diff "$tmp/a.losses" "$tmp/b.losses" | head -20; fail=1
fi
[ $fail -eq 0 ] && echo "recipe Ctrl-C and resume: passed ($(grep -c . "$tmp/a.losses") losses bitwise equal)"
exit $fail

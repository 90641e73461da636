#!/usr/bin/env bash
# Issue 9: the training recipe (then train_gpt2_tiny.lua, now codeparrot.lua)
# with --lr=1e38 printed "eval loss 8.3271 -> nan" and exited 0, since its
# check compared with NaN. It must stop at the first non-finite loss with exit
# status 1 and say so, and leave no partial shard directory (RUN/data.partial)
# on that path or after a data error. A small corpus (1 MB of this
# machine's Python), a 300-token vocabulary and 5 steps keep it to seconds.
#   bash tests/cli/test_recipe_nan.sh path/to/tide
set -u
TIDE=${1:?usage: test_recipe_nan.sh path/to/tide}
case $TIDE in /*) ;; *) TIDE=$PWD/$TIDE ;; esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
"$TIDE" recipes/codeparrot.lua --steps=5 --lr=1e38 --corpus="$tmp/corpus.jsonl.gz" --out="$tmp/run" \
  --corpus_mb=1 --vocab_size=300 --batch_size=2 --seq_length=16 --model=tiny >"$tmp/out" 2>"$tmp/err" </dev/null
rc=$?
if [ "$rc" -ne 1 ]; then
  echo "FAIL: exit status $rc, expected 1"; fail=1
fi
if ! grep -q "codeparrot: step [0-9]*: the loss is .* training diverged" "$tmp/err"; then
  echo "FAIL: no divergence message on stderr:"; cat "$tmp/err"; fail=1
fi
if grep -q "eval loss .* -> " "$tmp/out"; then
  echo "FAIL: training went on to the final evaluation:"; cat "$tmp/out"; fail=1
fi
left=$(ls -d "$tmp"/run/data.partial 2>/dev/null)
if [ -n "$left" ] || [ ! -d "$tmp/run/data" ]; then
  echo "FAIL: the shard directory is not whole: $(ls "$tmp/run")"; fail=1
fi
# a data error after the shards are written (sequences of 100000 tokens: too few for a batch) is a
# one-line error, and leaves the shards whole
"$TIDE" recipes/codeparrot.lua --steps=5 --corpus="$tmp/corpus.jsonl.gz" --out="$tmp/run2" \
  --vocab_size=300 --batch_size=2 --seq_length=100000 --model=tiny >"$tmp/out" 2>"$tmp/err" </dev/null
rc=$?
if [ "$rc" -ne 1 ] || ! grep -q "^codeparrot: shards: rank 0 gets" "$tmp/err" || grep -q traceback "$tmp/err"; then
  echo "FAIL: --seq_length=100000: exit status $rc, expected 1 with the loader's error:"; cat "$tmp/err"; fail=1
fi
left=$(ls -d "$tmp"/run2/data.partial 2>/dev/null)
if [ -n "$left" ]; then
  echo "FAIL: after the error a partial shard directory was left: $left"; fail=1
fi
[ $fail -eq 0 ] && echo "recipe NaN check: passed"
exit $fail

#!/usr/bin/env bash
# Issue 9: recipes/train_gpt2_tiny.lua --lr=1e38 printed "eval loss 8.3271 ->
# nan" and exited 0, since its check compared with NaN. It must stop at the
# first non-finite loss with exit status 1 and say so, and remove its
# temporary shard directory on that path too. A small corpus (1 MB of this
# machine's Python), a 300-token vocabulary and 5 steps keep it to seconds.
#   bash tests/cli/test_recipe_nan.sh path/to/tide
set -u
TIDE=${1:?usage: test_recipe_nan.sh path/to/tide}
case $TIDE in /*) ;; *) TIDE=$PWD/$TIDE ;; esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
# the recipe's shard directory is made under $TMPDIR
TMPDIR=$tmp "$TIDE" recipes/train_gpt2_tiny.lua --steps=5 --lr=1e38 --corpus="$tmp/corpus.jsonl.gz" --out="$tmp/run" \
  --corpus_mb=1 --vocab=300 --batch=2 --seq=16 >"$tmp/out" 2>"$tmp/err" </dev/null
rc=$?
if [ "$rc" -ne 1 ]; then
  echo "FAIL: exit status $rc, expected 1"; fail=1
fi
if ! grep -q "train_gpt2_tiny: step [0-9]*: the loss is .* training diverged" "$tmp/err"; then
  echo "FAIL: no divergence message on stderr:"; cat "$tmp/err"; fail=1
fi
if grep -q "eval loss .* -> " "$tmp/out"; then
  echo "FAIL: training went on to the final evaluation:"; cat "$tmp/out"; fail=1
fi
left=$(ls -d "$tmp"/tide_train_gpt2_tiny.* 2>/dev/null)
if [ -n "$left" ]; then
  echo "FAIL: the temporary shard directory was left: $left"; fail=1
fi
# an error after the shards are written (sequences of 100000 tokens: too few for a batch) removes them too
TMPDIR=$tmp "$TIDE" recipes/train_gpt2_tiny.lua --steps=5 --corpus="$tmp/corpus.jsonl.gz" --out="$tmp/run2" \
  --vocab=300 --batch=2 --seq=100000 >"$tmp/out" 2>"$tmp/err" </dev/null
rc=$?
if [ "$rc" -ne 1 ] || ! grep -q "shards: rank 0 gets" "$tmp/err"; then
  echo "FAIL: --seq=100000: exit status $rc, expected 1 with the loader's error:"; cat "$tmp/err"; fail=1
fi
left=$(ls -d "$tmp"/tide_train_gpt2_tiny.* 2>/dev/null)
if [ -n "$left" ]; then
  echo "FAIL: after an error the temporary shard directory was left: $left"; fail=1
fi
[ $fail -eq 0 ] && echo "recipe NaN check: passed"
exit $fail

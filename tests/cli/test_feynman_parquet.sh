#!/usr/bin/env bash
# recipes/feynman.lua from Parquet, as the llms-101 tutorial reads its data:
# the committed file of the tutorial's 7-column schema
# (tests/data/feynman/feynman_tiny.parquet, Snappy, dictionary-encoded, two
# row groups; tools/make_feynman_parquet.py) read through
# tide.data.parquet(path, {columns = {'section_text'}}) gives the same run,
# line for line, as the same rows from JSON Lines (test_feynman_recipe.sh
# checks that run itself). Needs tide's Parquet reader (issue 15).
set -u
TIDE=${1:?usage: test_feynman_parquet.sh path/to/tide}
case $TIDE in /*) ;; *) TIDE=$PWD/$TIDE ;; esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
opts=(--rows=48 --n_embd=16 --n_positions=64 --max_steps=3 --logging_steps=1 --seed=3)
"$TIDE" recipes/feynman.lua "${opts[@]}" --output_dir="$tmp/pq" >"$tmp/pq.log" 2>&1 </dev/null \
  || { echo "FAIL: the Parquet run:"; cat "$tmp/pq.log"; exit 1; }
"$TIDE" recipes/feynman.lua --data=tests/data/feynman/feynman_tiny.jsonl "${opts[@]}" --output_dir="$tmp/js" \
  >"$tmp/js.log" 2>&1 </dev/null || { echo "FAIL: the JSON Lines run:"; cat "$tmp/js.log"; exit 1; }
# the same but for the data's name, the run directory and the timings
norm() { sed -e '1s/^[^:]*: //' -e "s|$tmp/[a-z]*|DIR|g" -e 's/ [0-9]* tok\/s.*//' "$1"; }
if ! diff <(norm "$tmp/js.log") <(norm "$tmp/pq.log"); then
  echo "FAIL: the Parquet run differs from the JSON Lines run (above: < jsonl, > parquet)"; exit 1
fi
grep -q '34 sections; Text size: 3448 words' "$tmp/pq.log" || { echo "FAIL: the word count"; cat "$tmp/pq.log"; exit 1; }
echo "the Parquet and JSON Lines runs agree"

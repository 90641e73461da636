#!/usr/bin/env bash
# `tide plot RUN [RUN ...] [--out=FILE]`: prints the SVG's path, writes a
# well-formed SVG (checked with python3's xml parser and rendered with
# rsvg-convert where they are installed), and fails clearly on a missing
# run, an empty metrics file or a bad option.
#   bash tests/cli/test_plot.sh path/to/tide
set -u
TIDE=${1:?usage: test_plot.sh path/to/tide}
case $TIDE in /*) ;; *) TIDE=$PWD/$TIDE ;; esac

pass=0 fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ok() { pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }
run() {
  "$TIDE" "$@" </dev/null >"$tmp/out" 2>"$tmp/err"
  rc=$?
  out=$(cat "$tmp/out")
  err=$(cat "$tmp/err")
}
expect_rc() { if [ "$rc" -eq "$2" ]; then ok; else bad "$1: exit status $rc, expected $2 (stderr: $err)"; fi; }
expect_err_has() { case $err in *"$2"*) ok ;; *) bad "$1: stderr lacks '$2': $err" ;; esac; }

# two small runs; the second was killed in the middle of a line
mkdir -p "$tmp/runs/a" "$tmp/runs/b" "$tmp/runs/empty"
for s in 10 20 30 40 50; do
  echo "{\"step\":$s,\"time\":$s.5,\"loss/train\":$((100 - s))e-1,\"lr\":0.0003,\"tokens_per_s\":1200$s}"
done >"$tmp/runs/a/metrics.jsonl"
echo '{"step":50,"loss/eval":5.5,"perplexity":244.7}' >>"$tmp/runs/a/metrics.jsonl"
printf '{"step":10,"loss/train":9.5,"lr":0.0006}\n{"step":20,"loss/train":8.1,"lr":0.0006}\n{"step":30,"lo' \
  >"$tmp/runs/b/metrics.jsonl"
: >"$tmp/runs/empty/metrics.jsonl"

cd "$tmp"
run plot runs/a
expect_rc 'plot one run' 0
[ "$out" == runs/a/plot.svg ] && ok || bad "plot one run: stdout '$out', expected runs/a/plot.svg"
[ -s runs/a/plot.svg ] && ok || bad 'runs/a/plot.svg was not written'

run plot runs/a runs/b --out=cmp.svg
expect_rc 'plot two runs' 0
[ "$out" == cmp.svg ] && ok || bad "plot two runs: stdout '$out', expected cmp.svg"
expect_err_has 'truncated line noted' 'runs/b/metrics.jsonl:3: skipped the truncated last line'
n=$(grep -c 'class="legend-entry"' cmp.svg)
[ "$n" -eq 2 ] && ok || bad "two runs: $n legend entries"

if command -v python3 >/dev/null 2>&1; then
  if python3 -c 'import sys, xml.etree.ElementTree as E; E.parse(sys.argv[1])' cmp.svg; then ok; else bad 'cmp.svg is not well-formed XML'; fi
else
  echo 'skipped: no python3 (XML check)'
fi
if command -v rsvg-convert >/dev/null 2>&1; then
  if rsvg-convert cmp.svg -o cmp.png 2>"$tmp/rsvg_err" && [ -s cmp.png ]; then ok; else bad "rsvg-convert failed: $(cat "$tmp/rsvg_err")"; fi
else
  echo 'skipped: no rsvg-convert (render check)'
fi

run plot runs/missing
expect_rc 'missing run' 1
expect_err_has 'missing run' 'runs/missing/metrics.jsonl: cannot read the metrics'
run plot runs/empty
expect_rc 'empty run' 1
expect_err_has 'empty run' 'runs/empty/metrics.jsonl: the metrics file is empty'
run plot
expect_rc 'no run' 1
expect_err_has 'no run' 'usage: tide plot RUN'
run plot runs/a --bogus=1
expect_rc 'bad option' 1
expect_err_has 'bad option' 'unknown option --bogus'
run plot --help
expect_rc 'plot --help' 0
run -h
case $out in *"tide plot"*) ok ;; *) bad "-h does not mention tide plot: $out" ;; esac

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

#!/usr/bin/env bash
# Parquet reading, tide against pyarrow and pandas on the same ~100 MB
# CodeParrot-schema file (Snappy, pyarrow's defaults), same run: one string
# column into the language's strings (tide: Lua strings through
# tide.data.parquet; pyarrow: read_table(...).column(...).to_pylist();
# pandas: read_parquet(columns=...)), then every column into one record per
# row. Best of 3 each; ratios printed. The floor: reading the file (cat) and
# decompressing its Snappy pages, which every reader pays.
#   bench/parquet.sh [MB] [column]   (python from $TIDE_REF_PYTHON, with pyarrow and pandas)
set -euo pipefail
cd "$(dirname "$0")/.."
mb=${1:-100}
col=${2:-content}
py=${TIDE_REF_PYTHON:-python3}
tide=${TIDE:-./build/tide}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$py" bench/parquet_peer.py make "$work/data.parquet" "$mb"
t0=$(date +%s.%N); cat "$work/data.parquet" >/dev/null; t1=$(date +%s.%N)
echo "cat       $(stat -c %s "$work/data.parquet") bytes in $(awk "BEGIN{print $t1 - $t0}") s"
"$tide" bench/parquet.lua "$work/data.parquet" "$col" | tee "$work/tide.txt"
"$py" bench/parquet_peer.py read "$work/data.parquet" "$col" | tee "$work/peer.txt"
secs() { grep -F "$2" "$1" | sed -E 's/.*: ([0-9.]+) s.*/\1/'; }
t_col=$(secs "$work/tide.txt" 'into Lua strings')
t_all=$(secs "$work/tide.txt" 'every column')
p_col=$(secs "$work/peer.txt" 'to_pylist(): ')
p_pd=$(secs "$work/peer.txt" "read_parquet(columns=[$col]) (dtype")
p_pdl=$(secs "$work/peer.txt" 'tolist()')
p_all=$(secs "$work/peer.txt" 'every column')
awk -v a="$t_col" -v b="$p_col" -v c="$p_pd" -v d="$p_pdl" -v e="$t_all" -v f="$p_all" 'BEGIN {
  printf "ratios (peer time / tide time, above 1: tide faster)\n"
  printf "  one column to strings: pyarrow to_pylist %.2fx, pandas read_parquet %.2fx, pandas tolist %.2fx\n", b / a, c / a, d / a
  printf "  every column to records: pyarrow to_pylist %.2fx\n", f / e }'

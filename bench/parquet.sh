#!/usr/bin/env bash
# Parquet reading, tide against pyarrow and pandas on the same ~100 MB
# CodeParrot-schema file (Snappy, pyarrow's defaults), same run: one string
# column into the language's strings (tide: Lua strings through
# tide.data.parquet; pyarrow: read_table(...).column(...).to_pylist();
# pandas: read_parquet(columns=...)), then every column into one record per
# row. Best of 3 each (wall time, and the CPU time of all threads of that
# run, the steadier measure on a shared machine); ratios printed. The floor: reading the file (cat) and
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
secs() { grep -F "$2" "$1" | sed -E 's/.*: ([0-9.]+) s \(cpu ([0-9.]+) s\).*/\1 \2/'; }
t_col=$(secs "$work/tide.txt" 'into Lua strings')
t_all=$(secs "$work/tide.txt" 'every column')
p_col=$(secs "$work/peer.txt" 'to_pylist(): ')
p_pd=$(secs "$work/peer.txt" "read_parquet(columns=[$col]) (dtype")
p_pdl=$(secs "$work/peer.txt" 'tolist()')
p_all=$(secs "$work/peer.txt" 'every column')
read -r tw tc <<<"$t_col"; read -r pw pc <<<"$p_col"; read -r dw dc <<<"$p_pd"; read -r lw lc <<<"$p_pdl"
read -r aw ac <<<"$t_all"; read -r bw bc <<<"$p_all"
awk -v tw="$tw" -v tc="$tc" -v pw="$pw" -v pc="$pc" -v dw="$dw" -v dc="$dc" -v lw="$lw" -v lc="$lc" \
    -v aw="$aw" -v ac="$ac" -v bw="$bw" -v bc="$bc" 'BEGIN {
  printf "ratios, peer / tide (above 1: tide faster), wall and CPU time\n"
  printf "  one column to strings: pyarrow to_pylist %.2fx wall, %.2fx CPU; pandas read_parquet %.2fx, %.2fx; pandas tolist %.2fx, %.2fx\n",
    pw / tw, pc / tc, dw / tw, dc / tc, lw / tw, lc / tc
  printf "  every column to records: pyarrow to_pylist %.2fx wall, %.2fx CPU\n", bw / aw, bc / ac }'

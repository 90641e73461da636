#!/usr/bin/env bash
# The seeds' data path, tide against Hugging Face datasets on the same
# jsonl.gz, same threads, same run: reading alone, and jsonl.gz -> keyword
# filter -> GPT-2 tokens -> 1024-token packed sequences -> shards. Prints
# times, each process's peak RSS and a checksum of the sequences (equal when
# both produced the same tokens), and `zcat | wc -l` as the reading floor.
#   bench/data_pipeline.sh [threads] [MB] [filter|all]   (python from $TIDE_REF_PYTHON, with datasets)
# The corpus is built by recipes/build_corpus.lua from $ROOTS (default: the
# reference Python's library, for size) up to MB megabytes of source.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
mb=${2:-100}
mode=${3:-filter}
py=${TIDE_REF_PYTHON:-python3}
tide=${TIDE:-./build/tide}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
roots=${ROOTS:-$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')}
"$tide" recipes/build_corpus.lua --out="$work/corpus.jsonl.gz" --roots="$roots" --max_mb="$mb"
echo "corpus: $(stat -c %s "$work/corpus.jsonl.gz") bytes gzip; threads $threads; mode $mode"
rss() { /usr/bin/time -f '          peak RSS %M KB, wall %e s' "$@"; }
t0=$(date +%s.%N); lines=$(zcat "$work/corpus.jsonl.gz" | wc -l); t1=$(date +%s.%N)
echo "zcat|wc   $lines lines in $(awk "BEGIN{print $t1 - $t0}") s"
rss "$tide" bench/data_pipeline.lua "$work/corpus.jsonl.gz" "$work/tide" "$threads" "$mode"
rss "$py" bench/data_pipeline_peer.py "$work/corpus.jsonl.gz" "$work/hf" "$threads" "$mode"

#!/usr/bin/env bash
# Reading a nested list field from JSON Lines, the DistilGPT2 guide's first
# step (eli5.flatten(), then " ".join(x) for x in examples["answers.text"]):
# tide's dotted field against Python in the same run on the same file.
#   tide nested   tide.data.jsonl(f, {fields = {'answers.text'}}): the path is
#                 followed in C, only the list is copied out and decoded
#   tide decode   fields = {'answers'}: the whole struct decoded in Lua, then .text
#   py json       json.loads per line, then r['answers']['text']
#   py datasets   load_dataset('json') + flatten() + the join, as the guide
#                 (when datasets is installed; it caches Arrow files, so the
#                 cache goes in a temporary directory and is built in the timing)
# Each prints the joined bytes: equal when all read the same text. The floor
# is `wc -l` on the file (one pass over the bytes).
#   bench/jsonl_nested.sh [MB]   (python from $TIDE_REF_PYTHON)
set -euo pipefail
cd "$(dirname "$0")/.."
mb=${1:-50}
py=${TIDE_REF_PYTHON:-python3}
tide=${TIDE:-./build/tide}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src=tests/data/finetune/eli5_tiny.jsonl
# the committed ELI5-shaped rows repeated to MB megabytes
per=$(stat -c %s "$src")
for _ in $(seq $(( (mb * 1000000 + per - 1) / per ))); do cat "$src"; done >"$work/eli5.jsonl"
echo "file: $(stat -c %s "$work/eli5.jsonl") bytes, $(wc -l <"$work/eli5.jsonl") lines"
timed() { local label=$1; shift; /usr/bin/time -f "$label  wall %e s, peak RSS %M KB" "$@"; }
timed "wc -l      " wc -l "$work/eli5.jsonl" >/dev/null
timed "tide nested" "$tide" -e "
local n = 0
for r in tide.data.jsonl('$work/eli5.jsonl', { fields = { 'answers.text' }, progress = false }) do
  n = n + #table.concat(r['answers.text'], ' ')
end
print('tide nested bytes', n)"
timed "tide decode" "$tide" -e "
local n = 0
for r in tide.data.jsonl('$work/eli5.jsonl', { fields = { 'answers' }, progress = false }) do
  n = n + #table.concat(r.answers.text, ' ')
end
print('tide decode bytes', n)"
timed "py json    " "$py" -c "
import json
n = 0
with open('$work/eli5.jsonl', encoding='utf-8') as f:
    for line in f:
        n += len(' '.join(json.loads(line)['answers']['text']).encode())
print('py json bytes', n)"
if "$py" -c 'import datasets' 2>/dev/null; then
  HF_DATASETS_CACHE="$work/hf" HF_HUB_OFFLINE=1 timed "py datasets" "$py" -c "
from datasets import load_dataset, disable_progress_bars
disable_progress_bars()
ds = load_dataset('json', data_files='$work/eli5.jsonl', split='train').flatten()
n = sum(len(' '.join(x).encode()) for x in ds['answers.text'])
print('py datasets bytes', n)"
fi

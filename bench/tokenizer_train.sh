#!/usr/bin/env bash
# BPE training, tide against Hugging Face tokenizers' BpeTrainer: time and
# peak memory (max RSS of each whole process) to a 32,768 vocabulary on the
# same Python sources (the CodeParrot seeds' case), same threads, same run;
# then checks the two merge lists are identical.
#   bench/tokenizer_train.sh [threads] [MB] [vocab]   (python from $TIDE_REF_PYTHON, with tokenizers)
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
mb=${2:-64}
vocab=${3:-32768}
py=${TIDE_REF_PYTHON:-python3}
tide=${TIDE:-./build/tide}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# the .py files under the interpreter's library (standard library and
# site-packages), in sorted order, UTF-8 only (both trainers get the same
# text), until MB megabytes
root=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
"$py" - "$root" "$mb" > "$work/files" 2> "$work/size" <<'PY'
import os, sys
root, limit = sys.argv[1], int(sys.argv[2]) * 10**6
paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith('.py'))
total = 0
for p in paths:
    if total >= limit:
        break
    b = open(p, 'rb').read()
    try:
        b.decode('utf-8')
    except UnicodeDecodeError:
        continue
    total += len(b)
    print(p)
print(f'{total} bytes in the corpus', file=sys.stderr)
PY
echo "corpus: $(cat "$work/size"), $(wc -l < "$work/files") files of $root; threads $threads; vocab $vocab"
export OMP_NUM_THREADS=$threads RAYON_NUM_THREADS=$threads TOKENIZERS_PARALLELISM=true
rss() { /usr/bin/time -f '          peak RSS %M KB, wall %e s' "$@"; }
rss "$tide" -e 'print("tide      idle")'
rss "$tide" bench/tokenizer_train.lua "$work/files" "$work/tide" "$vocab"
rss "$py" -c 'import tokenizers; print("hf        idle")'
rss "$py" bench/tokenizer_train_peer.py "$work/files" "$work/hf" "$vocab"
if cmp -s <(grep -v '^#' "$work/tide/merges.txt") <(grep -v '^#' "$work/hf/merges.txt"); then
  echo "merges identical: $(grep -vc '^#' "$work/tide/merges.txt")"
else
  echo "merges DIFFER"; exit 1
fi

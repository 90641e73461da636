#!/usr/bin/env bash
# GPT-2 encoding speed: tide against Hugging Face tokenizers and tiktoken on
# the same corpus (Python's standard library sources, real code like the
# seeds' CodeParrot data), same thread count, same run.
#   bench/tokenizer.sh [threads] [MB]     (python from $TIDE_REF_PYTHON, with tokenizers and tiktoken)
#   CORPUS=english bench/tokenizer.sh 1   English prose instead of Python code (the seeds and docs, 222 KB)
#   CORPUS=docs bench/tokenizer.sh 1      documentation at scale: the .md/.rst files
#                                         under the Python library (READMEs, package docs)
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
mb=${2:-8}
py=${TIDE_REF_PYTHON:-python3}
gpt2=${GPT2_DIR:-data/gpt2}
corpus=$(mktemp)
trap 'rm -f "$corpus"' EXIT
kind=${CORPUS:-python}
if [ "$kind" = english ]; then
  # English prose: the seeds (tutorials and book chapters) and tide's docs
  files=$(ls ../shared/seeds/*.txt docs/*.md 2>/dev/null)
  label="English prose (seeds and docs)"
elif [ "$kind" = docs ]; then
  root=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
  files=$(find "$root" \( -name '*.md' -o -name '*.rst' \) -type f | sort)
  label="English documentation (.md/.rst under $(basename "$root"))"
else
  stdlib=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
  files=$(find "$stdlib" -maxdepth 1 -name '*.py' | sort)
  label="$(basename "$stdlib") sources"
fi
# files joined by two blank lines (the documents for batch encoding)
# (head closing the pipe early is the normal way this ends, not an error)
{ for f in $files; do cat "$f"; printf '\n\n\n'; done; } 2>/dev/null | head -c $((mb * 1000000)) > "$corpus" || true
# keep whole UTF-8 characters at the cut
"$py" -c "import sys; p=sys.argv[1]; b=open(p,'rb').read(); open(p,'wb').write(b.decode('utf-8','ignore').encode())" "$corpus"
echo "corpus: $(wc -c < "$corpus") bytes of $label; threads $threads"
./build/tide bench/tokenizer_encode.lua "$corpus" "$gpt2" "$threads"
"$py" bench/tokenizer_peers.py "$corpus" "$gpt2" "$threads"

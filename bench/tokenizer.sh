#!/usr/bin/env bash
# GPT-2 encoding speed: tide against Hugging Face tokenizers and tiktoken on
# the same corpus (Python's standard library sources, real code like the
# seeds' CodeParrot data), same thread count, same run.
#   bench/tokenizer.sh [threads] [MB]     (python from $TIDE_REF_PYTHON, with tokenizers and tiktoken)
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
mb=${2:-8}
py=${TIDE_REF_PYTHON:-python3}
gpt2=${GPT2_DIR:-data/gpt2}
corpus=$(mktemp)
trap 'rm -f "$corpus"' EXIT
stdlib=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
# files joined by two blank lines (the documents for batch encoding)
find "$stdlib" -maxdepth 1 -name '*.py' | sort | while read -r f; do cat "$f"; printf '\n\n\n'; done | head -c $((mb * 1000000)) > "$corpus"
# keep whole UTF-8 characters at the cut
"$py" -c "import sys; p=sys.argv[1]; b=open(p,'rb').read(); open(p,'wb').write(b.decode('utf-8','ignore').encode())" "$corpus"
echo "corpus: $(wc -c < "$corpus") bytes of $(basename "$stdlib") sources; threads $threads"
./build/tide bench/tokenizer_encode.lua "$corpus" "$gpt2" "$threads"
"$py" bench/tokenizer_peers.py "$corpus" "$gpt2" "$threads"

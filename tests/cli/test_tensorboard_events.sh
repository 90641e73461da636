#!/usr/bin/env bash
# tide's TensorBoard event file, read by the `tensorboard` package's own
# record reader and EventAccumulator (tools/check_tensorboard_events.py): the
# CRCs check, the first event is the file version, and the scalars equal the
# numbers in metrics.jsonl. A corrupted copy must fail the same check. Needs a
# Python with tensorboard ($TIDE_REF_PYTHON, /tmp/tbvenv, or python3); without
# one it prints "skipped: no tensorboard" and exits 77.
set -u
TIDE=${1:-./build/tide}
source "$(dirname "$0")/ref_python.sh"
ref_python 'import tensorboard' "tensorboard"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$TIDE" -e "
local metrics = require 'tide.train.metrics'
local log = metrics.Logger('$dir/run', { total_steps = 40, log_every = 10, progress = false })
for step = 1, 40 do
  log:log(step, { ['loss/train'] = 6 / step, lr = 3e-4 * math.min(1, step / 10), grad_norm = 1 + step % 3,
                  tokens_per_s = 5000 + step, samples = 8 * step, steps = step })
  if step % 20 == 0 then log:log(step, { ['loss/eval'] = 5 / step, perplexity = math.exp(5 / step) }) end
end
log:log(40, { perplexity = math.huge, grad_norm = 0 / 0 })
log:close()
" || { echo "FAIL: tide could not write the run"; exit 1; }
"$py" tools/check_tensorboard_events.py "$dir/run" --expect "$dir/run/metrics.jsonl" || exit 1
# flip one byte in the middle of the file: tensorboard's reader must refuse it
f=$(ls "$dir"/run/tb/*tfevents*)
"$py" -c "
import sys
p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); b[len(b) // 2] ^= 0x10; open(p, 'wb').write(b)" "$f"
if "$py" tools/check_tensorboard_events.py "$dir/run" --expect "$dir/run/metrics.jsonl" >"$dir/out" 2>&1; then
  echo "FAIL: a corrupted event file passed the check"; cat "$dir/out"; exit 1
fi
grep -q "crc32 check" "$dir/out" || { echo "FAIL: the corruption was not reported as a CRC error:"; cat "$dir/out"; exit 1; }
echo "ok: a corrupted copy is refused ($(tail -1 "$dir/out"))"

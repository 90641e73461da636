#!/usr/bin/env bash
# The Logger's progress output as a user sees it: with stdout a pipe, plain
# lines every log_every steps and no terminal control characters; on a
# terminal (a pseudo-terminal from script(1)), one line redrawn in place with
# \r and erase-to-end-of-line, and a newline at close. Skipped (77) without script(1).
set -u
TIDE=${1:-./build/tide}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat >"$dir/run.lua" <<LUA
local metrics = require 'tide.train.metrics'
local log = metrics.Logger('$dir/run', { total_steps = 30, log_every = 10 })
for step = 1, 30 do
  log:log(step, { ['loss/train'] = 2 + 1 / step, lr = 1e-3, grad_norm = 0.5, tokens_per_s = 4321 })
end
log:close()
print('mode ' .. log.mode)
LUA
"$TIDE" "$dir/run.lua" >"$dir/pipe.txt" || { echo "FAIL: tide failed"; exit 1; }
if grep -q $'\r' "$dir/pipe.txt" || grep -q $'\033' "$dir/pipe.txt"; then
  echo "FAIL: terminal control characters on a pipe:"; cat -A "$dir/pipe.txt"; exit 1
fi
n=$(grep -c '^step [0-9]*/30  loss [0-9.]*  lr 1.00e-03  grad norm 0.500  4321 tok/s  elapsed [0-9:]*  ETA [0-9:]*$' "$dir/pipe.txt")
[ "$n" = 3 ] || { echo "FAIL: expected 3 plain progress lines, got $n:"; cat "$dir/pipe.txt"; exit 1; }
grep -q '^mode plain$' "$dir/pipe.txt" || { echo "FAIL: not plain mode on a pipe"; exit 1; }
echo "ok: pipe: $n plain lines"
if ! command -v script >/dev/null 2>&1; then echo "skipped: no script(1) for the terminal half"; exit 77; fi
script -qec "'$TIDE' '$dir/run.lua'" /dev/null >"$dir/tty.txt" </dev/null || { echo "FAIL: tide under script failed"; exit 1; }
grep -q 'mode live' "$dir/tty.txt" || { echo "FAIL: not live mode on a terminal:"; cat -A "$dir/tty.txt"; exit 1; }
draws=$(grep -o $'\rstep [0-9]*/30' "$dir/tty.txt" | wc -l)
[ "$draws" = 30 ] || { echo "FAIL: expected 30 redraws, got $draws"; cat -A "$dir/tty.txt" | head; exit 1; }
grep -q $'\rstep 30/30  loss 2.0333  lr 1.00e-03  grad norm 0.500  4321 tok/s  elapsed 0:0[0-9]  ETA 0:00\033\[K' "$dir/tty.txt" \
  || { echo "FAIL: the last live line is not as expected:"; cat -A "$dir/tty.txt" | tail -3; exit 1; }
echo "ok: terminal: $draws redraws in place"

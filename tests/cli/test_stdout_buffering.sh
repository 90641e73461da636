#!/usr/bin/env bash
# A run whose stdout is a file or a pipe writes each line as it is printed,
# not when the process exits: a recipe prints a line, then blocks reading a
# fifo; the line must be in the output file while the process is alive.
#   bash tests/cli/test_stdout_buffering.sh path/to/tide
set -u
TIDE=${1:?usage: test_stdout_buffering.sh path/to/tide}
case $TIDE in /*) ;; *) TIDE=$PWD/$TIDE ;; esac
tmp=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
fail=0
mkfifo "$tmp/gate"
cat >"$tmp/recipe.lua" <<'LUA'
print('step 1 loss 4.25')
io.write('no newline yet')
local f = assert(io.open(arg[1], "r"))
f:read('*l')
f:close()
print(' then the rest')
LUA

# check_live WHAT: starts the recipe with stdout to $tmp/out through WHAT
# ('file' or 'pipe') and waits up to 10 s for its first line while it blocks
check_live() {
  rm -f "$tmp/out"
  if [ "$1" = file ]; then
    "$TIDE" "$tmp/recipe.lua" "$tmp/gate" >"$tmp/out" 2>"$tmp/err" &
    pid=$!
  else
    # cat copies whatever reaches the pipe into the file at once
    ( "$TIDE" "$tmp/recipe.lua" "$tmp/gate" 2>"$tmp/err" | cat >"$tmp/out" ) &
    pid=$!
  fi
  local seen=
  for _ in $(seq 100); do
    if grep -q '^step 1 loss 4.25$' "$tmp/out" 2>/dev/null; then seen=1; break; fi
    sleep 0.1
  done
  if [ -n "$seen" ]; then
    echo "ok: first line reached the $1 while the run was alive"
  else
    echo "FAIL: stdout to a $1: the first line did not appear within 10 s (file holds: '$(cat "$tmp/out" 2>/dev/null)')"
    fail=1
  fi
  echo go >"$tmp/gate"  # lets the recipe finish
  wait "$pid"
  local rc=$?
  pid=
  if [ "$rc" -ne 0 ]; then echo "FAIL: the $1 run exited $rc: $(cat "$tmp/err")"; fail=1; fi
  if [ "$(cat "$tmp/out")" != "$(printf 'step 1 loss 4.25\nno newline yet then the rest')" ]; then
    echo "FAIL: the $1 run's output is '$(cat "$tmp/out")'"
    fail=1
  fi
}
check_live file
check_live pipe
exit $fail

#!/usr/bin/env bash
# Issue 16, launching and failures: `tide launch -n N` runs a program on N
# local processes with torchrun's variables and each line prefixed by its
# rank; a failing rank stops the others and its exit code is tide launch's;
# a rank killed in the middle of a collective, or one that stops taking part
# (the watchdog's timeout), ends the job within 60 s with a message naming
# the rank; a Lua error on one rank ends every rank. Skips (77) the parts that
# need Open MPI where mpirun or tide's MPI backend is missing.
#   bash tests/cli/test_dist_launch.sh path/to/tide
set -u
TIDE=${1:?usage: test_dist_launch.sh path/to/tide}
case $TIDE in /*) ;; *) TIDE=$PWD/$TIDE ;; esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
export OMP_NUM_THREADS=1

# runs "$@" with output to $tmp/out, $tmp/err; sets rc and secs
run() {
  local t0=$SECONDS
  timeout -k 5 120 "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
  rc=$?
  secs=$((SECONDS - t0))
}
show() { echo "--- stdout"; cat "$tmp/out"; echo "--- stderr"; tail -30 "$tmp/err"; }

# usage errors
run "$TIDE" launch recipe.lua
if [ "$rc" -ne 2 ] || ! grep -q 'number of processes is missing' "$tmp/err"; then echo "FAIL: no -n: rc $rc"; show; fail=1; fi
run "$TIDE" launch -n 0 recipe.lua
if [ "$rc" -ne 2 ] || ! grep -q 'from 1 to 4096, got 0' "$tmp/err"; then echo "FAIL: -n 0: rc $rc"; show; fail=1; fi
run "$TIDE" launch -n 2 --bogus recipe.lua
if [ "$rc" -ne 2 ] || ! grep -q 'unknown option --bogus' "$tmp/err"; then echo "FAIL: --bogus: rc $rc"; show; fail=1; fi

# 1. started directly (no MPI needed): torchrun's variables, prefixes, a failing rank's code
cat >"$tmp/env.lua" <<'LUA'
local function e(k) return os.getenv(k) or '-' end
print(('env %s %s %s %s %s %s'):format(e('RANK'), e('WORLD_SIZE'), e('LOCAL_RANK'), e('LOCAL_WORLD_SIZE'),
  e('MASTER_ADDR'), e('MASTER_PORT')))
io.stderr:write('to stderr\n')
if tide.args.fail and tide.args.fail == tonumber(os.getenv('RANK')) then os.exit(5) end
if tide.args.wait then local t0 = os.time(); while os.time() - t0 < tide.args.wait do end end
LUA
run "$TIDE" launch -n 3 --no-mpirun --master_port=4321 "$tmp/env.lua"
for r in 0 1 2; do
  if ! grep -qx "\[rank $r\] env $r 3 $r 3 127.0.0.1 4321" "$tmp/out" || ! grep -qx "\[rank $r\] to stderr" "$tmp/err"; then
    echo "FAIL: direct launch: rank $r's lines are missing or unprefixed"; show; fail=1
  fi
done
[ "$rc" -eq 0 ] || { echo "FAIL: direct launch: rc $rc"; show; fail=1; }
run "$TIDE" launch -n 3 --no-mpirun "$tmp/env.lua" --fail=2 --wait=100
if [ "$rc" -ne 5 ] || [ "$secs" -gt 60 ] || ! grep -q 'tide launch: rank 2 (pid [0-9]*) exited with code 5; stopping the other ranks' "$tmp/err"; then
  echo "FAIL: direct launch, rank 2 fails: rc $rc after $secs s"; show; fail=1
fi

if ! command -v mpirun >/dev/null 2>&1 || [ ! -f "$(dirname "$TIDE")/libtide_mpi.so" ]; then
  [ $fail -eq 0 ] && { echo "skipped: the MPI parts (no mpirun or no libtide_mpi.so); the rest passed"; exit 77; }
  exit 1
fi

# 2. through mpirun: collectives work, lines prefixed, torchrun's variables too
cat >"$tmp/sum.lua" <<'LUA'
local d = tide.dist.init()
local t = tide.ones(5) * (d.rank + 1)
tide.dist.all_reduce(t)
print(('rank %d of %d (RANK=%s LOCAL_RANK=%s) sum %g'):format(d.rank, d.world_size, os.getenv('RANK'),
  os.getenv('LOCAL_RANK'), t[1]:item()))
LUA
run "$TIDE" launch -n 2 "$tmp/sum.lua"
for r in 0 1; do
  grep -qx "\[rank $r\] rank $r of 2 (RANK=$r LOCAL_RANK=$r) sum 3" "$tmp/out" || { echo "FAIL: mpirun launch: rank $r"; show; fail=1; }
done
[ "$rc" -eq 0 ] || { echo "FAIL: mpirun launch: rc $rc"; show; fail=1; }

# 3. a failing rank under mpirun: the others stop, its code comes back
run "$TIDE" launch -n 2 "$tmp/env.lua" --fail=1 --wait=100
if [ "$rc" -ne 5 ] || [ "$secs" -gt 60 ]; then echo "FAIL: mpirun launch, rank 1 fails: rc $rc after $secs s"; show; fail=1; fi

# 4. a rank killed in the middle of a collective: the job ends within 60 s, naming it
cat >"$tmp/die.lua" <<'LUA'
local ffi = require 'ffi'
ffi.cdef 'int getpid(void); int kill(int pid, int sig);'
local d = tide.dist.init()
local t = tide.ones(1000000)
for step = 1, 1000000 do
  if d.rank == 1 and step == 20 then ffi.C.kill(ffi.C.getpid(), 9) end
  tide.dist.all_reduce(t, 'avg')
end
LUA
run "$TIDE" launch -n 2 "$tmp/die.lua"
if [ "$rc" -eq 0 ] || [ "$secs" -gt 60 ] || ! grep -q 'process rank 1 .*exited on signal 9' "$tmp/err"; then
  echo "FAIL: rank 1 killed mid-collective: rc $rc after $secs s"; show; fail=1
fi

# 5. a rank that stops taking part: the watchdog ends the job after the timeout, naming the call
cat >"$tmp/hang.lua" <<'LUA'
local d = tide.dist.init{timeout = 3}
local t = tide.ones(7)
tide.dist.all_reduce(t)
if d.rank == 1 then local t0 = os.time(); while os.time() - t0 < 100 do end end
tide.dist.all_reduce(t)
LUA
run "$TIDE" launch -n 2 "$tmp/hang.lua"
if [ "$rc" -ne 124 ] || [ "$secs" -gt 60 ] ||
   ! grep -q '\[rank 0\] tide.dist: rank 0 of 2: all_reduce(sum) of f32 \[7\] (call #2) has not completed after 3 s' "$tmp/err"; then
  echo "FAIL: watchdog: rc $rc after $secs s"; show; fail=1
fi

# 6. a Lua error on one rank while the other waits in a collective: every rank ends, the error is named
cat >"$tmp/err.lua" <<'LUA'
local d = tide.dist.init()
if d.rank == 1 then error('bad batch on rank 1') end
tide.dist.barrier()
LUA
run "$TIDE" launch -n 2 "$tmp/err.lua"
if [ "$rc" -ne 1 ] || [ "$secs" -gt 60 ] || ! grep -q '\[rank 1\] tide: .*bad batch on rank 1' "$tmp/err" ||
   ! grep -q 'tide.dist: rank 1 of 2 failed (exit code 1); ending the job' "$tmp/err"; then
  echo "FAIL: Lua error on rank 1: rc $rc after $secs s"; show; fail=1
fi

# 7. plain mpirun (as on a cluster) runs the same program
root=(); [ "$(id -u)" -eq 0 ] && root=(--allow-run-as-root)
run mpirun -np 2 --oversubscribe "${root[@]}" "$TIDE" "$tmp/sum.lua"
grep -q "^rank 1 of 2 (RANK=nil LOCAL_RANK=nil) sum 3" "$tmp/out" || { echo "FAIL: mpirun: rc $rc"; show; fail=1; }

[ $fail -eq 0 ] && echo "ok"
exit $fail

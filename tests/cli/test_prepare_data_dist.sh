#!/usr/bin/env bash
# recipes/prepare_data.lua under 1, 2 and 3 ranks (mpirun) writes the same
# shards, byte for byte: a corpus of 7 files with exact duplicates (also
# differing in whitespace only) and near duplicates across files, so the
# global dedup (tide.data.dedup_across_ranks) must see other ranks' texts.
# Skipped (77) without mpirun or tide's MPI backend.
set -u
TIDE=${1:-./build/tide}
TIDE=$(cd "$(dirname "$TIDE")" && pwd)/$(basename "$TIDE")
command -v mpirun > /dev/null || { echo "SKIP: no mpirun"; exit 77; }
[ -f "$(dirname "$TIDE")/libtide_mpi.so" ] || { echo "SKIP: libtide_mpi.so is missing"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
# the sanitizer build's leak check is off in MPI's processes, as in
# tests/dist/run_mpi.sh (Open MPI's components unload at finalize and their
# allocations show as leaks no suppression can name); the single-process
# runs here keep it
MPI=(env "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" mpirun --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 -x TIDE_DIST_TIMEOUT=60)
[ "$(id -u)" -eq 0 ] && MPI+=(--allow-run-as-root)

# the corpus: seeded pseudo-code; every 5th text repeats an earlier one
# (exactly, or with its whitespace changed), every 7th is an earlier one with
# one word changed (a near duplicate), often from another file
cat > "$dir/gen.lua" <<'LUA'
local dir = tide.args.dir
local s = 4242
local function rnd(n) s = (s * 1103515245 + 12345) % 2147483648; return s % n end
local words = { 'data', 'frame', 'value', 'index', 'model', 'train', 'loss', 'batch', 'step', 'layer', 'weight',
                'token', 'shard', 'rank', 'world', 'bucket', 'grad', 'norm', 'clip', 'sched' }
local texts = {}
local function fresh()
  local lines = {}
  for l = 1, 6 + rnd(6) do
    local w = {}
    for k = 1, 4 + rnd(5) do w[k] = words[rnd(#words) + 1] .. rnd(50) end
    lines[l] = ('    %s = %s(%s)'):format(w[1], w[2], table.concat(w, ', ', 3))
  end
  return 'def f' .. rnd(1000) .. '():\n' .. table.concat(lines, '\n') .. '\n'
end
for f = 1, 7 do
  local out = assert(io.open(('%s/part-%02d.jsonl'):format(dir, f), 'w'))
  for r = 1, 30 do
    local n, t = #texts, nil
    if n > 10 and r % 5 == 0 then
      t = texts[rnd(n) + 1]
      if rnd(2) == 1 then t = t:gsub(' = ', '  =  ') end
    elseif n > 10 and r % 7 == 0 then
      t = texts[rnd(n) + 1]:gsub('(%a+)(%d+)%(', 'changed%2(', 1)
    else
      t = fresh()
    end
    texts[#texts + 1] = t
    out:write(tide.json.encode({ repo_name = 'r' .. f, path = ('p%d_%d.py'):format(f, r), content = t }), '\n')
  end
  out:close()
end
LUA
mkdir -p "$dir/c"
"$TIDE" "$dir/gen.lua" --dir="$dir/c" || fail "could not write the corpus"
opts=(--corpus="$dir/c/*.jsonl" --keywords=none --clean=false --seq=33 --valid=0.1 --seed=3)

"$TIDE" recipes/prepare_data.lua "${opts[@]}" --out="$dir/s1" > "$dir/s1.txt" 2>&1 || { cat "$dir/s1.txt"; fail "1 process failed"; }
# the corpus exercises both dedups
grep -q 'exact dedup: kept' "$dir/s1.txt" && ! grep -q 'exact dedup: kept \([0-9]*\) of \1 ' "$dir/s1.txt" ||
  { cat "$dir/s1.txt"; fail "the single process dropped no exact duplicate"; }
grep -q 'near dedup.*: kept' "$dir/s1.txt" && ! grep -q 'near dedup.*: kept \([0-9]*\) of \1 ' "$dir/s1.txt" ||
  { cat "$dir/s1.txt"; fail "the single process dropped no near duplicate"; }
ls "$dir/s1"/*.bin > /dev/null 2>&1 || fail "the single process wrote no shard"

for n in 2 3; do
  timeout 300 "${MPI[@]}" -np "$n" "$TIDE" recipes/prepare_data.lua "${opts[@]}" --out="$dir/s$n" > "$dir/s$n.txt" 2>&1 ||
    { cat "$dir/s$n.txt"; fail "$n ranks failed"; }
  a=$(cd "$dir/s1" && ls *.bin) b=$(cd "$dir/s$n" && ls *.bin)
  [ "$a" = "$b" ] || fail "$n ranks wrote shards [$b], 1 process [$a]"
  for f in $a; do cmp -s "$dir/s1/$f" "$dir/s$n/$f" || fail "$f differs between 1 process and $n ranks"; done
  for m in train valid; do
    t1=$(grep -o '"total_tokens": *[0-9]*' "$dir/s1/$m.json") tn=$(grep -o '"total_tokens": *[0-9]*' "$dir/s$n/$m.json")
    [ "$t1" = "$tn" ] || fail "$m.json: $t1 (1 process) vs $tn ($n ranks)"
  done
done
echo "ok: the same shards from 1, 2 and 3 ranks ($(echo "$a" | wc -w) files)"

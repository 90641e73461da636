-- tide.data.shards: the writer (rotation at sequence boundaries, manifest,
-- uint16/uint32, temp files on abort and garbage collection) and the loader
-- (exact round trip, seeded shuffles, rank partitions, resumable state,
-- llm.c's overlapping windows, nanoGPT's raw .bin, errors).
local T = require 'tide.testing'
local ffi = require 'ffi'
local json = require 'tide.json'
local shards = require 'tide.data.shards'

local tmpdir = os.tmpname()
os.remove(tmpdir)
local function sh(cmd)
  local r = os.execute(cmd)
  return r == 0 or r == true
end
local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
local counter = 0
-- a fresh directory under tmpdir
local function fresh()
  counter = counter + 1
  local d = ('%s/d%d'):format(tmpdir, counter)
  assert(sh('mkdir -p ' .. quote(d)))
  return d
end
local function exists(path)
  local f = io.open(path, 'rb')
  if f then f:close() end
  return f ~= nil
end
local function size(path)
  local f = assert(io.open(path, 'rb'))
  local n = f:seek('end')
  f:close()
  return n
end
local function ls(dir)
  local p = io.popen('ls -1A ' .. quote(dir))
  local names = {}
  for l in p:lines() do names[#names + 1] = l end
  p:close()
  table.sort(names)
  return names
end

-- ids 0..n-1 (mod m): each token names its position
local function iota(n, m)
  local t = {}
  for i = 1, n do t[i] = (i - 1) % (m or 65536) end
  return t
end

local function write_all(dir, ids, opts)
  local w = shards.writer(dir, opts)
  w:write(ids)
  return w:close()
end

-- every batch of a loader, as lists of rows
local function drain(loader)
  local rows = {}
  for b in loader do
    T.eq(b:dtype(), 'i32')
    for _, r in ipairs(b:tolist()) do rows[#rows + 1] = r end
  end
  return rows
end

T.test('the writer rotates shards at shard_tokens, at sequence boundaries', function()
  local d = fresh()
  local w = shards.writer(d, { vocab_size = 50257, shard_tokens = 10, seq_length = 4 })
  local ids = iota(30)
  -- uneven pieces, crossing shard ends inside a call
  w:write({ unpack(ids, 1, 3) })
  w:write({ unpack(ids, 4, 17) })
  T.eq(w:count(), 17)
  w:write({})
  w:write({ unpack(ids, 18, 30) })
  local m = w:close()
  T.same(ls(d), { 'shard.json', 'shard_000000.bin', 'shard_000001.bin', 'shard_000002.bin' })
  -- 10 rounds up to 12, three whole sequences of 4
  T.eq(size(d .. '/shard_000000.bin'), 1024 + 2 * 12)
  T.eq(size(d .. '/shard_000001.bin'), 1024 + 2 * 12)
  T.eq(size(d .. '/shard_000002.bin'), 1024 + 2 * 6)
  T.eq(#m.shards, 3)
  T.eq(m.shards[3].tokens, 6)

  -- without seq_length, shards end exactly at shard_tokens
  local d2 = fresh()
  local m2 = write_all(d2, iota(25), { shard_tokens = 10, prefix = 'val' })
  T.same(ls(d2), { 'val.json', 'val_000000.bin', 'val_000001.bin', 'val_000002.bin' })
  T.eq(m2.shards[1].tokens, 10)
  T.eq(m2.shards[2].tokens, 10)
  T.eq(m2.shards[3].tokens, 5)

  -- an exact multiple leaves no empty shard behind
  local d3 = fresh()
  local m3 = write_all(d3, iota(20), { shard_tokens = 10 })
  T.eq(#m3.shards, 2)
  T.same(ls(d3), { 'shard.json', 'shard_000000.bin', 'shard_000001.bin' })
end)

T.test('the manifest lists the shards, the format and the extra fields', function()
  local d = fresh() .. '/nested/dir'  -- created with its parents
  write_all(d, iota(30), { vocab_size = 50257, shard_tokens = 10, seq_length = 5,
                           manifest = { tokenizer = 'gpt2', source = { name = 'tiny', docs = 3 } } })
  local m = json.read_file(d .. '/shard.json')
  T.eq(m.format, 'llm.c')
  T.eq(m.token_bytes, 2)
  T.eq(m.magic, 20240520)
  T.eq(m.version, 1)
  T.eq(m.total_tokens, 30)
  T.eq(m.seq_length, 5)
  T.eq(m.vocab_size, 50257)
  T.eq(m.tokenizer, 'gpt2')
  T.eq(m.source.name, 'tiny')
  T.eq(#m.shards, 3)
  for i, s in ipairs(m.shards) do
    T.eq(s.file, ('shard_%06d.bin'):format(i - 1))
    T.eq(s.tokens, 10)
  end
  for _, name in ipairs(ls(d)) do T.truthy(not name:find('tmp'), 'temp file left: ' .. name) end
  T.raises(function() shards.writer(fresh(), { manifest = { shards = 1 } }) end, 'manifest field shards')
end)

T.test('round trip: the tokens written come back in order', function()
  local d = fresh()
  local ids = iota(1000)
  write_all(d, ids, { shard_tokens = 100, seq_length = 10 })
  local l = shards.shards(d, { batch_size = 3, drop_last = false })
  T.eq(l.seq_len, 9)
  T.eq(l.stride, 10)
  T.eq(l:num_windows(), 100)
  T.eq(l:num_batches(), 34)
  T.eq(l:num_tokens(), 1000)
  local rows, flat = drain(l), {}
  T.eq(#rows, 100)
  for _, r in ipairs(rows) do
    T.eq(#r, 10)
    for _, v in ipairs(r) do flat[#flat + 1] = v end
  end
  T.same(flat, ids)
  T.eq(l(), nil)  -- stays exhausted

  -- write_ptr, with batches of B; a shape {B, T + 1}
  local d2 = fresh()
  local buf = ffi.new('int32_t[?]', 64)
  for i = 0, 63 do buf[i] = 63 - i end
  local w = shards.writer(d2, { seq_length = 8, shard_tokens = 16 })
  w:write_ptr(buf, 64)
  w:close()
  local l2 = shards.shards(d2, { batch_size = 4 })
  local b = l2()
  T.same(b:shape(), { 4, 8 })
  T.same(b:tolist()[1], { 63, 62, 61, 60, 59, 58, 57, 56 })
  T.same(b:tolist()[4], { 39, 38, 37, 36, 35, 34, 33, 32 })
  T.eq(#drain(l2), 4)
end)

-- the first token of each row (rows are whole sequences of iota, so it names the window)
local function firsts(rows)
  local r = {}
  for i, row in ipairs(rows) do r[i] = row[1] end
  return r
end

T.test('shuffled epochs are seeded permutations that differ from epoch to epoch', function()
  local d = fresh()
  write_all(d, iota(2000), { shard_tokens = 300, seq_length = 10 })  -- shards of 300, last 200
  local function epochs(seed)
    local l = shards.shards(d, { batch_size = 5, shuffle = true, seed = seed, epochs = 2 })
    local f = firsts(drain(l))
    local n = l:num_windows()
    return { unpack(f, 1, n) }, { unpack(f, n + 1, 2 * n) }, n
  end
  local e0, e1, n = epochs(7)
  T.eq(n, 200)
  local ordered = {}
  for i = 1, n do ordered[i] = (i - 1) * 10 end
  for _, e in ipairs { e0, e1 } do
    local s = { unpack(e) }
    table.sort(s)
    T.same(s, ordered, 'an epoch is a permutation of the windows')
  end
  T.truthy(not T.deep_eq(e0, ordered), 'shuffled')
  T.truthy(not T.deep_eq(e0, e1), 'epochs differ')
  local a0, a1 = epochs(7)
  T.same(a0, e0, 'same seed, same order')
  T.same(a1, e1)
  local b0 = epochs(8)
  T.truthy(not T.deep_eq(b0, e0), 'another seed, another order')
  -- rows are the windows themselves, never mixed
  local l = shards.shards(d, { batch_size = 5, shuffle = true })
  for _, r in ipairs(drain(l)) do
    for k = 2, #r do T.eq(r[k], r[1] + k - 1) end
  end
end)

T.test('ranks of a world split every epoch into disjoint, complete parts', function()
  local d = fresh()
  write_all(d, iota(1030), { shard_tokens = 100, seq_length = 10 })  -- 103 windows
  for _, shuffle in ipairs { false, true } do
    local seen, counts = {}, {}
    for rank = 0, 3 do
      local l = shards.shards(d, { batch_size = 4, shuffle = shuffle, seed = 3, rank = rank, world_size = 4,
                                   drop_last = false })
      local f = firsts(drain(l))
      counts[rank + 1] = #f
      T.eq(#f, l:num_windows())
      for _, v in ipairs(f) do
        T.eq(seen[v], nil, 'window ' .. v .. ' on two ranks')
        seen[v] = rank
      end
    end
    for k = 0, 102 do T.truthy(seen[k * 10] ~= nil, 'window ' .. k .. ' on no rank') end
    T.same(counts, { 26, 26, 26, 25 })
  end
  -- with drop_last every rank gets the same number of full batches
  for rank = 0, 3 do
    local l = shards.shards(d, { batch_size = 4, rank = rank, world_size = 4 })
    T.eq(l:num_windows(), 25)
    T.eq(l:num_batches(), 6)
    local n = 0
    for b in l do
      T.eq(b:shape()[1], 4)
      n = n + 1
    end
    T.eq(n, 6)
  end
end)

T.test('state() and set_state() resume exactly, across epochs', function()
  local d = fresh()
  write_all(d, iota(1000), { shard_tokens = 100, seq_length = 10 })
  local opts = { batch_size = 3, shuffle = true, seed = 11, epochs = 3, rank = 1, world_size = 2 }
  local a = shards.shards(d, opts)
  T.same(a:state(), { epoch = 0, index = 0 })
  local all = {}
  for b in a do all[#all + 1] = b:tolist() end
  T.eq(#all, 3 * a:num_batches())
  T.same(a:state(), { epoch = 3, index = 0 })
  for _, stop in ipairs { 0, 1, 7, 16, 17, 30 } do
    local x = shards.shards(d, opts)
    for _ = 1, stop do x() end
    local s = x:state()
    local y = shards.shards(d, opts)
    y:set_state(json.decode(json.encode(s)))  -- survives a checkpoint
    for k = stop + 1, math.min(stop + 5, #all) do
      T.same(y():tolist(), all[k], ('batch %d after resuming at %d'):format(k, stop))
    end
  end
  a:reset()
  T.same(a():tolist(), all[1])
  T.raises(function() a:set_state({ epoch = 0, index = 1e9 }) end, 'bad state')
  T.raises(function() a:set_state(nil) end, 'set_state')
end)

T.test('vocab_size above 65536 writes uint32 shards', function()
  local d = fresh()
  local ids = {}
  for i = 1, 64 do ids[i] = 128256 - i end
  local m = write_all(d, ids, { vocab_size = 128256, seq_length = 16 })
  T.eq(m.token_bytes, 4)
  T.eq(m.magic, 20240801)
  T.eq(m.version, 7)
  T.eq(size(d .. '/shard_000000.bin'), 1024 + 4 * 64)
  local flat = {}
  for _, r in ipairs(drain(shards.shards(d, { batch_size = 2 }))) do
    for _, v in ipairs(r) do flat[#flat + 1] = v end
  end
  T.same(flat, ids)
  T.raises(function() shards.shards(d, { token_bytes = 2 }) end, 'expected 2')
  -- an id at or past vocab_size is refused, naming it and its index
  local w = shards.writer(fresh(), { vocab_size = 100 })
  T.raises(function() w:write({ 1, 2, 100 }) end, 'id 100 at index 3')
  T.raises(function() w:write({ 1, -1 }) end, 'id -1 at index 2')
  T.raises(function() w:write({ 1.5 }) end, 'id 1.5 at index 1')
  T.eq(w:count(), 0)
  w:abort()
  T.raises(function() shards.writer(fresh(), { vocab_size = 70000, token_bytes = 2 }) end, 'does not fit')
end)

T.test("llm.c-style shards without a manifest: stride T, windows overlap by one token", function()
  local d = fresh()
  write_all(d, iota(25), { shard_tokens = 10 })  -- shards of 10, 10, 5 tokens
  -- a glob reads the .bin files without the manifest, as llm.c would
  local l = shards.shards(d .. '/shard_*.bin', { seq_len = 4, batch_size = 1, drop_last = false })
  T.eq(l.stride, 4)
  -- per shard: windows at 0 and 4 in a shard of 10 (8 + 5 > 10), 0 in the last (5 tokens)
  T.eq(l:num_windows(), 5)
  local rows = drain(l)
  T.same(rows, { { 0, 1, 2, 3, 4 }, { 4, 5, 6, 7, 8 }, { 10, 11, 12, 13, 14 }, { 14, 15, 16, 17, 18 },
                 { 20, 21, 22, 23, 24 } })
  -- a single file
  local one = shards.shards(d .. '/shard_000001.bin', { seq_len = 4, batch_size = 2 })
  T.same(one():tolist(), { { 10, 11, 12, 13, 14 }, { 14, 15, 16, 17, 18 } })
  -- an explicit stride
  local s = shards.shards(d .. '/*.bin', { seq_len = 2, stride = 5, batch_size = 1, drop_last = false })
  T.same(firsts(drain(s)), { 0, 5, 10, 15, 20 })
  -- a directory without any manifest reads every .bin by name
  os.remove(d .. '/shard.json')
  local all = shards.shards(d, { seq_len = 4, batch_size = 5 })
  T.eq(all.stride, 4)
  T.eq(all:num_windows(), 5)
  -- shell-unfriendly directory names are quoted, not interpreted
  local odd = fresh() .. "/it's a $(dir) `x`"
  write_all(odd, iota(12), { shard_tokens = 6 })
  local g = shards.shards(odd .. '/shard_*.bin', { seq_len = 5, batch_size = 2 })
  T.same(firsts(g():tolist()), { 0, 6 })
  local star = fresh() .. '/a * b'  -- an existing directory is no pattern
  write_all(star, iota(12), { shard_tokens = 6, seq_length = 6 })
  T.eq(shards.shards(star, { batch_size = 2 }):num_windows(), 2)
end)

T.test("nanoGPT's header-less uint16 .bin with raw_uint16", function()
  local d = fresh()
  local f = assert(io.open(d .. '/train.bin', 'wb'))
  for i = 0, 99 do f:write(string.char(i % 256, 0xc4)) end  -- little-endian 0xc400 + i
  f:close()
  local l = shards.shards(d .. '/train.bin', { raw_uint16 = true, seq_len = 9, batch_size = 2 })
  T.eq(l:num_tokens(), 100)
  T.same(l():tolist()[2], { 0xc409, 0xc40a, 0xc40b, 0xc40c, 0xc40d, 0xc40e, 0xc40f, 0xc410, 0xc411, 0xc412 })
  T.raises(function() shards.shards(d .. '/train.bin', { seq_len = 9 }) end, 'header')
end)

T.test('abort leaves nothing; garbage collection leaves no temp shard and a set the loader refuses', function()
  local d = fresh()
  local w = shards.writer(d, { shard_tokens = 10 })
  w:write(iota(15))
  T.same(ls(d), { 'shard.json', 'shard_000000.bin', 'shard_000001.bin.tmp' })
  w:abort()
  T.same(ls(d), {})
  T.raises(function() w:write({ 1 }) end, 'closed')

  local d2 = fresh()
  do
    local w2 = shards.writer(d2, {})
    w2:write(iota(5))
    T.same(ls(d2), { 'shard.json', 'shard_000000.bin.tmp' })
  end
  collectgarbage()
  collectgarbage()
  T.same(ls(d2), { 'shard.json' })
  T.raises(function() shards.shards(d2, { seq_len = 2 }) end, 'unfinished write')
end)

-- A writer killed midway (os.exit skips every finaliser, as SIGKILL would)
-- leaves committed shards and no finished manifest: before, the loader read
-- the partial set as if it were whole.
T.test('a write killed midway is refused by the loader, whatever path names it', function()
  pcall(ffi.cdef, 'long readlink(const char *path, char *buf, size_t size);')
  local buf = ffi.new('char[4096]')
  local exe = ffi.string(buf, ffi.C.readlink('/proc/self/exe', buf, 4096))
  local d = fresh()
  local script = d .. '.lua'
  local f = assert(io.open(script, 'wb'))
  f:write(([[
local w = require('tide.data.shards').writer(%q, { shard_tokens = 10 })
local ids = {}
for i = 1, 35 do ids[i] = i end
w:write(ids)
os.exit(9)
]]):format(d))
  f:close()
  -- (under AddressSanitizer the writer it abandons is, rightly, a leak)
  local r = os.execute('ASAN_OPTIONS=detect_leaks=0 ' .. quote(exe) .. ' ' .. quote(script))
  T.truthy(r ~= 0 and r ~= true, 'the script exits 9')
  T.same(ls(d), { 'shard.json', 'shard_000000.bin', 'shard_000001.bin', 'shard_000002.bin', 'shard_000003.bin.tmp' })
  T.raises(function() shards.shards(d, { seq_len = 4 }) end, 'unfinished write')
  T.raises(function() shards.shards(d, { seq_len = 4, prefix = 'shard' }) end, 'unfinished write')
  T.raises(function() shards.shards(d .. '/shard.json', { seq_len = 4 }) end, 'unfinished write')
  T.raises(function() shards.shards(d .. '/shard_*.bin', { seq_len = 4 }) end, 'unfinished write')
  T.raises(function() shards.shards(d .. '/shard_000001.bin', { seq_len = 4 }) end, 'unfinished write')
  -- a new write over it replaces the set, temp file included
  write_all(d, iota(12), { shard_tokens = 10 })
  T.same(ls(d), { 'shard.json', 'shard_000000.bin', 'shard_000001.bin' })
  T.eq(shards.shards(d, { seq_len = 1, batch_size = 1 }):num_tokens(), 12)
  os.remove(script)
end)

-- A write that fails midway (the source raises) leaves nothing of its prefix.
T.test('write_shards failing midway leaves nothing; other prefixes stay', function()
  local d = fresh()
  write_all(d, iota(20), { shard_tokens = 10, prefix = 'valid' })
  local n = 0
  local src = tide.data.from(function()
    n = n + 1
    if n > 6 then error('source broke at record 7') end
    return iota(4)
  end)
  T.raises(function() tide.data.write_shards(d, src, { vocab_size = 100, shard_tokens = 8, prefix = 'train' }) end,
           'source broke')
  T.same(ls(d), { 'valid.json', 'valid_000000.bin', 'valid_000001.bin' })
  T.raises(function() shards.shards(d, { prefix = 'train', seq_len = 2 }) end, 'no train')
  T.eq(shards.shards(d, { prefix = 'valid', seq_len = 1, batch_size = 1 }):num_tokens(), 20)
end)

-- Writing a smaller set where a larger one was left its extra shards beside
-- the new ones, and a glob read both (manifest 483,800 tokens, 9,351,075 read).
T.test('stale shards: a rewrite removes them, and the loader refuses strays', function()
  local d = fresh()
  write_all(d, iota(50), { shard_tokens = 10 })
  T.eq(#ls(d), 6)
  write_all(d, iota(15), { shard_tokens = 10 })
  T.same(ls(d), { 'shard.json', 'shard_000000.bin', 'shard_000001.bin' })
  for _, p in ipairs({ d, d .. '/shard.json', d .. '/*.bin', d .. '/shard_0000*.bin' }) do
    T.eq(shards.shards(p, { seq_len = 1, batch_size = 1 }):num_tokens(), 15, p)
  end
  -- a stray shard of the prefix (copied in, or left by an older tide) is refused by every path
  assert(sh(('cp %s/shard_000001.bin %s/shard_000007.bin'):format(quote(d), quote(d))))
  for _, p in ipairs({ d, d .. '/shard.json', d .. '/*.bin', d .. '/shard_000000.bin' }) do
    T.raises(function() shards.shards(p, { seq_len = 1 }) end, 'shard_000007.bin is not listed')
  end
  os.remove(d .. '/shard_000007.bin')
  -- a listed shard that is missing
  os.remove(d .. '/shard_000001.bin')
  T.raises(function() shards.shards(d, { seq_len = 1 }) end, 'shard_000001.bin, which is missing')
end)

-- The loader used to memory-map shards: a file truncated under an open
-- loader killed the process with SIGBUS at the next batch.
T.test('a shard truncated under an open loader is an error naming it', function()
  local d = fresh()
  write_all(d, iota(4000), { shard_tokens = 2000, seq_length = 9 })
  local l = shards.shards(d, { batch_size = 4 })
  T.eq(l():size(2), 9)
  assert(sh('truncate -s 1024 ' .. quote(d .. '/shard_000000.bin')))
  assert(sh('truncate -s 1024 ' .. quote(d .. '/shard_000001.bin')))
  local ok, err = pcall(l.next, l)
  T.truthy(not ok, 'the read fails')
  T.truthy(tostring(err):find(d .. '/shard_00000[01]%.bin: the file changed while open'), tostring(err))
  -- close() releases the descriptors now; the loader then refuses to read
  l:close()
  T.raises(function() l() end, 'closed')
end)

-- A directory the process cannot create is reported with its reason (the
-- errno of the failing mkdir), not a later call's "No such file or directory".
T.test('an unwritable place is reported as what it is', function()
  local uid = io.popen('id -u'):read('*l')
  local parent
  if uid == '0' then
    parent = '/sys'  -- root ignores chmod, but sysfs refuses new directories
  else
    parent = fresh()
    assert(sh('chmod 0555 ' .. quote(parent)))
  end
  local ok, err = pcall(shards.writer, parent .. '/tide_test_shards_ro/sub', {})
  T.truthy(not ok)
  T.truthy(not tostring(err):find('No such file'), tostring(err))
  T.truthy(tostring(err):find('cannot create directory ' .. parent .. '/tide_test_shards_ro: '), tostring(err))
  T.truthy(tostring(err):find('denied') or tostring(err):find('not permitted') or tostring(err):find('Read%-only'),
           tostring(err))
  -- an existing directory that cannot be written: the manifest cannot be created
  if uid ~= '0' then
    local ok2, err2 = pcall(shards.writer, parent, {})
    T.truthy(not ok2 and tostring(err2):find('Permission denied'), tostring(err2))
    sh('chmod 0755 ' .. quote(parent))
  end
  -- under a regular file
  local file = fresh() .. '/file'
  io.open(file, 'wb'):close()
  local ok3, err3 = pcall(shards.writer, file .. '/sub', {})
  T.truthy(not ok3 and tostring(err3):find('Not a directory'), tostring(err3))
end)

T.test('errors name what is wrong', function()
  local d = fresh()
  write_all(d, iota(100), { shard_tokens = 50, seq_length = 10 })
  T.raises(function() shards.shards(tmpdir .. '/missing', { seq_len = 4 }) end, 'no such file or directory')
  T.raises(function() shards.shards(fresh(), { seq_len = 4 }) end, 'no .bin shards')
  T.raises(function() shards.shards(tmpdir .. '/d1/nothing_*.bin', { seq_len = 4 }) end, 'no files match')
  T.raises(function() shards.shards(d, { seq_len = 50 }) end, 'longest')
  T.raises(function() shards.shards(d .. '/*.bin', {}) end, 'seq_len is required')
  T.raises(function() shards.shards(d, { batch_size = 0 }) end, 'batch_size')
  T.raises(function() shards.shards(d, { batch_sz = 2 }) end, 'unknown option batch_sz')
  T.raises(function() shards.shards(d, { rank = 4, world_size = 4 }) end, 'rank must be')
  T.raises(function() shards.shards(d, { shuffle = 'yes' }) end, 'shuffle must be a boolean')
  T.raises(function() shards.shards(d, { epochs = 0 }) end, 'epochs')
  T.raises(function() shards.shards(d, { seq_len = 2.5 }) end, 'seq_len')
  T.raises(function() shards.shards(d, { batch_size = 11 }) end, 'not one batch')
  T.raises(function() shards.shards(42) end, 'expected a directory')
  T.raises(function() shards.writer(d, { shard_tokens = 0 }) end, 'shard_tokens')
  T.raises(function() shards.writer(d, { prefix = 'a/b' }) end, 'prefix')
  T.raises(function() shards.writer(d, { colour = 1 }) end, 'unknown option')
  -- a truncated shard is refused with both sizes
  local f = assert(io.open(d .. '/shard_000001.bin', 'r+b'))
  local data = f:read('*a')
  f:close()
  f = assert(io.open(d .. '/shard_000001.bin', 'wb'))
  f:write(data:sub(1, #data - 2))
  f:close()
  T.raises(function() shards.shards(d .. '/*.bin', { seq_len = 4 }) end,
           'header says 50 tokens (1124 bytes) but the file holds 1122 bytes')
  -- two manifests in a directory need a prefix
  write_all(d, iota(20), { prefix = 'val', seq_length = 10 })
  T.raises(function() shards.shards(d) end, 'several manifests')
  local v = shards.shards(d, { prefix = 'val', batch_size = 2 })
  T.eq(v:num_windows(), 2)
end)

T.test('cleanup', function()
  T.truthy(sh('rm -rf ' .. quote(tmpdir)))
  T.truthy(not exists(tmpdir))
end)

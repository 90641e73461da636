-- tide.data readers (jsonl, text) on real files: fields, gzip, globs,
-- malformed lines and missing fields, corrupt and truncated gzip, the
-- recipe that builds the local corpus, and the whole path to shards.
local T = require 'tide.testing'
local ffi = require 'ffi'
local data = tide.data

local tmp, cleanup, tmpdir = T.scratch()
local read, write = T.read, T.write
pcall(ffi.cdef, [[
typedef struct gzFile_s *gzFile;
gzFile gzopen(const char *path, const char *mode);
int gzwrite(gzFile file, const void *buf, unsigned len);
int gzclose(gzFile file);
]])
local function write_gz(path, s)
  local gz = ffi.C.gzopen(path, 'wb')
  assert(gz ~= nil)
  assert(ffi.C.gzwrite(gz, s, #s) == #s)
  assert(ffi.C.gzclose(gz) == 0)
end

-- stderr of a function: the readers' warnings
local function stderr_of(fn)
  local path = tmp('stderr.txt')
  local saved = io.stderr
  local f = assert(io.open(path, 'wb'))
  io.stderr = f
  local ok, err = pcall(fn)
  io.stderr = saved
  f:close()
  if not ok then error(err, 0) end
  return read(path)
end

T.test('jsonl: the committed demo corpus, fields, glob and counts', function()
  local ds = data.jsonl('tests/data/corpus/*.jsonl.gz', { fields = { 'repo_name', 'content' }, progress = false })
  local recs
  local warn = stderr_of(function() recs = ds:collect() end)
  T.eq(#recs, 6)
  T.eq(recs[1].repo_name, 'demo/plots')
  T.eq(recs[1].content, 'import matplotlib.pyplot as plt\nplt.plot([1, 2])\n')
  T.eq(recs[1].path, nil)  -- not asked for
  T.eq(recs[5].content, "print('h\u{e9}llo \u{4e16}\u{754c}')\n")
  T.eq(ds.records, 6)
  T.eq(ds.malformed, 1)
  T.eq(ds.files, 2)
  T.truthy(warn:find('a.jsonl.gz: skipped 1 malformed line %(first: line 3: '), warn)
  -- all fields, with their JSON types
  local all = data.jsonl('tests/data/corpus/b.jsonl.gz', { progress = false }):collect()
  T.eq(#all, 3)
  T.eq(all[1].copies, '1')
  T.eq(all[1].license, 'mit')
  T.eq(all[2].size, tostring(#all[2].content))
  -- a directory reads every jsonl file in it
  T.eq(stderr_of(function() T.eq(data.jsonl('tests/data/corpus', { progress = false }):count(), 6) end) ~= '', true)
end)

T.test('jsonl: plain files, values of every kind, missing fields, strict', function()
  local p = tmp('kinds.jsonl')
  write(p, table.concat({
    '{"a": 1.5, "b": true, "c": null, "d": [1, {"x": "y"}], "e": {"k": 2}, "s": "t\\u00e9\\n"}',
    '',
    '{"a": -2, "s": "\\ud83d\\ude00"}',
    '{"s": "no a here"}',
    '[1, 2]',
    '{"a": 3, "s": "bad bytes \255\254 kept"}',
  }, '\n'))
  local recs = data.jsonl(p, { progress = false }):collect()
  T.eq(#recs, 4)
  T.eq(recs[1].a, 1.5)
  T.eq(recs[1].b, true)
  T.eq(recs[1].c, tide.json.null)
  T.eq(recs[1].d[2].x, 'y')
  T.eq(recs[1].e.k, 2)
  T.eq(recs[1].s, 't\u{e9}\n')
  T.eq(recs[2].s, '\u{1F600}')
  T.eq(recs[4].s, 'bad bytes \255\254 kept')
  local ds = data.jsonl(p, { fields = { 'a', 's' }, progress = false })
  local got
  local warn = stderr_of(function() got = ds:collect() end)
  T.eq(#got, 3)
  T.eq(ds.missing, 1)
  T.eq(ds.malformed, 1)
  T.truthy(warn:find('1 malformed line %(first: line 5: '), warn)
  T.truthy(warn:find('1 record missing a field %(first: line 4 has no field "a"%)'), warn)
  T.raises(function() data.jsonl(p, { fields = { 'a' }, strict = true }):count() end, 'kinds.jsonl:4: no field "a"')
  local p2 = tmp('bad.jsonl')
  write(p2, '{"a": 1}\n{"a": }\n')
  T.raises(function() data.jsonl(p2, { strict = true }):count() end, 'bad.jsonl:2: ')
end)

T.test('jsonl: a corrupt or truncated gzip ends with an error after the whole records', function()
  local lines = {}
  for i = 1, 20000 do lines[i] = ('{"i": %d, "content": "%s"}'):format(i, ('x'):rep(i % 50)) end
  local p = tmp('big.jsonl.gz')
  write_gz(p, table.concat(lines, '\n') .. '\n')
  local whole = read(p)
  T.eq(data.jsonl(p, { progress = false }):count(), 20000)
  local cut = tmp('cut.jsonl.gz')
  write(cut, whole:sub(1, math.floor(#whole / 2)))
  local seen = 0
  local ok, err = pcall(function()
    for rec in data.jsonl(cut, { progress = false }):iter() do
      seen = seen + 1
      assert(rec.i == seen)
    end
  end)
  T.eq(ok, false)
  T.truthy(tostring(err):find('cut.jsonl.gz') and tostring(err):find('byte'), err)
  T.truthy(seen > 1000 and seen < 20000, seen)
  local bad = tmp('bad.jsonl.gz')
  local mid = math.floor(#whole / 2)
  write(bad, whole:sub(1, mid) .. ('\0'):rep(64) .. whole:sub(mid + 65))
  local ok2, err2 = pcall(function() data.jsonl(bad, { progress = false }):count() end)
  T.eq(ok2, false)
  T.truthy(tostring(err2):find('bad.jsonl.gz'), err2)
  -- two gzip members in one file read as one stream
  local two = tmp('two.jsonl.gz')
  write(two, whole .. whole)
  T.eq(data.jsonl(two, { progress = false }):count(), 40000)
end)

T.test('jsonl: dotted fields follow nested objects, as datasets flatten() names them', function()
  local p = tmp('eli5.jsonl')
  write(p, table.concat({
    '{"q_id": "a1", "title": "Why?", "answers": {"a_id": ["x", "y"], "text": ["One.", "Two \\u00e9"], "score": [3, 1]}}',
    '{"q_id": "a2", "answers": {"a_id": [], "text": []}}',
    '{"q_id": "a3", "answers.text": ["flattened dump"], "answers.a_id": ["z"]}',
    '{"q_id": "a4", "answers": {"a_id": ["w"]}}',
    '{"q_id": "a5", "answers": [{"text": "a list is not a struct"}]}',
    '{"q_id": "a6", "answers": {"text": ["bad",]}}',
  }, '\n'))
  local ds = data.jsonl(p, { fields = { 'answers.text', 'q_id' }, progress = false })
  local recs
  local warn = stderr_of(function() recs = ds:collect() end)
  T.eq(#recs, 3)
  T.same(recs[1]['answers.text'], { 'One.', 'Two \u{e9}' })
  T.eq(recs[1].q_id, 'a1')
  T.eq(#recs[2]['answers.text'], 0)
  T.same(recs[3]['answers.text'], { 'flattened dump' })
  T.eq(ds.missing, 2)
  T.eq(ds.malformed, 1)
  T.truthy(warn:find('first: line 4 has no field "answers.text"', 1, true), warn)
  T.truthy(warn:find("first: line 6: column 43: expected a value after ','", 1, true), warn)
  -- the guide's preprocessing: the list joined with spaces
  T.eq(table.concat(recs[1]['answers.text'], ' '), 'One. Two \u{e9}')
  T.raises(function() data.jsonl(p, { fields = { 'answers.text' }, strict = true }):count() end,
           'eli5.jsonl:4: no field "answers.text"')
  T.raises(function() data.jsonl(p, { fields = { ('a.'):rep(16) .. 'b' } }):count() end, 'at most 16 steps')
end)

T.test('jsonl and text: missing paths and empty globs are clear errors', function()
  T.raises(function() data.jsonl('no/such/file.jsonl') end, 'no such file or directory: no/such/file.jsonl')
  T.raises(function() data.jsonl('tests/data/corpus/*.parquet') end, 'no file matches')
  T.raises(function() data.jsonl(42) end, 'expected a path')
  T.raises(function() data.jsonl('tests/data/corpus', { fields = 'content' }) end, 'fields must be an array')
  T.raises(function() data.text('no/such/dir') end, 'no such file or directory')
end)

T.test('text: one record per file, recursively, by extension', function()
  local d = tmp('tree')
  os.execute('mkdir -p ' .. d .. '/sub')
  write(d .. '/a.py', 'print(1)\n')
  write(d .. '/sub/b.py', 'print(2)\n')
  write(d .. '/sub/c.txt', 'not python\n')
  local recs = data.text(d, { extensions = { '.py' } }):collect()
  T.eq(#recs, 2)
  T.eq(recs[1].path, d .. '/a.py')
  T.eq(recs[2].text, 'print(2)\n')
  T.eq(data.text(d):count(), 3)
  T.eq(data.text(d .. '/sub/*.txt'):count(), 1)
end)

T.test('build_corpus writes a CodeParrot-schema jsonl.gz the reader reads back', function()
  local src = tmp('pysrc')
  os.execute('mkdir -p ' .. src .. '/pkg')
  write(src .. '/mod.py', 'import os\n\ndef f():\n    return os.sep\n')
  write(src .. '/pkg/__init__.py', '# init\n')
  write(src .. '/latin.py', '# caf\233\n')  -- not UTF-8: skipped
  local out = tmp('corpus/python.jsonl.gz')
  -- the tide running this test runs the recipe
  pcall(ffi.cdef, 'long readlink(const char *path, char *buf, size_t size);')
  local buf = ffi.new('char[4096]')
  local n = ffi.C.readlink('/proc/self/exe', buf, 4096)
  assert(n > 0, 'readlink /proc/self/exe')
  local exe = ffi.string(buf, n)
  T.eq(os.execute(("'%s' recipes/build_corpus.lua --out=%s --roots=%s --quiet"):format(exe, out, src)), 0)
  local recs = data.jsonl(out, { progress = false }):collect()
  T.eq(#recs, 2)
  -- a root given with --roots names the repository (it was python/cpython for any root)
  T.eq(recs[1].repo_name, 'local/pysrc')
  T.eq(recs[1].path, 'mod.py')
  T.eq(recs[1].license, 'unknown')
  T.eq(recs[1].content, 'import os\n\ndef f():\n    return os.sep\n')
  T.eq(recs[1].size, tostring(#recs[1].content))
  T.eq(recs[1].copies, '1')
  T.eq(recs[2].path, 'pkg/__init__.py')
  T.eq(recs[2].repo_name, 'local/pysrc')
  -- a place it cannot write is named with the system's reason
  T.raises(function() data.build_corpus({ out = src .. '/mod.py/sub/c.jsonl.gz', roots = { src } }) end,
           'cannot create directory ' .. src .. '/mod.py/sub: Not a directory')
end)

T.test('the whole path: jsonl.gz, filter, tokenize, pack, shards, read back', function()
  local tok = tide.tokenizer.load('data/gpt2')
  local F = data.filters
  local ds = data.jsonl('tests/data/corpus/*.jsonl.gz', { fields = { 'content' }, progress = false })
  local kept = ds:filter(function(r) return F.any_keyword(r.content, F.data_science_keywords) end, 'ds')
  local dir = tmp('shards')
  local summary
  stderr_of(function() summary = data.write_shards(dir, kept, { tokenizer = tok, seq_length = 8, seed = 5 }) end)
  T.truthy(summary)
  -- expected: the kept documents' ids, EOS after each, cut into 8s
  local flat = {}
  for _, r in ipairs({ 1, 3, 4 }) do  -- plots, frames, plots-copy (the malformed line is not a record)
    local rec = data.jsonl('tests/data/corpus/*.jsonl.gz', { progress = false })
    local i, text = 0, nil
    stderr_of(function() for x in rec:iter() do i = i + 1; if i == r then text = x.content end end end)
    for _, id in ipairs(tok:encode(text)) do flat[#flat + 1] = id end
    flat[#flat + 1] = tok.eos_id
  end
  local got = {}
  for batch in data.shards(dir, { batch_size = 1, drop_last = false }) do
    T.eq(batch:size(2), 8)
    for k = 1, 8 do got[#got + 1] = batch[1][k]:item() end
  end
  T.eq(#got, math.floor(#flat / 8) * 8)
  for k = 1, #got do T.eq(got[k], flat[k], 'token ' .. k) end
  local man = tide.json.read_file(dir .. '/shard.json')
  T.eq(man.seq_length, 8)
  T.eq(man.seed, 5)
  T.eq(man.filters[1].name, 'ds')
  T.eq(man.filters[1].kept, 3)
  T.eq(man.tokenizer, 'tokenizer')
  local back = tide.tokenizer.load(dir .. '/tokenizer')
  T.eq(back:vocab_size(), tok:vocab_size())
  T.same(back:encode('import pandas as pd'), tok:encode('import pandas as pd'))
end)

T.test('write_shards with opts.split writes every split in one pass, as split streams do', function()
  local tok = tide.tokenizer.load('data/gpt2')
  local docs = {}
  for i = 1, 300 do docs[i] = { content = ('def f%d(x):\n    return x + %d\n'):format(i, i * 7) } end
  local src = data.from(docs)
  local one = tmp('one_pass')
  local ms = data.write_shards(one, src, { tokenizer = tok, seq_length = 16, split = { valid = 0.2, seed = 3 } })
  T.truthy(ms.train and ms.valid)
  local function tokens(dir, prefix)
    local out = {}
    for b in data.shards(dir, { prefix = prefix, batch_size = 1, drop_last = false }) do
      for k = 1, 16 do out[#out + 1] = b[1][k]:item() end
    end
    return out
  end
  local parts = src:split({ valid = 0.2, seed = 3 })
  for _, name in ipairs({ 'train', 'valid' }) do
    local two = tmp('two_pass_' .. name)
    data.write_shards(two, parts[name], { tokenizer = tok, seq_length = 16, prefix = name })
    T.same(tokens(one, name), tokens(two, name), name)
    T.truthy(#tokens(one, name) > 0, name)
  end
  T.eq(ms.valid.split, 'valid')
  T.truthy(ms.train.report:find('split train: tokenize: '), ms.train.report)
  T.raises(function() data.write_shards(tmp('x'), src, { vocab_size = 100, split = { valid = 0.1 } }) end,
           'opts.split needs opts.tokenizer')
end)

T.test('write_shards packs as Stream:pack does, in both modes', function()
  local tok = tide.tokenizer.load('data/gpt2')
  local docs = {}
  for i = 1, 120 do docs[i] = ('x = %d\n'):rep(i % 9 + 1):format(i, i, i, i, i, i, i, i, i, i) end
  local src = data.from(docs)
  for _, mode in ipairs({ 'concat', 'per_document' }) do
    local want = {}
    for seq in src:tokenize(tok):pack(12, { mode = mode, eos = tok.eos_id }) do
      for _, id in ipairs(seq) do want[#want + 1] = id end
    end
    local dir = tmp('modes_' .. mode)
    local m = data.write_shards(dir, src, { tokenizer = tok, seq_length = 12, mode = mode, save_tokenizer = false })
    T.eq(m.total_tokens, #want, mode)
    local got = {}
    for b in data.shards(dir, { batch_size = 5, drop_last = false }) do
      for r = 1, b:size(1) do for k = 1, 12 do got[#got + 1] = b[r][k]:item() end end
    end
    T.same(got, want, mode)
    T.truthy(m.report:find('pack ' .. mode .. ' 12: '), m.report)
    T.eq(io.open(dir .. '/tokenizer/tokenizer.json', 'rb'), nil)  -- save_tokenizer = false
  end
end)

-- Issue 9: a gzip of 2 MB holding one 2 GB line took 4.2 GB and ended in
-- "string length overflow". A line over max_line_bytes is skipped (counted
-- as malformed, its file and line in the warning) or, strict, an error.
T.test('jsonl: a line over max_line_bytes is skipped or, strict, an error naming file and line', function()
  local p = tmp('long.jsonl.gz')
  write_gz(p, '{"a": 1}\n{"a": "' .. ('x'):rep(200000) .. '"}\n{"a": 3}\n')
  local got
  local warn = stderr_of(function() got = data.jsonl(p, { max_line_bytes = 1000, progress = false }):collect() end)
  T.eq(#got, 2)
  T.eq(got[2].a, 3)
  T.truthy(warn:find('long.jsonl.gz: skipped 1 malformed line %(first: line 2 is longer than the maximum of 1000 bytes'),
           warn)
  local ds = data.jsonl(p, { max_line_bytes = 1000, strict = true, progress = false })
  local n = 0
  local ok, err = pcall(function() for _ in ds do n = n + 1 end end)
  T.truthy(not ok and n == 1)
  T.truthy(tostring(err):find(p .. ': line 2 is longer than the maximum of 1000 bytes', 1, true), tostring(err))
  -- the default lets a 200 kB line through
  T.eq(data.jsonl(p, { progress = false }):count(), 3)
  T.raises(function() data.jsonl(p, { max_line_bytes = 0 }) end, 'max_line_bytes')
end)

-- Issue 9: breaking out of a jsonl loop left its file open until a garbage
-- collection; after 252 passes under ulimit -n 256 an existing file read as
-- "no such file or directory". Here 300 passes of every kind run with 40
-- descriptors to spare and the collector stopped, so only closing helps.
T.test('jsonl: 300 passes left by break under a low RLIMIT_NOFILE', function()
  pcall(ffi.cdef, [[
  struct tide_test_rlimit { uint64_t cur, max; };
  int getrlimit(int resource, struct tide_test_rlimit *r);
  int setrlimit(int resource, const struct tide_test_rlimit *r);
  ]])
  pcall(ffi.cdef, 'int getpid(void);')
  local RLIMIT_NOFILE = 7
  local p = tmp('many.jsonl')
  write(p, ('{"a": 1}\n'):rep(50))
  local function open_fds()
    local n, pipe = 0, io.popen('ls /proc/' .. ffi.C.getpid() .. '/fd')
    for _ in pipe:lines() do n = n + 1 end
    pipe:close()
    return n
  end
  local lim = ffi.new('struct tide_test_rlimit')
  assert(ffi.C.getrlimit(RLIMIT_NOFILE, lim) == 0)
  local saved_cur = lim.cur
  -- descriptors are numbered from the lowest free one, and the limit bounds
  -- the numbers: with this limit about 40 more can be open
  local before = open_fds()
  lim.cur = before + 40
  assert(ffi.C.setrlimit(RLIMIT_NOFILE, lim) == 0)
  collectgarbage('stop')
  local ok, err = pcall(function()
    local ds = data.jsonl(p, { progress = false })
    for _ = 1, 300 do
      for _ in ds do break end                                        -- the same stream, loop after loop
      for _ in ds:take(3) do end                                      -- take ends before the source does
      local nx, close = ds:iter()                                     -- a pass by hand, closed
      nx()
      close()
      local f = ds:filter(function() return true end)
      for _ in f do break end
      f:close()                                                       -- a loop left by break, then closed
    end
    ds:close()
  end)
  local after = open_fds()
  -- a new stream per loop, each left by break: nothing can see those loops
  -- end, so the reader collects garbage itself when many files are open
  local ok2, err2 = pcall(function()
    local ds = data.jsonl(p, { progress = false })
    for _ = 1, 300 do
      for _ in ds:filter(function() return true end) do break end
    end
  end)
  collectgarbage('restart')
  lim.cur = saved_cur
  assert(ffi.C.setrlimit(RLIMIT_NOFILE, lim) == 0)
  T.truthy(ok2, tostring(err2))
  T.truthy(ok, tostring(err))
  T.truthy(after <= before + 1, ('descriptors left open: %d before, %d after'):format(before, after))
end)

-- Running out of descriptors is reported as what it is, not as a missing file.
T.test('jsonl: too many open files is named as such', function()
  local p = tmp('emfile.jsonl')
  write(p, '{"a": 1}\n')
  local ds = data.jsonl(p, { progress = false })
  local passes, opened = {}, 0
  local lim = ffi.new('struct tide_test_rlimit')
  assert(ffi.C.getrlimit(7, lim) == 0)
  local saved_cur = lim.cur
  local before = 0
  local pipe = io.popen('ls /proc/' .. ffi.C.getpid() .. '/fd')
  for _ in pipe:lines() do before = before + 1 end
  pipe:close()
  lim.cur = before + 8
  assert(ffi.C.setrlimit(7, lim) == 0)
  local ok, err = pcall(function()
    for i = 1, 200 do
      local nx, close = ds:iter()
      passes[i] = close     -- kept alive: the collector cannot close these
      nx()
      opened = i
    end
  end)
  local ok2, err2 = pcall(data.jsonl, tmpdir .. '/emfile.jsonl', { progress = false })
  for _, close in ipairs(passes) do close() end
  lim.cur = saved_cur
  assert(ffi.C.setrlimit(7, lim) == 0)
  T.truthy(not ok and opened < 200, ('%s after %d passes'):format(tostring(err), opened))
  T.truthy(tostring(err):find('Too many open files') and tostring(err):find('stream:close()', 1, true), tostring(err))
  T.truthy(not tostring(err):find('No such file'), tostring(err))
  T.truthy(not ok2 and tostring(err2):find('too many open files'), tostring(err2))
end)

T.test('temporary files are removed', function()
  T.truthy(cleanup(), tmpdir)
end)

-- Tokenizer:save writes its files as one set: into a directory that holds
-- another tokenizer (and other files), a save stopped at any step leaves the
-- old set whole, and one that passes the commit point the new set whole;
-- never vocab.json of one tokenizer beside merges.txt of another. An empty
-- or missing path is an error, never a write into '/'.
local T = require 'tide.testing'
local tokenizer = tide.tokenizer or require 'tide.tokenizer'
local saver = require 'tide.tokenizer_save'

local tmp, cleanup = T.scratch()
local read, exists = T.read, T.exists

-- two small tokenizers trained on different text: different vocab and merges
local corpus_a = { ('the cat sat on the mat. '):rep(40), ('def f(x): return x + 1\n'):rep(30) }
local corpus_b = { ('zebra quartz jumps over lazy dogs! '):rep(40), ('SELECT * FROM t WHERE id = 7;\n'):rep(30) }
local A = tokenizer.train(corpus_a, { vocab_size = 300, special_tokens = { '<|endoftext|>' }, show_progress = false })
local B = tokenizer.train(corpus_b, { vocab_size = 310, special_tokens = { '<|endoftext|>' }, show_progress = false })

local names = { 'tokenizer.json', 'vocab.json', 'merges.txt', 'tokenizer_config.json' }
local function snapshot(dir)
  local s = {}
  for _, n in ipairs(saver.names) do s[n] = exists(dir .. '/' .. n) and read(dir .. '/' .. n) or false end
  return s
end

local function reference(tok, name)
  tok:save(tmp(name))
  return snapshot(tmp(name))
end

T.test('an empty, root or missing path is an error', function()
  T.raises(function() A:save('') end, 'save: the directory path is empty')
  T.raises(function() A:save('/') end, 'refusing to write into the filesystem root')
  T.raises(function() A:save('///') end, 'refusing to write into the filesystem root')
  T.raises(function() A:save() end, 'expected a directory path string, got nil')
  T.raises(function() A:save(nil) end, 'got nil')
  T.write(tmp('plainfile'), 'x')
  T.raises(function() A:save(tmp('plainfile')) end, 'is a file, not a directory')
end)

T.test('a save stopped at any step leaves one whole tokenizer, old or new', function()
  local ref_a, ref_b = reference(A, 'ref_a'), reference(B, 'ref_b')
  T.truthy(ref_a['vocab.json'] ~= ref_b['vocab.json'] and ref_a['merges.txt'] ~= ref_b['merges.txt'])
  for _, n in ipairs(names) do T.truthy(ref_a[n], n) end
  -- the steps of a save into a directory holding another tokenizer (and a
  -- stale special_tokens_map.json, and a model's file that must stay)
  local function prepare(dir)
    A:save(dir)
    T.write(dir .. '/special_tokens_map.json', '{"eos_token": "<|endoftext|>"}')
    T.write(dir .. '/model.safetensors', 'weights')
  end
  local steps = {}
  saver.hook = function(s) steps[#steps + 1] = s end
  prepare(tmp('dry'))
  steps = {}
  B:save(tmp('dry'))
  saver.hook = nil
  T.truthy(#steps >= 12, table.concat(steps, ', '))
  local distinct = {}
  for _, s in ipairs(steps) do T.eq(distinct[s], nil, s); distinct[s] = true end
  local ref_a_map = snapshot(tmp('ref_a'))
  ref_a_map['special_tokens_map.json'] = '{"eos_token": "<|endoftext|>"}'
  local committed = false
  for k, at in ipairs(steps) do
    local dir = tmp('stop' .. k)
    prepare(dir)
    saver.hook = function(s) if s == at then error('simulated crash at ' .. s) end end
    T.raises(function() B:save(dir) end, 'simulated crash at ' .. at)
    saver.hook = nil
    if at == 'cleanup' then committed = true end
    T.same(snapshot(dir), committed and ref_b or ref_a_map, 'stopped at ' .. at)
    T.eq(read(dir .. '/model.safetensors'), 'weights')
    -- tide loads whichever whole set is there, and the next save completes
    local want = committed and B or A
    T.same(tokenizer.load(dir):encode('the zebra sat'), want:encode('the zebra sat'))
    B:save(dir)
    T.same(snapshot(dir), ref_b)
    T.eq(read(dir .. '/model.safetensors'), 'weights')
    -- no generations or temporary names left beside the current one
    local hidden = 0
    for _, n in ipairs(require('tide.data.files').list_dir(dir)) do
      if n:find('^%.tide') then hidden = hidden + 1 end
    end
    T.eq(hidden, 2, 'the link and one generation')
  end
  T.truthy(committed)
  -- and back: the generation scheme works both ways
  A:save(tmp('dry'))
  T.same(snapshot(tmp('dry')), ref_a)
end)

T.test('SIGKILL at any moment of repeated saves leaves one whole tokenizer', function()
  local ffi = require 'ffi'
  pcall(ffi.cdef, 'long readlink(const char *path, char *buf, size_t size);')
  local buf = ffi.new('char[4096]')
  local n = ffi.C.readlink('/proc/self/exe', buf, 4096)
  assert(n > 0, 'readlink /proc/self/exe')
  local exe = ffi.string(buf, n)
  local ref_a, ref_b = reference(A, 'kill_ref_a'), reference(B, 'kill_ref_b')
  local dir = tmp('killed')
  A:save(dir)
  T.write(dir .. '/model.safetensors', 'weights')
  -- a child saves B and A in turn, as fast as it can, until killed
  local script = ("local a = tide.tokenizer.load('%s') local b = tide.tokenizer.load('%s') "
    .. "while true do b:save('%s') a:save('%s') end"):format(tmp('kill_ref_a'), tmp('kill_ref_b'), dir, dir)
  T.write(tmp('saver.lua'), script)
  local seen = {}
  for k = 1, 10 do
    local delay = 0.15 + 0.07 * k
    os.execute(("'%s' '%s' & p=$!; sleep %.2f; kill -9 $p; wait $p 2>/dev/null"):format(exe, tmp('saver.lua'), delay))
    local snap = snapshot(dir)
    local which = T.deep_eq(snap, ref_a) and 'a' or T.deep_eq(snap, ref_b) and 'b' or nil
    T.truthy(which, 'kill ' .. k .. ': the files are neither tokenizer A nor B whole')
    seen[which] = true
    T.eq(read(dir .. '/model.safetensors'), 'weights')
  end
  print(('  kills left A %s, B %s'):format(seen.a and 'seen' or 'unseen', seen.b and 'seen' or 'unseen'))
end)

T.test('a save into a new directory appears whole or not at all', function()
  local ref_b = reference(B, 'ref_b2')
  local steps = {}
  saver.hook = function(s) steps[#steps + 1] = s end
  B:save(tmp('fresh_dry/sub'))
  saver.hook = nil
  T.same(steps, { 'write tokenizer.json', 'write vocab.json', 'write merges.txt', 'write tokenizer_config.json',
                  'rename into place' })
  for _, at in ipairs(steps) do
    local dir = tmp('fresh_' .. at:gsub('[^%w]', '_'))
    saver.hook = function(s) if s == at then error('simulated crash at ' .. s) end end
    T.raises(function() B:save(dir) end, 'simulated crash')
    saver.hook = nil
    T.eq(exists(dir .. '/vocab.json'), false)
    T.raises(function() tokenizer.load(dir) end, 'no such file or directory')
    B:save(dir)  -- clears what the stopped save left beside it
    T.same(snapshot(dir), ref_b)
    local left = 0
    for _, n in ipairs(require('tide.data.files').list_dir(tmp())) do
      if n:find('.tide-new-', 1, true) then left = left + 1 end
    end
    T.eq(left, 0)
  end
  -- an existing empty directory is filled the same way
  assert(os.execute("mkdir -p '" .. tmp('empty') .. "'") == 0)
  B:save(tmp('empty'))
  T.same(snapshot(tmp('empty')), ref_b)
end)

T.test('a parent that cannot be created names the system reason, not "No such file"', function()
  -- the old loop read errno after a later stat, so a read-only mount was
  -- reported as ENOENT; root ignores chmod, but sysfs refuses new directories
  local uid = io.popen('id -u'):read('*l')
  local parent = tmp('ro')
  if uid == '0' then
    parent = '/sys'
  else
    os.execute('mkdir -p ' .. parent .. ' && chmod 0555 ' .. parent)
  end
  local ok, err = pcall(A.save, A, parent .. '/tide_tok_ro/sub/dir')
  if uid ~= '0' then os.execute('chmod 0755 ' .. parent) end
  T.truthy(not ok)
  T.truthy(not tostring(err):find('No such file'), tostring(err))
  T.truthy(tostring(err):find('cannot create directory ' .. parent .. '/tide_tok_ro: '), tostring(err))
  T.write(tmp('afile'), 'x')
  T.raises(function() A:save(tmp('afile') .. '/sub/dir') end, 'Not a directory')
end)

T.test('temporary files are removed', function()
  T.truthy(cleanup())
end)

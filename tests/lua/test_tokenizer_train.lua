-- tide.tokenizer.train: merges and ids identical to Hugging Face tokenizers'
-- BpeTrainer (ByteLevel pre-tokenizer) on tests/ref/bpe_train/corpus.txt for
-- several vocab_size / min_frequency / max_token_length settings (golden
-- file from tests/ref/make_bpe_train_golden.py), the trained tokenizer
-- encoding a held-out text as Hugging Face's does, and clear errors.
local T = require 'tide.testing'
local json = tide.json

local DIR = 'tests/ref/bpe_train/'
local read = T.read

local golden = json.read_file(DIR .. 'golden.json')
-- The corpus as Hugging Face was fed it: one line at a time, '\n' kept.
local lines = {}
for line in read(DIR .. 'corpus.txt'):gmatch('[^\n]*\n?') do
  if line ~= '' then lines[#lines + 1] = line end
end

local function opts_of(c)
  return { vocab_size = c.vocab_size, min_frequency = c.min_frequency,
           max_token_length = c.max_token_length ~= json.null and c.max_token_length or nil }
end

local function first_diff(a, b)
  for i = 1, math.max(#a, #b) do
    if a[i] ~= b[i] then return ('at %d: tide %s, HF %s'):format(i, tostring(a[i]), tostring(b[i])) end
  end
end

for k, c in ipairs(golden.cases) do
  local name = ('vocab_size=%d min_frequency=%d max_token_length=%s'):format(
    c.vocab_size, c.min_frequency, tostring(c.max_token_length))
  T.test('merges and vocab equal BpeTrainer: ' .. name, function()
    local r = tide.tokenizer.learn(lines, opts_of(c))
    assert(#r.merges == #c.merges and not first_diff(r.merges, c.merges),
           ('merges differ (%d vs %d) %s'):format(#r.merges, #c.merges, first_diff(r.merges, c.merges) or "-"))
    assert(#r.vocab == #c.vocab and not first_diff(r.vocab, c.vocab),
           ('vocab differs (%d vs %d) %s'):format(#r.vocab, #c.vocab, first_diff(r.vocab, c.vocab) or "-"))
  end)
  local want = golden.heldout.ids[tostring(k)]
  if c.vocab_size == 1000 and c.min_frequency == 0 and c.max_token_length == json.null then
    T.test('trained tokenizer encodes held-out text as HF does: ' .. name, function()
      local i = 0
      local tok = tide.tokenizer.train(function() i = i + 1; return lines[i] end, opts_of(c))
      T.same(tok:vocab_size(), c.vocab_size)
      T.same(tok:encode(golden.heldout.text), want)
      T.same(tok:decode(want), golden.heldout.text)
      T.same(tok.eos_id, 0)
      T.same(tok:token_to_id(c.vocab[#c.vocab]), #c.vocab - 1)
    end)
  end
end

T.test('ties go to the smaller (left id, right id) pair; words count with their multiplicity', function()
  -- (a, b) and (c, d) both occur twice: (a, b) has the smaller ids and merges
  -- first; then (c, d) and (Ġ, ab) tie and 'c' < 'Ġ' (U+0120). Checked with HF.
  local r = tide.tokenizer.learn({ 'cd ab cd ab' }, { vocab_size = 259, special_tokens = {} })
  T.same(r.merges, { 'a b', 'c d', 'Ġ ab' })
  T.same(r.vocab[257], 'ab')
  -- A piece counted 3 times beats one counted twice.
  r = tide.tokenizer.learn({ 'xy', 'xy', 'zw', 'zw', 'zw' }, { vocab_size = 257, special_tokens = {} })
  T.same(r.merges, { 'z w' })
end)

T.test('min_frequency and the seen alphabet', function()
  local r = tide.tokenizer.learn({ 'aa bb aa' }, { vocab_size = 1000, min_frequency = 2, special_tokens = {},
                                                  initial_alphabet = 'seen' })
  -- After 'aa' (count 2) every pair occurs once: below min_frequency. Checked with HF.
  T.same(r.vocab, { 'a', 'b', 'Ġ', 'aa' })
  T.same(r.merges, { 'a a' })
end)

T.test("the course's train_new_from_iterator(GPT-2, 32768) id for id", function()
  -- transformers retrained GPT-2's tokenizer on the corpus, 100 lines per
  -- batch (tests/ref/bpe_train/train_new.json); lines one at a time are the
  -- same input, since each string is pre-tokenized on its own
  local want = json.read_file(DIR .. 'train_new.json')
  local old = tide.tokenizer.load('data/gpt2')
  local i = 0
  local new = old:train_new_from_iterator(function() i = i + 1; return lines[i] end, 32768)
  T.eq(new:vocab_size(), #want.vocab)
  for id = 0, #want.vocab - 1 do
    if new:id_to_token(id) ~= want.vocab[id + 1] then
      error(('id %d: tide %q, transformers %q'):format(id, new:id_to_token(id), want.vocab[id + 1]))
    end
  end
  T.eq(new.eos_id, 0)
  local dir = os.tmpname()
  os.remove(dir)
  new:save(dir)
  local merges = {}
  for line in io.lines(dir .. '/merges.txt') do
    if not line:match('^#version') then merges[#merges + 1] = line end
  end
  os.execute('rm -rf ' .. dir)
  T.eq(#merges, #want.merges)
  T.truthy(not first_diff(merges, want.merges), first_diff(merges, want.merges))
  T.raises(function() old:train_new(lines, 300, { special_tokens = {} }) end, 'come from the tokenizer')
  T.raises(function() old:train_new(lines) end, 'vocab_size must be a number')
end)

T.test('a tide.data stream is a source, records or strings', function()
  local c = golden.cases[1]
  local recs = {}
  for i, l in ipairs(lines) do recs[i] = { content = l, path = 'x' } end
  local from_records = tide.tokenizer.learn(tide.data.from(recs), opts_of(c))
  T.same(from_records.merges, c.merges)
  local o = opts_of(c)
  o.field = 'body'
  local bodies = {}
  for i, l in ipairs(lines) do bodies[i] = { body = l } end
  T.same(tide.tokenizer.learn(tide.data.from(bodies), o).merges, c.merges)
  T.same(tide.tokenizer.learn(tide.data.from(lines), opts_of(c)).merges, c.merges)
  T.raises(function() tide.tokenizer.learn(tide.data.from({ { n = 1 } }), opts_of(c)) end, 'record 1 of the stream')
end)

T.test('counting over threads gives the merges of one thread', function()
  -- over 1 MB in a batch: the parallel path, whose per-thread maps are
  -- added together; 2 and 3 threads split the texts differently
  local big = {}
  for r = 1, 20 do
    for i, l in ipairs(lines) do big[#big + 1] = (r % 3 == 0) and l:upper() or l end
  end
  local saved = tide.get_num_threads()
  local results = {}
  for _, n in ipairs({ 1, 2, 3 }) do
    tide.set_num_threads(n)
    results[n] = tide.tokenizer.learn(big, { vocab_size = 2000, show_progress = false })
  end
  tide.set_num_threads(saved)
  T.same(results[2].merges, results[1].merges)
  T.same(results[3].merges, results[1].merges)
  T.same(results[3].vocab, results[1].vocab)
end)

T.test('the trainer merges in steps and returns between them, with the same merges', function()
  local ffi = require 'ffi'
  local C = tide.C
  local function trainer()
    local trp = ffi.new('tide_bpe_trainer*[1]')
    assert(C.tide_bpe_trainer_new(trp) == 0)
    local tr = ffi.gc(trp[0], C.tide_bpe_trainer_free)
    local text = table.concat(lines)
    assert(C.tide_bpe_trainer_add_text(tr, text, #text) == 0)
    return tr
  end
  local function merges(tr)
    local l, r, n, out = ffi.new('int32_t[1]'), ffi.new('int32_t[1]'), ffi.new('int32_t[1]'), {}
    for i = 0, tonumber(C.tide_bpe_trainer_merge_count(tr)) - 1 do
      assert(C.tide_bpe_trainer_merge(tr, i, l, r, n) == 0)
      out[#out + 1] = { l[0], r[0], n[0] }
    end
    return out
  end
  local sp, sl = ffi.new('const char*[1]', { '<|endoftext|>' }), ffi.new('int64_t[1]', { 13 })
  local whole = trainer()
  T.eq(C.tide_bpe_trainer_train(whole, 3000, 0, 0, sp, sl, 1, 1), 0)
  local tr = trainer()
  T.eq(C.tide_bpe_trainer_begin(tr, 3000, 0, 0, sp, sl, 1, 1), 0)
  T.eq(tonumber(C.tide_bpe_trainer_merges_wanted(tr)), 2743)  -- 3000 - 257
  local done, counts = ffi.new('int32_t[1]'), {}
  repeat
    T.eq(C.tide_bpe_trainer_merge_some(tr, 1024, done), 0)
    counts[#counts + 1] = tonumber(C.tide_bpe_trainer_merge_count(tr))
  until done[0] ~= 0
  T.same(counts, { 1024, 2048, 2743 })
  T.same(merges(tr), merges(whole))
  T.eq(tonumber(C.tide_bpe_trainer_vocab_size(tr)), 3000)
  T.eq(C.tide_bpe_trainer_merge_some(tr, 1024, done), 0)  -- after the end: nothing more
  T.eq(done[0], 1)
  T.eq(tonumber(C.tide_bpe_trainer_merge_count(tr)), 2743)
end)

T.test('bad arguments give clear errors', function()
  T.raises(function() tide.tokenizer.train(42) end, 'an array of strings, an iterator function or a tide.data stream')
  T.raises(function() tide.tokenizer.train({ 'a', 5 }) end, 'source[2] is a number')
  T.raises(function() tide.tokenizer.train({ 'a' }, { vocab_size = 100 }) end, 'vocab_size 100 is smaller than the 257')
  T.raises(function() tide.tokenizer.train({ 'a' }, { min_frequency = -1 }) end, 'min_frequency must be >= 0')
  T.raises(function() tide.tokenizer.train({ 'a' }, { vocab_size = 1.5 }) end, 'vocab_size must be an integer')
  T.raises(function() tide.tokenizer.train({ 'a' }, { initial_alphabet = 'abc' }) end, 'initial_alphabet')
  T.raises(function() tide.tokenizer.train({ 'a' }, { special_tokens = { '' } }) end, 'special_tokens[1]')
  T.raises(function() tide.tokenizer.train({ 'a' }, 'big') end, 'options must be a table')
end)

T.test('the C trainer rejects bad input itself', function()
  local ffi = require 'ffi'
  local C = require 'tide.C'
  local buf = ffi.new('tide_bpe_trainer*[1]')
  T.same(C.tide_bpe_trainer_new(buf), 0)
  local tr = ffi.gc(buf[0], C.tide_bpe_trainer_free)
  T.same(C.tide_bpe_trainer_add_text(tr, 'hello hello world', 17), 0)
  T.same(tonumber(C.tide_bpe_trainer_piece_count(tr)), 3)
  T.same(C.tide_bpe_trainer_add_text(tr, nil, 5), -1)
  T.same(C.tide_bpe_trainer_train(tr, 300, -1, 0, nil, nil, 0, 1), -1)
  assert(ffi.string(C.tide_last_error()):find('min_frequency must be >= 0', 1, true))
  T.same(C.tide_bpe_trainer_train(tr, 300, 0, 0, nil, nil, 1, 1), -1)
  T.same(C.tide_bpe_trainer_train(tr, 260, 0, 0, nil, nil, 0, 1), 0)
  T.same(tonumber(C.tide_bpe_trainer_vocab_size(tr)), 260)
  T.same(tonumber(C.tide_bpe_trainer_merge_count(tr)), 4)
  T.same(C.tide_bpe_trainer_merge(tr, 4, nil, nil, nil), -1)
  T.same(C.tide_bpe_trainer_token(tr, 260, nil), nil)
end)

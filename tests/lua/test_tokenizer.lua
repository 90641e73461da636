-- tide.tokenizer: GPT-2-exact encoding against golden ids from Hugging Face
-- tokenizers (tests/ref/make_tokenizer_golden.py), byte-exact round trips,
-- added tokens only where allowed, tokenizer.json loading, clear errors for
-- malformed files, and linear time on long runs of one character.
local T = require 'tide.testing'
local json = tide.json or require 'tide.json'
local tokenizer = tide.tokenizer or require 'tide.tokenizer'

local GPT2 = 'data/gpt2'
local exists, read, write = T.exists, T.read, T.write
local have_gpt2 = exists(GPT2 .. '/vocab.json') and exists(GPT2 .. '/merges.txt')

-- created on first use: the file's top level runs before its tests do
local tmp, cleanup = T.scratch()
local function unhex(h)
  return (h:gsub('..', function(x) return string.char(tonumber(x, 16)) end))
end

local tok = have_gpt2 and tokenizer.load(GPT2)
local texts = json.read_file('tests/ref/tokenizer/texts.json')
local golden = json.read_file('tests/ref/tokenizer/gpt2_ids.json')

local function need_gpt2()
  if not have_gpt2 then T.skip('GPT-2 files not found in ' .. GPT2) end
end

T.test('GPT-2 encoding equals the golden ids on every text', function()
  need_gpt2()
  T.eq(#texts, #golden)
  for i, t in ipairs(texts) do
    local g = golden[i]
    T.eq(g.name, t.name)
    local ids = tok:encode(unhex(t.hex))
    local want = {}
    for k, v in ipairs(g.ids) do want[k] = v end
    T.same(ids, want, t.name)
  end
end)

T.test('decode(encode(x)) == x on the golden texts and on random bytes', function()
  need_gpt2()
  for _, t in ipairs(texts) do
    local s = unhex(t.hex)
    T.eq(tok:decode(tok:encode(s)), s, t.name)
  end
  local r = T.lcg(7)
  for _ = 1, 300 do
    local n = math.floor(r() * 64)
    local b = {}
    for k = 1, n do
      -- bias towards the interesting bytes: spaces, quotes, letters, UTF-8 leads
      local u = r()
      if u < 0.15 then b[k] = (' \t\n\'sa1'):byte(math.floor(r() * 7) + 1)
      else b[k] = math.floor(r() * 256) end
    end
    local s = string.char(unpack(b))
    T.eq(tok:decode(tok:encode(s)), s)
  end
end)

T.test('pieces, vocabulary queries and eos_id', function()
  need_gpt2()
  T.same(tok:tokens(' say hi'), { '\196\160say', '\196\160hi' })
  T.eq(tok:vocab_size(), 50257)
  T.eq(tok.eos_id, 50256)
  T.eq(tok:token_to_id('Hello'), 15496)
  T.eq(tok:id_to_token(15496), 'Hello')
  T.eq(tok:token_to_id('no such token here'), nil)
  T.eq(tok:id_to_token(50257), nil)
  T.eq(tok:id_to_token(-1), nil)
  T.same(tok:encode(''), {})
  T.eq(tokenizer.unicode_version, '16.0.0')
end)

T.test('added tokens are matched only where allowed', function()
  need_gpt2()
  for i, t in ipairs(texts) do
    local g = golden[i]
    if g.ids_special then
      local s = unhex(t.hex)
      local want = {}
      for k, v in ipairs(g.ids_special) do want[k] = v end
      T.same(tok:encode(s, { allowed_special = 'all' }), want, t.name)
      T.same(tok:encode(s, { allowed_special = { ['<|endoftext|>'] = true } }), want)
      T.same(tok:encode(s, { allowed_special = { '<|endoftext|>' } }), want)
      T.same(tok:encode(s, { allowed_special = {} }), tok:encode(s))
      T.eq(tok:decode(want), s)
    end
  end
  T.same(tok:encode('<|endoftext|><|endoftext|>', { allowed_special = 'all' }), { 50256, 50256 })
  T.raises(function() tok:encode('x', { allowed_special = { '<|nope|>' } }) end, 'not an added token')
  T.raises(function() tok:encode('x', { allowed_special = 'some' }) end, 'allowed_special')
  T.raises(function() tok:encode(3) end, 'expected a string')
end)

T.test('decode checks ids and replaces invalid UTF-8 on request', function()
  need_gpt2()
  local s = 'a\226\130b\255'
  local ids = tok:encode(s)
  T.eq(tok:decode(ids), s)
  T.eq(tok:decode(ids, { errors = 'replace' }), 'a\239\191\189b\239\191\189')
  T.eq(tok:decode(tok:encode('€ ok'), { errors = 'replace' }), '€ ok')
  T.raises(function() tok:decode({ 50257 }) end, 'id 50257 at position 1')
  T.raises(function() tok:decode({ 1, -3 }) end, 'position 2')
  T.raises(function() tok:decode({ 1.5 }) end, 'not an integer id')
  T.raises(function() tok:decode(ids, { errors = 'ignore' }) end, 'replace')
end)

T.test('tokenizer.json loads and encodes as vocab.json + merges.txt', function()
  need_gpt2()
  local vocab = read(GPT2 .. '/vocab.json')
  local merges = {}
  local n = 0
  for line in read(GPT2 .. '/merges.txt'):gmatch('[^\n]+') do
    if not line:find('^#version') then
      n = n + 1
      local a, b = line:match('^(%S+) (%S+)$')
      -- both forms Hugging Face writes: "a b" strings and [a, b] pairs
      merges[n] = n % 2 == 0 and json.encode(line) or ('[' .. json.encode(a) .. ',' .. json.encode(b) .. ']')
    end
  end
  local text = '{"version":"1.0","added_tokens":[{"id":50256,"content":"<|endoftext|>","special":true}],'
    .. '"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false},'
    .. '"model":{"type":"BPE","vocab":' .. vocab .. ',"merges":[' .. table.concat(merges, ',') .. ']}}'
  assert(os.execute('mkdir -p ' .. tmp('hf')) == 0)
  write(tmp('hf/tokenizer.json'), text)
  local t2 = tokenizer.load(tmp('hf'))
  local t3 = tokenizer.load(tmp('hf/tokenizer.json'))
  T.eq(t2.eos_id, 50256)
  T.eq(t2:vocab_size(), 50257)
  for i, t in ipairs(texts) do
    local s = unhex(t.hex)
    local want = {}
    for k, v in ipairs(golden[i].ids) do want[k] = v end
    T.same(t2:encode(s), want, t.name)
    T.same(t3:encode(s, { allowed_special = 'all' }), tok:encode(s, { allowed_special = 'all' }))
  end
end)

T.test('malformed files give clear errors', function()
  -- a byte-level vocabulary needs all 256 byte tokens (GPT-2's byte map: the
  -- printable Latin-1 bytes stand for themselves, the others for U+0100 on)
  local parts = {}
  for b = 0, 255 do
    local keep = (b >= 33 and b <= 126) or (b >= 161 and b <= 172) or (b >= 174)
    parts[#parts + 1] = { b = b, keep = keep }
  end
  local k, entries = 0, {}
  for _, p in ipairs(parts) do
    local cp = p.b
    if not p.keep then cp = 256 + k; k = k + 1 end
    local s
    if cp < 0x80 then s = string.char(cp)
    else s = string.char(0xC0 + math.floor(cp / 64), 0x80 + cp % 64) end
    entries[#entries + 1] = json.encode(s) .. ':' .. p.b
  end
  local base = table.concat(entries, ',')
  local good_vocab = '{' .. base .. ',"ab":256,"abc":257}'
  write(tmp('vocab.json'), good_vocab)
  write(tmp('merges.txt'), '#version: 0.2\na b\nab c\n')
  local t = tokenizer.load(tmp('vocab.json'):gsub('/vocab.json$', ''))
  T.same(t:encode('abc abd'), { 257, t:token_to_id('\196\160'), 256, 100 })
  T.same(t:tokens('abc abd'), { 'abc', '\196\160', 'ab', 'd' })
  T.eq(t.eos_id, nil)

  local function load_pair(vocab, merges)
    write(tmp('bad/vocab.json'), vocab)
    write(tmp('bad/merges.txt'), merges)
    return tokenizer.load(tmp('bad'))
  end
  assert(os.execute('mkdir -p ' .. tmp('bad')) == 0)
  T.raises(function() load_pair(good_vocab, '#version: 0.2\na b\nab c d\n') end, 'merges.txt line 3')
  T.raises(function() load_pair(good_vocab, 'a b\n\nab c\n') end, 'merges.txt line 2')
  T.raises(function() load_pair(good_vocab, 'a b\nab\n') end, 'line 2: expected two tokens')
  T.raises(function() load_pair(good_vocab, 'a b\nab zz\n') end, "line 2: merge 'ab zz': 'zz' is not in the vocabulary")
  T.raises(function() load_pair(good_vocab, 'a b\nb c\n') end, 'line 2')
  T.raises(function() load_pair('{' .. base .. ',"ab":256', 'a b\n') end, 'vocab.json: json: line 1')
  T.raises(function() load_pair('{' .. base .. ',"ab":"x"}', 'a b\n') end, "the id of token 'ab' is not an integer")
  T.raises(function() load_pair('{' .. base .. ',"ab":-1}', 'a b\n') end, 'not an integer in [0, 2^30)')
  T.raises(function() load_pair('{' .. base .. ',"ab":256,"ba":256}', 'a b\n') end, 'id 256 is given to two tokens')
  T.raises(function() load_pair('{"a":0,"b":1}', 'a b\n') end, 'no token for byte 0x00')
  T.raises(function() load_pair('[1, 2]', 'a b\n') end, 'not a JSON object')
  T.raises(function() tokenizer.load(tmp('nowhere')) end, 'no such file or directory')
  assert(os.execute('mkdir -p ' .. tmp('empty')) == 0)
  T.raises(function() tokenizer.load(tmp('empty')) end, 'holds neither tokenizer.json')

  local function load_json(s)
    write(tmp('bad/tokenizer.json'), s)
    return tokenizer.load(tmp('bad/tokenizer.json'))
  end
  local model = '"vocab":' .. good_vocab
  T.raises(function() load_json('{"model":{"type":"WordPiece",' .. model .. '}}') end, 'only BPE models')
  T.raises(function() load_json('{"model":{"type":"BPE",' .. model .. ',"merges":["a b","ab"]}}') end, 'model.merges[1]')
  T.raises(function() load_json('{"model":{"type":"BPE",' .. model .. ',"merges":[["a"]]}}') end, 'model.merges[0]')
  T.raises(function() load_json('{"model":{"type":"BPE",' .. model .. ',"merges":["a zz"]}}') end, "'zz' is not in the vocabulary")
  T.raises(function() load_json('{"model":{"type":"BPE",' .. model .. ',"merges":["a b"]},"added_tokens":[{"id":1}]}') end, 'added_tokens[0]')
  T.raises(function() load_json('{"nomodel":1}') end, 'no "model" object')
  T.raises(function() load_json('{"model":') end, 'tokenizer.json: json: line 1')
  local t2 = load_json('{"model":{"type":"BPE",' .. model .. ',"merges":["a b",["ab","c"]]},'
    .. '"added_tokens":[{"id":258,"content":"<pad>","special":true}]}')
  T.eq(t2:vocab_size(), 259)
  T.same(t2:encode('abc<pad>'), { 257, 60, 112, 97, 100, 62 })
  T.same(t2:encode('abc<pad>', { allowed_special = 'all' }), { 257, 258 })
  T.eq(t2:decode({ 257, 258 }), 'abc<pad>')
end)

T.test('long runs of one character encode in linear time', function()
  need_gpt2()
  for _, c in ipairs({ 'a', ' ', '^', '\n', '1', 'é' }) do
    -- a megabyte of the three the issue names, 200 KB of the others
    local n = (c == 'a' or c == ' ' or c == '^') and 1000000 or 200000
    local s = c:rep(math.floor(n / #c))
    local t0 = tide.clock()
    local ids = tok:encode(s)
    local dt = tide.clock() - t0
    T.truthy(#ids > 0)
    T.eq(tok:decode(ids), s)
    print(('  %d bytes of %q: %d ids in %.3f s'):format(#s, c, #ids, dt))
  end
end)

T.test('the piece memo kept between calls changes no ids', function()
  need_gpt2()
  -- tok's memo is warm from the tests above (and its scratch grew for the
  -- megabyte pieces, then was given back); a fresh tokenizer starts cold;
  -- batches hold per-thread memos of their own
  local fresh = tide.tokenizer.load(GPT2)
  local all = {}
  for i = #texts, 1, -1 do all[#all + 1] = unhex(texts[i].hex) end
  local batch = tok:encode_batch(all)
  for round = 1, 2 do
    for i, t in ipairs(texts) do
      local want = {}
      for k, v in ipairs(golden[i].ids) do want[k] = v end
      T.same(tok:encode(unhex(t.hex)), want, t.name .. ' warm, round ' .. round)
      T.same(fresh:encode(unhex(t.hex)), want, t.name .. ' fresh, round ' .. round)
      T.same(batch[#texts + 1 - i], want, t.name .. ' batch')
    end
  end
end)

T.test('pre_tokenize gives the pieces encode merges, covering the text', function()
  local P = tide.tokenizer.pre_tokenize
  T.same(P("Hello  world!"), { 'Hello', ' ', ' world', '!' })
  T.same(P("I'LL it's\r\n\n  x"), { 'I', "'", 'LL', ' it', "'s", '\r\n\n ', ' x' })
  T.same(P(''), {})
  T.same(P('\xff\xfe a'), { '\xff\xfe', ' a' })
  -- U+1C8A is a letter since Unicode 16.0 (as for Hugging Face), U+16EA0 only since 17.0
  T.same(P('"\u{1C8A}",'), { '"', '\u{1C8A}', '",' })
  T.same(P('"\u{16EA0}",'), { '"\u{16EA0}",' })
  for _, t in ipairs(texts) do
    local s = unhex(t.hex)
    T.eq(table.concat(P(s)), s, t.name)
  end
  T.raises(function() P(42) end, 'pre_tokenize: expected a string')
end)

T.test('temporary files are removed', function()
  T.truthy(cleanup())
end)

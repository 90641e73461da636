-- tide.tokenizer beyond encode/decode: save (Hugging Face tokenizer.json,
-- vocab.json, merges.txt) and load back identically, encode_batch equal to
-- per-text encode, the streaming decoder equal to decode with errors =
-- 'replace', and the inspection helpers.
local T = require 'tide.testing'
local json = tide.json or require 'tide.json'
local tokenizer = tide.tokenizer or require 'tide.tokenizer'

local GPT2 = 'data/gpt2'
local exists, read = T.exists, T.read
local have_gpt2 = exists(GPT2 .. '/vocab.json') and exists(GPT2 .. '/merges.txt')

local _, cleanup, tmpdir = T.scratch()

local samples = {
  'Hello world', 'def say_hello():\n    print("Hello, World!")', '', ' ', '  \n\n\t x',
  'héllo wörld 日本語 🎉🎉 e\204\129', "it's we've I'LL", '12345 ٣٤٥ ๑๒๓', 'a<|endoftext|>b',
  '\255\254 bad \192\128 bytes \237\160\128', ('x'):rep(3000),
}

local function lcg_bytes(rng, n)
  local t = {}
  for i = 1, n do t[i] = string.char(math.floor(rng() * 256) % 256) end
  return table.concat(t)
end

T.test('save writes Hugging Face files and load(save(tok)) encodes identically', function()
  if not have_gpt2 then return T.skip('no GPT-2 files in ' .. GPT2) end
  local tok = tokenizer.load(GPT2)
  tok:save(tmpdir .. '/gpt2/')
  local doc = json.read_file(tmpdir .. '/gpt2/tokenizer.json')
  T.same(doc.version, '1.0')
  T.same(doc.model.type, 'BPE')
  T.same(doc.model.fuse_unk, false)
  T.same(doc.model.dropout, json.null)
  T.same(doc.pre_tokenizer, { type = 'ByteLevel', add_prefix_space = false, trim_offsets = true, use_regex = true })
  T.same(doc.decoder.type, 'ByteLevel')
  T.same(doc.post_processor.type, 'ByteLevel')
  T.same(#doc.model.merges, 50000)
  T.same(doc.model.merges[1], 'Ġ t')
  T.same(doc.model.vocab['Ġsay'], 910)
  T.same(doc.added_tokens[1].content, '<|endoftext|>')
  T.same(doc.added_tokens[1].id, 50256)
  T.same(doc.added_tokens[1].special, true)
  T.same(read(tmpdir .. '/gpt2/merges.txt'):sub(1, 19), '#version: 0.2\nĠ t\n')
  T.same(json.read_file(tmpdir .. '/gpt2/tokenizer_config.json').tokenizer_class, 'GPT2Tokenizer')
  -- what data/gpt2 ships for transformers.AutoTokenizer, so both load alike
  T.same(read(tmpdir .. '/gpt2/tokenizer_config.json'), read(GPT2 .. '/tokenizer_config.json'))
  for _, path in ipairs { tmpdir .. '/gpt2', tmpdir .. '/gpt2/tokenizer.json' } do
    local t2 = tokenizer.load(path)
    T.same(t2:vocab_size(), tok:vocab_size())
    T.same(t2.eos_id, 50256)
    for _, s in ipairs(samples) do
      T.same(t2:encode(s), tok:encode(s))
      T.same(t2:encode(s, { allowed_special = 'all' }), tok:encode(s, { allowed_special = 'all' }))
    end
  end
  -- vocab.json + merges.txt alone load to the same tokenizer
  os.remove(tmpdir .. '/gpt2/tokenizer.json')
  local t3 = tokenizer.load(tmpdir .. '/gpt2')
  for _, s in ipairs(samples) do T.same(t3:encode(s), tok:encode(s)) end
  T.same(t3:merges()[50000], tok:merges()[50000])
  T.raises(function() tok:save(tmpdir .. '/gpt2/merges.txt/dir') end, 'save: cannot create directory')
  T.raises(function() tok:save(3) end, 'expected a directory path')
end)

T.test('encode_batch equals per-text encode', function()
  if not have_gpt2 then return T.skip('no GPT-2 files in ' .. GPT2) end
  local tok = tokenizer.load(GPT2)
  local rng = T.lcg(7)
  local texts = {}
  for i = 1, #samples do texts[i] = samples[i] end
  for i = 1, 200 do texts[#texts + 1] = lcg_bytes(rng, i % 37) .. samples[i % #samples + 1] end
  local got = tok:encode_batch(texts)
  T.same(#got, #texts)
  for i, s in ipairs(texts) do T.same(got[i], tok:encode(s)) end
  local all = tok:encode_batch(texts, { allowed_special = 'all' })
  for i, s in ipairs(texts) do T.same(all[i], tok:encode(s, { allowed_special = 'all' })) end
  T.same(tok:encode_batch({}), {})
  T.raises(function() tok:encode_batch({ 'a', 5 }) end, 'texts[2] is a number')
  T.raises(function() tok:encode_batch('a') end, 'expected an array of strings')
end)

T.test('the streaming decoder equals decode with errors = replace', function()
  if not have_gpt2 then return T.skip('no GPT-2 files in ' .. GPT2) end
  local tok = tokenizer.load(GPT2)
  local function stream(ids)
    local d, out = tok:decoder(), {}
    for _, id in ipairs(ids) do out[#out + 1] = d:push(id) end
    out[#out + 1] = d:flush()
    return table.concat(out), out
  end
  -- a character split across ids is held back until its last byte
  local ids = tok:encode('日本 🎉')
  local text, parts = stream(ids)
  T.same(text, '日本 🎉')
  for _, p in ipairs(parts) do T.same(tok:decode({}, { errors = 'replace' }) .. p, p) end
  T.same(parts[1], '')  -- the first id holds only part of 日
  -- random id sequences, including byte tokens that never complete
  local rng = T.lcg(3)
  local bytes = {}
  for b = 0, 255 do bytes[#bytes + 1] = tok:encode(string.char(b))[1] end
  for _ = 1, 300 do
    local seq = {}
    for k = 1, math.floor(rng() * 12) do
      seq[k] = rng() < 0.7 and bytes[math.floor(rng() * 256) + 1] or math.floor(rng() * 50257)
    end
    T.same(stream(seq), tok:decode(seq, { errors = 'replace' }))
  end
  for _, s in ipairs(samples) do T.same(stream(tok:encode(s)), tok:decode(tok:encode(s), { errors = 'replace' })) end
  -- an unfinished character at the end becomes one U+FFFD on flush
  local d = tok:decoder()
  T.same(d:push(bytes[0xE6 + 1]), '')
  T.same(d:push(bytes[0x97 + 1]), '')
  T.same(d:flush(), '\239\191\189')
  T.same(d:flush(), '')
  T.raises(function() tok:decoder():push(10 ^ 9) end, 'not a token')
  T.raises(function() tok:decoder():push('x') end, 'expected an integer id')
end)

T.test('inspection helpers', function()
  if not have_gpt2 then return T.skip('no GPT-2 files in ' .. GPT2) end
  local tok = tokenizer.load(GPT2)
  T.same(tok:is_single_token({ 'def', 'print', 'lambda', 'nonlocal' }),
         { def = true, print = true, lambda = true, nonlocal = false })
  T.same(tok:last_merges(2), { 'Ġgazed', 'Ġinformants' })
  local m = tok:merges()
  T.same(tok:last_merges(1)[1], m[#m][1] .. m[#m][2])
  local longest = tok:longest_tokens(3)
  T.same(#longest, 3)
  local function len(s) return #s:gsub('[\128-\191]', '') end
  T.same(len(longest[1]) >= len(longest[2]) and len(longest[2]) >= len(longest[3]), true)
  T.same(tok:id_to_token(tok:token_to_id(longest[1])), longest[1])
  -- 'Hello world' is 11 characters in 2 tokens; 'héllo' is 5 characters in 3
  T.close(tok:chars_per_token('Hello world'), 5.5)
  T.close(tok:chars_per_token({ 'Hello world', 'héllo' }), 16 / 5)
  T.same(tok:chars_per_token({}), 0)
  local f, cont = tok:fertility({ 'Hello world héllo', '  unbelievably\n' })
  -- Hello(1) world(1) héllo(h é llo: 3) unbelievably(unbel iev ably: 3) over 4 words
  T.close(f, (1 + 1 + #tok:encode('héllo') + #tok:encode('unbelievably')) / 4)
  T.close(cont, 2 / 4)
  T.same({ tok:fertility('') }, { 0, 0 })
  T.raises(function() tok:fertility(5) end, 'expected a string or an array')
end)

cleanup()

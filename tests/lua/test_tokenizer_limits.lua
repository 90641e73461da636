-- tokenizer.json files built to break the loader: many added tokens (the
-- string table once filled up and probed forever), ids far beyond what the
-- file lists (a huge allocation), gaps and clashes among ids, and settings
-- tide does not implement (refused by name, never silently ignored).
local T = require 'tide.testing'
local json = tide.json or require 'tide.json'
local tokenizer = tide.tokenizer or require 'tide.tokenizer'

local tmp, cleanup = T.scratch()

-- the 256 byte tokens of a byte-level vocabulary (GPT-2's byte map: the
-- printable Latin-1 bytes stand for themselves, the others for U+0100 on)
local byte_tokens = {}
do
  local k = 0
  for b = 0, 255 do
    local cp = b
    if not ((b >= 33 and b <= 126) or (b >= 161 and b <= 172) or b >= 174) then cp = 256 + k; k = k + 1 end
    byte_tokens[b + 1] = cp < 0x80 and string.char(cp) or string.char(0xC0 + math.floor(cp / 64), 0x80 + cp % 64)
  end
end

-- vocab: the byte tokens, then "ab" (256) and "abc" (257); extra entries
-- {token, id} after them
local function vocab_json(extra)
  local parts = {}
  for b = 0, 255 do parts[#parts + 1] = json.encode(byte_tokens[b + 1]) .. ':' .. b end
  parts[#parts + 1] = '"ab":256'
  parts[#parts + 1] = '"abc":257'
  for _, e in ipairs(extra or {}) do parts[#parts + 1] = json.encode(e[1]) .. ':' .. e[2] end
  return '{' .. table.concat(parts, ',') .. '}'
end

local n = 0
-- writes a tokenizer.json from its parts (strings of JSON) and loads it
local function load(parts)
  n = n + 1
  local fields = {}
  for k, v in pairs(parts) do fields[#fields + 1] = json.encode(k) .. ':' .. v end
  table.sort(fields)
  local path = tmp(('t%d.json'):format(n))
  T.write(path, '{' .. table.concat(fields, ',') .. '}')
  return tokenizer.load(path)
end

local function model(extra_fields, vocab)
  return '{"type":"BPE","vocab":' .. (vocab or vocab_json()) .. ',"merges":["a b","ab c"]'
    .. (extra_fields and (',' .. extra_fields) or '') .. '}'
end

local function added_list(list)
  local out = {}
  for i, a in ipairs(list) do
    out[i] = ('{"id":%s,"content":%s,"special":true%s}'):format(a[2], json.encode(a[1]), a[3] and (',' .. a[3]) or '')
  end
  return '[' .. table.concat(out, ',') .. ']'
end

T.test('thousands of added tokens load, and lookups of unknown strings return', function()
  -- 258 vocabulary tokens and 3,839 added tokens: the string table was sized
  -- for vocabulary + 1,024 and filled up, so loading probed forever; with one
  -- fewer, a lookup of a string not in it did
  for _, count in ipairs({ 3838, 3839, 6000 }) do
    local list = {}
    for i = 1, count do list[i] = { ('<t%d>'):format(i), 257 + i } end
    local tok = load { model = model(), added_tokens = added_list(list) }
    T.eq(tok:vocab_size(), 258 + count)
    T.eq(tok:token_to_id('no such token'), nil)
    T.eq(tok:token_to_id('<t1>'), 258)
    T.eq(tok:token_to_id(('<t%d>'):format(count)), 257 + count)
    T.same(tok:encode('abc zz'), { 257, tok:token_to_id('\196\160'), 122, 122 })
    T.same(tok:encode('abc<t7>', { allowed_special = 'all' }), { 257, 264 })
    T.eq(#tok.added, count)
  end
end)

T.test('ids beyond what the file lists, gaps and clashes are errors naming the token', function()
  local function added(list) return load { model = model(), added_tokens = added_list(list) } end
  -- 1e8 would have sized the tables for a hundred million ids (1.6 GB)
  T.raises(function() added { { '<big>', 100000000 } } end, "added_tokens[0] '<big>' has id 100000000, beyond the 259 tokens")
  T.raises(function() added { { '<neg>', -1 } } end, 'added_tokens[0] needs an integer "id" in [0, 2^30)')
  T.raises(function() added { { 'abc', 257 }, { '<gap>', 259 } } end, 'no token has id 258, but id 259 is used')
  T.raises(function() added { { '<a>', 258 }, { '<b>', 258 } } end, "id 258 is given to two tokens ('<a>' and '<b>')")
  T.raises(function() added { { '<a>', 258 }, { '<a>', 259 } } end, "token '<a>' is given two ids (258 and 259)")
  T.raises(function() added { { '<a>', 258 }, { '<a>', 258 } } end, "added_tokens[1] '<a>' (id 258) is listed twice")
  T.raises(function() added { { 'abc', 258 } } end, "token 'abc' is given two ids (257 and 258)")
  -- the vocabulary alone: an id past its size, a gap, two tokens on one id
  local function vocab(extra) return load { model = model(nil, vocab_json(extra)) } end
  T.raises(function() vocab { { 'x1', 100000000 } } end, "token 'x1' has id 100000000, beyond the 259 tokens listed")
  T.raises(function() vocab { { 'x1', 259 } } end, "token 'x1' has id 259, beyond the 259 tokens listed")
  T.raises(function() vocab { { 'x1', 3 } } end, 'id 3 is given to two tokens')
  T.raises(function() load { model = '{"type":"BPE","merges":[]}', added_tokens = added_list { { '<a>', 0 } } } end,
           'model.vocab is not a JSON object')
  -- merges of tokens the vocabulary lacks
  T.raises(function() load { model = '{"type":"BPE","vocab":' .. vocab_json() .. ',"merges":["a q9"]}' } end,
           "'q9' is not in the vocabulary")
  T.raises(function() load { model = '{"type":"BPE","vocab":' .. vocab_json() .. ',"merges":["b c"]}' } end,
           'the merged token is not in the vocabulary')
  -- the same through vocab.json + merges.txt
  assert(os.execute("mkdir -p '" .. tmp('pair') .. "'") == 0)
  T.write(tmp('pair/vocab.json'), vocab_json { { 'x1', 100000000 } })
  T.write(tmp('pair/merges.txt'), '#version: 0.2\na b\n')
  T.raises(function() tokenizer.load(tmp('pair')) end, "vocab.json: token 'x1' has id 100000000")
  -- an added token that is also in the vocabulary under the same id is one token
  local tok = added { { 'abc', 257 }, { '<pad>', 258 } }
  T.eq(tok:vocab_size(), 259)
  T.same(tok:encode('abc<pad>', { allowed_special = 'all' }), { 257, 258 })
end)

-- the header of GPT-2's tokenizer.json on the Hub, and of what transformers 5
-- writes for GPT2Tokenizer (a TemplateProcessing that adds nothing)
local hub = {
  version = '"1.0"', truncation = 'null', padding = 'null', normalizer = 'null',
  pre_tokenizer = '{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}',
  post_processor = '{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":false,"use_regex":true}',
  decoder = '{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true}',
  model = model('"dropout":null,"unk_token":null,"continuing_subword_prefix":"","end_of_word_suffix":"",'
    .. '"fuse_unk":false,"byte_fallback":false,"ignore_merges":false'),
  added_tokens = '[{"id":258,"content":"<|endoftext|>","single_word":false,"lstrip":false,"rstrip":false,'
    .. '"normalized":false,"special":true}]',
}
local template = '{"type":"TemplateProcessing","single":[{"Sequence":{"id":"A","type_id":0}}],'
  .. '"pair":[{"Sequence":{"id":"A","type_id":0}},{"Sequence":{"id":"B","type_id":1}}],"special_tokens":{}}'

local function with(changes)
  local p = {}
  for k, v in pairs(hub) do p[k] = v end
  for k, v in pairs(changes) do p[k] = v ~= false and v or nil end
  return load(p)
end

T.test('settings tide does not implement are refused by name', function()
  T.eq(with({}).eos_id, 258)
  T.eq(with({ post_processor = template }).eos_id, 258)
  T.eq(with({ post_processor = 'null', decoder = false, pre_tokenizer = false, version = false }).eos_id, 258)
  T.eq(with({ model = model('"dropout":null,"unk_token":null,"continuing_subword_prefix":null,"fuse_unk":true') }).eos_id, 258)
  local refused = {
    { { normalizer = '{"type":"NFC"}' }, 'normalizer (type "NFC") is not supported' },
    { { normalizer = '{"type":"Sequence","normalizers":[]}' }, 'normalizer (type "Sequence")' },
    { { pre_tokenizer = '{"type":"Whitespace"}' }, 'pre_tokenizer.type = "Whitespace" is not supported' },
    { { pre_tokenizer = '{"type":"Sequence","pretokenizers":[]}' }, 'pre_tokenizer.type = "Sequence"' },
    { { pre_tokenizer = '{"type":"ByteLevel","add_prefix_space":true}' }, 'pre_tokenizer.add_prefix_space = true' },
    { { pre_tokenizer = '{"type":"ByteLevel","use_regex":false}' }, 'pre_tokenizer.use_regex = false' },
    { { pre_tokenizer = '{"type":"ByteLevel","prefix":"x"}' }, 'pre_tokenizer.prefix is a field tide does not know' },
    { { pre_tokenizer = '[]' }, 'pre_tokenizer is not a JSON object' },
    { { model = model('"dropout":0.1') }, 'model.dropout = 0.10000000000000001 is not supported: tide\'s BPE is deterministic' },
    { { model = model('"unk_token":"<unk>"') }, 'model.unk_token = "<unk>"' },
    { { model = model('"continuing_subword_prefix":"##"') }, 'model.continuing_subword_prefix = "##"' },
    { { model = model('"end_of_word_suffix":"</w>"') }, 'model.end_of_word_suffix = "</w>"' },
    { { model = model('"byte_fallback":true') }, 'model.byte_fallback = true' },
    { { model = model('"ignore_merges":true') }, 'model.ignore_merges = true' },
    { { model = model('"cache_capacity":10') }, 'model.cache_capacity is a field tide does not know' },
    { { decoder = '{"type":"WordPiece"}' }, 'decoder.type = "WordPiece"' },
    { { post_processor = '{"type":"BertProcessing"}' }, 'post_processor.type = "BertProcessing"' },
    { { post_processor = template:gsub('"single":%[', '"single":[{"SpecialToken":{"id":"<s>","type_id":0}},') },
      'post_processor.single adds tokens' },
    { { post_processor = template:gsub('"special_tokens":{}', '"special_tokens":{"<s>":{"id":"<s>","ids":[1],"tokens":["<s>"]}}') },
      'post_processor.special_tokens is not empty' },
    { { truncation = '{"max_length":512}' }, 'truncation = an object is not supported: tide truncates and pads per call' },
    { { padding = '{"strategy":"BatchLongest"}' }, 'padding = an object' },
    { { extra = '1' }, 'extra is a field tide does not know' },
    { { added_tokens = '[{"id":258,"content":"<|endoftext|>","lstrip":true}]' }, 'added_tokens[0].lstrip = true' },
    { { added_tokens = '[{"id":258,"content":"<|endoftext|>","single_word":true}]' }, 'added_tokens[0].single_word = true' },
    { { added_tokens = '[{"id":258,"content":"<|endoftext|>","special":"yes"}]' }, 'added_tokens[0].special = "yes"' },
  }
  for _, r in ipairs(refused) do T.raises(function() with(r[1]) end, r[2]) end
end)

T.test('temporary files are removed', function()
  T.truthy(cleanup())
end)

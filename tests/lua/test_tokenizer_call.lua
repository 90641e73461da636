-- The tokenizer as a callable, tok(texts, opts), against transformers'
-- tokenizer __call__ on GPT-2 (tests/ref/make_tokenizer_call_golden.py wrote
-- tests/ref/tokenizer/call.json): padding, truncation, overflow with stride,
-- lengths, padding side and multiples; and pre_tokenize's byte offsets
-- against the ByteLevel pre-tokenizer's.
local T = require 'tide.testing'
local json = tide.json or require 'tide.json'
local tokenizer = tide.tokenizer or require 'tide.tokenizer'

local GPT2 = 'data/gpt2'
local have_gpt2 = T.exists(GPT2 .. '/vocab.json') and T.exists(GPT2 .. '/merges.txt')
local golden = json.read_file('tests/ref/tokenizer/call.json')

-- transformers' output with overflow_to_sample_mapping made 1-based (indices into texts)
local function expected(out)
  local want = {}
  for k, v in pairs(out) do want[k] = v end
  if want.overflow_to_sample_mapping then
    local m = {}
    for i, s in ipairs(want.overflow_to_sample_mapping) do m[i] = s + 1 end
    want.overflow_to_sample_mapping = m
  end
  return want
end

local function opts_of(o)
  local t = {}
  for k, v in pairs(o) do t[k] = v end
  return t
end

local function describe(o) return json.encode(o, { sort_keys = true }) end

T.test('tok(texts, opts) equals transformers on every case', function()
  if not have_gpt2 then return T.skip('no GPT-2 files in ' .. GPT2) end
  local tok = tokenizer.load(GPT2)
  T.eq(tok.model_max_length, 1024)  -- from data/gpt2/tokenizer_config.json, as transformers reads it
  tok.pad_id = tok.eos_id
  T.truthy(#golden.batch >= 15)
  for _, case in ipairs(golden.batch) do
    T.same(tok(golden.texts, opts_of(case.options)), expected(case.output), describe(case.options))
  end
  for _, case in ipairs(golden.single) do
    T.same(tok(case.text, opts_of(case.options)), expected(case.output), describe(case.options))
  end
  -- the mapping points back at the text of each chunk
  local out = tok(golden.texts, { truncation = true, max_length = 3, return_overflowing_tokens = true, stride = 1 })
  for k, ids in ipairs(out.input_ids) do
    local whole = tok:encode(golden.texts[out.overflow_to_sample_mapping[k]], { allowed_special = 'all' })
    T.truthy(table.concat(whole, ','):find(table.concat(ids, ','), 1, true), 'chunk ' .. k)
  end
end)

T.test('tok(texts, opts) refuses what transformers refuses, and unknown options', function()
  if not have_gpt2 then return T.skip('no GPT-2 files in ' .. GPT2) end
  local tok = tokenizer.load(GPT2)
  T.raises(function() tok({ 'a', 'bb' }, { padding = true }) end, 'asking to pad but the tokenizer has no pad id')
  local ab = tok:encode('a b')
  T.eq(#ab, 2)
  T.same(tok({ 'a', 'a b' }, { padding = true, pad_token_id = 0 }).input_ids, { { 64, 0 }, ab })
  tok.pad_id = tok.eos_id
  T.raises(function() tok('a', { truncation = true, max_length = 4, stride = 4, return_overflowing_tokens = true }) end,
           'stride (4) must be less than max_length (4)')
  T.raises(function() tok('a', { truncation = true, max_length = 10, padding = 'max_length', pad_to_multiple_of = 4 }) end,
           'max_length (10) is not a multiple of pad_to_multiple_of (4)')
  T.raises(function() tok('a', { paddding = true }) end, 'unknown option paddding')
  T.raises(function() tok('a', { padding = 'yes' }) end, "padding must be false, true, 'longest' or 'max_length'")
  T.raises(function() tok('a', { truncation = 'only_second' }) end, 'truncation must be')
  T.raises(function() tok('a', { max_length = 0, truncation = true }) end, 'max_length must be an integer >= 1')
  T.raises(function() tok('a', { padding_side = 'top', padding = true }) end, "padding_side must be 'right' or 'left'")
  T.raises(function() tok({ 'a', 3 }) end, 'texts[2] is a number')
  T.raises(function() tok(5) end, 'expected a string or an array of strings')
  T.raises(function() tok('a', 5) end, 'options must be a table')
  local bare = tokenizer.load(GPT2)
  bare.model_max_length = nil
  T.raises(function() bare('a', { truncation = true }) end, 'need max_length')
  -- added tokens in text are matched as transformers does, unless refused
  T.same(tok('a<|endoftext|>').input_ids, { 64, 50256 })
  T.same(tok('a<|endoftext|>', { allowed_special = {} }).input_ids, tok:encode('a<|endoftext|>'))
  T.same(tok('a', { return_attention_mask = false }), { input_ids = { 64 } })
end)

T.test('pre_tokenize gives byte offsets as the ByteLevel pre-tokenizer does', function()
  for _, case in ipairs(golden.pre_tokenize) do
    local pieces, offsets = tokenizer.pre_tokenize(case.text, { offsets = true })
    T.eq(select('#', tokenizer.pre_tokenize(case.text)), 1)
    T.eq(#offsets, #case.offsets, case.text)
    for i, o in ipairs(case.offsets) do
      T.same(offsets[i], { o[1] + 1, o[2] }, case.text)
      T.eq(case.text:sub(offsets[i][1], offsets[i][2]), pieces[i])
    end
  end
  T.raises(function() tokenizer.pre_tokenize('a', { offset = true }) end, 'unknown option offset')
end)

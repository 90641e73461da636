-- The causal-LM guide's group_texts and the llms-101 tutorial's sentence
-- split as stream stages (lua/tide/data/group.lua, sentences.lua), and
-- flat_map under them.
local T = require 'tide.testing'
local data = tide.data

-- the guide's group_texts on one batch, written as it is in Python
local function guide_group_texts(examples, block_size)
  local concatenated = {}
  for _, ids in ipairs(examples) do for _, v in ipairs(ids) do concatenated[#concatenated + 1] = v end end
  local total_length = #concatenated
  if total_length >= block_size then total_length = math.floor(total_length / block_size) * block_size end
  local result = {}
  for i = 0, total_length - 1, block_size do
    local b = {}
    for k = i + 1, math.min(i + block_size, total_length) do b[#b + 1] = concatenated[k] end
    result[#result + 1] = b
  end
  return result
end

local function lcg_docs(n, seed)
  local rng, docs = T.lcg(seed), {}
  for d = 1, n do
    local len, ids = math.floor(rng() * 40), {}
    for i = 1, len do ids[i] = math.floor(rng() * 50257) end
    docs[d] = ids
  end
  return docs
end

T.test('group_texts: the guide\'s blocks, batch by batch, labels a copy', function()
  local docs = lcg_docs(57, 3)
  for _, case in ipairs({ { 16, 10 }, { 7, 1 }, { 128, 1000 }, { 5, 0 }, { 16, 57 } }) do
    local bs, batch = case[1], case[2]
    local want = {}
    local per = batch == 0 and #docs or batch
    for first = 1, #docs, per do
      local chunk = {}
      for i = first, math.min(first + per - 1, #docs) do chunk[#chunk + 1] = docs[i] end
      for _, b in ipairs(guide_group_texts(chunk, bs)) do want[#want + 1] = b end
    end
    local s = data.from(docs):group_texts(bs, { batch_size = batch })
    local got = s:collect()
    T.eq(#got, #want, ('block_size %d batch %d'):format(bs, batch))
    for i, b in ipairs(got) do
      T.same(b.input_ids, want[i])
      T.same(b.labels, want[i])
      T.truthy(b.labels ~= b.input_ids, 'labels are a copy, as .copy() makes them')
      T.eq(b.attention_mask, nil)
    end
    local tokens = 0
    for _, d in ipairs(docs) do tokens = tokens + #d end
    T.eq(s.tokens, tokens)
    local kept = 0
    for _, b in ipairs(got) do kept = kept + #b.input_ids end
    T.eq(s.dropped, tokens - kept)
    T.truthy(s:report():find(('group_texts: %d blocks of %d tokens'):format(#got, bs), 1, true), s:report())
  end
  -- a batch shorter than a block gives one short block, as the guide's `if` keeps it
  local short = data.from({ { 1, 2 }, { 3 } }):group_texts(128):collect()
  T.eq(#short, 1)
  T.same(short[1].input_ids, { 1, 2, 3 })
  -- default batch is datasets.map's 1000: the remainder goes every 1000 records
  local many = {}
  for i = 1, 2500 do many[i] = { i } end
  local blocks = data.from(many):group_texts(3):collect()
  T.eq(#blocks, 333 + 333 + 166)
  T.same(blocks[334].input_ids, { 1001, 1002, 1003 })
end)

T.test('group_texts: tokenizer records, tokenize\'s arrays, masks and labels=false', function()
  local recs = { { input_ids = { 1, 2, 3 }, attention_mask = { 1, 1, 1 } }, { input_ids = { 4, 5 }, attention_mask = { 1, 1 } } }
  local got = data.from(recs):group_texts(2, { labels = false }):collect()
  T.eq(#got, 2)
  T.same(got[2].input_ids, { 3, 4 })
  T.same(got[2].attention_mask, { 1, 1 })
  T.eq(got[1].labels, nil)
  local tok = tide.tokenizer.load('data/gpt2')
  local texts = { 'Hello world. This is a test.', 'A second text, a bit longer than the first one.' }
  local b = data.from(texts):tokenize(tok):group_texts(4, { batch_size = 0 }):collect()
  local all = {}
  for _, t in ipairs(texts) do for _, id in ipairs(tok:encode(t)) do all[#all + 1] = id end end
  T.eq(#b, math.floor(#all / 4))
  T.same(b[2].input_ids, { all[5], all[6], all[7], all[8] })
end)

T.test('group_texts: bad arguments and records are clear errors', function()
  T.raises(function() data.from({}):group_texts(0) end, 'block_size must be an integer >= 1')
  T.raises(function() data.from({}):group_texts(8, { batch_size = -1 }) end, 'batch_size must be an integer >= 0')
  T.raises(function() data.from({ 'text' }):group_texts(8):collect() end, 'record 1 is a string')
  T.raises(function() data.from({ { 1 }, { input_ids = 'x' } }):group_texts(8):collect() end, 'record 2: input_ids is a string')
  T.raises(function() data.from({ { { 1, 2 } } }):group_texts(8):collect() end, 'record 1 holds a table where a token id belongs')
  T.eq(data.from({}):group_texts(8):count(), 0)
  T.eq(data.from({ {}, {} }):group_texts(8):count(), 0)
end)

T.test('split_sentences: every sentence, or runs of them under max_chars', function()
  local split = data.split_sentences
  local text = 'Motion is relative. The value of pi is 3.14, e.g. here! Is it? "Yes." (Quite.)\nA new line'
  T.same(split(text), { 'Motion is relative.', 'The value of pi is 3.14, e.g.', 'here!', 'Is it?', '"Yes."',
                        '(Quite.)', 'A new line' })
  T.same(split(text, 1000), { text })            -- short enough: whole
  -- runs keep what lies between their sentences, newlines too
  T.same(split(text, 40), { 'Motion is relative.', 'The value of pi is 3.14, e.g. here!',
                            'Is it? "Yes." (Quite.)\nA new line' })
  -- every piece fits, and together they keep every word in order
  local long = {}
  for i = 1, 60 do long[i] = ('Sentence number %d has some words in it.'):format(i) end
  local joined = table.concat(long, ' ')
  for _, max in ipairs({ 45, 100, 333 }) do
    local pieces = split(joined, max)
    local words = {}
    for _, p in ipairs(pieces) do
      T.truthy(#p <= max, ('%d chars > %d: %s'):format(#p, max, p))
      T.truthy(p:match('%.$'), 'ends at a sentence end: ' .. p)
      for w in p:gmatch('%S+') do words[#words + 1] = w end
    end
    local want = {}
    for w in joined:gmatch('%S+') do want[#want + 1] = w end
    T.same(words, want)
  end
  -- a sentence longer than max_chars is cut at whitespace, else between characters
  T.same(split('aaa bbb ccc ddd.', 8), { 'aaa bbb', 'ccc ddd.' })
  T.same(split('abcdefghij', 4), { 'abcd', 'efgh', 'ij' })
  -- characters are code points: no piece ends inside one
  local e = split(('\u{e9}'):rep(10), 4)
  T.same(e, { ('\u{e9}'):rep(4), ('\u{e9}'):rep(4), ('\u{e9}'):rep(2) })
  T.same(split(''), {})
  T.same(split('  \n \n  \n', 3), {})
  T.same(split(' \n . \n', 3), { '.' })
  T.same(split('...!?'), { '...!?' })
  T.raises(function() split(1) end, 'expected a string')
  T.raises(function() split('x', 0) end, 'max_chars must be an integer >= 1')
end)

T.test('split_sentences as a stage, over flat_map', function()
  local recs = { { section_text = 'One. Two. Three.' }, { section_text = '' }, { section_text = 'Four!' } }
  local s = data.from(recs):split_sentences(nil, { field = 'section_text' })
  T.same(s:collect(), { 'One.', 'Two.', 'Three.', 'Four!' })
  T.same(s:collect(), { 'One.', 'Two.', 'Three.', 'Four!' })  -- a second pass
  T.same(data.from({ 'One. Two. Three.' }):split_sentences(9):collect(), { 'One. Two.', 'Three.' })
  T.raises(function() data.from({ { x = 1 } }):split_sentences(10, { field = 'section_text' }):collect() end,
           "no string field 'section_text'")
  T.raises(function() data.from({ 1 }):flat_map(function() return 5 end, 'bad'):collect() end,
           'flat_map bad: fn must return a list or nil, got a number')
  T.same(data.from({ 1, 2, 3 }):flat_map(function(x) if x ~= 2 then return { x, x } end end):collect(), { 1, 1, 3, 3 })
end)

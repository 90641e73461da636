-- tide.data streams: combinators, shuffle, split, counts and reports,
-- tokenizing and both packing modes.
local T = require 'tide.testing'
local data = tide.data

local function range(n)
  local t = {}
  for i = 1, n do t[i] = i end
  return t
end

T.test('a stream is read with a plain for loop, again on each pass', function()
  local s = data.from(range(5))
  local got = {}
  for x in s do got[#got + 1] = x end
  T.same(got, { 1, 2, 3, 4, 5 })
  got = {}
  for x in s do got[#got + 1] = x end
  T.same(got, { 1, 2, 3, 4, 5 })
  T.eq(s:count(), 5)
  T.same(s:collect(), range(5))
  -- a loop left early does not shorten the next one
  for x in s do if x == 2 then break end end
  got = {}
  for x in s do got[#got + 1] = x end
  T.same(got, { 1, 2, 3, 4, 5 })
  local nx = s:iter()
  T.eq(nx(), 1)
  T.eq(nx(), 2)
end)

T.test('filter, map, take, skip and batch', function()
  local s = data.from(range(20))
  local odd = s:filter(function(x) return x % 2 == 1 end, 'odd')
  T.same(odd:map(function(x) return x * 10 end):take(3):collect(), { 10, 30, 50 })
  T.same(odd:skip(8):collect(), { 17, 19 })
  T.same(s:map(function(x) if x > 2 then return nil end return x end):collect(), { 1, 2 })
  T.same(s:take(7):batch(3):collect(), { { 1, 2, 3 }, { 4, 5, 6 }, { 7 } })
  T.same(s:take(0):collect(), {})
  T.same(s:skip(50):collect(), {})
  odd:count()
  T.eq(odd.seen, 20)
  T.eq(odd.kept, 10)
  T.truthy(odd:report():find('filter odd: kept 10 of 20 %(50.00%%%)'), odd:report())
end)

T.test('shuffle is a seeded permutation that holds only its buffer', function()
  local s = data.from(range(1000))
  local a = s:shuffle(100, 7):collect()
  local b = s:shuffle(100, 7):collect()
  local c = s:shuffle(100, 8):collect()
  T.same(a, b)
  T.truthy(table.concat(a, ',') ~= table.concat(c, ','))
  local sorted = { unpack(a) }
  table.sort(sorted)
  T.same(sorted, range(1000))
  -- a buffer of 100 cannot move a record more than 100 places earlier
  for i, x in ipairs(a) do T.truthy(x <= i + 100, ('record %d at %d'):format(x, i)) end
  local moved = 0
  for i, x in ipairs(a) do if x ~= i then moved = moved + 1 end end
  T.truthy(moved > 900)
end)

T.test('split is disjoint, complete, seeded and stable across passes', function()
  local s = data.from(range(10000))
  local parts = s:split({ valid = 0.1, seed = 3 })
  local tr, va = parts.train:collect(), parts.valid:collect()
  T.eq(#tr + #va, 10000)
  T.truthy(#va > 850 and #va < 1150, #va)
  local seen = {}
  for _, x in ipairs(tr) do seen[x] = 'train' end
  for _, x in ipairs(va) do T.eq(seen[x], nil); seen[x] = 'valid' end
  T.same(parts.valid:collect(), va)
  local three = s:split({ valid = 0.05, test = 0.05, seed = 1 })
  T.eq(three.train:count() + three.valid:count() + three.test:count(), 10000)
  T.raises(function() s:split({ valid = 2 }) end, 'not a fraction')
  T.raises(function() s:split({ a = 0.7, b = 0.6 }) end, 'add up to')
end)

T.test('an iterator source can be read once, with a clear error after', function()
  local i = 0
  local s = data.from(function() i = i + 1; if i <= 3 then return i end end)
  T.eq(s:count(), 3)
  T.raises(function() s:count() end, 'read only once')
end)

T.test('bad arguments give clear errors', function()
  local s = data.from(range(3))
  T.raises(function() s:filter(42) end, 'filter: expected a function')
  T.raises(function() s:take(-1) end, 'take: expected an integer >= 0')
  T.raises(function() s:batch(0) end, 'batch: expected an integer >= 1')
  T.raises(function() s:shuffle(10, -1) end, 'shuffle seed')
  T.raises(function() data.from(42) end, 'expected an array or an iterator')
  T.raises(function() s:pack(0) end, 'sequence length must be an integer')
  T.raises(function() s:pack(8) end, 'concat mode needs opts.eos')
  T.raises(function() s:pack(8, { mode = 'x', eos = 1 }) end, "mode must be 'concat'")
  T.raises(function() s:tokenize({}) end, 'expected a tokenizer')
end)

T.test('pack concat joins with EOS and drops only the last partial chunk', function()
  local docs = data.from({ { 1, 2, 3 }, { 4, 5 }, { 6, 7, 8, 9 }, { 10 } })
  local p = docs:pack(4, { eos = 0 })
  -- stream: 1 2 3 0 4 5 0 6 7 8 9 0 10 0 -> three chunks of 4, 2 tokens dropped
  T.same(p:collect(), { { 1, 2, 3, 0 }, { 4, 5, 0, 6 }, { 7, 8, 9, 0 } })
  T.eq(p.tokens_in, 14)
  T.eq(p.tokens_out, 12)
  T.truthy(p:report():find('2 of 14 tokens dropped'), p:report())
  -- a long document spans many chunks; memory is the pending tokens only
  local long = {}
  for i = 1, 200000 do long[i] = i % 50000 end
  local function at(k)  -- token k (1-based) of long, 7, long, 7
    if k <= 200000 then return long[k] elseif k == 200001 then return 7 end
    if k <= 400001 then return long[k - 200001] end
    return 7
  end
  local n = 0
  for chunk in data.from({ long, long }):pack(1024, { eos = 7 }) do
    n = n + 1
    T.eq(#chunk, 1024)
    for j = 1, 1024 do
      if chunk[j] ~= at((n - 1) * 1024 + j) then error(('chunk %d token %d'):format(n, j)) end
    end
  end
  T.eq(n, math.floor(400002 / 1024))
end)

T.test('pack per_document cuts each document and drops short tails', function()
  local docs = data.from({ { 1, 2, 3, 4, 5 }, { 6, 7 }, { 8, 9, 10, 11 } })
  local p = docs:pack(2, { mode = 'per_document' })
  T.same(p:collect(), { { 1, 2 }, { 3, 4 }, { 6, 7 }, { 8, 9 }, { 10, 11 } })
  T.eq(p.tokens_in, 11)
  T.eq(p.tokens_out, 10)
end)

T.test('tokenize encodes records in batches, as encode does one by one', function()
  local tok = tide.tokenizer.load('data/gpt2')
  local recs = {}
  for i = 1, 50 do recs[i] = { content = ('def f%d(x):\n    return x * %d\n'):format(i, i), path = 'f.py' } end
  local s = data.from(recs):tokenize(tok, { batch_bytes = 100 })
  local all = s:collect()
  T.eq(#all, 50)
  for i, ids in ipairs(all) do T.same(ids, tok:encode(recs[i].content)) end
  T.eq(s.documents, 50)
  -- strings and other fields
  T.same(data.from({ 'Hello world' }):tokenize(tok):collect(), { { 15496, 995 } })
  T.same(data.from({ { body = 'Hello' } }):tokenize(tok, { field = 'body' }):collect(), { { 15496 } })
  T.raises(function() data.from({ { x = 1 } }):tokenize(tok):collect() end, "no string field 'content' or 'text'")
  -- the seeds' ConstantLengthDataset: documents joined by EOS, cut to 16
  local chunks = data.from(recs):tokenize(tok):pack(16, { eos = tok.eos_id }):collect()
  local flat = {}
  for i = 1, 50 do
    for _, id in ipairs(tok:encode(recs[i].content)) do flat[#flat + 1] = id end
    flat[#flat + 1] = tok.eos_id
  end
  T.eq(#chunks, math.floor(#flat / 16))
  for c, chunk in ipairs(chunks) do
    for k = 1, 16 do T.eq(chunk[k], flat[(c - 1) * 16 + k]) end
  end
end)

T.test('stateful filters are reset on each pass, so splits see the same decisions', function()
  local F = tide.data.filters
  local texts = { 'a b', 'a  b', 'c', 'c', 'd' }
  local s = data.from(texts):filter(F.exact_dedup(), 'exact')
  T.same(s:collect(), { 'a b', 'c', 'd' })
  T.same(s:collect(), { 'a b', 'c', 'd' })  -- not {}: the second pass starts afresh
  local parts = data.from(texts):filter(F.exact_dedup(), 'exact'):split({ valid = 0.5, seed = 2 })
  local n = parts.train:count() + parts.valid:count()
  T.eq(n, 3)
end)

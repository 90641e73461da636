-- Generation: the GPT-2 KV cache against the uncached forward (every step,
-- every prefill length 1..n_positions of a tiny model), model:generate's greedy
-- search against transformers' generate(do_sample=False) on a random GPT-2
-- saved by transformers (tests/data/generation/, from
-- tools/make_generation_golden.py), seeded sampling, streaming and errors.
local T = require 'tide.testing'
local tide = require 'tide'

local golden_dir = 'tests/data/generation/'

-- A tiny model with weights large enough for varied logits.
local function tiny(cfg)
  tide.manual_seed(5)
  local m = tide.gpt2.new(cfg or { vocab_size = 50, n_positions = 24, n_embd = 16, n_layer = 2, n_head = 2 })
  tide.no_grad(function()
    for _, p in ipairs(m:named_parameters()) do
      if p[2]:dim() >= 2 then p[2]:normal_(0, 0.3) end
    end
  end)
  m:eval()
  return m
end

-- max |a - b| <= rtol * max |b|
local function rel_close(a, b, rtol, msg)
  local diff = (a - b):abs():max():item()
  local scale = b:abs():max():item()
  if not (diff <= rtol * scale) then
    error(('%s: max |diff| %.3g > %g * max |ref| (%.3g)'):format(msg, diff, rtol, scale), 2)
  end
end

T.test('the KV cache gives the uncached logits at every step, for every prefill length 1..n_positions', function()
  local m = tiny()
  local P, B = m.config.n_positions, 2
  tide.manual_seed(11)
  local ids = tide.randint(0, m.config.vocab_size, { B, P })
  tide.no_grad(function()
    -- reference: the full forward of every prefix, its last position
    local ref = {}
    for t = 1, P do
      local l = m(ids:narrow(2, 1, t)).logits
      ref[t] = l:narrow(2, t, 1):contiguous()
    end
    local cache = m:new_cache(B, P)
    for L = 1, P do
      cache:reset()
      local l = m(ids:narrow(2, 1, L), { cache = cache }).logits
      T.eq(cache.length, L)
      for t = 1, L do rel_close(l:narrow(2, t, 1), ref[t], 1e-5, ('prefill %d, position %d'):format(L, t)) end
      for t = L + 1, P do
        l = m(ids:narrow(2, t, 1), { cache = cache }).logits
        rel_close(l, ref[t], 1e-5, ('prefill %d, decode step at length %d'):format(L, t))
      end
      T.eq(cache.length, P)
    end
    -- full: one more position does not fit
    T.raises(function() m(ids:narrow(2, 1, 1), { cache = cache }) end, 'do not fit')
  end)
end)

T.test('the cache leaves the training path alone and refuses what it cannot do', function()
  local m = tiny()
  local ids = tide.tensor({ { 1, 2, 3, 4 } }, { dtype = 'i64' })
  local cache = m:new_cache(1, 8)
  tide.no_grad(function()
    T.raises(function() m(ids, { cache = cache, labels = ids }) end, 'labels cannot be given with a cache')
    T.raises(function() m(ids, { cache = cache, attention_mask = tide.ones({ 1, 3 }, { dtype = 'i64' }) }) end, 'attention_mask has shape [1, 3]')
    T.raises(function() m(tide.tensor({ { 1 }, { 2 } }, { dtype = 'i64' }), { cache = cache }) end, 'batch size 1')
    T.raises(function() m(ids, { cache = {} }) end, 'model:new_cache')
    m:train()
    T.raises(function() m(ids, { cache = cache }) end, 'eval mode')
    m:eval()
  end)
  T.raises(function() m:new_cache(1, 25) end, 'n_positions (24)')
  T.raises(function() m(ids, { cache = cache }) end, 'inside tide.no_grad')
  -- no cache: loss and gradients as before
  local out = m(ids, { labels = ids })
  out.loss:backward()
  T.truthy(m.transformer.h[1].attn.c_attn.weight.grad ~= nil, 'gradients flow without a cache')
end)

T.test('logits_to_keep: the last n positions\' logits, with and without a cache; bad values refused', function()
  local m = tiny()
  local ids = tide.tensor({ { 3, 9, 4, 17, 22, 8 }, { 1, 2, 3, 4, 5, 6 } }, { dtype = 'i64' })
  tide.no_grad(function()
    local full = m(ids).logits
    for _, n in ipairs { 1, 3, 6, 9 } do
      local kept = m(ids, { logits_to_keep = n }).logits
      local k = math.min(n, 6)
      T.same(kept:shape(), { 2, k, 50 }, 'shape for ' .. n)
      T.truthy(tide.equal(kept, full:narrow(2, 7 - k, k)), 'values for ' .. n)
    end
    T.truthy(tide.equal(m(ids, { logits_to_keep = 0 }).logits, full), '0 keeps every position')
    local cache = m:new_cache(2, 10)
    local first = m(ids, { cache = cache, logits_to_keep = 1 }).logits
    T.truthy(tide.equal(first, full:narrow(2, 6, 1)), 'a prefill over the cache keeps the last position')
  end)
  T.raises(function() return m(ids, { logits_to_keep = -1 }) end, 'logits_to_keep must be a non-negative integer, got -1')
  T.raises(function() return m(ids, { logits_to_keep = 1.5 }) end, 'logits_to_keep must be a non-negative integer, got 1.5')
  T.raises(function() return m(ids, { labels = ids, logits_to_keep = 1 }) end, 'logits_to_keep cannot be given with labels')
end)

T.test('greedy generate equals transformers generate(do_sample=False) token for token', function()
  local model = tide.gpt2.from_pretrained(golden_dir .. 'tiny-gpt2')
  local golden = tide.json.read_file(golden_dir .. 'greedy_golden.json')
  T.truthy(#golden.cases >= 10)
  for _, case in ipairs(golden.cases) do
    local ids = tide.tensor(case.input_ids, { dtype = 'i64' })
    local opts = {}
    for k, v in pairs(case.options) do opts[k] = v end
    if case.attention_mask then opts.attention_mask = tide.tensor(case.attention_mask, { dtype = 'i64' }) end
    local out = model:generate(ids, opts)
    T.eq(out:dtype(), 'i64', case.name)
    T.same(out:tolist(), case.output_ids, case.name)
  end
end)

T.test('generate: the prompt is kept, lengths follow max_new_tokens / max_length, eos ends rows early', function()
  local m = tiny()
  local ids = tide.tensor({ { 3, 1, 4 }, { 1, 5, 9 } }, { dtype = 'i64' })
  local out = m:generate(ids, { max_new_tokens = 5, eos_token_id = false })
  T.same(out:shape(), { 2, 8 })
  T.same(out:narrow(2, 1, 3):tolist(), ids:tolist())
  T.same(m:generate(ids, { max_length = 10, eos_token_id = false }):shape(), { 2, 10 })
  T.same(m:generate(ids, { eos_token_id = false }):shape(), { 2, 20 }, 'max_length 20 by default')
  -- 1-d prompt: one row
  T.same(m:generate(tide.tensor({ 3, 1, 4 }, { dtype = 'i64' }), { max_new_tokens = 2, eos_token_id = false }):shape(), { 1, 5 })
  -- eos = the first row's first new token: that row is padded, the other continues
  local first = out[1][4]:item()
  local e = m:generate(ids, { max_new_tokens = 5, eos_token_id = first, pad_token_id = 0 })
  T.eq(e[1][4]:item(), first)
  for j = 5, e:size(2) do T.eq(e[1][j]:item(), 0, 'padded after eos') end
  -- eos as a list or a tensor of ids
  local second = out[2][4]:item()
  local l = m:generate(ids, { max_new_tokens = 5, eos_token_id = { first, second }, pad_token_id = 0 })
  T.same(l:shape(), { 2, 4 }, 'both rows end at once')
  T.same(m:generate(ids, { max_new_tokens = 5, eos_token_id = tide.tensor({ first, second }, { dtype = 'i64' }), pad_token_id = 0 }):tolist(), l:tolist())
  -- the model is restored to training mode
  m:train()
  m:generate(ids, { max_new_tokens = 2 })
  T.truthy(m.training, 'training mode restored')
end)

T.test('generate: on_token streams each step; returning false stops', function()
  local m = tiny()
  local ids = tide.tensor({ { 3, 1, 4 } }, { dtype = 'i64' })
  local seen = {}
  local out = m:generate(ids, { max_new_tokens = 6, eos_token_id = false, on_token = function(step, next_ids)
    seen[#seen + 1] = { step, next_ids:tolist()[1] }
  end })
  T.eq(#seen, 6)
  for i = 1, 6 do
    T.eq(seen[i][1], i)
    T.eq(seen[i][2], out[1][3 + i]:item())
  end
  local n = 0
  out = m:generate(ids, { max_new_tokens = 6, eos_token_id = false, on_token = function() n = n + 1; return n < 2 end })
  T.same(out:shape(), { 1, 5 })
end)

T.test('generate: a seeded sampling run is reproducible; num_return_sequences gives adjacent rows', function()
  local m = tiny()
  local ids = tide.tensor({ { 3, 1, 4 }, { 2, 7, 1 } }, { dtype = 'i64' })
  local opts = { do_sample = true, temperature = 1.5, top_k = 0, max_new_tokens = 12, seed = 1234, eos_token_id = false }
  local a = m:generate(ids, opts)
  local b = m:generate(ids, opts)
  T.same(a:tolist(), b:tolist())
  opts.seed = 1235
  T.truthy(not T.deep_eq(m:generate(ids, opts):tolist(), a:tolist()), 'another seed, other tokens')
  -- the global generator
  tide.manual_seed(77)
  local g1 = m:generate(ids, { do_sample = true, max_new_tokens = 8, eos_token_id = false })
  tide.manual_seed(77)
  local g2 = m:generate(ids, { do_sample = true, max_new_tokens = 8, eos_token_id = false })
  T.same(g1:tolist(), g2:tolist())
  -- an explicit generator
  local r1 = m:generate(ids, { do_sample = true, top_p = 0.9, max_new_tokens = 8, generator = tide.Generator(3), eos_token_id = false })
  local r2 = m:generate(ids, { do_sample = true, top_p = 0.9, max_new_tokens = 8, generator = tide.Generator(3), eos_token_id = false })
  T.same(r1:tolist(), r2:tolist())
  local n = m:generate(ids, { do_sample = true, num_return_sequences = 3, max_new_tokens = 4, seed = 1, eos_token_id = false })
  T.same(n:shape(), { 6, 7 })
  for r = 1, 6 do T.same(n[r]:narrow(1, 1, 3):tolist(), ids[math.floor((r - 1) / 3) + 1]:tolist()) end
end)

T.test('generate: clear errors', function()
  local m = tiny()
  local ids = tide.tensor({ { 3, 1, 4 } }, { dtype = 'i64' })
  T.raises(function() m:generate(tide.zeros({ 1, 30 }, { dtype = 'i64' })) end, 'the prompt has 30 tokens, more than the model\'s n_positions (24)')
  T.raises(function() m:generate(ids, { max_new_tokens = 22 }) end,
    'max_new_tokens = 22 after a 3-token prompt needs 25 positions, more than the model\'s n_positions (24); at most 21 new tokens fit')
  T.raises(function() m:generate(ids, { max_length = 25 }) end, 'max_length = 25 is more than the model\'s n_positions (24)')
  T.raises(function() m:generate(ids, { max_length = 3 }) end, 'leaves no room')
  T.raises(function() m:generate(ids, { max_new_tokens = 0 }) end, '`max_new_tokens` must be greater than 0')
  T.raises(function() m:generate(ids, { num_return_sequences = 2 }) end,
    'Greedy methods without beam search do not support `num_return_sequences` different than 1 (got 2).')
  T.raises(function() m:generate(ids, { attention_mask = tide.tensor({ { 0, 2, 1 } }, { dtype = 'i64' }) }) end, 'must hold 0 (padding) and 1 (token)')
  T.raises(function() m:generate(ids, { attention_mask = tide.zeros({ 1, 3 }, { dtype = 'i64' }) }) end, 'a row with no token')
  T.raises(function() m:generate(ids, { attention_mask = tide.ones({ 1, 2 }, { dtype = 'i64' }) }) end, 'attention_mask has shape [1, 2]')
  T.raises(function() m:generate(ids, { do_sample = true, top_p = 1.5 }) end, 'top_p')
  T.raises(function() m:generate(ids, { do_sample = true, temperature = 0 }) end, 'temperature')
  T.raises(function() m:generate(ids, { max_tokens = 3 }) end, 'unknown option max_tokens')
  T.raises(function() m:generate(tide.tensor({ { 3, 60 } }, { dtype = 'i64' })) end, 'input_ids must lie in [0, 50)')
  T.raises(function() m:generate(ids, { on_token = 3 }) end, 'on_token must be a function')
  -- an all-ones mask is fine
  T.same(m:generate(ids, { max_new_tokens = 2, eos_token_id = false, attention_mask = tide.ones({ 1, 3 }, { dtype = 'i64' }) }):shape(), { 1, 5 })
end)

T.test('generate: a left-padded row gives the tokens of its prompt alone (greedy and seeded sampling)', function()
  local m = tiny()
  local prompts = { { 3, 1, 4, 1, 5 }, { 9, 2 }, { 6, 5, 3, 5 } }
  local ids = tide.full({ 3, 5 }, 7, { dtype = 'i64' })
  local mask = tide.zeros({ 3, 5 }, { dtype = 'i64' })
  for r, p in ipairs(prompts) do
    for j, id in ipairs(p) do
      ids[r][5 - #p + j]:fill_(id)
      mask[r][5 - #p + j]:fill_(1)
    end
  end
  local out = m:generate(ids, { attention_mask = mask, max_new_tokens = 10, eos_token_id = false })
  for r, p in ipairs(prompts) do
    local alone = m:generate(tide.tensor({ p }, { dtype = 'i64' }), { max_new_tokens = 10, eos_token_id = false })
    T.same(out[r]:narrow(1, 6, 10):tolist(), alone[1]:narrow(1, #p + 1, 10):tolist(), 'row ' .. r)
  end
  -- the cached logits with a mask equal the uncached forward with the same mask and positions
  tide.no_grad(function()
    local pos = (mask:cumsum(2) - 1):masked_fill(mask:eq(0), 1)
    local full = m(ids, { attention_mask = mask, position_ids = pos }).logits
    local cache = m:new_cache(3, 8)
    local l = m(ids, { cache = cache, attention_mask = mask, position_ids = pos }).logits
    for r = 1, 3 do
      local first = 5 - #prompts[r] + 1
      rel_close(l[r]:narrow(1, first, 5 - first + 1), full[r]:narrow(1, first, 5 - first + 1), 1e-5, 'masked prefill, row ' .. r)
    end
  end)
end)

T.test('generate: a seeded sampling run is the same on any thread count', function()
  local m = tiny({ vocab_size = 300, n_positions = 40, n_embd = 64, n_layer = 2, n_head = 4 })
  local ids = tide.randint(0, 300, { 4, 6 })
  local opts = { do_sample = true, top_p = 0.95, temperature = 1.3, max_new_tokens = 20, seed = 42, eos_token_id = false }
  local before = tide.get_num_threads()
  local outs = {}
  for _, n in ipairs { 1, 3, 8 } do
    tide.set_num_threads(n)
    outs[#outs + 1] = m:generate(ids, opts):tolist()
  end
  tide.set_num_threads(before)
  T.same(outs[2], outs[1], '3 threads vs 1')
  T.same(outs[3], outs[1], '8 threads vs 1')
end)

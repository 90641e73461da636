-- tide.train.evaluate: the mean of the batch losses and its perplexity
-- (inf on overflow), under no_grad, with the model's mode restored, the same
-- batches every call from a loader, lists and iterators, max_batches,
-- compute_loss overrides and bad arguments.
local T = require 'tide.testing'
local ev = require 'tide.train.evaluate'
local shards = require 'tide.data.shards'

tide.set_num_threads(1)
local tmp, cleanup = T.scratch()

local function model()
  tide.manual_seed(3)
  return tide.gpt2.new({ vocab_size = 32, n_positions = 8, n_embd = 8, n_layer = 1, n_head = 2,
                         resid_pdrop = 0.5, embd_pdrop = 0.5, attn_pdrop = 0.5 })
end

local batches = {}
for i = 1, 5 do
  local rows = {}
  for r = 1, 2 do
    local row = {}
    for j = 1, 8 do row[j] = (i * 7 + r * 3 + j * 5) % 32 end
    rows[r] = row
  end
  batches[i] = tide.tensor(rows, { dtype = 'i64' })
end

local function reference(m, list, n)
  local prev = m.training
  m:eval()
  local total = 0
  tide.no_grad(function()
    for i = 1, n do total = total + m(list[i], { labels = list[i] }).loss:item() end
  end)
  m:train(prev)
  return total / n
end

T.test('the mean loss and perplexity of a list of batches, in eval mode, mode restored', function()
  local m = model()
  T.truthy(m.training)
  local want = reference(m, batches, 5)
  local rng = tide.get_rng_state()
  local r = ev.evaluate(m, batches)
  T.eq(r.batches, 5)
  T.eq(('%a'):format(r.loss), ('%a'):format(want))
  T.eq(r.perplexity, math.exp(want))
  T.truthy(m.training, 'train mode restored')
  T.same(tide.get_rng_state(), rng, 'eval mode draws no dropout numbers')
  m:eval()
  ev.evaluate(m, batches)
  T.truthy(not m.training, 'eval mode stays eval mode')
  -- max_batches
  m:train()
  r = ev.evaluate(m, batches, { max_batches = 2 })
  T.eq(r.batches, 2)
  T.eq(('%a'):format(r.loss), ('%a'):format(reference(m, batches, 2)))
end)

T.test('no graph is built', function()
  local m = model()
  local seen
  ev.evaluate(m, batches, { compute_loss = function(mod, b)
    local l = mod(b, { labels = b }).loss
    seen = rawget(l, 'requires_grad') == true or not l:is_leaf()
    return l
  end })
  T.eq(seen, false)
  for _, p in ipairs(m:parameters()) do T.eq(p.grad, nil) end
end)

T.test('a loader is reset first: the same batches each call', function()
  local dir = tmp('data')
  local w = shards.writer(dir, { vocab_size = 32, seq_length = 8 })
  local ids = {}
  for i = 1, 8 * 12 do ids[i] = (i * 11) % 32 end
  w:write(ids)
  w:close()
  local loader = shards.shards(dir, { batch_size = 2, shuffle = true, seed = 4 })
  local m = model()
  local a = ev.evaluate(m, loader, { max_batches = 3 })
  loader()  -- moved on by someone else
  local b = ev.evaluate(m, loader, { max_batches = 3 })
  T.eq(('%a'):format(a.loss), ('%a'):format(b.loss))
  T.eq(a.batches, 3)
  local all = ev.evaluate(m, loader)
  T.eq(all.batches, loader:num_batches())
end)

T.test('iterators, compute_loss, perplexity overflow', function()
  local m = model()
  local i = 0
  local r = ev.evaluate(m, function() i = i + 1; return batches[i] end)
  T.eq(r.batches, 5)
  r = ev.evaluate(m, batches, { compute_loss = function() return tide.tensor(1000.0) end })
  T.eq(r.loss, 1000)
  T.eq(r.perplexity, math.huge)
  r = ev.evaluate(m, batches, { compute_loss = function() return 2 end, max_batches = 3 })
  T.eq(r.loss, 2)
  T.eq(r.batches, 3)
end)

T.test('errors restore the mode and are clear', function()
  local m = model()
  T.raises(function() ev.evaluate(m, batches, { compute_loss = function() error('boom') end }) end, 'boom')
  T.truthy(m.training)
  T.eq(tide.is_grad_enabled(), true)
  T.raises(function() ev.evaluate(m, {}) end, 'no batches')
  T.raises(function() ev.evaluate(m, 5) end, 'batches must be')
  T.raises(function() ev.evaluate(m, batches, { max_batches = 0 }) end, 'max_batches')
  T.raises(function() ev.evaluate(m, batches, { compute_loss = 3 }) end, 'compute_loss')
end)

T.test('cleanup', function() T.truthy(cleanup()) end)

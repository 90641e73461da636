-- tide.cuda.graph: a step's launches captured once and replayed, with the
-- results of eager runs bit for bit; memory that stays put across replays
-- and goes back when the graph is collected; what cannot run in a capture
-- fails naming the op and leaves no capture behind; launch statistics.
local T = require 'tide.testing'

local function bits(t) return t:cpu():tolist() end

local function same_bits(a, b, what)
  T.truthy(T.deep_eq(bits(a), bits(b)), what .. ': the replay differs from the eager run')
end

-- a two-layer MLP with its loss; p holds the parameters
local function mlp_loss(p, x, y)
  local h = tide.F.gelu(x:matmul(p.w1) + p.b1)
  local out = h:matmul(p.w2) + p.b2
  return ((out - y) ^ 2):mean()
end

local function mlp_params()
  local p = {}
  p.w1 = tide.randn(8, 16, { device = 'cuda' }):requires_grad_(true)
  p.b1 = tide.randn(16, { device = 'cuda' }):requires_grad_(true)
  p.w2 = tide.randn(16, 4, { device = 'cuda' }):requires_grad_(true)
  p.b2 = tide.randn(4, { device = 'cuda' }):requires_grad_(true)
  return p
end

local function zero_grads(p) for _, t in pairs(p) do t.grad = nil end end

T.test('launch_stats counts launches by op and by launch name; reset zeroes them', function()
  T.need_cuda()
  local a, b = tide.randn(5, 7, { device = 'cuda' }), tide.randn(7, 3, { device = 'cuda' })
  tide.cuda.reset_launch_stats()
  local s0 = tide.cuda.launch_stats()
  T.eq(s0.total, 0)
  T.eq(next(s0.by_op), nil)
  local c = a:matmul(b)
  local d = c + 1
  local e = (d * d):sum()
  local s = tide.cuda.launch_stats()
  T.eq(s.by_op.matmul, 1)
  T.eq(s.by_op.add, 1)
  T.eq(s.by_op.mul, 1)
  T.eq(s.by_op.sum, 1)
  T.eq(s.by_kernel.binary, 2)
  local n = 0
  for _, v in pairs(s.by_op) do n = n + v end
  T.eq(s.total, n, 'total is the sum over ops')
  T.eq(s.graph_replays, 0)
  tide.cuda.reset_launch_stats()
  T.eq(tide.cuda.launch_stats().total, 0)
  T.eq(tide.cuda.launch_stats().by_op.matmul, nil)
  local _ = e
  T.raises(function() return tide.cuda.launch_stats('cpu') end, 'expected a CUDA device')
end)

T.test('an MLP forward and backward replayed with new inputs equals the eager run, bit for bit', function()
  T.need_cuda()
  tide.manual_seed(3)
  local p = mlp_params()
  local x, y = tide.randn(6, 8, { device = 'cuda' }), tide.randn(6, 4, { device = 'cuda' })  -- static inputs
  mlp_loss(p, x, y):backward()  -- warm-up, eagerly
  zero_grads(p)
  tide.cuda.reset_launch_stats()
  local g = tide.cuda.graph(function()
    local loss = mlp_loss(p, x, y)
    loss:backward()
    return loss
  end)
  local captured = tide.cuda.launch_stats().total
  T.truthy(captured > 10, 'launches recorded: ' .. captured)
  T.eq(tide.cuda.launch_stats().graph_replays, 0)
  local grads = {}
  for k, t in pairs(p) do grads[k] = t.grad end
  for round = 1, 3 do
    local nx, ny = tide.randn(6, 8), tide.randn(6, 4)
    x:copy_(nx)
    y:copy_(ny)
    local loss = g:replay()
    T.truthy(rawequal(loss, g.outputs[1]), 'replay returns the captured outputs')
    -- eager, on a copy of the parameters, from the same inputs
    local q = {}
    for k, t in pairs(p) do q[k] = t:detach():clone():requires_grad_(true) end
    local want = mlp_loss(q, nx:to('cuda'), ny:to('cuda'))
    want:backward()
    same_bits(loss, want, 'loss, round ' .. round)
    for k in pairs(p) do
      T.truthy(rawequal(p[k].grad, grads[k]), 'the grads are the captured tensors')
      same_bits(p[k].grad, q[k].grad, k .. '.grad, round ' .. round)
    end
  end
  local s = tide.cuda.launch_stats()
  T.eq(s.graph_replays, 3)
  T.eq(s.by_op.graph_replay, 3, "a replay is one launch from the host")
end)

T.test('GPT-2 blocks forward and backward replay equal the eager run, bit for bit', function()
  T.need_cuda()
  local cfg = { vocab_size = 64, n_positions = 16, n_embd = 32, n_layer = 2, n_head = 4,
                resid_pdrop = 0, embd_pdrop = 0, attn_pdrop = 0 }
  tide.manual_seed(5)
  local model = tide.gpt2.new(cfg):to('cuda')
  local B, Tn = 2, 8
  -- the embedding lookup and cross-entropy check their indices on the host
  -- (see the test below), so the graph starts from hidden states and ends
  -- with the loss written with a one-hot target
  local h0 = tide.randn(B, Tn, cfg.n_embd, { device = 'cuda' })
  local onehot = tide.zeros(B * Tn, cfg.vocab_size, { device = 'cuda' })
  local function step(h, oh)
    local x = h
    local tr = model.transformer
    for i = 1, tr.h:len() do x = tr.h[i](x) end
    x = tr.ln_f(x)
    local logits = tide.F.linear(x, model.lm_head.weight):reshape(B * Tn, cfg.vocab_size)
    local loss = -(tide.F.log_softmax(logits, -1) * oh):sum() / (B * Tn)
    loss:backward()
    return loss
  end
  local function targets(seed)
    local rng, rows = T.lcg(seed), {}
    for i = 1, B * Tn do
      local r = {}
      for v = 1, cfg.vocab_size do r[v] = 0 end
      r[math.floor(rng() * cfg.vocab_size) + 1] = 1
      rows[i] = r
    end
    return tide.tensor(rows)
  end
  h0:requires_grad_(true)
  step(h0, onehot)
  model:zero_grad()
  h0.grad = nil
  local g = tide.cuda.graph(step, nil, h0, onehot)
  local params = model:parameters()  -- wpe gets no gradient here (nil in both runs)
  for round = 1, 2 do
    local nh, noh = tide.randn(B, Tn, cfg.n_embd), targets(round)
    h0:detach():copy_(nh)
    onehot:copy_(noh)
    local loss = g:replay()
    local got = { loss = bits(loss), h = bits(h0.grad) }
    local saved = {}
    for i, p in ipairs(params) do
      got[i] = p.grad and bits(p.grad) or 'none'
      saved[i] = p.grad
      p.grad = nil
    end
    -- eager, on the same model, from fresh grads
    local h1 = nh:to('cuda'):requires_grad_(true)
    local want = step(h1, noh:to('cuda'))
    T.truthy(T.deep_eq(got.loss, bits(want)), 'loss, round ' .. round)
    T.truthy(T.deep_eq(got.h, bits(h1.grad)), 'grad of the hidden states, round ' .. round)
    for i, p in ipairs(params) do
      T.truthy(T.deep_eq(got[i], p.grad and bits(p.grad) or 'none'), 'grad of parameter ' .. i .. ', round ' .. round)
      p.grad = saved[i]  -- the graph's tensors again
    end
  end
end)

T.test('replays allocate nothing; the pool goes back when the graph is collected', function()
  T.need_cuda()
  tide.manual_seed(4)
  local p = mlp_params()
  local x, y = tide.randn(6, 8, { device = 'cuda' }), tide.randn(6, 4, { device = 'cuda' })
  mlp_loss(p, x, y):backward()
  zero_grads(p)
  collectgarbage()
  collectgarbage()
  tide.cuda.empty_cache()
  local before = tide.cuda.memory_stats()
  local g = tide.cuda.graph(function()
    local loss = mlp_loss(p, x, y)
    loss:backward()
    return loss
  end)
  T.truthy(g:pool_bytes() > 0, 'the graph has a pool')
  g:replay()
  collectgarbage()
  local s1 = tide.cuda.memory_stats()
  for _ = 1, 20 do g:replay() end
  collectgarbage()
  local s2 = tide.cuda.memory_stats()
  T.eq(s2.allocated, s1.allocated, 'allocated bytes after 20 more replays')
  T.eq(s2.reserved, s1.reserved, 'reserved bytes after 20 more replays')
  T.eq(s2.requests, s1.requests, 'no allocation request from a replay')
  -- the pool is the graph's: eager work does not take its free blocks
  local pool = g:pool_bytes()
  zero_grads(p)  -- the graph's outputs go back to its pool, still reserved
  collectgarbage()
  tide.cuda.empty_cache()
  T.eq(g:pool_bytes(), pool, 'the pool stays while the graph lives')
  T.truthy(tide.cuda.memory_stats().reserved >= before.reserved + pool, 'the pool is still reserved')
  g = nil
  collectgarbage()
  collectgarbage()
  tide.cuda.empty_cache()
  local after = tide.cuda.memory_stats()
  T.eq(after.allocated, before.allocated, 'allocated bytes once the graph is collected')
  T.eq(after.reserved, before.reserved, 'reserved bytes once the graph is collected and the cache emptied')
end)

T.test('a block freed during a capture stays reserved for the graph until it is freed', function()
  T.need_cuda()
  local x = tide.ones(1024, { device = 'cuda' })  -- 4096 bytes each, a multiple of the 512-byte rounding
  local t = tide.ones(1024, { device = 'cuda' })
  collectgarbage()
  collectgarbage()
  local a0 = tide.cuda.memory_stats().allocated
  local g = tide.cuda.graph(function()
    local y = x + t   -- reads t at every replay
    t = nil
    collectgarbage()  -- frees t during the capture
    return y
  end)
  collectgarbage()
  T.eq(tide.cuda.memory_stats().allocated, a0 + 4096, 't is still held for the graph, beside its output y')
  T.eq(g:replay():sum():item(), 2048)
  T.eq(g:replay():sum():item(), 2048)
  g:free()
  T.raises(function() g:replay() end, 'graph:replay: this graph was freed')
  g = nil
  collectgarbage()
  collectgarbage()
  T.eq(tide.cuda.memory_stats().allocated, a0 - 4096, 'the graph gave t back, and y is gone')
end)

T.test('what needs the host fails in a capture, naming it, and ends the capture', function()
  T.need_cuda()
  local x = tide.randn(4, 4, { device = 'cuda' })
  local function clean()
    T.eq(tide.cuda.capturing(), nil, 'no capture left behind')
    -- the next capture and eager work go on
    local g = tide.cuda.graph(function() return x * 2 end)
    local want = (x * 2):tolist()
    T.truthy(T.deep_eq(g:replay():tolist(), want))
  end
  T.raises(function() tide.cuda.graph(function() return x:sum():item() end) end,
    'cannot run while a CUDA graph is being captured')
  clean()
  T.raises(function() tide.cuda.graph(function() print(x) end) end, 'copy to the host')
  clean()
  T.raises(function() tide.cuda.graph(function() tide.cuda.synchronize() end) end,
    'synchronize: waits for the device, which cannot run while a CUDA graph is being captured')
  clean()
  T.raises(function() tide.cuda.graph(function() return x + tide.tensor({ 1, 2, 3, 4 }):to('cuda') end) end,
    'copy to the device: a copy from host memory (a CPU tensor moved to the device), which cannot run while a CUDA graph is being captured')
  clean()
  T.raises(function() tide.cuda.graph(function() tide.cuda.graph(function() end) end) end,
    'a CUDA graph is already being captured on cuda:0 (captures do not nest')
  clean()
  -- a host-side index check reads device memory: it names the op
  local wte = tide.randn(10, 4, { device = 'cuda' })
  local ids = tide.tensor({ 1, 2, 3 }, { dtype = 'i64' }):to('cuda')
  T.raises(function() tide.cuda.graph(function() return tide.F.embedding(ids, wte) end) end,
    'embedding: reads device memory on the host')
  clean()
  -- an error of fn itself comes through unchanged
  T.raises(function() tide.cuda.graph(function() error('mine') end) end, 'mine')
  clean()
  T.raises(function() tide.cuda.graph(42) end, 'cuda.graph: expected a function, got number')
  T.raises(function() tide.cuda.graph(function() end, { device = 'cpu' }) end, 'expected a CUDA device')
end)

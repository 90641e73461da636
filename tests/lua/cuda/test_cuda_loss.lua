-- The fused classifier on CUDA against the CPU (tide-cudaemu in CI, a GPU in
-- tests/gpu/run.sh): F.cross_entropy forward and backward through autograd
-- with reduction none, sum and mean, ignore_index rows, odd vocabularies,
-- per-sample weights arriving as the per-row dloss, f32, bf16 (read in
-- place: no f32 copy of the logits) and f64; the keytoken-weighted loss and
-- GPT-2's shifted-labels loss on the device.
local T = require 'tide.testing'
local tide = require 'tide'
local F = tide.F

local TOL = { f32 = { rtol = 1e-5, atol = 1e-6 }, f64 = { rtol = 1e-12, atol = 1e-12 }, bf16 = { rtol = 2e-2, atol = 1e-3 } }

local function randn(shape, dt, scale)
  local t = tide.randn(unpack(shape))
  if scale then t = t * scale end
  return t:to(dt)
end

-- targets in 0..V-1, every fourth row ignored
local function targets(N, V)
  local t = tide.randint(0, V, { N })
  for i = 2, N, 4 do t[i] = -100 end
  return t
end

T.test('cross_entropy every reduction, odd vocabularies, f32 bf16 f64', function()
  T.need_cuda()
  tide.manual_seed(21)
  for _, dt in ipairs { 'f32', 'bf16', 'f64' } do
    for _, V in ipairs { 1, 37, 130, 1001 } do
      local N = 9
      local t = targets(N, V)
      for _, red in ipairs { 'none', 'sum', 'mean' } do
        local x = randn({ N, V }, dt, 3):requires_grad_(true)
        local g = red == 'none' and randn({ N }, dt) or nil
        T.device_parity(function(x, t, g)
          local l = F.cross_entropy(x, t, { reduction = red })
          l:backward(g)
          return l, x.grad
        end, { x, t, g, n = 3 }, TOL[dt], ('cross_entropy %s V=%d %s'):format(dt, V, red))
      end
    end
  end
end)

T.test('cross_entropy with per-sample weights: the weights reach the kernel as the per-row dloss', function()
  T.need_cuda()
  tide.manual_seed(22)
  local B, Tn, V = 3, 6, 257
  for _, dt in ipairs { 'f32', 'bf16' } do
    local x = randn({ B, Tn, V }, dt, 2):requires_grad_(true)
    local t = tide.randint(0, V, { B, Tn })
    t[1][Tn] = -100
    local w = tide.rand(B):to(dt) + 0.5
    T.device_parity(function(x, t, w)
      local per_row = F.cross_entropy(x:view(B * Tn, V), t:view(B * Tn), { reduction = 'none' })
      local per_sample = per_row:view(B, Tn):sum(2) / Tn
      local l = (per_sample * w):mean()
      l:backward()
      return l, x.grad
    end, { x, t, w }, TOL[dt], 'weighted cross_entropy ' .. dt)
  end
end)

T.test('cross_entropy: large logits, all rows ignored, and a GPT-2-wide bf16 row', function()
  T.need_cuda()
  tide.manual_seed(23)
  for _, dt in ipairs { 'f32', 'bf16' } do
    -- 1e4 offsets: no overflow in exp
    local x = (randn({ 4, 100 }, 'f32') + tide.tensor({ { 1e4 }, { -1e4 }, { 5e3 }, { 0 } })):to(dt):requires_grad_(true)
    local t = tide.tensor({ 3, 99, 0, 50 })
    T.device_parity(function(x, t)
      local l = F.cross_entropy(x, t, { reduction = 'none' })
      l:sum():backward()
      return l, x.grad
    end, { x, t }, TOL[dt], 'large logits ' .. dt)
  end
  local x = randn({ 3, 7 }, 'bf16'):to('cuda'):requires_grad_(true)
  local l = F.cross_entropy(x, tide.tensor({ -100, -100, -100 }):to('cuda'))
  T.truthy(l:item() ~= l:item(), 'the mean of no rows is NaN')
  l:backward()
  T.eq(x.grad:abs():sum():item(), 0, 'ignored rows get zero gradient')
  local w = randn({ 2, 50257 }, 'bf16', 2):requires_grad_(true)
  T.device_parity(function(w, t)
    local l = F.cross_entropy(w, t)
    l:backward()
    return l, w.grad
  end, { w, tide.tensor({ 50256, 11 }) }, TOL.bf16, 'wide bf16 row')
end)

T.test('bf16 logits are read in place: no f32 copy of the logits on the device', function()
  T.need_cuda()
  tide.manual_seed(24)
  local N, V = 64, 4099
  local x = randn({ N, V }, 'bf16'):to('cuda'):requires_grad_(true)
  local t = tide.randint(0, V, { N }):to('cuda')
  collectgarbage()
  tide.cuda.reset_peak_memory_stats()
  local before = tide.cuda.memory_allocated()
  local l = F.cross_entropy(x, t)
  local fwd = tide.cuda.max_memory_allocated() - before
  -- the forward allocates row-sized buffers only (an f32 copy would be 4 bytes an element)
  T.truthy(fwd < N * V, ('forward peak %d bytes over %d elements: a copy of the logits was made'):format(fwd, N * V))
  tide.cuda.reset_peak_memory_stats()
  before = tide.cuda.memory_allocated()
  l:backward()
  local bwd = tide.cuda.max_memory_allocated() - before
  -- dlogits in bf16 (2 bytes an element) and its accumulation into x.grad (2 more); an f32 copy of the
  -- logits and an f32 dlogits converted to bf16 would take 10
  T.truthy(bwd < 6 * N * V, ('backward peak %d bytes over %d elements: f32 copies were made'):format(bwd, N * V))
  T.eq(x.grad:dtype(), 'bf16')
end)

T.test('bad targets are an error on the device, checked by the forward', function()
  T.need_cuda()
  local x = randn({ 3, 5 }, 'bf16'):to('cuda')
  T.raises(function() F.cross_entropy(x, tide.tensor({ 0, 5, 1 }):to('cuda')) end, 'target 5 is out of range for 5 classes')
  T.raises(function() F.cross_entropy(x, tide.tensor({ 0, 1, -2 }):to('cuda'), { reduction = 'none' }) end, 'target -2 is out of range')
end)

T.test('the keytoken-weighted loss on the device', function()
  T.need_cuda()
  tide.manual_seed(25)
  local B, Tn, V = 2, 7, 33
  local ids = tide.randint(0, V, { B, Tn })
  ids[1][3], ids[2][5] = 4, 9
  for _, dt in ipairs { 'f32', 'bf16' } do
    local logits = randn({ B, Tn, V }, dt, 2):requires_grad_(true)
    T.device_parity(function(ids, logits)
      local l = tide.losses.keytoken_weighted_loss(ids, logits, { 4, 9, 4 }, 0.7)
      l:backward()
      return l, logits.grad
    end, { ids, logits }, TOL[dt], 'keytoken loss ' .. dt)
  end
end)

T.test('GPT-2 shifted-labels loss on the device', function()
  T.need_cuda()
  tide.manual_seed(26)
  local model = tide.gpt2.new({ vocab_size = 61, n_positions = 16, n_embd = 16, n_layer = 1, n_head = 2 })
  model:eval()
  local ids = tide.randint(0, 61, { 2, 9 })
  local labels = ids:clone()
  labels[2][4] = -100
  local cpu = model(ids, { labels = labels })
  cpu.loss:backward()
  local g = model.transformer.wte.weight.grad:clone()
  model:zero_grad()
  model:to('cuda')
  local dev = model(ids:to('cuda'), { labels = labels:to('cuda') })
  dev.loss:backward()
  T.close(dev.loss:cpu(), cpu.loss, { rtol = 1e-5, atol = 1e-6 }, 'loss')
  T.close(model.transformer.wte.weight.grad:cpu(), g, { rtol = 1e-4, atol = 1e-6 }, 'wte gradient')
end)

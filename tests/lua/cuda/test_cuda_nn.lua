-- The nn ops on CUDA against the CPU (tide-cudaemu in CI, a GPU in
-- tests/gpu/run.sh): layer_norm, residual_layer_norm, softmax and log_softmax along any dim, and
-- cross_entropy (every reduction, ignore_index, [B, T, V] logits, a GPT-2
-- wide row), forward and backward through autograd, in f32, bf16 and f64,
-- with non-contiguous inputs. Each backward is seeded with a random
-- gradient (y:backward(g)), so every element of the gradient counts.
local T = require 'tide.testing'
local tide = require 'tide'
local F = tide.F

local DTYPES = { 'f32', 'bf16', 'f64' }

local function randn(shape, dt, scale)
  local t = tide.randn(unpack(shape))
  if scale then t = t * scale end
  return t:to(dt)
end

-- the f32 backward of layer norm / softmax cancels: allow its rounding relative to the output scale
local TOL = { f32 = { rtol = 1e-5, atol = 1e-5 }, f64 = { rtol = 1e-12, atol = 1e-12 }, bf16 = { rtol = 2e-2, atol = 2e-2 } }

T.test('layer_norm forward and backward on cuda', function()
  T.need_cuda()
  tide.manual_seed(1)
  for _, dt in ipairs(DTYPES) do
    for _, shape in ipairs { { 6, 40 }, { 2, 3, 200 }, { 1, 1 }, { 5, 768 } } do
      local C = shape[#shape]
      local x = randn(shape, dt):requires_grad_(true)
      local w = (randn({ C }, dt) * 0.5 + 1):detach():requires_grad_(true)
      local b = randn({ C }, dt):requires_grad_(true)
      local g = randn(shape, dt)
      T.device_parity(function(x, w, b, g)
        local y = F.layer_norm(x, C, w, b, 1e-5)
        y:backward(g)
        return y, x.grad, w.grad, b.grad
      end, { x, w, b, g }, TOL[dt], ('layer_norm %s [%s]'):format(dt, table.concat(shape, ', ')))
    end
    -- no affine parameters, and a transposed (non-contiguous) input
    local xb = randn({ 24, 7 }, dt):requires_grad_(true)
    local g = randn({ 7, 24 }, dt)
    T.device_parity(function(xb, g)
      local y = F.layer_norm(xb:t(), 24)
      y:backward(g)
      return y, xb.grad
    end, { xb, g }, TOL[dt], 'layer_norm transposed input ' .. dt)
    -- weight only
    local x2 = randn({ 3, 50 }, dt):requires_grad_(true)
    local w2 = randn({ 50 }, dt):requires_grad_(true)
    local g2 = randn({ 3, 50 }, dt)
    T.device_parity(function(x, w, g)
      local y = F.layer_norm(x, 50, w)
      y:backward(g)
      return y, x.grad, w.grad
    end, { x2, w2, g2 }, TOL[dt], 'layer_norm weight only ' .. dt)
  end
end)

T.test('residual_layer_norm forward and backward on cuda (bf16 read natively)', function()
  T.need_cuda()
  tide.manual_seed(4)
  for _, dt in ipairs(DTYPES) do
    for _, shape in ipairs { { 6, 40 }, { 2, 3, 37 }, { 1, 1 }, { 5, 768 } } do
      local C = shape[#shape]
      local x, r = randn(shape, dt, 2):requires_grad_(true), randn(shape, dt):requires_grad_(true)
      local w = (randn({ C }, dt) * 0.5 + 1):detach():requires_grad_(true)
      local b = randn({ C }, dt):requires_grad_(true)
      local gs, gy = randn(shape, dt), randn(shape, dt)
      local what = ('residual_layer_norm %s [%s]'):format(dt, table.concat(shape, ', '))
      T.device_parity(function(x, r, w, b, gs, gy)
        local s, y = F.residual_layer_norm(x, r, w, b, 1e-5)
        ;((s * gs):sum() + (y * gy):sum()):backward()
        return s, y, x.grad, r.grad, w.grad, b.grad
      end, { x, r, w, b, gs, gy }, TOL[dt], what)
      -- only y used (ds absent), then only s (dy absent: no parameter gradients)
      local function clear() for _, t in ipairs { x, r, w, b } do rawset(t, 'grad', nil) end end
      clear()
      T.device_parity(function(x, r, w, b, gy)
        local _, y = F.residual_layer_norm(x, r, w, b, 1e-5)
        y:backward(gy)
        return y, x.grad, r.grad, w.grad, b.grad
      end, { x, r, w, b, gy }, TOL[dt], what .. ' from y only')
      clear()
      T.device_parity(function(x, r, w, b, gs)
        local s = F.residual_layer_norm(x, r, w, b, 1e-5)
        s:backward(gs)
        return s, x.grad, r.grad, w.grad == nil, b.grad == nil
      end, { x, r, w, b, gs }, TOL[dt], what .. ' from s only')
    end
    -- no residual, no affine parameters, a transposed input
    local xt = randn({ 24, 7 }, dt):requires_grad_(true)
    local g = randn({ 7, 24 }, dt)
    T.device_parity(function(xt, g)
      local _, y = F.residual_layer_norm(xt:t(), nil)
      y:backward(g)
      return y, xt.grad
    end, { xt, g }, TOL[dt], 'residual_layer_norm without r ' .. dt)
  end
  -- s = x + r rounds exactly as the add op on both devices
  local x, r = randn({ 4, 96 }, 'bf16'), randn({ 4, 96 }, 'bf16')
  T.device_parity(function(x, r) return (F.residual_layer_norm(x, r)) end, { x, r }, { exact = true }, 's bits')
end)

T.test('softmax and log_softmax along every dim on cuda', function()
  T.need_cuda()
  tide.manual_seed(2)
  for _, dt in ipairs(DTYPES) do
    for _, name in ipairs { 'softmax', 'log_softmax' } do
      for _, dim in ipairs { -1, 1, 2 } do
        local x = randn({ 4, 7, 33 }, dt, 3):requires_grad_(true)
        local g = randn({ 4, 7, 33 }, dt)
        T.device_parity(function(x, g)
          local y = F[name](x, dim)
          y:backward(g)
          return y, x.grad
        end, { x, g }, TOL[dt], ('%s dim %d %s'):format(name, dim, dt))
      end
      -- a non-contiguous input: the last dim of a transposed view
      local xb = randn({ 9, 5 }, dt):requires_grad_(true)
      local g = randn({ 5, 9 }, dt)
      T.device_parity(function(xb, g)
        local y = F[name](xb:t(), -1)
        y:backward(g)
        return y, xb.grad
      end, { xb, g }, TOL[dt], name .. ' transposed ' .. dt)
    end
  end
  -- a long row (one block per row) and size-1 dims
  local x = randn({ 3, 5000 }, 'f32', 4)
  T.device_parity(function(x) return F.softmax(x, -1), F.log_softmax(x, -1) end, { x }, nil, 'long rows')
  local one = randn({ 1, 1 }, 'f32')
  T.device_parity(function(x) return F.softmax(x, 1), F.log_softmax(x, 2) end, { one }, nil, 'size 1')
end)

T.test('cross_entropy forward and backward on cuda', function()
  T.need_cuda()
  tide.manual_seed(3)
  local targets = tide.tensor({ 1, 0, 3, 2, -100, 3, 0 })
  for _, dt in ipairs(DTYPES) do
    for _, red in ipairs { 'mean', 'sum', 'none' } do
      local x = randn({ 7, 4 }, dt, 2):requires_grad_(true)
      local g = red == 'none' and randn({ 7 }, dt) or nil
      T.device_parity(function(x, t, g)
        local l = F.cross_entropy(x, t, { reduction = red })
        l:backward(g)
        return l, x.grad
      end, { x, targets, g, n = 3 }, TOL[dt], ('cross_entropy %s %s'):format(red, dt))
    end
    -- [B, T, V] logits from a transposed view, another ignore_index
    local xb = randn({ 2, 11, 3 }, dt):requires_grad_(true)
    local t = tide.tensor({ { 1, 10, 0 }, { 5, 5, 3 } })
    T.device_parity(function(xb, t)
      local l = F.cross_entropy(xb:transpose(2, 3), t, { ignore_index = 5 })
      l:backward()
      return l, xb.grad
    end, { xb, t }, TOL[dt], 'cross_entropy [B, T, V] ' .. dt)
  end
  -- every row ignored: mean is NaN on both
  local x = randn({ 2, 3 }, 'f32')
  local l = F.cross_entropy(x:to('cuda'), tide.tensor({ -100, -100 }):to('cuda'))
  T.truthy(l:item() ~= l:item(), 'the mean of no rows is NaN')
end)

T.test('cross_entropy on a GPT-2-wide row on cuda', function()
  T.need_cuda()
  tide.manual_seed(4)
  local x = randn({ 2, 50257 }, 'f32', 2):requires_grad_(true)
  local t = tide.tensor({ 50256, 7 })
  T.device_parity(function(x, t)
    local l = F.cross_entropy(x, t)
    l:backward()
    return l, x.grad
  end, { x, t }, { rtol = 1e-5, atol = 1e-9 }, 'wide cross_entropy')
end)

T.test('cross_entropy rejects bad targets on cuda', function()
  T.need_cuda()
  local x = tide.randn(3, 5):to('cuda')
  T.raises(function() F.cross_entropy(x, tide.tensor({ 0, 5, 1 }):to('cuda')) end, 'target 5 is out of range for 5 classes')
  T.raises(function() F.cross_entropy(x, tide.tensor({ 0, 1, -2 }):to('cuda')) end, 'target -2 is out of range')
  -- the same message as the CPU's
  local cpu_err = T.raises(function() F.cross_entropy(x:cpu(), tide.tensor({ 9, 1, 2 })) end)
  local dev_err = T.raises(function() F.cross_entropy(x, tide.tensor({ 9, 1, 2 }):to('cuda')) end)
  T.eq(dev_err:match('target.*'), cpu_err:match('target.*'))
end)

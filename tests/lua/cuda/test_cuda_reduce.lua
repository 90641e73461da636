-- Reductions, cumsum, sort and topk on CUDA (tide-cudaemu in CI, a GPU in
-- tests/gpu/run.sh) against the CPU ops: forward for f32, bf16, f64 and
-- integers, non-contiguous views, sizes 0 and 1, and backward where the op
-- has a gradient.
local T = require 'tide.testing'

local function ints(dtype, ...)
  return tide.randint(-20, 20, { ... }):to(dtype)
end

T.test('sum, mean, prod over a dim and all elements on cuda', function()
  T.need_cuda()
  local x = tide.randn(5, 7)
  for _, dt in ipairs { 'f32', 'bf16', 'f64' } do
    local a = x:to(dt)
    T.device_parity(function(t) return t:sum(), t:sum(1), t:sum(2, true), t:sum(-1) end, { a }, nil, 'sum ' .. dt)
    T.device_parity(function(t) return t:mean(), t:mean(1), t:mean(2, true) end, { a }, nil, 'mean ' .. dt)
    T.device_parity(function(t) return t:prod(), t:prod(2), t:t():prod(2) end, { (x * 0.1 + 1):to(dt) }, nil,
      'prod ' .. dt)
    -- non-contiguous: a transpose and a narrowed view
    T.device_parity(function(t) return t:t():sum(2), t:t():mean(), t:narrow(2, 2, 4):sum(1) end, { a }, nil,
      'strided sum ' .. dt)
    T.device_parity(function(t) return t:sum({ 1, 2 }), t:mean({ 2 }) end, { a }, nil, 'sum over dims ' .. dt)
  end
  for _, dt in ipairs { 'i32', 'i64', 'u8', 'bool' } do
    local a = dt == 'u8' and tide.randint(0, 200, { 4, 6 }):to('u8') or dt == 'bool' and tide.randn(4, 6):gt(0)
      or ints(dt, 4, 6)
    T.device_parity(function(t) return t:sum(), t:sum(1), t:t():sum(2), t:mean(2) end, { a }, { exact = true },
      'integer sum ' .. dt)
    T.device_parity(function(t) return t:prod(2) end, { a }, { exact = true }, 'integer prod ' .. dt)
  end
end)

T.test('max, min, argmax, argmin with NaN and ties on cuda', function()
  T.need_cuda()
  -- a coarse grid gives ties; the first occurrence must win on both devices
  local x = (tide.randn(6, 9) * 2):round()
  for _, dt in ipairs { 'f32', 'bf16', 'f64', 'i32', 'i64' } do
    local a = x:to(dt)
    T.device_parity(function(t)
      local v1, i1 = t:max(1)
      local v2, i2 = t:min(2, true)
      return t:max(), t:min(), v1, i1, v2, i2, t:argmax(), t:argmin(2), t:amax(1), t:t():argmax(2)
    end, { a }, { exact = true }, 'max/min ' .. dt)
  end
  local n = tide.tensor({ { 1, 0 / 0, 3, 0 / 0 }, { -1, -2, -3, -4 } })
  T.device_parity(function(t)
    local v, i = t:max(2)
    return v, i, t:argmax(2), t:argmin(2), t:max(), t:argmax()
  end, { n }, { exact = false, rtol = 0, atol = 0 }, 'NaN propagation')
end)

T.test('reductions of size 0 and 1 on cuda', function()
  T.need_cuda()
  local e = tide.zeros(0, 3)
  T.device_parity(function(t) return t:sum(), t:sum(1), t:mean(1), t:prod(1), t:sum(2) end, { e }, nil, 'empty')
  local one = tide.randn(1)
  T.device_parity(function(t) return t:sum(), t:max(), t:argmax(), t:mean(1) end, { one }, nil, 'size 1')
  local s = tide.tensor(2.5)
  T.device_parity(function(t) return t:sum(), t:max(), t:argmin() end, { s }, nil, '0-d')
  local ecuda = tide.zeros(0, 3, { device = 'cuda' })
  T.raises(function() return ecuda:max(1) end, 'cannot reduce over an empty dimension')
end)

T.test('long reductions are deterministic on cuda', function()
  local dev = T.need_cuda()
  local x = tide.randn(2, 40000)
  T.device_parity(function(t) return t:sum(), t:sum(2), t:max(2), t:argmin() end, { x }, nil, 'long rows')
  local d = x:to(dev)
  T.same(d:sum(2):cpu():tolist(), d:sum(2):cpu():tolist(), 'same bits twice')
end)

T.test('cumsum on cuda', function()
  T.need_cuda()
  local x = tide.randn(4, 6)
  for _, dt in ipairs { 'f32', 'bf16', 'f64' } do
    local a = x:to(dt)
    T.device_parity(function(t) return t:cumsum(1), t:cumsum(2), t:t():cumsum(2) end, { a }, nil, 'cumsum ' .. dt)
  end
  for _, dt in ipairs { 'i32', 'i64', 'bool' } do
    local a = dt == 'bool' and x:gt(0) or ints(dt, 4, 6)
    T.device_parity(function(t) return t:cumsum(1), t:cumsum(-1) end, { a }, { exact = true }, 'cumsum ' .. dt)
  end
  T.device_parity(function(t) return t:cumsum(2) end, { tide.randn(2, 3000) }, nil, 'long cumsum')
  T.device_parity(function(t) return t:cumsum(1) end, { tide.zeros(0, 2) }, nil, 'empty cumsum')
  T.device_parity(function(t) return t:cumsum(1) end, { tide.tensor(3.5) }, nil, '0-d cumsum')
end)

T.test('sort and topk on cuda', function()
  T.need_cuda()
  local x = (tide.randn(5, 11) * 2):round()  -- ties: stable order on both devices
  for _, dt in ipairs { 'f32', 'bf16', 'f64', 'i32', 'i64', 'u8' } do
    local a = dt == 'u8' and tide.randint(0, 5, { 5, 11 }):to('u8') or x:to(dt)
    T.device_parity(function(t)
      local v1, i1 = t:sort()
      local v2, i2 = t:sort(1, { descending = true })
      local v3, i3 = t:t():sort(2, true)
      return v1, i1, v2, i2, v3, i3, t:argsort(2)
    end, { a }, { exact = true }, 'sort ' .. dt)
    T.device_parity(function(t)
      local v1, i1 = t:topk(3)
      local v2, i2 = t:topk(2, 1, { largest = false })
      local v3, i3 = t:t():topk(5, 2)
      return v1, i1, v2, i2, v3, i3
    end, { a }, { exact = true }, 'topk ' .. dt)
  end
  local n = tide.tensor({ 3, 0 / 0, -0.0, 0.0, -1, 0 / 0, 1 / 0 })
  T.device_parity(function(t)
    local v, i = t:sort()
    local vd, id = t:sort(1, true)
    local tv, ti = t:topk(3)
    return v, i, vd, id, tv, ti
  end, { n }, { rtol = 0, atol = 0 }, 'NaN and signed zeros')
  -- the generation case: top-k of a vocabulary-wide row
  local logits = tide.randn(2, 50257)
  T.device_parity(function(t) return t:topk(50) end, { logits }, { exact = true }, 'vocabulary topk')
  T.device_parity(function(t) return t:topk(0) end, { x }, { exact = true }, 'k = 0')
  T.device_parity(function(t) return t:sort() end, { tide.zeros(0, 4) }, { exact = true }, 'empty sort')
  T.device_parity(function(t) return t:sort() end, { tide.tensor(1.5) }, { exact = true }, '0-d sort')
end)

T.test('backward of sum, mean, max, min, cumsum on cuda', function()
  T.need_cuda()
  for _, dt in ipairs { 'f32', 'bf16', 'f64' } do
    local function leaf() return tide.randn(4, 6):to(dt):requires_grad_(true) end
    T.device_parity(function(x) x:sum():backward(); return x.grad end, { leaf() }, nil, 'sum backward ' .. dt)
    T.device_parity(function(x) x:t():sum(2):sum():backward(); return x.grad end, { leaf() }, nil, 'strided sum backward ' .. dt)
    T.device_parity(function(x) x:mean(1):sum():backward(); return x.grad end, { leaf() }, nil, 'mean backward ' .. dt)
    T.device_parity(function(x)
      local v = x:max(2)
      v:sum():backward()
      return x.grad
    end, { leaf() }, nil, 'max backward ' .. dt)
    T.device_parity(function(x) x:min():backward(); return x.grad end, { leaf() }, nil, 'min backward ' .. dt)
    T.device_parity(function(x) x:cumsum(2):sum():backward(); return x.grad end, { leaf() }, nil, 'cumsum backward ' .. dt)
  end
end)

T.test('backward of sort and topk on cuda', function()
  T.need_cuda()
  for _, dt in ipairs { 'f32', 'bf16', 'f64' } do
    local function leaf() return tide.randn(4, 9):to(dt):requires_grad_(true) end
    T.device_parity(function(x)
      local v = x:sort(2, true)
      v:narrow(2, 1, 3):sum():backward()
      return x.grad
    end, { leaf() }, nil, 'sort backward ' .. dt)
    T.device_parity(function(x)
      local v = x:t():topk(2, 2)
      v:sum():backward()
      return x.grad
    end, { leaf() }, nil, 'topk backward ' .. dt)
  end
end)

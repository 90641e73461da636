-- The index family (index_select, gather, scatter_add, masked_fill), the
-- embedding and the AdamW optimizer on cuda against the cpu, through the
-- whole engine (tide-cudaemu in CI, a GPU in tests/gpu/run.sh): forward and
-- backward (autograd), f32, bf16 and f64, non-contiguous inputs, and the
-- bad-index errors.
local T = require 'tide.testing'

-- 0-based index values 0..n-1 in a fixed scrambled order with repeats
local function ids(count, n, dtype, salt)
  local r = {}
  for i = 0, count - 1 do r[i + 1] = (i * 7 + (salt or 3) + (i * i) % 5) % n end
  return tide.tensor(r, { dtype = dtype or 'i64' })
end

local float_dtypes = { 'f32', 'bf16', 'f64' }

T.test('index_select forward and backward on cuda', function()
  T.need_cuda()
  for _, dt in ipairs(float_dtypes) do
    for _, idt in ipairs { 'i64', 'i32' } do
      -- x: a [5, 6] transposed view of a [6, 5] leaf; the index repeats rows
      local base = tide.randn(6, 5):to(dt):requires_grad_(true)
      local idx = ids(9, 6, idt)
      local g = tide.randn(9, 5):to(dt)
      T.device_parity(function(b, i, gout)
        local y = b:t():index_select(2, i)
        y:backward(gout:t())  -- a non-contiguous gradient too
        return y, b.grad
      end, { base, idx, g }, nil, 'index_select ' .. dt .. ' ' .. idt)
    end
    -- 1-d and a 3-d input along the middle dim, exact (a copy)
    local x3 = tide.randn(3, 4, 5):to(dt)
    T.device_parity(function(x, i) return x:index_select(2, i), x:index_select(3, i) end,
      { x3, ids(7, 4, 'i64') }, { exact = true }, 'index_select 3-d ' .. dt)
    T.device_parity(function(x, i) return x:index_select(1, i) end, { tide.randn(8):to(dt), ids(1, 8) },
      { exact = true }, 'index_select 1-d')
  end
end)

T.test('gather forward and backward on cuda', function()
  T.need_cuda()
  for _, dt in ipairs(float_dtypes) do
    for dim = 1, 2 do
      local base = tide.randn(7, 4):to(dt):requires_grad_(true)  -- x = base:t() is [4, 7]
      local idx = dim == 1 and ids(12, 4, 'i32'):reshape { 3, 4 } or ids(20, 7, 'i64'):reshape { 4, 5 }
      local g = tide.randn(idx:size(1), idx:size(2)):to(dt)
      T.device_parity(function(b, i, gout)
        local y = b:t():gather(dim, i)
        y:backward(gout)
        return y, b.grad
      end, { base, idx, g }, nil, ('gather %s dim %d'):format(dt, dim))
    end
  end
end)

T.test('scatter_add and scatter_add_ on cuda', function()
  T.need_cuda()
  for _, dt in ipairs { 'f32', 'bf16', 'f64', 'i64', 'i32' } do
    local a = (tide.randn(5, 4) * 10):to(dt)
    local src = (tide.randn(4, 9) * 10):to(dt)  -- src:t() is a [9, 4] view
    local idx = ids(36, 5, 'i64', 1):reshape { 9, 4 }
    T.device_parity(function(x, i, s) return x:scatter_add(1, i, s:t()) end, { a, idx, src }, nil, 'scatter_add ' .. dt)
    T.device_parity(function(x, i, s)
      local y = x:clone()
      y:t():scatter_add_(2, i:t(), s)  -- in place into a transposed view, a transposed index
      return y
    end, { a, idx, src }, nil, 'scatter_add_ into a view ' .. dt)
  end
  -- many sources per destination: the sum's order shows in f32 bits, so equal bits mean index order
  local a = tide.zeros(3, 16)
  local src = tide.randn(400, 16) * 1000
  local idx = ids(400 * 16, 3, 'i64'):reshape { 400, 16 }
  T.device_parity(function(x, i, s) return x:scatter_add(1, i, s) end, { a, idx, src }, { exact = true },
    'scatter_add order')
end)

T.test('masked_fill forward and backward on cuda', function()
  T.need_cuda()
  local row = tide.tensor({ true, false, false, true, true, false }, { dtype = 'bool' })
  local full = tide.tensor({ { true, false, true }, { false, false, true }, { true, true, false },
                             { false, true, false }, { true, false, false }, { false, false, false } }, { dtype = 'bool' })
  for _, dt in ipairs(float_dtypes) do
    local base = tide.randn(6, 4):to(dt):requires_grad_(true)  -- base:t() is [4, 6]
    local g = tide.randn(4, 6):to(dt)
    T.device_parity(function(b, m, gout)
      local y = b:t():masked_fill(m, -2.5)  -- the [6] mask broadcast over rows
      y:backward(gout)
      return y, b.grad
    end, { base, row, g }, nil, 'masked_fill ' .. dt)
    local x = tide.randn(3, 6):to(dt)
    T.device_parity(function(t, m) return t:t():masked_fill(m, 7) end, { x, full }, { exact = true },
      'masked_fill full mask ' .. dt)
  end
  for _, dt in ipairs { 'i64', 'i32', 'u8', 'bool', 'f16' } do
    local x = (tide.randn(4, 6) * 5):to(dt)
    T.device_parity(function(t, m) return t:clone():masked_fill_(m, 1) end, { x, row }, { exact = true },
      'masked_fill_ ' .. dt)
  end
end)

T.test('embedding forward and backward on cuda', function()
  T.need_cuda()
  local F = tide.F
  for _, dt in ipairs(float_dtypes) do
    for _, idt in ipairs { 'i64', 'i32' } do
      for _, transposed in ipairs { false, true } do
        -- weight [10, 8]: a leaf, or the transpose of an [8, 10] leaf
        local base = (transposed and tide.randn(8, 10) or tide.randn(10, 8)):to(dt):requires_grad_(true)
        local ix = ids(15, 10, idt):reshape { 3, 5 }  -- repeated ids: their gradients add up
        local g = tide.randn(3, 5, 8):to(dt)
        T.device_parity(function(b, i, gout)
          local w = transposed and b:t() or b
          local y = F.embedding(i, w)
          y:backward(gout)
          return y, b.grad
        end, { base, ix, g }, nil, ('embedding %s ids %s%s'):format(dt, idt, transposed and ' transposed' or ''))
      end
    end
  end
  -- many repeats of few ids, in f32: equal bits mean the gradient adds in id order
  local w = tide.randn(50, 40):requires_grad_(true)
  local ix = ids(600, 3, 'i64')
  local g = tide.randn(600, 40) * 100
  T.device_parity(function(weight, i, gout)
    F.embedding(i, weight):backward(gout)
    return weight.grad
  end, { w, ix, g }, { exact = true }, 'embedding backward order')
end)

T.test('AdamW steps on cuda parameters match the cpu', function()
  T.need_cuda()
  local function run(p1, base2, p3, grads)
    local p2 = base2:t()  -- a transposed parameter: its state is contiguous, so operands differ in strides
    local opt = tide.optim.AdamW({ { params = { p1, p2 } }, { params = { p3 }, weight_decay = 0, betas = { 0.3, 0.99 } } },
      { lr = 1e-2, weight_decay = 0.1 })
    for s = 1, #grads do
      p1.grad, p2.grad, p3.grad = grads[s][1], grads[s][2], grads[s][3]
      opt:step()
    end
    local st = opt.state[p1]
    return p1, base2, p3, st.exp_avg, st.exp_avg_sq
  end
  local grads = {}
  for s = 1, 4 do grads[s] = { tide.randn(7, 5), tide.randn(3, 6), tide.randn(13, { dtype = 'f64' }) } end
  T.device_parity(run, { tide.randn(7, 5), tide.randn(6, 3), tide.randn(13, { dtype = 'f64' }), grads },
    { exact = true }, 'AdamW')
end)

-- tide_multi_norm, the total norm clip_grad_norm takes (each grad's 2-norm by the adamw family's norm2,
-- then the norm of those norms), called directly: clip_grad_norm itself also needs mul_
T.test('the total gradient norm (multi_norm) on cuda', function()
  T.need_cuda()
  local ffi, C, core = require 'ffi', require 'tide.C', require 'tide.tensor'
  local function total(list)
    local h = ffi.new('const tide_tensor*[?]', #list)
    for i, t in ipairs(list) do h[i - 1] = t._c end
    local out = ffi.new('tide_tensor*[1]')
    if C.tide_multi_norm(#list, h, 2, out) ~= 0 then error(ffi.string(C.tide_last_error()), 2) end
    return core.wrap(out[0])
  end
  local g1, g2, g3 = tide.randn(37), tide.randn(300, 30), tide.randn(6, 5, { dtype = 'f64' })
  T.device_parity(function(a, b, c, e)
    return total { a }, total { a, b:t() }, total { a, b, c }, total { e }, total { b:to('bf16') }
  end, { g1, g2, g3, tide.zeros(0) }, { rtol = 1e-5, atol = 0 }, 'multi_norm')
  T.device_parity(function(c) return total { c, c:t() } end, { g3:reshape { 6, 5 } }, { rtol = 1e-12, atol = 0 }, 'multi_norm f64')
end)

T.test('clip_grad_norm on cuda', function()
  T.need_cuda()
  local function clip(ps, gs, max_norm)
    for i, p in ipairs(ps) do p.grad = gs[i]:clone() end
    local total = tide.optim.clip_grad_norm(ps, max_norm)
    local out = { total }
    for i, p in ipairs(ps) do out[i + 1] = p.grad end
    return unpack(out)
  end
  local ps = { tide.zeros(37), tide.zeros(100, 30), tide.zeros(5, { dtype = 'f64' }) }
  local gs = { tide.randn(37), tide.randn(100, 30), tide.randn(5, { dtype = 'f64' }) }
  for _, max_norm in ipairs { 1.0, 1e9 } do
    T.device_parity(clip, { ps, gs, max_norm }, { rtol = 1e-5, atol = 1e-7 }, 'clip_grad_norm ' .. max_norm)
  end
end)

T.test('bad indices are errors on cuda, and nothing is written', function()
  local dev = T.need_cuda()
  local x = tide.randn(4, 3):to(dev)
  local bad = tide.tensor({ 0, 2, 9, -1 }, { dtype = 'i64' }):to(dev)
  T.raises(function() x:index_select(1, bad) end,
    'index_select: index 9 is out of range for dimension 1 of size 4 (index values are 0-based: 0..3)')
  T.raises(function() x:gather(2, tide.tensor({ { 0 }, { 1 }, { -4 }, { 2 } }, { dtype = 'i32' }):to(dev)) end,
    'gather: index -4 is out of range for dimension 2 of size 3')
  local a = tide.zeros(4, 3):to(dev)
  local idx = tide.tensor({ { 0, 1, 2 }, { 3, 4, 0 } }, { dtype = 'i64' }):to(dev)
  T.raises(function() a:scatter_add_(1, idx, tide.ones(2, 3):to(dev)) end, 'scatter_add_: index 4 is out of range')
  T.same(a:cpu():tolist(), tide.zeros(4, 3):tolist(), 'scatter_add_ wrote before failing')
  local w = tide.randn(10, 4):to(dev)
  T.raises(function() tide.F.embedding(tide.tensor({ 1, 12, 3, -1 }, { dtype = 'i64' }):to(dev), w) end,
    'embedding: id 12 is out of range for an embedding of 10 rows (ids are 0-based: 0..9)')
  T.raises(function() tide.F.embedding(tide.tensor({ 2, -3 }, { dtype = 'i32' }):to(dev), w) end, 'id -3 is out of range')
  -- the same messages as on the cpu
  local ok1, e1 = pcall(function() x:cpu():index_select(1, bad:cpu()) end)
  local ok2, e2 = pcall(function() x:index_select(1, bad) end)
  T.truthy(not ok1 and not ok2)
  T.eq(tostring(e2):match('index_select:.*'), tostring(e1):match('index_select:.*'))
end)

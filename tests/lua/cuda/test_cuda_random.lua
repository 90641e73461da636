-- Random numbers and dropout on cuda against the cpu: one Philox stream
-- layout (runtime/philox.h), so a seed gives the same bits on both devices
-- for every dtype and any strides, and the generator moves on by the same
-- number of blocks. Each fn reseeds, so its cpu and cuda runs start alike.
local T = require 'tide.testing'
local F = tide.F

local floats = { 'f32', 'f64', 'bf16', 'f16' }
local exact = { exact = true }

-- The default generator's offset, as a result to compare.
local function offset() return tide.get_rng_state().offset end

T.test('manual_seed then rand/randn on cpu and cuda: same bits, same offsets', function()
  local dev = T.need_cuda()
  for _, dt in ipairs(floats) do
    tide.manual_seed(1234)
    local a = tide.rand(5, 7, { dtype = dt })
    local a2 = tide.randn(3, 3, { dtype = dt })
    local off = offset()
    tide.manual_seed(1234)
    local b = tide.rand(5, 7, { dtype = dt, device = dev })
    local b2 = tide.randn(3, 3, { dtype = dt, device = dev })
    T.eq(b.device, 'cuda:0')
    T.same(b:cpu():tolist(), a:tolist(), 'rand ' .. dt)
    T.same(b2:cpu():tolist(), a2:tolist(), 'randn ' .. dt)
    T.eq(offset(), off, 'offset after rand, randn ' .. dt)
    -- two consecutive calls: the second starts where the first ended on both
    T.device_parity(function(t)
      tide.manual_seed(99)
      local x = tide.rand_like(t)
      local o1 = offset()
      local y = tide.randn_like(t)
      return x, y, o1, offset()
    end, { tide.zeros(7, 3, { dtype = dt }) }, exact, 'rand_like/randn_like ' .. dt)
  end
end)

T.test('in-place fills of non-contiguous views on cuda', function()
  T.need_cuda()
  for _, dt in ipairs(floats) do
    local base = tide.zeros(6, 10, { dtype = dt })
    T.device_parity(function(t)
      tide.manual_seed(5)
      t:t():uniform_(-2, 3)                       -- a transposed view
      t:narrow(2, 2, 5):normal_(1.5, 0.25)        -- columns 2..6 of each row
      return t, offset()
    end, { base }, exact, 'uniform_/normal_ on views ' .. dt)
  end
  -- a generator object, not the default one
  T.device_parity(function(t)
    local g = tide.Generator(0x123456789)
    t:t():uniform_(0, 1, { generator = g })
    return t, g:get_state().offset
  end, { tide.zeros(4, 9, { dtype = 'f64' }) }, exact, 'uniform_ with a generator')
end)

T.test('randint, random_ and bernoulli_ on cuda for every dtype', function()
  T.need_cuda()
  local ranges = { i64 = { -5, 1e15 }, i32 = { -1000, 1000 }, u8 = { 0, 256 }, u16 = { 7, 60000 }, bool = { 0, 2 },
    f32 = { -100, 100 }, f64 = { 0, 2 ^ 40 }, bf16 = { -256, 257 }, f16 = { 0, 2048 } }
  for dt, r in pairs(ranges) do
    T.device_parity(function(t)
      tide.manual_seed(77)
      local a = tide.randint(r[1], r[2], { 3, 5 }, { dtype = dt, device = t.device })
      local b = tide.randint_like(t, r[1], r[2])
      t:t():random_()                             -- the dtype's default range, into a transposed view
      local o = offset()
      t:narrow(1, 2, 2):bernoulli_(0.3)
      return a, b, t, o, offset()
    end, { tide.zeros(5, 4, { dtype = dt }) }, exact, 'randint/random_/bernoulli_ ' .. dt)
  end
  -- a range wider than 2^32 (one draw per block)
  T.device_parity(function(t)
    tide.manual_seed(3)
    return tide.randint(-2 ^ 62, 2 ^ 62, { 9 }, { device = t.device }), offset()
  end, { tide.zeros(1) }, exact, 'wide randint')
end)

T.test('randperm on cuda', function()
  T.need_cuda()
  for _, n in ipairs { 0, 1, 2, 5, 300 } do
    T.device_parity(function(t)
      tide.manual_seed(31)
      local p = tide.randperm(n, { device = t.device })
      local q = tide.randperm(n, { device = t.device, dtype = 'i32' })
      return p, q, offset()
    end, { tide.zeros(1) }, exact, 'randperm ' .. n)
  end
  T.eq(tide.randperm(4, { device = 'cuda' }).device, 'cuda:0')
end)

T.test('multinomial on cuda: with and without replacement, every float dtype', function()
  T.need_cuda()
  local w = tide.rand(4, 11, { dtype = 'f64' })
  w[{ 2, 3 }] = 0
  w[{ 3, 5 }] = 0
  for _, dt in ipairs(floats) do
    local p = w:to(dt)
    T.device_parity(function(t)
      tide.manual_seed(8)
      local a = t:multinomial(6, true)
      local b = t:multinomial(6)                  -- without replacement
      local c = t[1]:multinomial(10)              -- 1-d, every nonzero category
      local d = tide.multinomial(t:t():contiguous():t(), 5, { replacement = true })
      return a, b, c, d, offset()
    end, { p }, exact, 'multinomial ' .. dt)
  end
  -- a non-contiguous (transposed) weights view
  T.device_parity(function(t)
    tide.manual_seed(2)
    return t:t():multinomial(3), offset()
  end, { tide.rand(9, 4) }, exact, 'multinomial of a transposed view')
end)

T.test('multinomial on cuda reports bad weights as the cpu does', function()
  local dev = T.need_cuda()
  local cases = {
    { tide.tensor({ 1, -1, 2 }), 2, true },
    { tide.tensor({ { 1, 2, 3 }, { 1, 0 / 0, 2 } }), 1, true },
    { tide.tensor({ { 1, 2, 3 }, { 0, 0, 0 } }), 1, false },
    { tide.tensor({ 0, 0 }), 1, true },
    { tide.tensor({ 1.7e308, 1.7e308 }, { dtype = 'f64' }), 1, true },
    { tide.tensor({ 1, 0, 2 }), 3, false },
    { tide.tensor({ { 1, 1, 1 }, { 1, 0, 0 } }), 2, false },
  }
  for i, c in ipairs(cases) do
    tide.manual_seed(1)
    local ok1, e1 = pcall(function() return c[1]:multinomial(c[2], c[3]) end)
    local o1 = offset()
    tide.manual_seed(1)
    local ok2, e2 = pcall(function() return c[1]:to(dev):multinomial(c[2], c[3]) end)
    T.eq(ok1, false, 'case ' .. i .. ' fails on the cpu')
    T.eq(ok2, false, 'case ' .. i .. ' fails on cuda')
    T.eq(tostring(e2):match('multinomial:.*'), tostring(e1):match('multinomial:.*'), 'case ' .. i .. ' message')
    T.eq(offset(), o1, 'case ' .. i .. ': a failed call draws nothing')
  end
end)

T.test('dropout forward and backward on cuda: the same masks through autograd', function()
  T.need_cuda()
  local nn = tide.nn
  for _, dt in ipairs(floats) do
    local x = tide.randn(6, 9):to(dt):requires_grad_(true)
    local w = tide.randn(6, 9):to(dt)
    T.device_parity(function(xx, ww)
      tide.manual_seed(11)
      local y = F.dropout(xx, 0.3, true)
      y:backward(ww)                              -- d loss / d y = ww: dx = mask * ww * scale
      return y, xx.grad, offset()
    end, { x, w }, exact, 'F.dropout ' .. dt)
  end
  -- nn.Dropout on a non-contiguous input, then a second call: the offset moves on alike
  local x = tide.randn(7, 5, { dtype = 'f64' }):requires_grad_(true)
  T.device_parity(function(xx, x2, ww)
    tide.manual_seed(4)
    local m = nn.Dropout(0.5)
    local y1 = m(xx:t())
    y1:backward(ww)
    local y2 = m(x2)
    return y1, xx.grad, y2, offset()
  end, { x, tide.randn(3, 11, { dtype = 'f64' }), tide.randn(5, 7, { dtype = 'f64' }) }, exact,
    'nn.Dropout on a transposed input')
  -- p = 0 and p = 1 draw nothing
  T.device_parity(function(xx)
    tide.manual_seed(4)
    local a = F.dropout(xx, 0, true)
    local b = F.dropout(xx, 1, true)
    return a, b, offset()
  end, { tide.randn(3, 4) }, exact, 'dropout p=0 and p=1')
end)

-- Random numbers: reproducibility of the Philox streams, distributions (with
-- bounds wide enough that they cannot flake: 6 sigma or chi-square far in the
-- tail), independence from thread count and strides, generator state, and
-- clear errors for bad arguments. Exact bits are pinned by tests/c/test_philox.c.
local T = require 'tide.testing'
local ffi = require 'ffi'

-- A pointer to t's values as doubles (a contiguous f64 copy when needed) and the keep-alive tensor.
local function f64_values(t)
  local c = t:to('f64'):contiguous()
  return ffi.cast('double*', c:data_ptr()), c:numel(), c
end

-- True when a and b hold exactly the same values in logical order.
local function identical(a, b)
  if a:numel() ~= b:numel() or a:dtype() ~= b:dtype() then return false end
  local ctype = a:dtype() == 'i64' and 'int64_t*' or 'double*'
  local ca = a:dtype() == 'i64' and a:contiguous() or a:to('f64'):contiguous()
  local cb = b:dtype() == 'i64' and b:contiguous() or b:to('f64'):contiguous()
  local pa, pb = ffi.cast(ctype, ca:data_ptr()), ffi.cast(ctype, cb:data_ptr())
  for i = 0, a:numel() - 1 do
    local x, y = pa[i], pb[i]
    if x ~= y and not (x ~= x and y ~= y) then return false end
  end
  return true
end

-- Mean, variance, min and max of t's values.
local function moments(t)
  local p, n, keep = f64_values(t)
  local s, lo, hi = 0, math.huge, -math.huge
  for i = 0, n - 1 do
    local v = p[i]
    s = s + v
    if v < lo then lo = v end
    if v > hi then hi = v end
  end
  local mean, ss = s / n, 0
  for i = 0, n - 1 do local d = p[i] - mean; ss = ss + d * d end
  local _ = keep
  return mean, ss / (n - 1), lo, hi
end

-- Counts of each integer value of t (a Lua table value -> count).
local function counts(t)
  local p, n, keep = f64_values(t)
  local c = {}
  for i = 0, n - 1 do local v = p[i]; c[v] = (c[v] or 0) + 1 end
  local _ = keep
  return c
end

-- Pearson's chi-square of observed counts against expected probabilities (categories 0..#p-1).
local function chi2(observed, probs, total)
  local x = 0
  for k, p in ipairs(probs) do
    if p > 0 then
      local e = p * total
      local o = observed[k - 1] or 0
      x = x + (o - e) ^ 2 / e
    end
  end
  return x
end

-- Runs fn with the default generator seeded, restoring the thread count afterwards.
local function with_threads(n, fn)
  local before = tide.get_num_threads()
  tide.set_num_threads(n)
  local ok, r = pcall(fn)
  tide.set_num_threads(before)
  if not ok then error(r, 0) end
  return r
end

T.test('the same seed gives the same streams, other seeds differ', function()
  for _, make in ipairs {
    function() return tide.rand(1000) end,
    function() return tide.rand(999, { dtype = 'f64' }) end,
    function() return tide.randn(1001) end,
    function() return tide.randn(77, { dtype = 'f64' }) end,
    function() return tide.randint(-50, 50, { 1000 }) end,
    function() return tide.randint(-2 ^ 62, 2 ^ 62, { 100 }) end,
    function() return tide.tensor({ 1, 2, 3, 4 }, { dtype = 'f32' }):multinomial(500, true) end,
    function() return tide.tensor({ 1, 2, 3, 4, 5, 6 }, { dtype = 'f64' }):multinomial(4) end,
    function() return tide.randperm(100) end,
  } do
    tide.manual_seed(123)
    local a = make()
    tide.manual_seed(123)
    local b = make()
    tide.manual_seed(124)
    local c = make()
    T.truthy(identical(a, b), 'same seed, same values')
    T.truthy(not identical(a, c), 'different seed, different values')
    local g1, g2 = tide.Generator(123), tide.Generator(123)
    T.truthy(tide.rand(10, { generator = g1 }):tolist()[1] == tide.rand(10, { generator = g2 }):tolist()[1])
  end
end)

T.test('consecutive calls continue the stream and never reuse a counter', function()
  local g = tide.Generator(5)
  local a = tide.rand(10, { generator = g })
  T.eq(g:get_state().offset, 3, '10 f32 values use 3 counters')
  local b = tide.rand(10, { generator = g })
  T.truthy(not identical(a, b))
  T.eq(g:get_state().offset, 6)
  tide.randn(5, { dtype = 'f64', generator = g })
  T.eq(g:get_state().offset, 9, '5 f64 normals use 3 counters')
  tide.randint(0, 10, { 7 }, { generator = g })
  T.eq(g:get_state().offset, 13, '7 narrow randints use 4 counters')
  -- one call of 20 values equals two calls of 10 when the counts are multiples of 4
  local g2 = tide.Generator(5)
  local x = tide.rand(8, { generator = g2 })
  local y = tide.rand(8, { generator = g2 })
  local whole = tide.rand(16, { generator = tide.Generator(5) }):tolist()
  local parts = x:tolist()
  for _, v in ipairs(y:tolist()) do parts[#parts + 1] = v end
  T.same(parts, whole)
end)

T.test('the default generator starts from PyTorch\'s default seed', function()
  T.eq(tide.Generator():seed(), 67280421310721)
  T.truthy(tide.is_generator(tide.default_generator))
  tide.manual_seed(99)
  T.eq(tide.seed(), 99)
  T.eq(tide.initial_seed(), 99)
  T.eq(tide.get_rng_state().offset, 0, 'manual_seed restarts the stream')
  tide.rand(3)
  T.eq(tide.get_rng_state().offset, 1)
  T.eq(tide.manual_seed(7), tide.default_generator)
  -- 64-bit seeds through cdata, negatives wrap like torch.manual_seed
  local g = tide.Generator(0xfedcba9876543210ULL)
  T.truthy(g:seed() == 0xfedcba9876543210ULL)
  T.truthy(tide.Generator(-1):seed() == 0xffffffffffffffffULL)
  T.eq(tide.Generator(2 ^ 53):seed(), 2 ^ 53)
end)

T.test('get_state / set_state resume exactly', function()
  local g = tide.Generator(2024)
  tide.randn(13, { generator = g })
  local s = g:get_state()
  local a = tide.randn(1000, { generator = g })
  local a2 = tide.randint(0, 7, { 33 }, { generator = g })
  g:set_state(s)
  T.truthy(identical(tide.randn(1000, { generator = g }), a))
  T.truthy(identical(tide.randint(0, 7, { 33 }, { generator = g }), a2))
  -- a state survives a round trip through plain numbers, and a fresh generator can take it
  local h = tide.Generator(1):set_state({ seed = s.seed, offset = s.offset })
  T.truthy(identical(tide.randn(1000, { generator = h }), a))
  -- clone is independent
  local c = g:clone()
  T.truthy(identical(tide.rand(5, { generator = c }), tide.rand(5, { generator = g })))
  -- the default generator too
  tide.manual_seed(3)
  tide.rand(7)
  local st = tide.get_rng_state()
  local x = tide.rand(100)
  tide.set_rng_state(st)
  T.truthy(identical(tide.rand(100), x))
  T.truthy(tostring(g):find('tide.Generator(seed=2024', 1, true))
end)

T.test('rand: range, mean and variance on 1M samples', function()
  local n = 1000000
  for _, dt in ipairs { 'f32', 'f64' } do
    tide.manual_seed(11)
    local mean, var, lo, hi = moments(tide.rand(n, { dtype = dt }))
    T.truthy(lo >= 0 and hi < 1, dt .. ' values in [0, 1)')
    -- sd of the mean sqrt(1/12/n) = 2.9e-4; of the variance sqrt((1/80 - 1/144)/n) = 7.5e-5
    T.truthy(math.abs(mean - 0.5) < 6 * 2.9e-4, dt .. ' mean ' .. mean)
    T.truthy(math.abs(var - 1 / 12) < 6 * 7.5e-5, dt .. ' variance ' .. var)
  end
  local t = tide.empty(200000, { dtype = 'f64' }):uniform_(-3, 5)
  local mean, var, lo, hi = moments(t)
  T.truthy(lo >= -3 and hi < 5 and lo < -2.99 and hi > 4.99)
  T.truthy(math.abs(mean - 1) < 6 * 8 * math.sqrt(1 / 12 / 200000))
  T.truthy(math.abs(var - 64 / 12) < 6 * 64 * math.sqrt((1 / 80 - 1 / 144) / 200000))
  -- the reduced types are the f32 stream rounded, kept below high
  for _, dt in ipairs { 'bf16', 'f16' } do
    tide.manual_seed(4)
    local r = tide.rand(100000, { dtype = dt })
    local _, _, l, h = moments(r)
    T.truthy(l >= 0 and h < 1, dt .. ' values in [0, 1) after rounding')
    tide.manual_seed(4)
    local ref = tide.rand(100000):to(dt)
    local pr, _, k1 = f64_values(r)
    local pf, _, k2 = f64_values(ref)
    local below = dt == 'bf16' and 1 - 2 ^ -8 or 1 - 2 ^ -11
    for i = 0, 99999 do
      if pf[i] == 1 then T.eq(pr[i], below) else T.eq(pr[i], pf[i]) end
    end
    local _ = { k1, k2 }
  end
end)

T.test('randn: mean 0, std 1 on 1M samples; normal_ shifts and scales', function()
  local n = 1000000
  for _, dt in ipairs { 'f32', 'f64' } do
    tide.manual_seed(12)
    local t = tide.randn(n, { dtype = dt })
    local mean, var = moments(t)
    -- sd of the mean 1/sqrt(n) = 1e-3; of the variance sqrt(2/n) = 1.42e-3
    T.truthy(math.abs(mean) < 6e-3, dt .. ' mean ' .. mean)
    T.truthy(math.abs(var - 1) < 6 * 1.42e-3, dt .. ' variance ' .. var)
    -- the fraction inside one sigma is 0.682689...
    local p, _, keep = f64_values(t)
    local inside = 0
    for i = 0, n - 1 do if math.abs(p[i]) < 1 then inside = inside + 1 end end
    local _ = keep
    T.truthy(math.abs(inside / n - 0.682689) < 6 * math.sqrt(0.6827 * 0.3173 / n), dt .. ' P(|z|<1) ' .. inside / n)
  end
  local t = tide.empty(100000, { dtype = 'f64' }):normal_(3, 2)
  local mean, var = moments(t)
  T.truthy(math.abs(mean - 3) < 6 * 2 / math.sqrt(100000))
  T.truthy(math.abs(var - 4) < 6 * 4 * math.sqrt(2 / 100000))
  -- bf16/f16 normals are exactly the f32 ones rounded
  tide.manual_seed(8)
  local h = tide.randn(4096, { dtype = 'bf16' })
  tide.manual_seed(8)
  T.truthy(identical(h, tide.randn(4096):to('bf16')))
  T.truthy(identical(tide.zeros(5):normal_(2, 0), tide.full({ 5 }, 2.0, { dtype = 'f32' })), 'std 0 gives the mean')
end)

T.test('randint: bounds, every value hit, uniform counts', function()
  tide.manual_seed(13)
  local t = tide.randint(-3, 7, { 100000 })
  T.eq(t:dtype(), 'i64')
  local c = counts(t)
  local probs, shifted = {}, {}
  for v = -3, 6 do
    T.truthy((c[v] or 0) > 0, 'value ' .. v .. ' drawn')
    probs[#probs + 1] = 0.1
    shifted[v + 3] = c[v]
  end
  for v in pairs(c) do T.truthy(v >= -3 and v < 7, 'value ' .. v .. ' in range') end
  -- 9 degrees of freedom: P(chi2 > 60) < 1e-8
  T.truthy(chi2(shifted, probs, 100000) < 60)
  -- randint(high, shape) and dtypes
  local u = tide.randint(256, { 5000 }, { dtype = 'u8' })
  T.eq(u:dtype(), 'u8')
  local cu = counts(u)
  T.truthy(cu[0] and cu[255], 'u8 reaches both ends')
  T.eq(tide.randint(0, 2, { 10 }, { dtype = 'bool' }):dtype(), 'bool')
  T.eq(tide.randint(5, 6, { 3 }, { dtype = 'i32' }):tolist()[3], 5)
  local f = tide.randint(-4, 4, { 2, 3 }, { dtype = 'f32' })
  T.same(f:shape(), { 2, 3 })
  for _, row in ipairs(f:tolist()) do for _, v in ipairs(row) do T.truthy(v % 1 == 0 and v >= -4 and v < 4) end end
  -- a range wider than 2^32 uses 128-bit draws and stays inside
  local w = tide.randint(-2 ^ 62, 2 ^ 62, { 1000 })
  local lo, hi = 0, 0
  local wp = ffi.cast('int64_t*', w:data_ptr())
  for i = 0, 999 do
    local v = wp[i]
    T.truthy(v >= -2 ^ 62 and v < 2 ^ 62)
    if v < 0 then lo = lo + 1 else hi = hi + 1 end
  end
  T.truthy(lo > 400 and hi > 400, 'both halves of a wide range')
  -- random_ fills in place, default bounds follow the dtype
  local r = tide.zeros(3, 4):random_(10, 20)
  for _, row in ipairs(r:tolist()) do for _, v in ipairs(row) do T.truthy(v >= 10 and v < 20 and v % 1 == 0) end end
  local b = tide.zeros(1000, { dtype = 'u8' }):random_()
  local _, _, blo, bhi = moments(b)
  T.truthy(blo >= 0 and bhi <= 255 and bhi > 200)
  T.eq(tide.randint_like(tide.zeros(2, 2, { dtype = 'i32' }), 4):dtype(), 'i32')
end)

T.test('multinomial with replacement follows the weights', function()
  tide.manual_seed(14)
  local w = { 1, 2, 3, 4, 0 }
  local probs = tide.tensor(w, { dtype = 'f32' })
  local n = 200000
  local s = probs:multinomial(n, true)
  T.same(s:shape(), { n })
  T.eq(s:dtype(), 'i64')
  local c = counts(s)
  T.eq(c[4], nil, 'a zero weight is never drawn')
  -- 3 degrees of freedom: P(chi2 > 50) < 1e-10
  T.truthy(chi2(c, { 0.1, 0.2, 0.3, 0.4, 0 }, n) < 50)
  -- 2-d: one distribution per row
  local rows = tide.tensor({ { 0, 0, 1 }, { 5, 5, 0 } }, { dtype = 'f64' })
  local r = tide.multinomial(rows, 1000, { replacement = true })
  T.same(r:shape(), { 2, 1000 })
  local rl = r:tolist()
  for _, v in ipairs(rl[1]) do T.eq(v, 2) end
  local ones = 0
  for _, v in ipairs(rl[2]) do T.truthy(v == 0 or v == 1); ones = ones + v end
  T.truthy(ones > 400 and ones < 600)
  -- a single nonzero weight is drawn every time, and rows may be empty
  local single = tide.tensor({ 0, 0, 0, 7 }, { dtype = 'f32' }):multinomial(5, true)
  T.same(single:tolist(), { 3, 3, 3, 3, 3 })
  T.same(tide.zeros(0, 3):multinomial(4, true):shape(), { 0, 4 })
  T.same(tide.ones(2, 3):multinomial(0):shape(), { 2, 0 })
end)

T.test('multinomial without replacement: distinct draws with the right law', function()
  tide.manual_seed(15)
  local s = tide.tensor({ 1, 1, 1, 1, 1, 1, 1, 1, 0, 1 }, { dtype = 'f32' }):multinomial(9)
  local seen = {}
  for _, v in ipairs(s:tolist()) do
    T.truthy(not seen[v], 'index ' .. v .. ' drawn twice')
    T.truthy(v ~= 8, 'the zero weight is never drawn')
    seen[v] = true
  end
  -- many identical rows: the first draw follows w/sum, the second the
  -- sequential law sum_i p_i p_j / (1 - p_i)
  local w = { 1, 2, 3, 4 }
  local rows = 40000
  local probs = tide.tensor(w, { dtype = 'f64' }):view(1, 4):expand(rows, 4)
  local r = probs:multinomial(2)
  T.same(r:shape(), { rows, 2 })
  local p, _, keep = f64_values(r)
  local first, second = {}, {}
  for i = 0, rows - 1 do
    local a, b = p[2 * i], p[2 * i + 1]
    T.truthy(a ~= b)
    first[a] = (first[a] or 0) + 1
    second[b] = (second[b] or 0) + 1
  end
  local _ = keep
  local pf, ps = {}, {}
  for j = 1, 4 do pf[j] = w[j] / 10 end
  for j = 1, 4 do
    local q = 0
    for i = 1, 4 do if i ~= j then q = q + pf[i] * pf[j] / (1 - pf[i]) end end
    ps[j] = q
  end
  T.truthy(chi2(first, pf, rows) < 50, 'first draw')
  T.truthy(chi2(second, ps, rows) < 50, 'second draw')
  -- drawing every nonzero category gives a permutation of them
  local all = tide.tensor({ 0.5, 0, 2, 9 }, { dtype = 'f32' }):multinomial(3):tolist()
  table.sort(all)
  T.same(all, { 0, 2, 3 })
end)

T.test('randperm is a reproducible uniform permutation', function()
  tide.manual_seed(16)
  local p = tide.randperm(1000)
  T.eq(p:dtype(), 'i64')
  local l = p:tolist()
  table.sort(l)
  for i = 1, 1000 do T.eq(l[i], i - 1) end
  T.same(tide.randperm(0):shape(), { 0 })
  T.same(tide.randperm(1):tolist(), { 0 })
  T.eq(tide.randperm(5, { dtype = 'i32' }):dtype(), 'i32')
  -- where 0 lands across many permutations of 5 is uniform: 4 dof, P(chi2 > 45) < 1e-8
  local c = {}
  local g = tide.Generator(3)
  for _ = 1, 5000 do
    local q = tide.randperm(5, { generator = g }):tolist()
    for pos, v in ipairs(q) do if v == 0 then c[pos - 1] = (c[pos - 1] or 0) + 1 end end
  end
  T.truthy(chi2(c, { 0.2, 0.2, 0.2, 0.2, 0.2 }, 5000) < 45)
end)

T.test('results do not depend on the number of threads', function()
  local function draw()
    tide.manual_seed(17)
    return {
      tide.rand(300001), tide.randn(200003, { dtype = 'f64' }), tide.randint(0, 1000, { 150001 }),
      tide.rand(100000, { dtype = 'bf16' }),
      tide.tensor({ 1, 2, 3 }, { dtype = 'f32' }):multinomial(100001, true),
      tide.rand(64, 500):multinomial(20),
      tide.empty(700, 500):t():uniform_(),
    }
  end
  local one = with_threads(1, draw)
  for _, n in ipairs { 2, 3, 8 } do
    local many = with_threads(n, draw)
    for i = 1, #one do T.truthy(identical(one[i], many[i]), ('result %d with %d threads'):format(i, n)) end
  end
end)

T.test('non-contiguous outputs get the values of a contiguous fill in logical order', function()
  for _, fill in ipairs {
    function(t) return t:uniform_() end,
    function(t) return t:normal_() end,
    function(t) return t:random_(0, 100000) end,
  } do
    tide.manual_seed(18)
    local base = tide.zeros(300, 400, { dtype = 'f64' })
    local view = base:t()                       -- [400, 300], strides {1, 400}
    fill(view)
    tide.manual_seed(18)
    local ref = fill(tide.zeros(400, 300, { dtype = 'f64' }))
    T.truthy(identical(view, ref), 'transposed view')
    -- a strided slice: every other column of a wider tensor
    tide.manual_seed(18)
    local wide = tide.zeros(100, 60, { dtype = 'f64' })
    local cols = wide:view(100, 30, 2):select(3, 1)
    fill(cols)
    tide.manual_seed(18)
    T.truthy(identical(cols, fill(tide.zeros(100, 30, { dtype = 'f64' }))), 'strided slice')
    -- the untouched half stays zero
    local _, _, lo, hi = moments(wide:view(100, 30, 2):select(3, 2))
    T.truthy(lo == 0 and hi == 0)
  end
end)

T.test('rand_like / randn_like follow the template', function()
  local t = tide.zeros(3, 4, { dtype = 'f64' })
  local r = tide.rand_like(t)
  T.same(r:shape(), { 3, 4 })
  T.eq(r:dtype(), 'f64')
  T.eq(tide.randn_like(t, { dtype = 'bf16' }):dtype(), 'bf16')
  T.raises(function() return tide.rand_like(tide.zeros(2, { dtype = 'i64' })) end, 'floating point')
  local b = tide.zeros(1000):bernoulli_(0.25)
  local mean, _, lo, hi = moments(b)
  T.truthy(lo == 0 and hi == 1 and math.abs(mean - 0.25) < 6 * math.sqrt(0.25 * 0.75 / 1000))
end)

T.test('bad arguments raise clear errors', function()
  T.raises(function() return tide.randint(5, 5, { 2 }) end, 'low < high')
  T.raises(function() return tide.randint(5, 2, { 2 }) end, 'low=5, high=2')
  T.raises(function() return tide.randint(0, { 2 }) end, 'low < high')
  T.raises(function() return tide.randint(0.5, 3, { 2 }) end, 'low must be an integer')
  T.raises(function() return tide.randint(0, 10) end, 'expected a shape')
  T.raises(function() return tide.randint(0, 10, { -2 }) end, 'negative size')
  T.raises(function() return tide.randint(0, 300, { 2 }, { dtype = 'u8' }) end, 'does not fit in u8')
  T.raises(function() return tide.randint(0, 2 ^ 40, { 2 }, { dtype = 'f32' }) end, 'does not fit in f32')
  T.raises(function() return tide.rand(2, { dtype = 'i64' }) end, 'floating point')
  T.raises(function() return tide.randn(2, { dtype = 'i32' }) end, 'floating point')
  T.raises(function() return tide.rand(2, { dtype = 'f8' }) end, 'unknown dtype')
  T.raises(function() return tide.rand(-1) end, 'negative')
  T.raises(function() return tide.rand(2, { generator = 42 }) end, 'tide.Generator')
  T.raises(function() return tide.zeros(2, { dtype = 'i64' }):uniform_() end, 'uniform_: uniform values need a floating-point tensor')
  T.raises(function() return tide.zeros(2):uniform_(1, 0) end, 'low < high')
  T.raises(function() return tide.zeros(2):uniform_(0, 1 / 0) end, 'finite')
  T.raises(function() return tide.zeros(2):uniform_('a') end, 'low must be a number')
  T.raises(function() return tide.zeros(2):normal_(0, -1) end, 'std must be')
  T.raises(function() return tide.zeros(2):normal_(0 / 0, 1) end, 'mean must be finite')
  T.raises(function() return tide.zeros(2, { dtype = 'u8' }):normal_() end, 'floating-point')
  T.raises(function() return tide.zeros(2, { dtype = 'u8' }):random_(0, 1000) end, 'does not fit in u8')
  T.raises(function() return tide.zeros(1, 3):expand(4, 3):uniform_() end, 'repeats elements')
  T.raises(function() return tide.zeros(2):bernoulli_(1.5) end, 'p must be in [0, 1]')
  T.raises(function() return tide.zeros(3):view(1, 3):expand(2, 3):bernoulli_() end, 'repeats elements')
  -- seeds
  T.raises(function() tide.manual_seed(1.5) end, 'seed must be an integer')
  T.raises(function() tide.manual_seed('7') end, 'seed must be an integer')
  T.raises(function() tide.manual_seed(2 ^ 60) end, 'up to 2^53')
  T.raises(function() tide.Generator(0 / 0) end, 'seed must be an integer')
  T.raises(function() tide.Generator(1):set_state({ seed = 1 }) end, 'offset must be an integer')
  T.raises(function() tide.Generator(1):set_state(5) end, 'expected a table')
  T.raises(function() tide.set_rng_state({ seed = -0.5, offset = 0 }) end, 'seed must be an integer')
  -- multinomial
  local p = tide.tensor({ 1, 2, 3 }, { dtype = 'f32' })
  T.raises(function() return p:multinomial(-1) end, 'must be >= 0')
  T.raises(function() return p:multinomial(1.5) end, 'must be an integer')
  T.raises(function() return p:multinomial(4) end, 'cannot draw 4 samples without replacement from 3 nonzero weights')
  T.raises(function() return tide.tensor({ 1, -2, 3 }, { dtype = 'f32' }):multinomial(1) end, 'not finite and >= 0')
  T.raises(function() return tide.tensor({ 1, 0 / 0 }, { dtype = 'f32' }):multinomial(1) end, 'not finite and >= 0')
  T.raises(function() return tide.tensor({ 1, 1 / 0 }, { dtype = 'f64' }):multinomial(1) end, 'not finite and >= 0')
  T.raises(function() return tide.tensor({ 0, 0 }, { dtype = 'f32' }):multinomial(1, true) end, 'all weights are zero')
  T.raises(function() return tide.tensor({ { 1, 1 }, { 0, 0 } }, { dtype = 'f32' }):multinomial(1, true) end, 'row 2 of 2')
  T.raises(function() return tide.tensor({ 1, 2 }):multinomial(1) end, 'floating-point')
  T.raises(function() return tide.zeros(2, 2, 2):multinomial(1) end, '1-d or 2-d')
  T.raises(function() return tide.zeros(0):multinomial(1) end, 'no categories')
  T.raises(function() return p:multinomial(1, 'yes') end, 'replacement must be a boolean')
  T.raises(function() return tide.multinomial(5, 1) end, 'expected a tensor')
  T.raises(function() return tide.randperm(-1) end, 'non-negative integer')
  T.raises(function() return tide.randperm(300, { dtype = 'u8' }) end, 'cannot hold')
  -- a failed call leaves the stream where it was
  local g = tide.Generator(1)
  pcall(function() return tide.zeros(2):uniform_(1, 0, { generator = g }) end)
  pcall(function() return p:multinomial(4, { generator = g }) end)
  T.eq(g:get_state().offset, 0)
end)

T.test('errors point at the caller', function()
  -- (no tail calls here: they would drop the frame the message points at)
  local err = T.raises(function() local _ = tide.randint(5, 5, { 2 }) end, 'low < high')
  T.truthy(err:find('test_random.lua', 1, true), 'message names the calling file: ' .. err)
  err = T.raises(function() local _ = tide.rand(2, { dtype = 'i64' }) end)
  T.truthy(err:find('test_random.lua', 1, true), err)
  err = T.raises(function() local _ = tide.tensor({ 1, -2 }, { dtype = 'f32' }):multinomial(1) end)
  T.truthy(err:find('test_random.lua', 1, true), err)
  err = T.raises(function() local _ = tide.Generator(1.5) end)
  T.truthy(err:find('test_random.lua', 1, true), err)
  err = T.raises(function() local _ = tide.zeros(2):uniform_(1, 0) end)
  T.truthy(err:find('test_random.lua', 1, true), err)
  err = T.raises(function() local _ = tide.randint(0, { -1 }) end)
  T.truthy(err:find('test_random.lua', 1, true), err)
  err = T.raises(function() tide.manual_seed(0.5) end)
  T.truthy(err:find('test_random.lua', 1, true), err)
end)

-- randperm and bernoulli_ moved from Lua loops over tensor memory to C ops
-- (tide_randperm, tide_bernoulli_); these values were drawn by the Lua
-- versions, so the same seeds keep giving the same numbers.
T.test('randperm and bernoulli_ keep the values of their Lua versions', function()
  tide.manual_seed(42)
  T.same(tide.randperm(10):tolist(), { 1, 0, 9, 4, 8, 2, 3, 6, 5, 7 })
  local q = tide.randperm(7, { dtype = 'i32' })
  T.eq(q:dtype(), 'i32')
  T.same(q:tolist(), { 1, 2, 0, 3, 4, 5, 6 })
  local g = tide.Generator(123)
  T.same(tide.randperm(12, { generator = g }):tolist(), { 4, 3, 7, 2, 10, 5, 8, 11, 1, 6, 9, 0 })
  T.eq(g:get_state().offset, 11)  -- n - 1 draws
  tide.manual_seed(7)
  T.same(tide.zeros(13):bernoulli_(0.3):tolist(), { 0, 1, 0, 0, 1, 0, 1, 1, 0, 0, 0, 0, 0 })
  local b = tide.zeros(2, 5, { dtype = 'u8' }):bernoulli_()
  T.same(b:view(-1):tolist(), { 1, 0, 0, 1, 1, 0, 0, 1, 0, 1 })
  -- a transposed view is drawn in its own logical order
  local x = tide.zeros(4, 3, { dtype = 'f64' })
  x:t():bernoulli_(0.7)
  T.same(x:view(-1):tolist(), { 1, 1, 1, 1, 1, 1, 0, 1, 0, 0, 1, 1 })
  local bb = tide.zeros(6, { dtype = 'bool' }):bernoulli_(0.5, { generator = tide.Generator(5) })
  T.same(bb:to('i64'):tolist(), { 1, 0, 1, 1, 0, 1 })
  T.eq(tide.get_rng_state().offset, 18)  -- one f64 uniform per element, two per block
  -- larger draws, summarised
  tide.manual_seed(2024)
  local s = 0
  for i, v in ipairs(tide.randperm(1000):tolist()) do s = s + i * v end
  T.eq(s, 246964992)
  s = 0
  for i, v in ipairs(tide.zeros(1001):bernoulli_(0.25):tolist()) do s = s + i * v end
  T.eq(s, 131764)
  T.eq(tide.get_rng_state().offset, 1500)
end)

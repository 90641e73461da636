-- Elementwise ops against plain f64 references computed here in Lua, for
-- every op, the main dtypes, broadcasting, strided views, scalars on either
-- side, in-place targets, promotion, edge values and bad arguments.
local T = require 'tide.testing'
local ffi = require 'ffi'

local rnd = T.lcg(20240601)
local DTYPES = { 'f32', 'f64', 'i32', 'i64', 'bf16' }
local FLOAT = { f32 = true, f64 = true, bf16 = true, f16 = true }
local TOL = {
  f32 = { rtol = 1e-5, atol = 1e-6 }, f64 = { rtol = 1e-12, atol = 1e-12 },
  bf16 = { rtol = 1e-2, atol = 1e-2 }, f16 = { rtol = 2e-3, atol = 2e-3 },
  i32 = { rtol = 0, atol = 0 }, i64 = { rtol = 0, atol = 0 }, u8 = { rtol = 0, atol = 0 },
  bool = { rtol = 0, atol = 0 },
}

-- Row-major values of t as f64 numbers (bools as 0/1).
local function vals(t) return (T.flatten(t:to('f64'))) end

local function map1(xs, f)
  local r = {}
  for i, x in ipairs(xs) do r[i] = f(x) end
  return r
end

local function map2(xs, ys, f)
  local r = {}
  for i = 1, #xs do r[i] = f(xs[i], ys[i]) end
  return r
end

-- One random value of a kind, suitable for dtype dt.
local function draw(kind, dt)
  local u = rnd()
  local int = not FLOAT[dt]
  if kind == 'pos' then return int and 1 + math.floor(u * 9) or 0.1 + 4.9 * u end
  if kind == 'nonzero' then
    local s = rnd() < 0.5 and -1 or 1
    return s * (int and 1 + math.floor(u * 9) or 0.5 + 2.5 * u)
  end
  if kind == 'exp' then return int and math.floor(u * 4) or -2 + 4 * u end
  if kind == 'tie' then return ({ -1, 0, 1, 2 })[1 + math.floor(u * 4)] end
  if kind == 'half' then return int and math.floor(u * 19) - 9 or (math.floor(u * 21) - 10) / 2 end
  return int and math.floor(u * 19) - 9 or -3 + 6 * u
end

local function rand_values(n, kind, dt)
  local r = {}
  for i = 1, n do r[i] = draw(kind, dt) end
  return r
end

-- A tensor of shape with random values of `kind`.
local function rand(shape, kind, dt)
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  local t = tide.tensor(rand_values(n, kind, dt), { dtype = dt })
  if #shape == 0 then return t:view({}) end
  return t:view(shape)
end

-- The same values in several layouts of shape [3, 4]: contiguous, a
-- transpose, a narrow and an expand (random each time).
local function layouts(kind, dt)
  return {
    contiguous = function() return rand({ 3, 4 }, kind, dt) end,
    transposed = function() return rand({ 4, 3 }, kind, dt):t() end,
    narrowed = function() return rand({ 3, 7 }, kind, dt):narrow(2, 2, 4) end,
    expanded = function() return rand({ 3, 1 }, kind, dt):expand(3, 4) end,
  }
end

local function round_half_even(x)
  local f = math.floor(x)
  local d = x - f
  if d > 0.5 then return f + 1 elseif d < 0.5 then return f end
  return f % 2 == 0 and f or f + 1
end

local function sign(x) return x > 0 and 1 or x < 0 and -1 or 0 end
local function b01(c) return c and 1 or 0 end

-- name, reference, data kind, float-only (integer input gives f32)
local UNARY = {
  { 'neg', function(x) return -x end },
  { 'abs', math.abs },
  { 'exp', math.exp, nil, true },
  { 'log', math.log, 'pos', true },
  { 'sqrt', math.sqrt, 'pos', true },
  { 'rsqrt', function(x) return 1 / math.sqrt(x) end, 'pos', true },
  { 'tanh', math.tanh, nil, true },
  { 'sigmoid', function(x) return 1 / (1 + math.exp(-x)) end, nil, true },
  { 'relu', function(x) return x > 0 and x or 0 end },
  { 'gelu', function(x) return 0.5 * x * (1 + math.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ^ 3))) end, nil, true },
  { 'sin', math.sin, nil, true },
  { 'cos', math.cos, nil, true },
  { 'floor', math.floor, 'half' },
  { 'ceil', math.ceil, 'half' },
  { 'round', round_half_even, 'half' },
  { 'sign', sign },
  { 'log1p', function(x) return math.log(1 + x) end, 'pos', true },
  { 'expm1', function(x) return math.exp(x) - 1 end, nil, true },
  { 'square', function(x) return x * x end },
  { 'reciprocal', function(x) return 1 / x end, 'nonzero', true },
  { 'isnan', function(x) return b01(x ~= x) end },
  { 'isinf', function(x) return b01(math.abs(x) == math.huge) end },
  { 'logical_not', function(x) return b01(x == 0) end, 'tie' },
}
local PREDICATE = { isnan = true, isinf = true, logical_not = true, eq = true, ne = true, lt = true,
                    le = true, gt = true, ge = true, logical_and = true, logical_or = true, logical_xor = true }

local function unary_dtype(name, dt, float_only)
  if PREDICATE[name] then return 'bool' end
  if float_only and not FLOAT[dt] then return 'f32' end
  return dt
end

T.test('unary ops match the f64 reference in every dtype and layout', function()
  for _, u in ipairs(UNARY) do
    local name, ref, kind, float_only = u[1], u[2], u[3], u[4]
    for _, dt in ipairs(DTYPES) do
      local odt = unary_dtype(name, dt, float_only)
      for lname, make in pairs(layouts(kind, dt)) do
        local x = make()
        local y = x[name](x)
        local what = ('%s %s %s'):format(name, dt, lname)
        T.eq(y:dtype(), odt, what)
        T.same(y:shape(), { 3, 4 }, what)
        T.close(vals(y), map1(vals(x), ref), TOL[odt == 'bool' and 'bool' or odt], what)
      end
      -- 0-d
      local x = rand({}, kind, dt)
      local y = tide[name](x)
      T.eq(y:dim(), 0)
      T.close(vals(y), map1(vals(x), ref), TOL[odt], name .. ' 0-d ' .. dt)
    end
  end
end)

T.test('unary in-place ops write through non-contiguous views', function()
  for _, u in ipairs(UNARY) do
    local name, ref, kind = u[1], u[2], u[3]
    local iname = name .. '_'
    if tide.Tensor[iname] then
      for _, dt in ipairs { 'f32', 'f64', 'bf16' } do
        local base = rand({ 4, 3 }, kind, dt)
        local before = vals(base:t())
        local v = base:t()
        T.truthy(v[iname](v) == v, iname .. ' returns its target')
        T.close(vals(base:t()), map1(before, ref), TOL[dt], iname .. ' ' .. dt .. ' transposed')
        -- a narrow view: the columns outside it stay untouched
        base = rand({ 3, 5 }, kind, dt)
        local all = vals(base)
        local w = base:narrow(2, 2, 3)
        w[iname](w)
        local now = vals(base)
        for i = 1, 15 do
          local col = (i - 1) % 5 + 1
          local want = (col >= 2 and col <= 4) and ref(all[i]) or all[i]
          T.close({ now[i] }, { want }, TOL[dt], iname .. ' ' .. dt .. ' narrow element ' .. i)
        end
      end
    end
  end
end)

-- name, reference, kind of a, kind of b, scalar used as b, scalar used as a
local BINARY = {
  { 'add', function(a, b) return a + b end, nil, nil, 1.5, 2.25 },
  { 'sub', function(a, b) return a - b end, nil, nil, 1.5, 2.25 },
  { 'mul', function(a, b) return a * b end, nil, nil, -1.5, 2.5 },
  { 'div', function(a, b) return a / b end, nil, 'nonzero', -1.5, 3.5 },
  { 'pow', function(a, b) return a ^ b end, 'pos', 'exp', 2, 1.5 },
  { 'maximum', math.max, 'tie', 'tie', 0.5, 0.5 },
  { 'minimum', math.min, 'tie', 'tie', 0.5, 0.5 },
  { 'eq', function(a, b) return b01(a == b) end, 'tie', 'tie', 1, 1 },
  { 'ne', function(a, b) return b01(a ~= b) end, 'tie', 'tie', 1, 1 },
  { 'lt', function(a, b) return b01(a < b) end, 'tie', 'tie', 1, 1 },
  { 'le', function(a, b) return b01(a <= b) end, 'tie', 'tie', 1, 1 },
  { 'gt', function(a, b) return b01(a > b) end, 'tie', 'tie', 1, 1 },
  { 'ge', function(a, b) return b01(a >= b) end, 'tie', 'tie', 1, 1 },
  { 'logical_and', function(a, b) return b01(a ~= 0 and b ~= 0) end, 'tie', 'tie', 0, 2 },
  { 'logical_or', function(a, b) return b01(a ~= 0 or b ~= 0) end, 'tie', 'tie', 0, 2 },
  { 'logical_xor', function(a, b) return b01((a ~= 0) ~= (b ~= 0)) end, 'tie', 'tie', 0, 2 },
  { 'fmod', math.fmod, nil, 'nonzero', -1.25, 7.5 },
}

local function binary_dtype(name, dt)
  if PREDICATE[name] then return 'bool' end
  if name == 'div' and not FLOAT[dt] then return 'f32' end
  return dt
end

-- Checks r == ref(a, b) elementwise after broadcasting a and b to r's shape.
local function check_binary(r, a, b, ref, odt, shape, what)
  T.eq(r:dtype(), odt, what)
  T.same(r:shape(), shape, what)
  local av, bv
  if type(a) ~= 'number' then av = vals(a:expand(shape)) end
  if type(b) ~= 'number' then bv = vals(b:expand(shape)) end
  local want = {}
  for i = 1, #(av or bv) do
    want[i] = ref(av and av[i] or a, bv and bv[i] or b)
  end
  T.close(vals(r), want, TOL[odt], what)
end

T.test('binary ops match the f64 reference: layouts, broadcasting, 0-d, scalars', function()
  for _, op in ipairs(BINARY) do
    local name, ref, ka, kb = op[1], op[2], op[3], op[4]
    for _, dt in ipairs(DTYPES) do
      local odt = binary_dtype(name, dt)
      local la, lb = layouts(ka, dt), layouts(kb, dt)
      -- every layout of a with every layout of b
      for an, ma in pairs(la) do
        for bn, mb in pairs(lb) do
          local a, b = ma(), mb()
          check_binary(a[name](a, b), a, b, ref, odt, { 3, 4 }, ('%s %s %s,%s'):format(name, dt, an, bn))
        end
      end
      -- [3,1] with [4], and [4] with [3,1]
      local a, b = rand({ 3, 1 }, ka, dt), rand({ 4 }, kb, dt)
      check_binary(a[name](a, b), a, b, ref, odt, { 3, 4 }, name .. ' broadcast ' .. dt)
      a, b = rand({ 4 }, ka, dt), rand({ 3, 1 }, kb, dt)
      check_binary(tide[name](a, b), a, b, ref, odt, { 3, 4 }, name .. ' broadcast reversed ' .. dt)
      -- a 0-d tensor on either side
      a, b = rand({ 2, 3 }, ka, dt), rand({}, kb, dt)
      check_binary(a[name](a, b), a, b, ref, odt, { 2, 3 }, name .. ' 0-d right ' .. dt)
      a, b = rand({}, ka, dt), rand({ 2, 3 }, kb, dt)
      check_binary(a[name](a, b), a, b, ref, odt, { 2, 3 }, name .. ' 0-d left ' .. dt)
      -- Lua numbers on either side (integral for integer dtypes so the dtype stays)
      local sb, sa = op[5], op[6]
      if not FLOAT[dt] then sb, sa = math.floor(sb), math.floor(sa) end
      if name == 'fmod' and not FLOAT[dt] then sb = -2 end
      a = rand({ 4, 3 }, ka, dt):t()
      check_binary(a[name](a, sb), a, sb, ref, odt, { 3, 4 }, name .. ' scalar right ' .. dt)
      b = rand({ 3, 7 }, kb, dt):narrow(2, 3, 4)
      check_binary(tide[name](sa, b), sa, b, ref, odt, { 3, 4 }, name .. ' scalar left ' .. dt)
    end
  end
end)

T.test('binary in-place ops: non-contiguous targets, broadcasting, aliasing', function()
  for _, op in ipairs(BINARY) do
    local name, ref, ka, kb = op[1], op[2], op[3], op[4]
    local iname = name .. '_'
    for _, dt in ipairs { 'f32', 'f64', 'i32', 'i64', 'bf16' } do
      -- transposed target, broadcast [4] operand
      local base = rand({ 4, 3 }, ka, dt)
      local target = base:t()
      local a0 = vals(target)
      local b = rand({ 4 }, kb, dt)
      local bv = vals(b:expand(3, 4))
      T.truthy(target[iname](target, b) == target)
      local want = map2(a0, bv, ref)
      -- the result is stored in the target's dtype
      local tdt = PREDICATE[name] and dt or binary_dtype(name, dt)
      if tdt ~= dt then  -- integer true division truncates back into the integer target
        want = map1(want, function(v) return v < 0 and math.ceil(v) or math.floor(v) end)
      end
      T.close(vals(base:t()), want, TOL[dt], iname .. ' ' .. dt)
      -- a scalar
      local t = rand({ 3, 7 }, ka, dt):narrow(2, 2, 4)
      local s = FLOAT[dt] and op[5] or math.floor(op[5])
      if name == 'fmod' and not FLOAT[dt] then s = 3 end
      local before = vals(t)
      t[iname](t, s)
      want = map1(before, function(x) return ref(x, s) end)
      if tdt ~= dt then want = map1(want, function(v) return v < 0 and math.ceil(v) or math.floor(v) end) end
      T.close(vals(t), want, TOL[dt], iname .. ' scalar ' .. dt)
    end
  end
  -- an operand that overlaps the target in another layout reads the old values
  local x = rand({ 4, 4 }, nil, 'f32')
  local want = vals(x + x:t())
  x:add_(x:t())
  T.close(x, tide.tensor(want):view(4, 4))
  local y = tide.arange(5):float()
  y:narrow(1, 2, 4):add_(y:narrow(1, 1, 4))
  T.same(y:tolist(), { 0, 1, 3, 5, 7 })
  -- the same view on both sides is fine
  local z = tide.tensor({ 1, 2, 3 }, { dtype = 'f32' })
  z:mul_(z)
  T.same(z:tolist(), { 1, 4, 9 })
end)

T.test('add and sub take {alpha=}', function()
  local a = tide.tensor({ 1, 2, 3 }, { dtype = 'f32' })
  local b = tide.tensor({ 10, 20, 30 }, { dtype = 'f32' })
  T.close(a:add(b, { alpha = 2 }), { 21, 42, 63 })
  T.close(a:sub(b, { alpha = 0.5 }), { -4, -8, -12 })
  T.close(a:add(3, { alpha = 2 }), { 7, 8, 9 })
  T.close(tide.add(a, b, { alpha = -1 }), { -9, -18, -27 })
  local c = a:clone()
  c:add_(b, { alpha = 3 })
  T.close(c, { 31, 62, 93 })
  c:sub_(b, { alpha = 3 })
  T.close(c, { 1, 2, 3 })
end)

T.test('operators with tensors and numbers on either side', function()
  local a = tide.tensor({ { 1, 2 }, { 3, 4 } }, { dtype = 'f64' })
  local b = tide.tensor({ 10, 20 }, { dtype = 'f64' })
  T.same((a + b):tolist(), { { 11, 22 }, { 13, 24 } })
  T.same((a - b):tolist(), { { -9, -18 }, { -7, -16 } })
  T.same((a * b):tolist(), { { 10, 40 }, { 30, 80 } })
  T.same((b / a):tolist(), { { 10, 10 }, { 10 / 3, 5 } })
  T.same((a ^ 2):tolist(), { { 1, 4 }, { 9, 16 } })
  T.same((2 ^ a):tolist(), { { 2, 4 }, { 8, 16 } })
  T.same((a + 1):tolist(), { { 2, 3 }, { 4, 5 } })
  T.same((1 + a):tolist(), { { 2, 3 }, { 4, 5 } })
  T.same((1 - a):tolist(), { { 0, -1 }, { -2, -3 } })
  T.same((a - 1):tolist(), { { 0, 1 }, { 2, 3 } })
  T.same((3 * a):tolist(), { { 3, 6 }, { 9, 12 } })
  T.same((12 / a):tolist(), { { 12, 6 }, { 4, 3 } })
  T.same((a / 2):tolist(), { { 0.5, 1 }, { 1.5, 2 } })
  T.same((-a):tolist(), { { -1, -2 }, { -3, -4 } })
  T.same((-tide.tensor({ 1, -2 })):tolist(), { -1, 2 })
  T.eq((tide.tensor({ 1, 2 }) / tide.tensor({ 2, 4 })):dtype(), 'f32')
end)

T.test('dtype promotion follows PyTorch', function()
  local function t(dt) return tide.ones(2, { dtype = dt }) end
  local function z(dt) return tide.ones({}, { dtype = dt }) end
  local cases = {
    { t('f32') + t('f64'), 'f64' }, { t('f32') + t('i64'), 'f32' }, { t('i32') + t('i64'), 'i64' },
    { t('bf16') + t('f16'), 'f32' }, { t('bf16') + t('bf16'), 'bf16' }, { t('bf16') * t('f32'), 'f32' },
    { t('f16') * 2, 'f16' }, { t('u8') + t('i32'), 'i32' }, { t('bool') + t('i32'), 'i32' },
    { t('bool') + t('bool'), 'bool' }, { t('bool') * t('bool'), 'bool' }, { t('u8') + t('u8'), 'u8' },
    { t('i32') + 1.5, 'f32' }, { t('i32') + 2, 'i32' }, { 2 * t('i64'), 'i64' },
    { t('bool') + 1, 'i64' }, { t('bool') + 1.5, 'f32' }, { t('bf16') + 1.5, 'bf16' },
    { t('i64') / t('i64'), 'f32' }, { t('i32') / 2, 'f32' }, { t('bool') / t('bool'), 'f32' },
    { t('f64') / 2, 'f64' }, { t('bf16') / 2, 'bf16' }, { t('bool') + true, 'bool' },
    { t('i32') + true, 'i32' }, { t('i64') ^ 2, 'i64' }, { t('i64') ^ 0.5, 'f32' },
    { t('i32'):eq(t('f32')), 'bool' }, { t('f32'):lt(1), 'bool' }, { t('i64'):logical_and(t('f32')), 'bool' },
    -- 0-d tensors decide only when their category is higher
    { t('f32') + z('f64'), 'f32' }, { t('i32') + z('i64'), 'i32' }, { t('i64') + z('f64'), 'f64' },
    { t('bool') + z('i32'), 'i32' }, { z('f64') + z('f32'), 'f64' }, { z('i32') * t('bf16'), 'bf16' },
    -- unary
    { t('i32'):exp(), 'f32' }, { t('i64'):sqrt(), 'f32' }, { t('bool'):sigmoid(), 'f32' },
    { t('i64'):neg(), 'i64' }, { t('i32'):abs(), 'i32' }, { t('i64'):relu(), 'i64' },
    { t('i32'):floor(), 'i32' }, { t('u8'):square(), 'u8' }, { t('bf16'):exp(), 'bf16' },
    { t('f16'):tanh(), 'f16' }, { t('f32'):isnan(), 'bool' }, { t('i32'):logical_not(), 'bool' },
    -- clamp and where
    { t('i32'):clamp(0, 3), 'i32' }, { t('i32'):clamp(0.5), 'f32' }, { t('bf16'):clamp(0, 1), 'bf16' },
    { tide.where(t('bool'), t('i32'), 0.5), 'f32' }, { tide.where(t('bool'), t('f32'), 0), 'f32' },
    { tide.where(t('bool'), 1, 0), 'i64' }, { tide.where(t('bool'), 0.5, 0), 'f32' },
    { tide.where(t('bool'), t('bf16'), 0.1), 'bf16' }, { tide.where(t('bool'), t('i32'), t('f64')), 'f64' },
    { tide.where(t('bool'), t('i32'), 7), 'i32' }, { tide.where(t('bool'), true, false), 'bool' },
  }
  for i, c in ipairs(cases) do T.eq(c[1]:dtype(), c[2], 'case ' .. i) end
end)

T.test('bool arithmetic follows PyTorch', function()
  local a = tide.tensor({ true, true, false, false })
  local b = tide.tensor({ true, false, true, false })
  T.same((a + b):tolist(), { true, true, true, false })
  T.same((a * b):tolist(), { true, false, false, false })
  T.same(a:maximum(b):tolist(), { true, true, true, false })
  T.same((a + 1):tolist(), { 2, 2, 1, 1 })
  T.same(a:logical_xor(b):tolist(), { false, true, true, false })
  T.same(a:logical_not():tolist(), { false, false, true, true })
  T.raises(function() local _ = a - b end, 'sub: subtracting bool tensors is not supported')
  T.raises(function() local _ = -a end, 'neg: negating a bool tensor is not supported')
end)

T.test('integer arithmetic wraps and rejects what has no integer answer', function()
  local imax = tide.tensor({ 2147483647, -2147483648 }, { dtype = 'i32' })
  T.same((imax + 1):tolist(), { -2147483648, -2147483647 })
  T.same((imax * 2):tolist(), { -2, 0 })
  T.same(imax:neg():tolist(), { -2147483647, -2147483648 })
  T.same(imax:abs():tolist(), { 2147483647, -2147483648 })
  T.same((tide.tensor({ 2 }, { dtype = 'i32' }) ^ 31):tolist(), { -2147483648 })
  T.same((tide.tensor({ 2 }, { dtype = 'i32' }) ^ 32):tolist(), { 0 })
  T.same((tide.tensor({ 3, -2, 0, 1 }, { dtype = 'i32' }) ^ 0):tolist(), { 1, 1, 1, 1 })
  local big = tide.full({ 1 }, 2 ^ 62, { dtype = 'i64' })
  T.same((big * 2):tolist(), { -2 ^ 63 })
  T.same((big * 4):tolist(), { 0 })
  local lo = tide.full({ 2 }, -2 ^ 63, { dtype = 'i64' })
  T.same(lo:fmod(-1):tolist(), { 0, 0 })
  T.same((lo - 1):tolist(), { 2 ^ 63, 2 ^ 63 })  -- INT64_MAX, read back as the nearest double
  local u = tide.tensor({ 250, 5 }, { dtype = 'u8' })
  T.same((u + 10):tolist(), { 4, 15 })
  T.same((u - 6):tolist(), { 244, 255 })
  T.same((u + -1):tolist(), { 249, 4 })
  T.same(u:neg():tolist(), { 6, 251 })
  T.same(tide.tensor({ -7, 7, -7, 7 }):fmod(tide.tensor({ 3, -3, -3, 3 })):tolist(), { -1, 1, -1, 1 })
  -- integer fmod by zero and negative integer powers are errors, nothing is written
  local x = tide.tensor({ 5, 6, 7 }, { dtype = 'i32' })
  T.raises(function() local _ = x:fmod(tide.tensor({ 1, 0, 2 }, { dtype = 'i32' })) end, 'fmod: integer division by zero')
  T.raises(function() local _ = x:fmod(0) end, 'fmod: integer division by zero')
  T.raises(function() x:fmod_(tide.tensor({ 2, 0, 2 }, { dtype = 'i32' })) end, 'fmod_: integer division by zero')
  T.same(x:tolist(), { 5, 6, 7 })
  T.raises(function() local _ = x ^ -1 end, 'pow: integers to negative integer powers are not allowed')
  T.raises(function() local _ = x:pow(tide.tensor({ 1, -2, 0 })) end, 'negative integer powers')
  T.raises(function() local _ = tide.pow(2, tide.tensor({ 1, -1 })) end, 'negative integer powers')
  T.raises(function() local _ = tide.tensor({ 1 }, { dtype = 'u8' }):fmod(0) end, 'integer division by zero')
  -- float versions have IEEE answers
  T.same(x:fmod(0 / 0):isnan():tolist(), { true, true, true })
  T.close((x ^ -1.5), map1({ 5, 6, 7 }, function(v) return v ^ -1.5 end))
  T.close(tide.tensor({ 1, -1, 0 }) / 0, { math.huge, -math.huge, 0 / 0 })
  T.close(tide.tensor({ 1.5 }):fmod(0), { 0 / 0 })
end)

T.test('special float values', function()
  local nan, inf = 0 / 0, math.huge
  local x = tide.tensor({ nan, inf, -inf, 1, -0.5 }, { dtype = 'f32' })
  T.same(x:isnan():tolist(), { true, false, false, false, false })
  T.same(x:isinf():tolist(), { false, true, true, false, false })
  T.close(x:relu(), { nan, inf, 0, 1, 0 })
  T.close(x:sign(), { nan, 1, -1, 1, -1 })
  T.close(x:sigmoid(), { nan, 1, 0, 1 / (1 + math.exp(-1)), 1 / (1 + math.exp(0.5)) })
  T.close(x:maximum(0), { nan, inf, 0, 1, 0 })
  T.close(tide.tensor({ 0 }):minimum(tide.tensor({ nan })), { nan })
  T.close(x:clamp(-1, 2), { nan, 2, -1, 1, -0.5 })
  T.same(x:eq(x):tolist(), { false, true, true, true, true })
  T.same(x:ne(x):tolist(), { true, false, false, false, false })
  T.same(x:logical_and(1):tolist(), { true, true, true, true, true })
  local ties = tide.tensor({ 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999997 }, { dtype = 'f32' })
  T.close(ties:round(), { 0, 2, 2, 0, -2, -2, 0 })
  T.close(tide.tensor({ -1e30, 1e30 }, { dtype = 'f32' }):sigmoid(), { 0, 1 })
  T.close(tide.tensor({ -1e4 }):exp(), { 0 })
end)

T.test('clamp', function()
  local x = tide.tensor({ -3, -1, 0, 2, 5 }, { dtype = 'f32' })
  T.close(x:clamp(-1, 2), { -1, -1, 0, 2, 2 })
  T.close(x:clamp(nil, 1), { -3, -1, 0, 1, 1 })
  T.close(x:clamp(0), { 0, 0, 0, 2, 5 })
  T.close(x:clamp(0 / 0, 1), { -3, -1, 0, 1, 1 })
  T.close(x:clamp(3, 1), { 1, 1, 1, 1, 1 })  -- min > max gives max, as torch
  T.close(x:clamp_min(1), { 1, 1, 1, 2, 5 })
  T.close(x:clamp_max(1), { -3, -1, 0, 1, 1 })
  T.close(tide.clamp(x, -0.5, 0.5), { -0.5, -0.5, 0, 0.5, 0.5 })
  local i = tide.tensor({ -3, -1, 0, 2, 5 })
  T.same(i:clamp(-1, 2):tolist(), { -1, -1, 0, 2, 2 })
  T.same(i:clamp(-1e30, 1e30):tolist(), { -3, -1, 0, 2, 5 })
  T.close(i:clamp(0.5), { 0.5, 0.5, 0.5, 2, 5 })
  T.same(tide.tensor({ 0, 9, 200 }, { dtype = 'u8' }):clamp(-5, 100):tolist(), { 0, 9, 100 })
  -- tensor bounds broadcast
  local m = tide.tensor({ { 0 }, { 1 } })
  T.same(i:clamp(m, 3):tolist(), { { 0, 0, 0, 2, 3 }, { 1, 1, 1, 2, 3 } })
  -- every dtype and layout against the reference
  for _, dt in ipairs(DTYPES) do
    for lname, make in pairs(layouts(nil, dt)) do
      local t = make()
      local lo, hi = -1, 2
      local ref = map1(vals(t), function(v) return math.min(math.max(v, lo), hi) end)
      T.close(t:clamp(lo, hi), ref, TOL[dt], 'clamp ' .. dt .. ' ' .. lname)
    end
  end
  -- in place into a transposed view
  local base = tide.tensor({ { -3, 4 }, { 1, 9 }, { 0, -8 } }, { dtype = 'f64' })
  local v = base:t()
  T.truthy(v:clamp_(-2, 3) == v)
  T.same(base:tolist(), { { -2, 3 }, { 1, 3 }, { 0, -2 } })
  base:clamp_(nil, 0)
  T.same(base:tolist(), { { -2, 0 }, { 0, 0 }, { 0, -2 } })
  T.raises(function() local _ = x:clamp() end, 'clamp: at least one of min and max')
  T.raises(function() local _ = x:clamp('a') end, 'clamp: min must be a number')
  T.raises(function() x:clamp_() end, 'clamp_: at least one')
  T.raises(function() tide.zeros(2, 1):expand(2, 3):clamp_(0, 1) end, 'clamp_: the in-place target has elements that share memory')
end)

T.test('where', function()
  local cond = tide.tensor({ { true }, { false }, { true } })
  local a = tide.tensor({ 1, 2, 3, 4 }, { dtype = 'f32' })
  local b = tide.tensor(-1, { dtype = 'f32' })
  local r = tide.where(cond, a, b)
  T.same(r:shape(), { 3, 4 })
  T.same(r:tolist(), { { 1, 2, 3, 4 }, { -1, -1, -1, -1 }, { 1, 2, 3, 4 } })
  -- any dtype is a condition (NaN counts as true); numbers on either side
  local fc = tide.tensor({ 0, 2.5, 0 / 0, -1, 0 }, { dtype = 'f32' })
  T.same(tide.where(fc, 1, 0):tolist(), { 0, 1, 1, 1, 0 })
  T.same(tide.where(fc, 0, tide.arange(5)):tolist(), { 0, 0, 0, 0, 4 })
  T.same(a:where(a:gt(2), 0):tolist(), { 0, 0, 3, 4 })
  -- against the reference, across dtypes and layouts, promoting a and b
  for _, dt in ipairs(DTYPES) do
    local lc, la = layouts('tie', 'i32'), layouts(nil, dt)
    for cn, mc in pairs(lc) do
      for an, ma in pairs(la) do
        local c, x = mc(), ma()
        local y = rand({ 4 }, nil, 'f64')
        local want = map2(vals(c), map2(vals(x), vals(y:expand(3, 4)), function(p, q) return { p, q } end),
                          function(cv, pq) return cv ~= 0 and pq[1] or pq[2] end)
        local got = tide.where(c, x, y)
        T.eq(got:dtype(), 'f64')
        T.close(got, want, TOL.f64, ('where %s %s %s'):format(dt, cn, an))
        T.close(tide.where(c, x, x:clone()), vals(x), TOL[dt])
      end
    end
  end
  T.raises(function() local _ = tide.where(1, a, a) end, 'where: the condition must be a tensor')
  T.raises(function() local _ = tide.where(cond, a, nil) end, 'where: expected a tensor, number or boolean operand, got nil')
  T.raises(function() local _ = tide.where(tide.ones(2, 3), tide.ones(2), 0) end, 'where: shapes [2, 3] and [2] cannot be broadcast')
end)

T.test('allclose and equal', function()
  local a = tide.tensor({ 1, 2, 3 }, { dtype = 'f32' })
  T.truthy(tide.allclose(a, a + 1e-7))
  T.truthy(not tide.allclose(a, a + 1e-3))
  T.truthy(a:allclose(a + 1e-3, { rtol = 1e-3 }))
  T.truthy(a:allclose(a + 0.5, { atol = 0.6 }))
  T.truthy(tide.allclose(a, tide.tensor({ { 1, 2, 3 }, { 1, 2, 3 } })))  -- broadcasts
  local inf = tide.tensor({ math.huge, 1 })
  T.truthy(tide.allclose(inf, inf))
  T.truthy(not tide.allclose(tide.tensor({ 1e300, 1 }, { dtype = 'f64' }), inf))
  T.truthy(not tide.allclose(inf, tide.tensor({ 1e300, 1 }, { dtype = 'f64' })))
  local n = tide.tensor({ 0 / 0, 1 })
  T.truthy(not tide.allclose(n, n))
  T.truthy(tide.allclose(n, n, { equal_nan = true }))
  T.truthy(tide.allclose(tide.arange(4), tide.arange(4):float()))
  T.truthy(a:equal(a:clone()))
  T.truthy(not a:equal(a + 1))
  T.truthy(not a:equal(a:view(1, 3)))
  T.truthy(tide.equal(tide.arange(3), tide.tensor({ 0, 1, 2 })))
  T.truthy(not n:equal(n))
  T.raises(function() local _ = tide.allclose(a, tide.ones(2)) end, 'allclose: shapes [3] and [2] cannot be broadcast')
  T.raises(function() local _ = tide.allclose(a, 1) end, 'allclose: expected two tensors')
  T.raises(function() local _ = a:equal(nil) end, 'equal: expected two tensors')
end)

T.test('bad arguments raise clear errors at the caller', function()
  local a = tide.zeros(2, 3)
  local err = T.raises(function() local _ = a + tide.zeros(4, 5) end, 'add: shapes [2, 3] and [4, 5] cannot be broadcast')
  T.truthy(err:find('test_pointwise.lua:', 1, true), 'error points at the caller: ' .. err)
  err = T.raises(function() local _ = a:mul(nil) end, 'mul: expected a tensor, number or boolean operand, got nil')
  T.truthy(err:find('test_pointwise.lua:', 1, true), 'error points at the caller: ' .. err)
  err = T.raises(function() local _ = a:sub(tide.ones(3, 2)) end, 'sub: shapes [2, 3] and [3, 2]')
  T.truthy(err:find('test_pointwise.lua:', 1, true), 'error points at the caller: ' .. err)
  T.raises(function() local _ = a + 'x' end, 'add: expected a tensor, number or boolean operand, got string')
  T.raises(function() local _ = a * {} end, 'mul: expected a tensor, number or boolean operand, got table')
  T.raises(function() local _ = tide.add(1, 2) end, 'add: expected at least one tensor operand, got number and number')
  T.raises(function() local _ = tide.exp(nil) end, 'exp: expected a tensor, got nil')
  T.raises(function() local _ = tide.exp(3) end, 'exp: expected a tensor, got number')
  T.raises(function() a:add_('x') end, 'add_: expected a tensor, number or boolean operand, got string')
  T.raises(function() local _ = a:add(1, 5) end, 'add: options must be a table')
  T.raises(function() local _ = a:add(1, { alpha = 'x' }) end, 'add: alpha must be a number')
  T.raises(function() local _ = a:div(2, { rounding_mode = 'floor' }) end, 'div: options (rounding_mode) are not supported')
  T.raises(function() local _ = a:gelu('none') end, 'gelu: only the tanh approximation')
  -- in place: the target must hold the broadcast result and own its elements
  err = T.raises(function() tide.zeros(3):add_(tide.zeros(2, 3)) end,
                 'add_: the in-place target of shape [3] cannot hold the broadcast result of shape [2, 3]')
  T.truthy(err:find('test_pointwise.lua:', 1, true), 'error points at the caller: ' .. err)
  T.raises(function() tide.zeros(3):mul_(tide.zeros(2)) end, 'mul_: shapes [3] and [2] cannot be broadcast')
  T.raises(function() tide.zeros(3, 1):expand(3, 4):add_(1) end, 'add_: the in-place target has elements that share memory')
  T.raises(function() tide.zeros(1):expand(4):exp_() end, 'exp_: the in-place target has elements that share memory')
  -- the C API rejects bad op codes and nil handles
  local C = tide.C
  local out = ffi.new('tide_tensor*[1]')
  T.eq(C.tide_unary(99, a._c, out), -1)
  T.truthy(ffi.string(C.tide_last_error()):find('invalid op code 99', 1, true))
  T.eq(C.tide_binary(-1, a._c, a._c, out), -1)
  T.eq(C.tide_binary(C.TIDE_ADD, a._c, nil, out), -1)
  T.truthy(ffi.string(C.tide_last_error()):find('add: expected a tensor, got nil', 1, true))
  T.eq(C.tide_where(nil, a._c, a._c, out), -1)
  T.eq(C.tide_clamp(nil, 0, 1, out), -1)
end)

T.test('empty tensors and in-place dtype conversion', function()
  local e = tide.zeros(0, 3)
  T.same((e + 1):shape(), { 0, 3 })
  T.same((e + tide.zeros(3)):shape(), { 0, 3 })
  T.same(e:exp():shape(), { 0, 3 })
  T.same(tide.zeros(0, { dtype = 'i32' }):fmod(0):shape(), { 0 })
  -- the result of an in-place op is stored in the target's dtype
  local i = tide.tensor({ 1, 2, 3 }, { dtype = 'i32' })
  i:mul_(1.5)
  T.same(i:tolist(), { 1, 3, 4 })
  T.eq(i:dtype(), 'i32')
  local b = tide.tensor({ 1, 2, 3 }, { dtype = 'bf16' })
  b:add_(tide.tensor({ 0.5, 0.5, 0.5 }, { dtype = 'f64' }))
  T.same(b:tolist(), { 1.5, 2.5, 3.5 })
  local f = tide.tensor({ 1, 2, 3 }, { dtype = 'f32' })
  f:gt_(2)
  T.same(f:tolist(), { 0, 0, 1 })
  local h = tide.tensor({ 0.25, 4 }, { dtype = 'f16' })
  T.same(h:sqrt():tolist(), { 0.5, 2 })
  T.eq(h:sqrt():dtype(), 'f16')
end)

-- Fills a fresh f32 tensor of n elements with values in [lo, lo + span).
local function big_f32(n, lo, span)
  local t = tide.empty(n)
  local p = ffi.cast('float *', t:data_ptr())
  for i = 0, n - 1 do p[i] = lo + span * rnd() end
  return t, p
end

T.test('large tensors match the reference on the threaded paths', function()
  local threads = tide.get_num_threads()
  tide.set_num_threads(math.max(threads, 4))
  local ok, err = pcall(function()
    local n = 1200007
    local a, pa = big_f32(n, -2, 4)
    local b, pb = big_f32(n, 0.5, 2)
    local f = ffi.new('float[1]')
    local function f32(v) f[0] = v; return f[0] end
    for _, case in ipairs {
      { a + b, function(i) return f32(pa[i] + pb[i]) end, 0 },
      { a * b, function(i) return f32(pa[i] * pb[i]) end, 0 },
      { a / b, function(i) return f32(pa[i] / pb[i]) end, 0 },
      { a * 3, function(i) return f32(pa[i] * 3) end, 0 },
      { a:exp(), function(i) return math.exp(pa[i]) end, 1e-6 },
      { a:gelu(), function(i) local x = pa[i] return 0.5 * x * (1 + math.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ^ 3))) end, 1e-6 },
    } do
      local r, ref, rtol = case[1], case[2], case[3]
      T.eq(r:numel(), n)
      local pr = ffi.cast('float *', r:data_ptr())
      for i = 0, n - 1 do
        local want = ref(i)
        if math.abs(pr[i] - want) > rtol * math.abs(want) + 1e-7 then
          error(('element %d: got %.9g, expected %.9g'):format(i, pr[i], want))
        end
      end
    end
    -- strided: a 1100x1100 transpose plus a row, written in place through a view
    local m, pm = big_f32(1100 * 1100, -1, 2)
    local orig = {}
    for i = 0, 1100 * 1100 - 1 do orig[i] = pm[i] end
    local row = tide.arange(1100):float()
    local v = m:view(1100, 1100):t()
    v:add_(row)
    for i = 0, 1099 do
      for j = 0, 1099 do  -- v[i][j] is m[j][i] and gained row[j]
        local k = j * 1100 + i
        if pm[k] ~= f32(orig[k] + j) then error(('strided element %d,%d: got %g'):format(i, j, pm[k])) end
      end
    end
    local c = v:lt(0)
    local pc = ffi.cast('uint8_t *', c:data_ptr())
    for i = 0, 1099, 7 do
      for j = 0, 1099, 3 do
        if (pc[i * 1100 + j] ~= 0) ~= (pm[j * 1100 + i] < 0) then error('lt mismatch') end
      end
    end
    -- integers: fmod and pow scan their operands in parallel before computing
    local ints = tide.arange(n):to('i32')
    local bad = ints:fmod(7):clone()
    bad[n] = 0
    T.raises(function() local _ = ints:fmod(bad) end, 'fmod: integer division by zero')
    local r = ints:fmod(tide.arange(n):fmod(5):add(1):to('i32'))
    local pr = ffi.cast('int32_t *', r:data_ptr())
    for i = 0, n - 1, 13 do
      if pr[i] ~= i % (i % 5 + 1) then error('int fmod mismatch at ' .. i) end
    end
  end)
  tide.set_num_threads(threads)
  if not ok then error(err, 0) end
end)

-- Elementwise ops on CUDA against the CPU (tide-cudaemu in CI, a GPU in
-- tests/gpu/run.sh): every unary and binary op, comparisons and logical ops,
-- clamp, where and the in-place forms, forward and backward, in f32 and bf16
-- (and f64 and the integer dtypes where they apply), over broadcasting,
-- non-contiguous views, 0-d, size 0 and size 1, with NaN, infinities and -0
-- among the inputs.
local T = require 'tide.testing'

local unary_names = {
  'neg', 'abs', 'exp', 'log', 'sqrt', 'rsqrt', 'tanh', 'sigmoid', 'relu', 'gelu', 'logical_not', 'sin', 'cos',
  'floor', 'ceil', 'round', 'sign', 'log1p', 'expm1', 'square', 'reciprocal', 'isnan', 'isinf',
}
local float_only = {
  exp = true, log = true, sqrt = true, rsqrt = true, tanh = true, sigmoid = true, gelu = true, sin = true,
  cos = true, log1p = true, expm1 = true, reciprocal = true,
}
local no_inplace = { isnan = true, isinf = true }
local binary_names = {
  'add', 'sub', 'mul', 'div', 'pow', 'maximum', 'minimum', 'eq', 'ne', 'lt', 'le', 'gt', 'ge',
  'logical_and', 'logical_or', 'logical_xor', 'fmod',
}
local predicate = {
  eq = true, ne = true, lt = true, le = true, gt = true, ge = true, logical_and = true, logical_or = true,
  logical_xor = true,
}

-- A [rows, cols] f32 tensor of values from an lcg, scaled, with the float
-- edge cases (NaN, infinities, -0, halves for round) first when edges.
local function values(seed, rows, cols, scale, edges)
  local rng = T.lcg(seed)
  local sp = { 0 / 0, math.huge, -math.huge, -0.0, 0, 0.5, -2.5, 1.5, 1e30, -1e-30 }
  local v = {}
  for i = 1, rows * cols do
    if edges and i <= #sp then v[i] = sp[i] else v[i] = (rng() * 2 - 1) * (scale or 3) end
  end
  return tide.tensor(v):view(rows, cols)
end

-- small integers (and negative ones when signed) as a [rows, cols] tensor of dtype dt
local function ints(seed, rows, cols, dt, lo, hi)
  local rng = T.lcg(seed)
  local v = {}
  for i = 1, rows * cols do v[i] = lo + math.floor(rng() * (hi - lo + 1)) end
  return tide.tensor(v, { dtype = dt }):view(rows, cols)
end

local function is_float(dt) return dt == 'f32' or dt == 'f64' or dt == 'bf16' or dt == 'f16' end

-- x of dtype dt for the op tests: floats with edge values, integers in a small range
local function input(seed, dt, rows, cols)
  if is_float(dt) then return values(seed, rows, cols, 3, true):to(dt) end
  if dt == 'bool' then return ints(seed, rows, cols, 'i64', 0, 1):to('bool') end
  if dt == 'u8' then return ints(seed, rows, cols, 'u8', 0, 255) end
  return ints(seed, rows, cols, dt, -50, 50)
end

T.test('unary ops on cuda: every op and dtype, contiguous, transposed and in place', function()
  T.need_cuda()
  for _, dt in ipairs { 'f32', 'bf16', 'f16', 'f64', 'i32', 'i64', 'u8', 'bool' } do
    local x = input(1, dt, 5, 6)
    for _, name in ipairs(unary_names) do
      local skip = name == 'neg' and dt == 'bool'  -- an error on both (checked below)
      if not skip then
        local label = name .. ' ' .. dt
        T.device_parity(function(t) return t[name](t) end, { x }, nil, label)
        T.device_parity(function(t) return t:t()[name](t:t()) end, { x }, nil, label .. ' transposed')
        if not no_inplace[name] and not (float_only[name] and (dt == 'bool')) then
          -- in place through a strided view: a column-sliced target (float-only ops on integers
          -- compute in f32 and truncate into the target: an ulp can move a value across an integer)
          T.device_parity(function(t)
            local c = t:clone()
            local v = c:narrow(2, 2, 3)
            v[name .. '_'](v)
            return c
          end, { x }, float_only[name] and not is_float(dt) and { rtol = 1e-5, atol = 1 } or nil, label .. ' in place')
        end
      end
    end
  end
  T.raises(function() return tide.ones(2, { dtype = 'bool', device = 'cuda' }):neg() end, 'negating a bool tensor')
end)

T.test('unary ops on cuda: size 0, size 1, 0-d and broadcast (expanded) inputs', function()
  T.need_cuda()
  for _, name in ipairs(unary_names) do
    T.device_parity(function(t) return t[name](t) end, { tide.randn(0, 3) }, nil, name .. ' empty')
    T.device_parity(function(t) return t[name](t) end, { tide.randn(1) }, nil, name .. ' one')
    T.device_parity(function(t) return t[name](t) end, { tide.tensor(0.75) }, nil, name .. ' 0-d')
    T.device_parity(function(t) return t[name](t:expand(4, 3)) end, { tide.randn(1, 3) }, nil, name .. ' expanded')
  end
end)

-- the right-hand operand for op in dtype dt: no integer fmod by 0, no negative integer powers
local function rhs(name, dt, seed)
  local integer = not is_float(dt)
  if integer and name == 'pow' then return ints(seed, 5, 6, dt == 'bool' and 'i64' or dt, 0, 3):to(dt) end
  if integer and name == 'fmod' then
    if dt == 'bool' then return tide.ones(5, 6, { dtype = 'bool' }) end
    return ints(seed, 5, 6, dt, 1, 9)
  end
  return input(seed, dt, 5, 6)
end

T.test('binary ops on cuda: every op and dtype, broadcasting, transposed, numbers and 0-d operands', function()
  T.need_cuda()
  for _, dt in ipairs { 'f32', 'bf16', 'f16', 'f64', 'i32', 'i64', 'u8', 'bool' } do
    local a = input(2, dt, 5, 6)
    for _, name in ipairs(binary_names) do
      local ok_here = not (name == 'sub' and dt == 'bool')  -- an error on both (checked below)
      if ok_here then
        local label = name .. ' ' .. dt
        local bb = rhs(name, dt, 3)
        T.device_parity(function(x, y) return x[name](x, y) end, { a, bb }, nil, label)
        -- transposed operands
        T.device_parity(function(x, y) return x:t()[name](x:t(), y:t()) end, { a, bb }, nil, label .. ' transposed')
        -- broadcasting: a row against a column
        T.device_parity(function(x, y) return x:narrow(1, 1, 1)[name](x:narrow(1, 1, 1), y:narrow(2, 1, 1)) end,
          { a, bb }, nil, label .. ' row with column')
        -- a 0-d tensor operand
        T.device_parity(function(x, y) return x[name](x, y:select(1, 1):select(1, 1)) end, { a, bb }, nil,
          label .. ' with 0-d')
        -- numbers on either side (integral and fractional), booleans
        for _, s in ipairs { 2, 0.5, -3 } do
          local skip_int = not is_float(dt) and (name == 'fmod' or name == 'pow') and s ~= 2
          if not skip_int then
            T.device_parity(function(x) return x[name](x, s) end, { a }, nil, label .. ' with ' .. s)
          end
          if name ~= 'pow' or is_float(dt) then
            if not (name == 'fmod' and not is_float(dt)) then
              T.device_parity(function(x) return tide[name](s, x) end, { bb }, nil, s .. ' ' .. label)
            end
          end
        end
        if not (name == 'fmod' or name == 'pow' or name == 'div') or dt == 'f32' then
          T.device_parity(function(x) return x[name](x, true) end, { a }, nil, label .. ' with true')
        end
      end
    end
  end
  T.raises(function()
    local t = tide.ones(2, { dtype = 'bool', device = 'cuda' })
    return t - t
  end, 'subtracting bool tensors')
end)

T.test('binary ops on cuda: size 0, size 1 and 0-d with 0-d', function()
  T.need_cuda()
  for _, name in ipairs(binary_names) do
    T.device_parity(function(x, y) return x[name](x, y) end, { tide.randn(0, 3), tide.randn(1, 3) }, nil, name .. ' empty')
    T.device_parity(function(x, y) return x[name](x, y) end, { tide.randn(1), tide.randn(1) }, nil, name .. ' one')
    T.device_parity(function(x, y) return x[name](x, y) end, { tide.randn(2, 1), tide.randn(1) }, nil,
      name .. ' one broadcast')
    T.device_parity(function(x, y) return x[name](x, y) end, { tide.tensor(1.25), tide.tensor(-0.5) }, nil, name .. ' 0-d')
    T.device_parity(function(x) return x[name](x, 3) end, { tide.tensor(1.25) }, nil, name .. ' 0-d with number')
  end
end)

T.test('binary in-place ops on cuda: a:add_(b) and friends, numbers, strided targets, dtype casts', function()
  T.need_cuda()
  for _, dt in ipairs { 'f32', 'bf16', 'i32' } do
    local a = input(4, dt, 5, 6)
    for _, name in ipairs(binary_names) do
      if not predicate[name] and not (dt == 'i32' and name == 'div') then
        local b = rhs(name, dt, 5)
        local label = name .. '_ ' .. dt
        T.device_parity(function(x, y)
          local c = x:clone()
          c[name .. '_'](c, y)
          return c
        end, { a, b }, nil, label)
        -- into a strided view, the operand broadcast as a row
        T.device_parity(function(x, y)
          local c = x:clone()
          local v = c:narrow(2, 2, 4)
          v[name .. '_'](v, y:narrow(1, 1, 1):narrow(2, 1, 4))
          return c
        end, { a, b }, nil, label .. ' strided')
        T.device_parity(function(x)
          local c = x:clone()
          c[name .. '_'](c, 2)
          return c
        end, { a }, nil, label .. ' number')
      end
    end
    -- comparisons in place keep the target's dtype
    T.device_parity(function(x, y) local c = x:clone(); c:lt_(y); return c end, { a, input(6, dt, 5, 6) }, nil,
      'lt_ ' .. dt)
  end
  -- aliasing: x op= a transposed view of itself reads x as before any write
  T.device_parity(function(x)
    local c = x:narrow(2, 1, 5):clone()
    c:add_(c:t())
    return c
  end, { values(7, 5, 6) }, nil, 'add_ of own transpose')
  -- i32 += fraction: computed in f32, stored back into i32
  T.device_parity(function(x) local c = x:clone(); c:mul_(1.5); return c end, { ints(8, 3, 4, 'i32', -9, 9) }, nil,
    'i32 mul_ fraction')
end)

T.test('integer semantics on cuda: wrapping, fmod and pow edge cases, errors before writing', function()
  T.need_cuda()
  local big = tide.tensor({ 2147483647, -2147483648, 5, -7 }, { dtype = 'i32' })
  local ops = {
    function(t) return t + 1 end, function(t) return t * t end, function(t) return -t end,
    function(t) return t:abs() end, function(t) return t - 2147483647 end, function(t) return t:fmod(-1) end,
    function(t) return t:fmod(3) end, function(t) return t:pow(3) end, function(t) return t:square() end,
    function(t) return t:sign() end, function(t) return t / 2 end,
  }
  for i, f in ipairs(ops) do
    T.device_parity(f, { big }, { exact = true }, 'i32 op ' .. i)
    T.device_parity(f, { big:to('i64') * 4294967296 }, { exact = true }, 'i64 op ' .. i)
  end
  local u = tide.tensor({ 250, 3, 0, 128 }, { dtype = 'u8' })
  for i, f in ipairs { function(t) return t + 10 end, function(t) return t - 5 end, function(t) return t * 3 end,
                       function(t) return t + -1 end, function(t) return t:pow(5) end } do
    T.device_parity(f, { u }, { exact = true }, 'u8 op ' .. i)
  end
  -- errors name the op on both devices, and nothing is written
  for _, dev in ipairs { 'cpu', 'cuda' } do
    local x = tide.tensor({ 1, 2, 3 }, { dtype = 'i64', device = dev })
    local z = tide.tensor({ 1, 0, 3 }, { dtype = 'i64', device = dev })
    T.raises(function() return x:fmod(z) end, 'integer division by zero')
    T.raises(function() return x:fmod(0) end, 'integer division by zero')
    T.raises(function() return x:pow(-1) end, 'negative integer powers')
    T.raises(function() return x:pow(z - 1) end, 'negative integer powers')
    T.raises(function() x:fmod_(z) end, 'integer division by zero')
    T.same(x:cpu():tolist(), { 1, 2, 3 }, 'untouched after the error on ' .. dev)
  end
  -- float pow and fmod edge values against every other edge value
  local e = tide.tensor({ 0 / 0, math.huge, -math.huge, 0, -0.0, 1, -1, 0.5, -2, 3, 1 / 3 })
  for _, dt in ipairs { 'f32', 'f64' } do
    for _, name in ipairs { 'pow', 'fmod', 'maximum', 'minimum', 'div' } do
      T.device_parity(function(x) return x:view(11, 1)[name](x:view(11, 1), x:view(1, 11)) end, { e:to(dt) }, nil,
        name .. ' edges ' .. dt)
    end
  end
end)

T.test('clamp on cuda: number, nil, NaN and tensor bounds, integer tensors, in place', function()
  T.need_cuda()
  for _, dt in ipairs { 'f32', 'bf16', 'f64', 'i32', 'i64', 'u8' } do
    local x = input(9, dt, 5, 6)
    for _, b in ipairs { { -1, 2 }, { nil, 0.5 }, { -0.5, nil }, { 3, -3 }, { 0 / 0, 1 }, { -1e10, 1e10 }, { 2.5, 7.5 } } do
      local lo, hi = b[1], b[2]
      local label = ('clamp %s [%s, %s]'):format(dt, tostring(lo), tostring(hi))
      T.device_parity(function(t) return t:clamp(lo, hi) end, { x }, nil, label)
      T.device_parity(function(t) return t:t():clamp(lo, hi) end, { x }, nil, label .. ' transposed')
      T.device_parity(function(t) local c = t:clone(); c:clamp_(lo, hi); return c end, { x }, nil, label .. ' in place')
    end
    T.device_parity(function(t) return t:clamp_min(1) end, { x }, nil, 'clamp_min ' .. dt)
    T.device_parity(function(t) return t:clamp_max(1) end, { x }, nil, 'clamp_max ' .. dt)
  end
  -- tensor bounds broadcast
  T.device_parity(function(t, lo, hi) return t:clamp(lo, hi) end,
    { values(10, 5, 6), values(11, 1, 6, 1) - 1, values(12, 5, 1, 1) + 1 }, nil, 'tensor bounds')
end)

T.test('where on cuda: tensors and numbers, broadcasting, non-bool conditions, every dtype', function()
  T.need_cuda()
  local bitwise = { rtol = 0, atol = 0 }  -- selection moves elements unchanged (NaN matching NaN)
  local c = values(13, 5, 6):gt(0)
  for _, dt in ipairs { 'f32', 'bf16', 'f64', 'i32', 'i64', 'u8', 'bool' } do
    local a, b = input(14, dt, 5, 6), input(15, dt, 5, 6)
    T.device_parity(function(k, x, y) return tide.where(k, x, y) end, { c, a, b }, bitwise, 'where ' .. dt)
    T.device_parity(function(k, x, y) return tide.where(k:t(), x:t(), y:narrow(1, 1, 1):t()) end, { c, a, b },
      bitwise, 'where transposed/broadcast ' .. dt)
    T.device_parity(function(k, x) return x:where(k, 7) end, { c, a }, bitwise, 'method where ' .. dt)
  end
  T.device_parity(function(k) return tide.where(k, 1, 0) end, { c }, { exact = true }, 'where with two numbers')
  T.device_parity(function(k) return tide.where(k, 1.5, true) end, { c }, { exact = true }, 'number and boolean')
  -- a float condition: nonzero (NaN included) is true
  T.device_parity(function(k, x, y) return tide.where(k, x, y) end, { values(16, 5, 6, 3, true), values(17, 5, 6), values(18, 5, 6) },
    bitwise, 'float condition')
  T.device_parity(function(k, x, y) return tide.where(k, x, y) end, { c:narrow(1, 1, 0), values(17, 0, 6), values(18, 1, 6) },
    bitwise, 'empty')
end)

T.test('allclose and equal on cuda', function()
  T.need_cuda()
  local a = values(19, 4, 5)
  T.device_parity(function(x, y) return x:allclose(y), x:equal(y), x:equal(x) end, { a, a + 1e-7 }, nil, 'allclose')
end)

-- autograd ------------------------------------------------------------------------------------------

-- fn's output and the gradients of its inputs, with an explicit output gradient
-- (so no reduction is needed): leaves are made to require grad here
local function grads(fn, n)
  return function(...)
    local args = { ... }
    for i = 1, n do args[i] = args[i]:detach():clone():requires_grad_(true) end  -- fresh leaves: no grad carried over
    local out = fn(unpack(args))
    out:backward(args[#args])
    local r = { out:detach() }
    for i = 1, n do r[#r + 1] = args[i].grad end
    return unpack(r)
  end
end

local diff_unary = {
  'neg', 'abs', 'exp', 'log', 'sqrt', 'rsqrt', 'tanh', 'sigmoid', 'relu', 'gelu', 'sin', 'cos', 'floor', 'ceil',
  'round', 'sign', 'log1p', 'expm1', 'square', 'reciprocal',
}

T.test('backward of every differentiable unary op on cuda, f32, bf16 and f64', function()
  T.need_cuda()
  for _, dt in ipairs { 'f32', 'bf16', 'f64' } do
    for _, name in ipairs(diff_unary) do
      -- positive inputs away from 0 keep log, sqrt, rsqrt and reciprocal finite; relu and abs see both signs
      local x = (name == 'relu' or name == 'abs' or name == 'gelu') and values(20, 5, 6) or (values(20, 5, 6):abs() + 0.25)
      local g = values(21, 5, 6)
      T.device_parity(grads(function(t) return t[name](t) end, 1), { x:to(dt), g:to(dt) }, nil, name .. ' backward ' .. dt)
      -- through a transposed view
      T.device_parity(grads(function(t) return t:t()[name](t:t()) end, 1), { x:to(dt), g:t():contiguous():to(dt) }, nil,
        name .. ' backward transposed ' .. dt)
    end
  end
end)

T.test('backward of the binary ops, clamp and where on cuda, f32 and bf16', function()
  T.need_cuda()
  for _, dt in ipairs { 'f32', 'bf16' } do
    local a, b, g = values(22, 5, 6):abs() + 0.5, values(23, 5, 6):abs() + 0.5, values(24, 5, 6)
    a, b, g = a:to(dt), b:to(dt), g:to(dt)
    for _, name in ipairs { 'add', 'sub', 'mul', 'div', 'pow', 'maximum', 'minimum' } do
      T.device_parity(grads(function(x, y) return x[name](x, y) end, 2), { a, b, g }, nil, name .. ' backward ' .. dt)
      T.device_parity(grads(function(x) return x[name](x, 1.5) end, 1), { a, g }, nil, name .. ' number backward ' .. dt)
      T.device_parity(grads(function(x) return tide[name](1.5, x) end, 1), { b, g }, nil, 'number ' .. name .. ' backward ' .. dt)
    end
    T.device_parity(grads(function(x, y) return x:add(y, { alpha = 2 }) end, 2), { a, b, g }, nil, 'add alpha backward')
    T.device_parity(grads(function(x) return (x - 1.2):clamp(-0.5, 0.5) end, 1), { a, g }, nil, 'clamp backward ' .. dt)
    local c = values(25, 5, 6):gt(0)
    T.device_parity(grads(function(x, y) return tide.where(c:to(x.device), x, y) end, 2), { a, b, g }, nil,
      'where backward ' .. dt)
    T.device_parity(grads(function(x, y) return x:where(c:to(x.device), y) end, 2), { a, b, g }, nil,
      'method where backward ' .. dt)
  end
  -- ties split the gradient evenly
  local t = tide.tensor({ 1, 2, 3 }, { dtype = 'f32' })
  T.device_parity(grads(function(x, y) return x:maximum(y) end, 2), { t, tide.tensor({ 1, 0, 3 }, { dtype = 'f32' }), tide.ones(3) }, nil,
    'maximum ties')
end)

T.test('backward through broadcasting and a loss on cuda', function()
  T.need_cuda()
  local a, b = values(26, 4, 5), values(27, 1, 5)
  for _, name in ipairs { 'add', 'sub', 'mul', 'div', 'maximum', 'minimum' } do
    T.device_parity(function(x, y)
      x:requires_grad_(true)
      y:requires_grad_(true)
      local loss = x[name](x, y):gelu():square():sum()
      loss:backward()
      return loss:detach(), x.grad, y.grad
    end, { a:detach():clone(), b:abs() + 0.5 }, nil, name .. ' broadcast backward')  -- fresh leaves: no grad left from the last op
  end
end)

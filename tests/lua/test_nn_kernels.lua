-- The neural-network kernels called directly through the FFI (tide.F wraps
-- them with autograd elsewhere): layer_norm, softmax / log_softmax, the GELU
-- backward, embedding, cross_entropy and dropout. Every forward is checked
-- against a plain f64 reference written here in Lua, every backward against
-- central differences of its forward in f64, on random data (T.lcg), with
-- non-contiguous inputs; then f32 / bf16 agreement, determinism across
-- thread counts, dropout statistics and its stream contract, edge cases and
-- the errors bad arguments must give.
local T = require 'tide.testing'
local tide = require 'tide'
local ffi = require 'ffi'
local core = require 'tide.tensor'
local C = tide.C

-- calling the kernels ----------------------------------------------------------

local slot = { ffi.new('tide_tensor*[1]'), ffi.new('tide_tensor*[1]'), ffi.new('tide_tensor*[1]') }

-- The tensor a call left in slot i (nil when it wrote none), which the slot then forgets.
local function take(i)
  local p = slot[i][0]
  slot[i][0] = nil
  if p == nil then return nil end
  return core.wrap(p)
end

local function check(rc)
  if rc ~= 0 then
    for i = 1, 3 do slot[i][0] = nil end
    error(ffi.string(C.tide_last_error()), 3)
  end
end

local function h(t) return t and t._c or nil end

local K = {}
function K.layer_norm(x, w, b, eps)
  check(C.tide_layer_norm(h(x), h(w), h(b), eps or 1e-5, slot[1], slot[2], slot[3]))
  return take(1), take(2), take(3)
end
-- want = {w = false} or {b = false} leaves that gradient out
function K.layer_norm_backward(dy, x, w, mean, rstd, want)
  want = want or {}
  check(C.tide_layer_norm_backward(h(dy), h(x), h(w), h(mean), h(rstd), slot[1],
    want.w ~= false and slot[2] or nil, want.b ~= false and slot[3] or nil))
  return take(1), take(2), take(3)
end
function K.softmax(x, dim, log)
  check(C.tide_softmax(h(x), dim, log and 1 or 0, slot[1]))
  return take(1)
end
function K.softmax_backward(dy, y, dim, log)
  check(C.tide_softmax_backward(h(dy), h(y), dim, log and 1 or 0, slot[1]))
  return take(1)
end
function K.gelu(x)
  check(C.tide_unary(C.TIDE_GELU, h(x), slot[1]))
  return take(1)
end
function K.gelu_backward(dy, x)
  check(C.tide_gelu_backward(h(dy), h(x), slot[1]))
  return take(1)
end
function K.embedding(w, ids)
  check(C.tide_embedding(h(w), h(ids), slot[1]))
  return take(1)
end
function K.embedding_backward(dy, ids, V)
  check(C.tide_embedding_backward(h(dy), h(ids), V, slot[1]))
  return take(1)
end
local RED = { none = C.TIDE_REDUCE_NONE, mean = C.TIDE_REDUCE_MEAN, sum = C.TIDE_REDUCE_SUM }
function K.cross_entropy(x, t, red, ignore)
  check(C.tide_cross_entropy(h(x), h(t), ignore or -100, RED[red], slot[1], slot[2]))
  return take(1), take(2)
end
function K.cross_entropy_backward(d, x, t, lse, red, ignore)
  check(C.tide_cross_entropy_backward(h(d), h(x), h(t), h(lse), ignore or -100, RED[red], slot[1]))
  return take(1)
end
function K.dropout(x, p, g)
  check(C.tide_dropout(h(x), p, g and g._g or nil, slot[1], slot[2]))
  return take(1), take(2)
end
function K.dropout_backward(dy, mask, p)
  check(C.tide_dropout_backward(h(dy), h(mask), p, slot[1]))
  return take(1)
end

-- data and references -------------------------------------------------------------

local function prod(shape)
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  return n
end

-- A tensor of the given shape with values uniform in [-scale, scale) from rng.
local function rand(rng, shape, dtype, scale)
  local v = {}
  for i = 1, prod(shape) do v[i] = (rng() * 2 - 1) * (scale or 1) end
  local t = tide.tensor(v, { dtype = 'f64' }):view(shape)
  return dtype and dtype ~= 'f64' and t:to(dtype) or t
end

-- A tensor of integers in [0, n) from rng.
local function randids(rng, shape, n, dtype)
  local v = {}
  for i = 1, prod(shape) do v[i] = math.floor(rng() * n) end
  return tide.tensor(v, { dtype = dtype or 'i64' }):view(shape)
end

-- t's values in logical order as a Lua list of numbers.
local function vals(t)
  local c = t:to('f64'):contiguous()
  local p = ffi.cast('double*', c:data_ptr())
  local out = {}
  for i = 0, c:numel() - 1 do out[i + 1] = p[i] end
  return out
end

-- A tensor from a flat list, shaped and typed.
local function from(list, shape, dtype)
  return tide.tensor(list, { dtype = 'f64' }):view(shape):to(dtype or 'f64')
end

local function dot(t, r)
  local a, s = vals(t), 0
  for i = 1, #a do s = s + a[i] * r[i] end
  return s
end

local function identical(a, b)
  local x, y = vals(a), vals(b)
  if #x ~= #y then return false end
  for i = 1, #x do
    if x[i] ~= y[i] and not (x[i] ~= x[i] and y[i] ~= y[i]) then return false end
  end
  return true
end

-- fn's results with n threads, restoring the thread count afterwards.
local function with_threads(n, fn)
  local before = tide.get_num_threads()
  tide.set_num_threads(n)
  local r = { pcall(fn) }
  tide.set_num_threads(before)
  if not r[1] then error(r[2], 0) end
  return unpack(r, 2, table.maxn(r))
end

-- Central differences of objective() with respect to every element of base
-- (a contiguous f64 tensor the objective reads, possibly through a view).
local function numgrad(base, objective, eps)
  eps = eps or 1e-6
  local p = ffi.cast('double*', base:data_ptr())
  local g = {}
  for i = 0, base:numel() - 1 do
    local v = p[i]
    p[i] = v + eps
    local fp = objective()
    p[i] = v - eps
    local fm = objective()
    p[i] = v
    g[i + 1] = (fp - fm) / (2 * eps)
  end
  return from(g, base:shape())
end

-- An analytic gradient g of view_fn(base) laid out as base (zeros where the view does not reach).
local function to_base(base, view_fn, g)
  local z = tide.zeros(base:shape(), { dtype = 'f64' })
  view_fn(z):copy_(g)
  return z
end

local GRAD_TOL = { rtol = 1e-6, atol = 1e-7 }

-- The views inputs are tested through: (base shape for a wanted shape, view).
local views = {
  contiguous = { base = function(s) return s end, view = function(t) return t end },
  transposed = {
    base = function(s) local b = {}; for i = 1, #s do b[i] = s[#s + 1 - i] end; return b end,
    view = function(t)
      local d = {}
      for i = 1, t:dim() do d[i] = t:dim() + 1 - i end
      return t:permute(d)
    end,
  },
  narrowed = {
    base = function(s) local b = {}; for i = 1, #s do b[i] = s[i] end; b[#b] = b[#b] + 3; return b end,
    view = function(t) return t:narrow(t:dim(), 2, t:size(t:dim()) - 3) end,
  },
}
local view_names = { 'contiguous', 'transposed', 'narrowed' }

-- t's values in a non-contiguous layout (dims reversed in memory).
local function noncontig(t)
  local r = views.transposed.view
  return r(r(t):contiguous())
end

-- layer_norm ---------------------------------------------------------------------------

local function ln_ref(x, w, b, eps)
  local shape = x:shape()
  local Cn = shape[#shape]
  local xv, wv, bv = vals(x), w and vals(w), b and vals(b)
  local y, mean, rstd = {}, {}, {}
  for r = 0, #xv / Cn - 1 do
    local s = 0
    for c = 1, Cn do s = s + xv[r * Cn + c] end
    local mu = s / Cn
    local ss = 0
    for c = 1, Cn do ss = ss + (xv[r * Cn + c] - mu) ^ 2 end
    local rs = 1 / math.sqrt(ss / Cn + eps)
    mean[r + 1], rstd[r + 1] = mu, rs
    for c = 1, Cn do
      local v = (xv[r * Cn + c] - mu) * rs
      if wv then v = v * wv[c] end
      if bv then v = v + bv[c] end
      y[r * Cn + c] = v
    end
  end
  local rshape = {}
  for i = 1, #shape - 1 do rshape[i] = shape[i] end
  return from(y, shape), from(mean, rshape), from(rstd, rshape)
end

T.test('layer_norm forward matches the f64 reference (affine or not, any layout)', function()
  local rng = T.lcg(11)
  for _, shape in ipairs { { 4, 7 }, { 2, 3, 5 }, { 1, 1 }, { 6 } } do
    for _, vn in ipairs(view_names) do
      local V = views[vn]
      local x = V.view(rand(rng, V.base(shape), 'f64', 3))
      local Cn = shape[#shape]
      local w, b = rand(rng, { Cn }), rand(rng, { Cn })
      for _, aff in ipairs { { w, b }, { w, nil }, { nil, b }, { nil, nil } } do
        local y, mean, rstd = K.layer_norm(x, aff[1], aff[2], 1e-5)
        local ry, rm, rr = ln_ref(x, aff[1], aff[2], 1e-5)
        T.close(y, ry, { rtol = 1e-12, atol = 1e-12 }, vn)
        T.close(mean, rm, { rtol = 1e-12, atol = 1e-12 })
        T.close(rstd, rr, { rtol = 1e-12, atol = 1e-12 })
        T.eq(mean:dtype(), 'f64')
      end
    end
  end
  -- a constant row: variance 0, so rstd = 1/sqrt(eps) and the output is the bias
  local y, _, rstd = K.layer_norm(tide.full({ 2, 4 }, 3, { dtype = 'f64' }), nil, tide.ones(4, { dtype = 'f64' }), 0.25)
  T.close(rstd, { 2, 2 })
  T.close(y, { { 1, 1, 1, 1 }, { 1, 1, 1, 1 } })
end)

T.test('layer_norm f32 matches the reference; mean/rstd are f32; bf16/f16 return their dtype', function()
  local rng = T.lcg(12)
  local x64 = rand(rng, { 33, 768 }, 'f64', 2) + 5
  local w, b = rand(rng, { 768 }), rand(rng, { 768 })
  local ry, rm, rr = ln_ref(x64:float():double(), w:float():double(), b:float():double(), 1e-5)
  local y, mean, rstd = K.layer_norm(x64:float(), w:float(), b:float(), 1e-5)
  T.eq(y:dtype(), 'f32'); T.eq(mean:dtype(), 'f32'); T.eq(rstd:dtype(), 'f32')
  T.close(y, ry, { rtol = 1e-6, atol = 2e-6 })
  T.close(mean, rm, { rtol = 1e-7, atol = 0 })
  T.close(rstd, rr, { rtol = 1e-7, atol = 0 })
  for _, dt in ipairs { 'bf16', 'f16' } do
    local yh, mh = K.layer_norm(x64:to(dt), w:to(dt), b:to(dt), 1e-5)
    T.eq(yh:dtype(), dt)
    T.eq(mh:dtype(), 'f32')
    local r = ln_ref(x64:to(dt):double(), w:to(dt):double(), b:to(dt):double(), 1e-5)
    T.close(yh, r, { rtol = 1e-2, atol = 2e-2 }, dt)
  end
end)

T.test('layer_norm backward passes gradcheck for x, weight and bias', function()
  local rng = T.lcg(13)
  for _, shape in ipairs { { 3, 5 }, { 2, 2, 4 } } do
    local Cn = shape[#shape]
    for _, vn in ipairs(view_names) do
      local V = views[vn]
      local xb = rand(rng, V.base(shape), 'f64', 2)
      local w, b = rand(rng, { Cn }), rand(rng, { Cn })
      local R = vals(rand(rng, shape))
      local dy = from(R, shape)
      for _, aff in ipairs { { w, b }, { nil, nil }, { w, nil } } do
        local wa, ba = aff[1], aff[2]
        local function obj() return dot(K.layer_norm(V.view(xb), wa, ba, 1e-3), R) end
        local _, mean, rstd = K.layer_norm(V.view(xb), wa, ba, 1e-3)
        local dx, dw, db = K.layer_norm_backward(dy, V.view(xb), wa, mean, rstd)
        T.close(to_base(xb, V.view, dx), numgrad(xb, obj), GRAD_TOL, 'dx ' .. vn)
        if wa then
          T.close(dw, numgrad(wa, obj), GRAD_TOL, 'dweight')
          T.eq(dw:dtype(), 'f64')
        else
          T.eq(dw, nil, 'no weight, no dweight')
        end
        -- dbias is sum(dy) over rows whether or not the forward had a bias
        local bb = ba or tide.zeros(Cn, { dtype = 'f64' })
        local function objb() return dot(K.layer_norm(V.view(xb), wa, bb, 1e-3), R) end
        T.close(db, numgrad(bb, objb), GRAD_TOL, 'dbias')
      end
    end
  end
end)

T.test('layer_norm backward: optional gradients, f32 against f64, bf16', function()
  local rng = T.lcg(14)
  local x, w, b = rand(rng, { 40, 96 }, 'f64', 3), rand(rng, { 96 }), rand(rng, { 96 })
  local dy = rand(rng, { 40, 96 })
  local _, mean, rstd = K.layer_norm(x, w, b, 1e-5)
  local dx, dw, db = K.layer_norm_backward(dy, x, w, mean, rstd)
  local dx1, dw1, db1 = K.layer_norm_backward(dy, x, w, mean, rstd, { w = false, b = false })
  T.eq(dw1, nil); T.eq(db1, nil)
  T.truthy(identical(dx, dx1), 'dx does not depend on which parameter gradients are wanted')
  local _, dw2, db2 = K.layer_norm_backward(dy, x, w, mean, rstd, { w = false })
  T.eq(dw2, nil); T.truthy(identical(db, db2))
  -- f32: inputs rounded to f32, compared with the f64 computation on the same values
  local xf, wf, dyf = x:float(), w:float(), dy:float()
  local _, mf, rf = K.layer_norm(xf, wf, b:float(), 1e-5)
  local gx, gw, gb = K.layer_norm_backward(dyf, xf, wf, mf, rf)
  local _, m64, r64 = K.layer_norm(xf:double(), wf:double(), nil, 1e-5)
  local ex, ew, eb = K.layer_norm_backward(dyf:double(), xf:double(), wf:double(), m64, r64)
  T.eq(gx:dtype(), 'f32'); T.eq(gw:dtype(), 'f32')
  T.close(gx, ex, { rtol = 1e-5, atol = 1e-5 })
  T.close(gw, ew, { rtol = 1e-5, atol = 1e-5 })
  T.close(gb, eb, { rtol = 1e-6, atol = 1e-6 })
  local hx = K.layer_norm_backward(dy:bfloat16(), x:bfloat16(), w:bfloat16(), mf, rf)
  T.eq(hx:dtype(), 'bf16')
  T.close(hx, ex, { rtol = 3e-2, atol = 5e-2 })
  T.close(dx, ex, { rtol = 1e-3, atol = 1e-3 })
end)

T.test('layer_norm weight and bias gradients do not depend on the thread count', function()
  local rng = T.lcg(15)
  local x, w = rand(rng, { 1100, 48 }, 'f32', 2), rand(rng, { 48 }, 'f32')
  local dy = rand(rng, { 1100, 48 }, 'f32')
  local _, mean, rstd = K.layer_norm(x, w, nil, 1e-5)
  local a = { with_threads(1, function() return K.layer_norm_backward(dy, x, w, mean, rstd) end) }
  local b = { with_threads(2, function() return K.layer_norm_backward(dy, x, w, mean, rstd) end) }
  for i = 1, 3 do T.truthy(identical(a[i], b[i]), 'output ' .. i .. ' bitwise equal') end
end)

T.test('layer_norm rejects bad arguments with clear errors', function()
  local x = tide.ones(2, 3)
  T.raises(function() K.layer_norm(nil) end, 'layer_norm: x is NULL')
  T.raises(function() K.layer_norm(tide.ones(2, 3, { dtype = 'i64' })) end, 'float tensor')
  T.raises(function() K.layer_norm(x, tide.ones(4)) end, 'weight must have shape [3]')
  T.raises(function() K.layer_norm(x, nil, tide.ones(3, 1)) end, 'bias must have shape [3]')
  T.raises(function() K.layer_norm(tide.tensor(1.5)) end, '0-d')
  T.raises(function() K.layer_norm(x, nil, nil, -1) end, 'eps')
  T.raises(function() K.layer_norm(x, tide.ones(3, { dtype = 'i32' })) end, 'weight must be a float tensor')
  local _, m, r = K.layer_norm(x)
  T.raises(function() K.layer_norm_backward(tide.ones(3, 2), x, nil, m, r) end, 'does not match x')
  T.raises(function() K.layer_norm_backward(tide.ones(2, 3), x, nil, tide.ones(3), r) end, 'one value per row')
  T.raises(function() K.layer_norm_backward(tide.ones(2, 3), x, nil, nil, r) end, 'mean is NULL')
  -- an empty input is fine
  local y = K.layer_norm(tide.ones(0, 5))
  T.same(y:shape(), { 0, 5 })
end)

-- softmax ---------------------------------------------------------------------------------

local function softmax_ref(x, dim, log)  -- dim 0-based
  local shape = x:shape()
  local xv = vals(x)
  if #shape == 0 then return from({ log and 0 or 1 }, {}) end
  local L = shape[dim + 1]
  local inner, outer = 1, 1
  for d = dim + 2, #shape do inner = inner * shape[d] end
  for d = 1, dim do outer = outer * shape[d] end
  local y = {}
  for o = 0, outer - 1 do
    for i = 0, inner - 1 do
      local m = -math.huge
      for l = 0, L - 1 do m = math.max(m, xv[o * L * inner + l * inner + i + 1]) end
      local s = 0
      for l = 0, L - 1 do s = s + math.exp(xv[o * L * inner + l * inner + i + 1] - m) end
      for l = 0, L - 1 do
        local k = o * L * inner + l * inner + i + 1
        y[k] = log and (xv[k] - m - math.log(s)) or math.exp(xv[k] - m) / s
      end
    end
  end
  return from(y, shape)
end

T.test('softmax and log_softmax match the reference along every dim and layout', function()
  local rng = T.lcg(21)
  for _, shape in ipairs { { 3, 4, 5 }, { 7 }, { 2, 300 } } do
    for _, vn in ipairs(view_names) do
      local V = views[vn]
      local x = V.view(rand(rng, V.base(shape), 'f64', 5))
      for dim = 0, #shape - 1 do
        for _, log in ipairs { false, true } do
          T.close(K.softmax(x, dim, log), softmax_ref(x, dim, log), { rtol = 1e-13, atol = 1e-15 },
            ('%s dim %d log %s'):format(vn, dim, tostring(log)))
        end
      end
    end
  end
  -- 0-d: one element
  T.close(K.softmax(tide.tensor(2.5, { dtype = 'f64' }), 0, false), 1)
  T.close(K.softmax(tide.tensor(2.5, { dtype = 'f64' }), 0, true), 0)
end)

T.test('softmax f32: long rows, wide strips, huge values, NaN rows, bf16', function()
  local rng = T.lcg(22)
  -- rows longer than the f32 partial-sum runs, and an inner dim wider than one strip
  for _, case in ipairs { { { 3, 3001 }, 1 }, { { 3, 5, 300 }, 1 }, { { 4, 9 }, 0 } } do
    local x = rand(rng, case[1], 'f32', 8)
    for _, log in ipairs { false, true } do
      local y = K.softmax(x, case[2], log)
      T.eq(y:dtype(), 'f32')
      T.close(y, softmax_ref(x:double(), case[2], log), { rtol = 2e-6, atol = log and 2e-6 or 1e-9 })
    end
  end
  -- max subtraction: no overflow for values far beyond exp's range
  local big = from({ 1000, 999, -1000, 0 }, { 1, 4 }, 'f32')
  T.close(K.softmax(big, 1, false), { { 1 / (1 + math.exp(-1)), math.exp(-1) / (1 + math.exp(-1)), 0, 0 } }, { rtol = 1e-6 })
  T.close(K.softmax(big, 1, true), { { -math.log(1 + math.exp(-1)), -1 - math.log(1 + math.exp(-1)), -2000 - math.log(1 + math.exp(-1)), -1000 - math.log(1 + math.exp(-1)) } }, { rtol = 1e-6 })
  -- a NaN poisons its own row only
  local n = from({ 1, 0 / 0, 2, 1, 2, 3 }, { 2, 3 }, 'f32')
  local y = vals(K.softmax(n, 1, false))
  for i = 1, 3 do T.truthy(y[i] ~= y[i], 'NaN row') end
  T.close({ y[4], y[5], y[6] }, vals(softmax_ref(from({ 1, 2, 3 }, { 3 }), 0, false)), { rtol = 1e-6 })
  for _, dt in ipairs { 'bf16', 'f16' } do
    local x = rand(rng, { 5, 6 }, dt, 2)
    local yh = K.softmax(x, 1, true)
    T.eq(yh:dtype(), dt)
    T.close(yh, softmax_ref(x:double(), 1, true), { rtol = 1e-2, atol = 2e-2 })
  end
end)

T.test('softmax and log_softmax backward pass gradcheck along every dim', function()
  local rng = T.lcg(23)
  for _, shape in ipairs { { 3, 4 }, { 2, 3, 3 } } do
    for _, vn in ipairs(view_names) do
      local V = views[vn]
      local xb = rand(rng, V.base(shape), 'f64', 2)
      local R = vals(rand(rng, shape))
      local dy = noncontig(from(R, shape))
      for dim = 0, #shape - 1 do
        for _, log in ipairs { false, true } do
          local function obj() return dot(K.softmax(V.view(xb), dim, log), R) end
          local y = K.softmax(V.view(xb), dim, log)
          local dx = K.softmax_backward(dy, y, dim, log)
          T.close(to_base(xb, V.view, dx), numgrad(xb, obj), GRAD_TOL, ('%s dim %d log %s'):format(vn, dim, tostring(log)))
        end
      end
    end
  end
end)

T.test('softmax backward f32 agrees with f64; bad arguments are errors', function()
  local rng = T.lcg(24)
  local x, dy = rand(rng, { 6, 700 }, 'f32', 3), rand(rng, { 6, 700 }, 'f32')
  for _, dim in ipairs { 0, 1 } do
    for _, log in ipairs { false, true } do
      local y = K.softmax(x, dim, log)
      local g = K.softmax_backward(dy, y, dim, log)
      T.eq(g:dtype(), 'f32')
      T.close(g, K.softmax_backward(dy:double(), y:double(), dim, log), { rtol = 1e-5, atol = 1e-7 })
    end
  end
  T.raises(function() K.softmax(tide.ones(2, 3, { dtype = 'i32' }), 1) end, 'softmax: x must be a float tensor')
  T.raises(function() K.softmax(tide.ones(2, 3), 2) end, 'dimension 3 out of range')
  T.raises(function() K.softmax(tide.ones(2, 3), -1, true) end, 'log_softmax')
  T.raises(function() K.softmax(nil, 0) end, 'x is NULL')
  T.raises(function() K.softmax_backward(tide.ones(2, 3), tide.ones(3, 2), 1) end, 'does not match')
  T.raises(function() K.softmax_backward(tide.ones(2, 3, { dtype = 'i64' }), tide.ones(2, 3), 1) end, 'dout must be a float')
  T.same(K.softmax(tide.ones(0, 3), 1):shape(), { 0, 3 })
end)

-- GELU backward ------------------------------------------------------------------------------

T.test('gelu backward passes gradcheck against the tanh-approximated forward', function()
  local rng = T.lcg(31)
  local k = math.sqrt(2 / math.pi)
  for _, vn in ipairs(view_names) do
    local V = views[vn]
    local xb = rand(rng, V.base({ 4, 6 }), 'f64', 4)
    local R = vals(rand(rng, { 4, 6 }))
    -- the forward against its formula
    local xv, yv = vals(V.view(xb)), vals(K.gelu(V.view(xb)))
    for i = 1, #xv do
      local x = xv[i]
      T.close(yv[i], 0.5 * x * (1 + math.tanh(k * (x + 0.044715 * x ^ 3))), { rtol = 1e-14, atol = 1e-15 })
    end
    local dx = K.gelu_backward(from(R, { 4, 6 }), V.view(xb))
    T.close(to_base(xb, V.view, dx), numgrad(xb, function() return dot(K.gelu(V.view(xb)), R) end), GRAD_TOL, vn)
  end
end)

T.test('gelu backward: f32 and bf16 against f64, tails, errors', function()
  local rng = T.lcg(32)
  local x = rand(rng, { 3, 1000 }, 'f32', 8)
  local dy = rand(rng, { 3, 1000 }, 'f32')
  local ref = K.gelu_backward(dy:double(), x:double())
  local g = K.gelu_backward(dy, x)
  T.eq(g:dtype(), 'f32')
  T.close(g, ref, { rtol = 1e-5, atol = 1e-7 })
  local gh = K.gelu_backward(dy:bfloat16(), x:bfloat16())
  T.eq(gh:dtype(), 'bf16')
  T.close(gh, K.gelu_backward(dy:bfloat16():double(), x:bfloat16():double()), { rtol = 1e-2, atol = 1e-2 })
  -- saturated tails: derivative 1 far right, 0 far left, no NaN
  local t = K.gelu_backward(tide.ones(4), from({ -50, -12, 12, 50 }, { 4 }, 'f32'))
  T.close(t, { 0, 0, 1, 1 }, { atol = 1e-6 })
  T.raises(function() K.gelu_backward(tide.ones(3), tide.ones(4)) end, 'does not match')
  T.raises(function() K.gelu_backward(tide.ones(3), tide.ones(3, { dtype = 'i64' })) end, 'float tensors')
  T.raises(function() K.gelu_backward(nil, tide.ones(3)) end, 'dout is NULL')
end)

-- embedding -------------------------------------------------------------------------------------

T.test('embedding gathers rows for any ids shape, dtype and weight layout', function()
  local rng = T.lcg(41)
  for _, vn in ipairs(view_names) do
    local V = views[vn]
    local w = V.view(rand(rng, V.base({ 10, 4 }), 'f32'))
    local wv = vals(w)
    for _, ids in ipairs { randids(rng, { 2, 3 }, 10), randids(rng, { 7 }, 10, 'i32'), tide.tensor(9, { dtype = 'i64' }),
                           tide.tensor({ 3, 3, 3, 0 }, { dtype = 'i64' }) } do
      local y = K.embedding(w, ids)
      local want = ids:shape()
      want[#want + 1] = 4
      T.same(y:shape(), want)
      T.eq(y:dtype(), 'f32')
      local iv, yv = vals(ids), vals(y)
      for i = 1, #iv do
        for c = 1, 4 do T.eq(yv[(i - 1) * 4 + c], wv[iv[i] * 4 + c]) end
      end
    end
  end
  -- non-contiguous ids, bf16 weight (copied exactly)
  local ids = tide.tensor({ { 1, 2 }, { 3, 4 } }, { dtype = 'i64' }):t()
  local w = rand(rng, { 5, 3 }, 'bf16')
  local y = K.embedding(w, ids)
  T.eq(y:dtype(), 'bf16')
  T.truthy(identical(y:select(1, 1):select(1, 2), w:select(1, 4)), 'ids are read in logical order (id 3 is row 4 in Lua)')
end)

T.test('embedding backward sums repeated ids and passes gradcheck', function()
  local rng = T.lcg(42)
  local ids = tide.tensor({ { 1, 4, 1 }, { 0, 1, 4 } }, { dtype = 'i64' })
  local wb = rand(rng, { 6, 5 }, 'f64')
  local R = vals(rand(rng, { 2, 3, 5 }))
  local dw = K.embedding_backward(from(R, { 2, 3, 5 }), ids, 6)
  T.same(dw:shape(), { 6, 5 })
  T.close(dw, numgrad(wb, function() return dot(K.embedding(wb, ids), R) end), GRAD_TOL)
  -- the reference sum by hand: row 1 gets three rows of dout, rows 2, 3, 5 none
  local dv, iv = vals(dw), vals(ids)
  for row = 0, 5 do
    for c = 1, 5 do
      local s = 0
      for i = 1, #iv do if iv[i] == row then s = s + R[(i - 1) * 5 + c] end end
      T.close(dv[row * 5 + c], s, { rtol = 1e-15, atol = 0 })
    end
  end
  -- f32 and bf16 keep their dtype; i32 ids; non-contiguous dout
  local dyf = rand(rng, { 5, 2, 3 }, 'f32'):permute(2, 1, 3)
  local idf = randids(rng, { 2, 5 }, 3, 'i32')
  local gf = K.embedding_backward(dyf, idf, 3)
  T.eq(gf:dtype(), 'f32')
  T.close(gf, K.embedding_backward(dyf:double(), idf, 3), { rtol = 1e-6, atol = 1e-7 })
  T.eq(K.embedding_backward(dyf:bfloat16(), idf, 3):dtype(), 'bf16')
end)

T.test('embedding backward does not depend on the thread count', function()
  local rng = T.lcg(43)
  local ids = randids(rng, { 4096 }, 7)   -- many repeats of few ids
  local dy = rand(rng, { 4096, 80 }, 'f32')
  local a = with_threads(1, function() return K.embedding_backward(dy, ids, 7) end)
  local b = with_threads(2, function() return K.embedding_backward(dy, ids, 7) end)
  T.truthy(identical(a, b), 'bitwise equal')
  T.close(a, K.embedding_backward(dy:double(), ids, 7), { rtol = 1e-4, atol = 1e-4 })
end)

T.test('embedding rejects bad ids, dtypes and shapes', function()
  local w = tide.ones(5, 3)
  T.raises(function() K.embedding(w, tide.tensor({ 1, 5 }, { dtype = 'i64' })) end, 'id 5 is out of range for an embedding of 5 rows')
  T.raises(function() K.embedding(w, tide.tensor({ -1 }, { dtype = 'i32' })) end, 'id -1 is out of range')
  T.raises(function() K.embedding(w, tide.tensor({ 1.0 }, { dtype = 'f32' })) end, 'ids must be an integer tensor')
  T.raises(function() K.embedding(tide.ones(5, 3, { dtype = 'i64' }), tide.tensor({ 1 })) end, 'weight must be a float tensor')
  T.raises(function() K.embedding(tide.ones(5), tide.tensor({ 1 })) end, 'weight must be 2-d')
  T.raises(function() K.embedding(nil, tide.tensor({ 1 })) end, 'weight is NULL')
  T.raises(function() K.embedding(w, nil) end, 'ids is NULL')
  T.raises(function() K.embedding_backward(tide.ones(2, 3), tide.tensor({ 1, 7 }), 5) end, 'id 7 is out of range')
  T.raises(function() K.embedding_backward(tide.ones(3, 3), tide.tensor({ 1, 2 }), 5) end, "ids' shape [2]")
  T.raises(function() K.embedding_backward(tide.ones(2, 3), tide.tensor({ 1, 2 }), -1) end, 'num_embeddings')
  T.raises(function() K.embedding_backward(tide.ones(2, 3, { dtype = 'i64' }), tide.tensor({ 1, 2 }), 5) end, 'dout must be a float')
  T.same(K.embedding(w, tide.tensor({}, { dtype = 'i64' })):shape(), { 0, 3 })
end)

-- cross_entropy ------------------------------------------------------------------------------------

-- Per-row losses (0 at ignored rows), their reductions, and lse.
local function ce_ref(x, t, ignore)
  local shape = x:shape()
  local Vn = shape[#shape]
  local xv, tv = vals(x), vals(t)
  local losses, lse, s, count = {}, {}, 0, 0
  for n = 0, #tv - 1 do
    local m = -math.huge
    for v = 1, Vn do m = math.max(m, xv[n * Vn + v]) end
    local e = 0
    for v = 1, Vn do e = e + math.exp(xv[n * Vn + v] - m) end
    lse[n + 1] = m + math.log(e)
    if tv[n + 1] == ignore then
      losses[n + 1] = 0
    else
      losses[n + 1] = lse[n + 1] - xv[n * Vn + tv[n + 1] + 1]
      s = s + losses[n + 1]
      count = count + 1
    end
  end
  return { none = from(losses, t:shape()), sum = s, mean = count > 0 and s / count or 0 / 0, lse = lse }
end

T.test('cross_entropy forward matches the reference for every reduction, shape and layout', function()
  local rng = T.lcg(51)
  for _, case in ipairs { { { 6, 5 }, { 6 } }, { { 2, 3, 7 }, { 2, 3 } }, { { 5 }, {} } } do
    local shape, tshape = case[1], case[2]
    local Vn = shape[#shape]
    for _, vn in ipairs(view_names) do
      local V = views[vn]
      local x = V.view(rand(rng, V.base(shape), 'f64', 4))
      for _, tdt in ipairs { 'i64', 'i32' } do
        local tv = vals(randids(rng, tshape, Vn))
        if #tv > 2 then tv[2] = -100; tv[#tv] = -100 end
        local t = #tshape == 0 and tide.tensor(tv[1], { dtype = tdt }) or from(tv, tshape, tdt)
        local ref = ce_ref(x, t, -100)
        local none, lse = K.cross_entropy(x, t, 'none')
        T.same(none:shape(), tshape)
        T.close(none, ref.none, { rtol = 1e-13, atol = 1e-14 }, vn)
        T.close(lse, ref.lse, { rtol = 1e-13, atol = 1e-14 })
        T.eq(lse:dtype(), 'f64')
        local sum = K.cross_entropy(x, t, 'sum')
        T.same(sum:shape(), {})
        T.close(sum:item(), ref.sum, { rtol = 1e-13, atol = 1e-14 })
        T.close(K.cross_entropy(x, t, 'mean'):item(), ref.mean, { rtol = 1e-13, atol = 1e-14 })
      end
    end
  end
end)

T.test('cross_entropy ignore_index: other values, all ignored (mean is NaN as in PyTorch)', function()
  local rng = T.lcg(52)
  local x = rand(rng, { 4, 6 }, 'f32', 3)
  local t = tide.tensor({ 0, 3, 0, 5 }, { dtype = 'i64' })
  local ref = ce_ref(x:double(), t, 0)
  T.close(K.cross_entropy(x, t, 'none', 0), ref.none, { rtol = 1e-6 })
  T.close(K.cross_entropy(x, t, 'mean', 0):item(), ref.mean, { rtol = 1e-6 })
  local all = tide.full({ 4 }, -100, { dtype = 'i64' })
  local mean = K.cross_entropy(x, all, 'mean'):item()
  T.truthy(mean ~= mean, 'mean over no targets is NaN')
  T.eq(K.cross_entropy(x, all, 'sum'):item(), 0)
  T.same(K.cross_entropy(x, all, 'none'):tolist(), { 0, 0, 0, 0 })
  -- its backward is all zeros, not NaN
  local _, lse = K.cross_entropy(x, all, 'mean')
  local g = K.cross_entropy_backward(tide.tensor(1, { dtype = 'f32' }), x, all, lse, 'mean')
  T.same(g:tolist(), tide.zeros(4, 6):tolist())
end)

T.test('cross_entropy f32 over a large vocabulary and bf16 logits', function()
  local rng = T.lcg(53)
  local x = rand(rng, { 5, 3000 }, 'f32', 6)
  local t = randids(rng, { 5 }, 3000)
  local ref = ce_ref(x:double(), t, -100)
  local none, lse = K.cross_entropy(x, t, 'none')
  T.eq(none:dtype(), 'f32'); T.eq(lse:dtype(), 'f32')
  T.close(none, ref.none, { rtol = 2e-6, atol = 2e-6 })
  T.close(lse, ref.lse, { rtol = 2e-7, atol = 0 })
  T.close(K.cross_entropy(x, t, 'mean'):item(), ref.mean, { rtol = 2e-6 })
  -- huge logits: the log-sum-exp is stable
  local big = from({ 1000, 0, -1000, 1000 }, { 2, 2 }, 'f32')
  T.close(K.cross_entropy(big, tide.tensor({ 1, 0 }), 'none'), { 1000, 2000 }, { rtol = 1e-6 })
  local xb = x:bfloat16()
  local lb = K.cross_entropy(xb, t, 'none')
  T.eq(lb:dtype(), 'bf16')
  T.close(lb, ce_ref(xb:double(), t, -100).none, { rtol = 1e-2, atol = 1e-2 })
end)

T.test('cross_entropy backward passes gradcheck for every reduction, with ignored rows', function()
  local rng = T.lcg(54)
  for _, case in ipairs { { { 5, 4 }, { 5 } }, { { 2, 2, 3 }, { 2, 2 } } } do
    local shape, tshape = case[1], case[2]
    for _, vn in ipairs(view_names) do
      local V = views[vn]
      local xb = rand(rng, V.base(shape), 'f64', 3)
      local tv = vals(randids(rng, tshape, shape[#shape]))
      tv[2] = -100
      local t = from(tv, tshape, 'i64')
      for _, red in ipairs { 'mean', 'sum', 'none' } do
        local R = red == 'none' and vals(rand(rng, tshape)) or { 0.7 }
        local d = red == 'none' and from(R, tshape) or tide.tensor(0.7, { dtype = 'f64' })
        local function obj() return dot(K.cross_entropy(V.view(xb), t, red), R) end
        local _, lse = K.cross_entropy(V.view(xb), t, red)
        local g = K.cross_entropy_backward(d, V.view(xb), t, lse, red)
        T.close(to_base(xb, V.view, g), numgrad(xb, obj), GRAD_TOL, red .. ' ' .. vn)
      end
    end
  end
end)

T.test('cross_entropy backward f32 agrees with f64 on the same values', function()
  local rng = T.lcg(55)
  local x = rand(rng, { 7, 2000 }, 'f32', 5)
  local tv = vals(randids(rng, { 7 }, 2000))
  tv[3] = -100
  local t = from(tv, { 7 }, 'i64')
  for _, red in ipairs { 'mean', 'sum', 'none' } do
    local d = red == 'none' and rand(rng, { 7 }, 'f32') or tide.tensor(1.5, { dtype = 'f32' })
    local _, lse = K.cross_entropy(x, t, red)
    local _, lse64 = K.cross_entropy(x:double(), t, red)
    local g = K.cross_entropy_backward(d, x, t, lse, red)
    T.eq(g:dtype(), 'f32')
    local ref = K.cross_entropy_backward(d:double(), x:double(), t, lse64, red)
    T.close(g, ref, { rtol = 5e-6, atol = 1e-10 }, red)
  end
  local xb = x:bfloat16()
  local _, lseb = K.cross_entropy(xb, t, 'mean')
  T.eq(lseb:dtype(), 'f32')
  local gb = K.cross_entropy_backward(tide.tensor(1, { dtype = 'f32' }), xb, t, lseb, 'mean')
  T.eq(gb:dtype(), 'bf16')
  local _, lse64 = K.cross_entropy(xb:double(), t, 'mean')
  T.close(gb, K.cross_entropy_backward(tide.tensor(1, { dtype = 'f64' }), xb:double(), t, lse64, 'mean'), { rtol = 1e-2, atol = 1e-5 })
end)

T.test('cross_entropy rejects bad targets, shapes and arguments', function()
  local x = tide.ones(3, 4)
  T.raises(function() K.cross_entropy(x, tide.tensor({ 0, 4, 1 }), 'mean') end, 'target 4 is out of range for 4 classes')
  T.raises(function() K.cross_entropy(x, tide.tensor({ 0, -1, 1 }), 'mean') end, 'target -1 is out of range')
  T.raises(function() K.cross_entropy(x, tide.tensor({ 0, 1 }), 'mean') end, 'targets of shape [2] do not match logits of shape [3, 4]')
  T.raises(function() K.cross_entropy(x, tide.tensor({ 0, 1, 2 }, { dtype = 'f32' }), 'mean') end, 'targets must be an integer tensor')
  T.raises(function() K.cross_entropy(tide.ones(3, 4, { dtype = 'i64' }), tide.tensor({ 0, 1, 2 }), 'mean') end, 'logits must be a float tensor')
  T.raises(function() K.cross_entropy(nil, tide.tensor({ 0 }), 'sum') end, 'logits is NULL')
  T.raises(function() K.cross_entropy(x, nil, 'sum') end, 'targets is NULL')
  T.raises(function() check(C.tide_cross_entropy(x._c, tide.tensor({ 0, 1, 2 })._c, -100, 7, slot[1], slot[2])) end, 'invalid reduction code 7')
  local t = tide.tensor({ 0, 1, 2 })
  local _, lse = K.cross_entropy(x, t, 'none')
  T.raises(function() K.cross_entropy_backward(tide.ones(2), x, t, lse, 'none') end, 'dloss of shape [2]')
  T.raises(function() K.cross_entropy_backward(tide.ones(3), x, t, lse, 'mean') end, 'must hold one value')
  T.raises(function() K.cross_entropy_backward(tide.tensor(1, { dtype = 'f32' }), x, t, tide.ones(2), 'mean') end, 'one value per row')
  T.raises(function() K.cross_entropy_backward(tide.tensor(1, { dtype = 'f32' }), x, t, nil, 'mean') end, 'lse is NULL')
end)

-- dropout ---------------------------------------------------------------------------------------------

T.test('dropout keeps about 1 - p of the elements (6 sigma) and scales them by 1/(1-p)', function()
  local n = 40000
  local x = tide.full({ 200, 200 }, 2, { dtype = 'f32' })
  for _, p in ipairs { 0.1, 0.5, 0.9 } do
    local g = tide.Generator(7)
    local y, mask = K.dropout(x, p, g)
    T.eq(mask:dtype(), 'u8')
    T.same(mask:shape(), { 200, 200 })
    local mv, yv = vals(mask), vals(y)
    local kept = 0
    local scaled = 2 * (1 / (1 - p))
    for i = 1, n do
      kept = kept + mv[i]
      T.truthy(mv[i] == 1 and math.abs(yv[i] - scaled) <= 1e-6 * scaled or mv[i] == 0 and yv[i] == 0, 'mask and output agree')
    end
    local sigma = math.sqrt(p * (1 - p) / n)
    T.truthy(math.abs(kept / n - (1 - p)) < 6 * sigma, ('kept fraction %.4f for p = %g'):format(kept / n, p))
    T.eq(g:get_state().offset, n / 4, 'one Philox block per 4 elements')
  end
end)

T.test('dropout follows the stream contract: mask = (rand_ of the same state >= p)', function()
  for _, shape in ipairs { { 7, 13 }, { 1001 } } do
    local g = tide.Generator(99)
    g:set_state({ seed = 99, offset = 12 })
    local u = tide.rand(shape, { generator = g })
    g:set_state({ seed = 99, offset = 12 })
    local _, mask = K.dropout(tide.ones(shape), 0.3, g)
    T.eq(g:get_state().offset, 12 + math.ceil(prod(shape) / 4))
    local uv, mv = vals(u), vals(mask)
    for i = 1, #uv do T.eq(mv[i], uv[i] >= 0.3 and 1 or 0) end
  end
end)

T.test('dropout is deterministic: same state, any layout, any thread count', function()
  local rng = T.lcg(61)
  local xb = rand(rng, { 300, 250 }, 'f32')
  local g = tide.Generator(3)
  local y1, m1 = with_threads(1, function() return K.dropout(xb, 0.2, g) end)
  g:set_state({ seed = 3, offset = 0 })
  local y2, m2 = with_threads(2, function() return K.dropout(xb, 0.2, g) end)
  T.truthy(identical(y1, y2) and identical(m1, m2), 'same output for 1 and 2 threads')
  -- a transposed input draws in its own logical order
  local xt = xb:t():contiguous()
  g:set_state({ seed = 3, offset = 0 })
  local yt, mt = K.dropout(xt, 0.2, g)
  g:set_state({ seed = 3, offset = 0 })
  local yv, mv = K.dropout(xb:t(), 0.2, g)
  T.truthy(identical(mt, mv) and identical(yt, yv), 'strided input = its contiguous copy')
  -- the next call continues the stream
  local _, m3 = K.dropout(xb, 0.2, g)
  T.truthy(not identical(m1, m3), 'a new call draws new numbers')
end)

T.test('dropout edges: p = 0 copies, p = 1 zeroes (no NaN), bf16, f64', function()
  local x = from({ 1, -2, math.huge, 4 }, { 2, 2 }, 'f32')
  local g = tide.Generator(1)
  local y, m = K.dropout(x, 0, g)
  T.same(y:tolist(), x:tolist()); T.same(m:tolist(), { { 1, 1 }, { 1, 1 } })
  T.truthy(y:data_ptr() ~= x:data_ptr(), 'a new tensor')
  y, m = K.dropout(x, 1, g)
  T.same(y:tolist(), { { 0, 0 }, { 0, 0 } }); T.same(m:tolist(), { { 0, 0 }, { 0, 0 } })
  T.eq(g:get_state().offset, 0, 'p = 0 and p = 1 draw nothing')
  T.same(K.dropout_backward(tide.full({ 2, 2 }, math.huge), m, 1):tolist(), { { 0, 0 }, { 0, 0 } })
  local yb = K.dropout(tide.ones(10, 10, { dtype = 'bf16' }), 0.5, g)
  T.eq(yb:dtype(), 'bf16')
  for _, v in ipairs(vals(yb)) do T.truthy(v == 0 or v == 2) end
  local yd = K.dropout(tide.ones(10, { dtype = 'f64' }), 0.75, g)
  for _, v in ipairs(vals(yd)) do T.truthy(v == 0 or v == 4) end
  T.same(K.dropout(tide.ones(0, 3), 0.5, g):shape(), { 0, 3 })
end)

T.test('dropout backward is dout * mask / (1 - p) and passes gradcheck', function()
  local rng = T.lcg(62)
  for _, vn in ipairs(view_names) do
    local V = views[vn]
    local xb = rand(rng, V.base({ 5, 6 }), 'f64')
    local R = vals(rand(rng, { 5, 6 }))
    local g = tide.Generator(11)
    local function obj()
      g:set_state({ seed = 11, offset = 0 })
      return dot((K.dropout(V.view(xb), 0.4, g)), R)
    end
    g:set_state({ seed = 11, offset = 0 })
    local _, mask = K.dropout(V.view(xb), 0.4, g)
    local dx = K.dropout_backward(from(R, { 5, 6 }), mask, 0.4)
    T.close(to_base(xb, V.view, dx), numgrad(xb, obj), GRAD_TOL, vn)
    local mv, dv = vals(mask), vals(dx)
    for i = 1, #R do T.eq(dv[i], mv[i] == 1 and R[i] / 0.6 or 0) end
  end
  -- f32 and bf16 dout, bool mask, non-contiguous mask
  local m = tide.tensor({ { 1, 0 }, { 0, 1 } }, { dtype = 'u8' })
  T.close(K.dropout_backward(tide.ones(2, 2), m:t(), 0.5), { { 2, 0 }, { 0, 2 } })
  T.eq(K.dropout_backward(tide.ones(2, 2, { dtype = 'bf16' }), m:to('bool'), 0.5):dtype(), 'bf16')
end)

T.test('dropout rejects bad p, dtypes, shapes and NULL arguments', function()
  local g = tide.Generator(1)
  for _, p in ipairs { -0.1, 1.5, 0 / 0 } do
    T.raises(function() K.dropout(tide.ones(3), p, g) end, 'probability p must be in [0, 1]')
    T.raises(function() K.dropout_backward(tide.ones(3), tide.ones(3, { dtype = 'u8' }), p) end, 'probability p')
  end
  T.raises(function() K.dropout(tide.ones(3, { dtype = 'i64' }), 0.5, g) end, 'x must be a float tensor')
  T.raises(function() K.dropout(tide.ones(3), 0.5, nil) end, 'generator is NULL')
  T.raises(function() K.dropout(nil, 0.5, g) end, 'x is NULL')
  T.raises(function() K.dropout_backward(tide.ones(3), tide.ones(4, { dtype = 'u8' }), 0.5) end, 'does not match mask')
  T.raises(function() K.dropout_backward(tide.ones(3), tide.ones(3), 0.5) end, 'mask must be a u8 or bool')
  T.raises(function() K.dropout_backward(tide.ones(3), nil, 0.5) end, 'mask is NULL')
end)

-- every entry point survives NULL handles and out slots ----------------------------------------------

T.test('NULL tensors and NULL out pointers are errors, never crashes', function()
  local x = tide.ones(2, 3)
  local calls = {
    function() return C.tide_layer_norm(x._c, nil, nil, 1e-5, nil, nil, nil) end,
    function() return C.tide_layer_norm_backward(nil, nil, nil, nil, nil, slot[1], nil, nil) end,
    function() return C.tide_layer_norm_backward(x._c, x._c, nil, x._c, x._c, nil, nil, nil) end,
    function() return C.tide_softmax(x._c, 0, 0, nil) end,
    function() return C.tide_softmax_backward(nil, x._c, 0, 0, slot[1]) end,
    function() return C.tide_softmax_backward(x._c, x._c, 0, 0, nil) end,
    function() return C.tide_gelu_backward(x._c, x._c, nil) end,
    function() return C.tide_embedding(x._c, tide.tensor({ 1 })._c, nil) end,
    function() return C.tide_embedding_backward(x._c, tide.tensor({ 1, 1 })._c, 3, nil) end,
    function() return C.tide_cross_entropy(x._c, tide.tensor({ 1, 1 })._c, -100, 1, nil, nil) end,
    function() return C.tide_cross_entropy_backward(nil, x._c, tide.tensor({ 1, 1 })._c, nil, -100, 1, slot[1]) end,
    function() return C.tide_cross_entropy_backward(tide.tensor(1.0)._c, x._c, tide.tensor({ 1, 1 })._c, x._c, -100, 1, nil) end,
    function() return C.tide_dropout(x._c, 0.5, tide.default_generator._g, nil, nil) end,
    function() return C.tide_dropout_backward(x._c, nil, 0.5, slot[1]) end,
    function() return C.tide_dropout_backward(x._c, x._c, 0.5, nil) end,
  }
  for i, f in ipairs(calls) do
    T.eq(f(), -1, 'call ' .. i)
    T.truthy(#ffi.string(C.tide_last_error()) > 0)
    for k = 1, 3 do slot[k][0] = nil end
  end
  -- mean/rstd and lse may be left out when not wanted
  check(C.tide_layer_norm(x._c, nil, nil, 1e-5, slot[1], nil, nil))
  T.same(take(1):shape(), { 2, 3 })
  check(C.tide_cross_entropy(x._c, tide.tensor({ 1, 2 })._c, -100, 1, slot[1], nil))
  T.same(take(1):shape(), {})
end)

-- F.residual_layer_norm (x + r, then layer norm over the last dim, in one op):
-- on the CPU the same bits as x + r then F.layer_norm, forward and every
-- gradient, in f32, bf16, f16 and f64 (GPT-2's CPU results depend on it);
-- gradients from s, from y, or both (the multi-output autograd node);
-- gradcheck in f64; r = nil; non-contiguous operands; bad input.
local T = require 'tide.testing'
local F = tide.F
local gradcheck = tide.autograd.gradcheck

-- Same bits: equal values, the same sign of zero, NaN where NaN.
local function same_bits(a, b, what)
  T.same(a:shape(), b:shape(), what .. ' (shape)')
  T.eq(a:dtype(), b:dtype(), what .. ' (dtype)')
  local fa, fb = T.flatten(a), T.flatten(b)
  for i = 1, #fa do
    local x, y = fa[i], fb[i]
    local ok = (x ~= x and y ~= y) or (x == y and (x ~= 0 or 1 / x == 1 / y))
    if not ok then error(('%s: element %d is %.17g, unfused %.17g'):format(what, i, x, y), 2) end
  end
end

-- The fused op and the unfused ops on copies of the same leaves, gradients from
-- gs (on s) and gy (on y), either of which may be nil.
local function fused_and_unfused(x, r, w, b, gs, gy, eps)
  local function leaves()
    local function leaf(t) return t and t:detach():clone():requires_grad_(true) end
    return leaf(x), leaf(r), leaf(w), leaf(b)
  end
  local res = {}
  for k, fused in ipairs { true, false } do
    local lx, lr, lw, lb = leaves()
    local s, y
    if fused then
      s, y = F.residual_layer_norm(lx, lr, lw, lb, eps)
    else
      s = lr and lx + lr or lx
      y = F.layer_norm(s, s:size(-1), lw, lb, eps)
    end
    local loss
    if gs then loss = (s * gs):sum() end
    if gy then
      local ly = (y * gy):sum()
      loss = loss and loss + ly or ly
    end
    loss:backward()
    res[k] = { s = s, y = y, dx = lx.grad, dr = lr and lr.grad, dw = lw and lw.grad, db = lb and lb.grad }
  end
  return res[1], res[2]
end

local function randn(shape, dt, scale, offset)
  local t = tide.randn(unpack(shape))
  if scale then t = t * scale end
  if offset then t = t + offset end
  return t:to(dt)
end

T.test('residual_layer_norm: the bits of x + r then layer_norm on the cpu, forward and backward', function()
  tide.manual_seed(11)
  for _, dt in ipairs { 'f32', 'bf16', 'f16', 'f64' } do
    for _, shape in ipairs { { 4, 7 }, { 2, 3, 64 }, { 1, 1 }, { 3, 768 } } do
      local C = shape[#shape]
      local x, r = randn(shape, dt, 2, 0.5), randn(shape, dt)
      local w, b = randn({ C }, dt, 0.5, 1), randn({ C }, dt)
      local gs, gy = randn(shape, dt), randn(shape, dt)
      local what = ('%s [%s]'):format(dt, table.concat(shape, ', '))
      for _, grads in ipairs { { gs, gy }, { nil, gy }, { gs, nil } } do
        local f, u = fused_and_unfused(x, r, w, b, grads[1], grads[2], 1e-5)
        same_bits(f.s, u.s, what .. ' s')
        same_bits(f.y, u.y, what .. ' y')
        same_bits(f.dx, u.dx, what .. ' dx')
        same_bits(f.dr, u.dr, what .. ' dr')
        if grads[2] then
          same_bits(f.dw, u.dw, what .. ' dweight')
          same_bits(f.db, u.db, what .. ' dbias')
        else
          -- only s is used: no gradient reaches the norm's parameters
          T.eq(f.dw, nil, what .. ' dweight without dy')
          T.eq(f.db, nil, what .. ' dbias without dy')
        end
      end
    end
  end
end)

T.test('residual_layer_norm: r = nil gives s = x itself; weight and bias optional', function()
  tide.manual_seed(12)
  local x = tide.randn(5, 9)
  local w, b = tide.randn(9), tide.randn(9)
  local s, y = F.residual_layer_norm(x, nil, w, b)
  T.truthy(rawequal(s, x), 's is x, not a copy')
  same_bits(y, F.layer_norm(x, 9, w, b), 'y without r')
  -- the gradient of x sums its own uses and the norm's
  local g = tide.randn(5, 9)
  local f, u = fused_and_unfused(x, nil, w, b, nil, g, 1e-5)
  same_bits(f.dx, u.dx, 'dx without r')
  same_bits(f.dw, u.dw, 'dweight without r')
  for _, aff in ipairs { { w, nil }, { nil, b }, { nil, nil } } do
    local r = tide.randn(5, 9)
    local f2, u2 = fused_and_unfused(x, r, aff[1], aff[2], g, g, 1e-3)
    same_bits(f2.y, u2.y, 'y, partial affine')
    same_bits(f2.dx, u2.dx, 'dx, partial affine')
    if aff[1] then same_bits(f2.dw, u2.dw, 'dweight, weight only') end
    if aff[2] then same_bits(f2.db, u2.db, 'dbias, bias only') end
  end
end)

T.test('residual_layer_norm: non-contiguous operands and s feeding further ops', function()
  tide.manual_seed(13)
  local x, r = tide.randn(6, 5):t(), tide.randn(5, 6)
  local w, b = tide.randn(6), tide.randn(6)
  local s, y = F.residual_layer_norm(x, r, w, b)
  same_bits(s, x + r, 's of a transposed x')
  same_bits(y, F.layer_norm(x + r, 6, w, b), 'y of a transposed x')
  -- a residual stream: s used twice further on, y once; the gradients sum as unfused
  local leaf = function(t) return t:detach():clone():requires_grad_(true) end
  local res = {}
  for k, fused in ipairs { true, false } do
    local lx, lr, lw = leaf(x), leaf(r), leaf(w)
    local s1, y1
    if fused then s1, y1 = F.residual_layer_norm(lx, lr, lw, nil)
    else s1 = lx + lr; y1 = F.layer_norm(s1, 6, lw) end
    local s2, y2
    if fused then s2, y2 = F.residual_layer_norm(s1, y1:tanh(), lw, nil)
    else s2 = s1 + y1:tanh(); y2 = F.layer_norm(s2, 6, lw) end
    local loss = (s2 * s1):sum() + y2:square():sum()
    loss:backward()
    res[k] = { lx.grad, lr.grad, lw.grad }
  end
  same_bits(res[1][1], res[2][1], 'chained dx')
  same_bits(res[1][2], res[2][2], 'chained dr')
  same_bits(res[1][3], res[2][3], 'chained dweight')
end)

T.test('gradcheck: F.residual_layer_norm, from s and y', function()
  local rng = T.lcg(99)
  local p = function(shape, lo, hi) return T.rand_param(rng, shape, lo, hi) end
  local x, r, w, b = p({ 3, 5 }), p({ 3, 5 }), p({ 5 }, 0.5, 1.5), p({ 5 })
  gradcheck(function(x, r, w, b)
    local s, y = F.residual_layer_norm(x, r, w, b, 1e-5)
    return s:square() + y
  end, { x, r, w, b })
  gradcheck(function(x, r, w, b)
    local _, y = F.residual_layer_norm(x, r, w, b, 1e-5)
    return y
  end, { x, r, w, b })
  gradcheck(function(x, w)
    local _, y = F.residual_layer_norm(x, nil, w, nil, 1e-5)
    return y
  end, { p({ 2, 2, 4 }), p({ 4 }) })
end)

T.test('residual_layer_norm: bad input is an error naming the shapes and dtypes', function()
  local x, r = tide.randn(2, 4), tide.randn(2, 4)
  local w, b = tide.randn(4), tide.randn(4)
  T.raises(function() F.residual_layer_norm(x, tide.randn(2, 3), w, b) end,
    'residual_layer_norm: r of shape [2, 3] does not match x of shape [2, 4]')
  T.raises(function() F.residual_layer_norm(x, tide.randn(1, 4), w, b) end, 'does not match x of shape [2, 4]')
  T.raises(function() F.residual_layer_norm(x, r:double(), w, b) end,
    'residual_layer_norm: r has dtype f64 but x has f32 (expected the same dtype)')
  T.raises(function() F.residual_layer_norm(x, r, w:to('bf16'), b) end,
    'residual_layer_norm: weight has dtype bf16 but x has f32')
  T.raises(function() F.residual_layer_norm(x, r, w, tide.randn(5)) end,
    'residual_layer_norm: bias must have shape [4]')
  T.raises(function() F.residual_layer_norm(x, r, w, b, -1) end, 'eps must be finite and >= 0, got -1')
  T.raises(function() F.residual_layer_norm(x, r, w, b, 'big') end, 'eps must be a number, got string')
  T.raises(function() F.residual_layer_norm(tide.zeros(2, 4, { dtype = 'i64' }), nil, w, b) end,
    'x must be a float tensor')
  T.raises(function() F.residual_layer_norm(x, 3) end, 'residual_layer_norm: r must be a tensor, got number')
  T.raises(function() F.residual_layer_norm(tide.tensor(1.5)) end, 'got a 0-d tensor')
end)

T.test('residual_layer_norm_backward through the C API: checks and ds alone', function()
  local C = require 'tide.C'
  local ffi = require 'ffi'
  local o1, o2, o3 = ffi.new('tide_tensor*[1]'), ffi.new('tide_tensor*[1]'), ffi.new('tide_tensor*[1]')
  local s, w = tide.randn(3, 4), tide.randn(4)
  local mean, rstd = tide.zeros(3), tide.ones(3)
  local function err() return ffi.string(C.tide_last_error()) end
  T.eq(C.tide_residual_layer_norm_backward(nil, nil, s._c, w._c, mean._c, rstd._c, o1, o2, o3), -1)
  T.truthy(err():find('ds and dout are both NULL', 1, true), err())
  T.eq(C.tide_residual_layer_norm_backward(nil, tide.randn(3, 4)._c, s._c, w._c, mean:double()._c, rstd._c, o1, o2, o3), -1)
  T.truthy(err():find('mean and rstd must be f32 for s of dtype f32', 1, true), err())
  T.eq(C.tide_residual_layer_norm_backward(nil, tide.randn(3, 5)._c, s._c, w._c, mean._c, rstd._c, o1, o2, o3), -1)
  T.truthy(err():find('dout of shape [3, 5] does not match s of shape [3, 4]', 1, true), err())
  -- only ds: dx is ds itself, and no parameter gradients
  local ds = tide.randn(3, 4)
  T.eq(C.tide_residual_layer_norm_backward(ds._c, nil, s._c, w._c, mean._c, rstd._c, o1, o2, o3), 0)
  T.truthy(o1[0] == ds._c, 'dx is ds')
  T.truthy(o2[0] == nil and o3[0] == nil, 'no dweight or dbias without dout')
  C.tide_tensor_release(o1[0])
end)

-- F.linear / F.conv1d_gpt2 with the fused bias and activation (tide_linear_act):
-- on the CPU the fused kernel must give exactly the bits of the unfused ops
-- (matmul, add, gelu and their backward), so GPT-2 stays equal to its golden
-- files; gradcheck in f64 with and without bias and GELU; bad input.
local T = require 'tide.testing'
local F = tide.F
local gradcheck = tide.autograd.gradcheck

local rng = T.lcg(1414)
local function p(shape, lo, hi) return T.rand_param(rng, shape, lo, hi) end

-- the unfused ops the layer replaces, as nn.Linear / nn.Conv1D computed before
local function unfused(x, w, b, act, transw)
  local shape = x:shape()
  local x2 = #shape == 2 and x or x:reshape(-1, shape[#shape])
  local y = x2:matmul(transw and w:t() or w)
  if b ~= nil then y = y + b end
  if act == 'gelu' then y = y:gelu() end
  shape[#shape] = y:size(2)
  return #shape == 2 and y or y:view(shape)
end

-- forward and every gradient of fn(x, w, b), with the output gradient g
local function run(fn, x, w, b, g)
  x = x:detach():requires_grad_(true)
  w = w:detach():requires_grad_(true)
  if b ~= nil then b = b:detach():requires_grad_(true) end
  local y = fn(x, w, b)
  y:backward(g)
  return y, x.grad, w.grad, b and b.grad
end

local function expect_same_bits(a, b, what)
  T.eq(a:dtype(), b:dtype(), what .. ' dtype')
  T.same(a:shape(), b:shape(), what .. ' shape')
  T.truthy(a:equal(b), what .. ': bits differ (max diff ' .. (a:to('f64') - b:to('f64')):abs():max():item() .. ')')
end

local layers = {
  { 'linear', F.linear, true },
  { 'conv1d_gpt2', F.conv1d_gpt2, false },
}

T.test('on the cpu the fused layer is the unfused ops bit for bit, forward and backward', function()
  tide.manual_seed(14)
  for _, l in ipairs(layers) do
    local name, fn, transw = l[1], l[2], l[3]
    for _, dt in ipairs { 'f32', 'f64', 'bf16' } do
      for _, act in ipairs { 'none', 'gelu' } do
        for _, with_bias in ipairs { true, false } do
          -- odd sizes, a 3-d input, a few-row input (the generation path) and a 2-d one
          for _, xs in ipairs { { 2, 7, 13 }, { 3, 13 }, { 1, 1, 13 } } do
            local K, N = 13, 17
            local x = (tide.randn(xs) * 2):to(dt)
            local w = tide.randn(transw and { N, K } or { K, N }):to(dt)
            local b = with_bias and tide.randn(N):to(dt) or nil
            local a = act == 'gelu' and 'gelu' or nil
            local gs = {}
            for i = 1, #xs - 1 do gs[i] = xs[i] end
            gs[#xs] = N
            local g = tide.randn(gs):to(dt)
            local what = ('%s %s act=%s bias=%s x=[%s]'):format(name, dt, act, tostring(with_bias), table.concat(xs, ','))
            local y1, dx1, dw1, db1 = run(function(x_, w_, b_) return fn(x_, w_, b_, a) end, x, w, b, g)
            local y2, dx2, dw2, db2 = run(function(x_, w_, b_) return unfused(x_, w_, b_, a, transw) end, x, w, b, g)
            expect_same_bits(y1, y2, what .. ' y')
            expect_same_bits(dx1, dx2, what .. ' dx')
            expect_same_bits(dw1, dw2, what .. ' dw')
            if with_bias then expect_same_bits(db1, db2, what .. ' db') end
          end
        end
      end
    end
  end
end)

T.test('mixed dtypes and strided operands compute as the unfused ops do', function()
  tide.manual_seed(15)
  local x, w, b = tide.randn(4, 6), tide.randn(6, 5):to('f64'), tide.randn(5):to('bf16')
  expect_same_bits(F.conv1d_gpt2(x, w, b, 'gelu'), unfused(x, w, b, 'gelu', false), 'mixed dtypes')
  -- a transposed input and a weight view with a padded row stride
  local xt = tide.randn(6, 4):t()
  local wn = tide.randn(6, 9):narrow(2, 2, 5)
  expect_same_bits(F.conv1d_gpt2(xt, wn, b:to('f32'), 'gelu'), unfused(xt, wn, b:to('f32'), 'gelu', false), 'strided')
  local wl = tide.randn(5, 6)
  expect_same_bits(F.linear(xt, wl, nil, 'gelu'), unfused(xt, wl, nil, 'gelu', true), 'linear strided')
  -- a 1-d input is one row, and gives a 1-d result as torch's linear does
  local v = tide.randn(6)
  T.same(F.linear(v, wl, nil):shape(), { 5 })
  expect_same_bits(F.linear(v, wl, b:to('f32'), 'gelu'), unfused(v:view(1, 6), wl, b:to('f32'), 'gelu', true):view(5), '1-d')
end)

T.test('empty inputs', function()
  local w, b = tide.randn(3, 4), tide.randn(4)
  T.same(F.conv1d_gpt2(tide.zeros(0, 3), w, b, 'gelu'):shape(), { 0, 4 })
  -- K = 0: y = act(bias)
  local y = F.conv1d_gpt2(tide.zeros(2, 0), tide.zeros(0, 4), b, 'gelu')
  expect_same_bits(y, b:gelu():view(1, 4):expand(2, 4):contiguous(), 'k == 0')
end)

T.test('gradcheck in f64: bias and GELU each on and off', function()
  for _, l in ipairs(layers) do
    local name, fn, transw = l[1], l[2], l[3]
    for _, act in ipairs { 'gelu', 'none' } do
      local a = act == 'gelu' and 'gelu' or nil
      local ok, err = pcall(gradcheck, function(x, w, b) return fn(x, w, b, a) end,
        { p({ 2, 3, 4 }), p(transw and { 5, 4 } or { 4, 5 }), p({ 5 }) })
      if not ok then error(name .. ' ' .. act .. ': ' .. tostring(err), 0) end
      ok, err = pcall(gradcheck, function(x, w) return fn(x, w, nil, a) end, { p({ 3, 4 }), p(transw and { 2, 4 } or { 4, 2 }) })
      if not ok then error(name .. ' ' .. act .. ' no bias: ' .. tostring(err), 0) end
    end
  end
end)

T.test('the GELU input is kept only where the activation needs it', function()
  -- only the weight wants a gradient: dx is not computed, and a frozen bias gets none
  local x, w, b = tide.randn(3, 4), tide.randn(4, 5):requires_grad_(true), tide.randn(5)
  F.conv1d_gpt2(x, w, b, 'gelu'):sum():backward()
  T.truthy(w.grad ~= nil, 'weight gradient')
  T.eq(b.grad, nil, 'no gradient for a bias that does not want one')
  T.eq(x.grad, nil, 'no gradient for the input')
end)

T.test('bad input: the activation, shapes and dtypes are named', function()
  local x, w, b = tide.randn(2, 3, 4), tide.randn(5, 4), tide.randn(5)
  T.raises(function() F.linear(x, w, b, 'relu') end, [[linear: act must be nil or 'gelu' (the tanh GELU), got "relu"]])
  T.raises(function() F.conv1d_gpt2(x, w:t(), b, 1) end, "conv1d: act must be nil or 'gelu' (the tanh GELU), got number")
  T.raises(function() F.linear(x, tide.randn(5, 3), b) end, 'linear: input of shape [6, 4] does not match weight of shape [5, 3]')
  T.raises(function() F.conv1d_gpt2(x, tide.randn(3, 5), b) end, 'layout [in, out]')
  T.raises(function() F.linear(x, w, tide.randn(4)) end, 'linear: bias of shape [4] does not match the 5 output features')
  T.raises(function() F.linear(x, tide.randn(5, 4, 1), b) end, 'linear: weight must be 2-d, got shape [5, 4, 1]')
  T.raises(function() F.linear(x:to('i64'), w:to('i64')) end, 'linear: input, weight and bias must be float tensors, got i64, i64')
  T.raises(function() F.linear(x, 'w') end, 'linear: weight must be a tensor, got string')
  -- each error points at the line that called F.linear
  for _, f in ipairs { function() F.linear(x, w, b, 'relu') end, function() F.linear(x, tide.randn(5, 3), b) end,
                       function() F.conv1d_gpt2(x, 'w') end } do
    local _, err = pcall(f)
    T.truthy(tostring(err):find('test_linear.lua', 1, true), 'the error names its caller: ' .. tostring(err))
  end
end)

T.test('nn.Linear and nn.Conv1D take the activation in forward', function()
  tide.manual_seed(3)
  local lin, conv = tide.nn.Linear(4, 6), tide.nn.Conv1D(6, 4)
  local x = tide.randn(2, 4)
  expect_same_bits(lin(x, 'gelu'), unfused(x, lin.weight, lin.bias, 'gelu', true), 'nn.Linear gelu')
  expect_same_bits(conv(x, 'gelu'), unfused(x, conv.weight, conv.bias, 'gelu', false), 'nn.Conv1D gelu')
  expect_same_bits(conv(x), unfused(x, conv.weight, conv.bias, nil, false), 'nn.Conv1D')
end)

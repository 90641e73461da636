-- The op registry (lua/tide/ops/registry.lua): every op defined there is
-- either differentiable, and then has a gradcheck below, or marked
-- non-differentiable on purpose. Adding an op without a backward, or a
-- backward without a gradcheck here, fails this file.
local T = require 'tide.testing'
local reg = require 'tide.ops.registry'
local gradcheck = tide.autograd.gradcheck
local F = tide.F

local rng = T.lcg(1010)
local function p(shape, lo, hi) return T.rand_param(rng, shape, lo, hi) end
local function ids(list) return tide.tensor(list, { dtype = 'i64' }) end

-- name -> function returning (fn, inputs) for gradcheck
local cases = {}
local function unary(name, lo, hi)
  cases[name] = function() return function(x) return x[name](x) end, { p({ 3, 4 }, lo, hi) } end
end
for _, name in ipairs { 'neg', 'abs', 'exp', 'tanh', 'sigmoid', 'relu', 'sin', 'cos', 'expm1', 'square', 'gelu' } do
  unary(name)
end
for _, name in ipairs { 'log', 'sqrt', 'rsqrt', 'log1p', 'reciprocal' } do unary(name, 0.5, 2) end
-- zero gradient almost everywhere: away from the steps
for _, name in ipairs { 'floor', 'ceil', 'round', 'sign' } do unary(name, 0.1, 0.4) end
local function binary(name, lo, hi)
  cases[name] = function()
    return function(a, b) return a[name](a, b) end, { p({ 3, 4 }, lo, hi), p({ 4 }, lo, hi) }
  end
end
for _, name in ipairs { 'add', 'sub', 'mul', 'maximum', 'minimum' } do binary(name) end
binary('div', 0.5, 2)
binary('pow', 0.5, 2)
cases.clamp = function() return function(x) return x:clamp(-0.5, 0.5) end, { p({ 3, 4 }) } end
cases.where = function()
  local c = tide.tensor({ true, false, true, false })
  return function(a, b) return a:where(c, b) end, { p({ 3, 4 }), p({ 4 }) }
end
cases['tide.where'] = function()
  local c = tide.tensor({ true, false, true, false })
  return function(a, b) return tide.where(c, a, b) end, { p({ 3, 4 }), p({ 4 }) }
end
for _, name in ipairs { 'sum', 'mean', 'amax', 'amin', 'logsumexp' } do
  cases[name] = function() return function(x) return x[name](x, 2) end, { p({ 3, 4 }) } end
end
for _, name in ipairs { 'var', 'std' } do
  cases[name] = function() return function(x) return x[name](x, 2) end, { p({ 3, 4 }) } end
end
for _, name in ipairs { 'max', 'min' } do
  cases[name] = function() return function(x) return (x[name](x, 2)) end, { p({ 3, 4 }) } end
end
cases.cumsum = function() return function(x) return x:cumsum(2) end, { p({ 3, 4 }) } end
cases.matmul = function() return function(a, b) return a:matmul(b) end, { p({ 2, 3, 4 }), p({ 4, 2 }) } end
cases.mm = function() return function(a, b) return a:mm(b) end, { p({ 3, 4 }), p({ 4, 2 }) } end
cases.bmm = function() return function(a, b) return a:bmm(b) end, { p({ 2, 3, 4 }), p({ 2, 4, 2 }) } end
cases.mv = function() return function(a, b) return a:mv(b) end, { p({ 3, 4 }), p({ 4 }) } end
cases.dot = function() return function(a, b) return a:dot(b) end, { p({ 4 }), p({ 4 }) } end
cases.outer = function() return function(a, b) return a:outer(b) end, { p({ 3 }), p({ 4 }) } end
cases.index_select = function() return function(x) return x:index_select(1, ids { 2, 0, 2 }) end, { p({ 3, 4 }) } end
cases.gather = function()
  return function(x) return x:gather(2, ids { { 0, 3 }, { 1, 1 }, { 2, 0 } }) end, { p({ 3, 4 }) }
end
cases.masked_fill = function()
  return function(x) return x:masked_fill(tide.tensor({ true, false, false, true }), 0) end, { p({ 3, 4 }) }
end
for _, name in ipairs { 'split', 'chunk' } do
  cases[name] = function() return function(x) return x[name](x, 2, 2)[2] end, { p({ 3, 4 }) } end
end
cases.unbind = function() return function(x) return x:unbind(1)[2] end, { p({ 3, 4 }) } end
cases.sort = function() return function(x) return (x:sort(2)) end, { p({ 3, 4 }) } end
cases.topk = function() return function(x) return (x:topk(2, 2)) end, { p({ 3, 4 }) } end
cases.cat = function() return function(a, b) return tide.cat({ a, b }, 2) end, { p({ 3, 2 }), p({ 3, 4 }) } end
cases.stack = function() return function(a, b) return tide.stack({ a, b }, 1) end, { p({ 3, 4 }), p({ 3, 4 }) } end
local views = {
  view = function(x) return x:view(4, 3) end, reshape = function(x) return x:reshape(2, 6) end,
  flatten = function(x) return x:flatten() end, squeeze = function(x) return x:view(3, 1, 4):squeeze(2) end,
  unsqueeze = function(x) return x:unsqueeze(1) end, view_as = function(x) return x:view_as(tide.zeros(12)) end,
  reshape_as = function(x) return x:reshape_as(tide.zeros(6, 2)) end,
  contiguous = function(x) return x:t():contiguous() end, clone = function(x) return x:clone() end,
  to = function(x) return x:to('f32'):to('f64') end, transpose = function(x) return x:transpose(1, 2) end,
  t = function(x) return x:t() end, permute = function(x) return x:permute(2, 1) end,
  expand = function(x) return x:view(3, 1, 4):expand(3, 2, 4) end,
  expand_as = function(x) return x:view(3, 1, 4):expand_as(tide.zeros(3, 2, 4)) end,
  narrow = function(x) return x:narrow(2, 2, 2) end, select = function(x) return x:select(2, 3) end,
}
for name, f in pairs(views) do cases[name] = function() return f, { p({ 3, 4 }) } end end
-- through f32: steps large enough for its rounding
cases.to = function() return views.to, { p({ 3, 4 }) }, { eps = 1e-2, atol = 1e-4 } end
cases['F.embedding'] = function()
  return function(w) return F.embedding(ids { 1, 0, 3, 1 }, w) end, { p({ 4, 3 }) }
end
-- repeated ids and positions given as a number, a shared row and per row
cases['F.gpt2_embedding'] = function()
  return function(wte, wpe)
    local x = ids { { 1, 0, 3 }, { 1, 1, 2 } }
    return F.gpt2_embedding(x, wte, wpe, 1) + F.gpt2_embedding(x, wte, wpe, ids { { 4, 0, 4 } })
      + F.gpt2_embedding(x, wte, wpe, ids { { 0, 1, 2 }, { 2, 2, 0 } })
  end, { p({ 4, 3 }), p({ 5, 3 }) }
end
-- packed q | k | v of 2 heads of D = 2, causal, with a key mask
cases['F.qkv_attention'] = function()
  local mask = tide.tensor({ { true, true, false }, { true, true, true } })
  return function(qkv) return F.qkv_attention(qkv, 2, { is_causal = true, key_mask = mask }) end, { p({ 2, 3, 12 }) }
end
cases['F.layer_norm'] = function()
  return function(x, w, b) return F.layer_norm(x, 4, w, b) end, { p({ 3, 4 }), p({ 4 }), p({ 4 }) }
end
-- the layers with the fused bias and tanh GELU (the f64 fused kernel), from rows of a 3-d input
cases['F.linear'] = function()
  return function(x, w, b) return F.linear(x, w, b, 'gelu') end, { p({ 2, 3, 4 }), p({ 5, 4 }), p({ 5 }) }
end
cases['F.conv1d_gpt2'] = function()
  return function(x, w, b) return F.conv1d_gpt2(x, w, b, 'gelu') end, { p({ 2, 3, 4 }), p({ 4, 5 }), p({ 5 }) }
end
-- both outputs carry gradient: s squared so ds and dy differ
cases['F.residual_layer_norm'] = function()
  return function(x, r, w, b)
    local s, y = F.residual_layer_norm(x, r, w, b)
    return s:square() + y
  end, { p({ 3, 4 }), p({ 3, 4 }), p({ 4 }), p({ 4 }) }
end
cases['F.softmax'] = function() return function(x) return F.softmax(x, -1) end, { p({ 3, 4 }) } end
cases['F.log_softmax'] = function() return function(x) return F.log_softmax(x, -1) end, { p({ 3, 4 }) } end
cases['F.dropout'] = function()
  return function(x)
    return F.dropout(x, 0.5, true, { generator = tide.Generator(7) })
  end, { p({ 3, 4 }) }
end
cases['F.scaled_dot_product_attention'] = function()
  return function(q, k, v) return F.scaled_dot_product_attention(q, k, v, { is_causal = true }) end,
    { p({ 1, 2, 3, 4 }), p({ 1, 2, 3, 4 }), p({ 1, 2, 3, 4 }) }
end
cases['F.cross_entropy'] = function()
  return function(x) return F.cross_entropy(x, ids { 0, 3, 2 }) end, { p({ 3, 4 }) }
end

T.test('every op is differentiable with a gradcheck here, or marked not differentiable', function()
  T.truthy(#reg.order > 50, 'the registry holds the ops')
  local missing = {}
  for _, d in ipairs(reg.order) do
    if not d.nondiff and not cases[d.name] then missing[#missing + 1] = d.name end
  end
  T.same(missing, {}, 'differentiable ops without a gradcheck in test_registry.lua')
  for name in pairs(cases) do
    T.truthy(reg.differentiable(name), name .. ' has a case but is not a differentiable op in the registry')
  end
end)

T.test('each differentiable op passes gradcheck', function()
  local names = {}
  for name in pairs(cases) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local fn, inputs, opts = cases[name]()
    local ok, err = pcall(gradcheck, fn, inputs, opts)
    if not ok then error(name .. ': ' .. tostring(err), 0) end
  end
end)

T.test('a definition needs exactly one of backward, wrap, recorded or nondiff', function()
  T.raises(function() reg.def { 'no_such_op', forward = function() end } end, 'needs exactly one of')
  T.raises(function() reg.def { 'exp', nondiff = 'x' } end, 'defined twice')
end)

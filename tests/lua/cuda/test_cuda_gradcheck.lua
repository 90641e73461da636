-- gradcheck (central differences in f64) of the differentiable ops on cuda:
-- the backward formulas reuse the ops, so on the device they run the CUDA
-- kernels of both passes; f64 is exact enough to compare with differences.
local T = require 'tide.testing'
local F = tide.F
local gradcheck = tide.autograd.gradcheck

local rng = T.lcg(11)
-- an f64 leaf on cuda that requires grad, values in [lo, hi)
local function param(shape, lo, hi)
  return T.rand_param(rng, shape, lo, hi):detach():to('cuda'):requires_grad_()
end

local function check(name, fn, inputs, opts)
  local ok, err = pcall(gradcheck, fn, inputs, opts)
  if not ok then error(name .. ': ' .. tostring(err), 2) end
end

T.test('elementwise, reductions and views on cuda', function()
  T.need_cuda()
  local a, b = param({ 2, 3 }), param({ 3 }, 0.5, 2)
  check('add/mul/div broadcast', function(x, y) return x * y + x / y - y end, { a, b })
  check('exp/tanh/sigmoid', function(x) return x:exp() + x:tanh() * x:sigmoid() end, { a })
  check('gelu', function(x) return F.gelu(x) end, { a })
  check('pow', function(x, y) return y:pow(x) end, { a, b })
  check('sum/mean over dims', function(x) return x:sum(2) + x:mean(1):sum() end, { a })
  check('max', function(x) return x:max(2) end, { param({ 3, 4 }) })
  check('transpose/contiguous', function(x) return x:t():contiguous() * 2 end, { a })
  check('cumsum', function(x) return x:cumsum(2) end, { a })
end)

T.test('matmul, softmax, layer norm and cross-entropy on cuda', function()
  T.need_cuda()
  check('matmul', function(x, y) return x:matmul(y) end, { param({ 2, 3 }), param({ 3, 2 }) })
  check('bmm broadcast', function(x, y) return x:matmul(y) end, { param({ 2, 2, 3 }), param({ 3, 2 }) })
  check('softmax', function(x) return F.softmax(x, 2) end, { param({ 2, 4 }) })
  check('log_softmax dim 1', function(x) return F.log_softmax(x, 1) end, { param({ 3, 2 }) })
  check('layer_norm', function(x, w, bb) return F.layer_norm(x, { 4 }, w, bb) end,
        { param({ 2, 4 }), param({ 4 }), param({ 4 }) })
  check('residual_layer_norm', function(x, r, w, bb)
    local s, y = F.residual_layer_norm(x, r, w, bb)
    return s:square() + y
  end, { param({ 2, 4 }), param({ 2, 4 }), param({ 4 }), param({ 4 }) })
  local tgt = tide.tensor({ 1, 0, 3 }, { dtype = 'i64', device = 'cuda' })
  check('cross_entropy', function(x) return F.cross_entropy(x, tgt) end, { param({ 3, 4 }) })
end)

T.test('embedding, gather, index_select and attention on cuda', function()
  T.need_cuda()
  local ids = tide.tensor({ 2, 0, 2, 1 }, { dtype = 'i64', device = 'cuda' })
  check('embedding', function(w) return F.embedding(ids, w) end, { param({ 3, 2 }) })
  check('index_select', function(x) return x:index_select(1, ids) end, { param({ 3, 2 }) })
  local g = tide.tensor({ { 0, 2 }, { 1, 1 } }, { dtype = 'i64', device = 'cuda' })
  check('gather', function(x) return x:gather(2, g) end, { param({ 2, 3 }) })
  local q, k, v = param({ 1, 2, 3, 2 }), param({ 1, 2, 3, 2 }), param({ 1, 2, 3, 2 })
  check('attention causal', function(a, b, c) return F.scaled_dot_product_attention(a, b, c, { is_causal = true }) end,
        { q, k, v })
end)

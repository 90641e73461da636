-- F.qkv_attention (attention over GPT-2's packed c_attn output, the path of
-- the model's training step) against what it replaces: splitting qkv into
-- q, k, v head views and calling scaled_dot_product_attention, then merging
-- the heads. Same bits forward and for the gradient of qkv (which the
-- backward writes as one [B, T, 3C] tensor instead of three zero-padded
-- pieces added up), f32, f64 and bf16, causal or not, with a key mask; and
-- the errors for bad shapes and options.
local T = require 'tide.testing'
local tide = require 'tide'
local F = tide.F

local function bits(t)
  local r = {}
  for i, v in ipairs(t:contiguous():view(-1):to('f64'):tolist()) do r[i] = ('%a'):format(v) end
  return r
end

-- the unfused path (GPT-2's Attention:forward before F.qkv_attention)
local function split_attention(qkv, H, opts)
  local B, Tn, C = qkv:size(1), qkv:size(2), qkv:size(3) / 3
  local D = C / H
  local parts = qkv:split(C, 3)
  local q = parts[1]:view(B, Tn, H, D):transpose(2, 3)
  local k = parts[2]:view(B, Tn, H, D):transpose(2, 3)
  local v = parts[3]:view(B, Tn, H, D):transpose(2, 3)
  return F.scaled_dot_product_attention(q, k, v, opts):transpose(2, 3):reshape(B, Tn, C)
end

local function both(qkv0, H, opts, g)
  local function run(fn)
    local qkv = qkv0:detach():requires_grad_(true)
    local y = fn(qkv, H, opts)
    y:backward(g)
    return y, qkv.grad
  end
  local y1, g1 = run(F.qkv_attention)
  local y2, g2 = run(split_attention)
  return y1, g1, y2, g2
end

T.test('qkv_attention: the split path\'s bits, forward and gradient', function()
  tide.manual_seed(5)
  for _, dt in ipairs { 'f32', 'f64', 'bf16' } do
    for _, case in ipairs { { 2, 7, 3, 4 }, { 1, 1, 2, 8 }, { 3, 5, 1, 6 } } do
      local B, Tn, H, D = case[1], case[2], case[3], case[4]
      local C = H * D
      local qkv = tide.randn(B, Tn, 3 * C):to(dt)
      local g = tide.randn(B, Tn, C):to(dt)
      local mask = tide.ones(B, Tn, { dtype = 'bool' })
      if Tn > 2 then mask[{ 1, 1 }] = false end
      for _, opts in ipairs { { is_causal = true }, { is_causal = false, scale = 0.3 }, { is_causal = true, key_mask = mask } } do
        local y1, g1, y2, g2 = both(qkv, H, opts, g)
        local what = ('%s B %d T %d H %d D %d causal %s mask %s'):format(dt, B, Tn, H, D, tostring(opts.is_causal), tostring(opts.key_mask ~= nil))
        T.same(y1:shape(), { B, Tn, C }, what)
        T.same(bits(y1), bits(y2), what .. ': out')
        T.same(bits(g1), bits(g2), what .. ': d(qkv)')
      end
    end
  end
end)

T.test('qkv_attention: no graph under no_grad, gradients accumulate into a non-leaf qkv', function()
  local x = tide.randn(2, 3, 4):requires_grad_(true)
  local w = tide.randn(4, 12)
  local y = tide.no_grad(function() return F.qkv_attention(x:matmul(w), 2) end)
  T.truthy(not y.requires_grad, 'no graph under no_grad')
  local a = F.qkv_attention(x:matmul(w), 2, { is_causal = true })
  a:sum():backward()
  local gx = x.grad
  x.grad = nil
  split_attention(x:matmul(w), 2, { is_causal = true }):sum():backward()
  T.same(bits(gx), bits(x.grad), 'gradient through the projection')
end)

T.test('qkv_attention: bad shapes and options', function()
  local qkv = tide.randn(2, 3, 12)
  T.raises(function() F.qkv_attention(qkv, 5) end, 'qkv must be [B, T, 3 * C] with C a multiple of n_head = 5, got shape [2, 3, 12]')
  T.raises(function() F.qkv_attention(tide.randn(3, 12), 2) end, 'qkv must be [B, T, 3 * C]')
  T.raises(function() F.qkv_attention(qkv, 0) end, 'n_head must be a positive integer, got 0')
  T.raises(function() F.qkv_attention(qkv, 2, { q_offset = 1 }) end, 'qkv_attention: unknown option q_offset')
  T.raises(function() F.qkv_attention(qkv, 2, { key_mask = tide.ones(2, 3) }) end, 'key_mask must be bool or integer')
  T.raises(function() F.qkv_attention(qkv, 2, { key_mask = tide.ones(2, 4, { dtype = 'bool' }) }) end, 'key_mask must be [B, S] = [2, 3]')
  T.raises(function() F.qkv_attention('qkv', 2) end, 'qkv_attention: qkv must be a tensor, got string')
end)

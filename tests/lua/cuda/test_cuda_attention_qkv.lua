-- F.qkv_attention on cuda (tide-cudaemu in CI, a GPU in tests/gpu/run.sh):
-- GPT-2's attention over the packed c_attn output, with flash attention for
-- bf16 (D a multiple of 16) and the plain kernel for f32. On the device it
-- gives the bits of the split path it replaces (split into head views,
-- scaled_dot_product_attention, merge), forward and the gradient of qkv,
-- which its backward writes as one tensor; and it agrees with the cpu.
local T = require 'tide.testing'
local tide = require 'tide'
local F = tide.F

local function split_attention(qkv, H, opts)
  local B, Tn, C = qkv:size(1), qkv:size(2), qkv:size(3) / 3
  local D = C / H
  local parts = qkv:split(C, 3)
  local q = parts[1]:view(B, Tn, H, D):transpose(2, 3)
  local k = parts[2]:view(B, Tn, H, D):transpose(2, 3)
  local v = parts[3]:view(B, Tn, H, D):transpose(2, 3)
  return F.scaled_dot_product_attention(q, k, v, opts):transpose(2, 3):reshape(B, Tn, C)
end

local function run(fn, qkv0, H, opts, g)
  local qkv = qkv0:detach():requires_grad_(true)
  local y = fn(qkv, H, opts)
  y:backward(g)
  return y:cpu(), qkv.grad:cpu()
end

T.test('qkv_attention on cuda: the split path\'s bits and the cpu\'s values', function()
  T.need_cuda()
  tide.manual_seed(6)
  -- bf16 with D = 16 and 32 takes flash attention; f32 the plain kernel
  for _, case in ipairs { { 'bf16', 2, 9, 2, 16 }, { 'bf16', 1, 5, 1, 32 }, { 'f32', 2, 6, 3, 8 } } do
    local dt, B, Tn, H, D = unpack(case)
    local C = H * D
    local qkv = tide.randn(B, Tn, 3 * C):to(dt)
    local g = tide.randn(B, Tn, C):to(dt)
    local mask = tide.ones(B, Tn, { dtype = 'bool' })
    mask[{ B, 1 }] = false
    for _, opts in ipairs { { is_causal = true }, { is_causal = true, key_mask = mask } } do
      local what = ('%s B %d T %d H %d D %d mask %s'):format(dt, B, Tn, H, D, tostring(opts.key_mask ~= nil))
      local dopts = { is_causal = opts.is_causal, key_mask = opts.key_mask and opts.key_mask:to('cuda') }
      local y1, g1 = run(F.qkv_attention, qkv:to('cuda'), H, dopts, g:to('cuda'))
      local y2, g2 = run(split_attention, qkv:to('cuda'), H, dopts, g:to('cuda'))
      T.same(y1:tolist(), y2:tolist(), what .. ': out, packed against split on cuda')
      T.same(g1:tolist(), g2:tolist(), what .. ': d(qkv), packed against split on cuda')
      local yc, gc = run(F.qkv_attention, qkv, H, opts, g)
      local tol = dt == 'bf16' and { rtol = 3e-2, atol = 3e-2 } or { rtol = 1e-5, atol = 1e-5 }
      T.close(y1:to('f64'), yc:to('f64'), tol, what .. ': out against the cpu')
      T.close(g1:to('f64'), gc:to('f64'), tol, what .. ': d(qkv) against the cpu')
    end
  end
end)

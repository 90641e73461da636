-- Fused scaled dot-product attention on CUDA against the CPU (tide-cudaemu
-- in CI, a GPU in tests/gpu/run.sh): F.scaled_dot_product_attention forward
-- and backward (autograd), causal and not, T == S and T != S, with a key mask
-- that leaves some queries no key, f32, bf16 and f64; q, k, v as GPT-2's
-- views of one fused c_attn tensor; lse and the backward through the op
-- layer (tide_attention, tide_attention_backward); the query offset of
-- decoding over a KV cache (bottom-right causal mask), with k and v read as
-- the filled prefix of a preallocated [B, H, T_max, D] cache. These are the
-- plain kernels (TIDE_ATTENTION=plain: bf16 would take flash attention,
-- tested in test_cuda_attention_flash.lua).
local T = require 'tide.testing'
local ffi = require 'ffi'
pcall(ffi.cdef, 'int setenv(const char *name, const char *value, int overwrite);')
ffi.C.setenv('TIDE_ATTENTION', 'plain', 1)
local C = require 'tide.C'
local core = require 'tide.tensor'
local F = tide.F

local slot = { ffi.new('tide_tensor*[1]'), ffi.new('tide_tensor*[1]'), ffi.new('tide_tensor*[1]') }
local function h(t) return t and t._c or nil end

-- A [B, S] bool mask with random holes, the first two keys of batch row 1
-- hidden (so its first causal queries see nothing) and key 0 of row 0 kept.
local function key_mask(B, S)
  local rows = {}
  for b = 1, B do
    local r = {}
    for s = 1, S do r[s] = (s * 7 + b * 3) % 5 ~= 0 end
    rows[b] = r
  end
  rows[1][1] = true
  if B > 1 then rows[2][1], rows[2][2] = false, false end
  return tide.tensor(rows, { dtype = 'bool' })
end

-- Forward and backward of F.scaled_dot_product_attention on leaves q, k, v,
-- with gradient g for the output: returns out, q.grad, k.grad, v.grad.
local function sdpa_grads(q, k, v, g, opts)
  local out = F.scaled_dot_product_attention(q, k, v, opts)
  out:backward(g)
  return out, q.grad, k.grad, v.grad
end

local function leaf(t) return t:requires_grad_(true) end

-- Tolerances: the defaults, but f32 gradients are sums of O(1) terms that
-- cancel to small values, where the CPU's and the GPU's summation orders
-- differ by a few 1e-7 absolute: an absolute floor of 1e-5 there.
local function tol(dt) return dt == 'f32' and { rtol = 1e-5, atol = 1e-5 } or nil end

T.test('scaled_dot_product_attention forward and backward on cuda: causal, key mask, T != S, dtypes', function()
  T.need_cuda()
  local B, H, D = 2, 3, 16
  for _, dt in ipairs { 'f32', 'bf16', 'f64' } do
    for _, shape in ipairs { { 21, 21 }, { 13, 29 }, { 29, 13 } } do
      local Tq, S = shape[1], shape[2]
      for _, causal in ipairs { false, true } do
        for _, masked in ipairs { false, true } do
          local q = leaf(tide.randn(B, H, Tq, D):to(dt))
          local k = leaf(tide.randn(B, H, S, D):to(dt))
          local v = leaf(tide.randn(B, H, S, D):to(dt))
          local g = tide.randn(B, H, Tq, D):to(dt)
          local opts = { is_causal = causal, scale = 0.3 }
          if masked then opts.key_mask = key_mask(B, S) end
          T.device_parity(sdpa_grads, { q, k, v, g, opts }, tol(dt),
            ('%s T=%d S=%d causal=%s mask=%s'):format(dt, Tq, S, tostring(causal), tostring(masked)))
        end
      end
    end
  end
end)

T.test('scaled_dot_product_attention with q_offset on cuda: decode steps, prefill chunks, key mask, dtypes', function()
  T.need_cuda()
  local B, H, D, Tmax = 2, 2, 16, 40
  for _, dt in ipairs { 'f32', 'bf16', 'f64' } do
    -- {T, S, q_offset}: a decode step, a chunk at the end of the keys, an offset in between
    for _, c in ipairs { { 1, 29, 28 }, { 7, 29, 22 }, { 5, 30, 10 } } do
      local Tq, S, qoff = c[1], c[2], c[3]
      for _, masked in ipairs { false, true } do
        -- k and v: the first S positions of a preallocated cache (strided along heads and batch)
        local kc, vc = tide.randn(B, H, Tmax, D):to(dt), tide.randn(B, H, Tmax, D):to(dt)
        local q = leaf(tide.randn(B, H, Tq, D):to(dt))
        local k, v = leaf(kc:narrow(3, 1, S):detach()), leaf(vc:narrow(3, 1, S):detach())
        local g = tide.randn(B, H, Tq, D):to(dt)
        local opts = { is_causal = true, q_offset = qoff, scale = 0.3 }
        if masked then opts.key_mask = key_mask(B, S) end
        T.device_parity(sdpa_grads, { q, k, v, g, opts }, tol(dt),
          ('%s T=%d S=%d q_offset=%d mask=%s'):format(dt, Tq, S, qoff, tostring(masked)))
      end
    end
  end
  local q, k = tide.randn(1, 1, 3, 4):to('cuda'), tide.randn(1, 1, 5, 4):to('cuda')
  T.raises(function() F.scaled_dot_product_attention(q, k, k, { is_causal = true, q_offset = 3 }) end,
    'q_offset + T <= S = 5 keys')
end)

T.test('attention on cuda reads q, k, v as views of one fused qkv tensor (GPT-2)', function()
  T.need_cuda()
  local B, Tq, H, D = 2, 19, 2, 64
  local Cc = H * D
  for _, dt in ipairs { 'f32', 'bf16', 'f64' } do
    local x = tide.randn(B, Tq, 3 * Cc):to(dt)
    local g = tide.randn(B, H, Tq, D):to(dt)
    -- leaves that are themselves strided views of x (detach keeps the strides)
    local function split(t)
      local function head(i) return t:narrow(3, 1 + i * Cc, Cc):view(B, Tq, H, D):transpose(2, 3) end
      return head(0), head(1), head(2)
    end
    local function run(t, gg, mask)
      local q, k, v = split(t)
      q, k, v = leaf(q:detach()), leaf(k:detach()), leaf(v:detach())
      T.eq(q:is_contiguous(), false)
      return sdpa_grads(q, k, v, gg, { is_causal = true, key_mask = mask })
    end
    T.device_parity(run, { x, g }, tol(dt), dt .. ' fused qkv views')
    T.device_parity(run, { x, g, key_mask(B, Tq) }, tol(dt), dt .. ' fused qkv views, key mask')
  end
end)

T.test('attention on cuda: gradient through the split of a fused qkv tensor', function()
  T.need_cuda()
  local B, Tq, H, D = 1, 17, 2, 8
  local Cc = H * D
  local function run(x, g)
    local function head(i) return x:narrow(3, 1 + i * Cc, Cc):view(B, Tq, H, D):transpose(2, 3) end
    local y = F.scaled_dot_product_attention(head(0), head(1), head(2), { is_causal = true })
    y:backward(g)
    return y, x.grad
  end
  for _, dt in ipairs { 'f32', 'f64' } do
    local x = leaf(tide.randn(B, Tq, 3 * Cc):to(dt))
    local g = tide.randn(B, H, Tq, D):to(dt)
    T.device_parity(run, { x, g }, tol(dt), dt .. ' grad through split')
  end
end)

T.test('tide_attention lse and backward on cuda through the op layer, rows with no key', function()
  T.need_cuda()
  local B, H, Tq, S, D = 2, 2, 9, 9, 5
  local mask = key_mask(B, S)
  local function fwd_bwd(q, k, v, dout, km)
    core.check(C.tide_attention(h(q), h(k), h(v), h(km), 1, 0, 0.4, slot[1], slot[2]))
    local out, lse = core.wrap(slot[1][0]), core.wrap(slot[2][0])
    core.check(C.tide_attention_backward(h(dout), h(q), h(k), h(v), h(km), h(out), h(lse), 1, 0, 0.4, slot[1], slot[2], slot[3]))
    return out, lse, core.wrap(slot[1][0]), core.wrap(slot[2][0]), core.wrap(slot[3][0])
  end
  for _, dt in ipairs { 'f32', 'f64', 'bf16' } do
    local q, k, v = tide.randn(B, H, Tq, D):to(dt), tide.randn(B, H, S, D):to(dt), tide.randn(B, H, S, D):to(dt)
    local dout = tide.randn(B, H, Tq, D):to(dt)
    local _, got = T.device_parity(fwd_bwd, { q, k, v, dout, mask }, tol(dt), dt .. ' op layer')
    -- batch row 1 hides keys 0 and 1: its causal queries 0 and 1 see nothing
    local lse = got[2]:tolist()
    T.eq(lse[2][1][1], -math.huge)
    T.eq(lse[2][2][2], -math.huge)
    T.same(got[1]:narrow(1, 2, 1):narrow(3, 1, 2):tolist(), tide.zeros(1, H, 2, D):to(dt):tolist())
    T.same(got[3]:narrow(1, 2, 1):narrow(3, 1, 2):tolist(), tide.zeros(1, H, 2, D):to(dt):tolist())
  end
end)

-- Flash attention on CUDA through the op layer (tide-cudaemu in CI, a GPU in
-- tests/gpu/run.sh): F.scaled_dot_product_attention forward and backward
-- (autograd) against the CPU, with bf16 tolerances; bf16 inputs take flash
-- attention by default, f32 inputs with TIDE_ATTENTION=flash; causal with
-- query offsets (a decode step over a KV cache, a prefill chunk), key masks,
-- GPT-2's fused qkv views, T below, at and past the tile sizes; the choice
-- of kernel (flash differs from plain in its last bits, TIDE_ATTENTION=plain
-- gives the plain kernel's bits, head sizes flash lacks take the plain
-- kernel) and the errors of TIDE_ATTENTION=flash where flash cannot run.
local T = require 'tide.testing'
local ffi = require 'ffi'
local F = tide.F

pcall(ffi.cdef, 'int setenv(const char *name, const char *value, int overwrite);')
pcall(ffi.cdef, 'int unsetenv(const char *name);')

-- Runs fn with TIDE_ATTENTION set to mode (nil: unset), restoring it after.
local function with_mode(mode, fn)
  local old = os.getenv('TIDE_ATTENTION')
  local function set(v) if v then ffi.C.setenv('TIDE_ATTENTION', v, 1) else ffi.C.unsetenv('TIDE_ATTENTION') end end
  set(mode)
  local ok, err = pcall(fn)
  set(old)
  if not ok then error(err, 0) end
end

local function leaf(t) return t:requires_grad_(true) end

local function sdpa_grads(q, k, v, g, opts)
  local out = F.scaled_dot_product_attention(q, k, v, opts)
  out:backward(g)
  return out, q.grad, k.grad, v.grad
end

-- A [B, S] bool mask with holes; batch row 2 hides its first two keys (its
-- first causal queries see nothing).
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

-- bf16 products (P and dS rounded to bf16, sums of up to S such terms): a
-- few units of bf16's 2^-8 on O(1) values.
local flash_tol = { rtol = 2e-2, atol = 2e-2 }

T.test('flash attention on cuda: bf16 by default, f32 by TIDE_ATTENTION=flash, forward and gradients', function()
  T.need_cuda()
  local B, H = 2, 2
  -- {T, S, D, causal}: T below, at and past the tiles (16, 32, 64), head sizes 64 and 16 (zero-padded)
  for _, c in ipairs { { 1, 1, 64, true }, { 17, 17, 64, true }, { 33, 33, 16, true }, { 70, 70, 64, true },
                       { 13, 29, 32, true }, { 21, 21, 64, false } } do
    for _, mode_dt in ipairs { { nil, 'bf16' }, { 'flash', 'f32' } } do
      local Tq, S, D, causal = c[1], c[2], c[3], c[4]
      local dt = mode_dt[2]
      local q = leaf(tide.randn(B, H, Tq, D):to(dt))
      local k = leaf(tide.randn(B, H, S, D):to(dt))
      local v = leaf(tide.randn(B, H, S, D):to(dt))
      local g = tide.randn(B, H, Tq, D):to(dt)
      with_mode(mode_dt[1], function()
        T.device_parity(sdpa_grads, { q, k, v, g, { is_causal = causal } }, flash_tol,
          ('%s T=%d S=%d D=%d causal=%s'):format(dt, Tq, S, D, tostring(causal)))
      end)
    end
  end
end)

T.test('flash attention on cuda: q_offset (decode step, prefill chunk) and key masks', function()
  T.need_cuda()
  local B, H, D, Tmax = 2, 2, 64, 72
  -- {T, S, q_offset}: a decode step, a chunk at the end of the keys, an offset in between
  for _, c in ipairs { { 1, 69, 68 }, { 7, 40, 33 }, { 5, 30, 10 } } do
    local Tq, S, qoff = c[1], c[2], c[3]
    for _, masked in ipairs { false, true } do
      -- k and v: the first S positions of a preallocated cache
      local kc, vc = tide.randn(B, H, Tmax, D):to('bf16'), tide.randn(B, H, Tmax, D):to('bf16')
      local q = leaf(tide.randn(B, H, Tq, D):to('bf16'))
      local k, v = leaf(kc:narrow(3, 1, S):detach()), leaf(vc:narrow(3, 1, S):detach())
      local g = tide.randn(B, H, Tq, D):to('bf16')
      local opts = { is_causal = true, q_offset = qoff }
      if masked then opts.key_mask = key_mask(B, S) end
      T.device_parity(sdpa_grads, { q, k, v, g, opts }, flash_tol,
        ('T=%d S=%d q_offset=%d mask=%s'):format(Tq, S, qoff, tostring(masked)))
    end
  end
end)

T.test('flash attention on cuda reads q, k, v as views of one fused qkv tensor (GPT-2), gradient through the split', function()
  T.need_cuda()
  local B, Tq, H, D = 2, 19, 2, 64
  local Cc = H * D
  local function run(x, g)
    local function head(i) return x:narrow(3, 1 + i * Cc, Cc):view(B, Tq, H, D):transpose(2, 3) end
    local y = F.scaled_dot_product_attention(head(0), head(1), head(2), { is_causal = true })
    y:backward(g)
    return y, x.grad
  end
  local x = leaf(tide.randn(B, Tq, 3 * Cc):to('bf16'))
  local g = tide.randn(B, H, Tq, D):to('bf16')
  T.device_parity(run, { x, g }, flash_tol, 'bf16 fused qkv')
end)

T.test('flash attention on cuda: the kernel choice and TIDE_ATTENTION', function()
  T.need_cuda()
  local B, H, Tq, D = 1, 2, 20, 64
  local q = tide.randn(B, H, Tq, D):to('bf16'):to('cuda')
  local k = tide.randn(B, H, Tq, D):to('bf16'):to('cuda')
  local v = tide.randn(B, H, Tq, D):to('bf16'):to('cuda')
  local function run() return F.scaled_dot_product_attention(q, k, v, { is_causal = true }):cpu():tolist() end
  local flash, plain, auto
  with_mode('flash', function() flash = run() end)
  with_mode('plain', function() plain = run() end)
  with_mode(nil, function() auto = run() end)
  T.same(auto, flash, 'bf16 takes flash attention by default')
  -- the plain kernel multiplies in f32, flash in bf16: some output differs in its last bits
  local differ = false
  for b = 1, B do for h = 1, H do for t = 1, Tq do for d = 1, D do
    if flash[b][h][t][d] ~= plain[b][h][t][d] then differ = true end
  end end end end
  T.eq(differ, true, 'TIDE_ATTENTION=plain takes the plain kernel')
  with_mode('auto', function() T.same(run(), flash, 'auto') end)

  -- a head size flash lacks: the plain kernel by default, an error when flash is forced
  local q2, k2, v2 = tide.randn(1, 2, 9, 24):to('bf16'), tide.randn(1, 2, 9, 24):to('bf16'), tide.randn(1, 2, 9, 24):to('bf16')
  local g2 = tide.randn(1, 2, 9, 24):to('bf16')
  with_mode(nil, function()
    T.device_parity(sdpa_grads, { leaf(q2), leaf(k2), leaf(v2), g2, { is_causal = true } }, nil, 'D=24 plain')
  end)
  with_mode('flash', function()
    local dq, dk = q2:to('cuda'), k2:to('cuda')
    T.raises(function() F.scaled_dot_product_attention(dq, dk, dk, { is_causal = true }) end,
      'multiple of 16 from 16 to 128, got D = 24')
    local q64 = tide.randn(1, 1, 4, 16):to('f64'):to('cuda')
    T.raises(function() F.scaled_dot_product_attention(q64, q64, q64) end, 'takes f32, bf16 or f16 inputs, got f64')
  end)
  with_mode('fast', function()
    T.raises(function() F.scaled_dot_product_attention(q, k, v) end, "TIDE_ATTENTION must be auto, plain or flash, got 'fast'")
  end)
  -- the CPU has one kernel and ignores the switch
  with_mode('flash', function()
    local c = q:cpu()
    T.eq(F.scaled_dot_product_attention(c, c, c):size(4), D)
  end)
end)

-- The fused Linear/Conv1D layers at GPT-2 124M sizes (tests/gpu/run.sh):
-- F.conv1d_gpt2 / F.linear with cuBLASLt's BIAS and GELU_AUX_BIAS epilogues
-- and the BGRADA/B bias gradient, against the unfused ops (matmul, add, gelu
-- and their backward) on the same GPU, bf16 and f32: forward and every
-- gradient within tolerances relative to each tensor's largest element (the
-- library's GELU form is not documented: a tanh GELU other than GPT-2's
-- would show here), the fused layer run twice gives the same bits, and the
-- time of forward + backward of both with the fused one's TFLOP/s
-- (6 M K N per layer; printed, never checked).
-- Run: tide tests/gpu/linear_epilogue.lua   (tide-cudaemu runs it at small sizes)
local F = tide.F

if not tide.cuda.is_available() then print('skipped: no CUDA device'); return end
local emu = tide.cuda.runtime() == 'cudaemu'
-- {name, M tokens, K, N, act, transw}
local C, M = 768, 16 * 1024
local cases = emu and { { 'c_fc', 24, 16, 32, 'gelu', false }, { 'c_attn', 24, 16, 24, nil, false },
  { 'odd', 7, 9, 11, 'gelu', true } } or {
  { 'attn.c_attn', M, C, 3 * C, nil, false }, { 'attn.c_proj', M, C, C, nil, false },
  { 'mlp.c_fc', M, C, 4 * C, 'gelu', false }, { 'mlp.c_proj', M, 4 * C, C, nil, false },
  { 'linear gelu', 4096, C, 4 * C, 'gelu', true },
}
local tol = { bf16 = 3e-2, f32 = 1e-4 }
local failed = 0

local function unfused(x, w, b, act, transw)
  local y = x:matmul(transw and w:t() or w) + b
  if act then y = y:gelu() end
  return y
end

local function run(fn, x, w, b, g)
  local xl, wl, bl = x:detach():requires_grad_(true), w:detach():requires_grad_(true), b:detach():requires_grad_(true)
  local y = fn(xl, wl, bl)
  y:backward(g)
  return { y, xl.grad, wl.grad, bl.grad }
end

local function timed(fn, x, w, b, g, reps)
  run(fn, x, w, b, g)
  tide.cuda.synchronize()
  local t0 = tide.clock()
  for _ = 1, reps do run(fn, x, w, b, g) end
  tide.cuda.synchronize()
  return (tide.clock() - t0) / reps
end

local function maxabs(t) return t:to('f32'):abs():max():item() end
local names = { 'y', 'dx', 'dw', 'db' }
for _, c in ipairs(cases) do
  local name, m, k, n, act, transw = c[1], c[2], c[3], c[4], c[5], c[6]
  for _, dt in ipairs { 'bf16', 'f32' } do
    local function rnd(shape, s) return (tide.randn(shape) * (s or 1)):to(dt):to('cuda') end
    local x, w, b, g = rnd({ m, k }), rnd(transw and { n, k } or { k, n }, 1 / math.sqrt(k)), rnd({ n }), rnd({ m, n })
    local layer = transw and F.linear or F.conv1d_gpt2
    local fused = function(x_, w_, b_) return layer(x_, w_, b_, act) end
    local plain = function(x_, w_, b_) return unfused(x_, w_, b_, act, transw) end
    local want, got, again = run(plain, x, w, b, g), run(fused, x, w, b, g), run(fused, x, w, b, g)
    local line = ('%-12s M=%d K=%d N=%d act=%s %s:'):format(name, m, k, n, tostring(act), dt)
    for i, what in ipairs(names) do
      local scale = math.max(maxabs(want[i]), 1e-6)
      local err = maxabs(got[i]:to('f32') - want[i]:to('f32')) / scale
      local same = got[i]:equal(again[i])
      line = line .. (' %s %.1e%s'):format(what, err, same and '' or ' (NOT the same bits twice)')
      if not (err <= tol[dt]) or not same then failed = failed + 1 end
    end
    if not emu then
      local reps = 10
      local tf, tp = timed(fused, x, w, b, g, reps), timed(plain, x, w, b, g, reps)
      local flops = 6 * m * k * n
      line = line .. ('  fused %.3f ms (%.0f TFLOP/s), unfused %.3f ms'):format(tf * 1e3, flops / tf / 1e12, tp * 1e3)
    end
    print(line)
  end
end
if failed > 0 then error(('linear_epilogue: %d comparisons failed'):format(failed), 0) end
print('linear_epilogue: all cases within tolerance')

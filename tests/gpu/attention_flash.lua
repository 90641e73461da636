-- Flash attention against the plain kernels at GPT-2 sizes (tests/gpu/run.sh):
-- causal self-attention with head size 64, T from 1 to 1024, B*H 12 and 48
-- (GPT-2 124M's 12 heads at batch 1 and 4), bf16 inputs; forward and every
-- gradient of TIDE_ATTENTION=flash against TIDE_ATTENTION=plain (f32
-- products of the same bf16 inputs) on the same GPU, within bf16 tolerances
-- relative to each tensor's largest element; flash run twice gives the same
-- bits; a decode step over a KV cache (T = 1 of S = 1024, q_offset 1023).
-- Prints each case's errors and the time of forward + backward of both
-- kernels with flash's TFLOP/s (4 B H T^2 D / 2 forward, 2.5x that backward,
-- for the causal half; the times are printed, never checked).
-- Run: tide tests/gpu/attention_flash.lua   (tide-cudaemu runs it at small sizes)
local ffi = require 'ffi'
local F = tide.F
pcall(ffi.cdef, 'int setenv(const char *name, const char *value, int overwrite);')
pcall(ffi.cdef, 'int unsetenv(const char *name);')

if not tide.cuda.is_available() then print('skipped: no CUDA device'); return end
local emu = tide.cuda.runtime() == 'cudaemu'
local D = 64
-- {B, H, T, S, q_offset}
local cases = emu and { { 1, 2, 1, 1, 0 }, { 1, 2, 70, 70, 0 }, { 1, 2, 1, 90, 89 } } or {
  { 1, 12, 1, 1, 0 }, { 1, 12, 64, 64, 0 }, { 1, 12, 255, 255, 0 }, { 1, 12, 1024, 1024, 0 },
  { 4, 12, 512, 512, 0 }, { 4, 12, 1024, 1024, 0 }, { 4, 12, 1, 1024, 1023 },
}
local tol = 2e-2
local failed = 0

local function mode(m) ffi.C.setenv('TIDE_ATTENTION', m, 1) end

-- out, dq, dk, dv of causal attention on copies of q, k, v as leaves
local function run(q, k, v, g, qoff)
  local ql, kl, vl = q:detach():requires_grad_(true), k:detach():requires_grad_(true), v:detach():requires_grad_(true)
  local out = F.scaled_dot_product_attention(ql, kl, vl, { is_causal = true, q_offset = qoff })
  out:backward(g)
  return { out, ql.grad, kl.grad, vl.grad }
end

local function maxabs(t) return t:to('f32'):abs():max():item() end

local function timed(q, k, v, g, qoff, reps)
  run(q, k, v, g, qoff)
  tide.cuda.synchronize()
  local t0 = tide.clock()
  for _ = 1, reps do run(q, k, v, g, qoff) end
  tide.cuda.synchronize()
  return (tide.clock() - t0) / reps
end

local names = { 'out', 'dq', 'dk', 'dv' }
for _, c in ipairs(cases) do
  local B, H, T, S, qoff = c[1], c[2], c[3], c[4], c[5]
  local function rnd(n) return tide.randn(B, H, n, D):to('bf16'):to('cuda') end
  local q, k, v, g = rnd(T), rnd(S), rnd(S), rnd(T)
  mode('plain')
  local want = run(q, k, v, g, qoff)
  mode('flash')
  local got, again = run(q, k, v, g, qoff), run(q, k, v, g, qoff)
  local line = ('B=%d H=%d T=%d S=%d q_offset=%d:'):format(B, H, T, S, qoff)
  for i, name in ipairs(names) do
    local scale = math.max(maxabs(want[i]), 1e-6)
    local err = maxabs(got[i]:to('f32') - want[i]:to('f32')) / scale
    local same = maxabs(got[i]:to('f32') - again[i]:to('f32')) == 0
    line = line .. (' %s %.2e'):format(name, err)
    if not (err <= tol) then failed = failed + 1; line = line .. ' (FAIL: over ' .. tol .. ')' end
    if not same then failed = failed + 1; line = line .. ' (FAIL: two runs differ)' end
  end
  if not emu then
    local reps = T * S > 65536 and 5 or 20
    local tf = timed(q, k, v, g, qoff, reps)
    mode('plain')
    local tp = timed(q, k, v, g, qoff, reps)
    -- causal: about half of the T x S scores are computed
    local flops = 4 * B * H * T * S * D * 0.5 * 3.5
    line = line .. (' | fwd+bwd flash %.3f ms (%.1f TFLOP/s), plain %.3f ms, %.1fx'):format(
      tf * 1e3, flops / tf / 1e12, tp * 1e3, tp / tf)
  end
  print(line)
end
ffi.C.unsetenv('TIDE_ATTENTION')
if failed > 0 then io.stderr:write(('attention_flash: %d checks failed\n'):format(failed)); os.exit(1, true) end
print('attention_flash: all cases within ' .. tol .. ' of the plain kernels, flash deterministic')

-- The multi-tensor AdamW step and device-side clipping at GPT-2 124M's
-- parameter shapes (tests/gpu/run.sh): 148 f32 parameters in grouped_params'
-- two groups (50 decayed, 98 not), each with a bf16 shadow. Checks that three
-- steps of fused = true give the bits of fused = false (the per-parameter
-- kernels) and that the shadows equal p:to('bf16'); then prints the time of
-- a step of each (and the multi step's bandwidth against the 30 bytes per
-- parameter it must move: p, g, m, v read, p, m, v and the shadow written)
-- and of clip_grad_norm with and without {sync = false}. Times are printed,
-- never checked. Run: tide tests/gpu/optim_multi.lua (tide-cudaemu: tiny sizes).
if not tide.cuda.is_available() then print('skipped: no CUDA device'); return end
local emu = tide.cuda.runtime() == 'cudaemu'
local E, L, V, P = 768, 12, 50257, 1024
if emu then E, L, V, P = 16, 2, 100, 32 end

local function shapes()
  local decay, nodecay = { { V, E }, { P, E } }, {}
  for _ = 1, L do
    for _, s in ipairs { { E, 3 * E }, { E, E }, { E, 4 * E }, { 4 * E, E } } do decay[#decay + 1] = s end
    for _, n in ipairs { E, E, 3 * E, E, E, E, 4 * E, E } do nodecay[#nodecay + 1] = { n } end
  end
  nodecay[#nodecay + 1] = { E }
  nodecay[#nodecay + 1] = { E }
  return decay, nodecay
end

local function make(fused)
  tide.manual_seed(1)
  local d, n = shapes()
  local all, groups = {}, {}
  for gi, list in ipairs { d, n } do
    local ps = {}
    for i, s in ipairs(list) do
      local p = (tide.randn(unpack(s)) * 0.02):to('cuda')
      rawset(p, '_bf16', p:to('bf16'))
      ps[i] = p
      all[#all + 1] = p
    end
    groups[gi] = { params = ps, weight_decay = gi == 1 and 0.1 or 0 }
  end
  return all, tide.optim.AdamW(groups, { lr = 6e-4, betas = { 0.9, 0.95 }, fused = fused })
end

local pm, om = make(true)
local ps, os_ = make(false)
local numel = 0
for _, p in ipairs(pm) do numel = numel + p:numel() end

local function set_grads(k)
  tide.manual_seed(100 + k)
  for i, p in ipairs(pm) do
    local g = (tide.randn(unpack(p:shape())) * 0.01):to('cuda')
    pm[i].grad, ps[i].grad = g, g:clone()
  end
end

local failed = 0
for k = 1, 3 do
  set_grads(k)
  om:step()
  os_:step()
end
for i = 1, #pm do
  local d = (pm[i] - ps[i]):abs():max():item()
  local sd = (rawget(pm[i], '_bf16'):to('f32') - pm[i]:to('bf16'):to('f32')):abs():max():item()
  if d ~= 0 or sd ~= 0 then
    failed = failed + 1
    print(('FAIL param %d: max |multi - per-tensor| %g, max |shadow - bf16(p)| %g'):format(i, d, sd))
  end
end
print(('%d parameters, %d elements: multi-tensor AdamW %s the per-parameter bits, shadows %s'):format(
  #pm, numel, failed == 0 and 'gives' or 'does NOT give', failed == 0 and 'equal bf16(p)' or 'checked above'))

local function timed(fn, reps)
  fn()
  tide.cuda.synchronize()
  local t0 = tide.clock()
  for _ = 1, reps do fn() end
  tide.cuda.synchronize()
  return (tide.clock() - t0) / reps
end

local reps = emu and 2 or 20
local tm = timed(function() om:step() end, reps)
local ts = timed(function() os_:step() end, reps)
print(('AdamW step: multi-tensor %.3f ms (%.0f GB/s of 30 B/param; the floor at 4.8 TB/s is %.3f ms), ' ..
  'per-parameter %.3f ms, %.1fx'):format(tm * 1e3, 30 * numel / tm / 1e9, 30 * numel / 4.8e12 * 1e3, ts * 1e3, ts / tm))
local tc = timed(function() tide.optim.clip_grad_norm(pm, 1e9) end, reps)
local tn = timed(function() tide.optim.clip_grad_norm(pm, 1e9, { sync = false }) end, reps)
print(('clip_grad_norm: %.3f ms returning a number, %.3f ms with sync = false (12 B/param moved: floor %.3f ms)')
  :format(tc * 1e3, tn * 1e3, 12 * numel / 4.8e12 * 1e3))
if failed > 0 then io.stderr:write(('optim_multi: %d parameters differ\n'):format(failed)); os.exit(1, true) end

-- The fused residual layer norm at GPT-2 124M's size on a GPU (tests/gpu/run.sh):
-- rows = 16 x 1024, C = 768, bf16 and f32. s, y and every gradient (dx = dr,
-- dweight, dbias) against the CPU's on the same inputs, within each dtype's
-- tolerance relative to the tensor's largest element; two runs give the same
-- bits. Prints the times of the forward and of forward + backward, fused and
-- unfused (x + r, then F.layer_norm), with the bytes the fused kernels must
-- move (docs/cuda.md: 100.7 MB forward, 100.7 MB backward in bf16) and the
-- bandwidth that makes; the times are printed, never checked.
-- Run: tide tests/gpu/residual_layer_norm.lua   (tide-cudaemu runs it at a small size)
local ffi = require 'ffi'
local capi = require 'tide.C'
local core = require 'tide.tensor'
local F = tide.F

if not tide.cuda.is_available() then print('skipped: no CUDA device'); return end
local emu = tide.cuda.runtime() == 'cudaemu'
local rows, C = 16 * 1024, 768
if emu then rows, C = 64, 96 end
local failed = 0

-- s, y, dx, dr, dw, db of the fused op on leaves copied from the inputs
local function run(fused, x, r, w, b, gs, gy)
  local lx, lr = x:detach():requires_grad_(true), r:detach():requires_grad_(true)
  local lw, lb = w:detach():requires_grad_(true), b:detach():requires_grad_(true)
  local s, y
  if fused then
    s, y = F.residual_layer_norm(lx, lr, lw, lb, 1e-5)
  else
    s = lx + lr
    y = F.layer_norm(s, C, lw, lb, 1e-5)
  end
  ((s * gs):sum() + (y * gy):sum()):backward()  -- one backward: ds and dy reach the node together
  return { s, y, lx.grad, lr.grad, lw.grad, lb.grad }
end

local function maxabs(t) return t:to('f32'):abs():max():item() end

local function timed(fn, reps)
  fn()
  tide.cuda.synchronize()
  local t0 = tide.clock()
  for _ = 1, reps do fn() end
  tide.cuda.synchronize()
  return (tide.clock() - t0) / reps
end

local names = { 's', 'y', 'dx', 'dr', 'dweight', 'dbias' }
for _, dt in ipairs { 'bf16', 'f32' } do
  tide.manual_seed(1)
  local function rnd(...) return tide.randn(...):to(dt) end
  local x, r, gs, gy = rnd(rows, C), rnd(rows, C), rnd(rows, C), rnd(rows, C)
  local w, b = (tide.randn(C) * 0.5 + 1):to(dt), rnd(C)
  local want = run(true, x, r, w, b, gs, gy)
  local d = function(t) return t:to('cuda') end
  local xd, rd, wd, bd, gsd, gyd = d(x), d(r), d(w), d(b), d(gs), d(gy)
  local got, again = run(true, xd, rd, wd, bd, gsd, gyd), run(true, xd, rd, wd, bd, gsd, gyd)
  local tol = dt == 'bf16' and 1.6e-2 or 1e-5
  local line = ('%s [%d, %d]:'):format(dt, rows, C)
  for i, name in ipairs(names) do
    local scale = math.max(maxabs(want[i]), 1e-6)
    local err = maxabs(got[i]:cpu():to('f32') - want[i]:to('f32')) / scale
    local same = maxabs(got[i]:to('f32') - again[i]:to('f32')) == 0
    line = line .. (' %s %.2e'):format(name, err)
    if not (err <= tol) then failed = failed + 1; line = line .. ' (FAIL: over ' .. tol .. ')' end
    if not same then failed = failed + 1; line = line .. ' (FAIL: two runs differ)' end
  end
  do  -- timed on the emulator too (2 repetitions), so this code runs in CI; its times mean nothing there
    local esz = dt == 'bf16' and 2 or 4
    local bytes = 4 * rows * C * esz  -- forward: x, r read, s, y written; backward: dy, s, ds read, dx written
    local tf = timed(function() tide.no_grad(F.residual_layer_norm, xd, rd, wd, bd, 1e-5) end, emu and 2 or 50)
    local tu = timed(function() tide.no_grad(function() F.layer_norm(xd + rd, C, wd, bd, 1e-5) end) end, emu and 2 or 50)
    -- the backward alone, through the C API: the fused kernel, and layer norm's backward then the add
    local o = { ffi.new('tide_tensor*[1]'), ffi.new('tide_tensor*[1]'), ffi.new('tide_tensor*[1]'),
                ffi.new('tide_tensor*[1]') }
    assert(capi.tide_residual_layer_norm(xd._c, rd._c, wd._c, bd._c, 1e-5, o[1], o[2], o[3], o[4]) == 0)
    local sd, mean, rstd = core.wrap(o[1][0]), core.wrap(o[3][0]), core.wrap(o[4][0])
    core.wrap(o[2][0])
    local function grab(k) return core.wrap(o[k][0]) end
    local tb = timed(function()
      assert(capi.tide_residual_layer_norm_backward(gsd._c, gyd._c, sd._c, wd._c, mean._c, rstd._c, o[1], o[2], o[3]) == 0)
      grab(1); grab(2); grab(3)
    end, emu and 2 or 50)
    local tub = timed(function()
      assert(capi.tide_layer_norm_backward(gyd._c, sd._c, wd._c, mean._c, rstd._c, o[1], o[2], o[3]) == 0)
      local g = grab(1); grab(2); grab(3)
      local _ = g + gsd
    end, emu and 2 or 50)
    line = line .. ('\n  forward fused %.1f us (%.0f GB/s of %.1f MB), unfused %.1f us, %.2fx'):format(
      tf * 1e6, bytes / tf / 1e9, bytes / 1e6, tu * 1e6, tu / tf)
    line = line .. ('\n  backward fused %.1f us (%.0f GB/s of %.1f MB), unfused %.1f us, %.2fx'):format(
      tb * 1e6, bytes / tb / 1e9, bytes / 1e6, tub * 1e6, tub / tb)
  end
  print(line)
end
if failed > 0 then io.stderr:write(('residual_layer_norm: %d checks failed\n'):format(failed)); os.exit(1, true) end

-- The optimizer on CUDA against the CPU (tide-cudaemu in CI, a GPU in
-- tests/gpu/run.sh): the multi-tensor AdamW step (the default on CUDA) gives
-- the CPU's per-parameter bits and writes the bf16 shadows; clip_grad_norm's
-- norm, factor and scaling on the device ({sync=false}: the total stays a
-- 0-d device tensor), equal to the default path bit for bit and to the CPU
-- within the norm's rounding; tensors on two devices are refused by name.
local T = require 'tide.testing'
local tide = require 'tide'
local ffi = require 'ffi'
local C = require 'tide.C'

local function bytes(t)
  local c = t:cpu():contiguous()
  return ffi.string(c._c.data, c:numel() * c:element_size())
end

local function same_bits(a, b, msg)
  T.eq(a:dtype(), b:dtype(), msg .. ' dtype')
  if bytes(a) ~= bytes(b) then
    T.truthy(false, ('%s: bits differ (max |diff| %g)'):format(msg, (a:cpu():to('f64') - b:cpu():to('f64')):abs():max():item()))
  end
end

local SHAPES = { { 7, 5 }, { 0 }, { 1 }, { 33 }, { 4, 3, 5 }, { 4500 } }

-- The same parameters on the CPU and on cuda (one a view; one f64), in two groups.
local function make(seed, device)
  tide.manual_seed(seed)
  local ps = {}
  for i, s in ipairs(SHAPES) do ps[i] = tide.randn(unpack(s)):to(device) end
  ps[#ps + 1] = tide.randn(5, 6):to(device):t()
  ps[#ps + 1] = tide.randn(9, { dtype = 'f64' }):to(device)
  local g1, g2 = {}, {}
  for i, p in ipairs(ps) do
    if i % 2 == 1 then g1[#g1 + 1] = p else g2[#g2 + 1] = p end
  end
  return ps, { { params = g1, weight_decay = 0.1 }, { params = g2, weight_decay = 0, betas = { 0.3, 0.99 } } }
end

local function set_grads(pc, pd, k)
  tide.manual_seed(50 + k)
  for i, p in ipairs(pc) do
    local g = tide.randn(unpack(p:shape())):to(p:dtype()) * 0.1
    pc[i].grad, pd[i].grad = g, g:to('cuda')
  end
end

T.test('AdamW on cuda (multi-tensor by default) gives the CPU per-parameter bits and writes shadows', function()
  T.need_cuda()
  local pc, gc = make(1, 'cpu')
  local pd, gd = make(1, 'cuda')
  for _, p in ipairs(pd) do
    if p:dtype() == 'f32' then rawset(p, '_bf16', p:to('bf16')) end
  end
  local oc = tide.optim.AdamW(gc, { lr = 1e-2, fused = false })
  local od = tide.optim.AdamW(gd, { lr = 1e-2 })  -- fused = nil: every param on cuda, so multi-tensor
  for k = 1, 3 do
    set_grads(pc, pd, k)
    oc:step()
    od:step()
  end
  for i = 1, #pc do
    same_bits(pd[i], pc[i], 'param ' .. i)
    same_bits(od.state[pd[i]].exp_avg, oc.state[pc[i]].exp_avg, 'exp_avg ' .. i)
    same_bits(od.state[pd[i]].exp_avg_sq, oc.state[pc[i]].exp_avg_sq, 'exp_avg_sq ' .. i)
    local sh = rawget(pd[i], '_bf16')
    if sh then
      T.eq(sh.device, 'cuda:0', 'the shadow stays on the device')
      same_bits(sh, pc[i]:to('bf16'), 'shadow ' .. i)
      T.eq(rawget(pd[i], '_bf16_version'), tonumber(C.tide_tensor_version(pd[i]._c)), 'shadow version ' .. i)
    end
  end
  -- fused = false on cuda: the per-parameter kernels, the same bits
  local pe, ge = make(1, 'cuda')
  local oe = tide.optim.AdamW(ge, { lr = 1e-2, fused = false })
  for k = 1, 3 do
    set_grads(pc, pe, k)
    oe:step()
  end
  for i = 1, #pe do same_bits(pe[i], pd[i], 'fused=false param ' .. i) end
end)

T.test('adamw_multi_step_ refuses tensors on two devices', function()
  T.need_cuda()
  local p = tide.randn(4):to('cuda')
  local opt = tide.optim.AdamW({ p }, { fused = true })
  p.grad = tide.randn(4)  -- left on the CPU
  T.raises(function() opt:step() end, 'grad 1 is on cpu but param 1 is on cuda:0')
  -- a shadow left on the CPU (the model moved after autocast made it) is not the optimizer's
  p.grad = tide.randn(4):to('cuda')
  rawset(p, '_bf16', tide.zeros(4, { dtype = 'bf16' }))
  opt:step()
  T.eq(rawget(p, '_bf16'):sum():item(), 0, 'a shadow on another device is left alone')
  T.eq(rawget(p, '_bf16_version'), nil, 'and gets no version')
  -- the C call names it
  local ffi_arr = function(ct, t) return ffi.new(ct .. '[1]', t._c) end
  local rc = C.tide_adamw_multi_step_(1, ffi_arr('tide_tensor*', p), ffi_arr('const tide_tensor*', p.grad),
    ffi_arr('tide_tensor*', opt.state[p].exp_avg), ffi_arr('tide_tensor*', opt.state[p].exp_avg_sq),
    ffi_arr('tide_tensor*', rawget(p, '_bf16')), ffi.new('int64_t[1]', 3), 1e-3, 0.9, 0.999, 1e-8, 0)
  T.eq(rc, -1, 'refused')
  local msg = ffi.string(C.tide_last_error())
  T.truthy(msg:find('shadow 1 is on cpu but param 1 is on cuda:0', 1, true), msg)
end)

T.test('clip_grad_norm on cuda: sync=false equals the default, both near the CPU', function()
  T.need_cuda()
  for _, dt in ipairs { 'f32', 'bf16', 'f64' } do
    for _, max_norm in ipairs { 0.5, 1e9 } do
      tide.manual_seed(9)
      local sets = { cpu = {}, a = {}, b = {} }
      for i, s in ipairs { { 7, 5 }, { 0 }, { 1 }, { 9000 }, { 300 } } do
        local g = (tide.randn(unpack(s)) * 0.5):to(dt)
        for k, list in pairs(sets) do
          local p = tide.zeros(unpack(s))
          p.grad = k == 'cpu' and g:clone() or g:to('cuda')
          list[i] = p
        end
      end
      local tc = tide.optim.clip_grad_norm(sets.cpu, max_norm)
      local ta = tide.optim.clip_grad_norm(sets.a, max_norm)
      local tb = tide.optim.clip_grad_norm(sets.b, max_norm, { sync = false })
      local what = ('%s max_norm %g'):format(dt, max_norm)
      T.eq(tb.device, 'cuda:0', what .. ': the total stays on the device')
      T.eq(tb:item(), ta, what .. ': the same total')
      T.close(ta, tc, { rtol = dt == 'f64' and 1e-13 or 2e-6, atol = 0 }, what .. ': total near the CPU')
      for i = 1, #sets.a do
        same_bits(sets.b[i].grad, sets.a[i].grad, what .. ' grad ' .. i)
        T.close(sets.a[i].grad:cpu():to('f64'), sets.cpu[i].grad:to('f64'),
          { rtol = dt == 'bf16' and 1e-2 or (dt == 'f64' and 1e-13 or 2e-6), atol = 0 }, what .. ' grad ' .. i .. ' near the CPU')
      end
    end
  end
  -- a total on another device than the grads is refused
  local g = tide.randn(3):to('cuda')
  local hs = ffi.new('tide_tensor*[1]', g._c)
  local total = tide.ones({})
  T.eq(C.tide_clip_grads_(1, hs, total._c, 1.0), -1, 'refused')
  T.truthy(ffi.string(C.tide_last_error()):find('tensor 1 is on cuda:0 but the total norm is on cpu', 1, true),
    ffi.string(C.tide_last_error()))
end)

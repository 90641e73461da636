-- The multi-tensor AdamW step (fused/foreach) and clipping without a host
-- read, on the CPU: the multi-tensor step gives the per-parameter step's bits
-- (two groups, weight decay, f32 and f64, odd sizes, views, missing grads),
-- writes the bf16 shadows of autocast and their versions, resumes from a
-- state_dict bit for bit; clip_grad_norm{sync=false} equals the default; and
-- the C entry points refuse bad input with messages naming the tensor.
-- (tests/lua/cuda/test_cuda_optim.lua runs the same against the GPU.)
local T = require 'tide.testing'
local tide = require 'tide'
local ffi = require 'ffi'
local C = require 'tide.C'

-- The bytes of t's elements in row-major order (any dtype, any device).
local function bytes(t)
  local c = t:cpu():contiguous()
  return ffi.string(c._c.data, c:numel() * c:element_size())
end

local function same_bits(a, b, msg)
  T.eq(a:dtype(), b:dtype(), msg .. ' dtype')
  if bytes(a) ~= bytes(b) then
    T.truthy(false, ('%s: bits differ (max |diff| %g)'):format(msg, (a:to('f64') - b:to('f64')):abs():max():item()))
  end
end

-- Parameters of odd sizes (empty, one element, a transposed view, f64), twice the same values.
local SHAPES = { { 7, 5 }, { 0 }, { 1 }, { 33 }, { 4, 3, 5 }, { 1030 } }
local function make_params(seed)
  tide.manual_seed(seed)
  local ps = {}
  for i, s in ipairs(SHAPES) do ps[i] = tide.randn(unpack(s)) end
  ps[#ps + 1] = tide.randn(5, 6):t()              -- not contiguous: the per-tensor kernel inside the call
  ps[#ps + 1] = tide.randn(9, { dtype = 'f64' })   -- its own (device, dtype) call
  return ps
end

local function groups(ps, extra)
  local g1, g2 = {}, {}
  for i, p in ipairs(ps) do
    if i % 2 == 1 then g1[#g1 + 1] = p else g2[#g2 + 1] = p end
  end
  local a = { params = g1, weight_decay = 0.1 }
  local b = { params = g2, weight_decay = 0.0, betas = { 0.3, 0.99 } }  -- lerp weight 0.7: torch's second formula
  for k, v in pairs(extra or {}) do a[k] = v; b[k] = v end
  return { a, b }
end

-- Sets the same pseudo-random grads on both lists (step k), skipping one param at step 2.
local function set_grads(pa, pb, k)
  tide.manual_seed(100 + k)
  for i, p in ipairs(pa) do
    if k == 2 and i == 4 then
      pa[i].grad, pb[i].grad = nil, nil
    else
      local g = tide.randn(unpack(p:shape())):to(p:dtype()) * 0.1
      pa[i].grad, pb[i].grad = g:clone(), g:clone()
    end
  end
end

T.test('AdamW fused=true is bit-equal to the per-parameter step over several steps', function()
  for _, opt_name in ipairs { 'fused', 'foreach' } do
    local pa, pb = make_params(1), make_params(1)
    local oa = tide.optim.AdamW(groups(pa), { lr = 1e-2, [opt_name] = true })
    local ob = tide.optim.AdamW(groups(pb), { lr = 1e-2, fused = false })
    for k = 1, 4 do
      set_grads(pa, pb, k)
      oa:step()
      ob:step()
    end
    for i = 1, #pa do
      local what = ('%s param %d'):format(opt_name, i)
      same_bits(pa[i], pb[i], what)
      same_bits(oa.state[pa[i]].exp_avg, ob.state[pb[i]].exp_avg, what .. ' exp_avg')
      same_bits(oa.state[pa[i]].exp_avg_sq, ob.state[pb[i]].exp_avg_sq, what .. ' exp_avg_sq')
      T.eq(oa.state[pa[i]].step, ob.state[pb[i]].step, what .. ' step')
    end
    T.eq(oa.state[pa[4]].step, 3, 'a param without a grad at step 2 has 3 steps')
  end
end)

T.test('AdamW fused with maximize and a state_dict resume stays bit-equal', function()
  local pa, pb = make_params(2), make_params(2)
  local oa = tide.optim.AdamW(groups(pa), { lr = 3e-3, fused = true, maximize = true })
  local ob = tide.optim.AdamW(groups(pb), { lr = 3e-3, fused = false, maximize = true })
  for k = 1, 2 do
    set_grads(pa, pb, k)
    oa:step()
    ob:step()
  end
  -- resume a fused optimizer from the per-parameter one's state, and the reverse
  local pc, pd = make_params(2), make_params(2)
  for i = 1, #pc do pc[i]:copy_(pa[i]); pd[i]:copy_(pb[i]) end
  local oc = tide.optim.AdamW(groups(pc), { fused = true })
  local od = tide.optim.AdamW(groups(pd), { fused = false })
  oc:load_state_dict(ob:state_dict())
  od:load_state_dict(oa:state_dict())
  T.eq(oc.param_groups[1].fused, false, 'group options come from the saved state, as in torch')
  oc.param_groups[1].fused, oc.param_groups[2].fused = true, true
  for k = 3, 4 do
    set_grads(pc, pd, k)
    oc:step()
    od:step()
  end
  for i = 1, #pc do same_bits(pc[i], pd[i], 'resumed param ' .. i) end
end)

T.test('AdamW fused writes bf16 shadows and their versions', function()
  local pa, pb = make_params(3), make_params(3)
  for i, p in ipairs(pa) do
    if p:dtype() == 'f32' then rawset(p, '_bf16', p:to('bf16')) end
    if i == 5 then rawset(p, '_bf16', tide.zeros(5, 4, 3, { dtype = 'bf16' }):permute(2, 3, 1)) end  -- a view
  end
  local oa = tide.optim.AdamW(groups(pa), { lr = 1e-2, fused = true })
  local ob = tide.optim.AdamW(groups(pb), { lr = 1e-2, fused = false })
  for k = 1, 3 do
    set_grads(pa, pb, k)
    oa:step()
    ob:step()
  end
  for i, p in ipairs(pa) do
    same_bits(p, pb[i], 'param ' .. i)
    local sh = rawget(p, '_bf16')
    if sh then
      same_bits(sh, p:to('bf16'), 'shadow ' .. i)
      T.eq(rawget(p, '_bf16_version'), tonumber(C.tide_tensor_version(p._c)), 'shadow version ' .. i)
    else
      T.eq(rawget(p, '_bf16_version'), nil, 'no shadow, no version ' .. i)
    end
  end
  -- fused = false leaves the shadow alone (autocast recasts it: the version is behind)
  local q = tide.randn(6)
  rawset(q, '_bf16', q:to('bf16'))
  local before = bytes(rawget(q, '_bf16'))
  local oq = tide.optim.AdamW({ q }, { fused = false })
  q.grad = tide.ones(6)
  oq:step()
  T.eq(bytes(rawget(q, '_bf16')), before, 'per-parameter step: shadow untouched')
  T.eq(rawget(q, '_bf16_version'), nil, 'per-parameter step: no version')
end)

T.test('AdamW fused/foreach options are checked', function()
  local p = tide.randn(3)
  T.raises(function() tide.optim.AdamW({ p }, { fused = 'yes' }) end, 'fused must be true, false or nil')
  T.raises(function() tide.optim.AdamW({ p }, { fused = true, foreach = true }) end, 'cannot be true together')
  -- nil on the CPU: the per-parameter step (the multi-tensor one is for CUDA unless asked)
  local o = tide.optim.AdamW({ p })
  T.eq(o.param_groups[1].fused, nil, 'fused defaults to nil')
end)

-- the C entry point's checks -----------------------------------------------------------

local function arr(ct, list)
  local a = ffi.new(ct .. '[?]', #list)
  for i, t in ipairs(list) do a[i - 1] = t and t._c or nil end
  return a
end

local function multi(ps, gs, ms, vs, ss, steps)
  local st = ffi.new('int64_t[?]', #ps)
  for i = 1, #ps do st[i - 1] = steps and steps[i] or 1 end
  local rc = C.tide_adamw_multi_step_(#ps, arr('tide_tensor*', ps), arr('const tide_tensor*', gs), arr('tide_tensor*', ms),
    arr('tide_tensor*', vs), ss and arr('tide_tensor*', ss) or nil, st, 1e-3, 0.9, 0.999, 1e-8, 0.01)
  if rc ~= 0 then error(ffi.string(C.tide_last_error()), 2) end
end

T.test('adamw_multi_step_ refuses mismatched shapes, dtypes and shared memory, before writing', function()
  local function z(...) return tide.zeros(...) end
  local p1, p2 = tide.randn(4), tide.randn(2, 3)
  local keep = bytes(p1)
  T.raises(function() multi({ p1, p2 }, { z(4), z(3, 2) }, { z(4), z(2, 3) }, { z(4), z(2, 3) }) end,
    'grad 2 has shape [3, 2] but param 2 has shape [2, 3]')
  T.raises(function() multi({ p1, p2 }, { z(4), z(2, 3) }, { z(4), z(2, 3, { dtype = 'f64' }) }, { z(4), z(2, 3) }) end,
    'exp_avg 2 has dtype f64 but param 2 has dtype f32')
  T.raises(function() multi({ p1, tide.randn(3, { dtype = 'f64' }) }, { z(4), z(3) }, { z(4), z(3) }, { z(4), z(3) }) end,
    'param 2 has dtype f64 but param 1 has dtype f32; one call updates one dtype')
  T.raises(function() multi({ p1 }, { z(4) }, { z(4) }, { z(4) }, { z(4) }) end,
    'shadow 1 has dtype f32; a shadow is the bf16 copy')
  T.raises(function() multi({ p1 }, { z(4) }, { z(4) }, { z(4) }, { z(2, 2, { dtype = 'bf16' }) }) end,
    'shadow 1 has shape [2, 2] but param 1 has shape [4]')
  local m = z(4)
  T.raises(function() multi({ p1, p2 }, { z(4), z(2, 3) }, { m, z(2, 3) }, { m, z(2, 3) }) end,
    'exp_avg 1 and exp_avg_sq 1 share memory')
  T.raises(function() multi({ p1, p1 }, { z(4), z(4) }, { z(4), z(4) }, { z(4), z(4) }) end, 'param 1 and param 2 share memory')
  local g = z(4)
  multi({ p1, tide.randn(4) }, { g, g }, { z(4), z(4) }, { z(4), z(4) })  -- one grad read by two entries is fine
  keep = bytes(p1)
  T.raises(function() multi({ p1 }, { z(4) }, { z(4) }, { z(4) }, nil, { 0 }) end, 'step 1 is 0; it must be >= 1')
  T.raises(function() multi({ p1, z(3, { dtype = 'i32' }) }, { z(4), z(3) }, { z(4), z(3) }, { z(4), z(3) }) end,
    'param 2 has dtype i32')
  T.eq(bytes(p1), keep, 'a refused call writes nothing')
  T.raises(function()
    local rc = C.tide_adamw_multi_step_(1, arr('tide_tensor*', { p1 }), arr('const tide_tensor*', { z(4) }),
      arr('tide_tensor*', { z(4) }), arr('tide_tensor*', { z(4) }), nil, ffi.new('int64_t[1]', 1), -1, 0.9, 0.999, 1e-8, 0)
    if rc ~= 0 then error(ffi.string(C.tide_last_error())) end
  end, 'invalid learning rate -1')
end)

-- clipping ------------------------------------------------------------------------------

-- grads of mixed sizes and layouts; `dt` their dtype
local function clip_params(seed, dt)
  tide.manual_seed(seed)
  local ps = {}
  for i, s in ipairs { { 7, 5 }, { 0 }, { 1 }, { 33 }, { 1030 } } do
    ps[i] = tide.zeros(unpack(s))
    ps[i].grad = (tide.randn(unpack(s)) * 0.5):to(dt)
  end
  local q = tide.zeros(6, 5)
  q.grad = (tide.randn(5, 6) * 0.5):to(dt):t()  -- a grad that is a view
  ps[#ps + 1] = q
  return ps
end

T.test('clip_grad_norm{sync=false} returns the total as a 0-d tensor and clips the same bits', function()
  for _, dt in ipairs { 'f32', 'f64', 'bf16' } do
    for _, max_norm in ipairs { 0.5, 1e9 } do
      local pa, pb = clip_params(7, dt), clip_params(7, dt)
      local total = tide.optim.clip_grad_norm(pa, max_norm)
      local tt = tide.optim.clip_grad_norm(pb, max_norm, { sync = false })
      T.truthy(tide.is_tensor(tt), 'sync=false returns a tensor')
      T.eq(tt:dim(), 0, 'a 0-d tensor')
      T.eq(tt:item(), total, ('%s max_norm %g: the same total'):format(dt, max_norm))
      for i = 1, #pa do same_bits(pa[i].grad, pb[i].grad, ('%s max_norm %g grad %d'):format(dt, max_norm, i)) end
    end
  end
  local none = tide.optim.clip_grad_norm({ tide.zeros(2) }, 1.0, { sync = false })
  T.eq(none:item(), 0, 'no grads: a zero total')
  T.raises(function() tide.optim.clip_grad_norm({ tide.zeros(2) }, 1.0, { sync = 'no' }) end, 'sync must be true or false')
end)

T.test('clip_grads_ multiplies as mul_ by the torch clip factor would', function()
  -- the factor from an f32 total: reciprocal of (total + 1e-6), times max_norm, each rounded to f32
  local f = ffi.new('float[1]')
  local function r32(x) f[0] = x; return f[0] end
  for _, dt in ipairs { 'f32', 'bf16', 'f16', 'f64' } do
    local ps = clip_params(8, dt)
    local want = {}
    for i, p in ipairs(ps) do want[i] = p.grad:clone() end
    local total = tide.tensor(3.7, { dtype = dt == 'f64' and 'f64' or 'f32' }):reshape({})
    local tv = total:item()
    local coef = dt == 'f64' and (1 / (tv + 1e-6)) * 0.9 or r32(r32(1 / r32(tv + r32(1e-6))) * r32(0.9))
    for _, w in ipairs(want) do w:mul_(coef) end
    local hs = ffi.new('tide_tensor*[?]', #ps)
    for i, p in ipairs(ps) do hs[i - 1] = p.grad._c end
    T.eq(C.tide_clip_grads_(#ps, hs, total._c, 0.9), 0, 'clip_grads_ succeeds')
    for i, p in ipairs(ps) do same_bits(p.grad, want[i], dt .. ' grad ' .. i) end
  end
  -- refused: a total that is not 0-d, an integer grad, a grad sharing memory with another
  local g = tide.randn(4)
  local function clip(list, total)
    local hs = ffi.new('tide_tensor*[?]', #list)
    for i, t in ipairs(list) do hs[i - 1] = t._c end
    if C.tide_clip_grads_(#list, hs, total._c, 1.0) ~= 0 then error(ffi.string(C.tide_last_error())) end
  end
  local t0 = tide.tensor(2.0, { dtype = 'f32' }):reshape({})
  T.raises(function() clip({ g }, tide.ones(2)) end, 'total must be a 0-d tensor')
  T.raises(function() clip({ g }, tide.ones({}, { dtype = 'bf16' })) end, 'total has dtype bf16')
  T.raises(function() clip({ g, tide.zeros(2, { dtype = 'i64' }) }, t0) end, 'tensor 2 has dtype i64')
  T.raises(function() clip({ g, g:narrow(1, 2, 2) }, t0) end, 'tensor 1 and tensor 2 share memory')
end)

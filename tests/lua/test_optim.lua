-- tide.optim: AdamW and SGD against f64 references written here in Lua that
-- follow torch's order of operations, bit patterns produced by torch 2.15 and
-- transformers 5.23 (the script is at the end of this comment), parameter
-- groups, missing grads, zero_grad, state_dict round trips, clip_grad_norm,
-- the Hugging Face schedules, grouped_params and bad arguments.
--
-- The golden values below came from this Python (torch 2.15.0 CPU, AVX-512
-- machine; transformers 5.23.0), whose inputs are exact in both languages:
--
--   def pval(i): return ((i * 37 + 11) % 101) / 101 * 0.2 - 0.1
--   def gval(i, s): return ((i * 53 + s * 17) % 97) / 97 - 0.5
--   pa = torch.tensor([pval(i) for i in range(37)]); pb = torch.tensor([pval(i + 5) * 3 for i in range(20)])
--   opt = torch.optim.AdamW([{'params': [pa]}, {'params': [pb], 'weight_decay': 0.0, 'betas': (0.5, 0.999),
--                            'lr': 2e-3}], lr=5e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
--   for s in 1, 2, 3: pa.grad = [gval(i, s)]; pb.grad = [gval(i, s) * 0.01]; opt.step()
--   -> params, exp_avg, exp_avg_sq as f32 bit patterns
--   ps = [torch.zeros(n) for n in (37, 1000, 5)]; ps[k].grad = [gval(i, k + 1) * (k + 1)]
--   clip_grad_norm_(ps, 1.0) -> total norm; ps[1].grad[:16]
--   for n in 1..20 (f32) and 1..9 (f64): p.grad = [gval(i, n) * 1.7]; clip_grad_norm_([p], 1e9)
--   get_scheduler(name, AdamW(lr=5e-4), num_warmup_steps=3, num_training_steps=10):
--   get_last_lr()[0] before each of 13 steps
local T = require 'tide.testing'
local ffi = require 'ffi'
local C = require 'tide.C'

local GOLD = {
  adamw_a_param = [[
    bd9d7fbc bbc4473e 3d8e1296 bd73ff94 3c7ca5e2 3db3c8a6 bd1e8589 3d13ca39 bdbf5758
    bc8eb470 3d5920f6 bd915e6d b8888c0d 3d9a271a bd57706a 3cae6291 3dbfe541 bd066720
    3d2c1ad5 bdb33411 bc3c373c 3d73896e bd853e20 3bc0052f 3da639d2 bd3f3341 3cde6a97
    bdcd882d bcdc82aa 3d446b27 bda70fe7 bbb61179 3d85e641 bd723dd6 3c411782 3db24ac7
    bd26f6b0]],
  adamw_a_m = [[
    bd184a7d 3c327350 bc4532fb 3d139a93 3c56c3fa bcec170e 3d1caebc bdad6a39 3d81d63d
    bd73d6b4 3db5551b bd0cd8f6 3c60396e bc176ce3 bd5197bd 3c82450b bcd53401 3d282043
    bda7b175 3d878f00 bd68652d bc0df76e bd01676f 3c86ffc4 bbd34d8f bd462637 3c992818
    bcbe50f2 3d3391ca bda1f8b2 3d8d47c4 bd5cf3a5 bbc062a7 bcebebd0 3c9de2d4 bb6f82ad
    bd3ab4b0]],
  adamw_a_v = [[
    3bbfcde3 3c9a6f7f 3b572f04 3cafd6db 3b4fb149 3c992cd0 3bb4914c 3c8e9aba 3c28e0bd
    3c271b29 3c8fda4b 3bb27940 3c9bd1ff 3b4e676a 3cb37592 3b58cb5c 3c9701d1 3bc20f2b
    3c870cbb 3c341818 3c1c7795 3c97b22e 3ba622ee 3c9d7414 3b479c71 3caf4df2 3b63e20f
    3c951667 3bd08b5b 3c7f7c9f 3c3fce9a 3c12532a 3c9757a1 3b9acaed 3c9f55bd 3b42ce1a
    3cab65e8]],
  adamw_b_param = [[
    3e8995c2 bdf485c0 3ddb4f61 be8f8365 bd6356df 3e271180 be5fa541 3c064682 3e5dae4e
    be1c2ea1 3d65714e 3e92a90c bdd024ed 3dff67c7 be840ca9 bd1b9164 3e393722 be4d8fed
    3cd4e9bc 3e6fe8cd]],
  adamw_b_m = [[
    ba2a98a6 ba640658 3928e840 b8733a00 3a7f0cc6 bae4de89 3ae9efbe bb0f261c 3b2a2c8d
    bab3e2dc 3b5f613a ba12f304 ba4c60b4 3983bf64 bb21ba89 3a8b5934 bad90bb8 3af5c290
    bb093cb4 3b3015f6]],
  adamw_b_v = [[
    325c4e08 33274496 31f3d54c 33417b98 31e05b4a 332b1611 323f1704 3322015b 32b35363
    32bf1772 3319b739 324cfeba 33291614 31e8e9e0 3345c37c 31e9230f 3328fb96 324d5480
    331986c6 32bf5eed]],
  clip_total = [[
    41937ee3]],
  clip_g2 = [[
    bc84d6e3 3d305b13 bbc98ca9 3d5994f0 3b80423c bd398461 3c650890 bd104a84 3cc4f802
    bcce214f 3d0bb5dd bc775b2b 3d34efba bba4e772 bd5e2997 3ba4e772]],
  sched_linear = {0.0, 0.00016666666666666666, 0.0003333333333333333, 0.0005, 0.00042857142857142855, 0.00035714285714285714, 0.0002857142857142857, 0.00021428571428571427, 0.00014285714285714284, 7.142857142857142e-05, 0.0, 0.0, 0.0},
  sched_cosine = {0.0, 0.00016666666666666666, 0.0003333333333333333, 0.0005, 0.00047524221697560476, 0.0004058724504646834, 0.0003056302334890786, 0.00019436976651092142, 9.412754953531663e-05, 2.4757783024395242e-05, 0.0, 2.4757783024395215e-05, 9.412754953531657e-05},
  sched_constant_with_warmup = {0.0, 0.00016666666666666666, 0.0003333333333333333, 0.0005, 0.0005, 0.0005, 0.0005, 0.0005, 0.0005, 0.0005, 0.0005, 0.0005, 0.0005},
  clip_sizes_f32 = [[
    3f0d53ed 3f389424 3f418926 3f4a4b9a 3fa2cf2c 3f9d6004 3f9f0061 3fb21ce4 3fb60051 3fc584c5
    3fd017a9 3fe10912 3fe1e89f 3fec9334 3fe962fc 40031cf4 40057dda 40011aaf 400ae387 4009fb2b]],
  clip_sizes_f64 = {0.5520618556701031, 0.7210103944789931, 0.7559989650226482, 0.7902161047386532, 1.2719474032444333, 1.2294926358325962, 1.2421990612666192, 1.3915066602133876, 1.421884675864833},
}

-- helpers ----------------------------------------------------------------------------

local rnd = T.lcg(20241121)

local function list(n, f)
  local r = {}
  for i = 0, n - 1 do r[i + 1] = f(i) end
  return r
end

-- A tensor of the given shape with values uniform in [-scale, scale).
local function randt(shape, scale, dt)
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  local vals = list(n, function() return (rnd() * 2 - 1) * (scale or 1) end)
  return tide.tensor(vals, { dtype = dt or 'f32' }):view(shape)
end

local function vals(t) return (T.flatten(t:to('f64'))) end

-- Row-major f32 bit patterns of t as one string of hex words.
local function bits(t)
  local c = t:contiguous()
  local p = ffi.cast('uint32_t*', c._c.data)
  local r = {}
  for i = 0, c:numel() - 1 do r[#r + 1] = ('%08x'):format(p[i]) end
  return table.concat(r, ' ')
end
local function gold(key) return (GOLD[key]:gsub('%s+', ' '):gsub('^ ', '')) end

-- torch's _single_tensor_adamw in f64 on Lua numbers: st = {p=, m=, v=, step=}.
local function ref_adamw_step(st, g, o)
  local lr, b1, b2, eps, wd = o.lr, o.betas[1], o.betas[2], o.eps, o.weight_decay
  st.step = st.step + 1
  local w = 1 - b1
  local bc1, bc2 = 1 - b1 ^ st.step, 1 - b2 ^ st.step
  local step_size, bc2_sqrt = lr / bc1, math.sqrt(bc2)
  for i = 1, #st.p do
    local p, m, v, gi = st.p[i], st.m[i], st.v[i], g[i]
    p = p * (1 - lr * wd)
    if w < 0.5 then m = m + w * (gi - m) else m = gi - (gi - m) * (1 - w) end
    v = v * b2 + (1 - b2) * gi * gi
    local denom = math.sqrt(v) / bc2_sqrt + eps
    st.p[i], st.m[i], st.v[i] = p + (-step_size) * m / denom, m, v
  end
end

local function ref_state(t)
  local p = vals(t)
  return { p = p, m = list(#p, function() return 0 end), v = list(#p, function() return 0 end), step = 0 }
end

-- AdamW ------------------------------------------------------------------------------

T.test('AdamW matches an f64 reference over several steps, with groups and decay', function()
  for _, dt in ipairs { 'f32', 'f64' } do
    local tol = dt == 'f32' and { rtol = 1e-6, atol = 1e-9 } or { rtol = 1e-13, atol = 1e-15 }
    local a, b = randt({ 5, 7 }, 0.1, dt), randt({ 33 }, 1, dt)
    -- a non-contiguous parameter goes through the strided path of the kernel
    local c = randt({ 4, 6 }, 0.5, dt):t()
    local groups = {
      { params = { a, c } },
      { params = { b }, weight_decay = 0.0, lr = 3e-3, betas = { 0.6, 0.99 }, eps = 1e-6 },
    }
    local defaults = { lr = 5e-4, betas = { 0.9, 0.95 }, eps = 1e-8, weight_decay = 0.1 }
    local opt = tide.optim.AdamW(groups, defaults)
    local ra, rb, rc = ref_state(a), ref_state(b), ref_state(c)
    local ob = { lr = 3e-3, betas = { 0.6, 0.99 }, eps = 1e-6, weight_decay = 0 }
    for _ = 1, 5 do
      a.grad, b.grad = randt({ 5, 7 }, 1, dt), randt({ 33 }, 0.01, dt)
      c.grad = randt({ 6, 4 }, 2, dt)
      ref_adamw_step(ra, vals(a.grad), defaults)
      ref_adamw_step(rb, vals(b.grad), ob)
      ref_adamw_step(rc, vals(c.grad), defaults)
      opt:step()
    end
    T.close(vals(a), ra.p, tol, dt .. ' param a')
    T.close(vals(b), rb.p, tol, dt .. ' param b')
    T.close(vals(c), rc.p, tol, dt .. ' param c (transposed view)')
    T.close(vals(opt.state[a].exp_avg), ra.m, tol, dt .. ' exp_avg')
    T.close(vals(opt.state[b].exp_avg_sq), rb.v, tol, dt .. ' exp_avg_sq')
    T.eq(opt.state[a].step, 5)
    T.eq(a:dtype(), dt)
    T.eq(opt.state[a].exp_avg:dtype(), dt)
  end
end)

T.test('AdamW is bit-equal to torch.optim.AdamW on the golden inputs', function()
  local function pval(i) return ((i * 37 + 11) % 101) / 101 * 0.2 - 0.1 end
  local function gval(i, s) return ((i * 53 + s * 17) % 97) / 97 - 0.5 end
  local pa = tide.tensor(list(37, pval), { dtype = 'f32' })
  local pb = tide.tensor(list(20, function(i) return pval(i + 5) * 3 end), { dtype = 'f32' })
  local opt = tide.optim.AdamW({ { params = { pa } },
                                 { params = { pb }, weight_decay = 0.0, betas = { 0.5, 0.999 }, lr = 2e-3 } },
                               { lr = 5e-4, betas = { 0.9, 0.95 }, eps = 1e-8, weight_decay = 0.1 })
  for s = 1, 3 do
    pa.grad = tide.tensor(list(37, function(i) return gval(i, s) end), { dtype = 'f32' })
    pb.grad = tide.tensor(list(20, function(i) return gval(i, s) * 0.01 end), { dtype = 'f32' })
    opt:step()
  end
  for name, p in pairs { a = pa, b = pb } do
    -- the moments are exact by construction; the parameters could differ by
    -- one ulp where torch's MKL sqrt is not correctly rounded (not here)
    T.eq(bits(opt.state[p].exp_avg), gold('adamw_' .. name .. '_m'), 'exp_avg ' .. name)
    T.eq(bits(opt.state[p].exp_avg_sq), gold('adamw_' .. name .. '_v'), 'exp_avg_sq ' .. name)
    T.eq(bits(p), gold('adamw_' .. name .. '_param'), 'param ' .. name)
  end
end)

T.test('AdamW skips params without grads and starts their step count when one arrives', function()
  local a, b = randt({ 8 }, 1), randt({ 8 }, 1)
  local b0 = b:clone()
  local opt = tide.optim.AdamW({ a, b }, { lr = 1e-2 })
  a.grad = randt({ 8 }, 1)
  opt:step()
  T.same(b, b0, 'b has no grad: unchanged')
  T.eq(opt.state[b], nil)
  T.eq(opt.state[a].step, 1)
  b.grad = randt({ 8 }, 1)
  a.grad = nil
  local a1 = a:clone()
  opt:step()
  T.same(a, a1, 'a has no grad now: unchanged')
  T.eq(opt.state[a].step, 1)
  T.eq(opt.state[b].step, 1)
  local rb = ref_state(b0)
  ref_adamw_step(rb, vals(b.grad), { lr = 1e-2, betas = { 0.9, 0.999 }, eps = 1e-8, weight_decay = 0.01 })
  T.close(vals(b), rb.p, { rtol = 1e-6, atol = 1e-9 })
end)

T.test('AdamW with lr 0 leaves params unchanged; maximize ascends', function()
  local a = randt({ 16 }, 1)
  local a0 = a:clone()
  local opt = tide.optim.AdamW({ a }, { lr = 0, weight_decay = 0.5 })
  a.grad = randt({ 16 }, 1)
  opt:step()
  T.same(a, a0)
  -- maximize: the same as minimizing with the negated gradient
  local x, y = randt({ 9 }, 1), nil
  y = x:clone()
  local g = randt({ 9 }, 1)
  local ox = tide.optim.AdamW({ x }, { lr = 0.1, maximize = true })
  local oy = tide.optim.AdamW({ y }, { lr = 0.1 })
  x.grad, y.grad = g, g:neg()
  ox:step(); oy:step()
  T.same(bits(x), bits(y))
end)

T.test('AdamW step runs a closure and returns its loss', function()
  local a = randt({ 4 }, 1)
  local opt = tide.optim.AdamW({ a })
  local calls = 0
  local loss = opt:step(function() calls = calls + 1; a.grad = tide.ones(4); return 42 end)
  T.eq(loss, 42)
  T.eq(calls, 1)
  T.eq(opt.state[a].step, 1)
end)

T.test('zero_grad sets grads to nil, or zeroes them in place', function()
  local a, b = randt({ 3 }, 1), randt({ 2 }, 1)
  local opt = tide.optim.AdamW({ { params = { a } }, { params = { b } } })
  a.grad, b.grad = tide.ones(3), tide.ones(2)
  opt:zero_grad()
  T.eq(a.grad, nil)
  T.eq(b.grad, nil)
  local g = tide.ones(3)
  a.grad = g
  opt:zero_grad(false)
  T.truthy(rawequal(a.grad, g), 'the same tensor')
  T.same(g, { 0, 0, 0 })
end)

T.test('AdamW state_dict round trip resumes exactly', function()
  local a, b, c = randt({ 6, 3 }, 1), randt({ 10 }, 1), randt({ 4 }, 1)
  local mk = function(ps) return tide.optim.AdamW({ { params = { ps[1], ps[2] } }, { params = { ps[3] }, weight_decay = 0 } },
                                                  { lr = 2e-3, betas = { 0.8, 0.99 } }) end
  local A = mk { a, b, c }
  local grads = {}
  for s = 1, 6 do grads[s] = { randt({ 6, 3 }, 1), randt({ 10 }, 1), randt({ 4 }, 1) } end
  for s = 1, 3 do
    a.grad, b.grad = grads[s][1], grads[s][2]
    c.grad = s ~= 2 and grads[s][3] or nil  -- c misses one step
    A:step()
  end
  local sd = A:state_dict()
  T.eq(sd.state[1].step, 3)
  T.eq(sd.state[3].step, 2)
  T.same(sd.param_groups[1].params, { 1, 2 })
  T.same(sd.param_groups[2].params, { 3 })
  T.eq(sd.param_groups[1].lr, 2e-3)
  -- a fresh optimizer over copies of the parameters, with other options
  local a2, b2, c2 = a:clone(), b:clone(), c:clone()
  local B = tide.optim.AdamW({ { params = { a2, b2 } }, { params = { c2 } } }, { lr = 1 })
  B:load_state_dict(sd)
  T.eq(B.param_groups[1].lr, 2e-3)
  T.eq(B.param_groups[2].weight_decay, 0)
  T.same(B.param_groups[1].betas, { 0.8, 0.99 })
  T.truthy(not rawequal(B.state[a2].exp_avg, A.state[a].exp_avg), 'state is copied, not shared')
  T.truthy(rawequal(B.param_groups[1].params[1], a2), 'B keeps its own params')
  for s = 4, 6 do
    a.grad, b.grad, c.grad = grads[s][1], grads[s][2], grads[s][3]
    a2.grad, b2.grad, c2.grad = grads[s][1], grads[s][2], grads[s][3]
    A:step(); B:step()
  end
  T.eq(bits(a2), bits(a)); T.eq(bits(b2), bits(b)); T.eq(bits(c2), bits(c))
  T.eq(B.state[c2].step, 5)
  -- mismatched structures are clear errors
  local C2 = tide.optim.AdamW({ a2 })
  T.raises(function() C2:load_state_dict(sd) end, 'parameter groups')
  local D = tide.optim.AdamW({ { params = { a2 } }, { params = { c2 } } })
  T.raises(function() D:load_state_dict(sd) end, 'group 1 has 2 parameters')
  local E = tide.optim.AdamW({ { params = { c2, b2 } }, { params = { a2 } } })
  T.raises(function() E:load_state_dict(sd) end, 'shape')
end)

-- SGD ----------------------------------------------------------------------------------

-- torch's _single_tensor_sgd in f64
local function ref_sgd_step(st, g, o)
  for i = 1, #st.p do
    local d = g[i]
    if o.maximize then d = -d end
    if (o.weight_decay or 0) ~= 0 then d = d + o.weight_decay * st.p[i] end
    local mom = o.momentum or 0
    if mom ~= 0 then
      local buf
      if st.buf == nil or st.buf[i] == nil then buf = d
      else buf = st.buf[i] * mom + (1 - (o.dampening or 0)) * d end
      st.buf = st.buf or {}
      st.buf[i] = buf
      if o.nesterov then d = d + mom * buf else d = buf end
    end
    st.p[i] = st.p[i] - o.lr * d
  end
end

T.test('SGD (plain, momentum with dampening and decay, nesterov, maximize) matches an f64 reference', function()
  local cases = {
    { lr = 0.1 },
    { lr = 0.05, momentum = 0.9, dampening = 0.1, weight_decay = 0.01 },
    { lr = 0.05, momentum = 0.9, nesterov = true, weight_decay = 1e-3 },
    { lr = 0.01, momentum = 0.5, maximize = true },
  }
  for ci, o in ipairs(cases) do
    local p = randt({ 3, 5 }, 1):requires_grad_()
    local q = randt({ 7 }, 1)
    local opt = tide.optim.SGD({ p, q }, o)
    local rp, rq = { p = vals(p) }, { p = vals(q) }
    for s = 1, 4 do
      p.grad = randt({ 3, 5 }, 1)
      q.grad = s ~= 2 and randt({ 7 }, 1) or nil
      ref_sgd_step(rp, vals(p.grad), o)
      if q.grad then ref_sgd_step(rq, vals(q.grad), o) end
      opt:step()
    end
    T.close(vals(p), rp.p, { rtol = 1e-6, atol = 1e-7 }, 'case ' .. ci .. ' p')
    T.close(vals(q), rq.p, { rtol = 1e-6, atol = 1e-7 }, 'case ' .. ci .. ' q')
  end
  local p = randt({ 2 }, 1)
  local opt = tide.optim.SGD({ p }, { momentum = 0.9 })
  p.grad = tide.ones(2)
  opt:step()
  T.truthy(opt.state[p].momentum_buffer ~= nil, 'momentum buffer in the state')
  T.eq(opt:state_dict().state[1].momentum_buffer:numel(), 2)
end)

-- clip_grad_norm -------------------------------------------------------------------------

T.test('clip_grad_norm is bit-equal to torch on the golden inputs', function()
  local function gval(i, s) return ((i * 53 + s * 17) % 97) / 97 - 0.5 end
  local ps = {}
  for k, n in ipairs { 37, 1000, 5 } do
    ps[k] = tide.zeros(n)
    ps[k].grad = tide.tensor(list(n, function(i) return gval(i, k) * k end), { dtype = 'f32' })
  end
  local total = tide.optim.clip_grad_norm(ps, 1.0)
  T.eq(bits(tide.tensor({ total }, { dtype = 'f32' })), gold('clip_total'))
  T.eq(bits(ps[2].grad:narrow(1, 1, 16)), gold('clip_g2'))
end)

T.test('clip_grad_norm follows torch\'s summation order for every leftover size', function()
  local function gval(i, s) return ((i * 53 + s * 17) % 97) / 97 - 0.5 end
  local want = {}
  for w in GOLD.clip_sizes_f32:gmatch('%x+') do want[#want + 1] = w end
  for n = 1, 20 do
    local p = tide.zeros(n)
    p.grad = tide.tensor(list(n, function(i) return gval(i, n) * 1.7 end), { dtype = 'f32' })
    local total = tide.optim.clip_grad_norm({ p }, 1e9)
    T.eq(bits(tide.tensor({ total }, { dtype = 'f32' })), want[n], 'f32 size ' .. n)
  end
  for n = 1, 9 do
    local p = tide.zeros(n, { dtype = 'f64' })
    p.grad = tide.tensor(list(n, function(i) return gval(i, n) * 1.7 end), { dtype = 'f64' })
    T.eq(tide.optim.clip_grad_norm({ p }, 1e9), GOLD.clip_sizes_f64[n], 'f64 size ' .. n)
  end
end)

T.test('clip_grad_norm: total norm, scaling, threshold, missing grads', function()
  local ps = { randt({ 4, 5 }, 1), randt({ 1000 }, 1), randt({ 3 }, 1), randt({ 7 }, 1, 'f32') }
  local gs = { randt({ 4, 5 }, 1), randt({ 1000 }, 1), nil, randt({ 7 }, 3) }
  for i = 1, 4 do ps[i].grad = gs[i] end
  local ss = 0
  for _, i in ipairs { 1, 2, 4 } do for _, v in ipairs(vals(gs[i])) do ss = ss + v * v end end
  local expect = math.sqrt(ss)
  local before = { vals(gs[1]), vals(gs[2]), nil, vals(gs[4]) }
  local total = tide.optim.clip_grad_norm(ps, 1.0)
  T.close(total, expect, { rtol = 1e-6, atol = 0 })
  T.eq(ps[3].grad, nil)
  local coef = 1.0 / (expect + 1e-6)
  for _, i in ipairs { 1, 2, 4 } do
    local want = {}
    for j, v in ipairs(before[i]) do want[j] = v * coef end
    T.close(vals(ps[i].grad), want, { rtol = 2e-6, atol = 1e-9 }, 'grad ' .. i)
  end
  -- the clipped norm is max_norm
  local after = 0
  for _, i in ipairs { 1, 2, 4 } do for _, v in ipairs(vals(ps[i].grad)) do after = after + v * v end end
  T.close(math.sqrt(after), 1.0, { rtol = 1e-5 })
  -- below the threshold: the grads are unchanged (the factor is clamped to 1)
  local g0 = bits(ps[2].grad)
  local t2 = tide.optim.clip_grad_norm(ps, 100.0)
  T.close(t2, 1.0, { rtol = 1e-5 })
  T.eq(bits(ps[2].grad), g0)
  -- no grads at all: 0, nothing touched
  T.eq(tide.optim.clip_grad_norm({ randt({ 2 }, 1) }, 1.0), 0)
  -- a single tensor is accepted
  local p = tide.zeros(2)
  p.grad = tide.tensor({ 3, 4 }, { dtype = 'f32' })
  T.close(tide.optim.clip_grad_norm(p, 1.0), 5, { rtol = 0, atol = 0 })
  T.close(p.grad, { 0.6, 0.8 }, { rtol = 1e-6 })
end)

T.test('clip_grad_norm: f64 and bf16 grads, other norm orders, non-finite totals', function()
  local p = tide.zeros(50, { dtype = 'f64' })
  p.grad = randt({ 50 }, 1, 'f64')
  local ss = 0
  for _, v in ipairs(vals(p.grad)) do ss = ss + v * v end
  T.close(tide.optim.clip_grad_norm({ p }, 0.5), math.sqrt(ss), { rtol = 1e-14, atol = 0 })
  local q = tide.zeros(3)
  q.grad = tide.tensor({ -4, 2, 1 }, { dtype = 'f32' })
  T.eq(tide.optim.clip_grad_norm({ q }, 2, { norm_type = 'inf' }), 4)
  T.close(q.grad, { -2, 1, 0.5 }, { rtol = 1e-6 })
  q.grad = tide.tensor({ -1, 2, -3 }, { dtype = 'f32' })
  T.eq(tide.optim.clip_grad_norm({ q }, 100, { norm_type = 1 }), 6)
  T.close(tide.optim.clip_grad_norm({ q }, 100, { norm_type = 3 }), 36 ^ (1 / 3), { rtol = 1e-6 })
  -- bf16 grads: norms in f32, the grads scaled in place
  local h = tide.zeros(2, { dtype = 'bf16' })
  h.grad = tide.tensor({ 3, 4 }, { dtype = 'bf16' })
  T.eq(tide.optim.clip_grad_norm({ h }, 1), 5)
  T.close(h.grad, { 0.6, 0.8 }, { rtol = 1e-2 })
  local r = tide.zeros(2)
  r.grad = tide.tensor({ 1, math.huge }, { dtype = 'f32' })
  T.raises(function() tide.optim.clip_grad_norm({ r }, 1.0, { error_if_nonfinite = true }) end, 'non-finite')
  T.eq(tide.optim.clip_grad_norm({ r }, 1.0, { warn_if_nonfinite = false }), math.huge)
end)

T.test('clip_grad_norm reports a NaN total: returned, warned once, or an error', function()
  local r = tide.zeros(2)
  r.grad = tide.tensor({ 1, 0 / 0 }, { dtype = 'f32' })
  local said = {}
  local real = io.stderr
  io.stderr = { write = function(_, s) said[#said + 1] = s end }
  tide.optim.nonfinite_warned = false
  local ok, total = pcall(tide.optim.clip_grad_norm, { r }, 1.0)
  local total2 = ok and tide.optim.clip_grad_norm({ r }, 1.0)
  io.stderr = real
  T.truthy(ok, tostring(total))
  T.truthy(total ~= total and total2 ~= total2, 'the NaN total is returned')
  T.eq(#said, 1)
  T.truthy(said[1]:find('clip_grad_norm: warning: the total gradient norm is nan', 1, true), said[1])
  T.raises(function() tide.optim.clip_grad_norm({ r }, 1.0, { error_if_nonfinite = true }) end,
    'clip_grad_norm: the total norm of order 2 of the gradients is non-finite (nan)')
end)

T.test('clip_grad_norm: an infinite total is warned about once, the grads still scaled', function()
  local r = tide.zeros(3)
  r.grad = tide.tensor({ 1, -math.huge, 2 }, { dtype = 'f32' })
  local said = {}
  local real = io.stderr
  io.stderr = { write = function(_, s) said[#said + 1] = s end }
  tide.optim.nonfinite_warned = false
  local ok, total = pcall(tide.optim.clip_grad_norm, { r }, 1.0, { norm_type = 1 })
  io.stderr = real
  T.truthy(ok, tostring(total))
  T.eq(total, math.huge)
  T.eq(#said, 1)
  T.truthy(said[1]:find('the total gradient norm is inf', 1, true), said[1])
  -- torch's factor: max_norm / (inf + 1e-6) = 0, so finite grads become 0 and -inf * 0 NaN
  local g = r.grad:tolist()
  T.eq(g[1], 0); T.truthy(g[2] ~= g[2]); T.eq(g[3], 0)
  T.raises(function() tide.optim.clip_grad_norm({ r }, 1.0, { error_if_nonfinite = true, norm_type = 1 }) end,
    'clip_grad_norm: the total norm of order 1 of the gradients is non-finite (nan)')
end)

-- tide_multi_norm, the C op under clip_grad_norm: the norm of per-tensor norms
local function multi_norm(ts, p)
  local h = ffi.new('const tide_tensor*[?]', math.max(#ts, 1))
  for i, t in ipairs(ts) do h[i - 1] = t._c end
  local out = ffi.new('tide_tensor*[1]')
  if C.tide_multi_norm(#ts, h, p, out) ~= 0 then error(ffi.string(C.tide_last_error()), 2) end
  return require('tide.tensor').wrap(out[0])
end

T.test('tide_multi_norm: dtypes, orders, empty lists and bad arguments', function()
  local a = tide.tensor({ 3, 4 }, { dtype = 'f32' })
  local b = tide.tensor({ 12 }, { dtype = 'f64' })
  local r = multi_norm({ a }, 2)
  T.eq(r:dtype(), 'f32'); T.eq(r:dim(), 0); T.eq(r:item(), 5)
  r = multi_norm({ a, b }, 2)
  T.eq(r:dtype(), 'f64'); T.eq(r:item(), 13)
  T.eq(multi_norm({ a, b }, math.huge):item(), 12)
  T.eq(multi_norm({ a, b }, -math.huge):item(), 3)
  T.eq(multi_norm({ a, b }, 1):item(), 19)
  T.eq(multi_norm({ a, tide.zeros(3) }, 0):item(), 1)  -- two norms, one of them nonzero
  T.eq(multi_norm({ tide.tensor({ 3, 4 }, { dtype = 'bf16' }) }, 2):dtype(), 'f32')
  -- a strided operand reads as its values
  local s = tide.tensor({ 3, 100, 4, 100 }, { dtype = 'f32' }):view(2, 2):select(2, 1)
  T.eq(multi_norm({ s }, 2):item(), 5)
  -- empty tensors and an empty list
  T.eq(multi_norm({ tide.zeros(0) }, 2):item(), 0)
  T.eq(multi_norm({ tide.zeros(0) }, math.huge):item(), 0)
  T.eq(multi_norm({ tide.zeros(0) }, -math.huge):item(), math.huge)
  r = multi_norm({}, 2)
  T.eq(r:dtype(), 'f32'); T.eq(r:item(), 0)
  T.raises(function() multi_norm({ a }, 0 / 0) end, 'multi_norm: the norm order is NaN')
  local h = ffi.new('const tide_tensor*[2]')
  h[0] = a._c  -- h[1] stays NULL
  local out = ffi.new('tide_tensor*[1]')
  T.eq(C.tide_multi_norm(2, h, 2, out), -1)
  T.truthy(ffi.string(C.tide_last_error()):find('multi_norm (tensor 2): expected a tensor', 1, true))
end)

T.test('a scheduler state_dict survives a trip through tide.json', function()
  local p = tide.zeros(2)
  local opt = tide.optim.AdamW({ p }, { lr = 1e-3 })
  local s = tide.optim.get_cosine_schedule_with_warmup(opt, 2, 10)
  for _ = 1, 3 do s:step() end
  local text = tide.json.encode(s:state_dict())
  local opt2 = tide.optim.AdamW({ tide.zeros(2) }, { lr = 1e-3 })
  local s2 = tide.optim.get_cosine_schedule_with_warmup(opt2, 2, 10)
  -- decoded arrays carry json.array_mt, which load_state_dict once refused
  s2:load_state_dict(tide.json.decode(text))
  T.eq(s2.last_epoch, s.last_epoch)
  T.same(s2:get_last_lr(), s:get_last_lr())
  s:step(); s2:step()
  T.same(s2:get_last_lr(), s:get_last_lr())
end)

T.test('load_state_dict of a module refuses what is not a state dict', function()
  local m = tide.nn.Linear(2, 3)
  T.raises(function() m:load_state_dict('x') end, 'load_state_dict: expected a table of name -> tensor')
  T.raises(function() m:load_state_dict(tide.ones(2)) end, 'got a tensor')
  T.raises(function() m:load_state_dict({ weight = 'x', bias = tide.zeros(3) }) end, 'load_state_dict: weight is a string in the state dict')
  T.raises(function() m:load_state_dict(m:state_dict(), 'strict') end, 'options must be a table')
  m:load_state_dict(m:state_dict())
end)

-- schedulers ------------------------------------------------------------------------------

local function lr_sequence(sched, opt, n)
  local out = {}
  for s = 1, n do
    out[s] = sched:get_last_lr()[1]
    T.eq(opt.param_groups[1].lr, out[s])
    sched:step()
  end
  return out
end

T.test('schedulers give the learning rates transformers gives, bit for bit', function()
  for _, name in ipairs { 'linear', 'cosine', 'constant_with_warmup' } do
    local opt = tide.optim.AdamW({ tide.zeros(1) }, { lr = 5e-4 })
    local sched = tide.optim.get_scheduler(name, opt, { num_warmup_steps = 3, num_training_steps = 10 })
    local got = lr_sequence(sched, opt, 13)
    local want = GOLD['sched_' .. name]
    for i = 1, 13 do T.eq(got[i], want[i], name .. ' step ' .. (i - 1)) end
  end
end)

T.test('schedulers against closed forms: warmup edges, past the end, groups', function()
  local base = 0.1
  local function mk() return tide.optim.SGD({ tide.zeros(1) }, { lr = base }) end
  local W, N = 4, 12
  local opt = mk()
  local s = tide.optim.get_scheduler('constant', opt)
  T.same(lr_sequence(s, opt, 3), { base, base, base })
  opt = mk()
  s = tide.optim.get_scheduler('constant_with_warmup', opt, { num_warmup_steps = W })
  local got = lr_sequence(s, opt, 7)
  for i, step in ipairs { 0, 1, 2, 3, 4, 5, 6 } do
    T.eq(got[i], base * (step < W and step / W or 1))
  end
  opt = mk()
  s = tide.optim.get_scheduler('linear', opt, { num_warmup_steps = W, num_training_steps = N })
  got = lr_sequence(s, opt, N + 4)
  for step = 0, N + 3 do
    local f = step < W and step / W or math.max(0, (N - step) / (N - W))
    T.eq(got[step + 1], base * f, 'linear step ' .. step)
  end
  T.eq(got[W + 1], base, 'peak right after warmup')
  T.eq(got[N + 1], 0)
  T.eq(got[N + 4], 0, 'stays 0 past num_training_steps')
  for _, nc in ipairs { 0.5, 1.5 } do
    opt = mk()
    s = tide.optim.get_scheduler('cosine', opt, { num_warmup_steps = W, num_training_steps = N, num_cycles = nc })
    got = lr_sequence(s, opt, N + 3)
    for step = 0, N + 2 do
      local f
      if step < W then f = step / W
      else f = math.max(0, 0.5 * (1 + math.cos(math.pi * nc * 2 * ((step - W) / (N - W))))) end
      T.eq(got[step + 1], base * f, 'cosine step ' .. step)
    end
    T.truthy(got[N + 1] >= 0)
  end
  -- no warmup: the first step has the full lr; cosine is at half way in the middle
  opt = mk()
  s = tide.optim.get_cosine_schedule_with_warmup(opt, 0, 10)
  got = lr_sequence(s, opt, 6)
  T.eq(got[1], base)
  T.close(got[6], base / 2, { rtol = 1e-15 })
  -- each group follows its own initial lr; get_lr and get_last_lr list them all
  local a, b = tide.zeros(1), tide.zeros(1)
  opt = tide.optim.AdamW({ { params = { a } }, { params = { b }, lr = 0.02 } }, { lr = 0.01 })
  s = tide.optim.get_linear_schedule_with_warmup(opt, 2, 6)
  T.same(s:get_last_lr(), { 0, 0 })
  s:step()
  T.same(s:get_last_lr(), { 0.01 * 0.5, 0.02 * 0.5 })
  T.same(s:get_lr(), s:get_last_lr())
  T.eq(opt.param_groups[2].lr, 0.01)
  T.eq(opt.param_groups[1].initial_lr, 0.01)
  -- a second scheduler starts from the initial lrs, not the current ones
  local s2 = tide.optim.get_constant_schedule(opt)
  T.same(s2:get_last_lr(), { 0.01, 0.02 })
  -- a scheduler's state_dict resumes the count
  opt = mk()
  s = tide.optim.get_scheduler('linear', opt, { num_warmup_steps = W, num_training_steps = N })
  for _ = 1, 5 do s:step() end
  local opt2 = mk()
  local t2 = tide.optim.get_scheduler('linear', opt2, { num_warmup_steps = W, num_training_steps = N })
  t2:load_state_dict(s:state_dict())
  s:step(); t2:step()
  T.eq(t2:get_last_lr()[1], s:get_last_lr()[1])
  T.eq(opt2.param_groups[1].lr, opt.param_groups[1].lr)
  -- a plain LambdaLR
  opt = mk()
  s = tide.optim.LambdaLR(opt, function(step) return 0.5 ^ step end)
  T.same(lr_sequence(s, opt, 3), { base, base * 0.5, base * 0.25 })
end)

-- grouped_params ----------------------------------------------------------------------------

-- A module as tide.nn defines one: type_name and own parameters (_params and
-- _param_order, or named_parameters(prefix, false)).
local function fake_module(type_name, params, use_method)
  local m = { type_name = type_name, _params = {}, _param_order = {} }
  for _, np in ipairs(params) do
    m._params[np[1]] = np[2]
    m._param_order[#m._param_order + 1] = np[1]
  end
  if use_method then
    m._params, m._param_order = nil, nil
    function m:named_parameters(prefix, recurse)
      assert(recurse == false)
      local out = {}
      for _, np in ipairs(params) do out[#out + 1] = { prefix == '' and np[1] or prefix .. '.' .. np[1], np[2] } end
      return out
    end
  end
  return m
end

T.test('grouped_params exempts biases and normalisation layers by module type', function()
  local P = {}
  for _, n in ipairs { 'wte', 'wpe', 'ln1_w', 'ln1_b', 'attn_w', 'attn_b', 'proj_w', 'proj_b', 'lnf_w', 'lnf_b',
                       'rms_w', 'extra' } do
    P[n] = tide.zeros(2)
  end
  local mods = {
    { '', fake_module('GPT2LMHeadModel', { { 'extra', P.extra } }) },
    { 'transformer.wte', fake_module('Embedding', { { 'weight', P.wte } }) },
    { 'transformer.wpe', fake_module('Embedding', { { 'weight', P.wpe } }, true) },
    { 'transformer.h.0.ln_1', fake_module('LayerNorm', { { 'weight', P.ln1_w }, { 'bias', P.ln1_b } }) },
    { 'transformer.h.0.attn.c_attn', fake_module('Conv1D', { { 'weight', P.attn_w }, { 'bias', P.attn_b } }, true) },
    { 'transformer.h.0.mlp.c_proj', fake_module('Linear', { { 'weight', P.proj_w }, { 'bias', P.proj_b } }) },
    { 'transformer.ln_f', fake_module('LayerNorm', { { 'weight', P.lnf_w }, { 'bias', P.lnf_b } }, true) },
    { 'norm', fake_module('RMSNorm', { { 'weight', P.rms_w } }) },
    -- tied: lm_head shares wte's weight; it is listed once
    { 'lm_head', fake_module('Linear', { { 'weight', P.wte } }) },
  }
  local model = { named_modules = function() return mods end }
  local groups = tide.optim.grouped_params(model, 0.1)
  T.eq(#groups, 2)
  T.eq(groups[1].weight_decay, 0.1)
  T.eq(groups[2].weight_decay, 0.0)
  local function same_list(got, names)
    T.eq(#got, #names)
    for i, n in ipairs(names) do T.truthy(rawequal(got[i], P[n]), ('position %d should be %s'):format(i, n)) end
  end
  same_list(groups[1].params, { 'extra', 'wte', 'wpe', 'attn_w', 'proj_w' })
  same_list(groups[2].params, { 'ln1_w', 'ln1_b', 'attn_b', 'proj_b', 'lnf_w', 'lnf_b', 'rms_w' })
  -- the groups feed AdamW directly
  local opt = tide.optim.AdamW(groups, { lr = 1e-3 })
  T.eq(opt.param_groups[2].weight_decay, 0.0)
  T.eq(opt.param_groups[1].lr, 1e-3)
  T.raises(function() tide.optim.grouped_params(nil, 0.1) end, 'expected a model')
  T.raises(function() tide.optim.grouped_params(model, -1) end, 'weight_decay')
end)

T.test('grouped_params on a tide GPT-2: ln_* weights and biases are exempt', function()
  if not (tide.gpt2 and tide.gpt2.new) then T.skip('tide.gpt2 is not available') end
  local model = tide.gpt2.new { vocab_size = 64, n_positions = 16, n_embd = 16, n_layer = 2, n_head = 2 }
  local groups = tide.optim.grouped_params(model, 0.1)
  local name_of = {}
  for _, np in ipairs(model:named_parameters()) do name_of[np[2]] = np[1] end
  local n = 0
  for _, p in ipairs(groups[1].params) do
    local name = name_of[p]
    T.truthy(not name:find('bias') and not name:find('ln_'), name .. ' should be exempt')
    n = n + 1
  end
  for _, p in ipairs(groups[2].params) do
    local name = name_of[p]
    T.truthy(name:find('%.bias$') or name:find('ln_'), name .. ' should be decayed')
    n = n + 1
  end
  T.eq(n, #model:parameters(), 'every parameter once')
end)

-- bad arguments ------------------------------------------------------------------------------

T.test('bad optimizer arguments are clear errors', function()
  local p = tide.zeros(3)
  T.raises(function() tide.optim.AdamW({ p }, { lr = -1 }) end, 'invalid learning rate -1')
  T.raises(function() tide.optim.AdamW({ p }, { betas = { 1.0, 0.999 } }) end, 'invalid beta1 1')
  T.raises(function() tide.optim.AdamW({ p }, { betas = { 0.9, -0.1 } }) end, 'invalid beta2')
  T.raises(function() tide.optim.AdamW({ p }, { betas = 0.9 }) end, 'betas must be a list')
  T.raises(function() tide.optim.AdamW({ p }, { eps = -1 }) end, 'invalid eps')
  T.raises(function() tide.optim.AdamW({ p }, { weight_decay = -0.1 }) end, 'invalid weight_decay')
  T.raises(function() tide.optim.AdamW({ p }, { learning_rate = 1 }) end, "unknown option 'learning_rate'")
  T.raises(function() tide.optim.AdamW({ p }, { amsgrad = true }) end, 'amsgrad')
  T.raises(function() tide.optim.AdamW({ { params = { p }, lr = -2 } }) end, 'group 1')
  T.raises(function() tide.optim.AdamW(p) end, 'single tensor')
  T.raises(function() tide.optim.AdamW({}) end, 'empty parameter list')
  T.raises(function() tide.optim.AdamW({ 1 }) end, 'group 1 must be a table')
  T.raises(function() tide.optim.AdamW({ { params = { p, 'x' } } }) end, 'parameter 2 of group 1 is a string')
  T.raises(function() tide.optim.AdamW({ p, p }) end, 'more than once')
  T.raises(function() tide.optim.AdamW({ { params = { p } }, { params = { p } } }) end, 'more than once')
  T.raises(function() tide.optim.AdamW({ tide.zeros(2, { dtype = 'i64' }) }) end, 'floating-point')
  T.raises(function() tide.optim.AdamW({ tide.zeros(2, { dtype = 'f16' }) }) end, 'f32 or f64')
  T.raises(function() tide.optim.SGD({ p }, { lr = -0.1 }) end, 'invalid learning rate')
  T.raises(function() tide.optim.SGD({ p }, { nesterov = true }) end, 'nesterov')
  T.raises(function() tide.optim.SGD({ p }, { momentum = -1 }) end, 'momentum')
  -- grads that do not fit their parameter
  local opt = tide.optim.AdamW({ p })
  p.grad = tide.zeros(4)
  T.raises(function() opt:step() end, 'grad has shape [4] but param has shape [3]')
  p.grad = tide.zeros(3, { dtype = 'f64' })
  T.raises(function() opt:step() end, 'grad has dtype f64 but param has dtype f32')
  T.eq(opt.state[p].step, 0, 'a failed step does not count')
  p.grad = 3
  T.raises(function() opt:step() end, 'is a number, expected a tensor or nil')
  p.grad = nil
  T.raises(function() tide.optim.AdamW({ parameters = function() return {} end }) end, 'pass model:parameters()')
  local a = tide.optim.AdamW({ p })
  a:add_param_group { params = { tide.zeros(2) }, lr = 0.5 }
  T.eq(#a.param_groups, 2)
  T.eq(a.param_groups[2].lr, 0.5)
  T.eq(a.param_groups[2].eps, 1e-8)
  T.raises(function() a:add_param_group { params = { p } } end, 'already in another group')
end)

T.test('bad scheduler and clipping arguments are clear errors', function()
  local opt = tide.optim.AdamW({ tide.zeros(1) })
  T.raises(function() tide.optim.get_scheduler('cosine_restarts', opt, { num_warmup_steps = 1, num_training_steps = 5 }) end,
    "unknown scheduler 'cosine_restarts'")
  T.raises(function() tide.optim.get_scheduler('linear', opt, { num_warmup_steps = 1 }) end,
    'linear requires num_training_steps')
  T.raises(function() tide.optim.get_scheduler('cosine', opt, { num_training_steps = 10 }) end,
    'cosine requires num_warmup_steps')
  T.raises(function() tide.optim.get_scheduler('constant_with_warmup', opt, {}) end, 'requires num_warmup_steps')
  T.raises(function() tide.optim.get_scheduler('linear', opt, { num_warmup_steps = -1, num_training_steps = 5 }) end,
    'num_warmup_steps must be an integer >= 0')
  T.raises(function() tide.optim.get_scheduler('linear', opt, { num_warmup_steps = 1.5, num_training_steps = 5 }) end,
    'integer >= 0')
  T.raises(function() tide.optim.get_scheduler('linear', opt, { num_warmup_steps = 0, num_training_steps = 5, warmup = 3 }) end,
    "unknown option 'warmup'")
  T.raises(function() tide.optim.get_scheduler('linear', nil, { num_warmup_steps = 0, num_training_steps = 5 }) end,
    'expected an optimizer')
  T.raises(function() tide.optim.get_scheduler(3, opt) end, 'name must be a string')
  T.raises(function() tide.optim.LambdaLR(opt, 3) end, 'expected a function')
  T.raises(function() tide.optim.clip_grad_norm({ tide.zeros(1) }, 'x') end, 'max_norm must be a number')
  T.raises(function() tide.optim.clip_grad_norm({ 3 }, 1) end, 'parameter 1 is a number')
  T.raises(function() tide.optim.clip_grad_norm({ tide.zeros(1) }, 1, { norm_type = 'two' }) end, 'norm_type')
end)

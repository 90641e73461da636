-- tide.dist.DataParallel and ZeRO-1 in a world of one (no launcher, no MPI):
-- bucket layout, the hooks' bookkeeping, no_sync, unused parameters, option
-- errors, and ZeRO-1's arithmetic and state_dict against a plain AdamW.
-- The multi-rank behaviour is tests/cli/test_ddp.sh (mpirun -np 2).
local T = require 'tide.testing'

local function tiny(seed)
  tide.manual_seed(seed or 1)
  return tide.gpt2.new({ vocab_size = 32, n_positions = 8, n_embd = 16, n_layer = 2, n_head = 2,
                         resid_pdrop = 0, embd_pdrop = 0, attn_pdrop = 0 })
end

-- n steps of AdamW with clipping; returns the losses and norms
local function train(model, opt, n)
  tide.manual_seed(11)
  local out = {}
  for s = 1, n do
    local x = tide.randint(0, 32, { 3, 8 }):to('i32')
    opt:zero_grad()
    local loss = model(x, { labels = x }).loss
    loss:backward()
    local norm = tide.optim.clip_grad_norm(model:parameters(), 0.5)
    opt:step()
    out[#out + 1] = { loss:item(), norm }
  end
  return out
end

T.test('buckets hold the parameters in reverse order, the first small, each of one dtype', function()
  local m = tide.dist.DataParallel(tiny(), { bucket_mb = 0.01, first_bucket_mb = 0.001 })
  local params = m:parameters()
  local b = m.ddp.buckets
  T.eq(b[1].params[1], params[#params])  -- ln_f.bias: the last parameter, the first gradient done
  T.eq(b[#b].params[#b[#b].params], params[1])  -- wte, tied to the head: done last
  local seen = 0
  for i, bk in ipairs(b) do
    local cap = (i == 1 and 0.001 or 0.01) * 1024 * 1024
    if #bk.params > 1 then T.eq(bk.bytes <= cap, true) end
    seen = seen + #bk.params
  end
  T.eq(seen, #params)
  T.eq(b[1].bytes <= 1048, true)
  T.raises(function() tide.dist.DataParallel(m) end, 'wrapped already')
end)

T.test('in a world of one DataParallel trains exactly as the bare model', function()
  local a = tiny()
  local ra = train(a, tide.optim.AdamW(tide.optim.grouped_params(a, 0.1), { lr = 1e-2 }), 4)
  local b = tide.dist.DataParallel(tiny(), { bucket_mb = 0.01 })
  local rb = train(b, tide.optim.AdamW(tide.optim.grouped_params(b, 0.1), { lr = 1e-2 }), 4)
  for i = 1, 4 do
    T.eq(rb[i][1], ra[i][1])
    T.eq(rb[i][2], ra[i][2])
  end
  -- after backward each .grad is a view of its bucket
  local p = b:parameters()[1]
  T.eq(rawequal(p.grad, b.ddp.slot_of[p]), true)
  T.eq(b.ddp.stats.reduces, 0)  -- no communication in a world of one
end)

T.test('no_sync leaves the gradients local, and the next backward takes the sum', function()
  local m = tide.dist.DataParallel(tiny(), { bucket_mb = 0.01 })
  local x = tide.randint(0, 32, { 2, 8 }):to('i32')
  local p = m:parameters()[1]
  local r = m:no_sync(function(v)
    m(x, { labels = x }).loss:backward()
    return v + 1
  end, 41)
  T.eq(r, 42)
  T.eq(rawequal(p.grad, m.ddp.slot_of[p]), false)  -- not put in a bucket
  local once = p.grad:clone()
  m(x, { labels = x }).loss:backward()
  T.eq(rawequal(p.grad, m.ddp.slot_of[p]), true)
  T.close(p.grad, once * 2, { rtol = 1e-6, atol = 1e-7 })
  -- an error inside no_sync turns syncing back on
  T.raises(function() m:no_sync(function() error('inside') end) end, 'inside')
  T.eq(m.ddp.sync, true)
  T.raises(function() m:no_sync(42) end, 'expected a function')
end)

T.test('a parameter that gets no gradient contributes zeros', function()
  local lin = tide.nn.Linear(3, 2)
  local unused = tide.nn.Linear(3, 2)
  local seq = tide.nn.Module:extend('Two')
  function seq:init() self:add_module('a', lin); self:add_module('b', unused) end
  function seq:forward(x) return self.a(x) end
  local m = tide.dist.DataParallel(seq(), { bucket_mb = 1 })
  m(tide.ones(4, 3)):sum():backward()
  T.same(unused.weight.grad:tolist(), { { 0, 0, 0 }, { 0, 0, 0 } })
  T.same(lin.bias.grad:tolist(), { 4, 4 })
end)

T.test('bad DataParallel options are errors naming them', function()
  T.raises(function() tide.dist.DataParallel(tiny(), { bucket = 25 }) end, "unknown option 'bucket'")
  T.raises(function() tide.dist.DataParallel(tiny(), { bucket_mb = 0 }) end, 'bucket_mb must be a positive number')
  T.raises(function() tide.dist.DataParallel(tiny(), { first_bucket_mb = 'x' }) end, 'first_bucket_mb must be a positive number')
  T.raises(function() tide.dist.DataParallel(tiny(), { overlap = 1 }) end, 'overlap must be true or false')
  T.raises(function() tide.dist.DataParallel(42) end, 'expected a model')
end)

T.test('ZeRO-1 in a world of one matches AdamW, and its state_dict is a plain AdamW one', function()
  local a = tiny()
  local oa = tide.optim.AdamW(tide.optim.grouped_params(a, 0.1), { lr = 1e-2 })
  local ra = train(a, oa, 5)
  local b = tide.dist.DataParallel(tiny(), { bucket_mb = 0.01, first_bucket_mb = 0.002 })
  local ob = tide.optim.AdamW(tide.optim.grouped_params(b, 0.1), { lr = 1e-2, zero = 1 })
  local rb = train(b, ob, 5)
  for i = 1, 5 do
    T.close(tide.tensor({ rb[i][1], rb[i][2] }, { dtype = 'f64' }), tide.tensor({ ra[i][1], ra[i][2] }, { dtype = 'f64' }),
      { rtol = 1e-6, atol = 0 })
  end
  local sa, sb = oa:state_dict(), ob:state_dict()
  T.eq(#sb.param_groups, #sa.param_groups)
  for id, st in pairs(sa.state) do
    T.eq(sb.state[id].step, st.step)
    T.close(sb.state[id].exp_avg, st.exp_avg, { rtol = 1e-4, atol = 1e-6 })
    T.close(sb.state[id].exp_avg_sq, st.exp_avg_sq, { rtol = 1e-4, atol = 1e-9 })
  end
  -- a plain AdamW's state loads into a ZeRO-1 one (and the next steps agree)
  local c = tide.dist.DataParallel(tiny(9), { bucket_mb = 0.01 })
  local oc = tide.optim.AdamW(tide.optim.grouped_params(c, 0.1), { lr = 1e-2, zero = 1 })
  tide.no_grad(function()
    local pa, pc = a:parameters(), c:parameters()
    for i = 1, #pa do pc[i]:copy_(pa[i]) end
  end)
  oc:load_state_dict(sa)
  local ra2, rc2 = train(a, oa, 2), train(c, oc, 2)
  for i = 1, 2 do T.close(tide.tensor({ rc2[i][1] }), tide.tensor({ ra2[i][1] }), { rtol = 1e-5, atol = 0 }) end
end)

T.test('ZeRO-1 needs a DataParallel model, all its parameters for clipping, and zero in {0, 1}', function()
  local m = tiny()
  T.raises(function() tide.optim.AdamW(m:parameters(), { zero = 1 }) end, 'wrap the model with tide.dist.DataParallel')
  T.raises(function() tide.optim.AdamW(m:parameters(), { zero = 2 }) end, 'zero must be 0 (off) or 1')
  local d = tide.dist.DataParallel(tiny())
  local opt = tide.optim.AdamW(d:parameters(), { zero = 1 })
  T.raises(function() tide.optim.AdamW(d:parameters(), { zero = 1 }) end, 'sharded by another optimizer')
  local x = tide.randint(0, 32, { 2, 8 }):to('i32')
  T.raises(function() opt:step() end, 'step() without gradients')
  d(x, { labels = x }).loss:backward()
  T.raises(function() tide.optim.clip_grad_norm({ d:parameters()[1] }, 1.0) end, 'pass them all')
  T.raises(function() tide.optim.clip_grad_norm(d:parameters(), 1.0, { norm_type = 'inf' }) end, 'only the 2-norm')
  local n = tide.optim.clip_grad_norm(d:parameters(), 1.0)
  T.eq(n > 0, true)
  opt:step()
end)

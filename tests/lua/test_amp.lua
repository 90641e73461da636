-- Mixed precision (tide.autocast, tide.amp.param: bf16 shadows of f32 master
-- weights) and gradient checkpointing (tide.checkpoint), on the CPU.
local T = require 'tide.testing'
local C = require 'tide.C'

local function version(t) return tonumber(C.tide_tensor_version(t._c)) end
local function bits_equal(a, b, msg)
  T.eq(a:dtype(), b:dtype(), msg)
  T.truthy(a:equal(b), (msg or '') .. ': not bitwise equal (max difference ' ..
    (a:to('f64') - b:to('f64')):abs():max():item() .. ')')
end

-- autocast mode -------------------------------------------------------------------

T.test('autocast: on inside, nesting restores the mode, also after an error', function()
  T.eq(tide.amp.is_autocast(), false)
  T.eq(tide.amp.dtype(), nil)
  local seen = {}
  local r1, r2 = tide.autocast('bf16', function(a, b)
    seen[1] = tide.amp.dtype()
    tide.autocast('f32', function() seen[2] = tide.amp.is_autocast() end)
    seen[3] = tide.amp.dtype()
    tide.autocast(nil, function() seen[4] = tide.amp.is_autocast() end)
    local ok = pcall(tide.autocast, 'f32', function() error('boom') end)
    seen[5] = ok
    seen[6] = tide.amp.dtype()
    return a + b, 'x'
  end, 1, 2)
  T.same(seen, { 'bf16', false, 'bf16', false, false, 'bf16' })
  T.eq(r1, 3); T.eq(r2, 'x')
  T.eq(tide.amp.is_autocast(), false)
  local err = T.raises(function() tide.autocast('bf16', function() error('inner failure') end) end, 'inner failure')
  T.eq(tide.amp.is_autocast(), false, 'off again after ' .. err)
  T.raises(function() tide.autocast('f16', function() end) end, "dtype must be 'bf16' (autocast on) or 'f32'/nil (off), got \"f16\"")
  T.raises(function() tide.autocast('bf16', 42) end, 'expected a function (or a callable module) after the dtype, got number')
end)

-- shadows ------------------------------------------------------------------------------

T.test('amp.param: p outside autocast; inside, a bf16 shadow re-cast only when p changed', function()
  local p = tide.randn(4, 3):requires_grad_()
  T.eq(tide.amp.param(p), p)
  local s1, s2, shadow
  tide.autocast('bf16', function()
    s1 = tide.amp.param(p)
    s2 = tide.amp.param(p)
  end)
  shadow = rawget(p, '_bf16')
  T.eq(s1:dtype(), 'bf16')
  T.same(s1:shape(), { 4, 3 })
  T.truthy(shadow:is_contiguous())
  bits_equal(s1, p:detach():to('bf16'), 'the shadow')
  T.eq(rawget(p, '_bf16_version'), version(p))
  -- the same storage, not cast again: its version did not move
  local v = version(shadow)
  tide.autocast('bf16', function() tide.amp.param(p) end)
  T.eq(version(shadow), v, 'no re-cast while p is unchanged')
  -- an optimizer that writes the shadow itself and records p's version: free
  tide.no_grad(function() p:add_(1) end)
  tide.no_grad(function() shadow:copy_(p) end)
  rawset(p, '_bf16_version', version(p))
  v = version(shadow)
  tide.autocast('bf16', function() tide.amp.param(p) end)
  T.eq(version(shadow), v, 'the shadow written with p: no cast')
  -- p changed and nobody wrote the shadow: re-cast in place, the same tensor
  tide.no_grad(function() p:mul_(3) end)
  local s3 = tide.autocast('bf16', function() return tide.amp.param(p) end)
  T.eq(rawget(p, '_bf16'), shadow, 'the same shadow tensor')
  T.truthy(version(shadow) > v, 're-cast')
  bits_equal(s3, p:detach():to('bf16'), 'the shadow after p changed')
  -- non-float, bf16, f64 and nil pass through
  tide.autocast('bf16', function()
    local i = tide.arange(3)
    T.eq(tide.amp.param(i), i)
    local b = tide.randn(2):to('bf16')
    T.eq(tide.amp.param(b), b)
    local d = tide.randn(2, { dtype = 'f64' })
    T.eq(tide.amp.param(d), d)
    T.eq(tide.amp.param(nil), nil)
  end)
end)

T.test('amp.param: the gradient reaches p as f32, equal to a manual bf16 computation', function()
  tide.manual_seed(3)
  local w = tide.randn(5, 8):requires_grad_()
  local b = tide.randn(5):requires_grad_()
  local x = tide.randn(6, 8)
  local g = tide.randn(6, 5)
  local y = tide.autocast('bf16', function() return tide.F.linear(x, w, b) end)
  T.eq(y:dtype(), 'bf16')
  y:backward(g:to('bf16'))
  T.eq(w.grad:dtype(), 'f32'); T.eq(b.grad:dtype(), 'f32')
  -- by hand: the same products on bf16 copies, outside autocast
  local wb = w:detach():to('bf16'):requires_grad_()
  local bb = b:detach():to('bf16'):requires_grad_()
  local ym = tide.F.linear(x:to('bf16'), wb, bb)
  bits_equal(y:detach(), ym:detach(), 'forward')
  ym:backward(g:to('bf16'))
  bits_equal(w.grad, wb.grad:to('f32'), 'weight gradient')
  bits_equal(b.grad, bb.grad:to('f32'), 'bias gradient')
end)

T.test('amp.param: two backward passes accumulate in f32 (micro-batches)', function()
  tide.manual_seed(4)
  local lin = tide.nn.Linear(8, 4)
  local x1, x2 = tide.randn(3, 8), tide.randn(3, 8)
  local function loss(x) return tide.autocast('bf16', function() return lin(x):to('f32'):pow(2):sum() end) end
  loss(x1):backward()
  local g1 = lin.weight.grad:clone()
  loss(x2):backward()
  T.eq(lin.weight.grad:dtype(), 'f32')
  local acc = lin.weight.grad:clone()
  -- the second gradient alone, added to the first in f32: what the accumulated grad holds
  lin:zero_grad()
  loss(x2):backward()
  local g2 = lin.weight.grad:clone()
  bits_equal(acc, g1 + g2, 'accumulated in f32')
  -- a bf16 accumulator would have rounded the sum (these sums need f32's bits)
  T.truthy(not acc:equal((g1:to('bf16') + g2:to('bf16')):to('f32')), 'the sum is not a bf16 value')
end)

T.test('autocast: the op table (linear/Conv1D/embedding bf16, layer_norm follows x, loss f32)', function()
  tide.manual_seed(5)
  local x = tide.randn(2, 3, 8)
  local ln = tide.nn.LayerNorm(8)
  local conv = tide.nn.Conv1D(6, 8)
  local emb = tide.nn.Embedding(10, 8)
  tide.autocast('bf16', function()
    T.eq(conv(x):dtype(), 'bf16', 'Conv1D casts an f32 activation')
    T.eq(ln(x):dtype(), 'f32', 'layer_norm keeps an f32 input f32')
    T.eq(ln(x:to('bf16')):dtype(), 'bf16', 'layer_norm of a bf16 input')
    T.eq(emb(tide.tensor({ 1, 2 })):dtype(), 'bf16', 'embedding reads the shadow')
    T.eq(x:matmul(tide.randn(8, 2)):dtype(), 'bf16', 'matmul')
    local logits = tide.randn(4, 10):to('bf16')
    T.eq(tide.F.cross_entropy(logits, tide.tensor({ 1, 2, 3, 4 })):dtype(), 'f32', 'the loss is f32')
    -- f64 is left alone (torch casts only float32)
    T.eq(tide.F.linear(x:to('f64'), tide.randn(4, 8, { dtype = 'f64' })):dtype(), 'f64')
  end)
  -- outside autocast nothing changes
  T.eq(conv(x):dtype(), 'f32')
end)

T.test('autocast: GPT-2 trains with f32 master weights; tied weights get both gradients', function()
  tide.manual_seed(6)
  local cfg = { vocab_size = 64, n_positions = 16, n_embd = 32, n_layer = 2, n_head = 4,
                resid_pdrop = 0, embd_pdrop = 0, attn_pdrop = 0 }
  local m = tide.gpt2.new(cfg)
  local ids = tide.randint(0, 64, { 2, 16 })
  local ref = m(ids, { labels = ids }).loss:item()
  local out = tide.autocast('bf16', m, ids, { labels = ids })
  T.eq(out.logits:dtype(), 'bf16'); T.eq(out.loss:dtype(), 'f32')
  T.close(out.loss:item(), ref, { rtol = 1e-2 })
  out.loss:backward()
  for _, p in ipairs(m:named_parameters()) do
    T.eq(p[2]:dtype(), 'f32', p[1]); T.eq(p[2].grad:dtype(), 'f32', p[1] .. '.grad')
  end
  -- wte is read by the embedding and by the tied lm_head: both shadows' gradients land in wte.grad
  local wte = m.transformer.wte.weight
  local g_both = wte.grad:clone()
  m:zero_grad()
  local logits = tide.autocast('bf16', m, ids).logits
  logits:to('f32'):sum():backward()
  T.truthy((g_both - wte.grad):abs():max():item() > 0, 'the embedding adds its part')
end)

-- checkpoint ---------------------------------------------------------------------

local cfg = { vocab_size = 64, n_positions = 16, n_embd = 32, n_layer = 2, n_head = 4,
              resid_pdrop = 0.1, embd_pdrop = 0, attn_pdrop = 0.1 }

-- a block's input and parameter gradients, with or without checkpoint
local function block_grads(blk, x0, ck, amp)
  for _, p in ipairs(blk:parameters()) do p.grad = nil end
  local x = x0:clone():requires_grad_()
  tide.manual_seed(11)
  collectgarbage(); collectgarbage()
  local live0 = tide.memory().live
  local run = function(...) return blk(...) end
  local y = tide.autocast(amp, function()
    if ck then return tide.checkpoint(run, x) end
    return run(x)
  end)
  local after = tide.randn(4)  -- the generator moves on as it would without checkpoint
  collectgarbage(); collectgarbage()
  local live = tide.memory().live - live0  -- what the forward left alive: y and its graph
  y:to('f32'):pow(2):sum():backward()
  local grads = { x = x.grad }
  for _, p in ipairs(blk:named_parameters()) do grads[p[1]] = p[2].grad end
  return grads, live, after, y
end

T.test('checkpoint: a GPT-2 block with dropout, bitwise equal gradients, less memory held', function()
  tide.manual_seed(1)
  local m = tide.gpt2.new(cfg)
  local blk = m.transformer.h[1]
  local x0 = tide.randn(2, 16, 32)
  local a, live_a, after_a, ya = block_grads(blk, x0, false)
  local b, live_b, after_b, yb = block_grads(blk, x0, true)
  bits_equal(yb:detach(), ya:detach(), 'output')
  bits_equal(after_b, after_a, 'the generator after forward')
  local n = 0
  for k, g in pairs(a) do bits_equal(b[k], g, k); n = n + 1 end
  T.eq(n, 1 + #blk:parameters())
  -- the graph without checkpoint holds the block's activations until backward
  print(("    bytes held after the forward: %d with checkpoint, %d without"):format(live_b, live_a))
  T.truthy(live_b < 2 * yb:numel() * 4 and live_b < live_a, ('bytes held before backward: %d with checkpoint, %d without'):format(live_b, live_a))
  -- dropout did act (else the RNG test says nothing): another seed gives other grads
  for _, p in ipairs(blk:parameters()) do p.grad = nil end
  local x = x0:clone():requires_grad_()
  tide.manual_seed(12)
  blk(x):pow(2):sum():backward()
  T.truthy(not x.grad:equal(a.x), 'dropout masks depend on the generator')
end)

T.test('checkpoint: under autocast the recompute runs in bf16 too', function()
  tide.manual_seed(2)
  local blk = tide.gpt2.new(cfg).transformer.h[1]
  local x0 = tide.randn(2, 16, 32)
  local a = block_grads(blk, x0, false, 'bf16')
  local b = block_grads(blk, x0, true, 'bf16')
  for k, g in pairs(a) do bits_equal(b[k], g, k) end
end)

T.test('checkpoint: several results, non-tensor arguments and results, an argument returned', function()
  tide.manual_seed(3)
  local w = tide.randn(4, 4):requires_grad_()
  local function f(x, scale, y)
    local h = x:matmul(w) * scale
    return h:tanh(), 'label', h:sum(), y
  end
  local function run(ck)
    w.grad = nil
    local x = tide.randn(3, 4); x = x:requires_grad_()
    tide.manual_seed(1)
    local y = tide.randn(3):requires_grad_()
    local a, s, t, yy
    if ck then a, s, t, yy = tide.checkpoint(f, x, 2, y) else a, s, t, yy = f(x, 2, y) end
    T.eq(s, 'label')
    ;(a:sum() * 3 + t + (yy * yy):sum()):backward()
    return x.grad, w.grad, y.grad
  end
  tide.manual_seed(7); local gx1, gw1, gy1 = run(false)
  tide.manual_seed(7); local gx2, gw2, gy2 = run(true)
  bits_equal(gx2, gx1, 'x'); bits_equal(gw2, gw1, 'w'); bits_equal(gy2, gy1, 'y passed through')
  -- only one result used: the other gets no gradient, the rest still flows
  w.grad = nil
  local x = tide.randn(3, 4):requires_grad_()
  local a = tide.checkpoint(f, x, 1, nil)
  a:sum():backward()
  T.truthy(x.grad ~= nil and w.grad ~= nil)
end)

T.test('checkpoint: parameters inside get gradients when no argument requires grad', function()
  tide.manual_seed(4)
  local lin = tide.nn.Linear(4, 3)
  local x = tide.randn(2, 4)
  lin(x):sum():backward()
  local want = lin.weight.grad:clone()
  lin:zero_grad()
  local y = tide.checkpoint(lin, x)
  T.truthy(y.requires_grad, 'the result is in the graph')
  y:sum():backward()
  bits_equal(lin.weight.grad, want, 'weight')
  -- under no_grad it is a plain call
  local z = tide.no_grad(tide.checkpoint, lin, x)
  T.eq(z.requires_grad, nil)
end)

T.test('checkpoint: errors (not a function, an argument changed in place, a failing recompute)', function()
  T.raises(function() tide.checkpoint(3) end, 'checkpoint: expected a function (or a callable module), got number')
  local x = tide.randn(3):requires_grad_()
  local h = x * 1
  local y = tide.checkpoint(function(a) return a:exp() end, h)
  tide.no_grad(function() h:add_(1) end)
  T.raises(function() y:sum():backward() end, 'was modified by an in-place operation')
  local calls = 0
  local z = tide.checkpoint(function(a) calls = calls + 1; if calls > 1 then error('recompute failed') end; return a * 2 end, x)
  T.raises(function() z:sum():backward() end, 'recompute failed')
  T.eq(tide.is_grad_enabled(), true)
  T.eq(tide.amp.is_autocast(), false)
end)

T.test('checkpoint: a whole GPT-2 forward with every block checkpointed equals the plain one', function()
  tide.manual_seed(8)
  local m = tide.gpt2.new(cfg)
  local ids = tide.randint(0, 64, { 2, 16 })
  local tr = m.transformer
  local function loss_of(ck)
    m:zero_grad()
    tide.manual_seed(21)
    local x = tr.drop(tr.wte(ids) + tr.wpe(tide.arange(16)))
    for i = 1, tr.h:len() do
      if ck then x = tide.checkpoint(tr.h[i], x) else x = tr.h[i](x) end
    end
    local logits = tide.F.linear(tr.ln_f(x), m.lm_head.weight)
    local loss = tide.F.cross_entropy(logits:reshape(-1, 64), ids:reshape(-1))
    loss:backward()
    local g = {}
    for _, p in ipairs(m:named_parameters()) do g[p[1]] = p[2].grad:clone() end
    return loss:item(), g
  end
  local l1, g1 = loss_of(false)
  local l2, g2 = loss_of(true)
  T.eq(l2, l1)
  for k, v in pairs(g1) do bits_equal(g2[k], v, k) end
end)

-- recompute ops (GPT-2's recompute = 1, 2) ---------------------------------------------

-- loss, the gradients of every tensor in ps, and the bytes the forward left alive
local function run_grads(f, ps, amp)
  for _, p in ipairs(ps) do p.grad = nil end
  collectgarbage(); collectgarbage()
  local l0 = tide.memory().live
  local y = tide.autocast(amp, f)
  collectgarbage(); collectgarbage()
  local held = tide.memory().live - l0
  y:to('f32'):pow(2):sum():backward()
  local gs = {}
  for i, p in ipairs(ps) do gs[i] = p.grad end
  return y:detach(), gs, held
end

T.test('gelu_conv1d_gpt2 and layer_norm_conv1d_gpt2: the unfused bits, less held', function()
  tide.manual_seed(9)
  local h = tide.randn(2, 16, 32):requires_grad_()
  local x = tide.randn(2, 16, 8):requires_grad_()
  local lw, lb = (tide.randn(8) * 0.1 + 1):detach():requires_grad_(), (tide.randn(8) * 0.1):detach():requires_grad_()
  local w1, b1 = (tide.randn(32, 8) * 0.1):detach():requires_grad_(), tide.randn(8):requires_grad_()
  local w2, b2 = (tide.randn(8, 24) * 0.1):detach():requires_grad_(), tide.randn(24):requires_grad_()
  for _, amp in ipairs { 'f32', 'bf16' } do
    local ya, ga, held_a = run_grads(function() return tide.F.conv1d_gpt2(h:gelu(), w1, b1) end, { h, w1, b1 }, amp)
    local yb, gb, held_b = run_grads(function() return tide.F.gelu_conv1d_gpt2(h, w1, b1) end, { h, w1, b1 }, amp)
    bits_equal(yb, ya, amp .. ' gelu_conv1d output')
    for i = 1, 3 do bits_equal(gb[i], ga[i], amp .. ' gelu_conv1d gradient ' .. i) end
    T.truthy(held_b < held_a, ('gelu_conv1d %s: %d bytes held, unfused %d'):format(amp, held_b, held_a))
    local yc, gc, held_c = run_grads(function()
      return tide.F.conv1d_gpt2(tide.F.layer_norm(x, { 8 }, lw, lb, 1e-5), w2, b2)
    end, { x, lw, lb, w2, b2 }, amp)
    local yd, gd, held_d = run_grads(function()
      return tide.F.layer_norm_conv1d_gpt2(x, lw, lb, 1e-5, w2, b2)
    end, { x, lw, lb, w2, b2 }, amp)
    bits_equal(yd, yc, amp .. ' layer_norm_conv1d output')
    for i = 1, 5 do bits_equal(gd[i], gc[i], amp .. ' layer_norm_conv1d gradient ' .. i) end
    T.truthy(held_d < held_c, ('layer_norm_conv1d %s: %d bytes held, unfused %d'):format(amp, held_d, held_c))
  end
  -- without grad they are the plain ops
  local z = tide.no_grad(tide.F.gelu_conv1d_gpt2, h, w1, b1)
  T.eq(z.requires_grad, nil)
  T.raises(function() tide.F.gelu_conv1d_gpt2(3, w1, b1) end, 'gelu_conv1d_gpt2: input must be a tensor, got number')
  T.raises(function() tide.F.layer_norm_conv1d_gpt2(x, lw, lb, 1e-5, nil, b2) end, 'layer_norm_conv1d_gpt2: weight must be a tensor, got nil')
end)

T.test('gelu_conv1d_gpt2 and layer_norm_conv1d_gpt2: gradcheck in f64', function()
  tide.manual_seed(10)
  local function p(...) return tide.randn({ ... }, { dtype = 'f64' }):requires_grad_() end
  T.truthy(tide.autograd.gradcheck(function(h, w, b) return tide.F.gelu_conv1d_gpt2(h, w, b) end,
    { p(2, 3, 4), p(4, 5), p(5) }))
  T.truthy(tide.autograd.gradcheck(function(x, lw, lb, w, b) return tide.F.layer_norm_conv1d_gpt2(x, lw, lb, 1e-5, w, b) end,
    { p(2, 3, 4), p(4), p(4), p(4, 5), p(5) }))
end)

-- A GPT-2 block's forward with recompute = 0, 1, 2 wired as the model would
-- (the merger's reference): the same bits in every gradient.
T.test('recompute 1 and 2 in a GPT-2 block: the same gradients as 0', function()
  tide.manual_seed(12)
  local m = tide.gpt2.new({ vocab_size = 64, n_positions = 16, n_embd = 32, n_layer = 1, n_head = 4,
                            resid_pdrop = 0, embd_pdrop = 0, attn_pdrop = 0 })
  local blk = m.transformer.h[1]
  local F = tide.F
  local function attn_rest(a, qkv)  -- the attention after c_attn, as GPT2Attention:forward
    local B, Tn, C = qkv:size(1), qkv:size(2), 32
    local parts = qkv:split(C, 3)
    local q = parts[1]:view(B, Tn, 4, 8):transpose(2, 3)
    local k = parts[2]:view(B, Tn, 4, 8):transpose(2, 3)
    local v = parts[3]:view(B, Tn, 4, 8):transpose(2, 3)
    local y = F.scaled_dot_product_attention(q, k, v, { is_causal = true, scale = a.scale })
    return a.c_proj(y:transpose(2, 3):reshape(B, Tn, C))
  end
  local function forward(x, level)
    local a, mlp = blk.attn, blk.mlp
    local qkv
    if level >= 2 then qkv = F.layer_norm_conv1d_gpt2(x, blk.ln_1.weight, blk.ln_1.bias, blk.ln_1.eps, a.c_attn.weight, a.c_attn.bias)
    else qkv = a.c_attn(blk.ln_1(x)) end
    x = x + attn_rest(a, qkv)
    local h
    if level >= 2 then h = F.layer_norm_conv1d_gpt2(x, blk.ln_2.weight, blk.ln_2.bias, blk.ln_2.eps, mlp.c_fc.weight, mlp.c_fc.bias)
    else h = mlp.c_fc(blk.ln_2(x)) end
    if level >= 1 then return x + F.gelu_conv1d_gpt2(h, mlp.c_proj.weight, mlp.c_proj.bias) end
    return x + mlp.c_proj(h:gelu())
  end
  local x0 = tide.randn(2, 16, 32)
  for _, amp in ipairs { 'f32', 'bf16' } do
    local ref, held
    for level = 0, 2 do
      local x = x0:clone():requires_grad_()
      local ps = { x }
      for _, p in ipairs(blk:parameters()) do ps[#ps + 1] = p end
      local y, gs, h = run_grads(function()
        local xin = amp == 'bf16' and x:to('bf16') or x
        return forward(xin, level)
      end, ps, amp)
      if level == 0 then
        ref, held = { y = y, gs = gs }, h
        T.eq(forward(x0, 0):detach():equal(blk(x0):detach()), true, 'the wiring is the block forward')
      else
        bits_equal(y, ref.y, amp .. ' recompute ' .. level .. ' output')
        for i = 1, #gs do bits_equal(gs[i], ref.gs[i], amp .. ' recompute ' .. level .. ' gradient ' .. i) end
        T.truthy(h < held, ('%s recompute %d: %d bytes held, recompute 0 %d'):format(amp, level, h, held))
        held = h
      end
    end
  end
end)

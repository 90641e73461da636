-- Mixed precision on cuda: 50 training steps of a tiny GPT-2 under
-- tide.autocast('bf16') (bf16 shadows of f32 master weights, bf16
-- activations, f32 loss, AdamW on f32) track the CPU's f32 steps from the
-- same weights and batches: the issue's test, losses within 2e-2.
local T = require 'tide.testing'

local cfg = { vocab_size = 64, n_positions = 16, n_embd = 32, n_layer = 2, n_head = 4,
              resid_pdrop = 0, embd_pdrop = 0, attn_pdrop = 0 }
local STEPS = 50

local function batches(n, B, Tn)
  local rng = T.lcg(11)
  local out = {}
  for i = 1, n do
    local rows = {}
    for b = 1, B do
      -- a learnable sequence (a noisy count mod 16 shifted by row), so the loss falls
      local r, v = {}, math.floor(rng() * cfg.vocab_size)
      for t = 1, Tn do
        v = (v + 1 + (rng() < 0.2 and 1 or 0)) % 16 + 16 * (b % 4)
        r[t] = v
      end
      rows[b] = r
    end
    out[i] = tide.tensor(rows, { dtype = 'i64' })
  end
  return out
end

local function train(sd, data, device, amp)
  tide.manual_seed(1234)
  local model = tide.gpt2.new(cfg)
  model:load_state_dict(sd)
  model:to(device)
  local opt = tide.optim.AdamW(tide.optim.grouped_params(model, 0.1), { lr = 3e-3, betas = { 0.9, 0.95 }, eps = 1e-8 })
  local losses = {}
  for step = 1, STEPS do
    local x = data[step]:to(device)
    local loss = tide.autocast(amp, function() return model(x, { labels = x }).loss end)
    opt:zero_grad()
    loss:backward()
    tide.optim.clip_grad_norm(model:parameters(), 1.0)
    opt:step()
    losses[step] = loss
  end
  for step = 1, STEPS do losses[step] = losses[step]:item() end
  for _, p in ipairs(model:named_parameters()) do
    T.eq(p[2]:dtype(), 'f32', p[1] .. ' stays f32')
  end
  return losses, model
end

T.test('50 bf16 autocast GPT-2 steps on cuda track the CPU f32 losses within 2e-2', function()
  T.need_cuda()
  tide.manual_seed(1)
  local init = tide.gpt2.new(cfg):state_dict()
  local sd = {}
  for k, v in pairs(init) do sd[k] = v:detach():clone() end
  local data = batches(STEPS, 2, 16)
  local t0 = tide.clock()
  local lc = train(sd, data, 'cpu', nil)
  local t1 = tide.clock()
  local lg, model = train(sd, data, 'cuda', 'bf16')
  local t2 = tide.clock()
  print(('    cpu f32 %.2f s, cuda bf16 %.2f s; loss %.4f -> %.4f (cpu), %.4f -> %.4f (cuda bf16)')
    :format(t1 - t0, t2 - t1, lc[1], lc[STEPS], lg[1], lg[STEPS]))
  local worst = 0
  for step = 1, STEPS do
    worst = math.max(worst, math.abs(lg[step] - lc[step]))
    T.close(lg[step], lc[step], { rtol = 0, atol = 2e-2 }, 'loss at step ' .. step)
  end
  print(('    largest loss difference %.4g'):format(worst))
  T.truthy(lc[STEPS] < lc[1] - 1, 'the loss fell by a nat')
  -- the shadows live on the device beside their f32 masters
  local w = model.transformer.wte.weight
  local sh = rawget(w, '_bf16')
  T.truthy(sh ~= nil and sh:dtype() == 'bf16' and sh.device == w.device, 'wte has a bf16 shadow on cuda')
end)

T.test('checkpoint on cuda: a block under bf16 autocast, equal gradients with and without', function()
  T.need_cuda()
  tide.manual_seed(2)
  local blk = tide.gpt2.new({ vocab_size = 64, n_positions = 16, n_embd = 32, n_layer = 1, n_head = 4,
                              resid_pdrop = 0.1, embd_pdrop = 0, attn_pdrop = 0 }).transformer.h[1]:to('cuda')
  local x0 = tide.randn(2, 16, 32):to('cuda')
  local function grads(ck)
    for _, p in ipairs(blk:parameters()) do p.grad = nil end
    local x = x0:clone():requires_grad_()
    tide.manual_seed(5)
    local y = tide.autocast('bf16', function() if ck then return tide.checkpoint(blk, x) end return blk(x) end)
    y:to('f32'):pow(2):sum():backward()
    local g = { x = x.grad:cpu() }
    for _, p in ipairs(blk:named_parameters()) do g[p[1]] = p[2].grad:cpu() end
    return g
  end
  local a, b = grads(false), grads(true)
  for k, v in pairs(a) do
    T.eq(b[k]:dtype(), 'f32', k)
    T.truthy(b[k]:equal(v), k .. ': not bitwise equal')
  end
end)

T.test('recompute ops on cuda: the unfused ops\' bits under bf16 autocast, and the CPU\'s values', function()
  T.need_cuda()
  tide.manual_seed(3)
  local dev = 'cuda'
  local function leaf(t) return t:to(dev):requires_grad_() end
  local h, x = leaf(tide.randn(2, 8, 16)), leaf(tide.randn(2, 8, 8))
  local lw, lb = leaf(tide.randn(8) * 0.1 + 1), leaf(tide.randn(8) * 0.1)
  local w1, b1 = leaf(tide.randn(16, 8) * 0.1), leaf(tide.randn(8))
  local w2, b2 = leaf(tide.randn(8, 24) * 0.1), leaf(tide.randn(24))
  local function grads(f, ps)
    for _, p in ipairs(ps) do p.grad = nil end
    local y = tide.autocast('bf16', f)
    y:to('f32'):pow(2):sum():backward()
    local gs = { y:detach():cpu() }
    for i, p in ipairs(ps) do gs[i + 1] = p.grad:cpu() end
    return gs
  end
  local a = grads(function() return tide.F.conv1d_gpt2(h:to('bf16'):gelu(), w1, b1) end, { h, w1, b1 })
  local b = grads(function() return tide.F.gelu_conv1d_gpt2(h:to('bf16'), w1, b1) end, { h, w1, b1 })
  for i = 1, #a do T.truthy(b[i]:equal(a[i]), 'gelu_conv1d ' .. i) end
  local c = grads(function() return tide.F.conv1d_gpt2(tide.F.layer_norm(x:to('bf16'), { 8 }, lw, lb), w2, b2) end, { x, lw, lb, w2, b2 })
  local d = grads(function() return tide.F.layer_norm_conv1d_gpt2(x:to('bf16'), lw, lb, 1e-5, w2, b2) end, { x, lw, lb, w2, b2 })
  for i = 1, #c do T.truthy(d[i]:equal(c[i]), 'layer_norm_conv1d ' .. i) end
end)

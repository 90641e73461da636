-- tide.F through autograd (gradcheck in f64), tide.nn modules, GPT-2's
-- structure and parameter counts, and the keytoken-weighted loss.
local T = require 'tide.testing'
local F = tide.F
local gradcheck = tide.autograd.gradcheck

local rng = T.lcg(77)
local function param(shape, lo, hi)
  lo, hi = lo or -1, hi or 1
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  local v = {}
  for i = 1, n do v[i] = lo + (hi - lo) * rng() end
  return tide.tensor(v, { dtype = 'f64' }):view(shape):requires_grad_()
end

local function check(name, fn, inputs)
  local ok, err = pcall(gradcheck, fn, inputs)
  if not ok then error(name .. ': ' .. tostring(err), 2) end
end

T.test('gradcheck: F.linear, F.conv1d_gpt2, gelu', function()
  check('linear', function(x, w, b) return F.linear(x, w, b) end, { param({ 2, 3, 4 }), param({ 5, 4 }), param({ 5 }) })
  check('linear no bias', function(x, w) return F.linear(x, w) end, { param({ 3, 4 }), param({ 2, 4 }) })
  check('conv1d', function(x, w, b) return F.conv1d_gpt2(x, w, b) end, { param({ 2, 3, 4 }), param({ 4, 5 }), param({ 5 }) })
  check('gelu', function(x) return F.gelu(x) end, { param({ 3, 4 }, -3, 3) })
end)

T.test('gradcheck: F.layer_norm, softmax, log_softmax', function()
  check('layer_norm', function(x, w, b) return F.layer_norm(x, { 5 }, w, b, 1e-5) end,
    { param({ 2, 3, 5 }), param({ 5 }, 0.5, 1.5), param({ 5 }) })
  check('layer_norm no affine', function(x) return F.layer_norm(x, 5) end, { param({ 4, 5 }) })
  check('layer_norm bias only', function(x, b) return F.layer_norm(x, 5, nil, b) end, { param({ 4, 5 }), param({ 5 }) })
  check('layer_norm weight only', function(x, w) return F.layer_norm(x, 5, w) end, { param({ 4, 5 }), param({ 5 }) })
  check('layer_norm transposed input', function(x, w, b) return F.layer_norm(x:t(), { 3 }, w, b) end,
    { param({ 3, 4 }), param({ 3 }), param({ 3 }) })
  for _, d in ipairs { 1, 2, -1 } do
    check('softmax ' .. d, function(x) return F.softmax(x, d) end, { param({ 3, 4 }) })
    check('log_softmax ' .. d, function(x) return F.log_softmax(x, d) end, { param({ 3, 4 }) })
  end
end)

T.test('gradcheck: F.cross_entropy with every reduction and ignore_index', function()
  local targets = tide.tensor({ 1, 0, 3, 2, -100 })
  for _, red in ipairs { 'mean', 'sum', 'none' } do
    check('cross_entropy ' .. red, function(x) return F.cross_entropy(x, targets, { reduction = red }) end,
      { param({ 5, 4 }, -2, 2) })
  end
  check('cross_entropy [B, T, V]', function(x) return F.cross_entropy(x, tide.tensor({ { 1, 2, 0 }, { 3, 3, 1 } })) end,
    { param({ 2, 3, 4 }) })
  -- the value: mean over the non-ignored targets of -log softmax
  local logits = tide.tensor({ { 1, 2, 3 }, { 0, 0, 0 } }, { dtype = 'f64' })
  local l = F.cross_entropy(logits, tide.tensor({ 2, 1 })):item()
  local e = (-math.log(math.exp(3) / (math.exp(1) + math.exp(2) + math.exp(3))) + math.log(3)) / 2
  T.close(l, e, { rtol = 1e-12 })
end)

T.test('gradcheck: F.embedding and attention', function()
  local ids = tide.tensor({ { 1, 3, 1 }, { 0, 2, 3 } })
  check('embedding', function(w) return F.embedding(ids, w) end, { param({ 4, 3 }) })
  for _, causal in ipairs { true, false } do
    check('attention causal=' .. tostring(causal), function(q, k, v)
      return F.scaled_dot_product_attention(q, k, v, { is_causal = causal })
    end, { param({ 1, 2, 3, 4 }), param({ 1, 2, 3, 4 }), param({ 1, 2, 3, 4 }) })
  end
  -- q, k, v made the way GPT-2 makes them: views of one projection
  check('attention from split heads', function(qkv)
    local p = qkv:split(4, 3)
    local function heads(t) return t:view(1, 3, 2, 2):transpose(2, 3) end
    return F.scaled_dot_product_attention(heads(p[1]), heads(p[2]), heads(p[3]), { is_causal = true })
  end, { param({ 1, 3, 12 }) })
end)

T.test('dropout: identity in eval, scaled mask in training, differentiable', function()
  local x = tide.ones(1000):requires_grad_()
  T.eq(F.dropout(x, 0.5, false), x)
  tide.manual_seed(1)
  local y = F.dropout(x, 0.25, true)
  local kept = y:ne(0):float():sum():item()
  T.truthy(math.abs(kept - 750) < 6 * math.sqrt(1000 * 0.25 * 0.75), 'kept ' .. kept)
  T.close(y:max():item(), 1 / 0.75, { rtol = 1e-6 })
  y:sum():backward()
  T.close(x.grad:sum():item(), kept / 0.75, { rtol = 1e-5 })
  T.raises(function() F.dropout(x, 1.5, true) end, 'dropout: p must be in [0, 1]')
end)

T.test('isin', function()
  T.same(tide.isin(tide.tensor({ 1, 2, 3, 5 }), { 2, 5 }):tolist(), { false, true, false, true })
  T.raises(function() tide.isin(tide.tensor({ 1 }), 3) end, 'isin: ids must be a list')
end)

T.test('modules: parameters, names, state dicts', function()
  local nn = tide.nn
  local net = nn.Sequential(nn.Linear(4, 3), nn.GELU(), nn.LayerNorm(3), nn.Linear(3, 2, { bias = false }))
  local names = {}
  for i, p in ipairs(net:named_parameters()) do names[i] = p[1] end
  T.same(names, { '0.weight', '0.bias', '2.weight', '2.bias', '3.weight' })
  T.eq(net:num_parameters(), 4 * 3 + 3 + 3 + 3 + 3 * 2)
  local y = net(tide.randn(5, 4))
  T.same(y:shape(), { 5, 2 })
  y:sum():backward()
  for _, p in ipairs(net:parameters()) do T.truthy(p.grad ~= nil) end
  net:zero_grad()
  for _, p in ipairs(net:parameters()) do T.eq(p.grad, nil) end
  local sd = net:state_dict()
  local other = nn.Sequential(nn.Linear(4, 3), nn.GELU(), nn.LayerNorm(3), nn.Linear(3, 2, { bias = false }))
  other:load_state_dict(sd)
  T.same(other['0'].weight:tolist(), net['0'].weight:tolist())
  T.raises(function() other:load_state_dict({}) end, 'missing keys: 0.bias, 0.weight')
  local bad = { ['0.weight'] = tide.zeros(2, 2) }
  T.raises(function() other:load_state_dict(bad, { strict = false }) end, '0.weight has shape [3, 4] in the model but [2, 2]')
  net:eval()
  T.eq(net['1'].training, false)
  net:train()
  T.eq(net['1'].training, true)
  T.truthy(tostring(net):find('Linear(weight[3x4], bias[3])', 1, true), tostring(net))
end)

T.test('GPT-2 configs and parameter counts match Hugging Face', function()
  T.eq(tide.gpt2.config('gpt2').n_layer, 12)
  T.eq(tide.gpt2.config('gpt2-xl').n_embd, 1600)
  T.eq(tide.gpt2.config('distilgpt2').n_layer, 6)
  T.raises(function() tide.gpt2.config('gpt3') end, 'unknown model "gpt3"')
  T.raises(function() tide.gpt2.config({ n_embd = 10, n_head = 3 }) end, 'must be divisible by n_head')
  T.eq(tide.gpt2.num_parameters(tide.gpt2.config('gpt2')), 124439808)
  T.eq(tide.gpt2.num_parameters(tide.gpt2.config('gpt2', { vocab_size = 32768 })), 111008256)
  T.eq(math.floor(tide.gpt2.num_parameters(tide.gpt2.config('gpt2-xl', { vocab_size = 32768 })) / 1e5 + 0.5), 15296)
  -- and an instantiated model agrees with the formula
  local cfg = tide.gpt2.config({ vocab_size = 97, n_positions = 16, n_embd = 24, n_layer = 3, n_head = 4 })
  local m = tide.gpt2.new(cfg)
  T.eq(m:num_parameters(), tide.gpt2.num_parameters(cfg))
  -- lm_head is wte: listed once by named_parameters, twice in the state dict
  T.eq(m.lm_head.weight, m.transformer.wte.weight)
  local names = {}
  for _, p in ipairs(m:named_parameters()) do names[p[1]] = true end
  T.truthy(names['transformer.h.2.attn.c_attn.weight'] and names['transformer.wte.weight'])
  T.eq(names['lm_head.weight'], nil)
  T.truthy(m:state_dict()['lm_head.weight'] ~= nil)
  T.same(m.transformer.h[1].attn.c_attn.weight:shape(), { 24, 72 })  -- Conv1D: [in, out]
end)

T.test('GPT-2 initialises as Hugging Face does', function()
  tide.manual_seed(0)
  local cfg = tide.gpt2.config({ vocab_size = 2000, n_positions = 64, n_embd = 128, n_layer = 4, n_head = 4 })
  local m = tide.gpt2.new(cfg)
  local function std(t) local x = t:to('f64'); local mu = x:mean(); return ((x - mu) ^ 2):mean():sqrt():item() end
  T.close(std(m.transformer.wte.weight), 0.02, { rtol = 0.02 })
  T.close(std(m.transformer.h[1].attn.c_attn.weight), 0.02, { rtol = 0.03 })
  T.close(std(m.transformer.h[1].mlp.c_proj.weight), 0.02 / math.sqrt(8), { rtol = 0.03 })
  T.eq(m.transformer.h[1].attn.c_attn.bias:abs():sum():item(), 0)
  T.eq(m.transformer.ln_f.weight:sum():item(), 128)
end)

T.test('GPT-2 forward, loss and backward', function()
  tide.manual_seed(0)
  local m = tide.gpt2.new({ vocab_size = 256, n_positions = 32, n_embd = 32, n_layer = 2, n_head = 4,
                            resid_pdrop = 0, embd_pdrop = 0, attn_pdrop = 0 })
  local ids = tide.randint(0, 256, { 2, 12 })
  local logits = m:forward(ids).logits
  T.same(logits:shape(), { 2, 12, 256 })
  local out = m(ids, { labels = ids })
  -- at initialisation the prediction is nearly uniform
  T.close(out.loss:item(), math.log(256), { rtol = 0.02 })
  T.close(out.logits, logits, { rtol = 1e-6, atol = 1e-6 })
  out.loss:backward()
  for _, p in ipairs(m:named_parameters()) do T.truthy(p[2].grad ~= nil, p[1] .. ' has no gradient') end
  T.raises(function() m(tide.randint(0, 256, { 1, 40 })) end, 'sequence length 40 exceeds n_positions 32')
end)

T.test('GPT-2 attention dropout: the explicit path equals the fused one without dropout', function()
  tide.manual_seed(2)
  local cfg = { vocab_size = 50, n_positions = 16, n_embd = 16, n_layer = 1, n_head = 2,
                resid_pdrop = 0, embd_pdrop = 0, attn_pdrop = 1e-12 }
  local m = tide.gpt2.new(cfg)
  local ids = tide.randint(0, 50, { 2, 9 })
  local train_logits = m(ids).logits  -- training mode: explicit path, dropout keeps everything
  m:eval()
  local eval_logits = m(ids).logits   -- fused kernel
  T.close(train_logits, eval_logits, { rtol = 1e-4, atol = 1e-5 })
  m:train()
  local out = m(ids, { labels = ids })
  out.loss:backward()
  T.truthy(m.transformer.h[1].attn.c_attn.weight.grad ~= nil)
end)

T.test('the keytoken-weighted loss: value and gradient', function()
  tide.manual_seed(5)
  local logits = param({ 2, 5, 7 })
  local ids = tide.tensor({ { 1, 5, 2, 5, 0 }, { 3, 3, 6, 1, 2 } })
  local l = tide.losses.keytoken_weighted_loss(ids, logits, { 5, 3 }, 2.0)
  -- by hand: per-sample mean of shifted token losses, weights 2 * (1 + count)
  local lsm = F.log_softmax(logits:detach(), 3)
  local per = {}
  for b = 1, 2 do
    local s = 0
    for t = 1, 4 do s = s - lsm[b][t][ids[b][t + 1]:item() + 1]:item() end
    per[b] = s / 4
  end
  local expect = (per[1] * 2 * 3 + per[2] * 2 * 3) / 2
  T.close(l:item(), expect, { rtol = 1e-10 })
  check('keytoken loss', function(x) return tide.losses.keytoken_weighted_loss(ids, x, { 5, 3 }) end, { param({ 2, 5, 7 }) })
end)

T.test('nn.skip_init builds layers without drawing their weights, and restores drawing after, even on error', function()
  tide.manual_seed(9)
  local want = tide.randn(4)
  tide.manual_seed(9)
  local lin, emb = tide.nn.skip_init(function()
    return tide.nn.Linear(3, 5), tide.nn.Embedding(7, 2)
  end)
  T.truthy(tide.equal(tide.randn(4), want), 'the generator was not advanced')
  T.same(lin.weight:shape(), { 5, 3 })
  T.same(emb.weight:shape(), { 7, 2 })
  T.raises(function() tide.nn.skip_init(function() error('boom') end) end, 'boom')
  tide.manual_seed(9)
  tide.nn.Conv1D(4, 4)
  T.truthy(not tide.equal(tide.randn(4), want), 'drawing is back on after an error')
  T.raises(function() tide.nn.skip_init(5) end, 'skip_init: expected a function, got number')
end)

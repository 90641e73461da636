-- GPT-2's loss from shifted labels (the last position ignore_index) over the
-- logits in place must be what the narrowed copy of the logits gave, bit for
-- bit on the CPU: the loss, the logits' gradient and every parameter's
-- gradient; labels that are already -100 stay ignored; T = 1 has no
-- position to predict. The keytoken-weighted loss takes the same shifted
-- path and keeps its value and gradient within rounding of the narrowed one.
local T = require 'tide.testing'
local F = tide.F

local dir = 'tests/ref/gpt2_tiny/'

-- the loss as it was computed before: a narrowed, reshaped copy of the logits
local function narrowed_loss(logits, labels)
  local B, Tn, V = logits:size(1), logits:size(2), logits:size(3)
  return F.cross_entropy(logits:narrow(2, 1, Tn - 1):reshape(B * (Tn - 1), V),
    labels:narrow(2, 2, Tn - 1):reshape(B * (Tn - 1)), { ignore_index = -100 })
end

local function grads(model)
  local g = {}
  for _, p in ipairs(model:named_parameters()) do g[p[1]] = p[2].grad:clone() end
  return g
end

T.test('the shifted-labels loss equals the narrowed one bit for bit, with its gradients', function()
  local model = tide.gpt2.from_pretrained(dir .. 'model')
  local inp = tide.io.load_safetensors(dir .. 'inputs.safetensors')
  for _, case in ipairs { { inp.input_ids, inp.input_ids }, { inp.input_ids_2, inp.labels_2 } } do
    local ids, labels = case[1], case[2]
    model:zero_grad()
    local old = narrowed_loss(model(ids).logits, labels)
    old:backward()
    local gold = grads(model)
    model:zero_grad()
    local out = model(ids, { labels = labels })
    out.loss:backward()
    T.truthy(tide.equal(out.loss, old), ('loss %.17g, narrowed %.17g'):format(out.loss:item(), old:item()))
    local n = 0
    for name, g in pairs(grads(model)) do
      T.truthy(tide.equal(g, gold[name]), 'gradient of ' .. name .. ' differs from the narrowed loss\'s')
      n = n + 1
    end
    T.eq(n, 28)
  end
end)

T.test('labels already -100 stay ignored, and T = 1 gives the mean of no positions (NaN)', function()
  local model = tide.gpt2.new({ vocab_size = 13, n_positions = 8, n_embd = 8, n_layer = 1, n_head = 2 })
  model:eval()  -- no dropout: the calls below compare across forwards
  local ids = tide.tensor({ { 1, 2, 3, 4 }, { 5, 6, 7, 8 } })
  local labels = tide.tensor({ { 1, -100, 3, 4 }, { 5, 6, 7, -100 } })
  local out = model(ids, { labels = labels })
  local old = narrowed_loss(out.logits:detach(), labels)
  T.truthy(tide.equal(out.loss:detach(), old), 'the loss with -100 labels')
  -- every label ignored but the first (which predicts nothing): NaN, as before
  local none = model(ids, { labels = tide.tensor({ { 1, -100, -100, -100 } }) }).loss:item()
  T.truthy(none ~= none, 'no position to predict gives NaN, got ' .. tostring(none))
  local one = model(tide.tensor({ { 3 } }), { labels = tide.tensor({ { 3 } }) }).loss:item()
  T.truthy(one ~= one, 'T = 1 gives NaN, got ' .. tostring(one))
  -- u16 labels (token shards' dtype) shift into i64 with -100
  local l16 = model(ids, { labels = ids:to('u16') }).loss
  T.truthy(tide.equal(l16:detach(), narrowed_loss(out.logits:detach(), ids)), 'u16 labels')
end)

T.test('the keytoken-weighted loss over the shifted labels matches the narrowed computation', function()
  tide.manual_seed(11)
  local B, Tn, V = 3, 9, 17
  local logits = tide.randn(B, Tn, V):requires_grad_(true)
  local ids = tide.randint(0, V, { B, Tn })
  local kt = { 2, 5, 5 }  -- a repeated id counts twice, as in the course's code
  local loss = tide.losses.keytoken_weighted_loss(ids, logits, kt, 0.5)
  loss:backward()
  local g = logits.grad:clone()
  -- the course's arithmetic on the narrowed copy
  local x = logits:detach():clone():requires_grad_(true)
  local per = F.cross_entropy(x:narrow(2, 1, Tn - 1):reshape(B * (Tn - 1), V), ids:narrow(2, 2, Tn - 1):reshape(B * (Tn - 1)),
    { reduction = 'none' }):view(B, Tn - 1):mean(2)
  local counts = ids:eq(2):float():sum(2) + ids:eq(5):float():sum(2) * 2
  local want = (per * ((counts + 1) * 0.5)):mean()
  want:backward()
  T.close(loss:item(), want:item(), { rtol = 1e-6 })
  T.close(g, x.grad, { rtol = 1e-5, atol = 1e-7 })
end)

-- F.gpt2_embedding (GPT-2's token + position embedding in one op) on the
-- CPU: the same bits as the unfused F.embedding(ids, wte) +
-- F.embedding(positions, wpe) it replaces in the model, forward and both
-- gradients, for every way of giving the positions (past as a number,
-- position_ids [B, T], [1, T], [T]), f32, f64, bf16 and f16, repeated ids,
-- transposed tables; and the errors for bad ids, positions and shapes.
local T = require 'tide.testing'
local tide = require 'tide'
local F = tide.F

-- every element's bits, as text (so -0 differs from +0 and NaN from NaN's payload-free peers)
local function bits(t)
  local r = {}
  for i, v in ipairs(t:contiguous():view(-1):to('f64'):tolist()) do r[i] = ('%a'):format(v) end
  return r
end
local function same_bits(a, b, msg)
  T.eq(a:dtype(), b:dtype(), msg .. ' dtype')
  T.same(a:shape(), b:shape(), msg .. ' shape')
  T.same(bits(a), bits(b), msg)
end

local function ids_of(B, Tn, V, seed)
  return tide.randint(0, V, { B, Tn }, { generator = tide.Generator(seed) })
end

-- the fused op and the unfused one, forward and both gradients under one random dout
local function both(ids, wte, wpe, past, g)
  local function run(fused)
    local a, b = wte:detach():requires_grad_(true), wpe:detach():requires_grad_(true)
    local x
    if fused then
      x = F.gpt2_embedding(ids, a, b, past)
    else
      local pos = tide.is_tensor(past) and past or tide.arange(past or 0, (past or 0) + ids:size(2))
      x = F.embedding(ids, a) + F.embedding(pos, b)
    end
    x:backward(g)
    return x, a.grad, b.grad
  end
  local x1, gw1, gp1 = run(true)
  local x2, gw2, gp2 = run(false)
  return { x1, gw1, gp1 }, { x2, gw2, gp2 }
end

T.test('gpt2_embedding: the unfused bits, every dtype and way of giving positions', function()
  tide.manual_seed(3)
  local B, Tn, V, P, C = 3, 5, 7, 12, 6
  for _, dt in ipairs { 'f32', 'f64', 'bf16', 'f16' } do
    local wte = tide.randn(V, C):to(dt)
    local wpe = tide.randn(P, C):to(dt)
    local ids = ids_of(B, Tn, V, 11)
    local g = tide.randn(B, Tn, C):to(dt)
    local posBT = tide.randint(0, P, { B, Tn }, { generator = tide.Generator(5) })
    local pos1T = tide.tensor({ { 0, 0, 4, 2, 4 } })  -- repeated positions in one shared row
    for _, past in ipairs { nil, 0, 4, posBT, pos1T, pos1T:view(Tn) } do
      local a, b = both(ids, wte, wpe, past, g)
      local what = ('%s, past %s'):format(dt, tide.is_tensor(past) and table.concat(past:shape(), 'x') or tostring(past))
      same_bits(a[1], b[1], what .. ': out')
      same_bits(a[2], b[2], what .. ': dwte')
      same_bits(a[3], b[3], what .. ': dwpe')
    end
  end
end)

T.test('gpt2_embedding: repeated ids, one id, B = 1, transposed tables, u16 and i32 ids', function()
  tide.manual_seed(4)
  local V, P, C = 5, 9, 4
  local wte = tide.randn(C, V):t()        -- a [V, C] view with column stride V
  local wpe = tide.randn(C, P):t()
  local cases = {
    tide.zeros({ 2, 6 }, { dtype = 'i64' }) + 3,                 -- every id the same
    tide.tensor({ { 1, 1, 0, 1, 4, 1 } }):to('u16'),                -- B = 1, repeats
    ids_of(4, 3, V, 9):to('i32'),
  }
  for k, ids in ipairs(cases) do
    local g = tide.randn(ids:size(1), ids:size(2), C)
    for _, past in ipairs { 0, 2 } do
      local a, b = both(ids, wte, wpe, past, g)
      same_bits(a[1], b[1], 'case ' .. k .. ' out')
      same_bits(a[2], b[2], 'case ' .. k .. ' dwte')
      same_bits(a[3], b[3], 'case ' .. k .. ' dwpe')
    end
  end
end)

T.test('gpt2_embedding: gradients only where asked, no graph under no_grad', function()
  local wte, wpe = tide.randn(4, 3):requires_grad_(true), tide.randn(6, 3)
  local x = F.gpt2_embedding(tide.tensor({ { 0, 3 } }), wte, wpe, 1)
  x:sum():backward()
  T.truthy(wte.grad ~= nil, 'wte has a gradient')
  T.truthy(wpe.grad == nil, 'wpe (no requires_grad) has none')
  T.close(wte.grad, tide.tensor({ { 1, 1, 1 }, { 0, 0, 0 }, { 0, 0, 0 }, { 1, 1, 1 } }), { rtol = 0, atol = 0 })
  local y = tide.no_grad(function() return F.gpt2_embedding(tide.tensor({ { 0 } }), wte, wpe) end)
  T.truthy(not y.requires_grad, 'no graph under no_grad')
end)

T.test('gpt2_embedding: bad ids, positions and shapes', function()
  local wte, wpe = tide.randn(5, 3), tide.randn(4, 3)
  local ids = tide.tensor({ { 0, 1, 2 } })
  T.raises(function() F.gpt2_embedding(tide.tensor({ { 0, 5 } }), wte, wpe) end,
    'gpt2_embedding: id 5 is out of range for an embedding of 5 rows (ids are 0-based: 0..4)')
  T.raises(function() F.gpt2_embedding(tide.tensor({ { -1, 0 } }), wte, wpe) end, 'id -1 is out of range')
  T.raises(function() F.gpt2_embedding(ids, wte, wpe, 2) end,
    'gpt2_embedding: positions 2..4 (past 2 + seq 3) exceed wpe\'s 4 positions')
  T.raises(function() F.gpt2_embedding(ids, wte, wpe, tide.tensor({ { 0, 4, 1 } })) end,
    'gpt2_embedding: position 4 is out of range: wpe has 4 positions (0..3)')
  T.raises(function() F.gpt2_embedding(ids, wte, wpe, tide.tensor({ { 0, 1 } })) end,
    'position_ids of shape [1, 2] must be [1, 3], [1, 3] or [3]')
  T.raises(function() F.gpt2_embedding(ids, wte, wpe, -1) end, 'past must be a non-negative integer')
  T.raises(function() F.gpt2_embedding(ids, wte, wpe, 1.5) end, 'past must be a non-negative integer')
  T.raises(function() F.gpt2_embedding(ids:view(3), wte, wpe) end, 'ids must be 2-d [batch, seq], got shape [3]')
  T.raises(function() F.gpt2_embedding(ids:to('f32'), wte, wpe) end, 'ids must be an integer tensor')
  T.raises(function() F.gpt2_embedding(ids, wte, wpe, tide.tensor({ { 0.5, 1, 2 } })) end, 'position_ids must be an integer tensor')
  T.raises(function() F.gpt2_embedding(ids, wte, tide.randn(4, 2)) end, 'must be 2-d with one C')
  T.raises(function() F.gpt2_embedding(ids, wte, wpe:to('f64')) end, 'wte and wpe must have one dtype, got f32 and f64')
  T.raises(function() F.gpt2_embedding(ids, wte:to('i64'), wpe) end, 'wte must be a float tensor')
  T.raises(function() F.gpt2_embedding(ids, 'wte', wpe) end, 'gpt2_embedding: wte must be a tensor, got string')
end)

T.test('gpt2_embedding: empty batch and empty sequence', function()
  local wte, wpe = tide.randn(5, 3):requires_grad_(true), tide.randn(4, 3):requires_grad_(true)
  local x = F.gpt2_embedding(tide.zeros({ 0, 2 }, { dtype = 'i64' }), wte, wpe)
  T.same(x:shape(), { 0, 2, 3 })
  x:sum():backward()
  T.close(wte.grad, tide.zeros(5, 3), { rtol = 0, atol = 0 })
  T.close(wpe.grad, tide.zeros(4, 3), { rtol = 0, atol = 0 })
  T.same(F.gpt2_embedding(tide.zeros({ 2, 0 }, { dtype = 'i64' }), wte, wpe, 4):shape(), { 2, 0, 3 })
end)


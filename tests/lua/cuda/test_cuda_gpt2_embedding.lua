-- F.gpt2_embedding on cuda against the cpu (tide-cudaemu in CI, a GPU in
-- tests/gpu/run.sh): forward and both gradients through autograd, f32, bf16,
-- f16 and f64, positions as a number, [B, T], [1, T] and [T], transposed
-- tables, repeated ids. The forward adds two rows the same way on both
-- devices, and the gradients sum by id in the order of the ids on both (the
-- CUDA backward sorts the ids stably instead of using float atomics), so the
-- output and dwte, and dwpe for positions per row, are compared bit for bit.
-- Where the positions are shared by the batch, dwpe first sums the batch
-- with each device's reduce (as the unfused add's backward did), whose
-- orders differ: close there, and the same bits run to run. Also the
-- bad-id and bad-position errors on cuda.
local T = require 'tide.testing'
local tide = require 'tide'
local F = tide.F

local function ids_of(B, Tn, V, seed)
  return tide.randint(0, V, { B, Tn }, { generator = tide.Generator(seed) })
end

T.test('gpt2_embedding forward and backward on cuda: the cpu bits', function()
  T.need_cuda()
  tide.manual_seed(7)
  local B, Tn, V, P, C = 3, 6, 9, 14, 40
  for _, dt in ipairs { 'f32', 'bf16', 'f16', 'f64' } do
    for _, transposed in ipairs { false, true } do
      local wte = (transposed and tide.randn(C, V):t() or tide.randn(V, C)):to(dt)
      local wpe = (transposed and tide.randn(C, P):t() or tide.randn(P, C)):to(dt)
      local ids = ids_of(B, Tn, V, 3)
      local g = tide.randn(B, Tn, C):to(dt)
      local positions = { 0, 5, tide.randint(0, P, { B, Tn }, { generator = tide.Generator(4) }),
                          tide.tensor({ { 3, 3, 0, 13, 3, 1 } }), tide.tensor({ 2, 2, 2, 2, 2, 2 }) }
      for k, past in ipairs(positions) do
        local function run(dev)
          local a = wte:to(dev):detach():requires_grad_(true)
          local b = wpe:to(dev):detach():requires_grad_(true)
          local pos = tide.is_tensor(past) and past:to(dev) or past
          local y = F.gpt2_embedding(ids:to(dev), a, b, pos)
          y:backward(g:to(dev))
          return y:cpu(), a.grad:cpu(), b.grad:cpu()
        end
        local what = ('gpt2_embedding %s%s positions %d'):format(dt, transposed and ' transposed' or '', k)
        local y, gw, gp = run('cpu')
        local dy, dgw, dgp = run('cuda')
        T.same(dy:tolist(), y:tolist(), what .. ': out')
        T.same(dgw:tolist(), gw:tolist(), what .. ': dwte')
        if k == 3 then T.same(dgp:tolist(), gp:tolist(), what .. ': dwpe')
        else T.close(dgp, gp, { rtol = dt == 'f64' and 1e-12 or 1e-2, atol = dt == 'f64' and 1e-12 or 1e-2 }, what .. ': dwpe') end
      end
    end
  end
end)

T.test('gpt2_embedding on cuda: ids all equal, V = 1, many repeats, twice the same bits', function()
  T.need_cuda()
  tide.manual_seed(8)
  local C = 24
  local cases = {
    { tide.zeros({ 4, 50 }, { dtype = 'i64' }) + 2, 5 },     -- every id the same
    { tide.zeros({ 2, 7 }, { dtype = 'i64' }), 1 },           -- a one-row vocabulary
    { ids_of(8, 40, 300, 9), 300 },                           -- two radix passes, repeats
    { ids_of(5, 60, 3, 10), 3 },                              -- few ids, long runs
  }
  for k, c in ipairs(cases) do
    local ids, V = c[1], c[2]
    local P = ids:size(2) + 3
    local wte, wpe = tide.randn(V, C), tide.randn(P, C)
    local g = tide.randn(ids:size(1), ids:size(2), C) * 100
    local function run(dev)
      local a = wte:to(dev):detach():requires_grad_(true)
      local b = wpe:to(dev):detach():requires_grad_(true)
      F.gpt2_embedding(ids:to(dev), a, b, 3):backward(g:to(dev))
      return a.grad:cpu(), b.grad:cpu()
    end
    local ca, cb = run('cpu')
    local da, db = run('cuda')
    local da2, db2 = run('cuda')
    T.same(da:tolist(), ca:tolist(), 'case ' .. k .. ' dwte')
    T.close(db, cb, { rtol = 1e-5, atol = 1e-3 }, 'case ' .. k .. ' dwpe')
    T.same(da2:tolist(), da:tolist(), 'case ' .. k .. ' dwte again')
    T.same(db2:tolist(), db:tolist(), 'case ' .. k .. ' dwpe again')
  end
end)

T.test('gpt2_embedding on cuda: bad ids and positions', function()
  T.need_cuda()
  local wte, wpe = tide.randn(5, 3, { device = 'cuda' }), tide.randn(4, 3, { device = 'cuda' })
  local ids = tide.tensor({ { 0, 1, 2 } }):to('cuda')
  T.raises(function() F.gpt2_embedding(tide.tensor({ { 0, 5, 9 } }):to('cuda'), wte, wpe) end,
    'gpt2_embedding: id 5 is out of range for an embedding of 5 rows')
  T.raises(function() F.gpt2_embedding(ids, wte, wpe, tide.tensor({ { 0, 1, 7 } }):to('cuda')) end,
    'gpt2_embedding: position 7 is out of range: wpe has 4 positions (0..3)')
  T.raises(function() F.gpt2_embedding(ids, wte, wpe, 2) end, 'exceed wpe\'s 4 positions')
  T.raises(function() F.gpt2_embedding(ids:cpu(), wte, wpe) end, 'expected all tensors on one device')
end)

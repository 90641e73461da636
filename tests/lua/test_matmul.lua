-- Matrix products against an f64 reference computed here in plain Lua loops:
-- every rank combination of torch.matmul, broadcast batch dims, transposed,
-- narrowed, strided and expanded operands, empty dims, dtypes and promotion,
-- the strict forms (mm, bmm, mv, dot, outer) and their errors.
local T = require 'tide.testing'

local rng = T.lcg(2024)

-- A tensor of `shape` with values from the Lua stream: uniform in [-1, 1)
-- for float dtypes, integers in [-5, 5] otherwise.
local function rand(shape, dtype)
  dtype = dtype or 'f32'
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  local flat = {}
  local int = not (dtype == 'f32' or dtype == 'f64' or dtype == 'bf16' or dtype == 'f16')
  for i = 1, n do
    local u = rng()
    flat[i] = int and math.floor(u * 11) - 5 or 2 * u - 1
  end
  if n == 0 then return tide.zeros(shape, { dtype = dtype }) end
  return tide.tensor(flat, { dtype = dtype }):view(shape)
end

local function prod(list, i, j)
  local p = 1
  for d = i or 1, j or #list do p = p * list[d] end
  return p
end

-- torch.matmul on the values of a and b (read exactly as f64 or i64 numbers),
-- returning the flat row-major result and its shape.
local function ref_matmul(a, b)
  local sa, sb = a:shape(), b:shape()
  local fa = T.flatten(a)
  local fb = T.flatten(b)
  local a1, b1 = #sa == 1, #sb == 1
  if a1 then sa = { 1, sa[1] } end
  if b1 then sb = { sb[1], 1 } end
  local m, k, n = sa[#sa - 1], sa[#sa], sb[#sb]
  assert(sb[#sb - 1] == k, 'reference: k mismatch')
  local na, nb = #sa - 2, #sb - 2
  local nbd = math.max(na, nb)
  local bs = {}
  for d = 1, nbd do
    local da = d - (nbd - na) >= 1 and sa[d - (nbd - na)] or 1
    local db = d - (nbd - nb) >= 1 and sb[d - (nbd - nb)] or 1
    assert(da == db or da == 1 or db == 1, 'reference: batch mismatch')
    bs[d] = da == 1 and db or da
  end
  -- flat index of matrix start for batch multi-index idx in an operand with
  -- batch shape `own` (right-aligned, size-1 dims broadcast)
  local function base(idx, own, mat)
    local off, stride = 0, mat
    for d = #own, 1, -1 do
      local i = idx[d + (nbd - #own)]
      if own[d] ~= 1 then off = off + i * stride end
      stride = stride * own[d]
    end
    return off
  end
  local ab, bb = {}, {}
  for d = 1, na do ab[d] = sa[d] end
  for d = 1, nb do bb[d] = sb[d] end
  local out, nbatch = {}, prod(bs)
  local idx = {}
  for e = 0, nbatch - 1 do
    local r = e
    for d = nbd, 1, -1 do idx[d] = r % bs[d]; r = (r - idx[d]) / bs[d] end
    local oa, ob = base(idx, ab, m * k), base(idx, bb, k * n)
    for i = 0, m - 1 do
      for j = 0, n - 1 do
        local s = 0
        for p = 0, k - 1 do s = s + fa[oa + i * k + p + 1] * fb[ob + p * n + j + 1] end
        out[#out + 1] = s
      end
    end
  end
  local shape = {}
  for d = 1, nbd do shape[d] = bs[d] end
  if not a1 then shape[#shape + 1] = m end
  if not b1 then shape[#shape + 1] = n end
  return out, shape
end

-- Checks a:matmul(b) against the reference; tolerances scale with k.
local function check(a, b, opts, msg)
  opts = opts or {}
  local r = a:matmul(b)
  local want, shape = ref_matmul(a, b)
  T.same(r:shape(), shape, msg)
  if opts.dtype then T.eq(r:dtype(), opts.dtype, msg) end
  local dt = r:dtype()
  local k = a:size(-1)
  if dt == 'f64' then
    T.close(r, want, { rtol = 1e-12, atol = 1e-12 * (k + 1) }, msg)
  elseif dt == 'f32' then
    T.close(r, want, { rtol = 1e-5, atol = 2e-6 * (k + 1) }, msg)
  elseif dt == 'bf16' or dt == 'f16' then
    -- the result is rounded to 8 (bf16) or 11 (f16) significant bits
    T.close(r, want, { rtol = 1e-2, atol = 1e-3 * (k + 1) }, msg)
  else
    T.same(T.flatten(r), want, msg)
  end
  return r
end

T.test('ranks: 1-d and 2-d operands', function()
  check(rand { 5 }, rand { 5 }, { dtype = 'f32' }, 'dot')
  T.same(rand({ 5 }):matmul(rand { 5 }):shape(), {})
  check(rand { 4, 5 }, rand { 5 }, nil, 'matrix-vector')
  check(rand { 5 }, rand { 5, 3 }, nil, 'vector-matrix')
  check(rand { 4, 5 }, rand { 5, 3 }, nil, 'matrix-matrix')
  check(rand { 1, 5 }, rand { 5, 1 }, nil, '1x1 result')
  check(rand { 4, 1 }, rand { 1, 3 }, nil, 'k = 1')
  check(rand { 7, 9 }, rand { 9, 6 }, nil)
  check(rand { 33, 17 }, rand { 17, 65 }, nil, 'odd sizes')
end)

T.test('ranks: batched and broadcast', function()
  check(rand { 3, 4, 5 }, rand { 3, 5, 2 }, nil, '3-d x 3-d')
  check(rand { 3, 4, 5 }, rand { 5, 2 }, nil, '3-d x 2-d (folds into one gemm)')
  check(rand { 4, 5 }, rand { 3, 5, 2 }, nil, '2-d x 3-d')
  check(rand { 3, 4, 5 }, rand { 5 }, nil, '3-d x 1-d')
  check(rand { 5 }, rand { 3, 5, 2 }, nil, '1-d x 3-d')
  check(rand { 2, 3, 4, 5 }, rand { 2, 3, 5, 6 }, nil, '4-d x 4-d')
  check(rand { 2, 1, 4, 5 }, rand { 3, 5, 6 }, nil, 'broadcast [2,1] with [3]')
  check(rand { 1, 3, 4, 5 }, rand { 2, 1, 5, 6 }, nil, 'broadcast both ways')
  check(rand { 2, 3, 1, 2, 3 }, rand { 3, 4 }, nil, '5-d x 2-d')
  check(rand { 1, 4, 5 }, rand { 3, 5, 2 }, nil, 'batch 1 against 3')
end)

T.test('transposed operands go to BLAS without a copy', function()
  local a, b = rand { 6, 4 }, rand { 3, 6 }
  check(a:t(), b:t(), nil, 'both transposed')
  check(rand { 4, 6 }, b:t(), nil, 'right transposed')
  check(a:t(), rand { 6, 3 }, nil, 'left transposed')
  check(rand { 2, 6, 4 }:transpose(2, 3), rand { 2, 3, 6 }:transpose(2, 3), nil, 'batched, both transposed')
  check(rand { 6, 4 }:t(), rand { 6 }, nil, 'transposed matrix-vector')
  check(rand { 6 }, rand { 3, 6 }:t(), nil, 'vector-transposed matrix')
  -- a transposed f32 product allocates only its result
  local x, y = rand({ 8, 5 }), rand({ 7, 8 })
  for _, pair in ipairs { { x:t(), y:t() }, { x:t(), rand { 8, 3 } }, { rand { 2, 8 }, y:t() } } do
    local before = tide.memory().allocations
    local r = pair[1]:matmul(pair[2])
    T.eq(tide.memory().allocations - before, 1, 'allocations for a transposed product')
    T.truthy(r)
  end
  -- a batch dimension moved last is still a unit-stride matrix axis
  local w = rand { 5, 3, 4 }
  check(w:permute(2, 3, 1), rand { 3, 5, 2 }, nil, 'permuted batch')
end)

T.test('narrowed, strided and expanded operands', function()
  local big = rand { 9, 12 }
  local a = big:narrow(1, 2, 5):narrow(2, 3, 7)       -- row stride 12 > 7: ld
  local b = rand { 10, 8 }:narrow(1, 3, 7):narrow(2, 2, 4)
  check(a, b, nil, 'narrowed both sides')
  check(a:t():t(), b:t():t(), nil)
  check(b:t(), a:t(), nil, 'narrowed and transposed')
  -- no unit stride on either axis: copied first
  local s = rand { 5, 7, 2 }:select(3, 1)
  check(s, rand { 7, 3 }, nil, 'stride 2 on the last dim')
  check(rand { 3, 5 }, s, nil, 'stride 2, right side')
  -- strided vectors
  local col = rand { 6, 4 }:select(2, 2)
  check(col, col, nil, 'dot of strided vectors')
  check(rand { 3, 6 }, col, nil, 'matrix times strided vector')
  check(col, rand { 6, 2 }, nil, 'strided vector times matrix')
  -- expanded operands: stride-0 batch dims are read in place, stride-0
  -- matrix dims are copied
  local e = rand { 1, 4, 5 }:expand(3, 4, 5)
  check(e, rand { 3, 5, 2 }, nil, 'expanded batch')
  check(rand { 3, 2, 4 }, rand { 4, 1 }:expand(4, 6), nil, 'expanded columns')
  check(rand { 1, 4 }:expand(3, 4), rand { 4, 2 }, nil, 'expanded rows')
  check(rand { 1 }:expand(5), rand { 5 }, nil, 'expanded vector')
end)

T.test('empty dimensions', function()
  local z = tide.zeros(2, 0):matmul(tide.zeros(0, 3))
  T.same(z:shape(), { 2, 3 })
  T.same(z:tolist(), { { 0, 0, 0 }, { 0, 0, 0 } })
  T.eq(tide.zeros(0):matmul(tide.zeros(0)):item(), 0)
  T.same(tide.zeros(0, 3):matmul(rand { 3, 4 }):shape(), { 0, 4 })
  T.same(rand({ 3, 4 }):matmul(tide.zeros(4, 0)):shape(), { 3, 0 })
  T.same(tide.zeros(0, 2, 3):matmul(rand { 3, 4 }):shape(), { 0, 2, 4 })
  T.same(tide.zeros(2, 3, 0, { dtype = 'bf16' }):matmul(tide.zeros(0, 2, { dtype = 'bf16' })):tolist(),
         { { { 0, 0 }, { 0, 0 }, { 0, 0 } }, { { 0, 0 }, { 0, 0 }, { 0, 0 } } })
  T.same(tide.zeros(2, 0, { dtype = 'i64' }):matmul(tide.zeros(0, 1, { dtype = 'i64' })):tolist(), { { 0 }, { 0 } })
  -- k = 0 overwrites whatever the fresh memory held
  for _ = 1, 3 do
    local junk = tide.full({ 64, 64 }, 7.5)
    junk = nil
    collectgarbage('collect')
    T.same(tide.zeros(64, 0):matmul(tide.zeros(0, 64)):tolist(), tide.zeros(64, 64):tolist())
  end
end)

T.test('results never read the fresh memory they land in', function()
  -- freed NaN-filled blocks are likely to be handed out again for the result
  for _, case in ipairs { { { 64, 8 }, { 8 } }, { { 8 }, { 8, 64 } }, { { 8, 8 }, { 8, 8 } } } do
    for _ = 1, 4 do
      local junk = tide.full({ 64 * 8 }, 0 / 0)
      junk = nil
      collectgarbage('collect')
      local a, b = tide.ones(case[1]), tide.ones(case[2])
      for _, v in ipairs(T.flatten(a:matmul(b))) do T.eq(v, 8) end
      for _, v in ipairs(T.flatten(a:to('f64'):matmul(b:to('f64')))) do T.eq(v, 8) end
    end
  end
end)

T.test('dtypes and promotion', function()
  check(rand({ 4, 5 }, 'f64'), rand({ 5, 3 }, 'f64'), { dtype = 'f64' }, 'f64')
  check(rand({ 3, 4, 5 }, 'f64'):transpose(2, 3), rand({ 4, 3 }, 'f64'), { dtype = 'f64' }, 'f64 transposed')
  check(rand({ 5 }, 'f64'), rand({ 5 }, 'f64'), { dtype = 'f64' }, 'f64 dot')
  check(rand({ 4, 5 }, 'bf16'), rand({ 5, 3 }, 'bf16'), { dtype = 'bf16' }, 'bf16')
  check(rand({ 2, 4, 5 }, 'bf16'), rand({ 5 }, 'bf16'), { dtype = 'bf16' }, 'bf16 batched matrix-vector')
  check(rand({ 4, 5 }, 'f16'), rand({ 5, 3 }, 'f16'):t():t(), { dtype = 'f16' }, 'f16')
  check(rand({ 4, 5 }, 'i64'), rand({ 5, 3 }, 'i64'), { dtype = 'i64' }, 'i64')
  check(rand({ 2, 4, 5 }, 'i64'):transpose(2, 3), rand({ 4, 3 }, 'i64'), { dtype = 'i64' }, 'i64 transposed, batched')
  check(rand({ 5 }, 'i64'), rand({ 5 }, 'i64'), { dtype = 'i64' }, 'i64 dot')
  check(rand({ 4, 5 }, 'i32'), rand({ 5, 3 }, 'i32'), { dtype = 'i32' }, 'i32')
  check(rand({ 4, 5 }, 'i32'), rand({ 5, 3 }, 'i64'), { dtype = 'i64' }, 'i32 with i64')
  check(rand({ 4, 5 }, 'f32'), rand({ 5, 3 }, 'f64'), { dtype = 'f64' }, 'f32 with f64')
  check(rand({ 4, 5 }, 'i64'), rand({ 5, 3 }, 'f32'), { dtype = 'f32' }, 'i64 with f32')
  check(rand({ 4, 5 }, 'bf16'), rand({ 5, 3 }, 'f32'), { dtype = 'f32' }, 'bf16 with f32')
  check(rand({ 4, 5 }, 'bf16'), rand({ 5, 3 }, 'f16'), { dtype = 'f32' }, 'bf16 with f16')
  -- integer products are exact beyond 2^53 and wrap like C on overflow
  local big = tide.tensor({ { 2 ^ 31 + 1 } })
  T.same(big:matmul(big):tolist(), { { 4611686022722355201 } })
  local u = tide.tensor({ { 200, 100 } }, { dtype = 'u8' })
  T.same(u:matmul(tide.tensor({ { 1 }, { 1 } }, { dtype = 'u8' })):tolist(), { { 44 } })
  T.eq(u:matmul(tide.tensor({ { 1 }, { 1 } }, { dtype = 'u8' })):dtype(), 'u8')
  -- bool: a product of booleans is true where any pair is true on both sides
  local p = tide.tensor({ { true, false }, { false, false } })
  local q = tide.tensor({ { false, true }, { true, true } })
  T.same(p:matmul(q):tolist(), { { false, true }, { false, false } })
  T.eq(p:matmul(q):dtype(), 'bool')
end)

T.test('sizes past the BLAS threading and batching cutoffs', function()
  -- many small products (spread over OpenMP threads), some that cannot fold
  check(rand { 16, 3, 4 }, rand { 16, 4, 5 }, nil, 'many small')
  check(rand { 16, 6, 4 }:transpose(2, 3), rand { 6, 1 }, nil, 'many small, transposed, n = 1')
  check(rand { 16, 4 }, rand { 16, 4, 6 }, nil, 'shared left, batched right')
  -- products large enough for OpenBLAS to thread
  check(rand { 2, 70, 80 }, rand { 2, 80, 66 }, nil, 'two large')
  check(rand { 3, 40, 64 }, rand { 64, 90 }, nil, 'folded tall product')
  check(rand { 130, 90 }:t(), rand { 130 }, nil, 'large transposed matrix-vector')
end)

T.test('thread count is honoured', function()
  local before = tide.get_num_threads()
  tide.set_num_threads(1)
  T.eq(tide.get_num_threads(), 1)
  check(rand { 2, 70, 80 }, rand { 2, 80, 66 }, nil, 'one thread')
  check(rand { 16, 3, 4 }, rand { 16, 4, 5 }, nil, 'one thread, many small')
  tide.set_num_threads(before)
  T.eq(tide.get_num_threads(), before)
end)

T.test('products with a few rows on the left (decoding): every shape and layout of the streamed operand', function()
  -- m <= 16 rows in f32 stream the right operand once (kernels/cpu/matmul_few_rows.c):
  -- tails of k (not a multiple of 4 or 16) and n (not of 8), B as stored and
  -- transposed (weight:t()), strided rows on both sides
  for _, m in ipairs { 1, 2, 3, 4, 5, 8, 16 } do
    for _, kn in ipairs { { 1, 2 }, { 3, 9 }, { 17, 31 }, { 33, 40 }, { 64, 100 } } do
      local k, n = kn[1], kn[2]
      check(rand { m, k }, rand { k, n }, nil, ('m %d k %d n %d'):format(m, k, n))
      check(rand { m, k }, rand { n, k }:t(), nil, ('m %d k %d n %d, B transposed'):format(m, k, n))
      check(rand { m, k + 3 }:narrow(2, 2, k), rand { k, n + 5 }:narrow(2, 3, n), nil, ('m %d k %d n %d, strided'):format(m, k, n))
      check(rand { m, k + 3 }:narrow(2, 2, k), rand { n, k + 2 }:narrow(2, 1, k):t(), nil,
        ('m %d k %d n %d, strided, B transposed'):format(m, k, n))
    end
  end
  -- a decoding step's shapes, [B, 1, C] through Linear-like products
  check(rand { 8, 1, 48 }, rand { 48, 20 }, nil, 'batched single rows fold into 8 rows')
end)

T.test('few-row products are bitwise the same on one and several threads', function()
  local before = tide.get_num_threads()
  local x, w, wt = rand { 5, 300 }, rand { 300, 520 }, rand { 530, 300 }  -- n * k past the threading cutoff
  tide.set_num_threads(1)
  local a1, b1 = x:matmul(w), x:matmul(wt:t())
  tide.set_num_threads(math.max(2, before))
  local a2, b2 = x:matmul(w), x:matmul(wt:t())
  tide.set_num_threads(before)
  T.truthy(tide.equal(a1, a2), 'B as stored: bitwise equal on 1 and several threads')
  T.truthy(tide.equal(b1, b2), 'B transposed: bitwise equal on 1 and several threads')
  check(x, w, nil, 'large, B as stored')
  check(x, wt:t(), nil, 'large, B transposed')
end)

T.test('strict forms: mm, bmm, mv, dot, outer', function()
  local a, b = rand { 3, 4 }, rand { 4, 2 }
  T.close(a:mm(b), a:matmul(b))
  T.close(tide.mm(a, b), a:matmul(b))
  local x, y = rand { 2, 3, 4 }, rand { 2, 4, 5 }
  T.close(x:bmm(y), x:matmul(y))
  T.close(tide.bmm(x, y), x:matmul(y))
  local v = rand { 4 }
  T.close(a:mv(v), a:matmul(v))
  T.close(tide.matmul(a, v), a:matmul(v))
  local w = rand { 4 }
  T.same(v:dot(w):shape(), {})
  T.close(v:dot(w):item(), ref_matmul(v, w)[1], { rtol = 1e-5, atol = 1e-6 })
  T.close(tide.dot(v, w), v:dot(w))
  local u = rand { 3 }
  local o = u:outer(v)
  T.same(o:shape(), { 3, 4 })
  local uu, vv = u:tolist(), v:tolist()
  local want = {}
  for i = 1, 3 do
    want[i] = {}
    for j = 1, 4 do want[i][j] = uu[i] * vv[j] end
  end
  T.close(o, want)
  T.close(tide.outer(u, v), want)
end)

T.test('bad shapes raise clear errors', function()
  T.raises(function() return tide.zeros(2, 3):matmul(tide.zeros(4, 5)) end,
           'matmul: shapes [2, 3] and [4, 5] are not aligned (3 vs 4)')
  T.raises(function() return tide.zeros(3):matmul(tide.zeros(4)) end, 'shapes [3] and [4] are not aligned (3 vs 4)')
  T.raises(function() return tide.zeros(2, 3):matmul(tide.zeros(2)) end, 'shapes [2, 3] and [2] are not aligned')
  T.raises(function() return tide.zeros(3):matmul(tide.zeros(2, 3)) end, 'shapes [3] and [2, 3] are not aligned')
  T.raises(function() return tide.zeros(2, 3, 4):matmul(tide.zeros(5, 4, 3)) end,
           'matmul: batch dimensions of shapes [2, 3, 4] and [5, 4, 3] cannot be broadcast together (2 vs 5)')
  T.raises(function() return tide.zeros():matmul(tide.zeros(3)) end, 'need at least 1 dimension, got shapes [] and [3]')
  T.raises(function() return tide.zeros(3):matmul(tide.tensor(2)) end, 'got shapes [3] and []')
  T.raises(function() return tide.zeros(3):matmul(3) end, 'matmul: expected a tensor, got number')
  T.raises(function() return tide.matmul(nil, tide.zeros(3)) end, 'matmul: expected a tensor, got nil')
  T.raises(function() return tide.zeros(2, 3, 4):mm(tide.zeros(4, 2)) end,
           'mm: expected two 2-d tensors, got shapes [2, 3, 4] and [4, 2]')
  T.raises(function() return tide.zeros(2, 3):mm(tide.zeros(4, 2)) end, 'not aligned (3 vs 4)')
  T.raises(function() return tide.zeros(3, 4):bmm(tide.zeros(4, 2)) end, 'bmm: expected two 3-d tensors')
  T.raises(function() return tide.zeros(2, 3, 4):bmm(tide.zeros(1, 4, 2)) end,
           'bmm: expected equal batch sizes, got shapes [2, 3, 4] and [1, 4, 2]')
  T.raises(function() return tide.zeros(3, 4):mv(tide.zeros(4, 1)) end, 'mv: expected a 2-d matrix and a 1-d vector')
  T.raises(function() return tide.zeros(3):dot(tide.zeros(1, 3)) end, 'dot: expected two 1-d tensors')
  T.raises(function() return tide.zeros(3):dot(tide.zeros(4)) end, 'not aligned (3 vs 4)')
  T.raises(function() return tide.zeros(3, 1):outer(tide.zeros(4)) end, 'outer: expected two 1-d tensors')
  T.raises(function() return tide.mm(tide.zeros(2, 2), 'x') end, 'mm: expected a tensor, got string')
end)

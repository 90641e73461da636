-- index_select, gather, scatter_add, masked_fill, cat, stack, split, chunk,
-- unbind, sort and topk against plain Lua references on random data, over
-- every dim (negative ones too), non-contiguous inputs, every dtype that
-- applies, and the errors bad arguments must raise.
local T = require 'tide.testing'
local tide = require 'tide'

-- plain Lua helpers -----------------------------------------------------------

-- Calls fn(idx) for every 1-based multi-index of shape, in row-major order.
local function each_index(shape, fn)
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  if n == 0 then return end
  local idx = {}
  for i = 1, #shape do idx[i] = 1 end
  for _ = 1, n do
    fn(idx)
    for d = #shape, 1, -1 do
      idx[d] = idx[d] + 1
      if idx[d] <= shape[d] then break end
      idx[d] = 1
    end
  end
end

-- Element of a nested table at a multi-index.
local function at(tbl, idx)
  local v = tbl
  for i = 1, #idx do v = v[idx[i]] end
  return v
end

local function set(tbl, idx, value)
  local v = tbl
  for i = 1, #idx - 1 do v = v[idx[i]] end
  v[idx[#idx]] = value
end

-- A nested table of the given shape with fn(idx) at each position.
local function build(shape, fn)
  local function rec(d, idx)
    local out = {}
    for i = 1, shape[d] do
      idx[d] = i
      if d == #shape then out[i] = fn(idx) else out[i] = rec(d + 1, idx) end
    end
    idx[d] = nil
    return out
  end
  if #shape == 0 then return fn({}) end
  return rec(1, {})
end

local function copy_idx(idx)
  local c = {}
  for i, v in ipairs(idx) do c[i] = v end
  return c
end

-- A random tensor of small integer values (exact in every dtype).
local function rand_tensor(shape, rng, dtype, lo, hi)
  lo, hi = lo or 0, hi or 9
  local tbl = build(shape, function() return lo + math.floor(rng() * (hi - lo + 1)) end)
  return tide.tensor(tbl, { dtype = dtype or 'f32' })
end

-- A random index tensor with values in [0, size).
local function rand_index(shape, size, rng, dtype)
  return rand_tensor(shape, rng, dtype or 'i64', 0, size - 1)
end

local function norm_dim(d, n) return d < 0 and d + n + 1 or d end

-- The same values as x, laid out in memory in several non-contiguous ways.
local function layouts(x)
  local out = { contiguous = x }
  local shape = x:shape()
  if #shape >= 2 then
    -- transposed storage: build the transpose contiguously, then transpose back
    out.transposed = x:transpose(1, #shape):contiguous():transpose(1, #shape)
    T.truthy(#shape < 2 or shape[1] == 1 or shape[#shape] == 1 or not out.transposed:is_contiguous())
  end
  -- narrowed: x embedded in a larger tensor along its last dim
  local wide = copy_idx(shape)
  wide[#wide] = wide[#wide] + 3
  local big = tide.zeros(wide, { dtype = x:dtype() })
  local slot = big:narrow(#shape, 2, shape[#shape])
  slot:copy_(x)
  out.narrowed = slot
  return out
end

local dims3 = { 1, 2, 3, -1, -2, -3 }

-- index_select -------------------------------------------------------------------

local function ref_index_select(x, d, ix)
  local xt, it = x:tolist(), ix:tolist()
  local shape = x:shape()
  shape[d] = #it
  return build(shape, function(idx)
    local src = copy_idx(idx)
    src[d] = it[idx[d]] + 1
    return at(xt, src)
  end)
end

T.test('index_select matches a reference on every dim and layout', function()
  local rng = T.lcg(1)
  local base = rand_tensor({ 4, 5, 6 }, rng, 'f32', -50, 50)
  for name, x in pairs(layouts(base)) do
    for _, dim in ipairs(dims3) do
      local d = norm_dim(dim, 3)
      for _, idt in ipairs { 'i64', 'i32' } do
        local ix = rand_index({ 7 }, x:size(d), rng, idt)
        local got = x:index_select(dim, ix)
        T.same(got:shape(), { d == 1 and 7 or 4, d == 2 and 7 or 5, d == 3 and 7 or 6 }, name)
        T.same(got, ref_index_select(x, d, ix), ('%s dim %d %s'):format(name, dim, idt))
      end
    end
  end
  -- expanded input (stride 0) and a strided index
  local e = rand_tensor({ 4, 1, 6 }, rng):expand(4, 5, 6)
  local ix = rand_index({ 8 }, 6, rng):narrow(1, 1, 8)
  T.same(e:index_select(3, ix), ref_index_select(e, 3, ix))
  local ix2 = rand_index({ 3, 2 }, 5, rng):select(2, 2)  -- stride 2
  T.same(base:index_select(2, ix2), ref_index_select(base, 2, ix2))
  -- function form, empty index
  T.same(tide.index_select(base, 1, ix2:narrow(1, 1, 0)):shape(), { 0, 5, 6 })
end)

T.test('index_select copies every dtype exactly', function()
  local rng = T.lcg(2)
  for _, dt in ipairs { 'f32', 'f64', 'bf16', 'f16', 'i32', 'i64', 'u8', 'u16', 'bool' } do
    local x = rand_tensor({ 3, 4 }, rng, dt, 0, dt == 'bool' and 1 or 9):t()
    local ix = rand_index({ 5 }, 3, rng, 'i32')
    local got = x:index_select(2, ix)
    T.eq(got:dtype(), dt)
    T.same(got, ref_index_select(x, 2, ix), dt)
  end
end)

T.test('index_select of many rows (embedding lookup, threaded path)', function()
  local rng = T.lcg(3)
  local w = rand_tensor({ 300, 256 }, rng, 'f32', -100, 100)
  local ix = rand_index({ 600 }, 300, rng)
  local got = w:index_select(1, ix)
  T.same(got:shape(), { 600, 256 })
  local it, wt, gt = ix:tolist(), w:tolist(), got:tolist()
  for i = 1, 600 do T.same(gt[i], wt[it[i] + 1]) end
  -- the same along the last dim of a transposed weight
  local got2 = w:t():index_select(2, ix)
  T.same(got2:t(), gt)
end)

-- gather ---------------------------------------------------------------------------

local function ref_gather(x, d, ix)
  local xt, it = x:tolist(), ix:tolist()
  return build(ix:shape(), function(idx)
    local src = copy_idx(idx)
    src[d] = at(it, idx) + 1
    return at(xt, src)
  end)
end

T.test('gather matches a reference on every dim and layout', function()
  local rng = T.lcg(4)
  local base = rand_tensor({ 3, 4, 5 }, rng, 'f64', -20, 20)
  for name, x in pairs(layouts(base)) do
    for _, dim in ipairs(dims3) do
      local d = norm_dim(dim, 3)
      for _, idt in ipairs { 'i64', 'i32' } do
        -- the index may be smaller than the input in the other dims and any
        -- length along the gathered one
        local ishape = { 2, 3, 4 }
        ishape[d] = 6
        local ix = rand_index(ishape, x:size(d), rng, idt)
        T.same(x:gather(dim, ix), ref_gather(x, d, ix), ('%s dim %d %s'):format(name, dim, idt))
        local ixt = ix:transpose(1, 3):contiguous():transpose(1, 3)
        T.same(tide.gather(x, dim, ixt), ref_gather(x, d, ixt), name .. ' strided index')
      end
    end
  end
  -- token log-probs style: pick one column per row
  local logits = rand_tensor({ 5, 11 }, rng, 'bf16', -8, 8)
  local targets = rand_index({ 5, 1 }, 11, rng)
  T.same(logits:gather(2, targets), ref_gather(logits, 2, targets))
  T.eq(logits:gather(2, targets):dtype(), 'bf16')
end)

-- scatter_add ------------------------------------------------------------------------

local function ref_scatter_add(a, d, ix, src)
  local out, it, st = a:tolist(), ix:tolist(), src:tolist()
  each_index(ix:shape(), function(idx)
    local dst = copy_idx(idx)
    dst[d] = at(it, idx) + 1
    set(out, dst, at(out, dst) + at(st, idx))
  end)
  return out
end

T.test('scatter_add_ accumulates duplicates on every dim and layout', function()
  local rng = T.lcg(5)
  for _, dim in ipairs(dims3) do
    local d = norm_dim(dim, 3)
    for _, idt in ipairs { 'i64', 'i32' } do
      local a = rand_tensor({ 3, 4, 5 }, rng, 'f32', -5, 5)
      local ishape = { 2, 3, 4 }
      ishape[d] = 7  -- longer than a's dim: indices must repeat
      local ix = rand_index(ishape, a:size(d), rng, idt)
      local sshape = { 3, 4, 5 }
      sshape[d] = 8
      local src = rand_tensor(sshape, rng, 'f32', -9, 9)
      for name, s in pairs(layouts(src)) do
        local want = ref_scatter_add(a, d, ix, s)
        local r = a:scatter_add(dim, ix, s)
        T.same(r, want, ('dim %d %s src %s'):format(dim, idt, name))
        local b = a:clone()
        T.truthy(b:scatter_add_(dim, ix, s) == b, 'scatter_add_ returns self')
        T.same(b, want)
      end
    end
  end
end)

T.test('scatter_add_ into a view, across dtypes, deterministic', function()
  local rng = T.lcg(6)
  -- a transposed destination: the writes land in the base tensor
  local base = tide.zeros(5, 4)
  local a = base:t()
  local ix = rand_index({ 3, 5 }, 4, rng)
  local src = rand_tensor({ 3, 5 }, rng, 'f32', 1, 9)
  local want = ref_scatter_add(a, 1, ix, src)
  a:scatter_add_(1, ix, src)
  T.same(base:t(), want)
  -- integer destination, float source converted; i64 destination
  for _, dt in ipairs { 'i32', 'i64', 'f64', 'bf16', 'f16', 'u8' } do
    local z = rand_tensor({ 4, 3 }, rng, dt, 0, 5)
    local i2 = rand_index({ 6, 3 }, 4, rng, 'i32')
    local s2 = rand_tensor({ 6, 3 }, rng, 'f64', 0, 5)
    T.same(z:scatter_add(1, i2, s2), ref_scatter_add(z, 1, i2, s2), dt)
  end
  -- a source that is the destination itself is read as it was before the call
  local self_src = tide.tensor({ 1, 2, 3 })
  self_src:scatter_add_(1, tide.tensor({ 0, 0, 0 }), self_src)
  T.same(self_src, { 7, 2, 3 })
  local self_mask = tide.tensor({ 1, 0, 1 }, { dtype = 'u8' })
  T.same(self_mask:masked_fill_(self_mask, 7), { 7, 0, 7 })
  -- u16 and u8 index tensors work too
  T.same(tide.tensor({ 5, 6, 7 }):index_select(1, tide.tensor({ 2, 0 }, { dtype = 'u16' })), { 7, 5 })
  T.same(tide.tensor({ 5, 6, 7 }):gather(1, tide.tensor({ 1 }, { dtype = 'u8' })), { 6 })
  -- counts over a big index: the threaded path, every duplicate counted
  local counts = tide.zeros(40, 600)
  local big = rand_index({ 500, 600 }, 40, rng)
  counts:scatter_add_(1, big, tide.ones(500, 600))
  local bt, ct = big:tolist(), counts:tolist()
  local want_counts = build({ 40, 600 }, function() return 0 end)
  for i = 1, 500 do
    for j = 1, 600 do
      local r = bt[i][j] + 1
      want_counts[r][j] = want_counts[r][j] + 1
    end
  end
  T.same(ct, want_counts)
  -- float sums do not depend on the thread count
  local vals = tide.tensor(build({ 500, 600 }, function() return rng() - 0.5 end))
  local n = tide.get_num_threads()
  local r1 = tide.zeros(40, 600):scatter_add_(1, big, vals)
  tide.set_num_threads(1)
  local r2 = tide.zeros(40, 600):scatter_add_(1, big, vals)
  tide.set_num_threads(n)
  T.same(r1, r2)
end)

-- masked_fill ------------------------------------------------------------------------

local function ref_masked_fill(a, mask, value)
  local at_, mt = a:tolist(), mask:tolist()
  local shape, mshape = a:shape(), mask:shape()
  return build(shape, function(idx)
    local midx = {}
    for i = 1, #mshape do
      local j = idx[#shape - #mshape + i]
      midx[i] = mshape[i] == 1 and 1 or j
    end
    local m = at(mt, midx)
    if m == true or (type(m) == 'number' and m ~= 0) then return value end
    return at(at_, idx)
  end)
end

T.test('masked_fill broadcasts the mask and fills views in place', function()
  local rng = T.lcg(7)
  local a = rand_tensor({ 3, 4 }, rng, 'f32', -9, 9)
  local row = tide.tensor({ true, false, false, true })
  local col = tide.tensor({ { false }, { true }, { false } })
  T.same(a:masked_fill(row, -1.5), ref_masked_fill(a, row, -1.5))
  T.same(tide.masked_fill(a, col, 7), ref_masked_fill(a, col, 7))
  local full = rand_tensor({ 3, 4 }, rng, 'u8', 0, 1)
  T.same(a:masked_fill(full, true), ref_masked_fill(a, full, 1))
  -- out of place leaves a alone; in place on a transposed view writes through
  local before = a:tolist()
  local _ = a:masked_fill(row, 0)
  T.same(a, before)
  local base = rand_tensor({ 4, 3 }, rng, 'i32', 0, 9)
  local v = base:t()
  local want = ref_masked_fill(v, row, -3)
  T.truthy(v:masked_fill_(row, -3) == v)
  T.same(base:t(), want)
  -- attention-mask style: -inf above the diagonal, and a 0-d tensor value
  local m = tide.tensor(build({ 4, 4 }, function(i) return i[2] > i[1] end))
  local s = tide.zeros(2, 4, 4):masked_fill(m, -math.huge)
  T.same(s:tolist()[2], ref_masked_fill(tide.zeros(4, 4), m, -math.huge))
  T.same(tide.zeros(2):masked_fill(tide.tensor({ true, false }), tide.tensor(3.5)), { 3.5, 0 })
end)

-- cat and stack ------------------------------------------------------------------------

local function ref_cat(list, d)
  local tables, shapes = {}, {}
  for i, t in ipairs(list) do tables[i], shapes[i] = t:tolist(), t:shape() end
  local shape = copy_idx(shapes[1])
  shape[d] = 0
  for _, s in ipairs(shapes) do shape[d] = shape[d] + s[d] end
  return build(shape, function(idx)
    local j, k = idx[d], 1
    while j > shapes[k][d] do j = j - shapes[k][d]; k = k + 1 end
    local src = copy_idx(idx)
    src[d] = j
    return at(tables[k], src)
  end)
end

T.test('cat joins along every dim with promotion and any layout', function()
  local rng = T.lcg(8)
  for _, dim in ipairs(dims3) do
    local d = norm_dim(dim, 3)
    local parts = {}
    for i, len in ipairs { 2, 1, 3 } do
      local shape = { 2, 3, 4 }
      shape[d] = len
      parts[i] = rand_tensor(shape, rng, 'f32', -9, 9)
    end
    parts[2] = layouts(parts[2]).narrowed
    if parts[3]:dim() >= 2 then parts[3] = layouts(parts[3]).transposed end
    local got = tide.cat(parts, dim)
    T.same(got, ref_cat(parts, d), 'dim ' .. dim)
  end
  -- default dim 1, empty pieces, promotion like torch.cat
  local a, b = tide.tensor({ { 1, 2 } }, { dtype = 'i32' }), tide.tensor({ { 0.5, 1.5 } })
  local ab = tide.cat({ a, tide.zeros(0, 2, { dtype = 'u8' }), b })
  T.eq(ab:dtype(), 'f32')
  T.same(ab, { { 1, 2 }, { 0.5, 1.5 } })
  T.eq(tide.cat({ tide.tensor({ true }), tide.tensor({ 7 }, { dtype = 'u8' }) }):dtype(), 'u8')
  T.eq(tide.cat({ tide.tensor({ 1 }), tide.tensor({ 2 }, { dtype = 'bf16' }) }):dtype(), 'bf16')
  T.eq(tide.cat({ tide.tensor({ 1 }, { dtype = 'i32' }), tide.tensor({ 2 }) }):dtype(), 'i64')
  T.same(tide.cat({ tide.tensor({ 1 }, { dtype = 'f16' }), tide.tensor({ 2 }, { dtype = 'bf16' }) }), { 1, 2 })
  T.same(tide.cat({ tide.tensor({ 5, 6 }) }), { 5, 6 })
end)

T.test('stack inserts a new dim at every position', function()
  local rng = T.lcg(9)
  local xs = {}
  for i = 1, 3 do xs[i] = rand_tensor({ 2, 4 }, rng, 'i64', -9, 9) end
  xs[2] = layouts(xs[2]).transposed
  for _, dim in ipairs { 1, 2, 3, -1, -2, -3 } do
    local d = norm_dim(dim, 3)
    local got = tide.stack(xs, dim)
    local shape = { 2, 4 }
    table.insert(shape, d, 3)
    T.same(got:shape(), shape)
    local tbls = {}
    for i, x in ipairs(xs) do tbls[i] = x:tolist() end
    T.same(got, build(shape, function(idx)
      local src = copy_idx(idx)
      local k = table.remove(src, d)
      return at(tbls[k], src)
    end), 'dim ' .. dim)
  end
  local s = tide.stack({ tide.tensor(1), tide.tensor(2.5) })
  T.eq(s:dtype(), 'f32')
  T.same(s, { 1, 2.5 })
end)

-- split, chunk, unbind -----------------------------------------------------------------

local function sizes_along(parts, d)
  local s = {}
  for i, p in ipairs(parts) do s[i] = p:size(d) end
  return s
end

T.test('split, chunk and unbind return views with uneven sizes', function()
  local x = tide.arange(30):view(10, 3)
  T.same(sizes_along(x:split(3), 1), { 3, 3, 3, 1 })
  T.same(sizes_along(x:split(4, -2), 1), { 4, 4, 2 })
  T.same(sizes_along(x:split(2, 2), 2), { 2, 1 })
  T.same(sizes_along(x:split({ 2, 0, 8 }), 1), { 2, 0, 8 })
  local parts = x:split(3)
  T.same(parts[4], { { 27, 28, 29 } })
  T.same(parts[2], { { 9, 10, 11 }, { 12, 13, 14 }, { 15, 16, 17 } })
  T.same(sizes_along(x:chunk(3), 1), { 4, 4, 2 })
  T.same(sizes_along(x:chunk(4), 1), { 3, 3, 3, 1 })
  T.same(sizes_along(tide.zeros(6):chunk(4), 1), { 2, 2, 2 })
  T.same(sizes_along(x:chunk(5, 2), 2), { 1, 1, 1 })
  T.same(sizes_along(tide.zeros(0, 2):chunk(2), 1), { 0, 0 })
  T.same(sizes_along(tide.zeros(0):split(2), 1), { 0 })
  -- views: writing a piece writes x
  parts[1]:fill_(-1)
  T.same(x:tolist()[3], { -1, -1, -1 })
  local cols = x:unbind(2)
  T.eq(#cols, 3)
  T.same(cols[3]:shape(), { 10 })
  T.same(cols[2]:tolist()[10], 28)
  T.same(#tide.unbind(x), 10)
  T.same(tide.cat(x:split(4), 1), x)
  T.same(tide.stack(x:unbind(2), 2), x)
  T.same(#tide.split(x, 5), 2)
  T.same(#tide.chunk(x, 2, 2), 2)
end)

-- sort -------------------------------------------------------------------------------------

-- Stable sort of a Lua list with NaN largest; returns values and 0-based indices.
local function ref_sort(list, descending)
  local order = {}
  for i = 1, #list do order[i] = i end
  local function key_lt(a, b)  -- a < b with NaN largest
    if a ~= a then return false end
    if b ~= b then return true end
    return a < b
  end
  local function before(i, j)
    local a, b = list[i], list[j]
    if descending then
      if key_lt(b, a) then return true end
      if key_lt(a, b) then return false end
    else
      if key_lt(a, b) then return true end
      if key_lt(b, a) then return false end
    end
    return i < j  -- ties keep input order
  end
  table.sort(order, before)
  local vals, idx = {}, {}
  for k, i in ipairs(order) do vals[k], idx[k] = list[i], i - 1 end
  return vals, idx
end

-- Reference sort of a tensor along d: nested values and indices.
local function ref_sort_tensor(x, d, descending, k)
  local xt, shape = x:tolist(), x:shape()
  local oshape = copy_idx(shape)
  oshape[d] = k or shape[d]
  local vals, idxs = build(oshape, function() return 0 end), build(oshape, function() return 0 end)
  local lane = copy_idx(shape)
  lane[d] = 1
  each_index(lane, function(idx)
    local list, p = {}, copy_idx(idx)
    for i = 1, shape[d] do p[d] = i; list[i] = at(xt, p) end
    local v, ix = ref_sort(list, descending)
    for i = 1, oshape[d] do p[d] = i; set(vals, p, v[i]); set(idxs, p, ix[i]) end
  end)
  return vals, idxs
end

T.test('sort is stable on every dim, dtype and layout', function()
  local rng = T.lcg(10)
  for _, dt in ipairs { 'f32', 'f64', 'bf16', 'f16', 'i32', 'i64', 'u8', 'u16' } do
    local lo = (dt == 'u8' or dt == 'u16') and 0 or -4
    local base = rand_tensor({ 3, 4, 9 }, rng, dt, lo, lo + 6)  -- many ties
    for name, x in pairs(layouts(base)) do
      for _, dim in ipairs(dims3) do
        local d = norm_dim(dim, 3)
        for _, desc in ipairs { false, true } do
          local v, i = x:sort(dim, { descending = desc })
          local wv, wi = ref_sort_tensor(x, d, desc)
          T.eq(v:dtype(), dt)
          T.eq(i:dtype(), 'i64')
          T.same(v, wv, ('%s %s dim %d desc %s'):format(dt, name, dim, tostring(desc)))
          T.same(i, wi, ('%s %s dim %d desc %s indices'):format(dt, name, dim, tostring(desc)))
        end
      end
    end
  end
end)

T.test('sort orders NaN as the largest value and ties -0 with +0', function()
  local nan, inf = 0 / 0, math.huge
  local list = { 3, nan, -inf, 0, -0.0, 1, nan, inf, -2, 1 }
  for _, dt in ipairs { 'f32', 'f64', 'bf16', 'f16' } do
    local x = tide.tensor(list, { dtype = dt })
    local v, i = x:sort()
    local wv, wi = ref_sort(list, false)
    T.close(v, wv, nil, dt)
    T.same(i, wi, dt)
    v, i = tide.sort(x, 1, true)
    wv, wi = ref_sort(list, true)
    T.close(v, wv, nil, dt .. ' descending')
    T.same(i, wi, dt .. ' descending')
  end
  -- long rows take the radix path: NaN, infinities, -0 and ties there too
  local rng0 = T.lcg(21)
  local mixed = {}
  for k = 1, 700 do mixed[k] = list[1 + math.floor(rng0() * #list)] end
  for _, dt in ipairs { 'f32', 'bf16', 'f64' } do
    for _, desc in ipairs { false, true } do
      local v, i = tide.tensor(mixed, { dtype = dt }):sort(1, desc)
      local wv, wi = ref_sort(mixed, desc)
      T.close(v, wv, nil, dt)
      T.same(i, wi, dt)
    end
  end
  -- default dim is the last; argsort
  local rng = T.lcg(11)
  local long = {}
  for k = 1, 3000 do long[k] = math.floor(rng() * 100) end
  local v, i = tide.tensor({ long, long }):sort({ descending = true })
  local wv, wi = ref_sort(long, true)
  T.same(v:tolist()[2], wv)
  T.same(i:tolist()[1], wi)
  T.same(tide.tensor({ long }):argsort(), { select(2, ref_sort(long, false)) })
  -- 0-d and empty
  local v0, i0 = tide.tensor(4.5):sort()
  T.eq(v0:item(), 4.5)
  T.eq(i0:item(), 0)
  local ve = tide.zeros(0, 3):sort(1)
  T.same(ve:shape(), { 0, 3 })
end)

-- topk -------------------------------------------------------------------------------------

T.test('topk on a GPT-2 vocab row agrees with sort', function()
  local rng = T.lcg(12)
  local vocab = 50257
  local row = {}
  for k = 1, vocab do row[k] = (rng() - 0.5) * 20 end
  local logits = tide.tensor({ row, row })
  logits = logits:narrow(1, 2, 1)  -- a row view with an offset
  local sv, si = logits:sort(-1, true)
  for _, k in ipairs { 1, 50, 600, 7000, vocab } do  -- heap (k over one key block too) and full sort
    local v, i = logits:topk(k)
    T.same(v:shape(), { 1, k })
    T.same(v, sv:narrow(2, 1, k), 'k ' .. k)
    T.same(i, si:narrow(2, 1, k), 'k ' .. k .. ' indices')
  end
  local av, ai = logits:sort(-1)
  local v, i = logits:topk(50, -1, { largest = false })
  T.same(v, av:narrow(2, 1, 50))
  T.same(i, ai:narrow(2, 1, 50))
  v, i = tide.topk(logits, 50, 2, false, true)
  T.same(i, ai:narrow(2, 1, 50))
end)

T.test('topk matches a reference on every dim, dtype and layout', function()
  local rng = T.lcg(13)
  for _, dt in ipairs { 'f32', 'bf16', 'f16', 'i32', 'i64', 'u8' } do
    local base = rand_tensor({ 4, 5, 40 }, rng, dt, 0, 30)
    for name, x in pairs(layouts(base)) do
      for _, dim in ipairs(dims3) do
        local d = norm_dim(dim, 3)
        for _, k in ipairs { 0, 1, 3, x:size(d) } do
          for _, largest in ipairs { true, false } do
            local v, i = x:topk(k, dim, { largest = largest })
            local wv, wi = ref_sort_tensor(x, d, largest, k)
            local what = ('%s %s dim %d k %d largest %s'):format(dt, name, dim, k, tostring(largest))
            T.same(v:shape(), i:shape())
            if k > 0 then
              T.same(v, wv, what)
              T.same(i, wi, what)
            end
          end
        end
      end
    end
  end
  -- NaN is the largest for topk too; many rows take the threaded path
  local v, i = tide.tensor({ 1, 0 / 0, 3 }):topk(2)
  T.truthy(v:tolist()[1] ~= v:tolist()[1])
  T.same(i, { 1, 2 })
  local many = rand_tensor({ 64, 512 }, rng, 'f32', -1000, 1000)
  local tv, ti = many:topk(5)
  local sv, si = many:sort(2, true)
  T.same(tv, sv:narrow(2, 1, 5))
  T.same(ti, si:narrow(2, 1, 5))
end)

-- errors -----------------------------------------------------------------------------------

T.test('bad indices raise clear errors and change nothing', function()
  local x = tide.zeros(3, 4)
  T.raises(function() return x:index_select(2, tide.tensor({ 0, 4 })) end,
    'index_select: index 4 is out of range for dimension 2 of size 4')
  T.raises(function() return x:index_select(1, tide.tensor({ -1 })) end, 'index -1 is out of range for dimension 1 of size 3')
  T.raises(function() return x:index_select(1, tide.tensor({ 0, -2 }, { dtype = 'i32' })) end, 'index -2 is out of range')
  T.raises(function() return x:index_select(1, tide.tensor({ 1.0, 2.5 })) end, 'index_select: index must be an integer tensor')
  T.raises(function() return x:index_select(1, tide.tensor({ 1 }, { dtype = 'bf16' })) end, 'got bf16')
  T.raises(function() return x:index_select(1, tide.tensor({ true })) end, 'index must be an integer tensor, got bool')
  T.raises(function() return x:index_select(1, tide.zeros(2, 2, { dtype = 'i64' })) end, 'index must be 1-d')
  T.raises(function() return x:index_select(3, tide.tensor({ 0 })) end, 'index_select: dimension 3 out of range')
  T.raises(function() return x:index_select(1, { 0 }) end, 'index_select: expected a tensor')
  T.raises(function() return tide.index_select(5, 1, tide.tensor({ 0 })) end, 'index_select: expected a tensor')
  T.raises(function() return x:gather(2, tide.tensor({ { 0, 9 } })) end, 'gather: index 9 is out of range for dimension 2 of size 4')
  T.raises(function() return x:gather(1, tide.tensor({ { -1 } })) end, 'index -1 is out of range')
  T.raises(function() return x:gather(1, tide.tensor({ 0 })) end, 'gather: index is 1-d but input is 2-d')
  T.raises(function() return x:gather(1, tide.zeros(2, 5, { dtype = 'i64' })) end, 'larger than input of shape [3, 4] at dimension 2')
  T.raises(function() return x:gather(1, tide.zeros(2, 2)) end, 'gather: index must be an integer tensor, got f32')
  T.raises(function() return x:gather(-3, tide.zeros(2, 2, { dtype = 'i64' })) end, 'gather: dimension -3 out of range')
  -- scatter_add_: a bad index anywhere leaves the destination untouched
  local dst = tide.zeros(3, 4)
  local ix = tide.tensor({ { 0, 1, 2, 3 }, { 2, 1, 0, 3 } })
  T.raises(function() dst:scatter_add_(1, ix, tide.ones(2, 4)) end, 'scatter_add_: index 3 is out of range for dimension 1 of size 3')
  T.same(dst, tide.zeros(3, 4))
  T.raises(function() dst:scatter_add_(2, tide.tensor({ { -5 } }), tide.ones(1, 1)) end, 'index -5 is out of range')
  T.raises(function() dst:scatter_add_(1, tide.zeros(2, 4, { dtype = 'i64' }), tide.ones(1, 4)) end,
    'larger than src of shape [1, 4] at dimension 1')
  T.raises(function() dst:scatter_add_(1, tide.zeros(2, 5, { dtype = 'i64' }), tide.ones(2, 5)) end, 'larger than the destination')
  T.raises(function() dst:scatter_add_(1, tide.zeros(4, { dtype = 'i64' }), tide.ones(4)) end, 'index is 1-d but the destination is 2-d')
  T.raises(function() tide.zeros(1, 4):expand(3, 4):scatter_add_(1, tide.zeros(1, 4, { dtype = 'i64' }), tide.ones(1, 4)) end,
    'expanded view')
  T.raises(function() dst:scatter_add_(0, ix, tide.ones(2, 4)) end, 'scatter_add_: dimension 0 out of range')
  T.same(dst, tide.zeros(3, 4))
end)

T.test('bad masks, lists, shapes, k and dims raise clear errors', function()
  local x = tide.zeros(3, 4)
  T.raises(function() x:masked_fill_(tide.ones(3, 4), 1) end, 'masked_fill_: mask must be a bool tensor, got f32')
  T.raises(function() x:masked_fill_(tide.tensor({ true, false, true }), 1) end, 'mask of shape [3] cannot be broadcast')
  T.raises(function() x:masked_fill_(tide.zeros(2, 3, 4, { dtype = 'bool' }), 1) end, "to the tensor's shape [3, 4]")
  T.raises(function() x:masked_fill_(tide.tensor({ true, false, true, true }), 'a') end, 'masked_fill_: value must be a number')
  T.raises(function() return x:masked_fill(nil, 1) end, 'masked_fill: expected a tensor')
  T.raises(function() return tide.cat({ x, tide.zeros(3, 5) }, 1) end,
    'cat: tensor 2 has shape [3, 5] but tensor 1 has shape [3, 4]; sizes must match except in dimension 1')
  T.raises(function() return tide.cat({ x, x, tide.zeros(3) }) end, 'cat: tensor 3 is 1-d (shape [3]) but tensor 1 is 2-d')
  T.raises(function() return tide.cat({}) end, 'cat: expected a non-empty list')
  T.raises(function() return tide.cat(x) end, 'cat: expected a list (Lua table) of tensors, got a tensor')
  T.raises(function() return tide.cat({ x, 3 }) end, 'cat: element 2 of the list is a number')
  T.raises(function() return tide.cat({ x, x }, 3) end, 'cat: dimension 3 out of range for a 2-d tensor')
  T.raises(function() return tide.cat({ tide.tensor(1), tide.tensor(2) }) end, 'zero-dimensional tensors cannot be concatenated')
  T.raises(function() return tide.stack({ x, tide.zeros(4, 3) }) end, 'stack: tensor 2 has shape [4, 3] but tensor 1 has shape [3, 4]')
  T.raises(function() return tide.stack({ x, x }, 4) end, 'stack: dimension 4 out of range')
  T.raises(function() return tide.stack({ x, x }, -4) end, 'stack: dimension -4 out of range')
  T.raises(function() return x:split(0) end, 'split: split size must be a positive integer')
  T.raises(function() return x:split({ 1, 1 }) end, 'split: sizes {1, 1} add up to 2 but dimension 1 has size 3')
  T.raises(function() return x:split({ 4, -1 }) end, 'size 2 must be a non-negative integer')
  T.raises(function() return x:split(2, 3) end, 'split: dimension 3 out of range')
  T.raises(function() return x:chunk(0) end, 'chunk: number of chunks must be a positive integer')
  T.raises(function() return tide.tensor(1):unbind() end, 'unbind: cannot split a 0-d tensor')
  T.raises(function() return x:topk(5) end, 'topk: k = 5 is out of range for dimension 2 of size 4')
  T.raises(function() return x:topk(4, 1) end, 'topk: k = 4 is out of range for dimension 1 of size 3')
  T.raises(function() return x:topk(-1) end, 'topk: k = -1 is out of range')
  T.raises(function() return x:topk(1.5) end, 'topk: k must be an integer')
  T.raises(function() return x:topk(1, 3) end, 'topk: dimension 3 out of range')
  T.raises(function() return x:sort(-3) end, 'sort: dimension -3 out of range')
  T.raises(function() return x:sort(1, 'down') end, 'sort: expected {descending=...} or a boolean')
  T.raises(function() return tide.sort('x') end, 'sort: expected a tensor')
end)

-- Reductions (sum, mean, prod, max, min, argmax, argmin, amax, amin, cumsum,
-- var, std, logsumexp) against plain f64 references computed in Lua.
local T = require 'tide.testing'
local ffi = require 'ffi'

-- helpers -------------------------------------------------------------------------

local function prod_of(shape, a, b)
  local p = 1
  for i = a or 1, b or #shape do p = p * shape[i] end
  return p
end

-- Nested table of shape filled by gen().
local function nested(shape, gen, d)
  d = d or 1
  local t = {}
  for i = 1, shape[d] do
    if d == #shape then t[i] = gen() else t[i] = nested(shape, gen, d + 1) end
  end
  return t
end

-- A random tensor of dtype: floats in [-1, 1), integers in [-3, 3] (plenty of
-- ties for argmax), bool with both values.
local function random_tensor(shape, dtype, seed)
  local r = T.lcg(seed)
  local gen
  if dtype == 'bool' then gen = function() return r() < 0.5 end
  elseif dtype == 'i32' or dtype == 'i64' or dtype == 'u8' or dtype == 'u16' then
    local lo = (dtype == 'u8' or dtype == 'u16') and 0 or -3
    gen = function() return lo + math.floor(r() * (4 - lo)) end
  else gen = function() return r() * 2 - 1 end end
  return tide.tensor(nested(shape, gen), { dtype = dtype })
end

-- The values a tensor holds, row-major, as Lua numbers (bool as 0/1).
local function values(t)
  return (T.flatten(t:dim() == 0 and { t:item() } or t:tolist()))
end

local function is_nan(v) return v ~= v end

-- Reference reductions over a list of numbers: value and 0-based index.
local ref_ops = {
  sum = function(xs) local s = 0; for _, v in ipairs(xs) do s = s + v end; return s end,
  prod = function(xs) local s = 1; for _, v in ipairs(xs) do s = s * v end; return s end,
  mean = function(xs) local s = 0; for _, v in ipairs(xs) do s = s + v end; return s / #xs end,
  max = function(xs)
    local best, at = -math.huge, nil
    for i, v in ipairs(xs) do
      if is_nan(v) then return v, i - 1 end
      if at == nil or v > best then best, at = v, i - 1 end
    end
    return best, at
  end,
  min = function(xs)
    local best, at = math.huge, nil
    for i, v in ipairs(xs) do
      if is_nan(v) then return v, i - 1 end
      if at == nil or v < best then best, at = v, i - 1 end
    end
    return best, at
  end,
}
ref_ops.amax, ref_ops.amin = ref_ops.max, ref_ops.min
ref_ops.argmax = function(xs) local _, i = ref_ops.max(xs); return i end
ref_ops.argmin = function(xs) local _, i = ref_ops.min(xs); return i end

-- Reduces flat row-major `vals` of `shape` over 1-based dim (nil: all):
-- returns the flat results, their indices (max/min) and the output shape.
local function ref_reduce(vals, shape, dim, op, keepdim)
  local f = ref_ops[op]
  if dim == nil then
    local v, i = f(vals)
    local oshape = {}
    if keepdim then for k = 1, #shape do oshape[k] = 1 end end
    return { v }, { i }, oshape
  end
  if dim < 0 then dim = dim + #shape + 1 end
  local outer, R, inner = prod_of(shape, 1, dim - 1), shape[dim], prod_of(shape, dim + 1)
  local out, idx = {}, {}
  for o = 0, outer - 1 do
    for j = 0, inner - 1 do
      local xs = {}
      for r = 0, R - 1 do xs[#xs + 1] = vals[(o * R + r) * inner + j + 1] end
      local v, i = f(xs)
      out[#out + 1], idx[#idx + 1] = v, i
    end
  end
  local oshape = {}
  for k = 1, #shape do
    if k ~= dim then oshape[#oshape + 1] = shape[k] elseif keepdim then oshape[#oshape + 1] = 1 end
  end
  return out, idx, oshape
end

local function ref_cumsum(vals, shape, dim)
  if dim < 0 then dim = dim + #shape + 1 end
  local outer, R, inner = prod_of(shape, 1, dim - 1), shape[dim], prod_of(shape, dim + 1)
  local out = {}
  for o = 0, outer - 1 do
    for j = 0, inner - 1 do
      local s = 0
      for r = 0, R - 1 do
        local k = (o * R + r) * inner + j + 1
        s = s + vals[k]
        out[k] = s
      end
    end
  end
  return out
end

local float_tol = {
  f32 = { rtol = 2e-6, atol = 1e-6 }, f64 = { rtol = 1e-12, atol = 1e-12 },
  bf16 = { rtol = 1e-2, atol = 1e-2 }, f16 = { rtol = 2e-3, atol = 2e-3 },
}
local function tol_for(dtype) return float_tol[dtype] or { rtol = 1e-6, atol = 1e-6 } end

local function expected_dtype(op, dt)
  local float = dt == 'f32' or dt == 'f64' or dt == 'bf16' or dt == 'f16'
  if op == 'sum' or op == 'prod' then return float and dt or 'i64' end
  if op == 'mean' then return float and dt or 'f32' end
  if op == 'argmax' or op == 'argmin' then return 'i64' end
  return dt
end

-- Checks t:op(dim, keepdim) (and indices for max/min over a dim) against the reference.
local function check_op(x, op, dim, keepdim, what)
  local vals, shape = values(x), x:shape()
  local ref, ref_idx, oshape = ref_reduce(vals, shape, dim, op, keepdim)
  local got, got_idx = x[op](x, dim, keepdim)
  local label = ('%s %s(%s, %s) on %s %s'):format(what, op, tostring(dim), tostring(keepdim), x:dtype(),
    table.concat(shape, 'x'))
  T.same(got:shape(), oshape, label .. ' shape')
  T.eq(got:dtype(), expected_dtype(op, x:dtype()), label .. ' dtype')
  T.close(values(got), ref, tol_for(got:dtype()), label)
  if (op == 'max' or op == 'min') and dim ~= nil then
    T.truthy(got_idx ~= nil, label .. ': indices expected')
    T.eq(got_idx:dtype(), 'i64', label .. ' index dtype')
    T.same(got_idx:shape(), oshape, label .. ' index shape')
    T.same(values(got_idx), ref_idx, label .. ' indices')
  end
end

local all_ops = { 'sum', 'mean', 'prod', 'max', 'min', 'argmax', 'argmin', 'amax', 'amin' }
local dims3 = { false, 1, 2, 3, -1, -2, -3 }  -- false stands for nil (all elements)

local function each_dim(dims, fn)
  for _, d in ipairs(dims) do fn(d ~= false and d or nil) end
end

-- every op, every dim, keepdim, dtypes -----------------------------------------------

for _, dt in ipairs { 'f32', 'f64', 'bf16', 'f16', 'i32', 'i64', 'u8', 'bool', 'u16' } do
  T.test('every op and dim matches the f64 reference: ' .. dt, function()
    local x = random_tensor({ 3, 4, 5 }, dt, 7)
    for _, op in ipairs(all_ops) do
      each_dim(dims3, function(d)
        -- an integer product of all 60 elements wraps; the reference cannot follow
        if not (op == 'prod' and d == nil and not x:is_floating_point()) then
          check_op(x, op, d, false, 'contiguous')
          check_op(x, op, d, true, 'contiguous')
        end
      end)
    end
  end)
end

T.test('integer products wrap in 64 bits and small ones are exact', function()
  local x = tide.tensor({ { 2, -3, 4 }, { 5, 6, -7 } }, { dtype = 'i32' })
  T.eq(x:prod():item(), 2 * -3 * 4 * 5 * 6 * -7)
  T.eq(x:prod():dtype(), 'i64')
  T.same(x:prod(2):tolist(), { -24, -210 })
  T.eq(tide.tensor({ true, true, false }):prod():item(), 0)
  T.eq(tide.tensor({ true, true }):prod():item(), 1)
  -- 2^62 * 4 wraps to 0 like torch's int64
  T.eq(tide.tensor({ 2 ^ 62, 4 }, { dtype = 'i64' }):prod():item(), 0)
end)

T.test('sum and mean output dtypes follow torch', function()
  T.eq(tide.tensor({ true, false, true }):sum():item(), 2)
  T.eq(tide.tensor({ true, false, true }):sum():dtype(), 'i64')
  T.eq(tide.tensor({ 1, 2 }, { dtype = 'i32' }):sum():dtype(), 'i64')
  T.eq(tide.tensor({ 1, 2 }, { dtype = 'u8' }):mean():dtype(), 'f32')
  T.close(tide.tensor({ 1, 2 }, { dtype = 'i64' }):mean(), 1.5)
  T.eq(tide.tensor({ 1, 2 }, { dtype = 'bf16' }):sum():dtype(), 'bf16')
  T.eq(tide.tensor({ 1, 2 }, { dtype = 'f16' }):mean():dtype(), 'f16')
  T.eq(tide.tensor({ 200, 100 }, { dtype = 'u8' }):sum():item(), 300)
  T.eq(tide.tensor({ 3, 9 }, { dtype = 'u8' }):max():dtype(), 'u8')
  T.eq(tide.tensor({ true, false }):max():dtype(), 'bool')
  T.eq(tide.tensor({ true, false }):max():item(), true)
  T.eq(tide.tensor({ 1.5, 2 }):argmax():dtype(), 'i64')
end)

T.test('bf16 sums accumulate wider than bf16', function()
  -- 4096 ones: a bf16 running sum would stall at 256
  local x = tide.ones(4096, { dtype = 'bf16' })
  T.eq(x:sum():item(), 4096)
  T.eq(tide.ones(4096, { dtype = 'f16' }):sum():item(), 4096)
end)

-- non-contiguous inputs -----------------------------------------------------------

T.test('transposed, permuted, narrowed and expanded inputs', function()
  for _, dt in ipairs { 'f32', 'f64', 'i64', 'bf16', 'bool' } do
    local base = random_tensor({ 4, 5, 6 }, dt, 11)
    local views = {
      transposed = base:transpose(1, 3),
      permuted = base:permute(2, 3, 1),
      narrowed = base:narrow(2, 2, 3):narrow(3, 2, 4),
      selected = base:select(2, 3),
      expanded = random_tensor({ 4, 1, 6 }, dt, 12):expand(4, 5, 6),
      expanded_inner = random_tensor({ 4, 5, 1 }, dt, 13):expand(4, 5, 6),
      stepped = base:transpose(2, 3):narrow(1, 2, 2),
    }
    for name, v in pairs(views) do
      local dims = v:dim() == 3 and dims3 or { false, 1, 2, -1 }
      for _, op in ipairs { 'sum', 'mean', 'max', 'min', 'argmax', 'argmin' } do
        each_dim(dims, function(d)
          check_op(v, op, d, false, name)
        end)
      end
      each_dim(dims, function(d) check_op(v, 'max', d, true, name) end)
    end
  end
end)

T.test('random shapes, permutations and narrowings (up to 5-d)', function()
  local r = T.lcg(99)
  local function pick(n) return 1 + math.floor(r() * n) end
  local dtypes = { 'f32', 'f64', 'i32', 'bf16', 'bool', 'u8' }
  for case = 1, 40 do
    local nd = pick(5)
    local shape = {}
    for k = 1, nd do shape[k] = pick(4) + (k == nd and 1 or 0) end
    local x = random_tensor(shape, dtypes[pick(#dtypes)], 1000 + case)
    -- a random permutation, then narrow one dim where possible
    local perm = {}
    for k = 1, nd do perm[k] = k end
    for k = nd, 2, -1 do local j = pick(k); perm[k], perm[j] = perm[j], perm[k] end
    x = x:permute(perm)
    local d = pick(nd)
    if x:size(d) > 2 then x = x:narrow(d, 2, x:size(d) - 1) end
    local dims = { false }
    for k = 1, nd do dims[#dims + 1] = k; dims[#dims + 1] = -k end
    for _, op in ipairs { 'sum', 'mean', 'max', 'min', 'argmax', 'argmin', 'amax' } do
      each_dim(dims, function(dd) check_op(x, op, dd, case % 2 == 0, 'case ' .. case) end)
    end
    for k = 1, nd do
      T.close(values(x:cumsum(k)), ref_cumsum(values(x), x:shape(), k), tol_for(x:dtype()), 'case ' .. case .. ' cumsum')
    end
  end
end)

T.test('column mode: outputs closer in memory than the reduced dim', function()
  for _, dt in ipairs { 'f32', 'f64', 'bf16', 'i64', 'bool', 'u8' } do
    for _, shape in ipairs { { 7, 33 }, { 5, 3, 20 }, { 9, 17 }, { 2, 64 }, { 13, 1, 40 } } do
      local x = random_tensor(shape, dt, 50 + #shape)
      for _, op in ipairs { 'sum', 'mean', 'prod', 'max', 'min', 'argmax', 'argmin', 'amax', 'amin' } do
        check_op(x, op, 1, false, 'column')
        check_op(x, op, 1, true, 'column')
        check_op(x:dim() == 2 and x:t() or x:transpose(1, 3), op, -1, false, 'column transposed')
      end
    end
  end
  -- very short reductions over a long output dim also take column mode
  local x = random_tensor({ 300, 3 }, 'f32', 61)
  for _, op in ipairs { 'sum', 'max', 'argmin' } do check_op(x, op, 2, false, 'short') end
end)

T.test('reductions over a list of dims', function()
  local x = random_tensor({ 3, 4, 5 }, 'f64', 71)
  local vals = values(x)
  local function ref(keep, red_op)
    -- reduce dims 1 and 3: outputs along dim 2
    local out = {}
    for j = 0, 3 do
      local xs = {}
      for i = 0, 2 do for k = 0, 4 do xs[#xs + 1] = vals[(i * 4 + j) * 5 + k + 1] end end
      out[j + 1] = (ref_ops[red_op](xs))
    end
    return out
  end
  for _, op in ipairs { 'sum', 'mean', 'prod', 'amax', 'amin' } do
    T.close(x[op](x, { 1, 3 }), ref(false, op), { rtol = 1e-12 }, op .. ' over {1, 3}')
    T.close(x[op](x, { -1, 1 }), ref(false, op), { rtol = 1e-12 }, op .. ' over {-1, 1}')
    T.same(x[op](x, { 1, 3 }, true):shape(), { 1, 4, 1 })
    T.same(x[op](x, { dim = { 3, 1 }, keepdim = true }):shape(), { 1, 4, 1 })
  end
  T.close(x:sum({ 1, 2, 3 }), x:sum())
  T.same(x:sum({ 1, 2, 3 }):shape(), {})
  T.close(x:sum({ 2 }), x:sum(2))
  T.close(x:sum({}), x:sum())
  T.close(x:transpose(1, 2):sum({ 1, 2 }), x:sum({ 1, 2 }))
  T.raises(function() return x:sum({ 1, 1 }) end, 'sum: dimension 1 is listed twice')
  T.raises(function() return x:sum({ 1, 4 }) end, 'sum: dimension 4 out of range for a 3-d tensor of shape [3, 4, 5]')
  T.raises(function() return x:argmax({ 1, 2 }) end, 'argmax: expects one dimension')
  T.raises(function() return x:max({ 1, 2 }) end, 'max: expects one dimension')
end)

-- ties and NaN -------------------------------------------------------------------

T.test('argmax and argmin take the first of equal values', function()
  local x = tide.tensor({ { 1, 3, 3, 0 }, { 2, 2, 2, 2 }, { 0, -1, 5, -1 } })
  T.same(x:argmax(2):tolist(), { 1, 0, 2 })
  T.same(x:argmin(2):tolist(), { 3, 0, 1 })
  T.same(x:argmax(1):tolist(), { 1, 0, 2, 1 })
  T.eq(x:argmax():item(), 10)
  T.eq(x:argmin():item(), 9)
  local _, i = x:max(2)
  T.same(i:tolist(), { 1, 0, 2 })
  local ones = tide.ones(3, 70000)
  T.same(ones:argmax(2):tolist(), { 0, 0, 0 })
  T.eq(ones:argmax():item(), 0)
  T.eq(ones:argmin():item(), 0)
  T.same(tide.zeros(40000, 20):argmax(1):tolist(), (function() local t = {}; for k = 1, 20 do t[k] = 0 end; return t end)())
  -- transposed ties: the first in logical (not memory) order wins
  local tt = tide.tensor({ { 7, 1 }, { 7, 7 } }):t()
  T.eq(tt:argmax():item(), 0)
  T.same(tt:argmax(1):tolist(), { 0, 0 })
  T.same(tt:argmax(2):tolist(), { 0, 1 })
end)

T.test('NaN propagates through max and min; argmax points at the first NaN', function()
  local nan = 0 / 0
  for _, dt in ipairs { 'f32', 'f64', 'bf16' } do
    local x = tide.tensor({ { 1, nan, 3, nan }, { 4, 5, 6, 7 }, { nan, -math.huge, math.huge, 0 } }, { dtype = dt })
    T.truthy(is_nan(x:max():item()), dt .. ' max')
    T.truthy(is_nan(x:min():item()), dt .. ' min')
    T.truthy(is_nan(x:amax():item()), dt .. ' amax')
    T.eq(x:argmax():item(), 1, dt .. ' argmax')
    T.eq(x:argmin():item(), 1, dt .. ' argmin')
    local v, i = x:max(2)
    T.close(v, { nan, 7, nan })
    T.same(i:tolist(), { 1, 3, 0 })
    v, i = x:min(1)
    T.close(v, { nan, nan, 3, nan })
    T.same(i:tolist(), { 2, 0, 0, 0 })
    T.close(x:amin(1), { nan, nan, 3, nan })
    T.close(x:sum(2), { nan, 22, nan })
    for _, op in ipairs { 'max', 'min', 'argmax', 'argmin', 'amax' } do
      each_dim({ false, 1, 2 }, function(d) check_op(x, op, d, false, 'nan') end)
    end
  end
  -- column mode (reduced dim far apart in memory) and a long run
  local wide = tide.zeros(3, 40)
  wide[2][17] = nan
  wide[3][17] = nan
  wide[3][30] = 1
  local v, i = wide:max(1)
  T.truthy(is_nan(v:tolist()[17]))
  T.eq(i:tolist()[17], 1)
  T.eq(v:tolist()[30], 1)
  T.truthy(is_nan(wide:amax(1):tolist()[17]))
  T.truthy(is_nan(wide:amin(1):tolist()[17]))
  local long = tide.zeros(200000)
  long[150001] = nan
  long[190001] = nan
  T.truthy(is_nan(long:max():item()))
  T.truthy(is_nan(long:min():item()))
  T.eq(long:argmax():item(), 150000)
  T.eq(long:argmin():item(), 150000)
  -- infinities are ordinary values
  local inf = tide.tensor({ -math.huge, -math.huge })
  T.eq(inf:max():item(), -math.huge)
  T.eq(inf:argmax():item(), 0)
end)

-- empty and 0-d -----------------------------------------------------------------------

T.test('reductions over empty dimensions', function()
  local e = tide.zeros(0, 3)
  T.eq(e:sum():item(), 0)
  T.same(e:sum(1):tolist(), { 0, 0, 0 })
  T.same(e:prod(1):tolist(), { 1, 1, 1 })
  T.eq(e:prod():item(), 1)
  T.truthy(is_nan(e:mean():item()))
  T.truthy(is_nan(e:mean(1):tolist()[2]))
  T.same(e:sum(2):shape(), { 0 })
  T.same(e:max(2):shape(), { 0 })        -- nothing to reduce per output: fine
  T.same(e:argmax(2, true):shape(), { 0, 1 })
  T.same(e:sum(1, true):shape(), { 1, 3 })
  T.same(e:sum(nil, true):shape(), { 1, 1 })
  T.eq(tide.zeros(0, { dtype = 'i32' }):sum():dtype(), 'i64')
  T.truthy(is_nan(tide.zeros(0, { dtype = 'i32' }):mean():item()))
  T.raises(function() return e:max() end, 'max: cannot reduce over an empty dimension of size 0')
  T.raises(function() return e:max(1) end, 'max: cannot reduce over an empty dimension of size 0 (dimension 1 of a tensor of shape [0, 3])')
  T.raises(function() return e:min(-2) end, 'min: cannot reduce over an empty dimension')
  T.raises(function() return e:argmax(1) end, 'argmax: cannot reduce over an empty dimension')
  T.raises(function() return e:argmin() end, 'argmin: cannot reduce')
  T.raises(function() return e:amax(1) end, 'cannot reduce over an empty dimension')
  T.same(e:cumsum(1):shape(), { 0, 3 })
end)

T.test('0-d tensors reduce to themselves', function()
  local s = tide.tensor(2.5)
  T.eq(s:sum():item(), 2.5)
  T.eq(s:sum(1):item(), 2.5)
  T.eq(s:sum(-1, true):dim(), 0)
  T.eq(s:max():item(), 2.5)
  local v, i = s:max(1)
  T.eq(v:item(), 2.5)
  T.eq(i:item(), 0)
  T.eq(s:argmax():item(), 0)
  T.eq(s:cumsum(1):item(), 2.5)
  T.eq(tide.tensor(7):prod():item(), 7)
end)

-- large inputs (threads, pieces, column mode) ----------------------------------------------

-- A large f32 tensor of LCG values written through the FFI, and its values' f64 sum.
local function big_f32(n, seed)
  local x = tide.empty(n)
  local p = ffi.cast('float*', x:data_ptr())
  local r = T.lcg(seed)
  local s = 0
  for i = 0, n - 1 do
    p[i] = r() * 2 - 0.5
    s = s + p[i]
  end
  return x, p, s
end

T.test('large f32 sums match an f64 reference (threaded, pieces)', function()
  local n = 4 * 1024 * 1024 + 123
  local x, p, s = big_f32(n, 3)
  T.close(x:sum():item(), s, { rtol = 1e-6, atol = 0 })
  T.close(x:mean():item(), s / n, { rtol = 1e-6, atol = 0 })
  -- the answer does not depend on the number of threads
  local nt = tide.get_num_threads()
  tide.set_num_threads(1)
  local one = x:sum():item()
  tide.set_num_threads(math.max(2, nt))
  local many = x:sum():item()
  tide.set_num_threads(nt)
  T.eq(one, many, 'sum with 1 thread and with several')
  -- sums over each dim of 2-d views: rows vs columns, few and many outputs
  for _, shape in ipairs { { 2048, 2048 }, { 16, 262144 }, { 65536, 64 }, { 1048576, 4 } } do
    local m = x:narrow(1, 1, shape[1] * shape[2]):view(shape)
    local rows, cols = shape[1], shape[2]
    local rsum, csum = {}, {}
    for i = 1, rows do rsum[i] = 0 end
    for j = 1, cols do csum[j] = 0 end
    for i = 0, rows - 1 do
      local acc = 0
      for j = 0, cols - 1 do
        local v = p[i * cols + j]
        acc = acc + v
        csum[j + 1] = csum[j + 1] + v
      end
      rsum[i + 1] = acc
    end
    local label = table.concat(shape, 'x')
    T.close(m:sum(2), rsum, { rtol = 1e-6, atol = 1e-4 }, label .. ' sum(2)')
    T.close(m:sum(1), csum, { rtol = 1e-6, atol = 1e-4 }, label .. ' sum(1)')
    T.close(m:t():sum(1), rsum, { rtol = 1e-6, atol = 1e-4 }, label .. ' transposed sum(1)')
    T.close(m:t():sum(2), csum, { rtol = 1e-6, atol = 1e-4 }, label .. ' transposed sum(2)')
  end
end)

T.test('large strided all-element reductions cross row boundaries', function()
  local n = 2048 * 2048
  local x, p = big_f32(n, 9)
  local m = x:view(2048, 2048):narrow(2, 3, 2000)  -- rows of 2000 with gaps: no merging
  local s, best, at = 0, -math.huge, 0
  for i = 0, 2047 do
    for j = 0, 1999 do
      local v = p[i * 2048 + j + 2]
      s = s + v
      if v > best then best, at = v, i * 2000 + j end
    end
  end
  T.close(m:sum():item(), s, { rtol = 1e-6, atol = 0 })
  T.eq(m:max():item(), best)
  T.eq(m:argmax():item(), at)
  -- transposed: argmax reports the logical (row-major in the view) position
  local mt = m:t()
  local tat
  for j = 0, 1999 do
    for i = 0, 2047 do
      if not tat and p[i * 2048 + j + 2] == best then tat = j * 2048 + i end
    end
  end
  T.eq(mt:argmax():item(), tat)
  T.close(mt:sum():item(), s, { rtol = 1e-6, atol = 0 })
end)

T.test('large max/argmax and column-mode argmax', function()
  local n = 3 * 1024 * 1024
  local x, p = big_f32(n, 5)
  local best, at = -math.huge, 0
  for i = 0, n - 1 do if p[i] > best then best, at = p[i], i end end
  T.eq(x:max():item(), best)
  T.eq(x:argmax():item(), at)
  T.eq(x:amax():item(), best)
  local m = x:view(3072, 1024)
  local v, i = m:max(1)
  local vl, il = v:tolist(), i:tolist()
  for j = 0, 1023, 97 do
    local b, bi = -math.huge, 0
    for r = 0, 3071 do if p[r * 1024 + j] > b then b, bi = p[r * 1024 + j], r end end
    T.eq(vl[j + 1], b)
    T.eq(il[j + 1], bi)
  end
  T.same(m:argmax(1):tolist(), il)
  T.close(m:amin(1), (m:min(1)))
end)

-- cumsum -------------------------------------------------------------------------------

T.test('cumsum along each dim, every dtype, strided inputs', function()
  for _, dt in ipairs { 'f32', 'f64', 'bf16', 'f16', 'i32', 'i64', 'u8', 'bool', 'u16' } do
    local base = random_tensor({ 3, 4, 5 }, dt, 21)
    local float = base:is_floating_point()
    for _, x in ipairs { base, base:transpose(1, 3), base:narrow(2, 2, 2), random_tensor({ 3, 1, 5 }, dt, 22):expand(3, 4, 5) } do
      for _, d in ipairs { 1, 2, 3, -1, -2, -3 } do
        local got = x:cumsum(d)
        T.eq(got:dtype(), float and dt or 'i64', dt .. ' cumsum dtype')
        T.same(got:shape(), x:shape())
        T.close(values(got), ref_cumsum(values(x), x:shape(), d), tol_for(dt), dt .. ' cumsum dim ' .. d)
      end
    end
  end
  T.same(tide.tensor({ true, true, false, true }):cumsum(1):tolist(), { 1, 2, 2, 3 })
  T.same(tide.tensor({ 1, 2, 3 }):cumsum(-1):tolist(), { 1, 3, 6 })
  -- long rows and wide columns (threaded)
  local big = tide.ones(300, 1000)
  T.eq(big:cumsum(1):tolist()[300][1000], 300)
  T.eq(big:cumsum(2):tolist()[300][1000], 1000)
  T.eq(tide.ones(100000):cumsum(1):tolist()[100000], 100000)
end)

-- Lua face: options, functions, errors ----------------------------------------------------

T.test('keepdim as a boolean or an options table, tide.* functions', function()
  local x = tide.arange(6):view(2, 3)
  T.same(x:sum(2, { keepdim = true }):shape(), { 2, 1 })
  T.same(x:sum { dim = 2, keepdim = true }:shape(), { 2, 1 })
  T.same(x:sum { keepdim = true }:shape(), { 1, 1 })
  T.same(x:sum(1, false):shape(), { 3 })
  T.eq(tide.sum(x):item(), 15)
  T.same(tide.sum(x, 2):tolist(), { 3, 12 })
  T.same(tide.mean(x:to('f32'), 1):tolist(), { 1.5, 2.5, 3.5 })
  local v, i = tide.max(x, 1)
  T.same(v:tolist(), { 3, 4, 5 })
  T.same(i:tolist(), { 1, 1, 1 })
  T.eq(tide.argmax(x):item(), 5)
  T.same(tide.cumsum(x, 2):tolist(), { { 0, 1, 3 }, { 3, 7, 12 } })
  T.eq(tide.prod(x + 1):item(), 720)
  T.eq(tide.arange(6):view(2, 3):sum():item(), 15)
  T.eq(select('#', x:max()), 1)
  T.eq(select('#', x:max(1)), 2)
  T.eq(select('#', x:amax(1)), 1)
end)

T.test('bad arguments raise clear errors', function()
  local x = tide.zeros(2, 3)
  T.raises(function() return x:sum(3) end, 'sum: dimension 3 out of range for a 2-d tensor of shape [2, 3]')
  T.raises(function() return x:max(-3) end, 'max: dimension -3 out of range for a 2-d tensor of shape [2, 3]')
  T.raises(function() return x:argmax(0) end, 'dimensions are 1-based')
  T.raises(function() return x:mean(1.5) end, 'mean: dimension 1.5 out of range')
  T.raises(function() return x:cumsum(5) end, 'cumsum: dimension 5 out of range for a 2-d tensor of shape [2, 3]')
  T.raises(function() return x:cumsum() end, 'cumsum: a dimension is required')
  T.raises(function() return x:sum(1, 'yes') end, 'sum: keepdim must be a boolean')
  T.raises(function() return tide.sum(5) end, 'sum: expected a tensor, got number')
  T.raises(function() return tide.max('x', 1) end, 'max: expected a tensor, got string')
  T.raises(function() return tide.cumsum(nil, 1) end, 'cumsum: expected a tensor, got nil')
  T.raises(function() return tide.zeros(3, 0):argmin(2) end, 'argmin: cannot reduce over an empty dimension of size 0 (dimension 2 of a tensor of shape [3, 0])')
  T.raises(function() return tide.Tensor.sum({}, 1) end, 'sum: expected a tensor')
end)

T.test('the C entry points reject bad input without crashing', function()
  local C = tide.C
  local out = ffi.new('tide_tensor*[1]')
  local x = tide.zeros(2, 3)
  T.eq(C.tide_reduce(99, x._c, -1, 0, out, nil), -1)
  T.truthy(ffi.string(C.tide_last_error()):find('invalid op code 99', 1, true))
  T.eq(C.tide_reduce(C.TIDE_SUM, nil, -1, 0, out, nil), -1)
  T.eq(C.tide_reduce(C.TIDE_SUM, x._c, 2, 0, out, nil), -1)
  T.truthy(ffi.string(C.tide_last_error()):find('dimension 3 out of range', 1, true))
  T.eq(C.tide_reduce(C.TIDE_SUM, x._c, 0, 0, nil, nil), -1)
  T.eq(C.tide_cumsum(x._c, -1, out), -1)
  T.eq(C.tide_cumsum(nil, 0, out), -1)
  T.eq(C.tide_cumsum(x._c, 0, nil), -1)
  -- indices are only produced for max/min over one dim
  local idx = ffi.new('tide_tensor*[1]')
  T.eq(C.tide_reduce(C.TIDE_SUM, x._c, 0, 0, out, idx), 0)
  T.truthy(idx[0] == nil)
  C.tide_tensor_release(out[0])
end)

-- derived: var, std, logsumexp ----------------------------------------------------------

local function have_pointwise()
  return pcall(function() return tide.C.tide_binary ~= nil and tide.C.tide_unary ~= nil and tide.C.tide_clamp ~= nil end)
end

T.test('var and std match the two-pass f64 reference', function()
  if not have_pointwise() then T.skip('pointwise kernels are not linked') end
  local x = random_tensor({ 4, 6 }, 'f64', 31)
  local vals, shape = values(x), x:shape()
  local function ref_var(xs, corr)
    local m = ref_ops.mean(xs)
    local s = 0
    for _, v in ipairs(xs) do s = s + (v - m) ^ 2 end
    return s / (#xs - corr)
  end
  T.close(x:var(), ref_var(vals, 1), { rtol = 1e-12 })
  T.close(x:var(nil, { unbiased = false }), ref_var(vals, 0), { rtol = 1e-12 })
  T.close(x:var { unbiased = false }, ref_var(vals, 0), { rtol = 1e-12 })
  T.close(x:var(nil, { correction = 0 }), ref_var(vals, 0), { rtol = 1e-12 })
  T.close(x:var({ 1, 2 }), ref_var(vals, 1), { rtol = 1e-12 })
  T.raises(function() return x:var(1, 'no') end, 'var: options must be a table')
  T.close(x:std(), math.sqrt(ref_var(vals, 1)), { rtol = 1e-12 })
  for _, d in ipairs { 1, 2, -1 } do
    local dd = d < 0 and d + 3 or d
    local outer, R, inner = prod_of(shape, 1, dd - 1), shape[dd], prod_of(shape, dd + 1)
    local refv, refs = {}, {}
    for o = 0, outer - 1 do
      for j = 0, inner - 1 do
        local xs = {}
        for r = 0, R - 1 do xs[#xs + 1] = vals[(o * R + r) * inner + j + 1] end
        refv[#refv + 1] = ref_var(xs, 0)
        refs[#refs + 1] = math.sqrt(ref_var(xs, 1))
      end
    end
    T.close(x:var(d, { unbiased = false }), refv, { rtol = 1e-12 })
    T.close(x:std(d), refs, { rtol = 1e-12 })
    T.same(x:var(d, { keepdim = true }):dim(), 2)
    T.close(x:var(d, false, true):view(#refv), refv, { rtol = 1e-12 })
  end
  local f = random_tensor({ 50 }, 'f32', 32)
  T.eq(f:var():dtype(), 'f32')
  T.eq(f:to('bf16'):std():dtype(), 'bf16')
  T.eq(tide.arange(5):var():dtype(), 'f32')
  T.close(tide.arange(5):var(), 2.5)
  T.truthy(is_nan(tide.tensor({ 3.0 }):var():item()))  -- N - 1 = 0, as torch
end)

T.test('logsumexp is stable and handles infinities', function()
  if not have_pointwise() then T.skip('pointwise kernels are not linked') end
  local x = tide.tensor({ { 1000, 1000 }, { -1000, -1001 }, { 0, math.log(3) } }, { dtype = 'f64' })
  T.close(x:logsumexp(2), { 1000 + math.log(2), -1000 + math.log(1 + math.exp(-1)), math.log(4) }, { rtol = 1e-12 })
  T.same(x:logsumexp(2, true):shape(), { 3, 1 })
  local y = random_tensor({ 3, 4 }, 'f32', 41)
  local vals = values(y)
  local s = 0
  for _, v in ipairs(vals) do s = s + math.exp(v) end
  T.close(y:logsumexp(), math.log(s), { rtol = 1e-6 })
  T.close(y:logsumexp(1), (function()
    local r = {}
    for j = 1, 4 do
      local a = 0
      for i = 0, 2 do a = a + math.exp(vals[i * 4 + j]) end
      r[j] = math.log(a)
    end
    return r
  end)(), { rtol = 1e-6 })
  local inf = math.huge
  T.close(tide.tensor({ { -inf, -inf }, { inf, 1 }, { -inf, 2 } }):logsumexp(2), { -inf, inf, 2 })
  T.close(tide.zeros(2, 0):logsumexp(2), { -inf, -inf })
end)

T.test('max(other) and min(other) are elementwise, as torch.max(a, b)', function()
  if not tide.Tensor.maximum then T.skip('Tensor:maximum is not available') end
  local a, b = tide.tensor({ 1, 5, -2 }), tide.tensor({ 3, 2, -1 })
  T.same(a:max(b):tolist(), { 3, 5, -1 })
  T.same(a:min(b):tolist(), { 1, 2, -2 })
  T.same(tide.max(a, b):tolist(), { 3, 5, -1 })
  T.same(tide.min(a, b):tolist(), { 1, 2, -2 })
end)

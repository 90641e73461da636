-- Reductions: sum, mean, prod, max, min, argmax, argmin, amax, amin, cumsum,
-- and var, std, logsumexp built from them and elementwise ops.
--
--   t:sum()                 all elements, a 0-d tensor
--   t:sum(2)                over dimension 2 (1-based; -1 is the last)
--   t:sum(2, true)          keep the reduced dim as size 1 (also {keepdim=true})
--   t:sum({1, 3})           over several dims (sum, mean, prod, amax, amin, var,
--                           std, logsumexp)
--   v, i = t:max(2)         values and 0-based positions, like torch.max(t, 2)
--   t:max()                 the largest element, a 0-d tensor
--
-- Output dtypes follow PyTorch: sum/prod of integers or bool give i64, of
-- floats keep the dtype (bf16/f16 accumulate in wider precision); mean of
-- integers gives f32 (torch refuses it; this is a convenience); max/min keep
-- the dtype; argmax/argmin give i64 with the first position on ties. NaN
-- propagates through max/min and argmax points at the first NaN.
local C = require 'tide.C'

local M = {}

function M.install(tide, core)
  local Tensor, out1, out2 = core.Tensor, core.out1, core.out2
  local check, wrap, call, is_tensor = core.check, core.wrap, core.call, core.is_tensor

  local function shape_str(c)
    local parts = {}
    for i = 0, c.ndim - 1 do parts[#parts + 1] = tostring(tonumber(c.shape[i])) end
    return '[' .. table.concat(parts, ', ') .. ']'
  end

  -- 1-based or negative dim -> 0-based, with an error that names the dim and the shape.
  local function dim_of(c, d, what, level)
    local nd = tonumber(c.ndim)
    local n = nd == 0 and 1 or nd
    if type(d) ~= 'number' or d % 1 ~= 0 or d == 0 or d > n or d < -n then
      local hint = d == 0 and '; dimensions are 1-based' or ''
      error(("%s: dimension %s out of range for a %d-d tensor of shape %s (expected 1..%d or -%d..-1%s)")
        :format(what, tostring(d), nd, shape_str(c), n, n, hint), level + 1)
    end
    return d < 0 and d + n or d - 1
  end

  -- Reads (dim, keepdim) as written by users: dim may be nil (all elements),
  -- a dim, a list of dims {1, 3}, or an options table {dim=, keepdim=};
  -- keepdim a boolean or {keepdim=}. Returns the handle, the 0-based dim
  -- (-1: all; a sorted list of 0-based dims when several) and keepdim as 0/1.
  local function reduce_args(self, what, dim, keepdim, level, single)
    local c = core.handle(self, what, level + 1)
    if type(dim) == 'table' and not is_tensor(dim) and dim[1] == nil and next(dim) ~= nil then
      if keepdim == nil then keepdim = dim.keepdim end
      dim = dim.dim
    end
    if type(keepdim) == 'table' then keepdim = keepdim.keepdim end
    if keepdim ~= nil and type(keepdim) ~= 'boolean' then
      error(("%s: keepdim must be a boolean or {keepdim=...}, got %s"):format(what, type(keepdim)), level + 1)
    end
    local d = -1
    if type(dim) == 'table' and not is_tensor(dim) then
      if single and #dim ~= 1 then
        error(("%s: expects one dimension, got a list of %d"):format(what, #dim), level + 1)
      end
      local list, seen = {}, {}
      for _, v in ipairs(dim) do
        local d0 = dim_of(c, v, what, level + 1)
        if seen[d0] then error(("%s: dimension %s is listed twice"):format(what, tostring(v)), level + 1) end
        seen[d0] = true
        list[#list + 1] = d0
      end
      table.sort(list)
      if #list == 1 then d = list[1] elseif #list > 1 then d = list end
    elseif dim ~= nil then
      d = dim_of(c, dim, what, level + 1)
    end
    return c, d, keepdim and 1 or 0
  end

  -- Reduces over several dims at once: the kept dims go first, the reduced
  -- ones are flattened into one last dim (a copy when the view needs it), so
  -- the result is rounded once, as a single reduction.
  local function over_dims(self, c, dims, k, op)
    local nd = tonumber(c.ndim)
    local reduced = {}
    for _, d0 in ipairs(dims) do reduced[d0] = true end
    local perm, flat, kshape = {}, {}, {}
    local n = 1
    for i = 0, nd - 1 do
      local size = tonumber(c.shape[i])
      if reduced[i] then kshape[i + 1] = 1; n = n * size
      else perm[#perm + 1] = i + 1; flat[#flat + 1] = size; kshape[i + 1] = size end
    end
    local keep = #perm
    for _, d0 in ipairs(dims) do perm[#perm + 1] = d0 + 1 end
    flat[#flat + 1] = n
    local x = self:permute(perm):reshape(flat)
    local r = call(C.tide_reduce, op, x._c, keep, 0, out1, nil)
    if k == 1 then r = r:view(kshape) end
    return r
  end

  local function simple(op, what, single)
    return function(self, dim, keepdim)
      local c, d, k = reduce_args(self, what, dim, keepdim, 2, single)
      if type(d) == 'table' then return over_dims(self, c, d, k, op) end
      return call(C.tide_reduce, op, c, d, k, out1, nil)
    end
  end

  Tensor.sum = simple(C.TIDE_SUM, 'sum')
  Tensor.mean = simple(C.TIDE_MEAN, 'mean')
  Tensor.prod = simple(C.TIDE_PROD, 'prod')
  Tensor.argmax = simple(C.TIDE_ARGMAX, 'argmax', true)
  Tensor.argmin = simple(C.TIDE_ARGMIN, 'argmin', true)
  Tensor.amax = simple(C.TIDE_MAX, 'amax')
  Tensor.amin = simple(C.TIDE_MIN, 'amin')

  -- t:max() -> 0-d tensor; t:max(dim[, keepdim]) -> values, indices;
  -- t:max(other_tensor) -> the elementwise maximum, as torch.max(a, b).
  local function extreme(op, what, elementwise)
    return function(self, dim, keepdim)
      if is_tensor(dim) then
        local f = Tensor[elementwise]
        if not f then error(what .. ': the elementwise form needs Tensor:' .. elementwise .. ', which is not available', 2) end
        return f(self, dim)
      end
      local c, d, k = reduce_args(self, what, dim, keepdim, 2, true)
      if d < 0 then return call(C.tide_reduce, op, c, -1, k, out1, nil) end
      check(C.tide_reduce(op, c, d, k, out1, out2), 3)
      -- read both slots before wrapping: a GC step inside wrap must not race them
      local v, i = out1[0], out2[0]
      v = wrap(v)
      if i == nil then error(what .. ': the engine returned no indices', 2) end
      return v, wrap(i)
    end
  end
  Tensor.max = extreme(C.TIDE_MAX, 'max', 'maximum')
  Tensor.min = extreme(C.TIDE_MIN, 'min', 'minimum')

  -- t:cumsum(dim): inclusive prefix sums along dim (f32 accumulates in double).
  function Tensor:cumsum(dim)
    local c = core.handle(self, 'cumsum', 2)
    if dim == nil then error('cumsum: a dimension is required, e.g. t:cumsum(1)', 2) end
    return call(C.tide_cumsum, c, dim_of(c, dim, 'cumsum', 2), out1)
  end

  -- Derived reductions ----------------------------------------------------------
  -- These go through the elementwise C entry points directly (not the Lua
  -- methods), so they only need the pointwise kernels to be linked.

  local function bin(op, a, b) return call(C.tide_binary, op, a._c, b._c, out1) end
  local function bin_s(op, a, s) return call(C.tide_binary_scalar, op, a._c, s, 0, out1) end
  local function un(op, a) return call(C.tide_unary, op, a._c, out1) end

  -- Float inputs as they are (f32/f64) or widened to f32 (bf16, f16, integers);
  -- returns the tensor to compute on and the dtype to give back.
  local function computable(self)
    local dt = self:dtype()
    if dt == 'f32' or dt == 'f64' then return self, nil end
    if dt == 'bf16' or dt == 'f16' then return self:to('f32'), dt end
    return self:to('f32'), nil
  end

  -- How many elements each output of a reduction over d (as reduce_args returns it) sees.
  local function count(c, d)
    if type(d) == 'table' then
      local n = 1
      for _, d0 in ipairs(d) do n = n * tonumber(c.shape[d0]) end
      return n
    end
    if d < 0 then return tonumber(c.numel) end
    return c.ndim == 0 and 1 or tonumber(c.shape[d])
  end

  -- d (as reduce_args returns it) back in the 1-based form the methods take.
  local function dims_arg(d)
    if type(d) == 'table' then
      local l = {}
      for i, d0 in ipairs(d) do l[i] = d0 + 1 end
      return l
    end
    return d >= 0 and d + 1 or nil
  end

  -- t:var(dim, {unbiased=true, correction=, keepdim=}); also var(dim, unbiased, keepdim)
  -- like torch, or t:var{dim=, unbiased=, keepdim=}. Divides by N - correction
  -- (correction 1 unless unbiased=false); computes in f32 for bf16/f16/integers.
  local function var(self, dim, opts, keepdim, what)
    if type(dim) == 'table' and not is_tensor(dim) and dim[1] == nil and next(dim) ~= nil and opts == nil then
      opts, dim = dim, dim.dim  -- t:var{unbiased=false, dim=2}
    end
    local correction = 1
    if type(opts) == 'boolean' then
      correction = opts and 1 or 0
    elseif type(opts) == 'table' then
      if opts.correction ~= nil then correction = opts.correction
      elseif opts.unbiased == false then correction = 0 end
      if keepdim == nil then keepdim = opts.keepdim end
    elseif opts ~= nil then
      error(what .. ': options must be a table such as {unbiased=false, keepdim=true}, got ' .. type(opts), 3)
    end
    if type(correction) ~= 'number' then error(what .. ': correction must be a number', 3) end
    local c, d, k = reduce_args(self, what, dim, keepdim, 3)
    local x, back = computable(self)
    local arg = dims_arg(d)
    local mu = x:mean(arg, true)
    local dev = bin(C.TIDE_SUB, x, mu)
    local ss = bin(C.TIDE_MUL, dev, dev):sum(arg, k == 1)
    local r = bin_s(C.TIDE_DIV, ss, math.max(0, count(c, d) - correction))
    return r, back
  end

  function Tensor:var(dim, opts, keepdim)
    local r, back = var(self, dim, opts, keepdim, 'var')
    return back and r:to(back) or r
  end

  function Tensor:std(dim, opts, keepdim)
    local r, back = var(self, dim, opts, keepdim, 'std')
    r = un(C.TIDE_SQRT, r)
    return back and r:to(back) or r
  end

  -- t:logsumexp(dim[, keepdim]) = log(sum(exp(t))) computed as
  -- m + log(sum(exp(t - m))) with m the max, so large values do not overflow.
  -- m is clamped to finite values: an all -inf slice gives -inf, a +inf gives +inf.
  local finite_max = { f32 = 3.4028234663852886e38, f64 = 1.7976931348623157e308 }
  function Tensor:logsumexp(dim, keepdim)
    local c, d, k = reduce_args(self, 'logsumexp', dim, keepdim, 2)
    keepdim = k == 1
    local x, back = computable(self)
    local arg = dims_arg(d)
    if tonumber(c.numel) == 0 then
      -- the sum of nothing is 0, its log -inf, as torch answers
      local z = x:sum(arg, keepdim)
      local r = bin_s(C.TIDE_ADD, z, -math.huge)
      return back and r:to(back) or r
    end
    local big = finite_max[x:dtype()]
    local m = call(C.tide_clamp, x:amax(arg, true)._c, -big, big, out1)
    local s = un(C.TIDE_EXP, bin(C.TIDE_SUB, x, m)):sum(arg, keepdim)
    if not keepdim then m = m:view(s:shape()) end
    local r = bin(C.TIDE_ADD, un(C.TIDE_LOG, s), m)
    return back and r:to(back) or r
  end

  -- tide.sum(t, ...) and friends take the tensor first.
  for _, name in ipairs { 'sum', 'mean', 'prod', 'max', 'min', 'argmax', 'argmin', 'amax', 'amin',
                          'cumsum', 'var', 'std', 'logsumexp' } do
    local method = Tensor[name]
    tide[name] = function(t, ...)
      core.handle(t, name, 2)
      return method(t, ...)
    end
  end

  -- definitions: forward, backward and aliases of each op ----------------------

  local reg = require 'tide.ops.registry'

  -- dims and keepdim as the reduction methods take them: (dim, keepdim) or ({dim=, keepdim=})
  local function grad_args(a, dim, keep)
    if type(dim) == 'table' and dim.dim ~= nil then dim, keep = dim.dim, dim.keepdim end
    if type(keep) == 'table' then keep = keep.keepdim end
    return dim, keep and true or false
  end

  -- Brings a reduced gradient back to a's shape (the reduced dims broadcast).
  local function unreduce(g, a, dim, keep)
    local shape = a:shape()
    if dim == nil then return g:reshape({}):expand(shape) end
    local dims = type(dim) == 'table' and dim or { dim }
    if not keep then
      local norm = {}
      for i, d in ipairs(dims) do norm[i] = d < 0 and d + #shape + 1 or d end
      table.sort(norm)
      for _, d in ipairs(norm) do g = g:unsqueeze(d) end
    end
    return g:expand(shape)
  end

  reg.def { 'sum', forward = Tensor.sum, fn = 'tensor', saves = false,
    backward = function(_, g, a, dim, keep)
      dim, keep = grad_args(a, dim, keep)
      return unreduce(g, a, dim, keep)
    end }
  reg.def { 'mean', forward = Tensor.mean, fn = 'tensor', saves = false,
    backward = function(_, g, a, dim, keep)
      dim, keep = grad_args(a, dim, keep)
      local n = a:numel()
      if dim ~= nil then
        n = 1
        local shape = a:shape()
        for _, d in ipairs(type(dim) == 'table' and dim or { dim }) do n = n * shape[d < 0 and d + #shape + 1 or d] end
      end
      return unreduce(g / n, a, dim, keep)
    end }

  -- max/min over all elements (one output) or a dim (values, indices)
  local function minmax(name)
    local elementwise = name == 'max' and 'maximum' or 'minimum'
    reg.def { name, forward = Tensor[name], fn = 'tensor',
      wrap = function(raw, ag)
        return function(a, dim, keep)
          if is_tensor(dim) then return Tensor[elementwise](a, dim) end
          if not ag.wants(a) then return raw(a, dim, keep) end
          local ok, v, idx = pcall(raw, a, dim, keep)
          if not ok then error(v, 2) end
          ag.record(name, v, { n = 1, a }, function(g)
            local d, k = grad_args(a, dim, keep)
            if d == nil then
              -- ties share the gradient evenly, as torch's max() does
              local m = a:eq(v):to(g:dtype())
              return m * (g / m:sum())
            end
            local gi, ii = g, idx
            if not k then gi, ii = g:unsqueeze(d), idx:unsqueeze(d) end
            return tide.zeros_like(a):scatter_add_(d, ii, gi)
          end)
          return v, idx
        end
      end }
  end
  minmax('max')
  minmax('min')
  for _, name in ipairs { 'amax', 'amin' } do
    reg.def { name, forward = Tensor[name], fn = 'tensor',
      backward = function(out, g, a, dim, keep)
        local d, k = grad_args(a, dim, keep)
        local o = d == nil and out:reshape({}):expand(a:shape()) or unreduce(out, a, d, k)
        local m = a:eq(o):to(g:dtype())
        local count = d == nil and m:sum() or m:sum(d, true)
        return m * unreduce(g, a, d, k) / (d == nil and count or count:expand(a:shape()))
      end }
  end

  reg.def { 'cumsum', forward = Tensor.cumsum, fn = 'tensor',
    backward = function(_, g, a, dim)
      -- d/dx_j of sum_{i<=k} x_i is the suffix sum of g from j on
      return g:sum(dim, true):expand(g:shape()) - g:cumsum(dim) + g
    end }

  -- var, std and logsumexp: with a gradient wanted, computed from recorded ops
  local function var_args(dim, opts, keepdim)
    if type(dim) == 'table' and dim[1] == nil and next(dim) ~= nil and opts == nil then opts, dim = dim, dim.dim end
    local correction = 1
    if type(opts) == 'boolean' then correction = opts and 1 or 0
    elseif type(opts) == 'table' then
      if opts.correction ~= nil then correction = opts.correction elseif opts.unbiased == false then correction = 0 end
      if keepdim == nil then keepdim = opts.keepdim end
    end
    return dim, correction, keepdim and true or false
  end
  local function composite_var(x, dim, correction, keepdim)
    local mu = x:mean(dim, true)
    local d = x - mu
    local n = x:numel() / mu:numel()
    return (d * d):sum(dim, keepdim) / math.max(0, n - correction)
  end
  for _, name in ipairs { 'var', 'std' } do
    reg.def { name, forward = Tensor[name],
      wrap = function(raw, ag)
        return function(x, dim, opts, keepdim)
          if not ag.wants(x) then return raw(x, dim, opts, keepdim) end
          local ok, err = pcall(raw, x, dim, opts, keepdim)  -- checks the arguments
          if not ok then error(err, 2) end
          local d, corr, keep = var_args(dim, opts, keepdim)
          local v = composite_var(x, d, corr, keep)
          return name == 'std' and v:sqrt() or v
        end
      end }
  end
  reg.def { 'logsumexp', forward = Tensor.logsumexp,
    wrap = function(raw_lse, ag)
      return function(x, dim, keepdim)
        if not ag.wants(x) then return raw_lse(x, dim, keepdim) end
        local ok, out = pcall(raw_lse, x, dim, keepdim)
        if not ok then error(out, 2) end
        if type(keepdim) == 'table' then keepdim = keepdim.keepdim end
        return ag.record('logsumexp', out, { n = 1, x }, function(g)
          -- d/dx log sum exp x = softmax(x) over the reduced dims
          local o = unreduce(out, x, dim, keepdim)
          return unreduce(g, x, dim, keepdim) * (x - o):exp()
        end)
      end
    end }
  -- prod: refused with a gradient wanted (no backward is implemented)
  local raw_prod = Tensor.prod
  reg.def { 'prod', nondiff = 'no backward is implemented; refused when a gradient is wanted' }
  Tensor.prod = function(x, ...)
    if require('tide.autograd').wants(x) then
      error('prod: no gradient is implemented for prod; compute it under tide.no_grad', 2)
    end
    return raw_prod(x, ...)
  end
  reg.def { 'argmax', nondiff = 'indices' }
  reg.def { 'argmin', nondiff = 'indices' }
end

return M

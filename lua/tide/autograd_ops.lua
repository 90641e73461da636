-- The backward formulas of the Tensor methods. Each differentiable method is
-- wrapped: with grad mode off or no input requiring grad, the wrapper
-- tail-calls the plain method (no cost beyond the check, and errors keep
-- pointing at the caller's line); otherwise it records a node whose closure
-- computes the inputs' gradients with engine ops.
local M = {}

function M.install(tide, core, ag)
  local C = require 'tide.C'
  local Tensor, is_tensor = core.Tensor, core.is_tensor
  local needs, record, sum_to = ag.needs, ag.record, ag.sum_to
  local wrapped = {}   -- plain method -> its differentiable wrapper

  -- Calls the plain method; errors are re-raised at the user's level.
  local function run(name, raw, ...)
    local ok, out = pcall(raw, ...)
    if not ok then error(out, 3) end
    return out
  end

  -- def(name, formula): formula(out, g, args...) returns one gradient per
  -- argument (self first). Tensors requiring grad are looked for in the first
  -- four arguments, which covers every method here.
  -- ops whose gradient reads no tensor value (only shapes, dims, scalars):
  -- changing their inputs in place before backward is harmless, as in PyTorch
  local reads_nothing = {
    add = true, sub = true, neg = true, sum = true, mean = true, contiguous = true, clone = true, to = true,
    transpose = true, t = true, permute = true, expand = true, expand_as = true, narrow = true, select = true,
    view = true, reshape = true, flatten = true, squeeze = true, unsqueeze = true, view_as = true,
    reshape_as = true, floor = true, ceil = true, round = true, sign = true,
  }

  local function def(name, formula)
    local raw = Tensor[name]
    if raw == nil then error('autograd: no method ' .. name) end
    local saved  -- nil: every tensor argument and the output
    if reads_nothing[name] then saved = false end
    local w = function(...)
      if not ag.wants(...) then return raw(...) end
      local n = select('#', ...)
      local args = { n = n, ... }
      local out = run(name, raw, ...)
      if out == args[1] then return out end  -- the method returned self (to, contiguous): nothing to record
      return record(name, out, args, function(g) return formula(out, g, unpack(args, 1, n)) end, saved)
    end
    Tensor[name] = w
    wrapped[raw] = w
    return w
  end

  local function shape_of(x) return x:shape() end
  local function grad_for(x, g) if is_tensor(x) then return sum_to(g, shape_of(x)) end end

  -- arithmetic ------------------------------------------------------------------

  local function alpha_of(opts) return type(opts) == 'table' and opts.alpha or 1 end

  def('add', function(_, g, a, b, opts)
    local al = alpha_of(opts)
    return grad_for(a, g), is_tensor(b) and sum_to(al == 1 and g or g * al, b:shape()) or nil
  end)
  def('sub', function(_, g, a, b, opts)
    local al = alpha_of(opts)
    return grad_for(a, g), is_tensor(b) and sum_to(g * (-al), b:shape()) or nil
  end)
  def('mul', function(_, g, a, b)
    return is_tensor(a) and sum_to(g * b, a:shape()) or nil, is_tensor(b) and sum_to(g * a, b:shape()) or nil
  end)
  def('div', function(out, g, a, b)
    local ga = is_tensor(a) and sum_to(g / b, a:shape()) or nil
    local gb = is_tensor(b) and sum_to(-(g * out) / b, b:shape()) or nil
    return ga, gb
  end)
  def('pow', function(out, g, a, b)
    local ga, gb
    if is_tensor(a) then ga = sum_to(g * b * a:pow(b - 1), a:shape()) end
    if is_tensor(b) then
      local base = is_tensor(a) and a or tide.full_like(b, a)
      -- d/db a^b = a^b log a; 0^b contributes 0 (torch's convention)
      gb = sum_to(tide.where(base:eq(0), 0, g * out * base:log()), b:shape())
    end
    return ga, gb
  end)
  local function ties(name, pick)
    def(name, function(_, g, a, b)
      -- ties split the gradient evenly, as torch does
      local wa = pick(a, b):to(g:dtype()) + a:eq(b):to(g:dtype()) * 0.5
      local ga = is_tensor(a) and sum_to(g * wa, a:shape()) or nil
      local gb = is_tensor(b) and sum_to(g * (1 - wa), b:shape()) or nil
      return ga, gb
    end)
  end
  ties('maximum', function(a, b) return a:gt(b) end)
  ties('minimum', function(a, b) return a:lt(b) end)

  -- unary -------------------------------------------------------------------------

  local unary = {
    neg = function(_, g) return -g end,
    abs = function(_, g, a) return g * a:sign() end,
    exp = function(out, g) return g * out end,
    log = function(_, g, a) return g / a end,
    sqrt = function(out, g) return g * 0.5 / out end,
    rsqrt = function(out, g) return g * -0.5 * out * out * out end,
    tanh = function(out, g) return g * (1 - out * out) end,
    sigmoid = function(out, g) return g * out * (1 - out) end,
    relu = function(_, g, a) return g * a:gt(0):to(g:dtype()) end,
    sin = function(_, g, a) return g * a:cos() end,
    cos = function(_, g, a) return -g * a:sin() end,
    log1p = function(_, g, a) return g / (a + 1) end,
    expm1 = function(out, g) return g * (out + 1) end,
    square = function(_, g, a) return g * a * 2 end,
    reciprocal = function(out, g) return -g * out * out end,
    gelu = function(_, g, a)
      local dx = core.call(C.tide_gelu_backward, g._c, a._c, core.out1)
      return dx
    end,
  }
  for name, f in pairs(unary) do def(name, f) end
  -- floor, ceil, round, sign: zero gradient almost everywhere (torch agrees)
  for _, name in ipairs { 'floor', 'ceil', 'round', 'sign' } do
    def(name, function(_, g) return tide.zeros_like(g) end)
  end

  def('clamp', function(_, g, a, lo, hi)
    local keep = tide.ones_like(a, { dtype = 'bool' })
    if lo ~= nil then keep = keep:logical_and(a:ge(lo)) end
    if hi ~= nil then keep = keep:logical_and(a:le(hi)) end
    return g * keep:to(g:dtype())
  end)

  -- where(cond, other) as a method: self where cond else other
  def('where', function(_, g, t, cond, other)
    local zero = tide.zeros_like(g)
    return grad_for(t, tide.where(cond, g, zero)), nil, grad_for(other, tide.where(cond, zero, g))
  end)
  local plain_where = tide.where
  tide.where = function(cond, a, b)
    if not ag.wants(a, b) then return plain_where(cond, a, b) end
    local out = run('where', plain_where, cond, a, b)
    return record('where', out, { n = 3, false, a, b }, function(g)
      local zero = tide.zeros_like(g)
      return nil, grad_for(a, tide.where(cond, g, zero)), grad_for(b, tide.where(cond, zero, g))
    end)
  end

  def('masked_fill', function(_, g, _, mask)
    return g:masked_fill(mask, 0)
  end)

  -- reductions -------------------------------------------------------------------------

  -- dims and keepdim as the reduction methods take them: (dim, keepdim) or ({dim=, keepdim=})
  local function reduce_args(a, dim, keep)
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

  def('sum', function(_, g, a, dim, keep)
    dim, keep = reduce_args(a, dim, keep)
    return unreduce(g, a, dim, keep)
  end)
  def('mean', function(_, g, a, dim, keep)
    dim, keep = reduce_args(a, dim, keep)
    local n = a:numel()
    if dim ~= nil then
      n = 1
      local shape = a:shape()
      for _, d in ipairs(type(dim) == 'table' and dim or { dim }) do n = n * shape[d < 0 and d + #shape + 1 or d] end
    end
    return unreduce(g / n, a, dim, keep)
  end)

  -- max/min over all elements (one output) or a dim (values, indices)
  local function minmax(name)
    local raw = Tensor[name]
    local elementwise = name == 'max' and 'maximum' or 'minimum'
    local w = function(a, dim, keep)
      if is_tensor(dim) then return Tensor[elementwise](a, dim) end
      if not ag.wants(a) then return raw(a, dim, keep) end
      local ok, v, idx = pcall(raw, a, dim, keep)
      if not ok then error(v, 2) end
      record(name, v, { n = 1, a }, function(g)
        local d, k = reduce_args(a, dim, keep)
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
    Tensor[name] = w
    wrapped[raw] = w
  end
  minmax('max')
  minmax('min')
  for _, name in ipairs { 'amax', 'amin' } do
    def(name, function(out, g, a, dim, keep)
      local d, k = reduce_args(a, dim, keep)
      local o = d == nil and out:reshape({}):expand(a:shape()) or unreduce(out, a, d, k)
      local m = a:eq(o):to(g:dtype())
      local count = d == nil and m:sum() or m:sum(d, true)
      return m * unreduce(g, a, d, k) / (d == nil and count or count:expand(a:shape()))
    end)
  end

  def('cumsum', function(_, g, a, dim)
    -- d/dx_j of sum_{i<=k} x_i is the suffix sum of g from j on
    return g:sum(dim, true):expand(g:shape()) - g:cumsum(dim) + g
  end)

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
    local raw = Tensor[name]
    local w = function(x, dim, opts, keepdim)
      if not ag.wants(x) then return raw(x, dim, opts, keepdim) end
      run(name, raw, x, dim, opts, keepdim)  -- checks the arguments
      local d, corr, keep = var_args(dim, opts, keepdim)
      local v = composite_var(x, d, corr, keep)
      return name == 'std' and v:sqrt() or v
    end
    Tensor[name] = w
    wrapped[raw] = w
  end
  local raw_lse = Tensor.logsumexp
  Tensor.logsumexp = function(x, dim, keepdim)
    if not ag.wants(x) then return raw_lse(x, dim, keepdim) end
    local out = run('logsumexp', raw_lse, x, dim, keepdim)
    if type(keepdim) == 'table' then keepdim = keepdim.keepdim end
    return record('logsumexp', out, { n = 1, x }, function(g)
      -- d/dx log sum exp x = softmax(x) over the reduced dims
      local o = unreduce(out, x, dim, keepdim)
      return unreduce(g, x, dim, keepdim) * (x - o):exp()
    end)
  end
  wrapped[raw_lse] = Tensor.logsumexp
  local raw_prod = Tensor.prod
  Tensor.prod = function(x, ...)
    if ag.wants(x) then error('prod: no gradient is implemented for prod; compute it under tide.no_grad', 2) end
    return raw_prod(x, ...)
  end
  wrapped[raw_prod] = Tensor.prod

  -- sort and topk: the values' gradient goes back to where they came from
  for _, name in ipairs { 'sort', 'topk' } do
    local raw = Tensor[name]
    local w = function(x, a1, a2, a3, a4)
      if not ag.wants(x) then return raw(x, a1, a2, a3, a4) end
      local ok, vals, idx = pcall(raw, x, a1, a2, a3, a4)
      if not ok then error(vals, 2) end
      local dim = name == 'sort' and a1 or a2
      if dim == nil then dim = -1 end
      record(name, vals, { n = 1, x }, function(g)
        return tide.zeros_like(x, { dtype = g:dtype() }):scatter_add_(dim, idx, g)
      end)
      return vals, idx
    end
    Tensor[name] = w
    wrapped[raw] = w
  end

  -- matrix products ------------------------------------------------------------------------

  local function mm_grads(g, a, b)
    local ad, bd = a:dim(), b:dim()
    if ad == 1 and bd == 1 then return g * b, g * a end  -- a dot product: g is 0-d
    local a2, b2, g2 = a, b, g
    if ad == 1 then a2 = a:unsqueeze(1); g2 = g2:unsqueeze(-2) end
    if bd == 1 then b2 = b:unsqueeze(2); g2 = g2:unsqueeze(-1) end
    local ga = g2:matmul(b2:transpose(-1, -2))
    local gb = a2:transpose(-1, -2):matmul(g2)
    if ad == 1 then ga = ga:squeeze(-2) end
    if bd == 1 then gb = gb:squeeze(-1) end
    return sum_to(ga, a:shape()), sum_to(gb, b:shape())
  end
  for _, name in ipairs { 'matmul', 'mm', 'bmm', 'mv', 'dot' } do
    def(name, function(_, g, a, b) return mm_grads(g, a, b) end)
  end
  def('outer', function(_, g, a, b) return g:matmul(b), g:t():matmul(a) end)

  -- views and copies ------------------------------------------------------------------------

  local function back_to_shape(_, g, a) return g:reshape(a:shape()) end
  for _, name in ipairs { 'view', 'reshape', 'flatten', 'squeeze', 'unsqueeze', 'view_as', 'reshape_as' } do
    def(name, back_to_shape)
  end
  def('contiguous', function(_, g) return g end)
  def('clone', function(_, g) return g end)
  def('to', function(_, g, a) return g:to(a:dtype()) end)
  def('transpose', function(_, g, a, d0, d1)
    if d0 == nil then return g:t() end
    return g:transpose(d0, d1)
  end)
  def('t', function(_, g) return g:t() end)
  def('permute', function(_, g, a, ...)
    local dims = ...
    if type(dims) ~= 'table' then dims = { ... } end
    local n = #dims
    local inv = {}
    for i, d in ipairs(dims) do inv[(d < 0 and d + n + 1 or d)] = i end
    return g:permute(inv)
  end)
  def('expand', function(_, g, a) return sum_to(g, a:shape()) end)
  def('expand_as', function(_, g, a) return sum_to(g, a:shape()) end)
  def('narrow', function(_, g, a, dim, start, len)
    local z = tide.zeros_like(a, { dtype = g:dtype() })
    z:narrow(dim, start, len):copy_(g)
    return z
  end)
  def('select', function(_, g, a, dim, index)
    local z = tide.zeros_like(a, { dtype = g:dtype() })
    z:select(dim, index):copy_(g)
    return z
  end)

  -- split, chunk and unbind return lists of views: each piece gets its own node
  local function pieces(name, by_select)
    local raw = Tensor[name]
    local w = function(a, x, dim)
      if not ag.wants(a) then return raw(a, x, dim) end
      local ok, list = pcall(raw, a, x, dim)
      if not ok then error(list, 2) end
      local d = (by_select and x or dim) or 1
      local pos = 1
      for i, p in ipairs(list) do
        local start = pos
        if by_select then
          record(name, p, { n = 1, a }, function(g)
            local z = tide.zeros_like(a, { dtype = g:dtype() })
            z:select(d, i):copy_(g)
            return z
          end)
        else
          local len = p:size(d)
          pos = pos + len
          record(name, p, { n = 1, a }, function(g)
            local z = tide.zeros_like(a, { dtype = g:dtype() })
            z:narrow(d, start, len):copy_(g)
            return z
          end)
        end
      end
      return list
    end
    Tensor[name] = w
    wrapped[raw] = w
  end
  pieces('split', false)
  pieces('chunk', false)
  pieces('unbind', true)

  -- indexing ------------------------------------------------------------------------------------

  def('index_select', function(_, g, a, dim, index)
    local shape = {}
    local gs = g:shape()
    local d = dim < 0 and dim + #gs + 1 or dim
    for i = 1, #gs do shape[i] = i == d and gs[i] or 1 end
    local idx = index:reshape(shape):expand(gs)
    return tide.zeros_like(a, { dtype = g:dtype() }):scatter_add_(dim, idx, g)
  end)
  def('gather', function(_, g, a, dim, index)
    return tide.zeros_like(a, { dtype = g:dtype() }):scatter_add_(dim, index, g)
  end)

  local plain_cat, plain_stack = tide.cat, tide.stack
  local function any_needs(list)
    if not ag.is_grad_enabled() or type(list) ~= 'table' then return false end
    for _, t in ipairs(list) do if needs(t) then return true end end
    return false
  end
  tide.cat = function(list, dim)
    if not any_needs(list) then return plain_cat(list, dim) end
    local out = run('cat', plain_cat, list, dim)
    local d = dim or 1
    local inputs = { n = #list, unpack(list) }
    return record('cat', out, inputs, function(g)
      local grads, pos = {}, 1
      for i, t in ipairs(list) do
        local n = t:size(d)
        grads[i] = g:narrow(d, pos, n)
        pos = pos + n
      end
      return unpack(grads, 1, #list)
    end, false)
  end
  tide.stack = function(list, dim)
    if not any_needs(list) then return plain_stack(list, dim) end
    local out = run('stack', plain_stack, list, dim)
    local d = dim or 1
    local inputs = { n = #list, unpack(list) }
    return record('stack', out, inputs, function(g)
      local grads = {}
      for i = 1, #list do grads[i] = g:select(d, i) end
      return unpack(grads, 1, #list)
    end, false)
  end
  wrapped[plain_cat], wrapped[plain_stack] = tide.cat, tide.stack

  -- in-place ops cannot be recorded: refuse them on tensors in the graph --------------------------

  local inplace = {}
  for k, v in pairs(Tensor) do
    if type(k) == 'string' and k:sub(-1) == '_' and type(v) == 'function' and k ~= 'requires_grad_' then
      inplace[k] = v
    end
  end
  for _, k in ipairs { 'copy_', 'fill_', 'zero_' } do inplace[k] = Tensor[k] end
  for name, raw in pairs(inplace) do
    local w = function(a, ...)
      if ag.is_grad_enabled() and needs(a) then
        error(('%s: in-place operation on a tensor that requires grad; use tide.no_grad(function() ... end) ' ..
          'or the out-of-place %s'):format(name, name:sub(1, -2)), 2)
      end
      return raw(a, ...)
    end
    Tensor[name] = w
    wrapped[raw] = w
  end

  -- aliases and tide.* functions point at the wrappers -------------------------------------------

  for _, tbl in ipairs { Tensor, tide } do
    for k, v in pairs(tbl) do
      if wrapped[v] and tbl[k] ~= wrapped[v] then tbl[k] = wrapped[v] end
    end
  end
  -- tide.sum(t, ...) and friends were bound to the plain methods: rebind
  for _, name in ipairs { 'sum', 'mean', 'max', 'min', 'amax', 'amin', 'cumsum', 'matmul', 'mm', 'bmm',
                          'index_select', 'gather', 'masked_fill', 'clamp', 'abs', 'exp', 'log', 'sqrt',
                          'tanh', 'sigmoid', 'relu', 'gelu', 'neg', 'add', 'sub', 'mul', 'div', 'pow',
                          'maximum', 'minimum' } do
    if tide[name] ~= nil and Tensor[name] ~= nil then
      local method = Tensor[name]
      -- the binary ops take a number on either side; the others need a tensor first
      local binary = name == 'add' or name == 'sub' or name == 'mul' or name == 'div' or name == 'pow'
        or name == 'maximum' or name == 'minimum'
      tide[name] = function(t, ...)
        if not binary and not is_tensor(t) then error(('%s: expected a tensor, got %s'):format(name, type(t)), 2) end
        return method(t, ...)
      end
    end
  end

  -- operators: a number may stand on either side; with nothing to record
  -- the plain operators run (they compute number OP tensor directly)
  local mt = core.mt
  local function op2(name, plain)
    local m = Tensor[name]
    return function(a, b)
      if not ag.wants(a, b) then return plain(a, b) end
      if is_tensor(a) then return m(a, b) end
      -- number OP tensor, through recorded ops that round the same way
      if name == 'add' or name == 'mul' then return m(b, a) end
      if name == 'sub' then return (-b):add(a) end
      return m(tide.full_like(b, a), b)
    end
  end
  mt.__add, mt.__sub, mt.__mul = op2('add', mt.__add), op2('sub', mt.__sub), op2('mul', mt.__mul)
  mt.__div, mt.__pow = op2('div', mt.__div), op2('pow', mt.__pow)
  local neg, plain_unm = Tensor.neg, mt.__unm
  mt.__unm = function(a)
    if not ag.wants(a) then return plain_unm(a) end
    return neg(a)
  end
end

return M

-- Elementwise ops: math, comparisons, logical ops, clamp, where, allclose and
-- equal, and the arithmetic operators. The operand after the first may be a
-- tensor, a Lua number or a boolean (either side for the operators and the
-- tide.* functions); dtypes promote as in PyTorch (see runtime/ops/pointwise.h).
--
-- Errors are raised at the caller's line. Helpers take `level`, the error
-- level counted from the helper itself, and are never tail-called so the
-- count holds.
local ffi = require 'ffi'
local C = require 'tide.C'
local errors = require 'tide.errors'

local M = {}

local unary_ops = {
  neg = C.TIDE_NEG, abs = C.TIDE_ABS, exp = C.TIDE_EXP, log = C.TIDE_LOG, sqrt = C.TIDE_SQRT,
  rsqrt = C.TIDE_RSQRT, tanh = C.TIDE_TANH, sigmoid = C.TIDE_SIGMOID, relu = C.TIDE_RELU,
  gelu = C.TIDE_GELU, logical_not = C.TIDE_NOT, sin = C.TIDE_SIN, cos = C.TIDE_COS,
  floor = C.TIDE_FLOOR, ceil = C.TIDE_CEIL, round = C.TIDE_ROUND, sign = C.TIDE_SIGN,
  log1p = C.TIDE_LOG1P, expm1 = C.TIDE_EXPM1, square = C.TIDE_SQUARE,
  reciprocal = C.TIDE_RECIPROCAL, isnan = C.TIDE_ISNAN, isinf = C.TIDE_ISINF,
}
-- predicates have no in-place form
local no_inplace = { isnan = true, isinf = true }

local binary_ops = {
  add = C.TIDE_ADD, sub = C.TIDE_SUB, mul = C.TIDE_MUL, div = C.TIDE_DIV, pow = C.TIDE_POW,
  maximum = C.TIDE_MAXIMUM, minimum = C.TIDE_MINIMUM, eq = C.TIDE_EQ, ne = C.TIDE_NE,
  lt = C.TIDE_LT, le = C.TIDE_LE, gt = C.TIDE_GT, ge = C.TIDE_GE,
  logical_and = C.TIDE_AND, logical_or = C.TIDE_OR, logical_xor = C.TIDE_XOR,
  fmod = C.TIDE_FMOD,
}
-- names PyTorch users also reach for
local binary_alias = {
  subtract = 'sub', multiply = 'mul', divide = 'div', true_divide = 'div',
  greater = 'gt', greater_equal = 'ge', less = 'lt', less_equal = 'le', not_equal = 'ne',
}
local unary_alias = { negative = 'neg', absolute = 'abs' }

function M.install(tide, core)
  local Tensor, mt, wrap, out1 = core.Tensor, core.mt, core.wrap, core.out1
  local NaN = 0 / 0
  local ADD, MUL, MAXIMUM, MINIMUM = C.TIDE_ADD, C.TIDE_MUL, C.TIDE_MAXIMUM, C.TIDE_MINIMUM

  local function is_tensor(x) return getmetatable(x) == mt end

  -- Raises the engine's last error; when given, `to` replaces the C op name
  -- `from` that starts the message (the Lua function has another name).
  local function raise(level, from, to)
    local msg = errors.message()
    if from and msg:sub(1, #from + 1) == from .. ':' then msg = to .. msg:sub(#from + 1) end
    error(msg, level + 1)
  end

  -- In-place ops make no new tensor, so they poll Ctrl-C themselves (wrap
  -- does it for the others): a JIT-compiled loop of them stays interruptible.
  local function poll(level)
    if C.tide_interrupt_take() ~= 0 then error('interrupted', level + 1) end
  end

  local function bad_operand(name, x)
    return ("%s: expected a tensor, number or boolean operand, got %s"):format(name, type(x))
  end

  -- A 0-d tensor for a Lua value beside tensor `other` (or none), on the
  -- device of `other` or else of tensor `on`. Numbers get the dtype PyTorch
  -- gives a number in that company, so the engine's 0-d promotion rule then
  -- yields PyTorch's result type.
  local function scalar_tensor(v, other, on)
    local dt
    if type(v) == 'boolean' then
      dt, v = C.TIDE_BOOL, v and 1 or 0
    else
      local od = other and other._c.dtype
      local integral = v % 1 == 0
      if od and od ~= C.TIDE_BOOL and (od <= 3 or integral) then dt = od
      elseif integral then dt = C.TIDE_I64
      else dt = C.TIDE_F32 end
    end
    local holder = other or on
    if C.tide_full(dt, 0, nil, v, holder and holder._c.device or -1, out1) ~= 0 then raise(2) end
    return wrap(out1[0])
  end

  local function binop(name, op, a, b, level)
    local rc
    if is_tensor(a) then
      local tb = type(b)
      if is_tensor(b) then rc = C.tide_binary(op, a._c, b._c, out1)
      elseif tb == 'number' then rc = C.tide_binary_scalar(op, a._c, b, 0, out1)
      elseif tb == 'boolean' then rc = C.tide_binary(op, a._c, scalar_tensor(b, nil, a)._c, out1)
      else error(bad_operand(name, b), level) end
    elseif is_tensor(b) then
      local ta = type(a)
      if ta == 'number' then rc = C.tide_binary_scalar(op, b._c, a, 1, out1)
      elseif ta == 'boolean' then rc = C.tide_binary(op, scalar_tensor(a, nil, b)._c, b._c, out1)
      else error(bad_operand(name, a), level) end
    else
      error(("%s: expected at least one tensor operand, got %s and %s"):format(name, type(a), type(b)), level)
    end
    if rc ~= 0 then raise(level) end
    return wrap(out1[0])
  end

  local function binop_(name, op, a, b, level)
    if not is_tensor(a) then error(("%s: expected a tensor to write into, got %s"):format(name, type(a)), level) end
    local rc
    local tb = type(b)
    if is_tensor(b) then rc = C.tide_binary_(op, a._c, b._c)
    elseif tb == 'number' then rc = C.tide_binary_scalar_(op, a._c, b)
    elseif tb == 'boolean' then rc = C.tide_binary_(op, a._c, scalar_tensor(b, nil, a)._c)
    else error(bad_operand(name, b), level) end
    if rc ~= 0 then raise(level) end
    poll(level)
    return a
  end

  local function unop(name, op, a, level)
    if not is_tensor(a) then error(("%s: expected a tensor, got %s"):format(name, type(a)), level) end
    if C.tide_unary(op, a._c, out1) ~= 0 then raise(level) end
    return wrap(out1[0])
  end

  local function unop_(name, op, a, level)
    if not is_tensor(a) then error(("%s: expected a tensor, got %s"):format(name, type(a)), level) end
    if C.tide_unary_(op, a._c) ~= 0 then raise(level) end
    poll(level)
    return a
  end

  -- binary ops ---------------------------------------------------------------

  for name, op in pairs(binary_ops) do
    local iname = name .. '_'
    Tensor[name] = function(a, b) local r = binop(name, op, a, b, 3); return r end
    Tensor[iname] = function(a, b) binop_(iname, op, a, b, 3); return a end
    tide[name] = Tensor[name]
  end

  -- add/sub take {alpha=x} like torch: a + alpha * b
  local function scaled(name, b, opts, level)
    if opts == nil then return b end
    if type(opts) ~= 'table' then error(("%s: options must be a table such as {alpha=2}, got %s"):format(name, type(opts)), level) end
    local alpha = opts.alpha
    if alpha == nil or alpha == 1 then return b end
    if type(alpha) ~= 'number' then error(("%s: alpha must be a number, got %s"):format(name, type(alpha)), level) end
    if type(b) == 'boolean' then b = b and 1 or 0 end
    if type(b) == 'number' then return b * alpha end
    if not is_tensor(b) then return b end  -- the op itself reports a bad operand
    local r = binop(name, MUL, b, alpha, level + 1)
    return r
  end
  for _, name in ipairs { 'add', 'sub' } do
    local op, iname = binary_ops[name], name .. '_'
    Tensor[name] = function(a, b, opts)
      local r = binop(name, op, a, scaled(name, b, opts, 3), 3)
      return r
    end
    Tensor[iname] = function(a, b, opts)
      binop_(iname, op, a, scaled(iname, b, opts, 3), 3)
      return a
    end
    tide[name] = Tensor[name]
  end

  for alias, name in pairs(binary_alias) do
    Tensor[alias] = Tensor[name]
    tide[alias] = Tensor[name]
  end

  function Tensor.div(a, b, opts)
    if opts ~= nil then
      error('div: options (rounding_mode) are not supported; use (a / b):floor() for floor division', 2)
    end
    local r = binop('div', C.TIDE_DIV, a, b, 3)
    return r
  end
  tide.div, Tensor.divide, Tensor.true_divide = Tensor.div, Tensor.div, Tensor.div
  tide.divide, tide.true_divide = Tensor.div, Tensor.div

  -- unary ops ----------------------------------------------------------------

  for name, op in pairs(unary_ops) do
    Tensor[name] = function(a) local r = unop(name, op, a, 3); return r end
    tide[name] = Tensor[name]
    if not no_inplace[name] then
      local iname = name .. '_'
      Tensor[iname] = function(a) unop_(iname, op, a, 3); return a end
    end
  end
  for alias, name in pairs(unary_alias) do
    Tensor[alias] = Tensor[name]
    Tensor[alias .. '_'] = Tensor[name .. '_']
  end

  -- gelu is the tanh approximation (GPT-2's); accept torch's spelling of it
  function Tensor.gelu(a, approximate)
    if approximate ~= nil and approximate ~= 'tanh' then
      error(("gelu: only the tanh approximation is implemented (got approximate=%s)"):format(tostring(approximate)), 2)
    end
    local r = unop('gelu', C.TIDE_GELU, a, 3)
    return r
  end
  tide.gelu = Tensor.gelu

  -- operators ----------------------------------------------------------------

  mt.__add = function(a, b) local r = binop('add', ADD, a, b, 3); return r end
  mt.__sub = function(a, b) local r = binop('sub', C.TIDE_SUB, a, b, 3); return r end
  mt.__mul = function(a, b) local r = binop('mul', MUL, a, b, 3); return r end
  mt.__div = function(a, b) local r = binop('div', C.TIDE_DIV, a, b, 3); return r end
  mt.__pow = function(a, b) local r = binop('pow', C.TIDE_POW, a, b, 3); return r end
  mt.__unm = function(a) local r = unop('neg', C.TIDE_NEG, a, 3); return r end

  -- clamp --------------------------------------------------------------------

  local function check_bound(name, v, which, level)
    if v ~= nil and type(v) ~= 'number' and not is_tensor(v) then
      error(("%s: %s must be a number, a tensor or nil, got %s"):format(name, which, type(v)), level)
    end
  end

  -- t:clamp(min, max); either bound may be nil (or NaN), or a tensor
  local function clamp(name, t, lo, hi, level)
    if not is_tensor(t) then error(("%s: expected a tensor, got %s"):format(name, type(t)), level) end
    check_bound(name, lo, 'min', level + 1)
    check_bound(name, hi, 'max', level + 1)
    if lo == nil and hi == nil then error(name .. ': at least one of min and max must be given', level) end
    if is_tensor(lo) or is_tensor(hi) then
      local r = t
      if lo ~= nil then r = binop(name, MAXIMUM, r, lo, level + 1) end
      if hi ~= nil then r = binop(name, MINIMUM, r, hi, level + 1) end
      return r
    end
    if C.tide_clamp(t._c, lo or NaN, hi or NaN, out1) ~= 0 then raise(level) end
    return wrap(out1[0])
  end

  -- in place: maximum_ with min, then minimum_ with max (same result as clamp,
  -- stored into t's dtype); messages name clamp_
  local function clamp_(name, t, lo, hi, level)
    if not is_tensor(t) then error(("%s: expected a tensor, got %s"):format(name, type(t)), level) end
    check_bound(name, lo, 'min', level + 1)
    check_bound(name, hi, 'max', level + 1)
    if lo == nil and hi == nil then error(name .. ': at least one of min and max must be given', level) end
    for i, op in ipairs { MAXIMUM, MINIMUM } do
      local v = hi
      if i == 1 then v = lo end
      local rc
      if is_tensor(v) then rc = C.tide_binary_(op, t._c, v._c)
      elseif v ~= nil and v == v then rc = C.tide_binary_scalar_(op, t._c, v)
      else rc = 0 end
      if rc ~= 0 then raise(level, i == 1 and 'maximum_' or 'minimum_', name) end
    end
    poll(level)
    return t
  end

  function Tensor.clamp(t, lo, hi) local r = clamp('clamp', t, lo, hi, 3); return r end
  function Tensor.clamp_(t, lo, hi) clamp_('clamp_', t, lo, hi, 3); return t end
  function Tensor.clamp_min(t, lo) local r = clamp('clamp_min', t, lo, nil, 3); return r end
  function Tensor.clamp_max(t, hi) local r = clamp('clamp_max', t, nil, hi, 3); return r end
  function Tensor.clamp_min_(t, lo) clamp_('clamp_min_', t, lo, nil, 3); return t end
  function Tensor.clamp_max_(t, hi) clamp_('clamp_max_', t, nil, hi, 3); return t end
  Tensor.clip, Tensor.clip_ = Tensor.clamp, Tensor.clamp_
  tide.clamp, tide.clip = Tensor.clamp, Tensor.clamp

  -- where --------------------------------------------------------------------

  local function where(cond, a, b, level)
    if not is_tensor(cond) then error('where: the condition must be a tensor, got ' .. type(cond), level) end
    for i = 1, 2 do
      local v = b
      if i == 1 then v = a end
      if not is_tensor(v) and type(v) ~= 'number' and type(v) ~= 'boolean' then
        error(bad_operand('where', v), level)
      end
    end
    if not is_tensor(a) then a = scalar_tensor(a, is_tensor(b) and b or nil, cond) end
    if not is_tensor(b) then b = scalar_tensor(b, a) end
    if C.tide_where(cond._c, a._c, b._c, out1) ~= 0 then raise(level) end
    return wrap(out1[0])
  end

  -- tide.where(cond, a, b): a where cond is nonzero, else b
  function tide.where(cond, a, b) local r = where(cond, a, b, 3); return r end
  -- t:where(cond, other), as torch.Tensor.where
  function Tensor.where(t, cond, other) local r = where(cond, t, other, 3); return r end

  -- comparing whole tensors ----------------------------------------------------

  -- True when every element of bool tensor t is true (none for an empty
  -- one), counted by ops so it holds on any device.
  local function all_true(t)
    local n = unop('logical_not', C.TIDE_NOT, t, 3):sum():item()
    return n == 0
  end

  -- |a - b| <= atol + rtol * |b| elementwise (broadcasting), computed in f64;
  -- equal infinities are close, NaNs only with {equal_nan=true}.
  local function allclose(a, b, opts, level)
    if not is_tensor(a) or not is_tensor(b) then
      error(("allclose: expected two tensors, got %s and %s"):format(type(a), type(b)), level)
    end
    opts = opts or {}
    if type(opts) ~= 'table' then error('allclose: options must be a table such as {rtol=1e-5, atol=1e-8}', level) end
    local rtol, atol = opts.rtol or 1e-5, opts.atol or 1e-8
    if type(rtol) ~= 'number' or type(atol) ~= 'number' then error('allclose: rtol and atol must be numbers', level) end
    if a._c.dtype ~= C.TIDE_F64 then a = a:to('f64') end
    if b._c.dtype ~= C.TIDE_F64 then b = b:to('f64') end
    if C.tide_binary(C.TIDE_SUB, a._c, b._c, out1) ~= 0 then raise(level, 'sub', 'allclose') end
    local err = wrap(out1[0]):abs_()
    local ok = err:le(b:abs():mul_(rtol):add_(atol)):logical_and_(err:isinf():logical_not_())
    ok:logical_or_(a:eq(b))
    if opts.equal_nan then ok:logical_or_(a:isnan():logical_and(b:isnan())) end
    return all_true(ok)
  end

  function tide.allclose(a, b, opts) local r = allclose(a, b, opts, 3); return r end
  Tensor.allclose = tide.allclose

  -- true when a and b have the same shape and equal elements (NaN ~= NaN)
  function tide.equal(a, b)
    if not is_tensor(a) or not is_tensor(b) then
      error(("equal: expected two tensors, got %s and %s"):format(type(a), type(b)), 2)
    end
    local ca, cb = a._c, b._c
    if ca.ndim ~= cb.ndim then return false end
    for i = 0, ca.ndim - 1 do
      if ca.shape[i] ~= cb.shape[i] then return false end
    end
    return all_true(a:eq(b))
  end
  Tensor.equal = tide.equal

  -- definitions: forward, backward and aliases of each op ----------------------

  local reg = require 'tide.ops.registry'
  local ag = require 'tide.autograd'
  local function sum_to(g, shape) return ag.sum_to(g, shape) end
  local function grad_for(x, g) if is_tensor(x) then return sum_to(g, x:shape()) end end
  local function alpha_of(opts) return type(opts) == 'table' and opts.alpha or 1 end

  reg.def { 'add', forward = Tensor.add, fn = 'any', saves = false,
    backward = function(_, g, a, b, opts)
      local al = alpha_of(opts)
      return grad_for(a, g), is_tensor(b) and sum_to(al == 1 and g or g * al, b:shape()) or nil
    end }
  reg.def { 'sub', forward = Tensor.sub, fn = 'any', saves = false, aliases = { 'subtract' }, tide_aliases = { 'subtract' },
    backward = function(_, g, a, b, opts)
      local al = alpha_of(opts)
      return grad_for(a, g), is_tensor(b) and sum_to(g * (-al), b:shape()) or nil
    end }
  reg.def { 'mul', forward = Tensor.mul, fn = 'any', aliases = { 'multiply' }, tide_aliases = { 'multiply' },
    backward = function(_, g, a, b)
      return is_tensor(a) and sum_to(g * b, a:shape()) or nil, is_tensor(b) and sum_to(g * a, b:shape()) or nil
    end }
  reg.def { 'div', forward = Tensor.div, fn = 'any', aliases = { 'divide', 'true_divide' },
    tide_aliases = { 'divide', 'true_divide' },
    backward = function(out, g, a, b)
      local ga = is_tensor(a) and sum_to(g / b, a:shape()) or nil
      local gb = is_tensor(b) and sum_to(-(g * out) / b, b:shape()) or nil
      return ga, gb
    end }
  reg.def { 'pow', forward = Tensor.pow, fn = 'any',
    backward = function(out, g, a, b)
      local ga, gb
      if is_tensor(a) then ga = sum_to(g * b * a:pow(b - 1), a:shape()) end
      if is_tensor(b) then
        local base = is_tensor(a) and a or tide.full_like(b, a)
        -- d/db a^b = a^b log a; 0^b contributes 0 (torch's convention)
        gb = sum_to(tide.where(base:eq(0), 0, g * out * base:log()), b:shape())
      end
      return ga, gb
    end }
  local function ties(name, pick)
    reg.def { name, forward = Tensor[name], fn = 'any',
      backward = function(_, g, a, b)
        -- ties split the gradient evenly, as torch does
        -- either side may be a number (tide.maximum(0, x)): compare through the functions
        local wa = pick(a, b):to(g:dtype()) + Tensor.eq(a, b):to(g:dtype()) * 0.5
        local ga = is_tensor(a) and sum_to(g * wa, a:shape()) or nil
        local gb = is_tensor(b) and sum_to(g * (1 - wa), b:shape()) or nil
        return ga, gb
      end }
  end
  ties('maximum', function(a, b) return Tensor.gt(a, b) end)
  ties('minimum', function(a, b) return Tensor.lt(a, b) end)
  for _, name in ipairs { 'eq', 'ne', 'lt', 'le', 'gt', 'ge', 'logical_and', 'logical_or', 'logical_xor',
                          'logical_not', 'isnan', 'isinf' } do
    reg.def { name, nondiff = 'a bool result' }
  end
  reg.def { 'fmod', nondiff = 'no backward is implemented for fmod' }

  -- unary: tide.<name> checks for a tensor when fn, else is the method itself
  local unary = {
    neg = { function(_, g) return -g end, fn = true, aliases = { 'negative' } },
    abs = { function(_, g, a) return g * a:sign() end, fn = true, aliases = { 'absolute' } },
    exp = { function(out, g) return g * out end, fn = true },
    log = { function(_, g, a) return g / a end, fn = true },
    sqrt = { function(out, g) return g * 0.5 / out end, fn = true },
    rsqrt = { function(out, g) return g * -0.5 * out * out * out end },
    tanh = { function(out, g) return g * (1 - out * out) end, fn = true },
    sigmoid = { function(out, g) return g * out * (1 - out) end, fn = true },
    relu = { function(_, g, a) return g * a:gt(0):to(g:dtype()) end, fn = true },
    sin = { function(_, g, a) return g * a:cos() end },
    cos = { function(_, g, a) return -g * a:sin() end },
    log1p = { function(_, g, a) return g / (a + 1) end },
    expm1 = { function(out, g) return g * (out + 1) end },
    square = { function(_, g, a) return g * a * 2 end },
    reciprocal = { function(out, g) return -g * out * out end },
    gelu = { function(_, g, a) return core.call(C.tide_gelu_backward, g._c, a._c, out1) end, fn = true },
    -- zero gradient almost everywhere (torch agrees)
    floor = { function(_, g) return tide.zeros_like(g) end },
    ceil = { function(_, g) return tide.zeros_like(g) end },
    round = { function(_, g) return tide.zeros_like(g) end },
    sign = { function(_, g) return tide.zeros_like(g) end },
  }
  local reads_nothing = { neg = true, floor = true, ceil = true, round = true, sign = true }
  local unary_names = {}
  for name in pairs(unary) do unary_names[#unary_names + 1] = name end
  table.sort(unary_names)
  for _, name in ipairs(unary_names) do
    local u = unary[name]
    reg.def { name, forward = Tensor[name], backward = u[1], aliases = u.aliases,
      saves = not reads_nothing[name] and nil, fn = u.fn and 'tensor' or nil,
      tide_aliases = not u.fn and { name } or nil }
  end

  reg.def { 'clamp', forward = Tensor.clamp, fn = 'tensor', aliases = { 'clip' }, tide_aliases = { 'clip' },
    backward = function(_, g, a, lo, hi)
      local keep = tide.ones_like(a, { dtype = 'bool' })
      if lo ~= nil then keep = keep:logical_and(a:ge(lo)) end
      if hi ~= nil then keep = keep:logical_and(a:le(hi)) end
      return g * keep:to(g:dtype())
    end }

  -- where(cond, other) as a method: self where cond else other
  reg.def { 'where', forward = Tensor.where,
    backward = function(_, g, t, cond, other)
      local zero = tide.zeros_like(g)
      return grad_for(t, tide.where(cond, g, zero)), nil, grad_for(other, tide.where(cond, zero, g))
    end }
  -- tide.where(cond, a, b)
  reg.def { 'tide.where', home = tide, key = 'where', forward = tide.where,
    wrap = function(plain_where, ag_)
      return function(cond, a, b)
        if not ag_.wants(a, b) then return plain_where(cond, a, b) end
        local ok, out = pcall(plain_where, cond, a, b)
        if not ok then error(out, 2) end
        return ag_.record('where', out, { n = 3, false, a, b }, function(g)
          local zero = tide.zeros_like(g)
          return nil, grad_for(a, tide.where(cond, g, zero)), grad_for(b, tide.where(cond, zero, g))
        end)
      end
    end }
  reg.def { 'allclose', nondiff = 'a boolean' }
  reg.def { 'equal', nondiff = 'a boolean' }
end

return M

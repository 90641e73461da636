-- The op registry: one definition per op, written in its family's file
-- (ops/pointwise.lua, ops/reduce.lua, ops/linalg.lua, ops/index.lua,
-- ops/views.lua, functional.lua) beside the forward it installs:
--
--   reg.def { 'exp', forward = Tensor.exp, fn = 'tensor',
--             backward = function(out, g, a) return g * out end }
--
-- name: the Tensor method (or, with home = tide and key, a tide.* function);
-- forward: the plain function the family installed (nothing computes in
--   Lua here: the forward is the engine call, the backward engine ops);
-- backward(out, g, args...): one gradient per argument (self first); or
-- wrap(raw, ag): a whole differentiable wrapper, for ops whose node is not
--   one output of one call (max with indices, split's pieces, cat's list);
-- recorded = true: the forward records its own node (the fused F.* ops);
-- nondiff = 'why': not differentiable, on purpose (comparisons, indices);
-- saves = false: backward reads no tensor value, so in-place changes to the
--   inputs before backward are harmless (PyTorch's rule);
-- aliases / tide_aliases: other Tensor / tide names of the same op;
-- fn = 'tensor' | 'any': also tide.<name>(t, ...), needing a tensor first
--   ('tensor') or taking a number on either side ('any').
--
-- tests/lua/test_registry.lua enumerates the definitions: every
-- differentiable one must have a gradcheck there.
local R = { defs = {}, order = {} }

function R.def(d)
  local name = d[1] or d.name
  d.name = name
  if R.defs[name] then error('registry: op ' .. name .. ' is defined twice') end
  local kinds = (d.backward and 1 or 0) + (d.wrap and 1 or 0) + (d.recorded and 1 or 0) + (d.nondiff and 1 or 0)
  if kinds ~= 1 then
    error('registry: op ' .. name .. ' needs exactly one of backward, wrap, recorded or nondiff')
  end
  if (d.backward or d.wrap) and d.forward == nil then error('registry: op ' .. name .. ' has no forward') end
  R.defs[name] = d
  R.order[#R.order + 1] = d
  return d
end

-- Whether op `name` is differentiable (has a backward, one way or another).
function R.differentiable(name)
  local d = R.defs[name]
  return d ~= nil and not d.nondiff
end

-- Installs the differentiable forms: each definition's wrapper replaces its
-- forward under its name and aliases, the in-place ops refuse tensors in the
-- graph, and the operators record too. Called once by autograd.install,
-- after every family has defined its ops.
function R.install(tide, core, ag)
  local Tensor, is_tensor = core.Tensor, core.is_tensor
  local needs, record = ag.needs, ag.record

  -- Calls the plain forward; errors are re-raised at the user's level.
  local function run(raw, ...)
    local ok, out = pcall(raw, ...)
    if not ok then error(out, 3) end
    return out
  end

  -- backward(out, g, args...) returns one gradient per argument (self
  -- first). Tensors requiring grad are looked for in the first four
  -- arguments, which covers every method here.
  local function generic(d)
    local raw, formula, name = d.forward, d.backward, d.name
    local saved  -- nil: every tensor argument and the output
    if d.saves == false then saved = false end
    return function(...)
      if not ag.wants(...) then return raw(...) end
      local n = select('#', ...)
      local args = { n = n, ... }
      local out = run(raw, ...)
      if out == args[1] then return out end  -- the method returned self (to, contiguous): nothing to record
      return record(name, out, args, function(g) return formula(out, g, unpack(args, 1, n)) end, saved)
    end
  end

  for _, d in ipairs(R.order) do
    local w
    if d.backward then w = generic(d) elseif d.wrap then w = d.wrap(d.forward, ag) end
    if w then
      local home = d.home or Tensor
      home[d.key or d.name] = w
      for _, a in ipairs(d.aliases or {}) do Tensor[a] = w end
      for _, a in ipairs(d.tide_aliases or {}) do tide[a] = w end
      d.wrapped = w
    end
  end

  -- in-place ops cannot be recorded: refuse them on tensors in the graph
  local inplace = {}
  for k, v in pairs(Tensor) do
    if type(k) == 'string' and k:sub(-1) == '_' and type(v) == 'function' and k ~= 'requires_grad_' then
      inplace[k] = v
    end
  end
  for name, raw in pairs(inplace) do
    Tensor[name] = function(a, ...)
      if ag.is_grad_enabled() and needs(a) then
        error(('%s: in-place operation on a tensor that requires grad; use tide.no_grad(function() ... end) ' ..
          'or the out-of-place %s'):format(name, name:sub(1, -2)), 2)
      end
      return raw(a, ...)
    end
  end

  -- tide.<name>(t, ...) calls the (differentiable) method
  for _, d in ipairs(R.order) do
    if d.fn then
      local method, name = Tensor[d.name], d.name
      if d.fn == 'any' then
        tide[name] = function(t, ...) return method(t, ...) end
      else
        tide[name] = function(t, ...)
          if not is_tensor(t) then error(('%s: expected a tensor, got %s'):format(name, type(t)), 2) end
          return method(t, ...)
        end
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

return R

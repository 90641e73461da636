-- Indexing, joining and ordering: index_select, gather, scatter_add,
-- masked_fill, cat, stack, split, chunk, unbind, sort, topk.
--
-- Index tensors hold 0-based values, as in PyTorch: they are token ids, and
-- argmax/topk/sort outputs feed embeddings and losses directly. Positions
-- given as Lua numbers (dimensions, split sizes) are 1-based, and negative
-- dimensions count from the end.
local ffi = require 'ffi'
local C = require 'tide.C'

local M = {}

function M.install(tide, core)
  local Tensor, out1, out2 = core.Tensor, core.out1, core.out2
  local dim0, handle, check, wrap, call = core.dim0, core.handle, core.check, core.wrap, core.call
  local is_tensor = core.is_tensor

  -- Reads both output slots before wrapping, so nothing that runs during the
  -- first wrap (a GC step) can disturb the second.
  local function two_outputs()
    local v, i = out1[0], out2[0]
    return wrap(v), wrap(i)
  end

  local function fill_value(v, what)
    if type(v) == 'boolean' then return v and 1 or 0 end
    if is_tensor(v) then
      if v:numel() ~= 1 then
        error(("%s: value must be a number or a one-element tensor, got a tensor of %d elements"):format(what, v:numel()), 3)
      end
      v = v:item()
      if type(v) == 'boolean' then v = v and 1 or 0 end
    end
    if type(v) ~= 'number' then error(("%s: value must be a number, got %s"):format(what, type(v)), 3) end
    return v
  end

  local function integer_arg(v, what, name)
    if type(v) ~= 'number' or v % 1 ~= 0 then
      error(("%s: %s must be an integer, got %s"):format(what, name, tostring(v)), 3)
    end
    return v
  end

  -- selecting ------------------------------------------------------------------

  -- t:index_select(dim, index): the slices of t at positions index (1-d, 0-based) along dim.
  function Tensor:index_select(dim, index)
    local c = self._c
    local d = dim0(dim, c.ndim, 'index_select')
    return call(C.tide_index_select, c, d, handle(index, 'index_select'), out1)
  end

  -- t:gather(dim, index): out[i][j] = t[index[i][j]][j] for dim 1, etc.; out has index's shape.
  function Tensor:gather(dim, index)
    local c = self._c
    local d = dim0(dim, c.ndim, 'gather')
    return call(C.tide_gather, c, d, handle(index, 'gather'), out1)
  end

  -- t:scatter_add_(dim, index, src): t[index[i][j]][j] += src[i][j] for dim 1;
  -- repeated indices add up, in a fixed order.
  function Tensor:scatter_add_(dim, index, src)
    local c = self._c
    local d = dim0(dim, c.ndim, 'scatter_add_')
    check(C.tide_scatter_add_(c, d, handle(index, 'scatter_add_'), handle(src, 'scatter_add_')))
    return self
  end

  function Tensor:scatter_add(dim, index, src)
    local c = self._c
    local d = dim0(dim, c.ndim, 'scatter_add')
    local r = call(C.tide_cast, c, c.dtype, out1)
    check(C.tide_scatter_add_(r._c, d, handle(index, 'scatter_add'), handle(src, 'scatter_add')))
    return r
  end

  -- t:masked_fill_(mask, value): value where mask (bool, broadcast to t's shape) is true.
  function Tensor:masked_fill_(mask, value)
    value = fill_value(value, 'masked_fill_')
    check(C.tide_masked_fill_(self._c, handle(mask, 'masked_fill_'), value))
    return self
  end

  function Tensor:masked_fill(mask, value)
    value = fill_value(value, 'masked_fill')
    local m = handle(mask, 'masked_fill')
    local c = self._c
    local r = call(C.tide_cast, c, c.dtype, out1)
    check(C.tide_masked_fill_(r._c, m, value))
    return r
  end

  -- joining ----------------------------------------------------------------------

  local function tensor_list(list, what)
    if type(list) ~= 'table' or is_tensor(list) then
      error(("%s: expected a list (Lua table) of tensors, got %s"):format(what, is_tensor(list) and 'a tensor' or type(list)), 3)
    end
    local n = #list
    if n == 0 then error(what .. ': expected a non-empty list of tensors', 3) end
    local arr = ffi.new('tide_tensor*[?]', n)
    for i = 1, n do
      local t = list[i]
      if not is_tensor(t) then
        error(("%s: element %d of the list is a %s, expected a tensor"):format(what, i, type(t)), 3)
      end
      arr[i - 1] = t._c
    end
    return n, arr
  end

  -- tide.cat(list, dim): concatenation along dim (default 1); dtypes promote.
  function tide.cat(list, dim)
    local n, arr = tensor_list(list, 'cat')
    local d = dim0(dim or 1, arr[0].ndim, 'cat')
    check(C.tide_cat(n, arr, d, out1))
    local _ = list  -- the tensors stay referenced while the engine reads them
    return wrap(out1[0])
  end
  tide.concat, tide.concatenate = tide.cat, tide.cat

  -- tide.stack(list, dim): equal-shape tensors joined along a new dim (default 1).
  function tide.stack(list, dim)
    local n, arr = tensor_list(list, 'stack')
    local d = dim0(dim or 1, arr[0].ndim, 'stack', 1)
    check(C.tide_stack(n, arr, d, out1))
    local _ = list
    return wrap(out1[0])
  end

  -- splitting (views) --------------------------------------------------------------

  local function splittable(t, dim, what)
    local c = t._c
    if c.ndim == 0 then error(what .. ': cannot split a 0-d tensor', 3) end
    local d = dim0(dim or 1, c.ndim, what, 0, 3)
    return c, d, tonumber(c.shape[d])
  end

  -- t:split(size, dim) or t:split({sizes...}, dim): a Lua array of views along
  -- dim (default 1); with one size the last piece may be shorter.
  function Tensor:split(split, dim)
    local c, d, size = splittable(self, dim, 'split')
    local parts = {}
    if type(split) == 'number' then
      if split % 1 ~= 0 or split <= 0 then
        error(('split: split size must be a positive integer, got %s'):format(tostring(split)), 2)
      end
      local start = 0
      repeat
        local len = math.min(split, size - start)
        parts[#parts + 1] = call(C.tide_narrow, c, d, start, len, out1)
        start = start + len
      until start >= size
    elseif type(split) == 'table' and not is_tensor(split) then
      local total = 0
      for i, s in ipairs(split) do
        if type(s) ~= 'number' or s % 1 ~= 0 or s < 0 then
          error(('split: size %d must be a non-negative integer, got %s'):format(i, tostring(s)), 2)
        end
        total = total + s
      end
      if total ~= size then
        error(('split: sizes {%s} add up to %d but dimension %d has size %d')
          :format(table.concat(split, ', '), total, d + 1, size), 2)
      end
      local start = 0
      for i, s in ipairs(split) do
        parts[i] = call(C.tide_narrow, c, d, start, s, out1)
        start = start + s
      end
    else
      error('split: expected a split size or a list of sizes, got ' .. type(split), 2)
    end
    return parts
  end

  -- t:chunk(n, dim): at most n views of equal size (the last may be smaller).
  function Tensor:chunk(n, dim)
    if type(n) ~= 'number' or n % 1 ~= 0 or n <= 0 then
      error(('chunk: number of chunks must be a positive integer, got %s'):format(tostring(n)), 2)
    end
    local c, d, size = splittable(self, dim, 'chunk')
    if size == 0 then
      local parts = {}
      for i = 1, n do parts[i] = call(C.tide_narrow, c, d, 0, 0, out1) end
      return parts
    end
    return self:split(math.ceil(size / n), d + 1)
  end

  -- t:unbind(dim): the slices along dim (default 1), each with that dim removed.
  function Tensor:unbind(dim)
    local c, d, size = splittable(self, dim, 'unbind')
    local parts = {}
    for i = 1, size do parts[i] = call(C.tide_select, c, d, i - 1, out1) end
    return parts
  end

  -- ordering -------------------------------------------------------------------------

  -- t:sort(dim, {descending=}) or t:sort(dim, descending) -> values, indices (i64,
  -- 0-based). dim defaults to the last; stable; NaN sorts as the largest value.
  function Tensor:sort(dim, opts)
    if type(dim) == 'table' or type(dim) == 'boolean' then dim, opts = nil, dim end
    local desc
    if opts == nil then desc = false
    elseif type(opts) == 'boolean' then desc = opts
    elseif type(opts) == 'table' then desc = opts.descending and true or false
    else error('sort: expected {descending=...} or a boolean, got ' .. type(opts), 2) end
    local c = self._c
    local d = dim0(dim or -1, c.ndim, 'sort')
    check(C.tide_sort(c, d, desc and 1 or 0, out1, out2))
    return two_outputs()
  end

  -- t:argsort(dim, {descending=}): the indices of sort.
  function Tensor:argsort(dim, opts)
    local _, i = self:sort(dim, opts)
    return i
  end

  -- t:topk(k, dim, {largest=true, sorted=true}) or t:topk(k, dim, largest, sorted)
  -- -> values, indices (i64, 0-based), in order. dim defaults to the last.
  function Tensor:topk(k, dim, opts, sorted)
    if type(dim) == 'table' then dim, opts = nil, dim end
    integer_arg(k, 'topk', 'k')
    local largest = true
    if type(opts) == 'table' then
      if opts.largest ~= nil then largest = opts.largest and true or false end
      if opts.sorted ~= nil then sorted = opts.sorted end
    elseif type(opts) == 'boolean' then largest = opts
    elseif opts ~= nil then error('topk: expected {largest=..., sorted=...}, got ' .. type(opts), 2) end
    local c = self._c
    local d = dim0(dim or -1, c.ndim, 'topk')
    check(C.tide_topk(c, k, d, largest and 1 or 0, sorted == false and 0 or 1, out1, out2))
    return two_outputs()
  end

  -- tide.f(t, ...) for each method: the first argument must be a tensor
  for _, name in ipairs { 'index_select', 'gather', 'scatter_add', 'scatter_add_', 'masked_fill',
                          'masked_fill_', 'split', 'chunk', 'unbind', 'sort', 'argsort', 'topk' } do
    local method = Tensor[name]
    tide[name] = function(t, ...)
      handle(t, name)
      return method(t, ...)
    end
  end

  -- definitions: forward, backward and aliases of each op ----------------------

  local reg = require 'tide.ops.registry'
  local ag = require 'tide.autograd'

  reg.def { 'index_select', forward = Tensor.index_select, fn = 'tensor',
    backward = function(_, g, a, dim, index)
      local shape = {}
      local gs = g:shape()
      local d = dim < 0 and dim + #gs + 1 or dim
      for i = 1, #gs do shape[i] = i == d and gs[i] or 1 end
      local idx = index:reshape(shape):expand(gs)
      return tide.zeros_like(a, { dtype = g:dtype() }):scatter_add_(dim, idx, g)
    end }
  reg.def { 'gather', forward = Tensor.gather, fn = 'tensor',
    backward = function(_, g, a, dim, index)
      return tide.zeros_like(a, { dtype = g:dtype() }):scatter_add_(dim, index, g)
    end }
  reg.def { 'masked_fill', forward = Tensor.masked_fill, fn = 'tensor',
    backward = function(_, g, _, mask) return g:masked_fill(mask, 0) end }
  reg.def { 'scatter_add', nondiff = 'no backward is implemented for scatter_add' }

  -- split, chunk and unbind return lists of views: each piece gets its own node
  local function pieces(name, by_select)
    reg.def { name, forward = Tensor[name],
      wrap = function(raw)
        return function(a, x, dim)
          if not ag.wants(a) then return raw(a, x, dim) end
          local ok, list = pcall(raw, a, x, dim)
          if not ok then error(list, 2) end
          local d = (by_select and x or dim) or 1
          local pos = 1
          for i, p in ipairs(list) do
            local start = pos
            if by_select then
              ag.record(name, p, { n = 1, a }, function(g)
                local z = tide.zeros_like(a, { dtype = g:dtype() })
                z:select(d, i):copy_(g)
                return z
              end)
            else
              local len = p:size(d)
              pos = pos + len
              ag.record(name, p, { n = 1, a }, function(g)
                local z = tide.zeros_like(a, { dtype = g:dtype() })
                z:narrow(d, start, len):copy_(g)
                return z
              end)
            end
          end
          return list
        end
      end }
  end
  pieces('split', false)
  pieces('chunk', false)
  pieces('unbind', true)

  -- sort and topk: the values' gradient goes back to where they came from
  for _, name in ipairs { 'sort', 'topk' } do
    reg.def { name, forward = Tensor[name],
      wrap = function(raw)
        return function(x, a1, a2, a3, a4)
          if not ag.wants(x) then return raw(x, a1, a2, a3, a4) end
          local ok, vals, idx = pcall(raw, x, a1, a2, a3, a4)
          if not ok then error(vals, 2) end
          local dim = name == 'sort' and a1 or a2
          if dim == nil then dim = -1 end
          ag.record(name, vals, { n = 1, x }, function(g)
            return tide.zeros_like(x, { dtype = g:dtype() }):scatter_add_(dim, idx, g)
          end)
          return vals, idx
        end
      end }
  end
  reg.def { 'argsort', nondiff = 'indices' }

  -- cat and stack take a list: a node over all of its tensors
  local function any_needs(list)
    if not ag.is_grad_enabled() or type(list) ~= 'table' then return false end
    for _, t in ipairs(list) do if ag.needs(t) then return true end end
    return false
  end
  local function run(raw, list, dim)
    local ok, out = pcall(raw, list, dim)
    if not ok then error(out, 3) end
    return out
  end
  reg.def { 'cat', home = tide, forward = tide.cat, tide_aliases = { 'concat', 'concatenate' },
    wrap = function(plain_cat)
      return function(list, dim)
        if not any_needs(list) then return plain_cat(list, dim) end
        local out = run(plain_cat, list, dim)
        local d = dim or 1
        local inputs = { n = #list, unpack(list) }
        return ag.record('cat', out, inputs, function(g)
          local grads, pos = {}, 1
          for i, t in ipairs(list) do
            local n = t:size(d)
            grads[i] = g:narrow(d, pos, n)
            pos = pos + n
          end
          return unpack(grads, 1, #list)
        end, false)
      end
    end }
  reg.def { 'stack', home = tide, forward = tide.stack,
    wrap = function(plain_stack)
      return function(list, dim)
        if not any_needs(list) then return plain_stack(list, dim) end
        local out = run(plain_stack, list, dim)
        local d = dim or 1
        local inputs = { n = #list, unpack(list) }
        return ag.record('stack', out, inputs, function(g)
          local grads = {}
          for i = 1, #list do grads[i] = g:select(d, i) end
          return unpack(grads, 1, #list)
        end, false)
      end
    end }
end

return M

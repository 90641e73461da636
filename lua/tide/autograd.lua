-- Reverse-mode automatic differentiation. The tape lives here, in Lua; every
-- backward formula is computed with engine ops (C kernels), so a loss or a
-- function written in a recipe is differentiable like a built-in one.
--
-- A tensor that requires grad carries `requires_grad = true`; one computed
-- from such tensors also carries `_node`, the record of the op that made it:
-- its differentiable inputs and a closure computing their gradients from the
-- output's. `loss:backward()` walks the nodes in reverse topological order,
-- sums gradients where a tensor feeds several ops, accumulates into the
-- `.grad` of leaves, and drops each closure (and the tensors it saved) as
-- soon as it has run.
local M = {}

local tide, core, Tensor, is_tensor
local enabled = true   -- grad mode: off inside tide.no_grad
local C = require 'tide.C'

-- The storage's count of in-place writes (shared by its views, detach too).
local function version(x) return tonumber(C.tide_tensor_version(x._c)) end

-- graph records ---------------------------------------------------------------

local function needs(x)
  return is_tensor(x) and rawget(x, 'requires_grad') == true
end
M.needs = needs

-- True when grad mode is on and one of the (up to four) arguments requires grad.
local function wants(a, b, c, d)
  return enabled and (needs(a) or needs(b) or needs(c) or needs(d))
end
M.wants = wants

-- The tensors a node's backward reads, each with its version now, so that
-- backward can tell one was modified in place in between (as PyTorch does).
local function snapshot(list, label)
  local snap = {}
  for i = 1, list.n or #list do
    local x = list[i]
    if is_tensor(x) then snap[#snap + 1] = { x, version(x), (label or 'argument ') .. i } end
  end
  return snap
end

-- Raises when a tensor in snap changed since it was saved.
local function check_saved(name, snap, level)
  for _, e in ipairs(snap) do
    local now = version(e[1])
    if now ~= e[2] then
      error(('backward: a tensor that %s saved for its gradient (%s, shape [%s], %s) was modified by an in-place ' ..
        'operation afterwards (version %d, now %d); clone it before modifying it, or modify it after backward')
        :format(name, e[3], table.concat(e[1]:shape(), ', '), e[1]:dtype(), e[2], now), level)
    end
  end
end

-- Attaches a node to `out`: `inputs` is an array of the op's arguments
-- (inputs.n counts them when there are nil holes) and backward(g) returns one
-- gradient per argument, in order (nil for those without one). `saved` lists
-- the tensors backward reads, checked for in-place changes before it runs:
-- nil means every tensor input and out, false none.
local function record(name, out, inputs, backward, saved)
  local any = false
  for i = 1, inputs.n or #inputs do if needs(inputs[i]) then any = true; break end end
  if not any then return out end
  local snap
  if saved == nil then
    snap = snapshot(inputs)
    snap[#snap + 1] = { out, version(out), 'its output' }
  elseif saved then
    snap = snapshot(saved, 'saved tensor ')
  end
  rawset(out, 'requires_grad', true)
  rawset(out, '_node', { name = name, inputs = inputs, backward = backward, saved = snap })
  return out
end
M.record = record

-- Attaches one node to several outputs (outs, an array): an op whose outputs
-- all carry gradient, such as residual_layer_norm's x + r and its norm.
-- backward(g1, g2, ...) receives one gradient per output, nil for an output
-- that got none, and runs once, after every use of every output.
local function record_multi(name, outs, inputs, backward, saved)
  local any = false
  for i = 1, inputs.n or #inputs do if needs(inputs[i]) then any = true; break end end
  if not any then return end
  local snap = saved and snapshot(saved, 'saved tensor ') or nil
  local node = { name = name, inputs = inputs, backward = backward, saved = snap, nout = #outs }
  for k = 1, #outs do
    rawset(outs[k], 'requires_grad', true)
    rawset(outs[k], '_node', node)
    rawset(outs[k], '_out', k)
  end
end
M.record_multi = record_multi

-- Adds gradient g of tensor x (made by node xn) to what flows into xn:
-- one sum per node, or one per output of a multi-output node.
local function add_pending(pending, xn, x, g)
  if xn.nout then
    local slots = pending[xn]
    if slots == nil then slots = {}; pending[xn] = slots end
    local k = rawget(x, '_out')
    slots[k] = slots[k] and (slots[k] + g) or g
  else
    local prev = pending[xn]
    pending[xn] = prev and (prev + g) or g
  end
end

-- Runs fn with grad mode off (restored even if fn fails); returns fn's results.
local function no_grad(fn, ...)
  local prev = enabled
  enabled = false
  local res = { pcall(fn, ...) }
  enabled = prev
  if not res[1] then error(res[2], 0) end
  return unpack(res, 2, table.maxn(res))
end
M.no_grad = no_grad

function M.is_grad_enabled() return enabled end
function M.set_grad_enabled(on) enabled = on and true or false end

-- Sums g over the dims that broadcasting added or stretched, so it has `shape`.
local function sum_to(g, shape)
  local gs = g:shape()
  if #gs == #shape then
    local same = true
    for i = 1, #gs do if gs[i] ~= shape[i] then same = false; break end end
    if same then return g end
  end
  local lead = #gs - #shape
  local r = g
  for i = 1, lead do r = r:sum(1) end
  for i = 1, #shape do
    if shape[i] == 1 and gs[lead + i] ~= 1 then r = r:sum(i, true) end
  end
  if #shape == 0 then return r:reshape({}) end
  return r:reshape(shape)
end
M.sum_to = sum_to

-- the backward pass -----------------------------------------------------------

local function accumulate_leaf(t, g)
  local cur = rawget(t, 'grad')
  if g:dtype() ~= t:dtype() then g = g:to(t:dtype()) end
  if cur == nil then
    -- a fresh copy: the same gradient tensor can reach several leaves
    rawset(t, 'grad', g:clone())
  else
    cur:add_(g)
  end
end

-- Hooks run once a leaf's .grad holds everything this backward adds to it
-- (torch's register_post_accumulate_grad_hook): data parallelism starts
-- reducing a bucket of gradients while backward still computes the others.
local function run_grad_hooks(t)
  local hooks = rawget(t, '_grad_hooks')
  for i = 1, #hooks do hooks[i].fn(t) end
end

-- Callbacks queued during a backward run after its last node (torch's
-- engine queue_callback): the place to finish work the hooks began.
local callbacks, in_backward = nil, false

-- tide.autograd.queue_callback(fn): runs fn() once the current backward has
-- accumulated every gradient; only valid inside a backward (from a hook).
function M.queue_callback(fn)
  if type(fn) ~= 'function' then error('queue_callback: expected a function, got ' .. type(fn), 2) end
  if not in_backward then error('queue_callback: only a backward pass (a gradient hook) can queue a callback', 2) end
  callbacks[#callbacks + 1] = fn
end

local function run_callbacks()
  local list = callbacks
  callbacks, in_backward = nil, false
  for i = 1, #list do list[i]() end
end

-- The nodes reachable from roots (a list of nodes), inputs before the nodes
-- that consume them (iterative DFS); raises at `level` when one was freed.
local function topo_order(roots, level)
  local order, seen = {}, {}
  for _, r in ipairs(roots) do
    if not seen[r] then
      seen[r] = true
      local stack = { { r, 1 } }
      while #stack > 0 do
        local top = stack[#stack]
        local node, i = top[1], top[2]
        if node.backward == nil then
          error('backward: the graph was already freed by an earlier backward (pass {retain_graph=true} to keep it)', level + 1)
        end
        local inputs = node.inputs
        local ninputs = inputs.n or #inputs
        local pushed = false
        while i <= ninputs do
          local x = inputs[i]
          i = i + 1
          local xn = is_tensor(x) and rawget(x, '_node')
          if xn and not seen[xn] then
            seen[xn] = true
            top[2] = i
            stack[#stack + 1] = { xn, 1 }
            pushed = true
            break
          end
        end
        if not pushed then
          order[#order + 1] = node
          stack[#stack] = nil
        end
      end
    end
  end
  return order
end

-- Runs the nodes of `order` (from topo_order) consumers first, starting from
-- pending (node -> the gradient of its output), accumulating into the leaves'
-- .grad and running their hooks; frees each node's closure unless retain.
-- Called with grad mode off, inside a backward (callbacks set up).
local function execute(order, pending, retain)
  -- leaves with gradient hooks: how many uses each has in the graph, so a
  -- hook runs when the last node that can add to its .grad is done
  local uses, hooked = nil, false
  for k = 1, #order do
    local inputs = order[k].inputs
    for i = 1, inputs.n or #inputs do
      local x = inputs[i]
      if is_tensor(x) and rawget(x, '_grad_hooks') and rawget(x, '_node') == nil and needs(x) then
        uses = uses or {}
        uses[x] = (uses[x] or 0) + 1
        hooked = true
      end
    end
  end
  local got = hooked and {} or nil  -- the hooked leaves this backward gave a gradient
  for k = #order, 1, -1 do
    local node = order[k]
    local g = pending[node]
    pending[node] = nil
    local inputs = node.inputs
    if g ~= nil then
      if node.saved then check_saved(node.name, node.saved, 0) end
      local grads
      if node.nout then grads = { node.backward(unpack(g, 1, node.nout)) } else grads = { node.backward(g) } end
      for i = 1, inputs.n or #inputs do
        local x, gi = inputs[i], grads[i]
        if gi ~= nil and needs(x) then
          -- a gradient has its input's dtype (as torch's engine casts it):
          -- f32 + bf16 -> f32 hands the bf16 operand a bf16 gradient
          if gi._c.dtype ~= x._c.dtype then gi = gi:to(x:dtype()) end
          local xn = rawget(x, '_node')
          if xn then
            add_pending(pending, xn, x, gi)
          else
            accumulate_leaf(x, gi)
            if got and uses[x] then got[x] = true end
          end
        end
      end
    end
    if hooked then
      for i = 1, inputs.n or #inputs do
        local x = inputs[i]
        local u = is_tensor(x) and uses[x]
        if u then
          uses[x] = u - 1
          if u == 1 and got[x] then run_grad_hooks(x) end
        end
      end
    end
    if not retain then
      node.backward = nil  -- frees the tensors the closure saved
      node.saved = nil
    end
  end
end

-- Tensor:backward([grad], {retain_graph=false})
local function backward(root, grad, opts)
  if not is_tensor(root) then error('backward: expected a tensor', 2) end
  -- backward{retain_graph=true}: an options table in the gradient's place
  if type(grad) == 'table' and not is_tensor(grad) and opts == nil then grad, opts = nil, grad end
  if grad ~= nil and not is_tensor(grad) and type(grad) ~= 'number' then
    error(('backward: the gradient must be a tensor or a number, got %s (options go in a table: backward{retain_graph=true})')
      :format(type(grad)), 3)
  end
  if type(opts) == 'boolean' then opts = { retain_graph = opts } end  -- torch's backward(gradient, retain_graph)
  if opts ~= nil and type(opts) ~= 'table' then
    error(('backward: options must be a table such as {retain_graph=true}, got %s'):format(type(opts)), 3)
  end
  opts = opts or {}
  if not needs(root) then
    error('backward: the tensor does not require grad and has no graph (did you forget requires_grad_()?)', 3)
  end
  if grad == nil then
    if root:numel() ~= 1 then
      error(('backward: the tensor has %d elements; give the gradient explicitly for a non-scalar'):format(root:numel()), 3)
    end
    grad = tide.ones_like(root)
  elseif not is_tensor(grad) then
    grad = tide.full_like(root, grad)
  else
    local gs, rs = grad:shape(), root:shape()
    if #gs ~= #rs then error('backward: gradient shape does not match the tensor', 3) end
    for i = 1, #gs do if gs[i] ~= rs[i] then error('backward: gradient shape does not match the tensor', 3) end end
  end
  if in_backward then
    error('backward: called from inside another backward (a gradient hook or callback); ' ..
      'compute what you need after it returns', 3)
  end
  local root_node = rawget(root, '_node')
  if root_node == nil then  -- a leaf
    callbacks, in_backward = {}, true
    local ok, err = pcall(no_grad, function()
      accumulate_leaf(root, grad)
      if rawget(root, '_grad_hooks') then run_grad_hooks(root) end
    end)
    if not ok then callbacks, in_backward = nil, false; error(err, 0) end
    run_callbacks()
    return
  end
  -- the graph must be whole before anything runs (an error leaves it as it was)
  local order = topo_order({ root_node }, 3)
  callbacks, in_backward = {}, true
  -- gradients are computed in the dtypes the forward chose: autocast is off
  -- in backward (a backward called inside tide.autocast included), as in torch
  local amp = tide.amp
  local amp_mode = amp and amp.set_mode(nil)
  local pending = {}
  add_pending(pending, root_node, root, grad)
  local ok, err = pcall(no_grad, execute, order, pending, opts.retain_graph)
  if amp then amp.set_mode(amp_mode) end
  if not ok then callbacks, in_backward = nil, false; error(err, 0) end
  run_callbacks()
end
M.backward = backward

-- custom functions -------------------------------------------------------------

-- tide.autograd.Function{forward = function(ctx, ...) ... end,
--                        backward = function(ctx, grad_out) return grad_1, ... end}
-- returns a callable; forward runs without recording, backward gets one
-- gradient per forward argument (nil for non-tensors or no gradient).
function M.Function(def)
  if type(def) ~= 'table' or type(def.forward) ~= 'function' or type(def.backward) ~= 'function' then
    error('Function: expected a table with forward and backward functions', 2)
  end
  local fn = {}
  local fname = def.name or 'Function'
  local function apply(...)
    local ctx = {}
    local snap
    function ctx.save_for_backward(_, ...)
      ctx.saved_tensors = { ... }
      snap = snapshot({ n = select('#', ...), ... }, 'saved tensor ')
    end
    local args = { ... }
    local n = select('#', ...)
    local out = no_grad(def.forward, ctx, ...)
    if not is_tensor(out) then error('Function: forward must return a tensor', 2) end
    local any = false
    for i = 1, n do if needs(args[i]) then any = true end end
    if enabled and any then
      local inputs = { n = n }
      for i = 1, n do inputs[i] = is_tensor(args[i]) and args[i] or false end
      record(fname, out, inputs, function(g)
        if snap then check_saved(fname, snap, 0) end
        local grads = { def.backward(ctx, g) }
        ctx.saved_tensors = nil
        -- a gradient must look like its input: a wrong one would otherwise
        -- accumulate into .grad with the wrong shape or type
        for i = 1, n do
          local gi, x = grads[i], inputs[i]
          if gi ~= nil and x and needs(x) then
            if not is_tensor(gi) then
              error(('%s: backward returned a %s for input %d; expected a tensor (or nil for no gradient)')
                :format(fname, type(gi), i), 0)
            end
            local gs, xs = gi:shape(), x:shape()
            local same = #gs == #xs
            for k = 1, #xs do same = same and gs[k] == xs[k] end
            if not same then
              error(('%s: backward returned a gradient of shape [%s] for input %d of shape [%s]')
                :format(fname, table.concat(gs, ', '), i, table.concat(xs, ', ')), 0)
            end
            if gi:dtype() ~= x:dtype() then
              error(('%s: backward returned a %s gradient for input %d of dtype %s')
                :format(fname, gi:dtype(), i, x:dtype()), 0)
            end
          end
        end
        return unpack(grads, 1, n)
      end, false)
    end
    return out
  end
  fn.apply = function(_, ...) return apply(...) end
  return setmetatable(fn, { __call = function(_, ...) return apply(...) end })
end

-- gradient checkpointing ------------------------------------------------------------

-- tide.checkpoint(fn, ...): fn(...)'s results, with fn's graph not kept:
-- forward runs fn with grad mode off, so only the arguments are held; the
-- backward runs fn again with grad mode on, on detached copies of the tensor
-- arguments, back-propagates the incoming gradients through that graph (the
-- parameters fn uses get their .grad there) and hands on the arguments'
-- gradients. As torch.utils.checkpoint (use_reentrant=False): the default
-- generator's state (one Philox stream for the CPU and CUDA) is saved before
-- fn and set again for the recompute, so dropout draws the same masks, and
-- restored after it; the autocast mode is captured and the recompute runs
-- under it. fn may return several results; non-tensor arguments and results
-- pass through; float tensor results get gradients. When no argument requires
-- grad, fn runs once with grad mode on to see whether a parameter inside
-- does; if so its graph is dropped and recomputed in backward all the same.
-- The arguments must not be modified in place before backward (checked).
local function pack(...) return { n = select('#', ...), ... } end

function M.checkpoint(fn, ...)
  if type(fn) ~= 'function' and not (type(fn) == 'table' and getmetatable(fn) and getmetatable(fn).__call) then
    error('checkpoint: expected a function (or a callable module), got ' .. type(fn), 2)
  end
  if not enabled then return fn(...) end
  local n = select('#', ...)
  local args = { n = n, ... }
  local any = false
  for i = 1, n do if needs(args[i]) then any = true; break end end
  local amp = tide.amp
  local amp_mode = amp and amp.get_mode()
  local gen = tide.default_generator
  local rng = gen:get_state()
  local res
  if any then res = pack(no_grad(fn, ...)) else res = pack(fn(...)) end
  -- the float tensor results that get a node (each as a new handle: fn may
  -- return an argument itself, whose own graph must stay as it is)
  local outs = {}
  for i = 1, res.n do
    local r = res[i]
    if is_tensor(r) and r:is_floating_point() and (any or needs(r)) then
      local h = r:detach()
      res[i] = h
      outs[#outs + 1] = { i, h }
    end
  end
  if #outs == 0 then return unpack(res, 1, res.n) end
  -- the probe run recorded a graph: it is dropped with r's old handles
  local inputs = { n = n }
  for i = 1, n do inputs[i] = is_tensor(args[i]) and args[i] or false end
  local dummy
  if not any then
    -- nothing to differentiate reaches the node but the parameters inside:
    -- a leaf that requires grad keeps it in the graph
    dummy = tide.zeros({}, { device = outs[1][2].device }):requires_grad_(true)
    inputs.n = n + 1
    inputs[n + 1] = dummy
  end
  local grads_out = {}

  -- recomputes fn and back-propagates grads_out through it; returns the
  -- arguments' gradients
  local function recompute()
    local detached = {}
    for i = 1, n do
      local a = args[i]
      if is_tensor(a) then
        local d = a:detach()
        if needs(a) then rawset(d, 'requires_grad', true) end
        detached[i] = d
      else
        detached[i] = a
      end
    end
    local now = gen:get_state()
    local prev_enabled, prev_amp = enabled, amp and amp.set_mode(amp_mode)
    gen:set_state(rng)
    enabled = true
    local ok, r = pcall(function() return pack(fn(unpack(detached, 1, n))) end)
    enabled = prev_enabled
    if amp then amp.set_mode(prev_amp) end
    gen:set_state(now)
    if not ok then error(r, 0) end
    local roots, pending, leaves = {}, {}, {}
    for k, e in ipairs(outs) do
      local g = grads_out[k]
      local o = r[e[1]]
      if g ~= nil and is_tensor(o) and needs(o) then
        local on = rawget(o, '_node')
        if on then
          if pending[on] == nil then roots[#roots + 1] = on end
          add_pending(pending, on, o, g)
        else
          leaves[#leaves + 1] = { o, g }  -- fn returned an argument (or a parameter) itself
        end
      end
    end
    for _, l in ipairs(leaves) do accumulate_leaf(l[1], l[2]) end
    execute(topo_order(roots, 1), pending, false)
    local gin = {}
    for i = 1, n do
      if is_tensor(detached[i]) and needs(args[i]) then gin[i] = rawget(detached[i], 'grad') end
    end
    return unpack(gin, 1, n)
  end

  if #outs == 1 then
    record('checkpoint', outs[1][2], inputs, function(g)
      grads_out[1] = g
      return recompute()
    end, args)
  else
    -- several results: each result's node passes its gradient to one
    -- shared node (the anchor's), which runs after all of them (they all
    -- consume it) and recomputes once
    local zero = tide.zeros({}, { device = outs[1][2].device })
    local anchor = record('checkpoint', tide.zeros({}, { device = outs[1][2].device }), inputs, function()
      return recompute()
    end, args)
    for k, e in ipairs(outs) do
      record('checkpoint output ' .. e[1], e[2], { n = 1, anchor }, function(g)
        grads_out[k] = g
        return zero
      end, false)
    end
  end
  return unpack(res, 1, res.n)
end

-- gradcheck --------------------------------------------------------------------

-- Compares backward's gradients of fn(inputs...) with central differences in
-- f64. Every input must be an f64 tensor; those with requires_grad are checked.
-- A non-scalar output is projected on fixed pseudo-random weights first.
-- Returns true, or raises an error naming the input and element that differ.
function M.gradcheck(fn, inputs, opts)
  opts = opts or {}
  local eps, atol, rtol = opts.eps or 1e-6, opts.atol or 1e-5, opts.rtol or 1e-3
  if type(inputs) ~= 'table' then error('gradcheck: inputs must be a list of tensors', 2) end
  for i, x in ipairs(inputs) do
    if is_tensor(x) and x:dtype() ~= 'f64' then
      error(('gradcheck: input %d is %s; gradcheck needs f64 tensors'):format(i, x:dtype()), 2)
    end
  end
  local weights
  local function scalar_of(out)
    if out:numel() == 1 then return out:sum() end
    if weights == nil then
      local n, s = out:numel(), 12345
      local w = {}
      for k = 1, n do
        s = (s * 1103515245 + 12345) % 2147483648
        w[k] = s / 2147483648 - 0.5
      end
      weights = tide.tensor(w, { dtype = 'f64', device = out.device }):view(out:shape())
    end
    return (out:to('f64') * weights):sum()
  end
  -- analytic
  for _, x in ipairs(inputs) do if needs(x) then rawset(x, 'grad', nil) end end
  local out = fn(unpack(inputs))
  if not is_tensor(out) then error('gradcheck: fn must return a tensor', 2) end
  scalar_of(out):backward()
  -- numeric, element by element of each contiguous input
  for i, x in ipairs(inputs) do
    if needs(x) then
      if not x:is_contiguous() then error(('gradcheck: input %d must be contiguous'):format(i), 2) end
      local analytic = rawget(x, 'grad')
      local ga = analytic and analytic:contiguous() or tide.zeros_like(x)
      -- elements are read and written through ops (views, fill_, item), so
      -- this holds on any device; views outside the graph, as fill_ wants
      local fa, fx = no_grad(function() return ga:reshape(-1), x:detach():reshape(-1) end)
      for k = 0, x:numel() - 1 do
        local at = fx:select(1, k + 1)
        local orig = at:item()
        no_grad(at.fill_, at, orig + eps)
        local fp = no_grad(function() return scalar_of(fn(unpack(inputs))):item() end)
        no_grad(at.fill_, at, orig - eps)
        local fm = no_grad(function() return scalar_of(fn(unpack(inputs))):item() end)
        no_grad(at.fill_, at, orig)
        local numeric = (fp - fm) / (2 * eps)
        local a = fa:select(1, k + 1):item()
        if math.abs(a - numeric) > atol + rtol * math.abs(numeric) then
          error(('gradcheck: input %d, element %d: backward gives %.10g, finite differences %.10g')
            :format(i, k + 1, a, numeric), 2)
        end
      end
    end
  end
  return true
end

-- installing --------------------------------------------------------------------

function M.install(t, c)
  tide, core = t, c
  Tensor, is_tensor = c.Tensor, c.is_tensor
  tide.autograd = M
  tide.no_grad = no_grad
  tide.checkpoint = M.checkpoint
  tide.is_grad_enabled = M.is_grad_enabled
  tide.set_grad_enabled = M.set_grad_enabled

  function Tensor:backward(grad, opts) backward(self, grad, opts) end

  function Tensor:requires_grad_(on)
    if on == nil then on = true end
    if on and not self:is_floating_point() then
      error(('requires_grad_: only floating-point tensors can require grad (this one is %s)'):format(self:dtype()), 2)
    end
    if not on and rawget(self, '_node') then
      error('requires_grad_: cannot turn off grad on a non-leaf tensor; use detach()', 2)
    end
    rawset(self, 'requires_grad', on and true or nil)
    return self
  end

  -- a new tensor sharing storage with this one, outside the graph
  -- (a new handle with the same geometry: a second ffi.gc on the same cdata
  -- would replace the first finaliser and leak a reference)
  function Tensor:detach()
    local c = self._c
    return core.call(require('tide.C').tide_as_strided, c, c.ndim, c.shape, c.stride, c.offset, core.out1)
  end

  function Tensor:is_leaf() return rawget(self, '_node') == nil end

  -- t:register_post_accumulate_grad_hook(fn): fn(t) runs after each backward
  -- once t.grad holds all that backward adds to it (a leaf that requires
  -- grad only, as in torch). Returns a handle whose remove() unregisters it.
  function Tensor:register_post_accumulate_grad_hook(fn)
    if type(fn) ~= 'function' then
      error('register_post_accumulate_grad_hook: expected a function, got ' .. type(fn), 2)
    end
    if rawget(self, 'requires_grad') ~= true or rawget(self, '_node') ~= nil then
      error('register_post_accumulate_grad_hook: only a leaf tensor that requires grad has an accumulated gradient', 2)
    end
    local hooks = rawget(self, '_grad_hooks')
    if hooks == nil then hooks = {}; rawset(self, '_grad_hooks', hooks) end
    local entry = { fn = fn }
    hooks[#hooks + 1] = entry
    local t = self
    return { remove = function()
      local hs = rawget(t, '_grad_hooks')
      if hs == nil then return end
      for i = #hs, 1, -1 do if hs[i] == entry then table.remove(hs, i) end end
      if #hs == 0 then rawset(t, '_grad_hooks', nil) end
    end }
  end

  -- every op family has defined its ops (ops/registry.lua): wrap them
  require('tide.ops.registry').install(tide, core, M)
end

return M

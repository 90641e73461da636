-- Autograd: the tape, gradient accumulation, no_grad, detach, custom
-- functions, and gradcheck (central differences in f64) of every
-- differentiable Tensor op, with broadcasting and views.
local T = require 'tide.testing'
local gradcheck = tide.autograd.gradcheck

local rng = T.lcg(2024)
local function param(shape, lo, hi) return T.rand_param(rng, shape, lo, hi) end

-- Runs backward on a scalar (a line cannot start with a parenthesis in Lua).
local function bw(t) t:backward() end

local function check(name, fn, inputs, opts)
  local ok, err = pcall(gradcheck, fn, inputs, opts)
  if not ok then error(name .. ': ' .. tostring(err), 2) end
end

T.test('a first gradient', function()
  local a = tide.tensor({ 1, 2, 3 }, { dtype = 'f64' }):requires_grad_()
  local y = (a * a + a * 3):sum()
  y:backward()
  T.same(a.grad:tolist(), { 5, 7, 9 })
  T.eq(a:is_leaf(), true)
  T.eq(y:is_leaf(), false)
  T.eq(y.requires_grad, true)
end)

T.test('gradients accumulate across backward calls and reset with nil', function()
  local a = tide.tensor({ 1, 2 }, { dtype = 'f64' }):requires_grad_()
  bw((a * 2):sum())
  bw((a * 3):sum())
  T.same(a.grad:tolist(), { 5, 5 })
  a.grad = nil
  bw((a * a):sum())
  T.same(a.grad:tolist(), { 2, 4 })
end)

T.test('a tensor used twice sums its gradients', function()
  local a = tide.tensor({ 2 }, { dtype = 'f64' }):requires_grad_()
  local b = a * a
  local c = b * a + b   -- a^3 + a^2: 3a^2 + 2a = 16
  c:sum():backward()
  T.same(a.grad:tolist(), { 16 })
end)

T.test('the same gradient reaching two leaves is not shared', function()
  local a = tide.zeros(2, { dtype = 'f64' }):requires_grad_()
  local b = tide.zeros(2, { dtype = 'f64' }):requires_grad_()
  bw((a + b):sum())
  a.grad:add_(1)
  T.same(b.grad:tolist(), { 1, 1 })
end)

T.test('no_grad, detach and requires_grad_', function()
  local a = tide.ones(2, { dtype = 'f64' }):requires_grad_()
  local b = tide.no_grad(function() return a * 2 end)
  T.eq(b.requires_grad, nil)
  T.eq(tide.is_grad_enabled(), true)
  local d = a:detach()
  T.eq(d.requires_grad, nil)
  d:fill_(5)  -- shares storage
  T.same(a:tolist(), { 5, 5 })
  T.raises(function() tide.arange(3):requires_grad_() end, 'only floating-point tensors can require grad')
  -- an error inside no_grad restores grad mode
  pcall(tide.no_grad, function() error('x') end)
  T.eq(tide.is_grad_enabled(), true)
end)

T.test('backward needs a scalar or an explicit gradient', function()
  local a = tide.ones(3, { dtype = 'f64' }):requires_grad_()
  local y = a * 2
  T.raises(function() y:backward() end, 'has 3 elements; give the gradient explicitly')
  y:backward(tide.tensor({ 1, 2, 3 }, { dtype = 'f64' }))
  T.same(a.grad:tolist(), { 2, 4, 6 })
  T.raises(function() tide.ones(2):backward() end, 'does not require grad')
end)

T.test('the graph is freed by backward unless retained', function()
  local a = tide.ones(2, { dtype = 'f64' }):requires_grad_()
  local y = (a * a):sum()
  y:backward()
  T.raises(function() y:backward() end, 'already freed')
  local z = (a * a):sum()
  z:backward(nil, { retain_graph = true })
  z:backward()
  T.same(a.grad:tolist(), { 6, 6 })
end)

T.test('saved tensors are released once backward has used them', function()
  collectgarbage('collect')
  local a = tide.randn(256, 256, { dtype = 'f64' }):requires_grad_()
  local y = (a:exp() * a):sum()
  collectgarbage('collect')
  local before = tide.memory().live
  y:backward()
  y = nil
  collectgarbage('collect')
  -- the exp output and the product were held by the graph; now only a and a.grad remain
  T.truthy(tide.memory().live <= before, 'live bytes grew after backward')
end)

T.test('in-place ops on tensors in the graph are refused', function()
  local a = tide.ones(2):requires_grad_()
  T.raises(function() a:add_(1) end, 'add_: in-place operation on a tensor that requires grad')
  T.raises(function() a:fill_(0) end, 'fill_: in-place operation')
  tide.no_grad(function() a:add_(1) end)
  T.same(a:tolist(), { 2, 2 })
end)

T.test('custom functions with their own backward', function()
  local Cube = tide.autograd.Function {
    forward = function(ctx, x)
      ctx:save_for_backward(x)
      return x * x * x
    end,
    backward = function(ctx, g)
      local x = ctx.saved_tensors[1]
      return g * x * x * 3
    end,
  }
  local a = tide.tensor({ 1, 2 }, { dtype = 'f64' }):requires_grad_()
  Cube(a):sum():backward()
  T.same(a.grad:tolist(), { 3, 12 })
  check('Function', function(x) return Cube(x) end, { param({ 3 }) })
  T.raises(function() tide.autograd.Function({}) end, 'expected a table with forward and backward')
end)

T.test('gradcheck catches a wrong backward', function()
  local Bad = tide.autograd.Function {
    forward = function(_, x) return x * 2 end,
    backward = function(_, g) return g * 3 end,
  }
  T.raises(function() gradcheck(function(x) return Bad(x) end, { param({ 2 }) }) end, 'backward gives')
  T.raises(function() gradcheck(function(x) return x end, { tide.ones(2):requires_grad_() }) end, 'needs f64')
end)

T.test('gradcheck: arithmetic with broadcasting and numbers', function()
  check('add', function(a, b) return a + b end, { param({ 3, 1 }), param({ 4 }) })
  check('add alpha', function(a, b) return a:add(b, { alpha = 2.5 }) end, { param({ 2, 3 }), param({ 3 }) })
  check('sub', function(a, b) return a - b end, { param({ 2, 3 }), param({ 1, 3 }) })
  check('sub alpha', function(a, b) return a:sub(b, { alpha = -1.5 }) end, { param({ 2, 3 }), param({ 2, 3 }) })
  check('mul', function(a, b) return a * b end, { param({ 2, 1, 3 }), param({ 4, 1 }) })
  check('div', function(a, b) return a / b end, { param({ 3, 2 }), param({ 2 }, 0.5, 2) })
  check('pow tensor', function(a, b) return a ^ b end, { param({ 4 }, 0.5, 2), param({ 4 }) })
  check('pow number', function(a) return a ^ 3 end, { param({ 4 }) })
  check('number first', function(a) return (2 - a) * (3 / (a + 4)) + (1 + a) end, { param({ 3 }) })
  check('pow number base', function(a) return 2 ^ a end, { param({ 3 }) })
  check('neg', function(a) return -a end, { param({ 3 }) })
  check('maximum', function(a, b) return a:maximum(b) end, { param({ 5 }), param({ 5 }) })
  check('minimum', function(a, b) return a:minimum(b) end, { param({ 2, 3 }), param({ 3 }) })
  check('0-d', function(a, b) return a * b end, { param({}), param({ 2, 2 }) })
end)

T.test('gradcheck: unary ops', function()
  local x = param({ 2, 3 }, 0.2, 1.5)
  for _, name in ipairs { 'exp', 'log', 'sqrt', 'rsqrt', 'tanh', 'sigmoid', 'sin', 'cos', 'log1p', 'expm1',
                          'square', 'reciprocal', 'abs' } do
    check(name, function(a) return a[name](a) end, { x })
  end
  local y = param({ 7 }, -2, 2)
  check('relu', function(a) return a:relu() end, { y })
  check('clamp', function(a) return a:clamp(-0.5, 0.7) end, { y })
  check('clamp min', function(a) return a:clamp(-0.5) end, { y })
end)

T.test('gradcheck: reductions', function()
  local x = param({ 3, 4, 2 })
  check('sum', function(a) return a:sum() end, { x })
  check('sum dim', function(a) return a:sum(2) end, { x })
  check('sum keepdim', function(a) return a:sum(-1, true) end, { x })
  check('sum dims', function(a) return a:sum({ 1, 3 }) end, { x })
  check('mean', function(a) return a:mean() end, { x })
  check('mean dim', function(a) return a:mean(1, true) end, { x })
  check('max', function(a) return a:max() end, { x })
  check('max dim', function(a) local v = a:max(2); return v end, { x })
  check('min dim keepdim', function(a) local v = a:min(-1, true); return v end, { x })
  check('amax', function(a) return a:amax(3) end, { x })
  check('cumsum', function(a) return a:cumsum(2) end, { x })
  check('var', function(a) return a:var(2) end, { x })
  check('var biased keepdim', function(a) return a:var(1, { unbiased = false, keepdim = true }) end, { x })
  check('std all', function(a) return a:std() end, { x })
  check('logsumexp', function(a) return a:logsumexp(2) end, { x })
  check('logsumexp keepdim', function(a) return a:logsumexp(-1, true) end, { x })
  check('sort values', function(a) local v = a:sort(2); return v end, { x })
  check('topk values', function(a) local v = a:topk(2, 1); return v end, { x })
  T.raises(function() x:prod() end, 'prod: no gradient is implemented')
  -- ties share the gradient evenly
  local t = tide.tensor({ 1, 3, 3 }, { dtype = 'f64' }):requires_grad_()
  t:max():backward()
  T.same(t.grad:tolist(), { 0, 0.5, 0.5 })
end)

T.test('gradcheck: matrix products', function()
  check('matmul 2d', function(a, b) return a:matmul(b) end, { param({ 3, 4 }), param({ 4, 2 }) })
  check('matmul batched broadcast', function(a, b) return a:matmul(b) end, { param({ 2, 3, 4 }), param({ 4, 5 }) })
  check('matmul vec', function(a, b) return a:matmul(b) end, { param({ 3, 4 }), param({ 4 }) })
  check('vec matmul', function(a, b) return a:matmul(b) end, { param({ 4 }), param({ 4, 2 }) })
  check('dot', function(a, b) return a:dot(b) end, { param({ 5 }), param({ 5 }) })
  check('transposed operand', function(a, b) return a:matmul(b:t()) end, { param({ 3, 4 }), param({ 2, 4 }) })
  check('bmm', function(a, b) return a:bmm(b) end, { param({ 2, 3, 4 }), param({ 2, 4, 2 }) })
  check('outer', function(a, b) return a:outer(b) end, { param({ 3 }), param({ 2 }) })
end)

T.test('gradcheck: views', function()
  local x = param({ 2, 3, 4 })
  check('view', function(a) return a:view(6, 4) * 2 end, { x })
  check('reshape of a transpose', function(a) return a:transpose(1, 3):reshape(4, 6) end, { x })
  check('permute', function(a) return a:permute(3, 1, 2) * tide.arange(3):to('f64') end, { x })
  check('narrow', function(a) return a:narrow(3, 2, 2) end, { x })
  check('select', function(a) return a:select(2, -1) end, { x })
  check('expand', function(a) return a:expand(3, 4, 2) end, { param({ 4, 1 }) })
  check('unsqueeze/squeeze', function(a) return a:unsqueeze(1):squeeze(1) end, { x })
  check('flatten', function(a) return a:flatten(2) end, { x })
  check('t', function(a) return a:t() end, { param({ 2, 3 }) })
  check('contiguous', function(a) return a:t():contiguous() end, { param({ 2, 3 }) })
  check('index', function(a) return a[2][1] end, { x })
  check('split', function(a) local p = a:split(2, 3); return p[2] * p[1] end, { x })
  check('chunk', function(a) local p = a:chunk(3, 2); return p[3] end, { x })
  check('to f64', function(a) return a:to('f64') * 1 end, { x })
end)

T.test('gradcheck: indexing, joining, where and masks', function()
  local x = param({ 4, 3 })
  local idx = tide.tensor({ 2, 0, 2 })
  check('index_select', function(a) return a:index_select(1, idx) end, { x })
  check('index_select dim 2', function(a) return a:index_select(2, tide.tensor({ 1, 1 })) end, { x })
  check('gather', function(a) return a:gather(2, tide.tensor({ { 0, 2 }, { 1, 1 }, { 2, 0 }, { 0, 0 } })) end, { x })
  check('cat', function(a, b) return tide.cat({ a, b }, 1) end, { param({ 2, 3 }), param({ 1, 3 }) })
  check('stack', function(a, b) return tide.stack({ a, b }, 2) end, { param({ 2, 3 }), param({ 2, 3 }) })
  local cond = tide.tensor({ { true, false, true } })
  check('where', function(a, b) return tide.where(cond, a, b) end, { param({ 2, 3 }), param({ 3 }) })
  check('where method', function(a, b) return a:where(cond, b) end, { param({ 2, 3 }), param({ 2, 3 }) })
  check('masked_fill', function(a) return a:masked_fill(cond, 0) end, { param({ 2, 3 }) })
end)

T.test('a loss built from ops trains: gradient descent lowers it', function()
  tide.manual_seed(3)
  local x = tide.randn(64, 3)
  local w_true = tide.tensor({ { 1.5 }, { -2 }, { 0.5 } })
  local y = x:matmul(w_true)
  local w = tide.zeros(3, 1):requires_grad_()
  local first, last
  for step = 1, 100 do
    local loss = ((x:matmul(w) - y) ^ 2):mean()
    if step == 1 then first = loss:item() end
    last = loss:item()
    w.grad = nil
    loss:backward()
    tide.no_grad(function() w:sub_(w.grad * 0.1) end)
  end
  T.truthy(last < first * 1e-3, ('loss went from %g to %g'):format(first, last))
end)

T.test('a saved tensor modified in place before backward is an error naming the op', function()
  -- both once gave zero gradients silently
  local w = tide.ones(3):requires_grad_()
  local x = tide.tensor({ 1.5, 2, 3 })
  local y = w * x
  x:mul_(0)
  T.raises(function() y:sum():backward() end, 'backward: a tensor that mul saved for its gradient (argument 2, shape [3], f32)')
  local a = tide.ones(3):requires_grad_()
  local b = a:exp()
  b:detach():fill_(0)  -- detach shares storage, so it shares the version
  T.raises(function() b:sum():backward() end, 'a tensor that exp saved for its gradient (its output')
  -- a view's write is the storage's write
  local p = tide.ones(2, 2):requires_grad_()
  local q = tide.ones(2, 2)
  local r = p:matmul(q)
  q[1]:fill_(5)
  T.raises(function() r:sum():backward() end, 'matmul saved')
  local ids = tide.tensor({ 0, 1 })
  local emb = tide.F.embedding(ids, tide.ones(3, 2):requires_grad_())
  ids:fill_(2)
  T.raises(function() emb:sum():backward() end, 'embedding saved for its gradient (saved tensor 1')
  -- ops whose gradient reads no value still work, as in PyTorch
  local c = tide.ones(3):requires_grad_()
  local d = tide.ones(3)
  local e = c + d
  d:zero_()
  e:sum():backward()
  T.same(c.grad:tolist(), { 1, 1, 1 })
  -- after backward, in-place changes are fine
  local f = tide.ones(2):requires_grad_()
  local h = tide.ones(2)
  local k = f * h
  k:sum():backward()
  h:zero_()
  T.same(f.grad:tolist(), { 1, 1 })
  -- a custom function's saved tensors are checked too
  local Sq = tide.autograd.Function {
    name = 'Sq',
    forward = function(ctx, x) ctx:save_for_backward(x); return x * x end,
    backward = function(ctx, g) local x = ctx.saved_tensors[1]; return g * x * 2 end,
  }
  local s0 = tide.ones(2):requires_grad_()
  local s1 = Sq(s0)
  tide.no_grad(function() s0:mul_(3) end)
  T.raises(function() s1:sum():backward() end, 'a tensor that Sq saved for its gradient (saved tensor 1')
end)

T.test('backward takes an options table; bad arguments say what is wrong', function()
  local c = tide.ones(3):requires_grad_()
  local d = c * 2
  d:sum():backward({ retain_graph = true })
  d:sum():backward()
  T.same(c.grad:tolist(), { 4, 4, 4 })
  local e = (c * 2):sum()
  T.raises(function() e:backward('x') end, 'backward: the gradient must be a tensor or a number, got string')
  T.raises(function() e:backward(nil, 'x') end, 'backward: options must be a table')
  local g = c * 3
  g:backward(tide.ones(3), { retain_graph = true })
  g:backward(tide.ones(3), true)  -- torch's positional retain_graph
  g:backward(tide.ones(3))
  T.raises(function() g:backward(tide.ones(3)) end, 'the graph was already freed')
end)

T.test('a custom backward returning the wrong gradient is an error naming the function and input', function()
  local function fn(name, back)
    return tide.autograd.Function { name = name, forward = function(_, x) return x * 2 end, backward = back }
  end
  local x = tide.ones(3):requires_grad_()
  -- a [5] gradient for a [3] input once landed in x.grad
  T.raises(function() fn('Wide', function() return tide.ones(5) end)(x):sum():backward() end,
    'Wide: backward returned a gradient of shape [5] for input 1 of shape [3]')
  T.raises(function() fn('Str', function() return 'oops' end)(x):sum():backward() end,
    'Str: backward returned a string for input 1; expected a tensor')
  T.raises(function() fn('F64', function(_, g) return g:double() end)(x):sum():backward() end,
    'F64: backward returned a f64 gradient for input 1 of dtype f32')
  T.eq(x.grad, nil)
end)

T.test('a post-accumulate-grad hook runs once, after the last contribution to the leaf', function()
  -- w feeds three ops (as GPT-2's tied wte feeds the embedding and the head):
  -- the hook must see the whole sum, not the first term
  local w = tide.tensor({ 1, 2 }, { dtype = 'f64' }):requires_grad_()
  local b = tide.tensor({ 3, 4 }, { dtype = 'f64' }):requires_grad_()
  local seen, order = {}, {}
  w:register_post_accumulate_grad_hook(function(t)
    seen[#seen + 1] = t.grad:tolist()
    order[#order + 1] = 'w'
  end)
  local hb = b:register_post_accumulate_grad_hook(function() order[#order + 1] = 'b' end)
  local y = ((w * 2 + b) * w):sum() + (w * w):sum()
  y:backward()
  T.eq(#seen, 1)
  T.same(seen[1], w.grad:tolist())
  -- d/dw (2w^2 + b w + w^2) = 6w + b
  T.same(w.grad:tolist(), { 9, 16 })
  T.same(order, { 'b', 'w' })  -- b's last use is later in the forward, so it completes first
  -- a second backward accumulates, and the hook sees the total
  bw((w * 5):sum())
  T.same(seen[2], { 14, 21 })
  hb.remove()
  bw(b:sum())
  T.eq(#order, 3)  -- b's hook is gone; w got nothing, so its hook did not run
  T.same(b.grad:tolist(), { 2, 3 })
end)

T.test('a hooked leaf that gets no gradient in a backward does not run its hook', function()
  local a = tide.ones(2):requires_grad_()
  local u = tide.ones(2):requires_grad_()
  local n = 0
  u:register_post_accumulate_grad_hook(function() n = n + 1 end)
  -- u is in the graph but its branch gets no gradient (x * 0 still flows):
  -- only ops whose backward returns nil for it skip it; here the root is a
  -- and u is unused
  bw((a * 2):sum())
  T.eq(n, 0)
  -- backward of a leaf itself runs its hooks
  u:backward(tide.ones(2))
  T.eq(n, 1)
  T.same(u.grad:tolist(), { 1, 1 })
end)

T.test('queue_callback runs after every hook of the backward, and only inside one', function()
  local a = tide.ones(2):requires_grad_()
  local b = tide.ones(2):requires_grad_()
  local log = {}
  local queued = false
  for name, t in pairs({ a = a, b = b }) do
    t:register_post_accumulate_grad_hook(function()
      log[#log + 1] = name
      if not queued then
        queued = true
        tide.autograd.queue_callback(function() log[#log + 1] = 'end' end)
      end
    end)
  end
  bw((a * b):sum())
  T.eq(#log, 3)
  T.eq(log[3], 'end')
  T.raises(function() tide.autograd.queue_callback(function() end) end, 'only a backward pass')
  -- an error in a hook propagates, and the next backward starts clean
  local c = tide.ones(1):requires_grad_()
  c:register_post_accumulate_grad_hook(function() error('hook failed') end)
  T.raises(function() (c * 2):sum():backward() end, 'hook failed')
  local d = tide.ones(1):requires_grad_()
  bw((d * 2):sum())
  T.same(d.grad:tolist(), { 2 })
  T.raises(function() (d * 2):register_post_accumulate_grad_hook(function() end) end, 'only a leaf')
  T.raises(function() tide.ones(1):register_post_accumulate_grad_hook(function() end) end, 'only a leaf')
end)

-- Mixed precision as PyTorch's autocast: parameters, their gradients and the
-- optimizer's moments stay f32 (the f32 parameters are the master weights);
-- inside tide.autocast('bf16', fn, ...) the matmul-like ops read a bf16 copy
-- ("shadow") of each parameter and bf16 activations, so activations are
-- bf16, while norms, softmax and the loss compute in f32 inside their kernels.
--
--   local out = tide.autocast('bf16', model, ids, { labels = ids })
--   out.loss:backward()       -- grads arrive in p.grad as f32
--
-- bf16 has f32's 8-bit exponent, so gradients neither underflow nor overflow
-- where f32's would not: no loss scaling (no GradScaler) is needed.
--
-- Shadow protocol (shared with the fused AdamW): rawget(p, '_bf16') is p's
-- bf16 shadow (same shape, contiguous, on p's device) and
-- rawget(p, '_bf16_version') the version of p (tide_tensor_version) it was
-- written from. tide.amp.param(p) re-casts only when p's version differs, so
-- an optimizer that writes the shadow in its own pass and sets the version
-- makes the cast free; one cast per optimizer step otherwise.
--
-- What autocast does to each op's float arguments (f32 ones; f64, f16 and
-- bf16 pass unchanged, as torch casts only float32):
--
--   op                                  activations        parameters (p)        result
--   F.linear, F.conv1d_gpt2, matmul,    cast to bf16       shadow                bf16
--   mm, bmm (tensor methods and tide.*)
--   F.gelu_conv1d_gpt2                  gelu, then bf16    shadow                bf16
--   F.scaled_dot_product_attention      cast to bf16       -                     bf16 (flash on CUDA)
--   F.embedding, F.gpt2_embedding       (ids)              shadow                bf16
--   F.layer_norm, F.residual_layer_norm as given           shadow if x is bf16   x's dtype, f32 math
--   F.layer_norm_conv1d_gpt2            as given           as the two ops        bf16
--   F.softmax, F.log_softmax, gelu      as given           -                     x's dtype, f32 math
--   F.cross_entropy                     as given           -                     f32 loss (f32 math)
--
-- layer_norm keeps an f32 input f32 (torch runs it in f32 under autocast);
-- the bf16 residual stream of GPT-2 gets bf16 outputs with f32 statistics.
-- cross_entropy: torch's autocast converts bf16 logits to f32 first (a copy
-- of B*T*V); tide's kernels read bf16 logits in place and are asked for an
-- f32 loss instead (F.cross_entropy's dtype option).
local C = require 'tide.C'

local M = {}

local tide, core, is_tensor
local mode = nil  -- nil (off) or 'bf16'

local function version(x) return tonumber(C.tide_tensor_version(x._c)) end

-- tide.amp.is_autocast() / tide.amp.dtype(): whether autocast is on, its dtype ('bf16' or nil).
function M.is_autocast() return mode ~= nil end
function M.dtype() return mode end

local function parse_mode(dtype, level)
  if dtype == nil or dtype == 'f32' or dtype == 'fp32' or dtype == 'float32' or dtype == false then return nil end
  if dtype == 'bf16' or dtype == 'bfloat16' then return 'bf16' end
  error(("autocast: dtype must be 'bf16' (autocast on) or 'f32'/nil (off), got %s"):format(
    type(dtype) == 'string' and ('%q'):format(dtype) or tostring(dtype)), level + 1)
end

-- tide.autocast(dtype, fn, ...): runs fn(...) with autocast in mode dtype
-- ('bf16'; 'f32' or nil turns it off inside); the previous mode comes back
-- afterwards, also when fn raises. Returns fn's results.
function M.autocast(dtype, fn, ...)
  local new = parse_mode(dtype, 2)
  if type(fn) ~= 'function' and not (type(fn) == 'table' and getmetatable(fn) and getmetatable(fn).__call) then
    error('autocast: expected a function (or a callable module) after the dtype, got ' .. type(fn), 2)
  end
  local prev = mode
  mode = new
  local res = { pcall(fn, ...) }
  mode = prev
  if not res[1] then error(res[2], 0) end
  return unpack(res, 2, table.maxn(res))
end

-- For tide.checkpoint: the mode to capture, and a way to run under one.
function M.set_mode(m) local prev = mode; mode = m; return prev end
function M.get_mode() return mode end

-- p's bf16 shadow, (re)written from p when p changed since it was last written.
local function shadow_of(p)
  local sh = rawget(p, '_bf16')
  local v = version(p)
  if sh ~= nil and rawget(p, '_bf16_version') == v and sh._c.device == p._c.device then
    return sh
  end
  local ok, err = pcall(function()
    if sh ~= nil and sh._c.device == p._c.device and sh:numel() == p:numel() and sh:dim() == p:dim()
        and sh:is_contiguous() and table.concat(sh:shape(), ',') == table.concat(p:shape(), ',') then
      sh:copy_(p)  -- in place: the memory (and an optimizer's pointer to it) stays
    else
      sh = p:detach():to('bf16'):contiguous()
      rawset(p, '_bf16', sh)
    end
  end)
  if not ok then error(err, 0) end
  rawset(p, '_bf16_version', v)
  return sh
end
M.shadow = shadow_of

-- tide.amp.param(p): p outside autocast; inside, p's bf16 shadow, recorded in
-- autograd so that its gradient reaches p converted to p's dtype (f32) and is
-- accumulated in p.grad in f32. Non-float, non-f32 (already bf16, f64, f16)
-- and nil arguments pass through. A non-leaf f32 tensor is cast (x:to('bf16'),
-- differentiable) without a cached shadow.
local function param(p)
  if mode == nil or p == nil or not is_tensor(p) or p._c.dtype ~= C.TIDE_F32 then return p end
  if rawget(p, '_node') ~= nil then return p:to('bf16') end
  local sh = shadow_of(p)
  if not (tide.autograd.is_grad_enabled() and rawget(p, 'requires_grad') == true) then return sh end
  -- a new handle per use, each with its own node: the graph of every
  -- forward (micro-batches, tied weights used twice) is freed on its own
  local h = sh:detach()
  return tide.autograd.record('amp.param', h, { n = 1, p }, function(g)
    return g:to(p:dtype())
  end, false)
end
M.param = param

-- An f32 activation as bf16 under autocast (differentiable), anything else as is.
local function act(x)
  if mode ~= nil and is_tensor(x) and x._c.dtype == C.TIDE_F32 then return x:to('bf16') end
  return x
end
M.cast = act

-- cross_entropy's options under autocast: the loss in f32 (see the table above).
local function f32_loss(opts)
  if opts ~= nil and type(opts) ~= 'table' then return opts end  -- F.cross_entropy reports it
  if opts ~= nil and opts.dtype ~= nil then return opts end
  local o = { dtype = 'f32' }
  for k, v in pairs(opts or {}) do o[k] = v end
  return o
end

-- Wraps tbl[name] so that, under autocast, adjust(...) rewrites its
-- arguments first; outside autocast the op is called as it is.
local function wrap(tbl, name, adjust)
  local raw = tbl[name]
  if raw == nil then return end
  tbl[name] = function(...)
    if mode == nil then return raw(...) end
    return raw(adjust(...))
  end
end

function M.install(t, c)
  tide, core, is_tensor = t, c, c.is_tensor
  tide.amp = M
  tide.autocast = M.autocast
  local F = tide.F
  local function matmul_like(x, w, b, ...) return act(x), param(w), param(b), ... end
  wrap(F, 'linear', matmul_like)
  wrap(F, 'conv1d_gpt2', matmul_like)
  wrap(F, 'embedding', function(ids, w, ...) return ids, param(w), ... end)
  wrap(F, 'gpt2_embedding', function(ids, wte, wpe, ...) return ids, param(wte), param(wpe), ... end)
  wrap(F, 'layer_norm', function(x, ns, w, b, ...)
    if is_tensor(x) and x._c.dtype == C.TIDE_BF16 then return x, ns, param(w), param(b), ... end
    return x, ns, w, b, ...
  end)
  wrap(F, 'residual_layer_norm', function(x, r, w, b, ...)
    -- an f32 stream plus a bf16 branch adds in f32, as torch promotes x + r
    if is_tensor(x) and is_tensor(r) and x._c.dtype ~= r._c.dtype then
      if x._c.dtype == C.TIDE_F32 and r._c.dtype == C.TIDE_BF16 then r = r:to('f32')
      elseif x._c.dtype == C.TIDE_BF16 and r._c.dtype == C.TIDE_F32 then x = x:to('f32') end
    end
    if is_tensor(x) and x._c.dtype == C.TIDE_BF16 then return x, r, param(w), param(b), ... end
    return x, r, w, b, ...
  end)
  -- the recompute ops (tide/recompute.lua): as the layer norm and the product they stand for
  wrap(F, 'gelu_conv1d_gpt2', function(h, w, b, ...) return h, param(w), param(b), ... end)
  wrap(F, 'layer_norm_conv1d_gpt2', function(x, lw, lb, eps, w, b, ...)
    if is_tensor(x) and x._c.dtype == C.TIDE_BF16 then lw, lb = param(lw), param(lb) end
    return x, lw, lb, eps, param(w), param(b), ...
  end)
  wrap(F, 'scaled_dot_product_attention', function(q, k, v, ...) return act(q), act(k), act(v), ... end)
  wrap(F, 'cross_entropy', function(logits, targets, opts, ...) return logits, targets, f32_loss(opts), ... end)
  -- matmul: both operands to bf16 (a parameter through its shadow)
  local function mm2(a, b, ...)
    local function one(x)
      if is_tensor(x) and rawget(x, 'requires_grad') and rawget(x, '_node') == nil then return param(x) end
      return act(x)
    end
    a, b = one(a), one(b)
    return a, b, ...
  end
  for _, name in ipairs { 'matmul', 'mm', 'bmm' } do
    wrap(core.Tensor, name, mm2)
    wrap(tide, name, mm2)
  end
end

return M

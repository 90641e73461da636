-- tide.F: the fused neural-network ops, named as in torch.nn.functional.
-- Forward and backward are C kernels (kernels/cpu/nn_*.c); this file calls
-- them and records the autograd node that links the two.
local ffi = require 'ffi'
local C = require 'tide.C'
local errors = require 'tide.errors'

local M = {}

function M.install(tide, core)
  local F = {}
  tide.F = F
  local ag = tide.autograd
  local is_tensor, wrap, check = core.is_tensor, core.wrap, core.check
  local out1, out2 = core.out1, core.out2
  local out3 = ffi.new('tide_tensor*[1]')
  local record = ag.record

  local function handle(x, what, name)
    if not is_tensor(x) then
      error(('%s: %s must be a tensor, got %s'):format(what, name, type(x)), 3)
    end
    return x._c
  end
  local function opt_handle(x, what, name)
    if x == nil then return nil end
    return handle(x, what, name)
  end

  -- Runs a kernel with out slots and raises its error at the caller of F.*.
  local function run(rc)
    if rc ~= 0 then errors.raise(3) end
  end

  -- linear and Conv1D ---------------------------------------------------------

  -- act: nil, or 'gelu' (the tanh GELU, GPT-2's gelu_new), fused into the layer
  local function act_code(act, what)
    if act == nil then return C.TIDE_ACT_NONE end
    if act == 'gelu' then return C.TIDE_ACT_GELU end
    local shown = type(act) == 'string' and ('%q'):format(act) or type(act)
    error(("%s: act must be nil or 'gelu' (the tanh GELU), got %s"):format(what, shown), 4)
  end

  -- y = act(x @ op(weight) + bias) as one op (tide_linear_act: cuBLASLt's
  -- epilogues on CUDA, the unfused ops' exact arithmetic on the CPU) over x
  -- seen as rows [M, in], so the weight's gradient is one GEMM too; with
  -- 'gelu' the GELU's input is kept for the backward.
  -- (errors name the caller of F.linear / F.conv1d_gpt2: level 4 from here)
  local function layer_handle(t, what, name)
    if t ~= nil and not is_tensor(t) then error(('%s: %s must be a tensor, got %s'):format(what, name, type(t)), 4) end
    return t ~= nil and t._c or nil
  end
  local function layer(what, x, weight, bias, act, transw)
    if x == nil or weight == nil then
      error(('%s: %s must be a tensor, got nil'):format(what, x == nil and 'input' or 'weight'), 3)
    end
    layer_handle(x, what, 'input')
    local cw = layer_handle(weight, what, 'weight')
    local cb = layer_handle(bias, what, 'bias')
    local a = act_code(act, what)
    local shape = x:shape()
    local x2 = #shape == 2 and x or x:reshape(-1, shape[#shape])
    if C.tide_linear_act(x2._c, cw, cb, transw, a, out1, out2) ~= 0 then errors.raise(3) end
    -- read both slots before wrapping: a GC step inside wrap must not race them
    local cy, cpre = out1[0], out2[0]
    local y = wrap(cy)
    local pre = cpre ~= nil and wrap(cpre) or nil
    if ag.wants(x2, weight, bias) then
      record(what, y, { n = 3, x2, weight, bias }, function(g)
        local want_x, want_w = ag.needs(x2), ag.needs(weight)
        local want_b = bias ~= nil and ag.needs(bias)
        run(C.tide_linear_act_backward(g._c, x2._c, cw, pre and pre._c, transw, a, want_x and out1 or nil,
          want_w and out2 or nil, want_b and out3 or nil))
        local dx, dw, db = out1[0], out2[0], out3[0]
        return want_x and wrap(dx) or nil, want_w and wrap(dw) or nil, want_b and wrap(db) or nil
      end, { x2, weight, pre })
    end
    if #shape ~= 2 then
      shape[#shape] = y:size(2)
      y = y:view(shape)
    end
    return y
  end

  -- x [..., in] @ weight^T (weight [out, in]) + bias, then act.
  -- (not tail calls: the frames stay, so errors point at the caller)
  function F.linear(x, weight, bias, act)
    local y = layer('linear', x, weight, bias, act, 1)
    return y
  end

  -- GPT-2's Conv1D: weight [in, out], y = act(x @ weight + bias).
  function F.conv1d_gpt2(x, weight, bias, act)
    local y = layer('conv1d', x, weight, bias, act, 0)
    return y
  end

  -- embedding -------------------------------------------------------------------

  -- F.embedding(ids, weight): rows of weight [V, C] at 0-based ids.
  function F.embedding(ids, weight)
    local ci, cw = handle(ids, 'embedding', 'ids'), handle(weight, 'embedding', 'weight')
    run(C.tide_embedding(cw, ci, out1))
    local out = wrap(out1[0])
    if ag.wants(weight) then
      local V = weight:size(1)
      record('embedding', out, { n = 2, false, weight }, function(g)
        local dw = core.call(C.tide_embedding_backward, g._c, ids._c, V, out1)
        return nil, dw
      end, { ids })
    end
    return out
  end

  -- F.gpt2_embedding(ids, wte, wpe, past): GPT-2's input embedding in one op,
  -- wte[ids] + wpe[positions] for ids [B, T]: positions past..past+T-1 (past
  -- a number, default 0: the positions a KV cache already holds), or a
  -- position_ids tensor [B, T] / [1, T] / [T] in past's place. The same bits
  -- as F.embedding(ids, wte) + F.embedding(positions, wpe) on the CPU.
  function F.gpt2_embedding(ids, wte, wpe, past)
    local ci = handle(ids, 'gpt2_embedding', 'ids')
    local cw, cp = handle(wte, 'gpt2_embedding', 'wte'), handle(wpe, 'gpt2_embedding', 'wpe')
    local pos, npast = nil, 0
    if is_tensor(past) then
      pos = past
    elseif past ~= nil then
      if type(past) ~= 'number' or past < 0 or past % 1 ~= 0 then
        error('gpt2_embedding: past must be a non-negative integer or a position_ids tensor, got ' .. tostring(past), 2)
      end
      npast = past
    end
    local cpos = pos and pos._c or nil
    run(C.tide_gpt2_embedding(ci, cw, cp, cpos, npast, out1))
    local out = wrap(out1[0])
    if ag.wants(wte, wpe) then
      local V, P = wte:size(1), wpe:size(1)
      record('gpt2_embedding', out, { n = 4, false, wte, wpe, false }, function(g)
        local want_te, want_pe = ag.needs(wte), ag.needs(wpe)
        run(C.tide_gpt2_embedding_backward(g._c, ids._c, cpos, npast, V, P,
          want_te and out1 or nil, want_pe and out2 or nil))
        return nil, want_te and wrap(out1[0]) or nil, want_pe and wrap(out2[0]) or nil, nil
      end, { ids, pos })
    end
    return out
  end
  require('tide.ops.registry').def { 'F.gpt2_embedding', forward = F.gpt2_embedding, recorded = true }

  -- layer norm --------------------------------------------------------------------

  -- F.layer_norm(x, normalized_shape, weight, bias, eps): over the last dim.
  function F.layer_norm(x, normalized_shape, weight, bias, eps)
    local cx = handle(x, 'layer_norm', 'input')
    local last = x:size(-1)
    local ns = type(normalized_shape) == 'table' and normalized_shape or { normalized_shape }
    if #ns ~= 1 or ns[1] ~= last then
      error(('layer_norm: normalized_shape must be the last dim {%d}; got {%s}')
        :format(last, table.concat(ns, ', ')), 2)
    end
    local cw, cb = opt_handle(weight, 'layer_norm', 'weight'), opt_handle(bias, 'layer_norm', 'bias')
    run(C.tide_layer_norm(cx, cw, cb, eps or 1e-5, out1, out2, out3))
    local out, mean, rstd = wrap(out1[0]), wrap(out2[0]), wrap(out3[0])
    if ag.wants(x, weight, bias) then
      record('layer_norm', out, { n = 3, x, weight, bias }, function(g)
        local want_w, want_b = weight ~= nil and ag.needs(weight), bias ~= nil and ag.needs(bias)
        run(C.tide_layer_norm_backward(g._c, x._c, cw, mean._c, rstd._c, out1,
          want_w and out2 or nil, want_b and out3 or nil))
        local dx = wrap(out1[0])
        local dw, db
        if want_w then dw = wrap(out2[0]) end
        if want_b then db = wrap(out3[0]) end
        return dx, dw, db
      end)
    end
    return out
  end

  -- F.residual_layer_norm(x, r, weight, bias, eps) -> s, y: s = x + r and
  -- y = layer_norm(s) over the last dim in one pass (r nil: s is x itself).
  -- A transformer's residual stream adds each block's output and normalises
  -- the sum for the next block; fused, the sum is read once instead of three
  -- times. Both outputs carry gradient: dx = dr = ds + layer_norm's dx.
  -- x, r, weight and bias share one dtype; weight and bias may be nil.
  local out4 = ffi.new('tide_tensor*[1]')
  function F.residual_layer_norm(x, r, weight, bias, eps)
    local what = 'residual_layer_norm'
    local cx, cr = handle(x, what, 'x'), opt_handle(r, what, 'r')
    local cw, cb = opt_handle(weight, what, 'weight'), opt_handle(bias, what, 'bias')
    if eps ~= nil and type(eps) ~= 'number' then error(('%s: eps must be a number, got %s'):format(what, type(eps)), 2) end
    run(C.tide_residual_layer_norm(cx, cr, cw, cb, eps or 1e-5, out1, out2, out3, out4))
    local s = r == nil and x or wrap(out1[0])
    local y, mean, rstd = wrap(out2[0]), wrap(out3[0]), wrap(out4[0])
    if not ag.wants(x, r, weight, bias) then return s, y end
    local function grads(ds, dy)
      local want_w, want_b = weight ~= nil and ag.needs(weight), bias ~= nil and ag.needs(bias)
      run(C.tide_residual_layer_norm_backward(ds and ds._c, dy and dy._c, s._c, cw, mean._c, rstd._c, out1,
        (dy and want_w) and out2 or nil, (dy and want_b) and out3 or nil))
      local dx = wrap(out1[0])
      local dw, db
      if dy and want_w then dw = wrap(out2[0]) end
      if dy and want_b then db = wrap(out3[0]) end
      return dx, dw, db
    end
    if r == nil then
      -- s is x: its gradient reaches x through x's own uses; y's node adds layer norm's
      record(what, y, { n = 3, x, weight, bias }, function(dy)
        local dx, dw, db = grads(nil, dy)
        return dx, dw, db
      end, { x, weight })
    else
      ag.record_multi(what, { s, y }, { n = 4, x, r, weight, bias }, function(ds, dy)
        local dx, dw, db = grads(ds, dy)
        return dx, dx, dw, db
      end, { s, weight })
    end
    return s, y
  end

  -- softmax -----------------------------------------------------------------------

  local function softmax(name, log, x, dim)
    local cx = handle(x, name, 'input')
    if dim == nil then error(name .. ': dim is required', 3) end
    local d = core.dim0(dim, x:dim(), name, nil, 2)
    run(C.tide_softmax(cx, d, log, out1))
    local out = wrap(out1[0])
    if ag.wants(x) then
      record(name, out, { n = 1, x }, function(g)
        return core.call(C.tide_softmax_backward, g._c, out._c, d, log, out1)
      end, { out })
    end
    return out
  end
  function F.softmax(x, dim) return softmax('softmax', 0, x, dim) end
  function F.log_softmax(x, dim) return softmax('log_softmax', 1, x, dim) end
  core.Tensor.softmax = function(x, dim) return softmax('softmax', 0, x, dim) end
  core.Tensor.log_softmax = function(x, dim) return softmax('log_softmax', 1, x, dim) end

  function F.gelu(x, approximate) return x:gelu(approximate) end
  function F.relu(x) return x:relu() end
  function F.tanh(x) return x:tanh() end
  function F.sigmoid(x) return x:sigmoid() end

  -- dropout ---------------------------------------------------------------------------

  -- F.dropout(x, p, training, {generator=}): identity unless training and p > 0.
  function F.dropout(x, p, training, opts)
    handle(x, 'dropout', 'input')
    p = p or 0.5
    if type(p) ~= 'number' or p < 0 or p > 1 then
      error(('dropout: p must be in [0, 1], got %s'):format(tostring(p)), 2)
    end
    if training == false or p == 0 then return x end
    local g = opts and opts.generator or tide.default_generator
    run(C.tide_dropout(x._c, p, g._g, out1, out2))
    local out, mask = wrap(out1[0]), wrap(out2[0])
    if ag.wants(x) then
      record('dropout', out, { n = 1, x }, function(gr)
        return core.call(C.tide_dropout_backward, gr._c, mask._c, p, out1)
      end, false)
    end
    return out
  end

  -- attention --------------------------------------------------------------------------

  -- F.scaled_dot_product_attention(q, k, v, {is_causal=false, scale=1/sqrt(D), key_mask=nil, q_offset=0})
  -- with q [B, H, T, D], k and v [B, H, S, D]. key_mask [B, S] (bool or
  -- integers, nonzero = may be attended; Hugging Face's attention_mask)
  -- hides padding keys; a query left no key at all gets zeros. With
  -- is_causal, query t sees keys s <= t + q_offset: q_offset (an integer,
  -- the position of the first query among the keys) 0 is PyTorch's top-left
  -- is_causal, S - T the bottom-right mask of decoding over a KV cache (the
  -- queries are the last T of the S positions); q_offset > 0 needs is_causal
  -- and q_offset + T <= S.
  local sdpa_opts = { is_causal = true, scale = true, key_mask = true, q_offset = true }
  function F.scaled_dot_product_attention(q, k, v, opts)
    local cq, ck, cv = handle(q, 'attention', 'q'), handle(k, 'attention', 'k'), handle(v, 'attention', 'v')
    opts = opts or {}
    if type(opts) ~= 'table' then error('scaled_dot_product_attention: options must be a table, got ' .. type(opts), 2) end
    for key in pairs(opts) do
      if not sdpa_opts[key] then error(('scaled_dot_product_attention: unknown option %s'):format(tostring(key)), 2) end
    end
    local causal = opts.is_causal and 1 or 0
    local qoff = opts.q_offset or 0
    if type(qoff) ~= 'number' or qoff ~= math.floor(qoff) or qoff < 0 or qoff >= 2 ^ 53 then
      error(('scaled_dot_product_attention: q_offset must be a non-negative integer, got %s'):format(tostring(opts.q_offset)), 2)
    end
    local scale = opts.scale or 1 / math.sqrt(q:size(-1))
    local mask, cm = opts.key_mask, nil
    if mask ~= nil then
      handle(mask, 'attention', 'key_mask')
      local dt = mask:dtype()
      if dt ~= 'bool' and dt ~= 'u8' then
        if dt == 'f32' or dt == 'f64' or dt == 'bf16' or dt == 'f16' then
          error('scaled_dot_product_attention: key_mask must be bool or integer (nonzero = attend), got ' .. dt, 2)
        end
        mask = mask:ne(0)
      end
      cm = mask._c
    end
    run(C.tide_attention(cq, ck, cv, cm, causal, qoff, scale, out1, out2))
    local out, lse = wrap(out1[0]), wrap(out2[0])
    if ag.wants(q, k, v) then
      -- the backward needs the mask as it was: a caller's tensor may change in place before it runs
      if mask ~= nil and rawequal(mask, opts.key_mask) then mask = mask:clone() end
      record('attention', out, { n = 3, q, k, v }, function(g)
        run(C.tide_attention_backward(g._c, q._c, k._c, v._c, mask and mask._c, out._c, lse._c, causal, qoff, scale, out1, out2, out3))
        return wrap(out1[0]), wrap(out2[0]), wrap(out3[0])
      end)
    end
    return out
  end

  -- F.qkv_attention(qkv, n_head, {is_causal=false, scale=1/sqrt(D), key_mask=nil}):
  -- self-attention over a packed projection qkv [B, T, 3C] laid out as
  -- [q | k | v], each C = n_head * D wide, heads in order (GPT-2's c_attn
  -- output); returns [B, T, C] with the heads merged. The same values as
  -- splitting qkv into head views and calling scaled_dot_product_attention,
  -- without its copies: q, k and v are read in place, the output is written
  -- in [B, T, H, D] order (the merge is a view), and the backward writes the
  -- gradient of qkv as one tensor (no zero-padded piece per split part to add up).
  local qkv_opts = { is_causal = true, scale = true, key_mask = true }
  function F.qkv_attention(qkv, n_head, opts)
    local cqkv = handle(qkv, 'qkv_attention', 'qkv')
    opts = opts or {}
    if type(opts) ~= 'table' then error('qkv_attention: options must be a table, got ' .. type(opts), 2) end
    for key in pairs(opts) do
      if not qkv_opts[key] then error(('qkv_attention: unknown option %s'):format(tostring(key)), 2) end
    end
    if type(n_head) ~= 'number' or n_head < 1 or n_head % 1 ~= 0 then
      error('qkv_attention: n_head must be a positive integer, got ' .. tostring(n_head), 2)
    end
    if cqkv.ndim ~= 3 or qkv:size(3) % (3 * n_head) ~= 0 then
      error(('qkv_attention: qkv must be [B, T, 3 * C] with C a multiple of n_head = %d, got shape [%s]')
        :format(n_head, table.concat(qkv:shape(), ', ')), 2)
    end
    local B, T = qkv:size(1), qkv:size(2)
    local width = qkv:size(3) / 3  -- C, n_head * D
    local D = width / n_head
    local causal = opts.is_causal and 1 or 0
    local scale = opts.scale or 1 / math.sqrt(D)
    local mask, cm = opts.key_mask, nil
    if mask ~= nil then
      handle(mask, 'qkv_attention', 'key_mask')
      local dt = mask:dtype()
      if dt ~= 'bool' and dt ~= 'u8' then
        if dt == 'f32' or dt == 'f64' or dt == 'bf16' or dt == 'f16' then
          error('qkv_attention: key_mask must be bool or integer (nonzero = attend), got ' .. dt, 2)
        end
        mask = mask:ne(0)
      end
      cm = mask._c
    end
    -- head views [B, H, T, D] of the one buffer, made off the tape: the node below stands for them
    local heads = qkv:detach():view(B, T, 3, n_head, D)
    local q = heads:select(3, 1):transpose(2, 3)
    local k = heads:select(3, 2):transpose(2, 3)
    local v = heads:select(3, 3):transpose(2, 3)
    run(C.tide_attention(q._c, k._c, v._c, cm, causal, 0, scale, out1, out2))
    local out, lse = wrap(out1[0]), wrap(out2[0])
    -- out is [B, H, T, D] over [B, T, H, D] memory: merging the heads is a view
    local y = out:transpose(2, 3):reshape(B, T, width)
    if ag.wants(qkv) then
      if mask ~= nil and rawequal(mask, opts.key_mask) then mask = mask:clone() end
      record('qkv_attention', y, { n = 1, qkv }, function(g)
        local dout = g:reshape(B, T, n_head, D):transpose(2, 3)
        run(C.tide_attention_backward_qkv(dout._c, q._c, k._c, v._c, mask and mask._c, out._c, lse._c, causal, scale, out1))
        return wrap(out1[0])
      end)
    end
    return y
  end
  require('tide.ops.registry').def { 'F.qkv_attention', forward = F.qkv_attention, recorded = true }

  -- losses -------------------------------------------------------------------------------

  local reductions = { none = C.TIDE_REDUCE_NONE, mean = C.TIDE_REDUCE_MEAN, sum = C.TIDE_REDUCE_SUM }

  -- F.cross_entropy(logits [N, V] or [..., V], targets [N] or [...],
  --                 {reduction='mean'|'sum'|'none', ignore_index=-100})
  function F.cross_entropy(logits, targets, opts)
    local cl, ct = handle(logits, 'cross_entropy', 'logits'), handle(targets, 'cross_entropy', 'targets')
    opts = opts or {}
    local red = reductions[opts.reduction or 'mean']
    if red == nil then
      error(("cross_entropy: reduction must be 'mean', 'sum' or 'none', got %s"):format(tostring(opts.reduction)), 2)
    end
    local ignore = opts.ignore_index or -100
    -- opts.dtype: the loss's dtype (default the logits'); 'f32' gives bf16
    -- logits an f32 loss with no f32 copy of the logits (what autocast asks)
    local ld = -1
    if opts.dtype ~= nil then
      local okd, code = pcall(core.dtype, opts.dtype)
      ld = okd and code or nil
      if ld == nil then error(('cross_entropy: dtype must be a float dtype name such as \'f32\', got %s'):format(tostring(opts.dtype)), 2) end
    end
    run(C.tide_cross_entropy_as(cl, ct, ignore, red, ld, out1, out2))
    local loss, lse = wrap(out1[0]), wrap(out2[0])
    if ag.wants(logits) then
      record('cross_entropy', loss, { n = 2, logits, false }, function(g)
        return core.call(C.tide_cross_entropy_backward, g._c, logits._c, targets._c, lse._c, ignore, red, out1), nil
      end, { logits, targets })
    end
    return loss
  end

  function F.mse_loss(a, b, opts)
    local d = a - b
    local sq = d * d
    local red = opts and opts.reduction or 'mean'
    if red == 'mean' then return sq:mean() end
    if red == 'sum' then return sq:sum() end
    if red == 'none' then return sq end
    error(("mse_loss: reduction must be 'mean', 'sum' or 'none', got %s"):format(tostring(red)), 2)
  end

  -- token selection --------------------------------------------------------------------------

  -- tide.isin(t, ids): a bool tensor, true where t's value is one of ids (a
  -- Lua list of numbers or a 1-d tensor).
  function tide.isin(t, ids)
    handle(t, 'isin', 'input')
    if is_tensor(ids) then ids = ids:tolist() end
    if type(ids) ~= 'table' then error('isin: ids must be a list of numbers or a 1-d tensor', 2) end
    local r = tide.zeros_like(t, { dtype = 'bool' })
    tide.no_grad(function()
      for _, id in ipairs(ids) do r = r:logical_or(t:eq(id)) end
    end)
    return r
  end
  core.Tensor.isin = tide.isin

  -- the fused ops record their own nodes above (forward and backward are C
  -- kernels); the registry lists them so each must have a gradcheck
  local reg = require 'tide.ops.registry'
  for _, name in ipairs { 'embedding', 'layer_norm', 'residual_layer_norm', 'softmax', 'log_softmax', 'dropout',
                          'scaled_dot_product_attention', 'cross_entropy' } do
    reg.def { 'F.' .. name, forward = F[name], recorded = true }
  end
  for _, name in ipairs { 'linear', 'conv1d_gpt2' } do
    reg.def { 'F.' .. name, forward = F[name], recorded = true }
  end
  reg.def { 'isin', nondiff = 'a bool result' }
end

return M

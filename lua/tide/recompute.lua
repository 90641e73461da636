-- Activation recompute for GPT-2 (llm.c's --recompute): two ops that give
-- the same values and gradients as the unfused ops they stand for, but keep
-- in the graph only what is cheap to recompute from:
--
--   F.gelu_conv1d_gpt2(h, w, b)            = F.conv1d_gpt2(gelu(h), w, b)
--     keeps h (which GELU's backward needs anyway), not gelu(h) (4 B·T·C in
--     GPT-2's MLP): the backward recomputes gelu(h), an elementwise pass.
--   F.layer_norm_conv1d_gpt2(x, lw, lb, eps, w, b)
--                                           = F.conv1d_gpt2(F.layer_norm(x, {C}, lw, lb, eps), w, b)
--     keeps x, mean and rstd, not the layer norm's output (B·T·C): the
--     backward normalises x again.
--
-- GPT-2's recompute = 1 uses the first in the MLP, 2 both (ln_1 + c_attn,
-- ln_2 + c_fc). No product is recomputed (tide.checkpoint around a block
-- would re-run its matrix products too). On the CPU the gradients are the
-- unfused ops' bits: the backward runs the same ops in the same order
-- (the products of the matmul's gradient, the bias's sum over rows, GELU's
-- and layer norm's backward kernels).
local ffi = require 'ffi'
local C = require 'tide.C'
local errors = require 'tide.errors'

local M = {}

function M.install(tide, core)
  local F, ag = tide.F, tide.autograd
  local is_tensor, wrap = core.is_tensor, core.wrap
  local out1, out2 = core.out1, core.out2
  local out3 = ffi.new('tide_tensor*[1]')

  local function check(x, what, name, level)
    if not is_tensor(x) then error(('%s: %s must be a tensor, got %s'):format(what, name, type(x)), level + 1) end
  end

  -- The gradients of y = a2 @ w (+ b) for y's gradient g ([..., out]): as the
  -- matmul's backward (mm_grads) and the bias add's (a sum over the rows).
  local function conv1d_grads(g, a, w, b)
    local n_in, n_out = w:size(1), w:size(2)
    local g2 = g:reshape(-1, n_out)
    local a2 = a:reshape(-1, n_in)
    local ga = g2:matmul(w:transpose(-1, -2))
    local gw = ag.needs(w) and a2:transpose(-1, -2):matmul(g2) or nil
    local gb = b ~= nil and ag.needs(b) and ag.sum_to(g2, b:shape()) or nil
    return ga:reshape(a:shape()), gw, gb
  end

  -- GELU's output as the product reads it: cast to a bf16 weight's dtype, as
  -- F.conv1d_gpt2 under autocast casts an f32 activation
  local function act_of(h, w)
    local a = h:gelu()
    if a._c.dtype == C.TIDE_F32 and w._c.dtype == C.TIDE_BF16 then a = a:to('bf16') end
    return a
  end

  function F.gelu_conv1d_gpt2(h, w, b)
    check(h, 'gelu_conv1d_gpt2', 'input', 2)
    check(w, 'gelu_conv1d_gpt2', 'weight', 2)
    if not ag.wants(h, w, b) then return F.conv1d_gpt2(act_of(h, w), w, b) end
    local y = tide.no_grad(function() return F.conv1d_gpt2(act_of(h, w), w, b) end)
    return ag.record('gelu_conv1d_gpt2', y, { n = 3, h, w, b }, function(g)
      local a = act_of(h, w)  -- the recompute
      local ga, gw, gb = conv1d_grads(g, a, w, b)
      a = nil
      if ga._c.dtype ~= h._c.dtype then ga = ga:to(h:dtype()) end  -- through the cast, as its backward
      local gh = ag.needs(h) and core.call(C.tide_gelu_backward, ga._c, h._c, out1) or nil
      return gh, gw, gb
    end, { h, w, b })
  end

  function F.layer_norm_conv1d_gpt2(x, lw, lb, eps, w, b)
    check(x, 'layer_norm_conv1d_gpt2', 'input', 2)
    check(w, 'layer_norm_conv1d_gpt2', 'weight', 2)
    eps = eps or 1e-5
    if not ag.wants(x, lw, lb) and not ag.wants(w, b) then
      return F.conv1d_gpt2(F.layer_norm(x, { x:size(-1) }, lw, lb, eps), w, b)
    end
    local cw, cb = lw and lw._c or nil, lb and lb._c or nil
    local function norm()
      if C.tide_layer_norm(x._c, cw, cb, eps, out1, out2, out3) ~= 0 then errors.raise(4) end
      return wrap(out1[0]), wrap(out2[0]), wrap(out3[0])
    end
    local yn, mean, rstd = norm()
    -- under autocast an f32 input's normalised rows meet a bf16 weight: cast
    -- them as F.conv1d_gpt2's autocast would, here and in the recompute
    local as = (yn:dtype() == 'f32' and w:dtype() == 'bf16') and 'bf16' or nil
    if as then yn = yn:to(as) end
    local y = tide.no_grad(function() return F.conv1d_gpt2(yn, w, b) end)
    yn = nil
    return ag.record('layer_norm_conv1d_gpt2', y, { n = 6, x, lw, lb, false, w, b }, function(g)
      local again = norm()  -- the recompute (mean and rstd come out the same; the saved ones are used)
      if as then again = again:to(as) end
      local ga, gw, gb = conv1d_grads(g, again, w, b)
      again = nil
      local want_w, want_b = lw ~= nil and ag.needs(lw), lb ~= nil and ag.needs(lb)
      if C.tide_layer_norm_backward(ga._c, x._c, cw, mean._c, rstd._c, out1,
          want_w and out2 or nil, want_b and out3 or nil) ~= 0 then
        errors.raise(0)
      end
      local dx = wrap(out1[0])
      local dlw = want_w and wrap(out2[0]) or nil
      local dlb = want_b and wrap(out3[0]) or nil
      return dx, dlw, dlb, nil, gw, gb
    end, { x, lw, lb, w, b })
  end
end

return M

-- Matrix products: t:matmul(u) with torch.matmul semantics (1-D operands,
-- broadcast batch dims), and the strict forms mm (2-D), bmm (3-D, equal
-- batch), mv, dot, outer that reject other shapes instead of broadcasting.
local C = require 'tide.C'

local M = {}

function M.install(tide, core)
  local Tensor, handle, call, out1 = core.Tensor, core.handle, core.call, core.out1

  local function shape_str(t)
    return '[' .. table.concat(t:shape(), ', ') .. ']'
  end

  -- Raises "<what>: expected ..." naming both shapes when a check fails.
  local function need(ok, what, expect, a, b)
    if not ok then
      error(("%s: expected %s, got shapes %s and %s"):format(what, expect, shape_str(a), shape_str(b)), 3)
    end
  end

  -- every wrapper checks both handles itself so errors point at the caller
  function Tensor:matmul(other)
    return call(C.tide_matmul, handle(self, 'matmul', 2), handle(other, 'matmul', 2), out1)
  end

  function Tensor:mm(other)
    local a, b = handle(self, 'mm', 2), handle(other, 'mm', 2)
    need(a.ndim == 2 and b.ndim == 2, 'mm', 'two 2-d tensors', self, other)
    return call(C.tide_matmul, a, b, out1)
  end

  function Tensor:bmm(other)
    local a, b = handle(self, 'bmm', 2), handle(other, 'bmm', 2)
    need(a.ndim == 3 and b.ndim == 3, 'bmm', 'two 3-d tensors', self, other)
    need(a.shape[0] == b.shape[0], 'bmm', 'equal batch sizes', self, other)
    return call(C.tide_matmul, a, b, out1)
  end

  function Tensor:mv(vec)
    local a, b = handle(self, 'mv', 2), handle(vec, 'mv', 2)
    need(a.ndim == 2 and b.ndim == 1, 'mv', 'a 2-d matrix and a 1-d vector', self, vec)
    return call(C.tide_matmul, a, b, out1)
  end

  function Tensor:dot(other)
    local a, b = handle(self, 'dot', 2), handle(other, 'dot', 2)
    need(a.ndim == 1 and b.ndim == 1, 'dot', 'two 1-d tensors', self, other)
    return call(C.tide_matmul, a, b, out1)
  end

  -- outer(u, v)[i][j] = u[i] * v[j], a product over k = 1
  function Tensor:outer(other)
    local a, b = handle(self, 'outer', 2), handle(other, 'outer', 2)
    need(a.ndim == 1 and b.ndim == 1, 'outer', 'two 1-d tensors', self, other)
    return self:view(-1, 1):matmul(other:view(1, -1))
  end
  Tensor.ger = Tensor.outer

  for _, name in ipairs { 'matmul', 'mm', 'bmm', 'mv', 'dot', 'outer' } do
    local method = Tensor[name]
    tide[name] = function(a, b)
      handle(a, name, 2)
      return method(a, b)
    end
  end

  -- definitions: forward, backward and aliases of each op ----------------------

  local reg = require 'tide.ops.registry'
  local ag = require 'tide.autograd'
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
    return ag.sum_to(ga, a:shape()), ag.sum_to(gb, b:shape())
  end
  for _, name in ipairs { 'matmul', 'mm', 'bmm', 'mv', 'dot' } do
    local fn = (name == 'matmul' or name == 'mm' or name == 'bmm') and 'tensor' or nil
    reg.def { name, forward = Tensor[name], fn = fn, backward = function(_, g, a, b) return mm_grads(g, a, b) end }
  end
  reg.def { 'outer', forward = Tensor.outer, aliases = { 'ger' },
    backward = function(_, g, a, b) return g:matmul(b), g:t():matmul(a) end }
end

return M

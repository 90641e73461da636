-- Views and copies: the definitions (forward, backward) of the geometry ops
-- that lua/tide/tensor.lua installs (view, reshape, transpose, narrow, ...).
local M = {}

function M.install(tide, core)
  local Tensor = core.Tensor
  local reg = require 'tide.ops.registry'
  local ag = require 'tide.autograd'

  local function back_to_shape(_, g, a) return g:reshape(a:shape()) end
  for _, name in ipairs { 'view', 'reshape', 'flatten', 'squeeze', 'unsqueeze', 'view_as', 'reshape_as' } do
    reg.def { name, forward = Tensor[name], saves = false, backward = back_to_shape }
  end
  reg.def { 'contiguous', forward = Tensor.contiguous, saves = false, backward = function(_, g) return g end }
  reg.def { 'clone', forward = Tensor.clone, saves = false, backward = function(_, g) return g end }
  reg.def { 'to', forward = Tensor.to, saves = false, backward = function(_, g, a) return g:to(a:dtype()) end }
  reg.def { 'transpose', forward = Tensor.transpose, saves = false,
    backward = function(_, g, a, d0, d1)
      if d0 == nil then return g:t() end
      return g:transpose(d0, d1)
    end }
  reg.def { 't', forward = Tensor.t, saves = false, backward = function(_, g) return g:t() end }
  reg.def { 'permute', forward = Tensor.permute, saves = false,
    backward = function(_, g, a, ...)
      local dims = ...
      if type(dims) ~= 'table' then dims = { ... } end
      local n = #dims
      local inv = {}
      for i, d in ipairs(dims) do inv[(d < 0 and d + n + 1 or d)] = i end
      return g:permute(inv)
    end }
  reg.def { 'expand', forward = Tensor.expand, saves = false,
    backward = function(_, g, a) return ag.sum_to(g, a:shape()) end }
  reg.def { 'expand_as', forward = Tensor.expand_as, saves = false,
    backward = function(_, g, a) return ag.sum_to(g, a:shape()) end }
  reg.def { 'narrow', forward = Tensor.narrow, saves = false,
    backward = function(_, g, a, dim, start, len)
      local z = tide.zeros_like(a, { dtype = g:dtype() })
      z:narrow(dim, start, len):copy_(g)
      return z
    end }
  reg.def { 'select', forward = Tensor.select, saves = false,
    backward = function(_, g, a, dim, index)
      local z = tide.zeros_like(a, { dtype = g:dtype() })
      z:select(dim, index):copy_(g)
      return z
    end }
end

return M

-- tide.optim: optimizers (AdamW, SGD), gradient clipping, parameter groups
-- with weight-decay exemptions, and learning-rate schedulers.
--
--   local opt = tide.optim.AdamW(tide.optim.grouped_params(model, 0.1),
--                                {lr=5e-4, betas={0.9, 0.95}, eps=1e-8})
--   local sched = tide.optim.get_scheduler('cosine', opt,
--                                          {num_warmup_steps=100, num_training_steps=1000})
--   opt:zero_grad(); loss:backward()
--   tide.optim.clip_grad_norm(model:parameters(), 1.0)
--   opt:step(); sched:step()
--
-- Semantics follow torch.optim: a parameter is a tensor whose gradient is
-- `p.grad` (nil: skipped this step); param_groups carry per-group options
-- that override the defaults; `zero_grad()` sets grads to nil.
local ffi = require 'ffi'
local C = require 'tide.C'
local errors = require 'tide.errors'
local core = require 'tide.tensor'

local M = {}
local is_tensor = core.is_tensor

local function tide_() return require 'tide' end

-- Runs fn with autograd off when the autograd module is loaded (in-place
-- updates of leaves that require grad are not part of any graph).
local function no_grad(fn, ...)
  local tide = tide_()
  if tide.no_grad then return tide.no_grad(fn, ...) end
  return fn(...)
end

local function grad_of(p) return rawget(p, 'grad') end

-- parameter groups --------------------------------------------------------------

local function is_plain_table(x) return type(x) == 'table' and not is_tensor(x) end

local function shallow_copy(t)
  local r = {}
  for k, v in pairs(t) do r[k] = v end
  return r
end

-- Builds param_groups from a list of tensors or a list of groups
-- {params={...}, opt=value...}; group options override `defaults`.
local function make_groups(what, params, defaults, level)
  level = level + 1
  if type(params) == 'table' and not is_tensor(params) and type(params.parameters) == 'function' then
    error(what .. ': got a model; pass model:parameters() or tide.optim.grouped_params(model, weight_decay)', level)
  end
  if is_tensor(params) or not is_plain_table(params) then
    error(("%s: params must be a list of tensors or a list of groups {params={...}, ...}, got %s")
      :format(what, is_tensor(params) and 'a single tensor (wrap it in a list: {t})' or type(params)), level)
  end
  if #params == 0 then error(what .. ': got an empty parameter list', level) end
  local raw_groups
  if is_tensor(params[1]) then
    raw_groups = { { params = params } }
  else
    raw_groups = params
  end
  local groups, seen = {}, {}
  for gi, rg in ipairs(raw_groups) do
    if not is_plain_table(rg) or rg.params == nil then
      error(("%s: group %d must be a table with a `params` list (do not mix tensors and groups)"):format(what, gi), level)
    end
    local plist = rg.params
    if is_tensor(plist) then plist = { plist } end
    if not is_plain_table(plist) then
      error(("%s: group %d: params must be a list of tensors, got %s"):format(what, gi, type(plist)), level)
    end
    local g = shallow_copy(rg)
    g.params = {}
    for pi, p in ipairs(plist) do
      if not is_tensor(p) then
        error(("%s: parameter %d of group %d is a %s, expected a tensor"):format(what, pi, gi, type(p)), level)
      end
      if not p:is_floating_point() then
        error(("%s: parameter %d of group %d has dtype %s; only floating-point tensors can be optimized")
          :format(what, pi, gi, p:dtype()), level)
      end
      if seen[p] then
        error(("%s: parameter %d of group %d appears more than once (in group %d too); each tensor may be listed once")
          :format(what, pi, gi, seen[p]), level)
      end
      seen[p] = gi
      g.params[pi] = p
    end
    for k, v in pairs(defaults) do
      if g[k] == nil then g[k] = type(v) == 'table' and shallow_copy(v) or v end
    end
    groups[gi] = g
  end
  return groups
end

local function check_number(what, name, v, ok, expect, level)
  if type(v) ~= 'number' or v ~= v or not ok(v) then
    error(("%s: invalid %s %s (expected %s)"):format(what, name, tostring(v), expect), level + 1)
  end
end

-- Options each optimizer accepts in its defaults table; unknown keys are errors.
local function check_option_names(what, opts, known, level)
  if opts == nil then return {} end
  if not is_plain_table(opts) then error(what .. ': options must be a table', level + 1) end
  for k in pairs(opts) do
    if not known[k] then
      local names = {}
      for n in pairs(known) do names[#names + 1] = n end
      table.sort(names)
      error(("%s: unknown option '%s' (known: %s)"):format(what, tostring(k), table.concat(names, ', ')), level + 1)
    end
  end
  return opts
end

-- the Optimizer base -------------------------------------------------------------

local Optimizer = {}
Optimizer.__index = Optimizer
M.Optimizer = Optimizer

-- Sets every parameter's grad to nil (set_to_none, torch's default), or to
-- zeros in place when set_to_none is false.
function Optimizer:zero_grad(set_to_none)
  for _, g in ipairs(self.param_groups) do
    for _, p in ipairs(g.params) do
      if set_to_none == false then
        local gr = grad_of(p)
        if gr then gr:zero_() end
      else
        p.grad = nil
      end
    end
  end
end

-- Adds a group {params={...}, ...}; missing options come from the defaults.
function Optimizer:add_param_group(group)
  local new = make_groups(self._name, { group }, self.defaults, 2)[1]
  for _, g in ipairs(self.param_groups) do
    for _, p in ipairs(g.params) do
      for _, q in ipairs(new.params) do
        if p == q then error(self._name .. ': add_param_group: a parameter is already in another group', 2) end
      end
    end
  end
  self:_validate_group(new, #self.param_groups + 1, 2)
  self.param_groups[#self.param_groups + 1] = new
end

-- { state = {[i] = {step=, exp_avg=, ...}}, param_groups = {{lr=, ..., params={i...}}} }
-- with parameters named by their 1-based position across the groups in
-- order (torch uses 0-based ids). The state tensors are the live ones, as in
-- torch: clone them (or save them) to keep a snapshot.
function Optimizer:state_dict()
  if self.zero then
    -- ZeRO-1: the slices gathered from every rank (a collective), so the
    -- tables are a plain AdamW's
    local saved = self.state
    self.state = require('tide.optim.zero').full_state(self)
    local ok, sd = pcall(Optimizer._state_dict, self)
    self.state = saved
    if not ok then error(sd, 0) end
    return sd
  end
  return Optimizer._state_dict(self)
end

function Optimizer:_state_dict()
  local ids, next_id = {}, 1
  local groups = {}
  for gi, g in ipairs(self.param_groups) do
    local sg = {}
    for k, v in pairs(g) do
      if k ~= 'params' then sg[k] = type(v) == 'table' and shallow_copy(v) or v end
    end
    sg.params = {}
    for pi, p in ipairs(g.params) do
      ids[p] = next_id
      sg.params[pi] = next_id
      next_id = next_id + 1
    end
    groups[gi] = sg
  end
  local state = {}
  for p, st in pairs(self.state) do
    if ids[p] then state[ids[p]] = shallow_copy(st) end
  end
  return { state = state, param_groups = groups }
end

-- Restores a state_dict(): group options come from it (as in torch), the
-- parameters stay this optimizer's own; state tensors are copied (cast to
-- each parameter's dtype) so the two optimizers never share memory.
function Optimizer:load_state_dict(sd)
  local what = self._name .. ': load_state_dict'
  if not is_plain_table(sd) or not is_plain_table(sd.param_groups) or not is_plain_table(sd.state) then
    error(what .. ': expected a table {state=..., param_groups=...} from state_dict()', 2)
  end
  if #sd.param_groups ~= #self.param_groups then
    error(("%s: the saved state has %d parameter groups, this optimizer has %d")
      :format(what, #sd.param_groups, #self.param_groups), 2)
  end
  local by_id = {}
  for gi, g in ipairs(self.param_groups) do
    local sg = sd.param_groups[gi]
    if not is_plain_table(sg) or not is_plain_table(sg.params) or #sg.params ~= #g.params then
      error(("%s: saved group %d has %s parameters, this optimizer's group has %d")
        :format(what, gi, is_plain_table(sg) and is_plain_table(sg.params) and tostring(#sg.params) or 'no',
          #g.params), 2)
    end
    for pi, id in ipairs(sg.params) do by_id[id] = g.params[pi] end
  end
  local new_state = {}
  for id, st in pairs(sd.state) do
    local p = by_id[id]
    if p == nil then error(("%s: state for parameter %s, which no saved group lists"):format(what, tostring(id)), 2) end
    local ns = {}
    for k, v in pairs(st) do
      if is_tensor(v) then
        local ps, vs = p:shape(), v:shape()
        local same = #ps == #vs
        for i = 1, #ps do if ps[i] ~= vs[i] then same = false end end
        if not same then
          error(("%s: state '%s' of parameter %s has shape [%s] but the parameter has shape [%s]")
            :format(what, k, tostring(id), table.concat(vs, ', '), table.concat(ps, ', ')), 2)
        end
        v = v:to(p:dtype())
        v = rawequal(v, st[k]) and v:clone() or v
      end
      ns[k] = v
    end
    new_state[p] = ns
  end
  for gi, g in ipairs(self.param_groups) do
    local sg = sd.param_groups[gi]
    local ng = {}
    for k, v in pairs(sg) do
      if k ~= 'params' then ng[k] = type(v) == 'table' and shallow_copy(v) or v end
    end
    ng.params = g.params
    self:_validate_group(ng, gi, 2)
    self.param_groups[gi] = ng
  end
  if self.zero then
    local zs = self.zero
    for _, g in ipairs(self.param_groups) do
      for _, p in ipairs(g.params) do zs.group_of[p] = g end
    end
    require('tide.optim.zero').load_full_state(self, new_state)
    return
  end
  self.state = new_state
end

-- Runs the optional closure (which recomputes the loss) and returns its result.
local function run_closure(closure)
  if closure == nil then return nil end
  if type(closure) ~= 'function' then error('step: the closure must be a function', 3) end
  local tide = tide_()
  if tide.set_grad_enabled and tide.is_grad_enabled then
    local prev = tide.is_grad_enabled()
    tide.set_grad_enabled(true)
    local ok, res = pcall(closure)
    tide.set_grad_enabled(prev)
    if not ok then error(res, 0) end
    return res
  end
  return closure()
end

local function new_optimizer(cls, name, params, defaults)
  local self = setmetatable({ _name = name, defaults = defaults, state = {} }, cls)
  self.param_groups = make_groups(name, params, defaults, 3)
  for gi, g in ipairs(self.param_groups) do self:_validate_group(g, gi, 3) end
  return self
end

-- AdamW ------------------------------------------------------------------------------

local AdamW = setmetatable({}, { __index = Optimizer })
AdamW.__index = AdamW
M.AdamW_class = AdamW

local adamw_options = { lr = true, betas = true, eps = true, weight_decay = true, amsgrad = true,
                        maximize = true, foreach = true, fused = true, capturable = true, differentiable = true,
                        zero = true }

function AdamW:_validate_group(g, gi, level)
  local what = ('AdamW (group %d)'):format(gi)
  level = level + 1
  check_number(what, 'learning rate', g.lr, function(v) return v >= 0 and v < math.huge end, 'a finite lr >= 0', level)
  check_number(what, 'eps', g.eps, function(v) return v >= 0 and v < math.huge end, 'eps >= 0', level)
  check_number(what, 'weight_decay', g.weight_decay, function(v) return v >= 0 and v < math.huge end,
    'weight_decay >= 0', level)
  local b = g.betas
  if not is_plain_table(b) or #b ~= 2 then
    error(("%s: betas must be a list of two numbers such as {0.9, 0.999}, got %s"):format(what, tostring(b)), level)
  end
  for i = 1, 2 do
    check_number(what, ('beta%d'):format(i), b[i], function(v) return v >= 0 and v < 1 end, '0 <= beta < 1', level)
  end
  if g.amsgrad then error(what .. ': amsgrad=true is not supported', level) end
  for _, k in ipairs({ 'fused', 'foreach' }) do
    if g[k] ~= nil and type(g[k]) ~= 'boolean' then
      error(("%s: %s must be true, false or nil (nil: multi-tensor where every parameter is on CUDA), got %s")
        :format(what, k, tostring(g[k])), level)
    end
  end
  if g.fused and g.foreach then error(what .. ': `fused` and `foreach` cannot be true together', level) end
  for _, p in ipairs(g.params) do
    local dt = p:dtype()
    if dt ~= 'f32' and dt ~= 'f64' then
      error(("%s: parameters must be f32 or f64 tensors (keep f32 master weights), got %s"):format(what, dt), level)
    end
  end
end

-- tide.optim.AdamW(params_or_groups, {lr=1e-3, betas={0.9, 0.999}, eps=1e-8,
-- weight_decay=0.01, maximize=false, fused=nil, foreach=nil}): torch.optim.AdamW's
-- arithmetic (kernels/cpu/adamw.c). A group's parameters are updated by
-- the multi-tensor step (tide_adamw_multi_step_: a few launches for all of
-- them on CUDA, and the bf16 shadows of autocast written in the same pass)
-- or one call per parameter; both give the same bits. As torch's options:
-- fused or foreach true takes the multi-tensor step (on the CPU too), false
-- the per-parameter one, nil (the default) the multi-tensor step where every
-- parameter of the group is on CUDA.
function M.AdamW(params, opts)
  opts = check_option_names('AdamW', opts, adamw_options, 2)
  local defaults = {
    lr = opts.lr == nil and 1e-3 or opts.lr,
    betas = opts.betas == nil and { 0.9, 0.999 } or opts.betas,
    eps = opts.eps == nil and 1e-8 or opts.eps,
    weight_decay = opts.weight_decay == nil and 1e-2 or opts.weight_decay,
    amsgrad = opts.amsgrad or false,
    maximize = opts.maximize or false,
    fused = opts.fused,
    foreach = opts.foreach,
  }
  if is_plain_table(defaults.betas) then defaults.betas = { defaults.betas[1], defaults.betas[2] } end
  local zero = opts.zero
  if zero ~= nil and zero ~= 0 and zero ~= 1 then
    error(('AdamW: zero must be 0 (off) or 1 (the optimizer state sharded over the ranks), got %s'):format(tostring(zero)), 2)
  end
  local opt = new_optimizer(AdamW, 'AdamW', params, defaults)
  if zero == 1 then require('tide.optim.zero').enable(opt, 2) end
  return opt
end

-- Whether group g takes the multi-tensor step (see M.AdamW).
local function multi_tensor(g)
  if g.fused ~= nil then return g.fused end
  if g.foreach ~= nil then return g.foreach end
  for _, p in ipairs(g.params) do
    if p._c.device < 0 then return false end
  end
  return true
end

-- The multi-tensor step of one group over items {p, grad, st}, one call per
-- (device, dtype); a parameter with a bf16 shadow (rawget(p, '_bf16'), see
-- tide.amp) gets it rewritten in the same pass and its _bf16_version set
-- to p's new version, so autocast does not cast it again.
local function multi_step(g, items, level)
  local lr, eps, wd, b1, b2 = g.lr, g.eps, g.weight_decay, g.betas[1], g.betas[2]
  local order, by_key = {}, {}
  for _, it in ipairs(items) do
    local key = it[1]._c.device * 64 + it[1]._c.dtype
    local list = by_key[key]
    if not list then list = {}; by_key[key] = list; order[#order + 1] = key end
    list[#list + 1] = it
  end
  for _, key in ipairs(order) do
    local list = by_key[key]
    local n = #list
    local P, G = ffi.new('tide_tensor*[?]', n), ffi.new('const tide_tensor*[?]', n)
    local Mx, V = ffi.new('tide_tensor*[?]', n), ffi.new('tide_tensor*[?]', n)
    local S, steps, any_shadow = ffi.new('tide_tensor*[?]', n), ffi.new('int64_t[?]', n), false
    for i, it in ipairs(list) do
      local p, st = it[1], it[3]
      P[i - 1], G[i - 1], Mx[i - 1], V[i - 1] = p._c, it[2]._c, st.exp_avg._c, st.exp_avg_sq._c
      -- a shadow left on another device (model:to() moves p, not it) is
      -- autocast's to remake; the optimizer writes only one beside p
      local sh = rawget(p, '_bf16')
      if is_tensor(sh) and sh._c.device == p._c.device then
        S[i - 1] = sh._c
        any_shadow = true
        it[4] = true
      end
      steps[i - 1] = st.step + 1
    end
    local rc = C.tide_adamw_multi_step_(n, P, G, Mx, V, any_shadow and S or nil, steps, lr, b1, b2, eps, wd)
    if rc ~= 0 then errors.raise(level + 1) end
    for _, it in ipairs(list) do
      local p, st = it[1], it[3]
      st.step = st.step + 1
      if it[4] then rawset(p, '_bf16_version', tonumber(C.tide_tensor_version(p._c))) end
    end
  end
end

-- One AdamW update of every parameter that has a grad; returns the closure's loss.
function AdamW:step(closure)
  local loss = run_closure(closure)
  if self.zero then
    require('tide.optim.zero').step(self)
    return loss
  end
  local state = self.state
  for gi, g in ipairs(self.param_groups) do
    local lr, eps, wd = g.lr, g.eps, g.weight_decay
    local b1, b2 = g.betas[1], g.betas[2]
    if type(lr) ~= 'number' then error(('AdamW: group %d has lr %s, expected a number'):format(gi, tostring(lr)), 2) end
    local items = multi_tensor(g) and {} or nil
    for _, p in ipairs(g.params) do
      local grad = grad_of(p)
      if grad ~= nil then
        if not is_tensor(grad) then
          error(('AdamW: the grad of a parameter in group %d is a %s, expected a tensor or nil'):format(gi, type(grad)), 2)
        end
        local st = state[p]
        if st == nil then
          local tide = tide_()
          st = { step = 0, exp_avg = tide.zeros_like(p), exp_avg_sq = tide.zeros_like(p) }
          state[p] = st
        end
        if g.maximize then grad = no_grad(grad.neg, grad) end
        if items then
          items[#items + 1] = { p, grad, st }
        else
          local step = st.step + 1
          local rc = C.tide_adamw_step_(p._c, grad._c, st.exp_avg._c, st.exp_avg_sq._c, lr, b1, b2, eps, wd, step)
          if rc ~= 0 then errors.raise(2) end
          st.step = step
        end
      end
    end
    if items and #items > 0 then multi_step(g, items, 2) end
  end
  return loss
end

-- SGD --------------------------------------------------------------------------------

local SGD = setmetatable({}, { __index = Optimizer })
SGD.__index = SGD
M.SGD_class = SGD

local sgd_options = { lr = true, momentum = true, dampening = true, weight_decay = true, nesterov = true,
                      maximize = true, foreach = true, fused = true, differentiable = true }

function SGD:_validate_group(g, gi, level)
  local what = ('SGD (group %d)'):format(gi)
  level = level + 1
  check_number(what, 'learning rate', g.lr, function(v) return v >= 0 and v < math.huge end, 'a finite lr >= 0', level)
  check_number(what, 'momentum', g.momentum, function(v) return v >= 0 end, 'momentum >= 0', level)
  check_number(what, 'dampening', g.dampening, function() return true end, 'a number', level)
  check_number(what, 'weight_decay', g.weight_decay, function(v) return v >= 0 end, 'weight_decay >= 0', level)
  if g.nesterov and (g.momentum <= 0 or g.dampening ~= 0) then
    error(what .. ': nesterov momentum requires momentum > 0 and dampening = 0', level)
  end
end

-- tide.optim.SGD(params_or_groups, {lr=1e-3, momentum=0, dampening=0,
-- weight_decay=0, nesterov=false, maximize=false}), as torch.optim.SGD.
function M.SGD(params, opts)
  opts = check_option_names('SGD', opts, sgd_options, 2)
  local defaults = {
    lr = opts.lr == nil and 1e-3 or opts.lr,
    momentum = opts.momentum or 0,
    dampening = opts.dampening or 0,
    weight_decay = opts.weight_decay or 0,
    nesterov = opts.nesterov or false,
    maximize = opts.maximize or false,
  }
  return new_optimizer(SGD, 'SGD', params, defaults)
end

-- torch's single-tensor SGD: d = g (+ wd*p); buf = momentum*buf + (1-dampening)*d
-- (the first step copies d); d = nesterov and d + momentum*buf or buf; p -= lr*d.
function SGD:step(closure)
  local loss = run_closure(closure)
  local state = self.state
  no_grad(function()
    for _, g in ipairs(self.param_groups) do
      local lr, mom, damp, wd = g.lr, g.momentum, g.dampening, g.weight_decay
      for _, p in ipairs(g.params) do
        local d = grad_of(p)
        if d ~= nil then
          if g.maximize then d = d:neg() end
          if wd ~= 0 then d = d:add(p, { alpha = wd }) end
          if mom ~= 0 then
            local st = state[p]
            if st == nil then st = {}; state[p] = st end
            local buf = st.momentum_buffer
            if buf == nil then
              buf = d:clone()
              st.momentum_buffer = buf
            else
              buf:mul_(mom):add_(d, { alpha = 1 - damp })
            end
            if g.nesterov then d = d:add(buf, { alpha = mom }) else d = buf end
          end
          p:add_(d, { alpha = -lr })
        end
      end
    end
  end)
  return loss
end

-- gradient clipping ------------------------------------------------------------------

local norm_out = ffi.new('tide_tensor*[1]')

-- tide.optim.clip_grad_norm(params, max_norm, {norm_type=2, error_if_nonfinite=false}):
-- torch.nn.utils.clip_grad_norm_. The total norm is the norm of the
-- per-parameter norms (each in its grad's dtype); every grad is multiplied
-- by min(max_norm / (total + 1e-6), 1), computed in f32 as torch does (the
-- factor is applied even when it is 1). Params without grads are skipped.
-- Returns the total norm as a number (0 when no param has a grad): one read
-- of the device. With {sync=false} it returns the total as a 0-d tensor on
-- the grads' device instead, and nothing waits for the device: the norm
-- (tide_multi_norm), the clip factor and the scaling (tide_clip_grads_) all
-- run there (on CUDA: two launches for the norm, one for the scaling). A
-- non-finite total is returned too (check it), warned about once per
-- process ({warn_if_nonfinite=false} silences it; not with sync=false, which
-- never reads it), or with {error_if_nonfinite=true} is an error (that reads
-- the total before scaling, also with sync=false).
function M.clip_grad_norm(params, max_norm, opts)
  if is_tensor(params) then params = { params } end
  if not is_plain_table(params) then
    error('clip_grad_norm: params must be a tensor or a list of tensors, got ' .. type(params), 2)
  end
  if type(max_norm) ~= 'number' or max_norm ~= max_norm then
    error('clip_grad_norm: max_norm must be a number, got ' .. tostring(max_norm), 2)
  end
  opts = opts or {}
  if not is_plain_table(opts) then error('clip_grad_norm: options must be a table such as {norm_type=2}', 2) end
  if opts.sync ~= nil and type(opts.sync) ~= 'boolean' then
    error('clip_grad_norm: sync must be true or false, got ' .. tostring(opts.sync), 2)
  end
  local norm_type = opts.norm_type == nil and 2 or opts.norm_type
  if norm_type == 'inf' then norm_type = math.huge elseif norm_type == '-inf' then norm_type = -math.huge end
  if type(norm_type) ~= 'number' or norm_type ~= norm_type then
    error('clip_grad_norm: norm_type must be a number or \'inf\', got ' .. tostring(norm_type), 2)
  end
  -- parameters sharded by a ZeRO-1 AdamW: their averaged gradients are
  -- slices spread over the ranks, and the norm is taken there
  local zopt = is_tensor(params[1]) and rawget(params[1], '_zero')
  if zopt then
    local n = 0
    for _, g in ipairs(zopt.param_groups) do n = n + #g.params end
    local all = #params == n
    for _, p in ipairs(params) do all = all and is_tensor(p) and rawget(p, '_zero') == zopt end
    if not all then
      error('clip_grad_norm: with zero = 1 the norm covers every parameter of the optimizer; pass them all ' ..
        '(model:parameters())', 2)
    end
    return require('tide.optim.zero').clip_grad_norm(zopt, max_norm, opts)
  end
  local grads = {}
  for i, p in ipairs(params) do
    if not is_tensor(p) then error(('clip_grad_norm: parameter %d is a %s, expected a tensor'):format(i, type(p)), 2) end
    local g = grad_of(p)
    if g ~= nil then grads[#grads + 1] = g end
  end
  if #grads == 0 then
    if opts.sync == false then return tide_().zeros({}) end
    return 0
  end
  -- torch groups grads by dtype (f32 first if the first grad is f32, ...),
  -- stacks the per-group norms in that order and promotes mixed dtypes
  local order, by_dt = {}, {}
  for _, g in ipairs(grads) do
    local dt = g:dtype()
    if not by_dt[dt] then by_dt[dt] = {}; order[#order + 1] = dt end
    local list = by_dt[dt]
    list[#list + 1] = g
  end
  local handles, k = ffi.new('tide_tensor*[?]', #grads), 0
  for _, dt in ipairs(order) do
    for _, g in ipairs(by_dt[dt]) do handles[k] = g._c; k = k + 1 end
  end
  -- the norm of the per-grad norms (tide_multi_norm: each in its grad's
  -- dtype, the 2-norm in torch's CPU summation order on the CPU)
  local rc = C.tide_multi_norm(k, ffi.cast('const tide_tensor *const *', handles), norm_type, norm_out)
  if rc ~= 0 then error(ffi.string(C.tide_last_error()), 2) end
  local total_t = core.wrap(norm_out[0])
  local function nonfinite(x) return x ~= x or x == math.huge or x == -math.huge end
  if opts.error_if_nonfinite then
    local total = total_t:item()
    if nonfinite(total) then
      error(("clip_grad_norm: the total norm of order %s of the gradients is non-finite (%s), so it cannot be clipped")
        :format(tostring(norm_type), tostring(total)), 2)
    end
  end
  -- every grad times min(max_norm / (total + 1e-6), 1), computed from the
  -- total where it lies (torch's f32 reciprocal-then-multiply for an f32
  -- total) and applied even when it is 1, as torch does
  if C.tide_clip_grads_(k, handles, total_t._c, max_norm) ~= 0 then errors.raise(2) end
  if opts.sync == false then return total_t end
  local total = total_t:item()
  -- torch clips silently (the grads become NaN); a NaN run should not go
  -- unnoticed, so say it once per process unless told not to
  if nonfinite(total) and opts.warn_if_nonfinite ~= false and not M.nonfinite_warned then
    M.nonfinite_warned = true
    io.stderr:write(("tide.optim.clip_grad_norm: warning: the total gradient norm is %s; the gradients are now " ..
      "non-finite (reported once; {error_if_nonfinite=true} makes it an error)\n"):format(tostring(total)))
  end
  return total
end

-- weight-decay groups ----------------------------------------------------------------

-- Normalisation layers are recognised by type name: LayerNorm, RMSNorm,
-- GroupNorm, BatchNorm1d, ... (any module type whose name contains "Norm").
local function is_norm_module(m)
  local tn = type(m) == 'table' and m.type_name
  return type(tn) == 'string' and tn:find('Norm', 1, true) ~= nil
end

-- Own (non-recursive) parameters of module m as {{name, tensor}, ...}.
local function own_params(m)
  if type(m.named_parameters) == 'function' then
    local out = {}
    for _, pair in ipairs(m:named_parameters('', false)) do
      out[#out + 1] = { pair[1]:match('([^.]*)$'), pair[2] }
    end
    return out
  end
  local out, names = {}, {}
  local ps = m._params or {}
  if m._param_order then
    names = m._param_order
  else
    for k in pairs(ps) do names[#names + 1] = k end
    table.sort(names)
  end
  for _, k in ipairs(names) do
    if ps[k] ~= nil then out[#out + 1] = { k, ps[k] } end
  end
  return out
end

-- tide.optim.grouped_params(model, weight_decay): two groups for AdamW,
--   { {params=decayed, weight_decay=weight_decay}, {params=exempt, weight_decay=0} }.
-- Exempt: every parameter named `bias`, and every parameter of a
-- normalisation module (LayerNorm weights: GPT-2's ln_1/ln_2/ln_f). Decided
-- by module type, not by name substrings: the Hugging Face course's list
-- {"bias", "LayerNorm.weight"} never matches GPT-2's `ln_1.weight`, so it
-- decays LayerNorm weights by mistake. Embeddings (wte, wpe) and all other
-- weights are decayed, as in the Hugging Face scripts. A parameter shared by
-- several modules (tied lm_head/wte) is listed once, where it first appears.
function M.grouped_params(model, weight_decay)
  if type(model) ~= 'table' or type(model.named_modules) ~= 'function' then
    error('grouped_params: expected a model (a module with named_modules()), got ' .. type(model), 2)
  end
  if type(weight_decay) ~= 'number' or weight_decay ~= weight_decay or weight_decay < 0 then
    error('grouped_params: weight_decay must be a number >= 0, got ' .. tostring(weight_decay), 2)
  end
  local decay, no_decay, seen = {}, {}, {}
  for _, pair in ipairs(model:named_modules()) do
    local m = pair[2]
    local norm = is_norm_module(m)
    for _, np in ipairs(own_params(m)) do
      local name, p = np[1], np[2]
      if not seen[p] then
        seen[p] = true
        if norm or name == 'bias' then no_decay[#no_decay + 1] = p
        else decay[#decay + 1] = p end
      end
    end
  end
  return { { params = decay, weight_decay = weight_decay }, { params = no_decay, weight_decay = 0.0 } }
end

-- schedulers -------------------------------------------------------------------------

local schedulers = require 'tide.optim.schedulers'
for k, v in pairs(schedulers) do M[k] = v end

return M

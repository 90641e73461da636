-- Learning-rate schedulers with the semantics of Hugging Face's get_scheduler
-- over torch's LambdaLR: each group's lr is its initial lr times a factor
-- that depends only on the step count. Constructing a scheduler already
-- applies step 0 (so with warmup the first optimizer step uses lr 0, as in
-- transformers); each sched:step() advances one step. The factors use the
-- same double-precision formulas, in the same order, as transformers'
-- optimization.py, so the learning rates are bit-equal to Python's.
local M = {}

local LambdaLR = {}
LambdaLR.__index = LambdaLR
M.LambdaLR_class = LambdaLR

-- A table from Lua or from tide.json.decode (whose arrays carry
-- json.array_mt): a state_dict saved as JSON loads back.
local json_array_mt = require('tide.json').array_mt
local function is_plain_table(x)
  if type(x) ~= 'table' then return false end
  local mt = getmetatable(x)
  return mt == nil or mt == json_array_mt
end

local function check_optimizer(what, opt, level)
  if type(opt) ~= 'table' or type(opt.param_groups) ~= 'table' then
    error(what .. ': expected an optimizer (a table with param_groups), got ' .. type(opt), level + 1)
  end
end

-- tide.optim.LambdaLR(opt, fn): lr of group i = initial_lr_i * fn(step), or
-- with a list of functions, one per group (torch.optim.lr_scheduler.LambdaLR).
function M.LambdaLR(opt, lr_lambda)
  check_optimizer('LambdaLR', opt, 2)
  local groups = opt.param_groups
  local lambdas = {}
  if type(lr_lambda) == 'function' then
    for i = 1, #groups do lambdas[i] = lr_lambda end
  elseif is_plain_table(lr_lambda) then
    if #lr_lambda ~= #groups then
      error(('LambdaLR: %d lr functions for %d parameter groups'):format(#lr_lambda, #groups), 2)
    end
    for i, f in ipairs(lr_lambda) do
      if type(f) ~= 'function' then error(('LambdaLR: lr function %d is a %s'):format(i, type(f)), 2) end
      lambdas[i] = f
    end
  else
    error('LambdaLR: expected a function of the step (or a list, one per group), got ' .. type(lr_lambda), 2)
  end
  local base = {}
  for i, g in ipairs(groups) do
    -- a second scheduler on the same optimizer starts from the same initial lr, as in torch
    if g.initial_lr == nil then g.initial_lr = g.lr end
    base[i] = g.initial_lr
  end
  local self = setmetatable({ optimizer = opt, lr_lambdas = lambdas, base_lrs = base, last_epoch = -1 }, LambdaLR)
  self:step()
  return self
end

-- The lrs for the current step: initial lr times the factor, per group.
function LambdaLR:get_lr()
  local r = {}
  for i, b in ipairs(self.base_lrs) do r[i] = b * self.lr_lambdas[i](self.last_epoch) end
  return r
end

-- The lrs the last step set, one per group.
function LambdaLR:get_last_lr()
  local r = {}
  for i, v in ipairs(self._last_lr) do r[i] = v end
  return r
end

-- Advances one step and writes the new lr into every group.
function LambdaLR:step()
  self.last_epoch = self.last_epoch + 1
  local lrs = self:get_lr()
  for i, g in ipairs(self.optimizer.param_groups) do g.lr = lrs[i] end
  self._last_lr = lrs
end

-- {last_epoch=, base_lrs=, last_lr=}: the step count and initial lrs (the
-- group lrs themselves travel in the optimizer's state_dict, as in torch).
function LambdaLR:state_dict()
  local b, l = {}, {}
  for i, v in ipairs(self.base_lrs) do b[i] = v end
  for i, v in ipairs(self._last_lr) do l[i] = v end
  return { last_epoch = self.last_epoch, base_lrs = b, last_lr = l }
end

function LambdaLR:load_state_dict(sd)
  if not is_plain_table(sd) or type(sd.last_epoch) ~= 'number' or not is_plain_table(sd.base_lrs) then
    error('load_state_dict: expected a table from a scheduler\'s state_dict()', 2)
  end
  if #sd.base_lrs ~= #self.base_lrs then
    error(('load_state_dict: the saved scheduler has %d groups, this one %d'):format(#sd.base_lrs, #self.base_lrs), 2)
  end
  self.last_epoch = sd.last_epoch
  for i, v in ipairs(sd.base_lrs) do self.base_lrs[i] = v end
  self._last_lr = {}
  for i, v in ipairs(sd.last_lr or self:get_lr()) do self._last_lr[i] = v end
end

-- the Hugging Face schedules ------------------------------------------------------

local function check_steps(what, name, v, level)
  if type(v) ~= 'number' or v ~= v or v % 1 ~= 0 or v < 0 then
    error(("%s: %s must be an integer >= 0, got %s"):format(what, name, tostring(v)), level + 1)
  end
end

-- the warmup ramp: step / max(1, warmup)
local function warmup_factor(step, warmup)
  return step / math.max(1, warmup)
end

function M.get_constant_schedule(opt)
  check_optimizer('get_constant_schedule', opt, 2)
  return M.LambdaLR(opt, function() return 1 end)
end

function M.get_constant_schedule_with_warmup(opt, num_warmup_steps)
  local what = 'get_constant_schedule_with_warmup'
  check_optimizer(what, opt, 2)
  check_steps(what, 'num_warmup_steps', num_warmup_steps, 2)
  return M.LambdaLR(opt, function(step)
    if step < num_warmup_steps then return warmup_factor(step, num_warmup_steps) end
    return 1.0
  end)
end

function M.get_linear_schedule_with_warmup(opt, num_warmup_steps, num_training_steps)
  local what = 'get_linear_schedule_with_warmup'
  check_optimizer(what, opt, 2)
  check_steps(what, 'num_warmup_steps', num_warmup_steps, 2)
  check_steps(what, 'num_training_steps', num_training_steps, 2)
  return M.LambdaLR(opt, function(step)
    if step < num_warmup_steps then return warmup_factor(step, num_warmup_steps) end
    return math.max(0.0, (num_training_steps - step) / math.max(1, num_training_steps - num_warmup_steps))
  end)
end

-- Half a cosine (num_cycles = 0.5) from 1 down to 0 over the steps after warmup.
function M.get_cosine_schedule_with_warmup(opt, num_warmup_steps, num_training_steps, num_cycles)
  local what = 'get_cosine_schedule_with_warmup'
  check_optimizer(what, opt, 2)
  check_steps(what, 'num_warmup_steps', num_warmup_steps, 2)
  check_steps(what, 'num_training_steps', num_training_steps, 2)
  if num_cycles == nil then num_cycles = 0.5 end
  if type(num_cycles) ~= 'number' or num_cycles ~= num_cycles then
    error(what .. ': num_cycles must be a number, got ' .. tostring(num_cycles), 2)
  end
  local pi, cos = math.pi, math.cos
  return M.LambdaLR(opt, function(step)
    if step < num_warmup_steps then return warmup_factor(step, num_warmup_steps) end
    local progress = (step - num_warmup_steps) / math.max(1, num_training_steps - num_warmup_steps)
    -- transformers: 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress))
    return math.max(0.0, 0.5 * (1.0 + cos(pi * num_cycles * 2.0 * progress)))
  end)
end

local known_names = { 'constant', 'constant_with_warmup', 'linear', 'cosine' }
local known_opts = { num_warmup_steps = true, num_training_steps = true, num_cycles = true,
                     scheduler_specific_kwargs = true }

-- tide.optim.get_scheduler(name, opt, {num_warmup_steps=, num_training_steps=,
-- num_cycles=}): transformers.get_scheduler for constant, constant_with_warmup,
-- linear and cosine. As there, every schedule but constant needs
-- num_warmup_steps, and linear and cosine need num_training_steps.
function M.get_scheduler(name, opt, opts)
  if type(name) ~= 'string' then
    error('get_scheduler: the scheduler name must be a string such as \'cosine\', got ' .. type(name), 2)
  end
  opts = opts or {}
  if not is_plain_table(opts) then error('get_scheduler: options must be a table', 2) end
  for k in pairs(opts) do
    if not known_opts[k] then
      error(("get_scheduler: unknown option '%s' (known: num_warmup_steps, num_training_steps, num_cycles)")
        :format(tostring(k)), 2)
    end
  end
  local known = false
  for _, n in ipairs(known_names) do if n == name then known = true end end
  if not known then
    error(("get_scheduler: unknown scheduler '%s' (expected one of %s)"):format(name, table.concat(known_names, ', ')), 2)
  end
  check_optimizer('get_scheduler', opt, 2)
  local extra = opts.scheduler_specific_kwargs or {}
  if name == 'constant' then return M.get_constant_schedule(opt) end
  local w, t = opts.num_warmup_steps, opts.num_training_steps
  if w == nil then
    error(("get_scheduler: %s requires num_warmup_steps, please provide that option"):format(name), 2)
  end
  check_steps('get_scheduler', 'num_warmup_steps', w, 2)
  if name == 'constant_with_warmup' then return M.get_constant_schedule_with_warmup(opt, w) end
  if t == nil then
    error(("get_scheduler: %s requires num_training_steps, please provide that option"):format(name), 2)
  end
  check_steps('get_scheduler', 'num_training_steps', t, 2)
  if name == 'linear' then return M.get_linear_schedule_with_warmup(opt, w, t) end
  local nc = opts.num_cycles
  if nc == nil then nc = extra.num_cycles end
  return M.get_cosine_schedule_with_warmup(opt, w, t, nc)
end

return M

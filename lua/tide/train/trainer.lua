-- tide.train.Trainer: Hugging Face's Trainer for those who want one, built
-- from the same pieces a recipe uses (save/load_checkpoint, evaluate, Logger,
-- plot, the fault handling), not a second framework.
--
--   local trainer = tide.train.Trainer{ model = model, train = loader, eval = valid,
--     args = { output_dir = 'runs/x', max_steps = 200, learning_rate = 3e-3, ... },
--     compute_loss = function(model, batch) return model(batch, {labels = batch}).loss end,
--     callbacks = { on_step_end = function(trainer, state) end } }
--   trainer:train()                                  -- or :train{resume_from_checkpoint = 'auto'}
--
-- `train` and `eval` are batch sources: a shard loader (tide.data.shards), a
-- list of batches (cycled through, its position saved in checkpoints), or a
-- function returning the next batch (its position is not saved, so a resumed
-- run sees other data). A batch is whatever compute_loss takes; tensors in it
-- are moved to args.device first.
local tide = require 'tide'
local faults = require 'tide.train.faults'

local M = {}

-- Hugging Face TrainingArguments' defaults, where they make sense here
local defaults = {
  output_dir = nil, per_device_train_batch_size = nil, per_device_eval_batch_size = nil,
  gradient_accumulation_steps = 1, learning_rate = 5e-5, weight_decay = 0.0,
  adam_beta1 = 0.9, adam_beta2 = 0.999, adam_epsilon = 1e-8,
  warmup_steps = 0, warmup_ratio = 0.0, lr_scheduler_type = 'linear',
  max_steps = -1, num_train_epochs = 3, eval_steps = nil, save_steps = 500, save_total_limit = nil,
  logging_steps = 500, max_grad_norm = 1.0, seed = 42, device = 'cpu', eval_max_batches = nil,
  skip_nonfinite = false, save_on_interrupt = true, progress = 'auto', tensorboard = true,
  plot = true,
}

-- The pieces, looked up when used: tide.train holds whichever modules this
-- build has (and tests may stand in for them).
local function piece(name, required)
  local train = require 'tide.train'
  local f = train[name]
  if f == nil and required then
    error(('Trainer: %s needs tide.train.%s, which this build of tide lacks'):format(required, name), 3)
  end
  return f
end

-- Moves the tensors of a batch (a tensor, or a table of them) to a device.
local function to_device(batch, device)
  if tide.is_tensor(batch) then return batch:to(device) end
  if type(batch) == 'table' then
    local out = {}
    for k, v in pairs(batch) do out[k] = tide.is_tensor(v) and v:to(device) or v end
    return out
  end
  return batch
end
M._to_device = to_device

-- A list of batches as a loader: next/state/set_state/reset, cycling through epochs.
local ListLoader = {}
ListLoader.__index = ListLoader
local function list_loader(list)
  if #list == 0 then error('Trainer: the list of batches is empty', 3) end
  return setmetatable({ list = list, _epoch = 0, _index = 0 }, ListLoader)
end
function ListLoader:next()
  if self._index >= #self.list then self._epoch, self._index = self._epoch + 1, 0 end
  self._index = self._index + 1
  return self.list[self._index]
end
function ListLoader:state() return { epoch = self._epoch, index = self._index } end
function ListLoader:set_state(s) self._epoch, self._index = s.epoch, s.index end
function ListLoader:reset() self._epoch, self._index = 0, 0 end
function ListLoader:num_batches() return #self.list end

local function as_loader(src, what)
  if src == nil then return nil end
  if type(src) == 'function' then return { next = function() return src() end } end
  if type(src) == 'table' and type(src.next) == 'function' then return src end
  if type(src) == 'table' and not tide.is_tensor(src) then return list_loader(src) end
  error(('Trainer: %s must be a shard loader, a list of batches or a function, got %s'):format(what, type(src)), 3)
end

local Trainer = {}
Trainer.__index = Trainer

function M.Trainer(opts)
  if type(opts) ~= 'table' or opts.model == nil then
    error('Trainer: expected {model=, train=, eval=, args={...}}', 2)
  end
  local args = {}
  for k, v in pairs(defaults) do args[k] = v end
  for k, v in pairs(opts.args or {}) do
    if defaults[k] == nil and not (k == 'output_dir' or k == 'per_device_train_batch_size'
                                   or k == 'per_device_eval_batch_size' or k == 'eval_steps'
                                   or k == 'save_total_limit' or k == 'eval_max_batches') then
      error(('Trainer: unknown argument args.%s'):format(tostring(k)), 2)
    end
    args[k] = v
  end
  if type(args.output_dir) ~= 'string' then error('Trainer: args.output_dir (the run directory) is required', 2) end
  if args.gradient_accumulation_steps < 1 or args.gradient_accumulation_steps % 1 ~= 0 then
    error('Trainer: args.gradient_accumulation_steps must be an integer >= 1', 2)
  end
  local self = setmetatable({
    model = opts.model, args = args, callbacks = opts.callbacks or {},
    train_loader = as_loader(opts.train, 'train'), eval_loader = opts.eval,
    compute_loss = opts.compute_loss or function(model, batch) return model(batch, { labels = batch }).loss end,
    tokenizer = opts.tokenizer, config = opts.config,
  }, Trainer)
  if self.train_loader == nil then error('Trainer: train (the training batches) is required', 2) end
  local bs = self.train_loader.batch_size
  if bs and args.per_device_train_batch_size and bs ~= args.per_device_train_batch_size then
    error(('Trainer: the loader gives batches of %d, args.per_device_train_batch_size is %d')
      :format(bs, args.per_device_train_batch_size), 2)
  end
  self.total_steps = self:_total_steps()
  if opts.optimizers then
    self.optimizer, self.scheduler = opts.optimizers[1], opts.optimizers[2]
  end
  return self
end

-- max_steps when given (> 0), else num_train_epochs over the loader's batches
function Trainer:_total_steps()
  local a = self.args
  if a.max_steps and a.max_steps > 0 then return a.max_steps end
  local nb = self.train_loader.num_batches and self.train_loader:num_batches()
  if not nb then error('Trainer: args.max_steps is needed when the training batches have no num_batches()', 3) end
  return math.max(1, math.floor(nb / a.gradient_accumulation_steps)) * math.ceil(a.num_train_epochs)
end

function Trainer:_setup()
  local a = self.args
  self.model:to(a.device)
  if not self.optimizer then
    self.optimizer = tide.optim.AdamW(tide.optim.grouped_params(self.model, a.weight_decay),
      { lr = a.learning_rate, betas = { a.adam_beta1, a.adam_beta2 }, eps = a.adam_epsilon })
  end
  if not self.scheduler then
    local warmup = a.warmup_steps > 0 and a.warmup_steps or math.ceil(a.warmup_ratio * self.total_steps)
    self.scheduler = tide.optim.get_scheduler(a.lr_scheduler_type, self.optimizer,
      { num_warmup_steps = warmup, num_training_steps = self.total_steps })
  end
end

-- The checkpoint state: what save_checkpoint writes and load_checkpoint fills.
function Trainer:_state(step)
  return { step = step, micro_step = 0, model = self.model, optimizer = self.optimizer,
           scheduler = self.scheduler, loader = self.train_loader.state and self.train_loader or nil,
           tokenizer = self.tokenizer, config = self.config, tokens = self.tokens,
           elapsed = (self.elapsed_before or 0) + (self.t_start and tide.clock() - self.t_start or 0),
           options = self.args, extra = { skipped_nonfinite = self.guard and self.guard.skipped or 0 } }
end

function Trainer:save(step)
  local save = piece('save_checkpoint', 'saving a checkpoint')
  local path = save(self.args.output_dir, self:_state(step), { keep_last = self.args.save_total_limit })
  self.last_checkpoint, self.saved_step = path, step
  if self.callbacks.on_save then self.callbacks.on_save(self, path) end
  return path
end

-- The eval loss and perplexity on args.eval_max_batches batches of `eval`.
function Trainer:evaluate(step)
  if self.eval_loader == nil then return nil end
  local evaluate = piece('evaluate', 'evaluation')
  local r = evaluate(self.model, self.eval_loader, { max_batches = self.args.eval_max_batches,
                                                     device = self.args.device, compute_loss = self.compute_loss })
  local metrics = { ['loss/eval'] = r.loss, perplexity = r.perplexity }
  if self.logger then self.logger:log(step, metrics) end
  if self.callbacks.on_evaluate then self.callbacks.on_evaluate(self, metrics, step) end
  return metrics
end

-- Trains to args.max_steps (or the epochs); returns {step=, loss=, skipped_nonfinite=, checkpoint=}.
-- opts.resume_from_checkpoint: a checkpoint directory, a run directory, or
-- 'auto' / true for args.output_dir (its latest intact checkpoint).
function Trainer:train(opts)
  opts = opts or {}
  local a = self.args
  tide.manual_seed(a.seed)
  self:_setup()
  local start, skipped = 0, 0
  self.tokens, self.elapsed_before = 0, 0
  local resume = opts.resume_from_checkpoint
  if resume then
    if resume == true or resume == 'auto' then resume = a.output_dir end
    local info = piece('load_checkpoint', 'resuming')(resume, self:_state(0))
    start = info.step
    self.tokens, self.elapsed_before = info.tokens or 0, info.elapsed or 0
    skipped = info.extra and info.extra.skipped_nonfinite or 0
    self.last_checkpoint = info.path
    if info.message then io.stderr:write(info.message, '\n') end
    print(('resuming from %s at step %d'):format(info.path, start))
  end
  self.guard = faults.Guard({ skip = a.skip_nonfinite, skipped = skipped })
  local Logger = piece('Logger')
  self.logger = Logger and Logger(a.output_dir, { total_steps = self.total_steps, log_every = a.logging_steps,
                                                 progress = a.progress, tensorboard = a.tensorboard })
  self.t_start = tide.clock()
  local catcher = faults.catch_interrupts()
  local ok, err = pcall(self._loop, self, start, catcher)
  catcher:release(false)
  if not ok then
    if self.logger then self.logger:close() end
    error(err, 0)
  end
  local step = err
  if self.eval_loader ~= nil and not (a.eval_steps and a.eval_steps > 0 and step % a.eval_steps == 0) then
    self:evaluate(step)
  end
  if self.saved_step ~= step and piece('save_checkpoint') then self:save(step) end
  if self.logger then self.logger:close() end
  local plot = piece('plot')
  if plot and a.plot then self.plot_path = plot({ a.output_dir }) end
  return { step = step, loss = self.loss, skipped_nonfinite = self.guard.skipped, checkpoint = self.last_checkpoint,
           tokens = self.tokens }
end

-- The steps from start + 1 on; returns the last step done.
function Trainer:_loop(start, catcher)
  local a = self.args
  local model, opt, sched, accum = self.model, self.optimizer, self.scheduler, a.gradient_accumulation_steps
  local params = model:parameters()
  local max_norm = (a.max_grad_norm and a.max_grad_norm > 0) and a.max_grad_norm or math.huge
  local t_log, tokens_log, loss_sum, loss_n = tide.clock(), self.tokens, 0, 0
  local step, loss_mean = start, nil
  self.loss = nil
  model:train()
  while step < self.total_steps do
    step = step + 1
    opt:zero_grad()
    -- one optimizer step over `accum` micro-batches; a non-finite loss stops
    -- the forward passes, but the remaining micro-batches are still drawn so
    -- that the data stay where an uninterrupted run would have them
    local total, bad_micro, bad_loss = 0, nil, nil
    for micro = 1, accum do
      local batch = self.train_loader:next()
      if batch == nil then  -- a loader of finite epochs ran out: start it over
        self.train_loader:reset()
        batch = self.train_loader:next()
      end
      if bad_micro == nil then
        batch = to_device(batch, a.device)
        local loss = self.compute_loss(model, batch)
        local l = loss:item()
        if not faults.finite(l) then
          bad_micro, bad_loss = micro, l
        else
          (accum > 1 and loss / accum or loss):backward()
          total = total + l
          local first = tide.is_tensor(batch) and batch or batch.input_ids
          if tide.is_tensor(first) then self.tokens = self.tokens + first:numel() end
        end
      end
    end
    local norm = bad_micro == nil and tide.optim.clip_grad_norm(params, max_norm, { warn_if_nonfinite = false }) or nil
    local ok = self.guard:check({ step = step, micro = bad_micro, accum = accum, loss = bad_loss,
                                  grad_norm = norm, checkpoint = self.last_checkpoint })
    if ok then opt:step() end
    opt:zero_grad()
    sched:step()
    loss_mean = nil  -- a skipped update has no loss to report
    if ok then
      loss_mean = total / accum
      self.loss = loss_mean
      loss_sum, loss_n = loss_sum + loss_mean, loss_n + 1
    end
    local logged = false
    if step % a.logging_steps == 0 or step == self.total_steps then
      local now = tide.clock()
      local m = { ['loss/train'] = loss_n > 0 and loss_sum / loss_n or nil, lr = sched:get_last_lr()[1],
                  grad_norm = norm, tokens_per_s = (self.tokens - tokens_log) / math.max(now - t_log, 1e-9),
                  steps = step, samples = step * accum * (a.per_device_train_batch_size or self.train_loader.batch_size or 1),
                  skipped_nonfinite = self.guard.skipped > 0 and self.guard.skipped or nil }
      if self.logger then self.logger:log(step, m)
      else print(('step %d/%d  loss %.4f  lr %.2e'):format(step, self.total_steps, m['loss/train'] or 0 / 0, m.lr)) end
      t_log, tokens_log, loss_sum, loss_n, logged = now, self.tokens, 0, 0, true
    end
    if self.callbacks.on_step_end then
      self.callbacks.on_step_end(self, { step = step, loss = loss_mean, grad_norm = norm, skipped = not ok, logged = logged })
    end
    if a.eval_steps and a.eval_steps > 0 and step % a.eval_steps == 0 then self:evaluate(step) end
    local saved = false
    if a.save_steps and a.save_steps > 0 and step % a.save_steps == 0 then self:save(step); saved = true end
    if catcher:requested() then
      local path = saved and self.last_checkpoint or nil
      if not saved and a.save_on_interrupt and piece('save_checkpoint') then path = self:save(step) end
      if self.logger then self.logger:close() end
      faults.exit_interrupted(step, path, a.output_dir)
    end
  end
  return step
end

return M

-- tide.train.evaluate: the held-out loss and perplexity, as the Hugging Face
-- course's evaluate() computes them (mean of the batch losses; perplexity
-- exp(loss), inf when that overflows), with no autograd and the model's
-- train/eval mode put back as it was.
--
--   local r = train.evaluate(model, valid_loader, { max_batches = 8 })
--   --> { loss = 3.91, perplexity = 49.9, batches = 8 }
local M = {}

local function tide_() return require 'tide' end

local function default_loss(model, batch)
  return model(batch, { labels = batch }).loss
end

-- The batches as an iterator function. A loader (anything with reset()) is
-- reset first, so every call sees the same batches from the start.
local function batch_iter(batches, what, level)
  local tb = type(batches)
  if tb == 'function' then return batches end
  if tb == 'table' then
    if type(batches.reset) == 'function' then
      batches:reset()
      if type(batches.next) == 'function' then return function() return batches:next() end end
      return function() return batches() end
    end
    local i = 0
    return function()
      i = i + 1
      return batches[i]
    end
  end
  error(('%s: batches must be a loader (tide.data.shards), a list of tensors or an iterator function, got %s')
    :format(what, tb), level + 1)
end

-- train.evaluate(model, batches, opts) -> { loss=, perplexity=, batches= }.
-- opts: max_batches (all when nil), device (batches are moved there),
-- compute_loss(model, batch) -> a scalar loss tensor (default: the model's
-- own loss with labels = the batch, as the causal LM heads take it).
function M.evaluate(model, batches, opts)
  local what = 'evaluate'
  if type(model) ~= 'table' then error(what .. ': expected a model, got ' .. type(model), 2) end
  opts = opts or {}
  if type(opts) ~= 'table' then error(what .. ': opts must be a table such as {max_batches=8}', 2) end
  local maxb = opts.max_batches
  if maxb ~= nil and (type(maxb) ~= 'number' or maxb < 1 or (maxb % 1 ~= 0 and maxb ~= math.huge)) then
    error(what .. ': max_batches must be a positive integer, got ' .. tostring(maxb), 2)
  end
  maxb = maxb or math.huge
  local compute_loss = opts.compute_loss or default_loss
  if type(compute_loss) ~= 'function' then error(what .. ': compute_loss must be a function(model, batch)', 2) end
  local nextb = batch_iter(batches, what, 2)
  local tide = tide_()
  local was_training = model.training
  if type(model.eval) == 'function' then model:eval() end
  local total, n = 0, 0
  local ok, err = pcall(tide.no_grad, function()
    while n < maxb do
      local b = nextb()
      if b == nil then break end
      if opts.device ~= nil and type(b.to) == 'function' then b = b:to(opts.device) end
      local loss = compute_loss(model, b)
      local v = type(loss) == 'number' and loss or loss:item()
      total = total + v
      n = n + 1
    end
  end)
  -- the mode goes back even when a batch failed
  if type(model.train) == 'function' and was_training ~= nil then model:train(was_training) end
  if not ok then error(err, 0) end
  -- a data-parallel job: the mean over every rank's batches (each rank
  -- reads its own part of the held-out set), the same number on every rank
  local d = require('tide.train.dist').world()
  if d then
    local sums = tide.tensor({ total, n }, { dtype = 'f64' })
    d.all_reduce(sums, 'sum')
    local s = sums:tolist()
    total, n = s[1], s[2]
  end
  if n == 0 then error(what .. ': no batches to evaluate (an empty list or an exhausted iterator)', 2) end
  local loss = total / n
  -- math.exp overflows to inf as the course's OverflowError branch sets it;
  -- a NaN loss stays NaN
  local ppl = math.exp(loss)
  return { loss = loss, perplexity = ppl, batches = n }
end

return M

-- tide.dist.DataParallel: data-parallel training as torch's
-- DistributedDataParallel does it. Every rank holds the whole model and
-- runs its own micro-batch; gradients are averaged across ranks during
-- backward, so that after backward every rank holds the same .grad and the
-- same optimizer step keeps the replicas identical.
--
--   local model = tide.dist.DataParallel(tide.gpt2.new(cfg), { bucket_mb = 25 })
--   loss = model(x, { labels = x }).loss; loss:backward()   -- grads averaged
--   model:no_sync(function() ... loss:backward() end)        -- accumulate locally
--
-- How: the parameters are copied from rank 0 when the model is wrapped;
-- their gradients are packed into flat buckets (parameters in reverse order,
-- roughly the order backward finishes them; the first bucket is 1 MiB, the
-- others bucket_mb, as in torch), and a gradient hook per parameter
-- (register_post_accumulate_grad_hook) copies its .grad into its bucket
-- slot. When every parameter of a bucket is in, the bucket's all-reduce
-- (avg) is started (tide.dist.all_reduce_async: the engine's communication
-- thread runs it) while backward goes on computing the earlier layers; the
-- end-of-backward callback waits for every started bucket before anyone can
-- read a .grad. Buckets are started in bucket order on every rank (a later
-- bucket waits for the earlier ones), so the ranks' collectives always
-- match. ZeRO-1's reduce-scatter (reduce_bucket) stays blocking. After the reduce,
-- each .grad is a view of its bucket (torch's gradient_as_bucket_view): no
-- copy back. A parameter that got no gradient in this backward contributes
-- zeros (torch's find_unused_parameters), and its .grad becomes the average
-- of the others'.
--
-- The model is returned wrapped in place: the same table, with no_sync()
-- and a `ddp` field (the reducer) added, so checkpoints, save_pretrained and
-- named_parameters see the model as it was.
local M = {}

local function tide_() return require 'tide' end
local function dist_() return require 'tide.dist' end

local MB = 1024 * 1024
local FIRST_BUCKET = 1 * MB  -- torch's dist._DEFAULT_FIRST_BUCKET_BYTES

local Reducer = {}
Reducer.__index = Reducer
M.Reducer = Reducer

-- Splits params (a list, already in reverse order of use) into buckets of
-- one dtype and device each, the first up to first_bytes, the others up to
-- cap bytes (a parameter larger than the cap gets a bucket of its own).
local function make_buckets(params, cap, first_bytes)
  local buckets, open = {}, {}
  for _, p in ipairs(params) do
    local key = p:dtype() .. '@' .. p.device
    local b = open[key]
    local bytes = p:numel() * p:element_size()
    local limit = (#buckets == 0 or (b and b.index == 1)) and first_bytes or cap
    if b == nil or (b.bytes > 0 and b.bytes + bytes > limit) then
      b = { index = #buckets + 1, dtype = p:dtype(), device = p.device, params = {}, offsets = {}, numel = 0, bytes = 0 }
      buckets[#buckets + 1] = b
      open[key] = b
    end
    b.params[#b.params + 1] = p
    b.offsets[#b.offsets + 1] = b.numel
    b.numel = b.numel + p:numel()
    b.bytes = b.bytes + bytes
  end
  return buckets
end

-- The reducer of a wrapped model: its buckets, their flat gradient buffers
-- and the state of the backward in flight.
function M.new_reducer(params, opts)
  local tide, dist = tide_(), dist_()
  local self = setmetatable({ world_size = dist.world_size(), rank = dist.rank(), sync = true,
                              params = params, slot_of = {}, bucket_of = {}, stats = { reduces = 0, bytes = 0,
                              comm_s = 0, backward_comm_s = 0, finalize_comm_s = 0, wait_comm_s = 0 },
                              pending = {} }, Reducer)
  local rev = {}
  for i = #params, 1, -1 do rev[#rev + 1] = params[i] end
  local cap = opts.bucket_mb * MB
  self.buckets = make_buckets(rev, cap, math.min(cap, opts.first_bucket_mb * MB))
  for _, b in ipairs(self.buckets) do
    b.flat = tide.zeros({ b.numel }, { dtype = b.dtype, device = b.device })
    b.slots = {}
    for i, p in ipairs(b.params) do
      local slot = b.flat:narrow(1, b.offsets[i] + 1, p:numel()):view(p:shape())
      b.slots[i] = slot
      self.slot_of[p] = slot
      self.bucket_of[p] = b
    end
  end
  self:_reset()
  return self
end

function Reducer:_reset()
  self.ready = {}           -- parameter -> true once its gradient is in its slot
  self.count = {}           -- bucket -> parameters ready
  self.next_bucket = 1      -- the first bucket not reduced yet
  self.queued = false       -- the end-of-backward callback is queued
  for _, b in ipairs(self.buckets) do self.count[b] = 0 end
end

-- Copies p's gradient into its slot (unless it is the slot already) and
-- makes the slot p's .grad.
local function to_slot(p, slot)
  local g = rawget(p, 'grad')
  if g == nil then
    slot:zero_()
  elseif not rawequal(g, slot) then
    slot:copy_(g)
  end
  rawset(p, 'grad', slot)
end

-- The collective of one bucket: the average over ranks, in place, started
-- here and waited for in _wait_all (ZeRO-1's optimizer replaces it with a
-- blocking reduce-scatter). stats.*_comm_s count the time this thread spent
-- in tide.dist: starting (staging) and, in wait_comm_s, waiting at the end
-- of backward (the communication that backward did not hide).
function Reducer:_reduce(b, phase)
  if self.world_size > 1 then
    local tide = tide_()
    local t0 = tide.clock()
    if self.reduce_bucket then
      self.reduce_bucket(b)
    elseif self.overlap == false then  -- DataParallel{overlap = false}: blocking, in the hook
      dist_().all_reduce(b.flat, 'avg')
    else
      self.pending[#self.pending + 1] = dist_().all_reduce_async(b.flat, 'avg')
    end
    local dt = tide.clock() - t0
    local st = self.stats
    st.reduces, st.bytes, st.comm_s = st.reduces + 1, st.bytes + b.bytes, st.comm_s + dt
    st[phase .. '_comm_s'] = st[phase .. '_comm_s'] + dt
  elseif self.reduce_bucket then
    self.reduce_bucket(b)
  end
end

-- Reduces the buckets that are complete, in bucket order.
function Reducer:_flush(phase)
  local buckets = self.buckets
  while self.next_bucket <= #buckets do
    local b = buckets[self.next_bucket]
    if self.count[b] < #b.params then return end
    self:_reduce(b, phase)
    self.next_bucket = self.next_bucket + 1
  end
end

-- The gradient hook of parameter p.
function Reducer:_on_grad(p)
  if not self.sync or self.ready[p] then return end
  if not self.queued then
    -- a backward that raised before its end left buckets in flight: let them land before this one fills them
    if #self.pending > 0 then pcall(self._wait_all, self) end
    self.queued = true
    tide_().autograd.queue_callback(function() self:_finish() end)
  end
  to_slot(p, self.slot_of[p])
  self.ready[p] = true
  local b = self.bucket_of[p]
  self.count[b] = self.count[b] + 1
  if self.count[b] == #b.params and b.index == self.next_bucket then self:_flush('backward') end
end

-- After the backward: parameters that got no gradient contribute what they
-- hold (zeros when nothing), and the remaining buckets are reduced.
function Reducer:_finish()
  for _, b in ipairs(self.buckets) do
    for i, p in ipairs(b.params) do
      if not self.ready[p] then
        to_slot(p, b.slots[i])
        self.ready[p] = true
        self.count[b] = self.count[b] + 1
      end
    end
  end
  self:_flush('finalize')
  local ok, err = pcall(self._wait_all, self)
  self:_reset()
  if not ok then error(err, 0) end
end

-- Waits for the started bucket all-reduces, in the order they were started.
function Reducer:_wait_all()
  local pending = self.pending
  if #pending == 0 then return end
  self.pending = {}
  local tide = tide_()
  local t0 = tide.clock()
  local ok, err = true, nil
  for _, h in ipairs(pending) do
    -- every handle is waited for even after an error, so no bucket is left in flight
    local fine, e = pcall(h.wait, h)
    if not fine and ok then ok, err = false, e end
  end
  local dt = tide.clock() - t0
  local st = self.stats
  st.comm_s, st.wait_comm_s = st.comm_s + dt, st.wait_comm_s + dt
  if not ok then error(err, 0) end
end

-- Runs fn(...) with gradient averaging off: backward accumulates into .grad
-- locally, and the first backward outside no_sync averages the sum (as
-- torch's and Accelerate's no_sync). Returns fn's results.
function Reducer:no_sync(fn, ...)
  local prev = self.sync
  self.sync = false
  local res = { pcall(fn, ...) }
  self.sync = prev
  if not res[1] then error(res[2], 0) end
  return unpack(res, 2, table.maxn(res))
end

-- Bucket layout, for tests and the benchmark: { {numel=, bytes=, params=n}, ... }.
function Reducer:layout()
  local r = {}
  for i, b in ipairs(self.buckets) do r[i] = { numel = b.numel, bytes = b.bytes, params = #b.params, dtype = b.dtype } end
  return r
end

-- tide.dist.DataParallel(model, {bucket_mb = 25, first_bucket_mb = 1,
-- broadcast = true, overlap = true}): wraps model in place and returns it.
-- overlap = false all-reduces each bucket in its hook, blocking: faster
-- where the ranks' compute threads already take every core, since Open
-- MPI's communication thread polls while it waits (bench/RESULTS.md: 2 ranks
-- on 2 cores, 282 ms a step blocking against 312 ms overlapped).
function M.DataParallel(model, opts)
  local what = 'DataParallel'
  if type(model) ~= 'table' or type(model.parameters) ~= 'function' then
    error(what .. ': expected a model (a tide.nn module), got ' .. type(model), 2)
  end
  if rawget(model, 'ddp') ~= nil then error(what .. ': this model is wrapped already', 2) end
  opts = opts or {}
  if type(opts) ~= 'table' then error(what .. ': options must be a table such as {bucket_mb = 25}', 2) end
  local known = { bucket_mb = true, first_bucket_mb = true, broadcast = true, overlap = true }
  for k in pairs(opts) do
    if not known[k] then
      error(("%s: unknown option '%s' (known: broadcast, bucket_mb, first_bucket_mb, overlap)"):format(what, tostring(k)), 2)
    end
  end
  local o = { bucket_mb = opts.bucket_mb or 25, first_bucket_mb = opts.first_bucket_mb or FIRST_BUCKET / MB }
  for _, k in ipairs { 'bucket_mb', 'first_bucket_mb' } do
    local v = o[k]
    if type(v) ~= 'number' or v ~= v or v <= 0 or v == math.huge then
      error(('%s: %s must be a positive number, got %s'):format(what, k, tostring(v)), 2)
    end
  end
  if opts.overlap ~= nil and type(opts.overlap) ~= 'boolean' then
    error(('%s: overlap must be true or false, got %s'):format(what, tostring(opts.overlap)), 2)
  end
  local params = {}
  for _, p in ipairs(model:parameters()) do
    if rawget(p, 'requires_grad') == true then params[#params + 1] = p end
  end
  if #params == 0 then error(what .. ': the model has no parameter that requires grad', 2) end
  local tide, dist = tide_(), dist_()
  if not dist.is_initialized() then dist.init() end  -- joins the launcher's job (a world of one without)
  -- every replica starts from rank 0's weights
  if opts.broadcast ~= false and dist.world_size() > 1 then
    tide.no_grad(function()
      for _, p in ipairs(params) do dist.broadcast(p, 0) end
    end)
  end
  local reducer = M.new_reducer(params, o)
  reducer.overlap = opts.overlap ~= false
  reducer.hooks = {}
  for _, p in ipairs(params) do
    reducer.hooks[#reducer.hooks + 1] = p:register_post_accumulate_grad_hook(function(t) reducer:_on_grad(t) end)
    rawset(p, '_ddp', reducer)
  end
  rawset(model, 'ddp', reducer)
  rawset(model, 'no_sync', function(_, fn, ...)
    if type(fn) ~= 'function' then error('no_sync: expected a function to run, got ' .. type(fn), 2) end
    return reducer:no_sync(fn, ...)
  end)
  return model
end

return M

-- ZeRO stage 1 for AdamW (tide.optim.AdamW(params, {..., zero = 1})): the
-- optimizer state is sharded over the ranks, as llm.c and DeepSpeed's
-- stage 1 do. The model must be wrapped in tide.dist.DataParallel first; its
-- gradient buckets then change their collective:
--   backward   each complete bucket is reduce-scattered (avg) instead of
--              all-reduced: rank r receives the averaged gradient of its
--              1/N slice of the bucket only ((N-1)/N of the bytes, half of
--              an all-reduce);
--   step       rank r updates the parameters of its slice with AdamW in
--              f32 (exp_avg and exp_avg_sq exist for that slice only), then
--              the bucket's parameters are all-gathered ((N-1)/N again).
-- The parameters become views of one flat buffer per bucket (padded to a
-- multiple of N), so that a slice is contiguous; a slice may cut through a
-- parameter, and each piece is updated with its own group's options.
--
-- The gradients left in p.grad are this rank's own (not averaged): the
-- averaged ones exist only as slices. tide.optim.clip_grad_norm on these
-- parameters therefore comes here (clip_grad_norm below): the squared norms
-- of the slices are summed over the ranks, and the slices are scaled.
-- state_dict() gathers the slices (a collective: every rank calls it) and
-- returns the same tables as a plain AdamW, so a checkpoint resumes on any
-- world size, with or without zero; load_state_dict keeps this rank's slice.
local ffi = require 'ffi'
local C = require 'tide.C'
local errors = require 'tide.errors'
local core = require 'tide.tensor'

local M = {}

local function tide_() return require 'tide' end
local function dist_() return require 'tide.dist' end

-- Turns opt (a fresh AdamW) into a ZeRO-1 one; level is the caller's error level.
function M.enable(opt, level)
  level = level + 1
  local tide, dist = tide_(), dist_()
  local reducer, group_of = nil, {}
  for gi, g in ipairs(opt.param_groups) do
    for _, p in ipairs(g.params) do
      local r = rawget(p, '_ddp')
      if r == nil then
        error('AdamW: zero = 1 shards the optimizer state over the ranks of a data-parallel model; ' ..
          'wrap the model with tide.dist.DataParallel(model) first, then make the optimizer from its parameters', level)
      end
      if reducer ~= nil and r ~= reducer then
        error('AdamW: zero = 1: the parameters belong to two different DataParallel models', level)
      end
      if rawget(p, '_zero') ~= nil then error('AdamW: zero = 1: a parameter is sharded by another optimizer already', level) end
      reducer = r
      group_of[p] = g
    end
  end
  local ws, rank = reducer.world_size, reducer.rank
  local zs = { reducer = reducer, world_size = ws, rank = rank, buckets = {}, group_of = group_of }
  local state_bytes = 0
  tide.no_grad(function()
    for _, b in ipairs(reducer.buckets) do
      if b.dtype ~= 'f32' and b.dtype ~= 'f64' then
        error(('AdamW: zero = 1 needs f32 or f64 parameters (f32 master weights), got %s'):format(b.dtype), level + 2)
      end
      local shard = math.ceil(b.numel / ws)
      local padded = shard * ws
      local lo = rank * shard  -- 0-based first element of this rank's slice
      -- the gradient buffer, padded (the padding stays zero)
      local gflat = tide.zeros({ padded }, { dtype = b.dtype, device = b.device })
      gflat:narrow(1, 1, b.numel):copy_(b.flat)
      local pflat = tide.zeros({ padded }, { dtype = b.dtype, device = b.device })
      local zb = { bucket = b, shard = shard, lo = lo, gflat = gflat, pflat = pflat,
                   gshard = tide.zeros({ shard }, { dtype = b.dtype, device = b.device }),
                   m = tide.zeros({ shard }, { dtype = b.dtype, device = b.device }),
                   v = tide.zeros({ shard }, { dtype = b.dtype, device = b.device }), segments = {} }
      state_bytes = state_bytes + 2 * shard * zb.m:element_size()
      b.flat = gflat
      for i, p in ipairs(b.params) do
        local off, n = b.offsets[i], p:numel()
        local slot = gflat:narrow(1, off + 1, n):view(p:shape())
        b.slots[i] = slot
        reducer.slot_of[p] = slot
        rawset(p, 'grad', nil)  -- the next backward fills the new slot
        -- p becomes a view of the flat parameters (Module:to's way: same
        -- Lua tensor, new handle), so tied modules and the optimizer keep it
        local pv = pflat:narrow(1, off + 1, n):view(p:shape())
        pv:copy_(p)
        rawset(p, '_c', pv._c)
        rawset(p, '_zero', opt)
        -- the piece of p inside this rank's slice
        local s, e = math.max(off, lo), math.min(off + n, lo + shard)
        if s < e then
          zb.segments[#zb.segments + 1] = {
            param = p, first = s - off, len = e - s,
            p = pflat:narrow(1, s + 1, e - s), g = zb.gshard:narrow(1, s - lo + 1, e - s),
            m = zb.m:narrow(1, s - lo + 1, e - s), v = zb.v:narrow(1, s - lo + 1, e - s),
          }
        end
      end
      zs.buckets[#zs.buckets + 1] = zb
      zb.index = #zs.buckets
      b.zero = zb
    end
  end)
  zs.state_bytes = state_bytes
  -- the bucket's collective: the averaged gradient of this rank's slice
  reducer.reduce_bucket = function(b)
    local zb = b.zero
    if ws > 1 then
      dist.reduce_scatter(zb.gshard, b.flat, 'avg')
    else
      zb.gshard:copy_(b.flat)
    end
    zb.fresh = true
  end
  opt.zero = zs
  opt.state = {}   -- only step counts live here (state[p].step); the moments are the slices
  return opt
end

-- One step: AdamW on this rank's slices, then the parameters all-gathered.
function M.step(opt)
  local zs = opt.zero
  local tide, dist = tide_(), dist_()
  local state = opt.state
  tide.no_grad(function()
    for _, zb in ipairs(zs.buckets) do
      if not zb.fresh then
        error('AdamW (zero = 1): step() without gradients: run backward (outside no_sync) first', 4)
      end
      for _, s in ipairs(zb.segments) do
        local p = s.param
        local g = zs.group_of[p]
        local st = state[p]
        if st == nil then st = { step = 0 }; state[p] = st end
        local grad = g.maximize and s.g:neg() or s.g
        local rc = C.tide_adamw_step_(s.p._c, grad._c, s.m._c, s.v._c, g.lr, g.betas[1], g.betas[2], g.eps,
                                      g.weight_decay, st.step + 1)
        if rc ~= 0 then errors.raise(4) end
      end
      zb.fresh = false
    end
    -- step counts move once per parameter, also where another rank holds it
    for _, zb in ipairs(zs.buckets) do
      for _, p in ipairs(zb.bucket.params) do
        if zs.group_of[p] then
          local st = state[p]
          if st == nil then st = { step = 0 }; state[p] = st end
          st.step = st.step + 1
        end
      end
    end
    for _, zb in ipairs(zs.buckets) do
      if zs.world_size > 1 then
        -- a copy of the slice, alive only for the call (the gather writes over pflat)
        dist.all_gather(zb.pflat, zb.pflat:narrow(1, zb.lo + 1, zb.shard):clone())
      end
    end
  end)
end

-- clip_grad_norm over the averaged gradient slices of every rank; the same
-- arithmetic as tide.optim.clip_grad_norm (2-norm only).
function M.clip_grad_norm(opt, max_norm, opts)
  opts = opts or {}
  local norm_type = opts.norm_type == nil and 2 or opts.norm_type
  if norm_type ~= 2 then
    error('clip_grad_norm: with zero = 1 only the 2-norm is computed across ranks, got norm_type ' .. tostring(norm_type), 3)
  end
  local zs = opt.zero
  local tide, dist = tide_(), dist_()
  local list = {}
  for _, zb in ipairs(zs.buckets) do list[#list + 1] = zb.gshard end
  local handles = ffi.new('const tide_tensor*[?]', #list)
  for i, t in ipairs(list) do handles[i - 1] = t._c end
  local out = ffi.new('tide_tensor*[1]')
  if C.tide_multi_norm(#list, handles, 2, out) ~= 0 then errors.raise(3) end
  local local_norm = core.wrap(out[0]):item()
  local sq = tide.tensor({ local_norm * local_norm }, { dtype = 'f64' })
  if zs.world_size > 1 then dist.all_reduce(sq, 'sum') end
  local f = ffi.new('float[1]')
  local function r32(x) f[0] = x; return f[0] end
  local total = r32(math.sqrt(sq:item()))  -- an f32 total, as the single-process norm
  if total ~= total or total == math.huge then
    if opts.error_if_nonfinite then
      error(('clip_grad_norm: the total norm of order 2 of the gradients is non-finite (%s), so it cannot be clipped')
        :format(tostring(total)), 3)
    end
  end
  local coef = r32(r32(1 / r32(total + r32(1e-6))) * r32(max_norm))
  if coef > 1 then coef = 1 end
  tide.no_grad(function()
    for _, t in ipairs(list) do t:mul_(coef) end
  end)
  return total
end

-- The full state (every rank's slices gathered), as a plain AdamW's
-- state_dict holds it: state[p] = {step=, exp_avg=, exp_avg_sq=} shaped as p.
function M.full_state(opt)
  local zs = opt.zero
  local tide, dist = tide_(), dist_()
  local full = {}
  tide.no_grad(function()
    for _, zb in ipairs(zs.buckets) do
      local b = zb.bucket
      local padded = zb.shard * zs.world_size
      local gm = tide.zeros({ padded }, { dtype = b.dtype, device = b.device })
      local gv = tide.zeros({ padded }, { dtype = b.dtype, device = b.device })
      if zs.world_size > 1 then
        dist.all_gather(gm, zb.m)
        dist.all_gather(gv, zb.v)
      else
        gm:copy_(zb.m)
        gv:copy_(zb.v)
      end
      for i, p in ipairs(b.params) do
        local st = opt.state[p]
        if st and st.step > 0 then
          local off, n = b.offsets[i], p:numel()
          full[p] = { step = st.step, exp_avg = gm:narrow(1, off + 1, n):view(p:shape()):clone(),
                      exp_avg_sq = gv:narrow(1, off + 1, n):view(p:shape()):clone() }
        end
      end
    end
  end)
  return full
end

-- Keeps this rank's slice of a full state (state[p] = {step=, exp_avg=, exp_avg_sq=}).
function M.load_full_state(opt, full)
  local zs = opt.zero
  local tide = tide_()
  local steps = {}
  tide.no_grad(function()
    for _, zb in ipairs(zs.buckets) do
      zb.m:zero_()
      zb.v:zero_()
      for _, s in ipairs(zb.segments) do
        local st = full[s.param]
        if st then
          s.m:copy_(st.exp_avg:reshape(-1):narrow(1, s.first + 1, s.len))
          s.v:copy_(st.exp_avg_sq:reshape(-1):narrow(1, s.first + 1, s.len))
        end
      end
    end
  end)
  for p, st in pairs(full) do steps[p] = { step = st.step } end
  opt.state = steps
end

return M

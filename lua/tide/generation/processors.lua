-- Logits processors and the choice of the next token, as transformers'
-- `generate` does them (transformers/generation/logits_process.py, built in
-- the order of GenerationMixin._get_logits_processor):
--
--   1. RepetitionPenaltyLogitsProcessor   repetition_penalty (~= 1), prompt_ignore_length
--   2. MinNewTokensLengthLogitsProcessor  min_new_tokens (> 0) with eos_token_id
--   and only when do_sample is true (the former "warpers"):
--   3. TemperatureLogitsWarper            temperature (~= 1)
--   4. TopKLogitsWarper                   top_k (~= 0; 50 when not given, as generate), min_tokens_to_keep
--   5. TopPLogitsWarper                   top_p (< 1), min_tokens_to_keep
--
--   local P = require 'tide.generation.processors'
--   local process = P.build { do_sample = true, temperature = 0.7, top_k = 50, top_p = 0.95,
--                             repetition_penalty = 1.2, min_new_tokens = 5, eos_token_id = 50256,
--                             prompt_length = input_ids:size(2) }
--   local scores = process(logits, input_ids)          -- logits [B, V] float, input_ids [B, T] i64
--   local next_ids = P.sample(scores, generator)       -- [B] i64; or P.greedy(scores)
--
-- Everything is tensor ops (sort, topk, softmax, cumsum, gather,
-- scatter_add_, masked_fill, where, rand), so it runs on the logits' device.
-- Removed tokens get -inf, as transformers' filter_value. Options are checked
-- when built, with transformers' messages; the warpers' options are checked
-- only with do_sample = true, as transformers builds warpers only then, with
-- one stricter rule: top_p must lie in (0, 1] (transformers lets 0 through and
-- ignores values above 1).
local tide = require 'tide'
local ffi = require 'ffi'

local M = {}

-- generate's default when top_k is not given (GenerationConfig's
-- _get_default_generation_params): sampling keeps the 50 best tokens unless
-- top_k = 0 switches that off.
M.DEFAULT_TOP_K = 50

-- top-p sorts only the finite scores when they are at most a quarter of the
-- row (after top-k); false sorts every row whole, as transformers does.
M.partial_top_p = true

-- A number as Python prints it in transformers' messages: floats with a
-- decimal point (0.0, -1.0, 1.5, 1.7); anything else as tostring.
local function py(v, float)
  if type(v) == 'number' then
    if v ~= v then return 'nan' end
    if v == math.huge then return 'inf' elseif v == -math.huge then return '-inf' end
    if float and v % 1 == 0 then return ('%.1f'):format(v) end
    if v % 1 == 0 and math.abs(v) < 2 ^ 53 then return ('%d'):format(v) end
    for digits = 15, 17 do                           -- the shortest that reads back, as repr
      local text = ('%.' .. digits .. 'g'):format(v)
      if tonumber(text) == v then return text end
    end
  end
  return tostring(v)
end

local function is_int(v) return type(v) == 'number' and v % 1 == 0 and v > -math.huge and v < math.huge end

local function bad(msg, level) error('generate: ' .. msg, (level or 1) + 1) end

-- The value as an f32 (Python scalars meet f32 tensors in f32 in PyTorch's comparisons).
local f32box = ffi.new('float[1]')
local function as_f32(v) f32box[0] = v; return tonumber(f32box[0]) end

-- eos_token_id: an integer or a non-empty list of integers, as a Lua list.
local function eos_list(eos, level)
  if eos == nil then return nil end
  local list = type(eos) == 'table' and not tide.is_tensor(eos) and eos or nil
  if tide.is_tensor(eos) then list = eos:view(-1):tolist() end
  if is_int(eos) then list = { eos } end
  if not list or #list == 0 then
    bad('`eos_token_id` has to be an integer or a non-empty list of integers, but is ' .. py(eos), level + 1)
  end
  for _, id in ipairs(list) do
    if not is_int(id) or id < 0 then
      bad('`eos_token_id` has to be a non-negative integer or a list of them, but contains ' .. py(id), level + 1)
    end
  end
  return list
end

-- Checks the options and returns the list of processors, each
-- { name = transformers' class name, fn = function(scores, input_ids, cur_len) }.
local function processors(opts, level)
  level = level + 1
  local list = {}
  local function add(name, fn, needs_ids) list[#list + 1] = { name = name, fn = fn, needs_ids = needs_ids } end
  local do_sample = opts.do_sample
  if do_sample ~= nil and type(do_sample) ~= 'boolean' then
    bad('`do_sample` has to be a boolean, but is ' .. py(do_sample), level)
  end

  -- 1. repetition penalty --------------------------------------------------------------
  local penalty = opts.repetition_penalty
  if penalty ~= nil then
    if type(penalty) ~= 'number' or not (penalty > 0) or penalty == math.huge then
      bad('`penalty` has to be a strictly positive float, but is ' .. py(penalty, true), level)
    end
  end
  local pil = opts.prompt_ignore_length
  if pil ~= nil then
    if is_int(pil) then
      if pil < 0 then bad('`prompt_ignore_length` has to be a positive integer, but is ' .. py(pil), level) end
    elseif tide.is_tensor(pil) then
      if pil:dim() ~= 1 then bad('`prompt_ignore_length` must be 1D', level) end
      pil = pil:tolist()
    elseif type(pil) ~= 'table' then
      bad('`prompt_ignore_length` has to be an integer or a list of integers (one per row), but is ' .. py(pil), level)
    end
    if type(pil) == 'table' then
      for _, v in ipairs(pil) do
        if not is_int(v) or v < 0 then
          bad('`prompt_ignore_length` has to hold non-negative integers, but holds ' .. py(v), level)
        end
      end
    end
  end
  if penalty ~= nil and penalty ~= 1 then
    add('RepetitionPenaltyLogitsProcessor', function(scores, input_ids)
      local B, V = scores:size(1), scores:size(2)
      local ids = input_ids:clamp_max(V)
      if pil ~= nil then
        local T = ids:size(2)
        local cut
        if type(pil) == 'number' then
          cut = tide.full({ B, 1 }, pil, { dtype = 'i64', device = ids.device })
        else
          if #pil ~= B then bad('Incompatible `prompt_ignore_length` batch size', 2) end
          cut = tide.tensor(pil, { dtype = 'i64' }):to(ids.device):view(B, 1)
        end
        local pos = tide.arange(T, { device = ids.device }):view(1, T)
        ids = ids:masked_fill(pos:lt(cut), V)
      end
      local hit = tide.zeros({ B, V + 1 }, { dtype = scores:dtype(), device = scores.device })
      hit:scatter_add_(2, ids, tide.ones(ids:shape(), { dtype = scores:dtype(), device = scores.device }))
      hit = hit:narrow(2, 1, V):gt(0)
      local penalized = tide.where(scores:lt(0), scores * penalty, scores / penalty)
      return tide.where(hit, penalized, scores)
    end, true)
  end

  -- 2. min_new_tokens ------------------------------------------------------------------
  local eos = eos_list(opts.eos_token_id, level)
  local min_new = opts.min_new_tokens
  if min_new ~= nil and (not is_int(min_new) or min_new < 0) then
    bad('`min_new_tokens` has to be a positive integer, but is ' .. py(min_new), level)
  end
  if min_new ~= nil and min_new > 0 and eos ~= nil then
    local prompt_length = opts.prompt_length
    if not is_int(prompt_length) or prompt_length < 0 then
      bad('`prompt_length` (the length of the prompt, to count new tokens from) has to be a non-negative integer, but is '
        .. py(prompt_length), level)
    end
    local masks = {} -- per vocabulary size and device: the bool mask of the eos ids
    add('MinNewTokensLengthLogitsProcessor', function(scores, input_ids, cur_len)
      cur_len = cur_len or input_ids:size(2)
      if cur_len - prompt_length >= min_new then return scores end
      local V, dev = scores:size(2), scores.device
      local key = V .. '@' .. dev
      local mask = masks[key]
      if not mask then
        local m = {}
        for i = 1, V do m[i] = false end
        for _, id in ipairs(eos) do if id < V then m[id + 1] = true end end
        mask = tide.tensor(m, { dtype = 'bool' }):to(dev)
        masks[key] = mask
      end
      return scores:masked_fill(mask, -math.huge)
    end, true)
  end

  if not do_sample then return list end

  -- 3-5. warpers -----------------------------------------------------------------------
  local keep = opts.min_tokens_to_keep
  if keep == nil then keep = 1 end
  if not is_int(keep) or keep < 1 then
    bad('`min_tokens_to_keep` has to be a positive integer, but is ' .. py(keep), level)
  end

  local t = opts.temperature
  if t ~= nil then
    if type(t) ~= 'number' or not (t > 0) or t == math.huge then
      local msg = '`temperature` (=' .. py(t, true) .. ') has to be a strictly positive float, otherwise your next token '
        .. 'scores will be invalid.'
      if t == 0 then msg = msg .. " If you're looking for greedy decoding strategies, set `do_sample=False`." end
      bad(msg, level)
    end
    if t ~= 1 then
      add('TemperatureLogitsWarper', function(scores) return scores / t end)
    end
  end

  local k = opts.top_k
  if k == nil then k = M.DEFAULT_TOP_K end
  do
    if not is_int(k) or k < 0 then
      bad('`top_k` has to be a strictly positive integer, but is ' .. py(k), level)
    end
    if k ~= 0 then
      local kk = math.max(k, keep)
      add('TopKLogitsWarper', function(scores)
        local n = math.min(kk, scores:size(2))
        local values = scores:topk(n, 2)
        local kth = values:narrow(2, n, 1)
        return scores:masked_fill(scores:lt(kth), -math.huge)
      end)
    end
  end

  local p = opts.top_p
  if p ~= nil then
    if type(p) ~= 'number' or not (p > 0 and p <= 1) then
      bad('`top_p` has to be a float > 0 and < 1, but is ' .. py(p, true), level)
    end
    if p < 1 then
      local threshold32, threshold64 = as_f32(1 - p), 1 - p
      add('TopPLogitsWarper', function(scores)
        local V = scores:size(2)
        -- transformers sorts ascending, removes the sorted positions whose
        -- cumulative probability is <= 1 - top_p (but never the last
        -- min_tokens_to_keep) and scatters that mask back. The removed
        -- positions are a prefix of the stable sort, r per row, so the same
        -- set is: every score below v = the r-th smallest, and of the scores
        -- equal to v the first (by id, as the stable sort orders ties)
        -- r - #{below v}. Elementwise ops and one cumsum instead of a scatter.
        -- After top-k most scores are -inf (probability 0, removed or not
        -- alike), so only the n largest (n = the most finite scores of a row)
        -- need sorting; the V - n others count as removed.
        local n = V
        if M.partial_top_p then
          local finite = scores:gt(-math.huge):sum(2):max():item()
          if finite * 4 <= V then n = math.max(finite, 1) end
        end
        local sorted
        if n < V then
          sorted = scores:topk(n, 2, { sorted = false }):sort(2)
        else
          sorted = scores:sort(2)                              -- ascending, stable
        end
        local threshold = scores:dtype() == 'f64' and threshold64 or threshold32
        local remove = sorted:softmax(2):cumsum(2):le(threshold)
        local pos = tide.arange(n, { device = scores.device }):view(1, n)
        remove = remove:logical_and(pos:lt(n - keep))          -- the last min_tokens_to_keep stay
        local r = remove:sum(2, true)                          -- [B, 1] i64
        local v = sorted:gather(2, (r - 1):clamp_min(0))       -- the last removed value
        v = tide.where(r:gt(0), v, -math.huge)                 -- none: only -inf (a no-op) may go
        local total = r + (V - n)                              -- removed, counted on the whole row
        local upto = scores:le(v)
        -- no tie straddles the cut (the usual case): the removed are the scores <= v
        if tide.equal(upto:sum(2, true), total) then
          return scores:masked_fill(upto, -math.huge)
        end
        local below = scores:lt(v)
        local tie = scores:eq(v)
        local quota = total - below:sum(2, true)               -- how many of the ties go
        local out = below:logical_or(tie:logical_and(tie:to('i64'):cumsum(2):le(quota)))
        return scores:masked_fill(out, -math.huge)
      end)
    end
  end
  return list
end

-- build(opts) -> process, names
--   process(scores, input_ids[, cur_len]) runs the processors in order and
--   returns new scores (the input is not modified; with no processor, the
--   input itself); cur_len defaults to input_ids:size(2). input_ids may be
--   nil when neither repetition_penalty nor min_new_tokens is active. names
--   lists transformers' class names in order.
function M.build(opts)
  if opts == nil then opts = {} end
  if type(opts) ~= 'table' then error('generate: options must be a table, got ' .. type(opts), 2) end
  local list = processors(opts, 2)
  local names, needs_ids = {}, false
  for i, pr in ipairs(list) do names[i] = pr.name; needs_ids = needs_ids or pr.needs_ids end
  local function process(scores, input_ids, cur_len)
    if not tide.is_tensor(scores) or scores:dim() ~= 2 then
      error('generate: scores must be a [batch, vocab] tensor', 2)
    end
    if needs_ids and (not tide.is_tensor(input_ids) or input_ids:dim() ~= 2 or input_ids:size(1) ~= scores:size(1)) then
      error(('generate: input_ids must be a [batch, length] i64 tensor with the scores\' batch size (%d)')
        :format(scores:size(1)), 2)
    end
    for _, pr in ipairs(list) do scores = pr.fn(scores, input_ids, cur_len) end
    return scores
  end
  return process, names
end

-- The next token of each row by sampling: softmax over the processed scores,
-- then one categorical draw per row with a uniform from `generator` (a
-- tide.Generator; the default generator when nil). Returns [B] i64 ids. Reproducible for a seed,
-- whatever the thread count (the draws come from Philox counters).
function M.sample(scores, generator)
  if not tide.is_tensor(scores) or scores:dim() ~= 2 then
    error('sample: scores must be a [batch, vocab] tensor', 2)
  end
  -- One categorical draw per row by inversion: u uniform in [0, 1) from the
  -- generator (f32, so u * total is exact in f64 and stays below total), and
  -- the id is the number of cumulative sums <= u * total: the first id whose
  -- cumulative sum exceeds it, never one of probability 0. The same law as
  -- tide.multinomial(probs, 1), with elementwise ops and one cumsum (several
  -- times faster on a [8, 50257] block).
  local B, V = scores:size(1), scores:size(2)
  local cdf = scores:softmax(2):to('f64'):cumsum(2)
  local u = tide.rand({ B, 1 }, { generator = generator, device = scores.device }):to('f64')
  local target = u * cdf:narrow(2, V, 1)
  return cdf:le(target):sum(2)
end

-- The next token of each row by greedy search: the argmax, the first (lowest
-- id) on ties, as torch.argmax. Returns [B] i64 ids.
function M.greedy(scores)
  if not tide.is_tensor(scores) or scores:dim() ~= 2 then
    error('greedy: scores must be a [batch, vocab] tensor', 2)
  end
  return scores:argmax(2)
end

return M

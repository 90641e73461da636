-- model:generate(input_ids, opts): decoding with a KV cache, as transformers'
-- `generate` does it (greedy search or sampling), with its option names:
--
--   local out = model:generate(ids, { max_new_tokens = 20 })             -- greedy
--   local out = model:generate(ids, { do_sample = true, temperature = 0.8, top_k = 50, top_p = 0.95,
--                                     max_new_tokens = 64, seed = 7, on_token = function(step, next_ids) ... end })
--
-- input_ids: [B, T] (or [T]) integer tensor of 0-based ids; returns [B, T + new] i64
-- (new <= max_new_tokens: generation stops when every row has ended).
--
-- Options:
--   max_new_tokens      tokens to add (wins over max_length)
--   max_length          total length, prompt included (20 when neither is given, as transformers)
--   min_new_tokens      eos is forbidden until this many tokens are new
--   do_sample           false (greedy: argmax) or true (sample from the processed scores)
--   temperature, top_k, top_p, min_tokens_to_keep
--                       sampling warpers (top_k is 50 unless given; 0 switches it off)
--   repetition_penalty  > 1 penalises ids already in the row (prompt included)
--   eos_token_id        an id or a list; default the model config's eos_token_id; false: none
--   pad_token_id        what rows that ended are filled with (default: the first eos id)
--   num_return_sequences  rows per prompt (sampling only; rows of a prompt are adjacent)
--   seed | generator    the random stream for sampling (default: tide.default_generator)
--   on_token(step, ids) called after each step (1-based) with the [B] i64 new ids;
--                       returning false stops generation there
--   attention_mask      [B, T] 1 = token, 0 = padding: left-padded prompts of different
--                       lengths (positions from the mask, as transformers)
--
-- Runs under no_grad in eval mode (the model's mode is restored after).
-- Logits processors run in transformers' order (tide.generation.processors).
local tide = require 'tide'
local P = require 'tide.generation.processors'

local M = {}

local known = {
  max_new_tokens = true, max_length = true, min_new_tokens = true, do_sample = true, temperature = true,
  top_k = true, top_p = true, min_tokens_to_keep = true, repetition_penalty = true, eos_token_id = true,
  pad_token_id = true, num_return_sequences = true, seed = true, generator = true, on_token = true,
  attention_mask = true,
}

local function is_int(v) return type(v) == 'number' and v % 1 == 0 and v > -math.huge and v < math.huge end
local function bad(msg, level) error('generate: ' .. msg, level + 1) end

-- generate(model, input_ids, opts) -> [B * num_return_sequences, T + new] i64
function M.generate(model, ids, opts)
  if opts == nil then opts = {} end
  if type(opts) ~= 'table' then bad('options must be a table, got ' .. type(opts), 2) end
  local names = {}
  for k in pairs(opts) do if not known[k] then names[#names + 1] = tostring(k) end end
  if #names > 0 then
    table.sort(names)
    bad(('unknown option %s'):format(table.concat(names, ', ')), 2)
  end
  local cfg = model.config
  if not tide.is_tensor(ids) then bad('input_ids must be an integer tensor, got ' .. type(ids), 2) end
  local dt = ids:dtype()
  if not (dt == 'i64' or dt == 'i32' or dt == 'u16' or dt == 'u8') then
    bad('input_ids must be an integer tensor, got ' .. dt, 2)
  end
  if ids:dim() == 1 then ids = ids:unsqueeze(1) end
  if ids:dim() ~= 2 then bad(('input_ids must be [B, T] or [T], got shape [%s]'):format(table.concat(ids:shape(), ', ')), 2) end
  ids = ids:to('i64')
  local B, T = ids:size(1), ids:size(2)
  if T == 0 or B == 0 then bad(('input_ids is empty (shape [%d, %d])'):format(B, T), 2) end
  local lo, hi = ids:min():item(), ids:max():item()
  if lo < 0 or hi >= cfg.vocab_size then
    bad(('input_ids must lie in [0, %d) (vocab_size), got values from %d to %d'):format(cfg.vocab_size, lo, hi), 2)
  end
  if T > cfg.n_positions then
    bad(('the prompt has %d tokens, more than the model\'s n_positions (%d)'):format(T, cfg.n_positions), 2)
  end

  -- lengths
  local max_len
  if opts.max_new_tokens ~= nil then
    local n = opts.max_new_tokens
    if not is_int(n) or n < 1 then bad('`max_new_tokens` must be greater than 0, but is ' .. tostring(n), 2) end
    max_len = T + n
    if max_len > cfg.n_positions then
      bad(('max_new_tokens = %d after a %d-token prompt needs %d positions, more than the model\'s n_positions (%d); at most %d new tokens fit')
        :format(n, T, max_len, cfg.n_positions, cfg.n_positions - T), 2)
    end
  else
    max_len = opts.max_length or 20
    if not is_int(max_len) or max_len < 1 then bad('`max_length` must be a positive integer, but is ' .. tostring(max_len), 2) end
    if max_len > cfg.n_positions then
      bad(('max_length = %d is more than the model\'s n_positions (%d)'):format(max_len, cfg.n_positions), 2)
    end
    if max_len <= T then
      bad(('max_length = %d leaves no room for new tokens after a %d-token prompt (use max_new_tokens)'):format(max_len, T), 2)
    end
  end

  -- eos / pad
  local eos = opts.eos_token_id
  if eos == nil then eos = cfg.eos_token_id elseif eos == false then eos = nil end
  local eos_ids
  if eos ~= nil then
    eos_ids = tide.is_tensor(eos) and eos:view(-1):tolist() or type(eos) == 'table' and eos or { eos }
  end
  local pad = opts.pad_token_id
  if pad ~= nil and (not is_int(pad) or pad < 0) then bad('`pad_token_id` must be a non-negative integer, but is ' .. tostring(pad), 2) end
  if pad == nil and eos_ids ~= nil then pad = eos_ids[1] end

  -- sampling, batch of return sequences
  local do_sample = opts.do_sample == true
  local nrs = opts.num_return_sequences or 1
  if not is_int(nrs) or nrs < 1 then bad('`num_return_sequences` must be a positive integer, but is ' .. tostring(nrs), 2) end
  if nrs > 1 and not do_sample then
    bad(('Greedy methods without beam search do not support `num_return_sequences` different than 1 (got %d).'):format(nrs), 2)
  end
  local mask -- i64 [B, T] when the prompts are padded
  if opts.attention_mask ~= nil then
    local m = opts.attention_mask
    if not tide.is_tensor(m) then bad('attention_mask must be a tensor, got ' .. type(m), 2) end
    if m:dim() == 1 then m = m:unsqueeze(1) end
    if m:dim() ~= 2 or m:size(1) ~= B or m:size(2) ~= T then
      bad(('attention_mask has shape [%s], expected [%d, %d] as input_ids'):format(table.concat(m:shape(), ', '), B, T), 2)
    end
    m = m:to('i64')
    if m:min():item() < 0 or m:max():item() > 1 then
      bad(('attention_mask must hold 0 (padding) and 1 (token), got values from %d to %d'):format(m:min():item(), m:max():item()), 2)
    end
    if m:sum(2):min():item() == 0 then bad('attention_mask has a row with no token', 2) end
    -- all ones: the plain path
    if m:ne(1):sum():item() > 0 then mask = m end
  end
  local gen = opts.generator
  if opts.seed ~= nil then
    if gen ~= nil then bad('give seed or generator, not both', 2) end
    gen = tide.Generator(opts.seed)
  end
  local on_token = opts.on_token
  if on_token ~= nil and type(on_token) ~= 'function' then bad('on_token must be a function, got ' .. type(on_token), 2) end

  local ok, process = pcall(P.build, {
    do_sample = do_sample, temperature = opts.temperature, top_k = opts.top_k, top_p = opts.top_p,
    min_tokens_to_keep = opts.min_tokens_to_keep, repetition_penalty = opts.repetition_penalty,
    min_new_tokens = opts.min_new_tokens, eos_token_id = eos_ids, prompt_length = T,
  })
  if not ok then error(tostring(process):gsub('^[^:]*:%d+: ', ''), 2) end

  if nrs > 1 then
    ids = ids:unsqueeze(2):expand(B, nrs, T):reshape(B * nrs, T)
    if mask ~= nil then mask = mask:unsqueeze(2):expand(B, nrs, T):reshape(B * nrs, T) end
    B = B * nrs
  end

  local was_training = model.training
  model:eval()
  local result
  local okr, err = pcall(tide.no_grad, function()
    local out = tide.zeros({ B, max_len }, { dtype = 'i64', device = ids.device })
    out:narrow(2, 1, T):copy_(ids)
    local cache = model:new_cache(B, max_len)
    local done -- bool [B]: rows that emitted eos
    local cur, input = T, ids
    local step = 0
    -- padded prompts: the mask grows by ones, positions count real tokens
    -- (cumsum(mask) - 1, padding at 1), as transformers' generate
    local full_mask, pos
    if mask ~= nil then
      full_mask = tide.ones({ B, max_len }, { dtype = 'i64', device = ids.device })
      full_mask:narrow(2, 1, T):copy_(mask)
      pos = (mask:cumsum(2) - 1):masked_fill(mask:eq(0), 1)
    end
    while cur < max_len do
      local fopts = { cache = cache, logits_to_keep = 1 }
      if full_mask ~= nil then
        fopts.attention_mask = full_mask:narrow(2, 1, cur)
        fopts.position_ids = pos
      end
      local logits = model(input, fopts).logits
      local last = logits:narrow(2, logits:size(2), 1):reshape(B, cfg.vocab_size)
      local scores = process(last, out:narrow(2, 1, cur), cur)
      local nxt = do_sample and P.sample(scores, gen) or P.greedy(scores)
      if eos_ids ~= nil then
        if done ~= nil then nxt = nxt:masked_fill(done, pad) end
        local ended = done
        for _, e in ipairs(eos_ids) do
          local hit = nxt:eq(e)
          ended = ended == nil and hit or ended:logical_or(hit)
        end
        done = ended
      end
      out:narrow(2, cur + 1, 1):copy_(nxt:view(B, 1))
      cur, step = cur + 1, step + 1
      if on_token ~= nil and on_token(step, nxt) == false then break end
      if done ~= nil and done:logical_not():sum():item() == 0 then break end
      input = nxt:view(B, 1)
      if pos ~= nil then pos = pos:narrow(2, pos:size(2), 1) + 1 end
    end
    result = out:narrow(2, 1, cur):clone()
  end)
  if was_training then model:train() end
  if not okr then error(err, 0) end
  return result
end

return M

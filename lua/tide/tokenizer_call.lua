-- The tokenizer as a callable, as transformers' tokenizer __call__:
--
--   local tok = tide.tokenizer.load('data/gpt2')
--   tok.pad_id = tok.eos_id                      -- tok.pad_token = tok.eos_token
--   local out = tok({ 'Hello world', 'def f():' }, { padding = true, truncation = true, max_length = 8 })
--   out.input_ids, out.attention_mask            -- arrays of id arrays, 1/0 arrays
--
-- Options (transformers' names and meanings): padding (false, true or
-- 'longest', 'max_length'), truncation (false, true or 'longest_first' or
-- 'only_first'), max_length (default tok.model_max_length), stride,
-- return_overflowing_tokens, return_length, return_attention_mask,
-- padding_side ('right' or 'left'), pad_to_multiple_of, pad_token_id, and
-- allowed_special (as for encode; by default every added token is matched,
-- as transformers does). overflow_to_sample_mapping holds 1-based indices
-- into texts (transformers' 0-based ones plus one): texts[m] is the text a
-- chunk came from. Ids are 0-based values, as everywhere.
local M = {}

local known = {
  padding = true, truncation = true, max_length = true, stride = true, return_overflowing_tokens = true,
  return_length = true, return_attention_mask = true, padding_side = true, pad_to_multiple_of = true,
  pad_token_id = true, allowed_special = true,
}

local function count(v, name, min, level)
  if v == nil then return nil end
  if type(v) ~= 'number' or v % 1 ~= 0 or v < min or v > 2 ^ 31 then
    error(('tokenizer call: %s must be an integer >= %d, got %s'):format(name, min, tostring(v)), level + 1)
  end
  return v
end

function M.call(self, texts, opts, level)
  level = (level or 1) + 1
  if opts == nil then opts = {} end
  if type(opts) ~= 'table' then error('tokenizer call: options must be a table, got ' .. type(opts), level) end
  for k in pairs(opts) do
    if not known[k] then error(('tokenizer call: unknown option %s'):format(tostring(k)), level) end
  end
  local single = type(texts) == 'string'
  local list = single and { texts } or texts
  if type(list) ~= 'table' then error('tokenizer call: expected a string or an array of strings, got ' .. type(texts), level) end
  for i = 1, #list do
    if type(list[i]) ~= 'string' then error(('tokenizer call: texts[%d] is a %s, not a string'):format(i, type(list[i])), level) end
  end
  local padding = opts.padding
  if padding == nil or padding == false or padding == 'do_not_pad' then padding = false
  elseif padding == true or padding == 'longest' then padding = 'longest'
  elseif padding ~= 'max_length' then
    error("tokenizer call: padding must be false, true, 'longest' or 'max_length', got " .. tostring(padding), level)
  end
  local truncation = opts.truncation
  if truncation == nil or truncation == false or truncation == 'do_not_truncate' then truncation = false
  elseif truncation == true or truncation == 'longest_first' or truncation == 'only_first' then truncation = true
  else
    error("tokenizer call: truncation must be false, true, 'longest_first' or 'only_first' (one text per sample), got "
          .. tostring(truncation), level)
  end
  local max_length = count(opts.max_length, 'max_length', 1, level)
  if max_length == nil and (truncation or padding == 'max_length') then
    max_length = self.model_max_length
    if max_length == nil then
      error('tokenizer call: truncation and padding to max_length need max_length (this tokenizer has no model_max_length)', level)
    end
  end
  local stride = count(opts.stride, 'stride', 0, level) or 0
  local overflow = opts.return_overflowing_tokens and true or false
  if truncation and overflow and stride >= max_length then
    error(('tokenizer call: stride (%d) must be less than max_length (%d)'):format(stride, max_length), level)
  end
  local multiple = count(opts.pad_to_multiple_of, 'pad_to_multiple_of', 1, level)
  if multiple and truncation and padding and max_length % multiple ~= 0 then
    error(('tokenizer call: max_length (%d) is not a multiple of pad_to_multiple_of (%d)'):format(max_length, multiple), level)
  end
  local side = opts.padding_side or self.padding_side or 'right'
  if side ~= 'right' and side ~= 'left' then error("tokenizer call: padding_side must be 'right' or 'left', got " .. tostring(side), level) end
  local pad_id = opts.pad_token_id
  if pad_id == nil then pad_id = self.pad_id end
  if padding and pad_id == nil then
    error('tokenizer call: asking to pad but the tokenizer has no pad id: set tok.pad_id (tok.pad_id = tok.eos_id, '
          .. 'as tokenizer.pad_token = tokenizer.eos_token) or pass pad_token_id', level)
  end
  if padding then count(pad_id, 'pad_token_id', 0, level) end
  local allowed = opts.allowed_special
  if allowed == nil then allowed = 'all' end

  local encoded = self:encode_batch(list, { allowed_special = allowed })
  local chunks, mapping = {}, {}
  for i, ids in ipairs(encoded) do
    local n = #ids
    if truncation and n > max_length then
      -- chunks of max_length ids, each starting max_length - stride after
      -- the last, until one reaches the end (tokenizers' Encoding::truncate)
      local start = 0
      repeat
        local stop = math.min(start + max_length, n)
        local c = {}
        for k = start + 1, stop do c[#c + 1] = ids[k] end
        chunks[#chunks + 1], mapping[#mapping + 1] = c, i
        start = start + max_length - stride
      until stop == n or not overflow
    else
      chunks[#chunks + 1], mapping[#mapping + 1] = ids, i
    end
  end
  local target
  if padding == 'longest' then
    target = 0
    for _, c in ipairs(chunks) do target = math.max(target, #c) end
  elseif padding == 'max_length' then
    target = max_length
  end
  if target and multiple then target = math.ceil(target / multiple) * multiple end
  local input_ids, mask, length = {}, {}, {}
  for k, c in ipairs(chunks) do
    local n = #c
    local pad = target and math.max(0, target - n) or 0
    local ids, m = {}, {}
    if side == 'left' then
      for j = 1, pad do ids[j], m[j] = pad_id, 0 end
      for j = 1, n do ids[pad + j], m[pad + j] = c[j], 1 end
    else
      for j = 1, n do ids[j], m[j] = c[j], 1 end
      for j = n + 1, n + pad do ids[j], m[j] = pad_id, 0 end
    end
    input_ids[k], mask[k], length[k] = ids, m, n + pad
  end
  local out = { input_ids = input_ids }
  if opts.return_attention_mask ~= false then out.attention_mask = mask end
  if overflow then out.overflow_to_sample_mapping = mapping end
  if opts.return_length then out.length = length end
  if single and not overflow then  -- one text: its arrays, not a batch of one (as transformers)
    out.input_ids, out.attention_mask = input_ids[1], out.attention_mask and mask[1]
  end
  return out
end

return M

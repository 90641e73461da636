-- tide.pipeline('text-generation', dir_or_parts, opts): transformers'
-- `pipeline("text-generation", model=dir)` over model:generate.
--
--   local gen = tide.pipeline('text-generation', 'runs/codeparrot')      -- config.json, model.safetensors, tokenizer files
--   local gen = tide.pipeline('text-generation', { model = m, tokenizer = tok }, { device = 'cuda' })
--   gen('def add(a, b):', { max_new_tokens = 32 })        --> { { generated_text = 'def add(a, b):...' } }
--   gen({ 'a', 'bcd' }, { do_sample = true, num_return_sequences = 4, seed = 1 })
--                                                          --> { { {generated_text=}, x4 }, { ... x4 } }
--
-- A string prompt gives the list of its completions; a list of prompts gives
-- a list of such lists. Several prompts are run as one batch, left-padded with
-- the tokenizer's eos (GPT-2 has no pad token) under an attention_mask.
-- generated_text is the prompt followed by the decoded new tokens (eos
-- dropped); return_full_text = false gives the new text only. Every other
-- option goes to model:generate (max_length, max_new_tokens, do_sample,
-- temperature, top_k, top_p, num_return_sequences, seed, ...).
--
-- tide.generation.first_block(text, prompt): the CodeParrot chapter's helper,
-- text cut before the first line starting a new top-level block.
local tide = require 'tide'

local M = {}

local tasks = { ['text-generation'] = true }

local function bad(msg, level) error('pipeline: ' .. msg, level + 1) end

-- The first block of code in text: cut before the first '\ndef ', '\nclass ',
-- '\nif ', '\n#' or '\nprint' and strip trailing whitespace (CodeParrot's
-- re.split(...)[0].rstrip()). With prompt (a prefix of text), only the part
-- after the prompt is searched and cut; the prompt is kept as it is.
local stops = { '\ndef ', '\nclass ', '\nif ', '\n#', '\nprint' }
function M.first_block(text, prompt)
  if type(text) ~= 'string' then error('first_block: expected a string, got ' .. type(text), 2) end
  if prompt ~= nil and type(prompt) ~= 'string' then error('first_block: prompt must be a string, got ' .. type(prompt), 2) end
  local head, rest = '', text
  if prompt and text:sub(1, #prompt) == prompt then head, rest = prompt, text:sub(#prompt + 1) end
  local cut = #rest + 1
  for _, s in ipairs(stops) do
    local i = rest:find(s, 1, true)
    if i and i < cut then cut = i end
  end
  rest = rest:sub(1, cut - 1):gsub('%s+$', '')
  return head .. rest
end

local function load_parts(src, level)
  if type(src) == 'string' then
    local ok, model = pcall(tide.gpt2.from_pretrained, src)
    if not ok then bad(('cannot load a model from "%s": %s'):format(src, tostring(model)), level + 1) end
    local ok2, tok = pcall(tide.tokenizer.load, src)
    if not ok2 then bad(('cannot load a tokenizer from "%s": %s'):format(src, tostring(tok)), level + 1) end
    return model, tok
  elseif type(src) == 'table' then
    if src.model == nil then bad('the table needs model = <a tide GPT-2 model>', level + 1) end
    if type(src.model) ~= 'table' or type(src.model.generate) ~= 'function' then
      bad('model must be a tide GPT-2 model (with :generate), got ' .. type(src.model), level + 1)
    end
    local tok = src.tokenizer
    if type(tok) == 'string' then
      local ok, t = pcall(tide.tokenizer.load, tok)
      if not ok then bad(('cannot load a tokenizer from "%s": %s'):format(tok, tostring(t)), level + 1) end
      tok = t
    end
    if type(tok) ~= 'table' or type(tok.encode) ~= 'function' then
      bad('the table needs tokenizer = <a tide tokenizer or its directory>', level + 1)
    end
    return src.model, tok
  end
  bad('expected a model directory or {model=, tokenizer=}, got ' .. type(src), level + 1)
end

function M.pipeline(task, src, opts)
  if not tasks[task] then
    bad(("unknown task '%s' (tide has: 'text-generation')"):format(tostring(task)), 2)
  end
  if opts ~= nil and type(opts) ~= 'table' then bad('options must be a table, got ' .. type(opts), 2) end
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= 'device' then bad(("unknown option '%s' (the pipeline takes: device)"):format(tostring(k)), 2) end
  end
  local model, tok = load_parts(src, 2)
  local device = opts.device
  if device ~= nil then model:to(device) end
  local vocab = model.config.vocab_size
  if tok:vocab_size() > vocab then
    bad(('the tokenizer has %d ids but the model only %d (vocab_size)'):format(tok:vocab_size(), vocab), 2)
  end
  local eos = tok.eos_id or model.config.eos_token_id

  local function run(prompts, gopts, level)
    local full = true
    local g = {}
    for k, v in pairs(gopts) do
      if k == 'return_full_text' then full = v ~= false else g[k] = v end
    end
    if g.pad_token_id == nil and eos ~= nil then g.pad_token_id = eos end
    local enc, T = {}, 0
    for i, p in ipairs(prompts) do
      enc[i] = tok:encode(p)
      if #enc[i] == 0 then bad(('prompt %d is empty: there is nothing to continue'):format(i), level + 1) end
      if #enc[i] > T then T = #enc[i] end
    end
    local B = #prompts
    local rows, mask, padded = {}, {}, false
    for i = 1, B do
      local n = #enc[i]
      local r, m = {}, {}
      for j = 1, T - n do r[j], m[j] = eos or 0, 0; padded = true end
      for j = 1, n do r[T - n + j], m[T - n + j] = enc[i][j], 1 end
      rows[i], mask[i] = r, m
    end
    local ids = tide.tensor(rows, { dtype = 'i64' })
    if device ~= nil then ids = ids:to(device) end
    if padded then
      if g.attention_mask ~= nil then bad('attention_mask is made by the pipeline; do not pass one', level + 1) end
      local am = tide.tensor(mask, { dtype = 'i64' })
      if device ~= nil then am = am:to(device) end
      g.attention_mask = am
    end
    local ok, out = pcall(model.generate, model, ids, g)
    if not ok then error((tostring(out):gsub('^.-generate: ', 'pipeline: ')), level + 1) end
    out = out:to('cpu'):tolist()
    local n = #out / B
    local res = {}
    for i = 1, B do
      local prompt_text = tok:decode(enc[i], { errors = 'replace' })
      local list = {}
      for r = 1, n do
        local row = out[(i - 1) * n + r]
        local seq = {}
        for j = 1, #enc[i] do seq[j] = enc[i][j] end
        for j = T + 1, #row do
          if row[j] ~= eos then seq[#seq + 1] = row[j] end
        end
        local completion = tok:decode(seq, { errors = 'replace' }):sub(#prompt_text + 1)
        list[r] = { generated_text = full and (prompts[i] .. completion) or completion }
      end
      res[i] = list
    end
    return res
  end

  return function(prompt, gopts)
    if gopts ~= nil and type(gopts) ~= 'table' then bad('options must be a table, got ' .. type(gopts), 2) end
    gopts = gopts or {}
    if type(prompt) == 'string' then return run({ prompt }, gopts, 2)[1] end
    if type(prompt) ~= 'table' or #prompt == 0 then
      bad('expected a prompt string or a non-empty list of prompt strings, got ' .. type(prompt), 2)
    end
    for i, p in ipairs(prompt) do
      if type(p) ~= 'string' then bad(('prompt %d is a %s, expected a string'):format(i, type(p)), 2) end
    end
    return run(prompt, gopts, 2)
  end
end

function M.install(t)
  t.generation = t.generation or {}
  t.generation.first_block = M.first_block
  t.generation.processors = require 'tide.generation.processors'
  t.generation.generate = require('tide.generation.generate').generate
  t.pipeline = M.pipeline
end

return M

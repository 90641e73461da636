-- Training byte-level BPE tokenizers, merge for merge and id for id what
-- Hugging Face tokenizers' BpeTrainer learns with the ByteLevel pre-tokenizer
-- (the engine: runtime/bpe_train.c).
--
--   local tok = tide.tokenizer.train(lines, { vocab_size = 32768 })
--   tok:encode('def f(x):')                 -- a tide.Tokenizer, ready to use
--   local r = tide.tokenizer.learn(lines, { vocab_size = 1000 })
--   r.vocab[1], r.merges[1]                 --> '<|endoftext|>', 'Ġ t'
--
-- source: a Lua array of strings, an iterator function returning strings
-- until nil, or a tide.data stream (of strings, or of records whose
-- opts.field, else content or text, holds the text). Options (Hugging Face's names and defaults): vocab_size = 32768,
-- min_frequency = 0, special_tokens = {'<|endoftext|>'}, initial_alphabet =
-- 'bytes' (all 256 byte-level characters; 'seen' keeps only the bytes that
-- occur), max_token_length = nil (unlimited), show_progress (default: on
-- for sources over 16 MB) prints counting and training progress to stderr.
local ffi = require 'ffi'
local C = require 'tide.C'
local errors = require 'tide.errors'
local tide = require 'tide'

local M = {}

local trbuf = ffi.new('tide_bpe_trainer*[1]')
local lenbuf = ffi.new('int64_t[1]')
local lbuf, rbuf, nbuf = ffi.new('int32_t[1]'), ffi.new('int32_t[1]'), ffi.new('int32_t[1]')

local raise = errors.raise

local function int_opt(opts, name, default, min, level)
  local v = opts[name]
  if v == nil then return default end
  if type(v) ~= 'number' or v % 1 ~= 0 then
    error(('tokenizer.train: %s must be an integer, got %s'):format(name, tostring(v)), level + 1)
  end
  if v < min then
    error(('tokenizer.train: %s must be >= %d, got %d'):format(name, min, v), level + 1)
  end
  return v
end

-- Counts the pieces of every text of source into a new trainer.
local function feed(source, progress, field, level)
  if C.tide_bpe_trainer_new(trbuf) ~= 0 then raise(level + 1) end
  local tr = ffi.gc(trbuf[0], C.tide_bpe_trainer_free)
  local bytes, next_report, t0 = 0, 16 * 2^20, tide.clock()
  -- texts are counted in batches of about 8 MB, spread over the threads
  local BATCH = 8 * 2^20
  local ptrs, lens, keep, nb, bb = ffi.new('const char*[1024]'), ffi.new('int64_t[1024]'), {}, 0, 0
  local function flush()
    if nb == 0 then return end
    if C.tide_bpe_trainer_add_texts(tr, nb, ptrs, lens) ~= 0 then raise(level + 3) end
    bytes = bytes + bb
    nb, bb = 0, 0
    for i = #keep, 1, -1 do keep[i] = nil end
    if bytes >= next_report and progress ~= false then
      io.stderr:write(('tokenizer.train: counted %.0f MB, %d distinct pieces (%.1f s)\n'):format(
        bytes / 2^20, tonumber(C.tide_bpe_trainer_piece_count(tr)), tide.clock() - t0))
      next_report = bytes + 16 * 2^20
    end
  end
  local function add(text, where)
    if type(text) ~= 'string' then
      error(('tokenizer.train: %s is a %s, not a string'):format(where, type(text)), level + 2)
    end
    keep[nb + 1] = text  -- the C side reads the strings: they must stay alive
    ptrs[nb], lens[nb] = text, #text
    nb, bb = nb + 1, bb + #text
    if nb == 1024 or bb >= BATCH then flush() end
  end
  local stream = require 'tide.data.stream'
  if stream.is_stream(source) then
    -- a tide.data stream: each record's text (strings, or a record's
    -- opts.field, else its content or text field)
    local text_of = require('tide.data.pack').text_of
    local i = 0
    for rec in source:iter() do
      i = i + 1
      local ok, t = pcall(text_of, rec, field)
      if not ok then error(('tokenizer.train: record %d of the stream: %s'):format(i, t), level + 1) end
      add(t, ('record %d of the stream'):format(i))
    end
  elseif type(source) == 'table' then
    for i = 1, #source do add(source[i], ('source[%d]'):format(i)) end
  elseif type(source) == 'function' then
    local i = 0
    while true do
      local text = source()
      if text == nil then break end
      i = i + 1
      add(text, ('text %d of the iterator'):format(i))
    end
  else
    error('tokenizer.train: source must be an array of strings, an iterator function or a tide.data stream, got ' .. type(source), level + 1)
  end
  flush()
  return tr, bytes
end

-- Learns a vocabulary and merges: { vocab = {token of id 0, token of id 1, ...},
-- merges = {'a b', ...} in rank order, special_tokens = {...} }.
local donebuf = ffi.new('int32_t[1]')
local MERGES_PER_STEP = 1024  -- between progress checks

function M.learn(source, opts)
  return M._learn(source, opts, 2)
end

function M._learn(source, opts, level)
  level = level + 1
  if opts ~= nil and type(opts) ~= 'table' then error('tokenizer.train: options must be a table', level) end
  opts = opts or {}
  local vocab_size = int_opt(opts, 'vocab_size', 32768, 1, level)
  local min_frequency = int_opt(opts, 'min_frequency', 0, 0, level)
  local max_len = int_opt(opts, 'max_token_length', 0, 1, level)
  local specials = opts.special_tokens
  if specials == nil then specials = { '<|endoftext|>' } end
  if type(specials) ~= 'table' then error('tokenizer.train: special_tokens must be an array of strings', level) end
  local alphabet = opts.initial_alphabet
  if alphabet == nil then alphabet = 'bytes' end
  if alphabet ~= 'bytes' and alphabet ~= 'seen' then
    error("tokenizer.train: initial_alphabet must be 'bytes' (all 256) or 'seen', got " .. tostring(alphabet), level)
  end
  local ns = #specials
  local sp, sl = ffi.new('const char*[?]', ns + 1), ffi.new('int64_t[?]', ns + 1)
  local distinct = {}
  for i = 1, ns do
    local s = specials[i]
    if type(s) ~= 'string' or s == '' then
      error(('tokenizer.train: special_tokens[%d] must be a non-empty string'):format(i), level)
    end
    sp[i - 1], sl[i - 1] = s, #s
    distinct[s] = true
  end
  local nspecial = 0
  for _ in pairs(distinct) do nspecial = nspecial + 1 end
  local floor = nspecial + (alphabet == 'bytes' and 256 or 0)
  if vocab_size < floor then
    error(('tokenizer.train: vocab_size %d is smaller than the %d special tokens and byte alphabet'):format(vocab_size, floor), level)
  end
  local tr, bytes = feed(source, opts.show_progress, opts.field, level)
  local progress = opts.show_progress or (opts.show_progress == nil and bytes >= 16 * 2^20)
  local t0 = tide.clock()
  if C.tide_bpe_trainer_begin(tr, vocab_size, min_frequency, max_len, sp, sl, ns, alphabet == 'bytes' and 1 or 0) ~= 0 then
    raise(level)
  end
  -- the trainer merges in steps and returns: the merge phase reports
  -- between them, a line every 2 s at most
  local wanted = tonumber(C.tide_bpe_trainer_merges_wanted(tr))
  local next_line, checked = t0 + 2, 0
  repeat
    if C.tide_bpe_trainer_merge_some(tr, MERGES_PER_STEP, donebuf) ~= 0 then raise(level) end
    local n = tonumber(C.tide_bpe_trainer_merge_count(tr))
    if progress and n > checked and n % MERGES_PER_STEP == 0 then
      checked = n
      local now = tide.clock()
      if now >= next_line then
        io.stderr:write(('tokenizer.train: %d of at most %d merges (%.1f s)\n'):format(n, wanted, now - t0))
        next_line = now + 2
      end
    end
  until donebuf[0] ~= 0
  local vocab, merges = {}, {}
  for id = 0, tonumber(C.tide_bpe_trainer_vocab_size(tr)) - 1 do
    local p = C.tide_bpe_trainer_token(tr, id, lenbuf)
    vocab[id + 1] = ffi.string(p, lenbuf[0])
  end
  for i = 0, tonumber(C.tide_bpe_trainer_merge_count(tr)) - 1 do
    C.tide_bpe_trainer_merge(tr, i, lbuf, rbuf, nbuf)
    merges[i + 1] = vocab[lbuf[0] + 1] .. ' ' .. vocab[rbuf[0] + 1]
  end
  if progress then
    io.stderr:write(('tokenizer.train: %d tokens, %d merges from %d distinct pieces (%.1f s)\n'):format(
      #vocab, #merges, tonumber(C.tide_bpe_trainer_piece_count(tr)), tide.clock() - t0))
  end
  local sps = {}
  for i = 1, ns do sps[i] = specials[i] end
  return { vocab = vocab, merges = merges, special_tokens = sps }
end

-- The tokenizer.json (Hugging Face's layout) of a learned vocabulary.
local function tokenizer_json(tide, r)
  local json = tide.json
  local null = json.null
  local vocab, merges, added = {}, json.array(), json.array()
  for i, s in ipairs(r.vocab) do vocab[s] = i - 1 end
  for i, m in ipairs(r.merges) do
    local a, b = m:match('^(%S+) (%S+)$')
    merges[i] = json.array({ a, b })
  end
  local seen = {}
  for _, s in ipairs(r.special_tokens) do
    if not seen[s] then
      seen[s] = true
      added[#added + 1] = { id = vocab[s], content = s, single_word = false, lstrip = false, rstrip = false,
                            normalized = false, special = true }
    end
  end
  local bl = { type = 'ByteLevel', add_prefix_space = false, trim_offsets = true, use_regex = true }
  return json.encode({
    version = '1.0', truncation = null, padding = null, added_tokens = added, normalizer = null,
    pre_tokenizer = bl, post_processor = bl, decoder = bl,
    model = { type = 'BPE', dropout = null, unk_token = null, continuing_subword_prefix = null,
              end_of_word_suffix = null, fuse_unk = false, byte_fallback = false, ignore_merges = false,
              vocab = vocab, merges = merges },
  })
end

function M.install(tide, core)
  local _ = core
  local tk = tide.tokenizer
  tk.learn = M.learn
  -- the learned vocab and merges as a tide.Tokenizer (through tokenizer.json)
  local function as_tokenizer(r, level)
    local path = os.tmpname()
    local f = assert(io.open(path, 'wb'))
    f:write(tokenizer_json(tide, r))
    f:close()
    local ok, tok = pcall(tk.load, path)
    os.remove(path)
    if not ok then error(tok, level + 1) end
    tok.source = 'trained'
    return tok
  end
  -- Trains a tokenizer on source (see the top of this file); returns a tide.Tokenizer.
  function tk.train(source, opts)
    return as_tokenizer(M._learn(source, opts, 2), 2)
  end
  -- Hugging Face's train_new_from_iterator: a new tokenizer of the same kind
  -- (byte-level BPE, the full byte alphabet) trained on source, keeping this
  -- one's added tokens, in id order, as its first ids. opts as for train
  -- (min_frequency, max_token_length, show_progress).
  local function train_new(self, source, vocab_size, opts)
    if opts ~= nil and type(opts) ~= 'table' then error('train_new: options must be a table', 3) end
    local o = {}
    for k, v in pairs(opts or {}) do o[k] = v end
    if o.special_tokens ~= nil or o.initial_alphabet ~= nil then
      error('train_new: special_tokens and initial_alphabet come from the tokenizer; use tide.tokenizer.train to choose them', 3)
    end
    if type(vocab_size) ~= 'number' then error('train_new: vocab_size must be a number, got ' .. type(vocab_size), 3) end
    o.vocab_size, o.initial_alphabet, o.special_tokens = vocab_size, 'bytes', {}
    local added = {}
    for _, a in ipairs(self.added) do added[#added + 1] = a end
    table.sort(added, function(a, b) return a.id < b.id end)
    for i, a in ipairs(added) do o.special_tokens[i] = a.content end
    return as_tokenizer(M._learn(source, o, 3), 3)
  end
  function tk.Tokenizer:train_new(source, vocab_size, opts) return train_new(self, source, vocab_size, opts) end
  function tk.Tokenizer:train_new_from_iterator(source, vocab_size, opts) return train_new(self, source, vocab_size, opts) end
end

return M

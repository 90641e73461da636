-- tide.data: the streaming data pipeline. Readers (jsonl, text, parquet) and
-- combinators give streams (tide/data/stream.lua); tokenize and pack turn
-- them into sequences (tide/data/pack.lua), group_texts into the causal-LM
-- guide's blocks (tide/data/group.lua); split_sentences cuts long texts at
-- sentence ends (tide/data/sentences.lua); write_shards stores those as
-- llm.c token shards and shards() reads them back in batches
-- (tide/data/shards.lua); tide.data.filters holds the seeds' cleaning
-- filters (tide/data/filters.lua).
local stream = require 'tide.data.stream'
local readers = require 'tide.data.readers'
local json = require 'tide.json'
require 'tide.data.pack'  -- adds :tokenize and :pack to streams
require 'tide.data.group'  -- adds :group_texts
local sentences = require 'tide.data.sentences'  -- adds :split_sentences

local M = {}
M.from = stream.from
M.is_stream = stream.is_stream
M.jsonl = readers.jsonl
M.text = readers.text
M.parquet = require('tide.data.parquet').parquet
M.split_sentences = sentences.split_sentences

-- Loaded on first use: most programs need only some of these.
local lazy = {
  filters = function() return require 'tide.data.filters' end,
  writer = function() return require('tide.data.shards').writer end,
  shards = function() return require('tide.data.shards').shards end,
  build_corpus = function() return require('tide.data.corpus').build end,
  dedup_across_ranks = function() return require('tide.data.dist_dedup').dedup_across_ranks end,
}
setmetatable(M, { __index = function(t, k)
  local load = lazy[k]
  if not load then return nil end
  local v = load()
  rawset(t, k, v)
  return v
end, __complete = lazy })  -- the REPL's Tab offers them before they are loaded

local pack = require 'tide.data.pack'
local write_tokenized  -- below write_shards' helpers

local function filter_counts(s)
  local out = json.array()
  while s do
    if s.is_filter then
      table.insert(out, 1, { name = s.name or '?', seen = s.seen, kept = s.kept })
    end
    s = s.parent
  end
  return out
end

-- write_shards with a tokenizer: one pass over the source, records
-- tokenized in batches over the threads, ids packed and written from C
-- memory (no Lua arrays). With opts.split each record is routed to its split
-- (stream.splitter: by a hash of seed and its index) and every split is
-- packed and written as NAME_*.bin with its own manifest; returns {name =
-- manifest}. Without, returns the one manifest.
write_tokenized = function(dir, source, opts, level)
  local tok, seq = opts.tokenizer, opts.seq_length
  local names, which = { opts.prefix or 'shard' }, nil
  if opts.split then names, which = stream.splitter(opts.split, level) end
  local mode = opts.mode or 'concat'
  local eopts = opts.allowed_special and { allowed_special = opts.allowed_special } or nil
  local BATCH = 4 * 2^20
  local parts = {}
  local function abort_all()
    for _, part in pairs(parts) do pcall(part.writer.abort, part.writer) end
  end
  for _, name in ipairs(names) do
    local part = { texts = {}, batch_bytes = 0, documents = 0, tokens = 0, bytes = 0 }
    local steps = source:describe()
    if opts.split then steps[#steps + 1] = ('split %s seed %d'):format(name, opts.split.seed or 0) end
    steps[#steps + 1] = ('tokenize, pack %s %d'):format(mode, seq)
    part.manifest = { tokenizer = 'tokenizer', tokenizer_source = tok.source, split = opts.split and name or nil,
                      source = json.array(steps), seed = opts.seed or json.null }
    local ok, w = pcall(M.writer, dir, { vocab_size = tok:vocab_size(), shard_tokens = opts.shard_tokens,
                                         seq_length = seq, prefix = name, manifest = part.manifest })
    if not ok then abort_all(); error(w, level) end
    part.writer = w
    part.packer = pack.cpacker(seq, { mode = mode, eos = tok.eos_id }, function(ptr, n) w:write_ptr(ptr, n) end)
    parts[name] = part
  end
  local function flush(part)
    if #part.texts == 0 then return end
    local ids, counts, n = tok:encode_batch_ptr(part.texts, eopts)
    local off = 0
    for i = 1, n do
      local m = tonumber(counts[i - 1])
      part.tokens = part.tokens + m
      part.packer:push_ptr(ids + off, m)
      off = off + #part.texts[i] + 1
    end
    part.documents = part.documents + n
    part.texts, part.batch_bytes = {}, 0
  end
  local ok, err = pcall(function()
    local i, only = -1, parts[names[1]]
    for rec in source do
      i = i + 1
      local part = which and parts[which(i)] or only
      local text = pack.text_of(rec, opts.field)
      part.texts[#part.texts + 1] = text
      part.batch_bytes, part.bytes = part.batch_bytes + #text, part.bytes + #text
      if part.batch_bytes >= BATCH then flush(part) end
    end
    for _, name in ipairs(names) do flush(parts[name]) end
  end)
  if not ok then
    abort_all()
    error(err, level)
  end
  -- the tokenizer travels with its tokens: DIR/tokenizer holds its files
  -- (tokenizer.json, vocab.json, merges.txt), so the shards say what they mean
  if opts.save_tokenizer ~= false then tok:save(dir .. '/tokenizer') end
  local filters, report, out = filter_counts(source), source:report(), {}
  for _, name in ipairs(names) do
    local part = parts[name]
    part.manifest.filters = filters
    local lines = { report, pack.tokenize_report(part, opts.split and ('split ' .. name .. ': ')),
                    part.packer:report_line() }
    if lines[1] == '' then table.remove(lines, 1) end
    part.manifest.report = table.concat(lines, '\n')
    out[name] = part.writer:close()
  end
  if opts.split then return out end
  return out[names[1]]
end

-- Writes a stream to token shards in dir (llm.c's format, with a JSON
-- manifest, and with opts.tokenizer its files in dir/tokenizer) and returns
-- the manifest. With opts.tokenizer, source
-- holds records or texts, tokenized and packed here (opts.mode 'concat',
-- the default, joins documents with the tokenizer's EOS; 'per_document');
-- without, source must already yield id arrays. opts: seq_length (required
-- with a tokenizer; every sequence is checked against it), shard_tokens,
-- prefix, vocab_size (default: the tokenizer's), seed (recorded),
-- field (the record field holding the text), split (with a tokenizer: e.g.
-- {valid = 0.005, seed = 1}, every split written in one pass as
-- NAME_*.bin; returns {name = manifest}), save_tokenizer (default true:
-- the tokenizer's files go to dir/tokenizer).
function M.write_shards(dir, source, opts)
  opts = opts or {}
  if type(dir) ~= 'string' then error('write_shards: expected a directory path, got ' .. type(dir), 2) end
  if type(opts) ~= 'table' then error('write_shards: options must be a table', 2) end
  if type(source) == 'table' and not stream.is_stream(source) then source = stream.from(source) end
  if not stream.is_stream(source) then error('write_shards: expected a stream or an array, got ' .. type(source), 2) end
  local tok, seq = opts.tokenizer, opts.seq_length
  if seq ~= nil and (type(seq) ~= 'number' or seq % 1 ~= 0 or seq < 1) then
    error('write_shards: seq_length must be an integer >= 1, got ' .. tostring(seq), 2)
  end
  if tok then
    if not seq then error('write_shards: a tokenizer needs opts.seq_length to pack to', 2) end
    local mode = opts.mode or 'concat'
    if mode == 'concat' and not tok.eos_id then error('write_shards: the tokenizer has no <|endoftext|> to join documents', 2) end
    return write_tokenized(dir, source, opts, 3)
  elseif opts.split then
    error('write_shards: opts.split needs opts.tokenizer (records are split before they are tokenized)', 2)
  end
  local vocab = opts.vocab_size
  if not vocab then error('write_shards: give opts.vocab_size (or opts.tokenizer) to choose the token width', 2) end
  local manifest = {
    tokenizer = opts.tokenizer_name or json.null,
    source = json.array(source:describe()),
    seed = opts.seed or json.null,
  }
  local w = M.writer(dir, { vocab_size = vocab, shard_tokens = opts.shard_tokens, seq_length = seq,
                            prefix = opts.prefix, manifest = manifest })
  local ok, err = pcall(function()
    local n = 0
    for ids in source do
      n = n + 1
      if seq and #ids ~= seq then
        error(('write_shards: sequence %d has %d tokens, not seq_length %d'):format(n, #ids, seq), 0)
      end
      w:write(ids)
    end
  end)
  if not ok then
    w:abort()
    error(err, 2)
  end
  manifest.filters = filter_counts(source)
  manifest.report = source:report()
  return w:close()
end

function M.install(tide_)
  tide_.data = M
end

return M

-- tide.data: the streaming data pipeline. Readers (jsonl, text) and
-- combinators give streams (tide/data/stream.lua); tokenize and pack turn
-- them into sequences (tide/data/pack.lua); write_shards stores those as
-- llm.c token shards and shards() reads them back in batches
-- (tide/data/shards.lua); tide.data.filters holds the seeds' cleaning
-- filters (tide/data/filters.lua).
local stream = require 'tide.data.stream'
local readers = require 'tide.data.readers'
require 'tide.data.pack'  -- adds :tokenize and :pack to streams

local M = {}
M.from = stream.from
M.is_stream = stream.is_stream
M.jsonl = readers.jsonl
M.text = readers.text

-- Loaded on first use: most programs need only some of these.
local lazy = {
  filters = function() return require 'tide.data.filters' end,
  writer = function() return require('tide.data.shards').writer end,
  shards = function() return require('tide.data.shards').shards end,
  build_corpus = function() return require('tide.data.corpus').build end,
}
setmetatable(M, { __index = function(t, k)
  local load = lazy[k]
  if not load then return nil end
  local v = load()
  rawset(t, k, v)
  return v
end })

local function filter_counts(s)
  local out = tide.json.array()
  while s do
    if s.is_filter then
      table.insert(out, 1, { name = s.name or '?', seen = s.seen, kept = s.kept })
    end
    s = s.parent
  end
  return out
end

-- Writes a stream to token shards in dir (llm.c's format, with a JSON
-- manifest, and with opts.tokenizer its files in dir/tokenizer) and returns
-- the manifest. With opts.tokenizer, source
-- holds records or texts, tokenized and packed here (opts.mode 'concat',
-- the default, joins documents with the tokenizer's EOS; 'per_document');
-- without, source must already yield id arrays. opts: seq_length (required
-- with a tokenizer; every sequence is checked against it), shard_tokens,
-- prefix, vocab_size (default: the tokenizer's), seed (recorded),
-- field (the record field holding the text).
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
    source = source:tokenize(tok, { field = opts.field }):pack(seq, { mode = mode, eos = tok.eos_id })
  end
  local vocab = opts.vocab_size or (tok and tok:vocab_size())
  if not vocab then error('write_shards: give opts.vocab_size (or opts.tokenizer) to choose the token width', 2) end
  -- the tokenizer travels with its tokens: DIR/tokenizer holds its files
  -- (tokenizer.json, vocab.json, merges.txt), so the shards say what they mean
  if tok then tok:save(dir .. '/tokenizer') end
  local manifest = {
    tokenizer = tok and 'tokenizer' or opts.tokenizer_name or tide.json.null,
    tokenizer_source = tok and tok.source or nil,
    source = tide.json.array(source:describe()),
    seed = opts.seed or tide.json.null,
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

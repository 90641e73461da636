-- Byte-level BPE tokenizers, GPT-2-exact (the engine: runtime/bpe.c and
-- runtime/pretokenize.c).
--
--   local tok = tide.tokenizer.load('../shared/data/gpt2')   -- vocab.json + merges.txt
--   local ids = tok:encode('Hello world')                     --> { 15496, 995 }
--   tok:decode(ids)                                           --> 'Hello world'
--   tok:tokens(' say hi')                                     --> { 'Ġsay', 'Ġhi' }
--   tok:encode('a<|endoftext|>', { allowed_special = 'all' }) --> { 64, 50256 }
--
-- Added tokens (<|endoftext|> and tokenizer.json's added_tokens) are matched
-- in text only where the caller allows them: by default a text that contains
-- "<|endoftext|>" is encoded as ordinary text, as tiktoken and GPT-2 do.
-- Ids are 0-based, as in Hugging Face; decode(encode(x)) == x for any bytes.
local ffi = require 'ffi'
local C = require 'tide.C'

local M = {}

local Tokenizer = {}
Tokenizer.__index = Tokenizer
Tokenizer.__name = 'tide.Tokenizer'

local bpebuf = ffi.new('tide_bpe*[1]')
local nbuf = ffi.new('int64_t[1]')
local lenbuf = ffi.new('int64_t[1]')
local idbuf = ffi.new('int32_t[1]')
local spbuf = ffi.new('int32_t[1]')

local function raise(level)
  error(ffi.string(C.tide_last_error()), level + 1)
end

local function exists(path)
  local f = io.open(path, 'rb')
  if f then f:close() end
  return f ~= nil
end

local function is_dir(path)
  local f = io.open(path, 'rb')
  if not f then return false end
  local ok, _, code = f:read(1)
  f:close()
  return ok == nil and code == 21  -- EISDIR
end

local function wrap(handle, source)
  local self = setmetatable({ _t = ffi.gc(handle, C.tide_bpe_free), source = source }, Tokenizer)
  self.added = {}
  self._added_by_content = {}
  for i = 0, C.tide_bpe_added_count(handle) - 1 do
    local p = C.tide_bpe_added_token(handle, i, lenbuf, idbuf, spbuf)
    local a = { content = ffi.string(p, lenbuf[0]), id = idbuf[0], special = spbuf[0] ~= 0 }
    self.added[#self.added + 1] = a
    self._added_by_content[a.content] = a.id
  end
  self.eos_id = self:token_to_id('<|endoftext|>')
  return self
end

-- Loads a tokenizer: a directory holding tokenizer.json (preferred) or
-- vocab.json + merges.txt, or a tokenizer.json file.
function M.load(path)
  if type(path) ~= 'string' then error('tokenizer.load: expected a path string, got ' .. type(path), 2) end
  local dir = path:gsub('/+$', '')
  if is_dir(dir) then
    if exists(dir .. '/tokenizer.json') then path = dir .. '/tokenizer.json'
    elseif exists(dir .. '/vocab.json') and exists(dir .. '/merges.txt') then
      if C.tide_bpe_load(dir .. '/vocab.json', dir .. '/merges.txt', bpebuf) ~= 0 then raise(2) end
      return wrap(bpebuf[0], dir)
    else
      error('tokenizer.load: ' .. dir .. ' holds neither tokenizer.json nor vocab.json and merges.txt', 2)
    end
  elseif not exists(path) then
    error('tokenizer.load: no such file or directory: ' .. path, 2)
  end
  if C.tide_bpe_load_json(path, bpebuf) ~= 0 then raise(2) end
  return wrap(bpebuf[0], path)
end

-- The allowed added-token ids as a C array and count (-1: all of them).
local function allowed_ids(self, allowed, level)
  if allowed == nil or allowed == false then return nil, 0 end
  if allowed == 'all' then return nil, -1 end
  if type(allowed) ~= 'table' then
    error("encode: allowed_special must be 'all' or a set or list of added tokens, got " .. tostring(allowed), level + 1)
  end
  local ids = {}
  local function add(s)
    local id = self._added_by_content[s]
    if not id then error(('encode: allowed_special names %q, which is not an added token'):format(tostring(s)), level + 2) end
    ids[#ids + 1] = id
  end
  for k, v in pairs(allowed) do
    if type(k) == 'number' then add(v) elseif v then add(k) end
  end
  if #ids == 0 then return nil, 0 end
  return ffi.new('int32_t[?]', #ids, ids), #ids
end

local function encode_raw(self, text, opts, level)
  if type(text) ~= 'string' then error('encode: expected a string, got ' .. type(text), level + 1) end
  if opts ~= nil and type(opts) ~= 'table' then error('encode: options must be a table', level + 1) end
  local allowed, nallowed = allowed_ids(self, opts and opts.allowed_special, level + 1)
  local buf = ffi.new('int32_t[?]', #text + 1)
  if C.tide_bpe_encode(self._t, text, #text, allowed, nallowed, buf, nbuf) ~= 0 then raise(level + 1) end
  return buf, tonumber(nbuf[0])
end

-- The ids of text (a Lua array of 0-based ids). opts.allowed_special: 'all'
-- or a set/list of added tokens that may be matched in the text.
function Tokenizer:encode(text, opts)
  local buf, n = encode_raw(self, text, opts, 2)
  local ids = {}
  for i = 0, n - 1 do ids[i + 1] = buf[i] end
  return ids
end

-- The byte-mapped pieces of text ('Ġsay' for ' say'), as in Hugging Face.
function Tokenizer:tokens(text, opts)
  local buf, n = encode_raw(self, text, opts, 2)
  local out = {}
  for i = 0, n - 1 do
    local p = C.tide_bpe_id_to_token(self._t, buf[i], lenbuf)
    out[i + 1] = ffi.string(p, lenbuf[0])
  end
  return out
end

-- The text of ids: exactly the bytes they stand for, or with
-- {errors = 'replace'} each invalid UTF-8 sequence replaced by U+FFFD.
function Tokenizer:decode(ids, opts)
  if type(ids) ~= 'table' then error('decode: expected an array of ids, got ' .. type(ids), 2) end
  local n = #ids
  local cids = ffi.new('int32_t[?]', n + 1)
  for i = 1, n do
    local v = ids[i]
    if type(v) ~= 'number' or v % 1 ~= 0 or v < -2147483648 or v > 2147483647 then
      error(('decode: ids[%d] is not an integer id: %s'):format(i, tostring(v)), 2)
    end
    cids[i - 1] = v
  end
  if C.tide_bpe_decode(self._t, cids, n, nil, 0, lenbuf) ~= 0 then raise(2) end
  local len = tonumber(lenbuf[0])
  local out = ffi.new('char[?]', len + 1)
  if C.tide_bpe_decode(self._t, cids, n, out, len, lenbuf) ~= 0 then raise(2) end
  local errors = opts and opts.errors or 'strict'
  if errors == 'replace' then
    local rep = ffi.new('char[?]', 3 * len + 1)
    return ffi.string(rep, C.tide_utf8_replace_invalid(out, len, rep))
  elseif errors ~= 'strict' then
    error("decode: errors must be 'strict' (the bytes as they are) or 'replace', got " .. tostring(errors), 2)
  end
  return ffi.string(out, len)
end

-- One more than the largest id.
function Tokenizer:vocab_size() return tonumber(C.tide_bpe_vocab_size(self._t)) end

-- The id of a byte-mapped token string, or nil.
function Tokenizer:token_to_id(s)
  if type(s) ~= 'string' then error('token_to_id: expected a string, got ' .. type(s), 2) end
  local id = tonumber(C.tide_bpe_token_to_id(self._t, s, #s))
  if id < 0 then return nil end
  return id
end

-- The byte-mapped string of an id, or nil.
function Tokenizer:id_to_token(id)
  if type(id) ~= 'number' then error('id_to_token: expected an integer id, got ' .. type(id), 2) end
  local p = C.tide_bpe_id_to_token(self._t, id, lenbuf)
  if p == nil then return nil end
  return ffi.string(p, lenbuf[0])
end

function Tokenizer:__tostring()
  return ('Tokenizer(%s, %d tokens)'):format(self.source, self:vocab_size())
end

M.Tokenizer = Tokenizer
M.unicode_version = ffi.string(C.tide_unicode_version_str())

function M.install(tide, core)
  tide.tokenizer = M
end

return M

-- Byte-level BPE tokenizers, GPT-2-exact (the engine: runtime/bpe.c and
-- runtime/pretokenize.c).
--
--   local tok = tide.tokenizer.load('data/gpt2')   -- vocab.json + merges.txt
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
local errors = require 'tide.errors'
local new_table = require 'table.new'  -- LuaJIT: presized, so filling ids never rehashes

local M = {}

local Tokenizer = {}
Tokenizer.__index = Tokenizer
Tokenizer.__name = 'tide.Tokenizer'

local bpebuf = ffi.new('tide_bpe*[1]')
local nbuf = ffi.new('int64_t[1]')
local lenbuf = ffi.new('int64_t[1]')
local idbuf = ffi.new('int32_t[1]')
local spbuf = ffi.new('int32_t[1]')

pcall(ffi.cdef, 'void *malloc(size_t size); void free(void *p);')

-- Room for n ids, not zeroed (ffi.new's zeroing and fresh pages cost a
-- quarter of encode's time on large texts). Up to KEEP_IDS ids the buffer is
-- kept on the tokenizer and reused; larger ones are freed once dropped.
local KEEP_IDS = 16 * 1024 * 1024
local function id_buffer(self, n)
  if n <= (self._nbuf or 0) then return self._buf end
  local p = ffi.C.malloc(n * 4)
  if p == nil then error(('tokenizer: out of memory for %d ids'):format(n), 3) end
  local buf = ffi.gc(ffi.cast('int32_t*', p), ffi.C.free)
  if n <= KEEP_IDS then self._buf, self._nbuf = buf, n end
  return buf
end

local raise = errors.raise

local files = require 'tide.data.files'
local exists, is_dir = files.exists, files.is_dir

local function wrap(handle, source)
  local self = setmetatable({ _t = ffi.gc(handle, C.tide_bpe_free), source = source }, Tokenizer)
  require('tide.tensor').pace()  -- a tokenizer's tables count toward the GC pacer, as tensors do
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

-- transformers' tokenizer_config.json beside the files: model_max_length
-- (the default max_length of a call), when it is an integer
local function read_config(self, dir)
  local path = dir .. '/tokenizer_config.json'
  if not exists(path) then return self end
  local ok, cfg = pcall(require('tide.json').read_file, path)
  if not ok then error('tokenizer.load: ' .. tostring(cfg):gsub('^[^:]*:%d+: ', ''), 3) end
  local n = type(cfg) == 'table' and cfg.model_max_length
  if type(n) == 'number' and n % 1 == 0 and n >= 1 and n < 2 ^ 31 then self.model_max_length = n end
  return self
end

-- Loads a tokenizer: a directory holding tokenizer.json (preferred) or
-- vocab.json + merges.txt, or a tokenizer.json file, or a Hub id ('gpt2')
-- found in the local Hugging Face cache (tide.io.hub; opts.revision).
function M.load(path, opts)
  if type(path) ~= 'string' then error('tokenizer.load: expected a path string, got ' .. type(path), 2) end
  -- a Hub id ('gpt2', 'org/name') that is no local path: the local HF cache
  path = require('tide.io.hub').locate(path, { what = 'tokenizer.load', revision = type(opts) == 'table' and opts.revision or nil, level = 2 })
  local dir = path:gsub('/+$', '')
  if is_dir(dir) then
    if exists(dir .. '/tokenizer.json') then path = dir .. '/tokenizer.json'
    elseif exists(dir .. '/vocab.json') and exists(dir .. '/merges.txt') then
      if C.tide_bpe_load(dir .. '/vocab.json', dir .. '/merges.txt', bpebuf) ~= 0 then raise(2) end
      return read_config(wrap(bpebuf[0], dir), dir)
    else
      error('tokenizer.load: ' .. dir .. ' holds neither tokenizer.json nor vocab.json and merges.txt', 2)
    end
  elseif not exists(path) then
    error('tokenizer.load: no such file or directory: ' .. path, 2)
  end
  if C.tide_bpe_load_json(path, bpebuf) ~= 0 then raise(2) end
  local self = wrap(bpebuf[0], path)
  if is_dir(dir) then read_config(self, dir) end
  return self
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
  local buf = id_buffer(self, #text + 1)
  if C.tide_bpe_encode(self._t, text, #text, allowed, nallowed, buf, nbuf) ~= 0 then raise(level + 1) end
  return buf, tonumber(nbuf[0])
end

-- The ids of text (a Lua array of 0-based ids). opts.allowed_special: 'all'
-- or a set/list of added tokens that may be matched in the text.
function Tokenizer:encode(text, opts)
  local buf, n = encode_raw(self, text, opts, 2)
  local ids = new_table(n, 0)
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

-- Encodes a Lua array of strings over OpenMP threads; returns an array of
-- id arrays, each what encode(texts[i], opts) gives.
function Tokenizer:encode_batch(texts, opts)
  local ids, counts, n = self:encode_batch_ptr(texts, opts, 3)
  local out, off = new_table(n, 0), 0
  for i = 1, n do
    local m = tonumber(counts[i - 1])
    local t = new_table(m, 0)
    for k = 0, m - 1 do t[k + 1] = ids[off + k] end
    out[i] = t
    off = off + #texts[i] + 1
  end
  return out
end

-- encode_batch without Lua arrays, for pipelines that pass ids on to C:
-- returns ids (int32_t*, text i's ids starting at the sum of #texts[j] + 1
-- over j < i), counts (int64_t*, per text) and the number of texts. The ids
-- live in the tokenizer's buffer until its next encode.
function Tokenizer:encode_batch_ptr(texts, opts, level)
  level = level or 2
  if type(texts) ~= 'table' then error('encode_batch: expected an array of strings, got ' .. type(texts), level) end
  if opts ~= nil and type(opts) ~= 'table' then error('encode_batch: options must be a table', level) end
  local n, total = #texts, 0
  for i = 1, n do
    if type(texts[i]) ~= 'string' then error(('encode_batch: texts[%d] is a %s, not a string'):format(i, type(texts[i])), level) end
    total = total + #texts[i] + 1
  end
  local allowed, nallowed = allowed_ids(self, opts and opts.allowed_special, level)
  local ptrs = ffi.new('const char*[?]', n + 1)
  local lens = ffi.new('int64_t[?]', n + 1)
  for i = 1, n do ptrs[i - 1] = texts[i]; lens[i - 1] = #texts[i] end  -- texts stays referenced: the strings live
  local ids = id_buffer(self, total + 1)
  local counts = ffi.new('int64_t[?]', n + 1)
  if C.tide_bpe_encode_batch(self._t, n, ptrs, lens, allowed, nallowed, ids, counts) ~= 0 then raise(level) end
  return ids, counts, n
end

-- saving ----------------------------------------------------------------------

-- The merges as {left, right} byte-mapped token pairs, in rank order.
function Tokenizer:merges()
  local out = {}
  local l, r = ffi.new('int32_t[1]'), ffi.new('int32_t[1]')
  for i = 0, tonumber(C.tide_bpe_merge_count(self._t)) - 1 do
    if C.tide_bpe_merge(self._t, i, l, r) ~= 0 then raise(2) end
    out[i + 1] = { self:id_to_token(l[0]), self:id_to_token(r[0]) }
  end
  return out
end

-- The vocabulary as a table byte-mapped token -> id (added tokens included).
function Tokenizer:vocab()
  local v = {}
  for id = 0, self:vocab_size() - 1 do
    local s = self:id_to_token(id)
    if s and v[s] == nil then v[s] = id end
  end
  return v
end

-- Writes dir/tokenizer.json (Hugging Face's format, loadable by
-- tokenizers.Tokenizer.from_file), vocab.json, merges.txt and a
-- tokenizer_config.json for transformers.AutoTokenizer, all or nothing as a
-- set (tide/tokenizer_save.lua). dir's missing parents are created.
local VOCAB_SLOT = '@@tide: the vocabulary goes here@@'
function Tokenizer:save(dir)
  if type(dir) ~= 'string' then error('save: expected a directory path string, got ' .. type(dir), 2) end
  if dir == '' then error('save: the directory path is empty', 2) end
  local json = require 'tide.json'
  dir = dir:gsub('/+$', '')
  if dir == '' then error('save: refusing to write into the filesystem root /', 2) end
  local parent = dir:match('^(.*)/[^/]+$') or '.'
  -- created with its missing parents, as mkdir -p; the error carries that
  -- mkdir's own errno (a read-only mount is not "No such file or directory")
  if parent ~= '' and not is_dir(parent) then files.mkdir_p(parent, 'save', 2) end
  if exists(dir) and not is_dir(dir) then error('save: ' .. dir .. ' is a file, not a directory', 2) end
  local null = json.null
  local merges = self:merges()
  local merge_strings, lines = {}, { '#version: 0.2' }
  for i, m in ipairs(merges) do
    merge_strings[i] = m[1] .. ' ' .. m[2]
    lines[i + 1] = merge_strings[i]
  end
  local added = {}
  for i, a in ipairs(self.added) do
    added[i] = { id = a.id, content = a.content, single_word = false, lstrip = false, rstrip = false,
                 normalized = not a.special, special = a.special }
  end
  local byte_level = function(prefix, trim)
    return { type = 'ByteLevel', add_prefix_space = prefix, trim_offsets = trim, use_regex = true }
  end
  local doc = {
    version = '1.0', truncation = null, padding = null,
    added_tokens = json.array(added),
    normalizer = null,
    pre_tokenizer = byte_level(false, true),
    post_processor = byte_level(true, false),
    decoder = byte_level(true, true),
    model = {
      type = 'BPE', dropout = null, unk_token = null, continuing_subword_prefix = null,
      end_of_word_suffix = null, fuse_unk = false, byte_fallback = false, ignore_merges = false,
      vocab = VOCAB_SLOT, merges = json.array(merge_strings),
    },
  }
  -- the vocabulary's JSON is made once, in id order as Hugging Face writes
  -- it, for both vocab.json and tokenizer.json (encoding it is most of the
  -- cost of saving a 50,000-token vocabulary)
  local entries, quote = {}, json.quote
  for id = 0, self:vocab_size() - 1 do
    local p = C.tide_bpe_id_to_token(self._t, id, lenbuf)
    if p ~= nil then entries[#entries + 1] = quote(ffi.string(p, lenbuf[0])) .. ': ' .. id end
  end
  local vocab_text = '{' .. table.concat(entries, ', ') .. '}'
  local doc_text = json.encode(doc)
  local at, to = doc_text:find('"' .. VOCAB_SLOT .. '"', 1, true)
  doc_text = doc_text:sub(1, at - 1) .. vocab_text .. doc_text:sub(to + 1)
  local eos = self.eos_id and '<|endoftext|>' or null
  local config = { tokenizer_class = 'GPT2Tokenizer', add_prefix_space = false,
                   bos_token = eos, eos_token = eos, unk_token = eos, model_max_length = self.model_max_length or 1024 }
  local set = {
    { name = 'tokenizer.json', text = doc_text .. '\n' },
    { name = 'vocab.json', text = vocab_text .. '\n' },
    { name = 'merges.txt', text = table.concat(lines, '\n') .. '\n' },
    { name = 'tokenizer_config.json', text = json.encode(config, { indent = 2 }) .. '\n' },
  }
  local ok, err = pcall(require('tide.tokenizer_save').write, dir, set)
  if not ok then error('save: ' .. tostring(err):gsub('^[^:]*:%d+: ', ''), 2) end
end

-- streaming decoding ------------------------------------------------------------

local Decoder = {}
Decoder.__index = Decoder
Decoder.__name = 'tide.TokenizerDecoder'

-- The length of the tail of s that begins a UTF-8 character not yet complete
-- (0 if none): those bytes are held back until more arrive.
local function partial_tail(s)
  local n = #s
  for j = n, math.max(1, n - 2), -1 do
    local b = s:byte(j)
    if b < 0x80 or b >= 0xC0 then  -- a lead byte (or ASCII): the last character starts here
      local need = b >= 0xF0 and 4 or b >= 0xE0 and 3 or b >= 0xC2 and 2 or 0
      if b > 0xF4 or need == 0 or n - j + 1 >= need then return 0 end
      if j < n then  -- the second byte's range depends on the lead (no overlongs, surrogates, > U+10FFFF)
        local c, lo, hi = s:byte(j + 1), 0x80, 0xBF
        if b == 0xE0 then lo = 0xA0 elseif b == 0xED then hi = 0x9F
        elseif b == 0xF0 then lo = 0x90 elseif b == 0xF4 then hi = 0x8F end
        if c < lo or c > hi then return 0 end
      end
      return n - j + 1
    end
  end
  return 0
end

local function replace_invalid(s)
  if #s == 0 then return s end
  local rep = ffi.new('char[?]', 3 * #s + 1)
  return ffi.string(rep, C.tide_utf8_replace_invalid(s, #s, rep))
end

-- A streaming decoder: dec:push(id) returns the text completed by that id
-- (a character split across ids comes out whole with its last byte; bytes
-- that can never form a character become U+FFFD), dec:flush() what is held
-- back (U+FFFD for an unfinished character). The pushes and the flush
-- together equal decode(ids, {errors = 'replace'}).
function Tokenizer:decoder()
  return setmetatable({ _tok = self, _pending = '', _id = ffi.new('int32_t[1]') }, Decoder)
end

function Decoder:push(id)
  if type(id) ~= 'number' or id % 1 ~= 0 or id < -2147483648 or id > 2147483647 then
    error('decoder:push: expected an integer id, got ' .. tostring(id), 2)
  end
  local t = self._tok._t
  self._id[0] = id
  if C.tide_bpe_decode(t, self._id, 1, nil, 0, lenbuf) ~= 0 then raise(2) end
  local len = tonumber(lenbuf[0])
  local buf = ffi.new('char[?]', len + 1)
  if C.tide_bpe_decode(t, self._id, 1, buf, len, lenbuf) ~= 0 then raise(2) end
  local s = self._pending .. ffi.string(buf, len)
  local hold = partial_tail(s)
  self._pending = s:sub(#s - hold + 1)
  return replace_invalid(s:sub(1, #s - hold))
end

function Decoder:flush()
  local s = self._pending
  self._pending = ''
  return replace_invalid(s)
end

-- inspection ----------------------------------------------------------------------

local function text_list(texts, what)
  if type(texts) == 'string' then return { texts } end
  if type(texts) ~= 'table' then error(what .. ': expected a string or an array of strings, got ' .. type(texts), 3) end
  for i, s in ipairs(texts) do
    if type(s) ~= 'string' then error(('%s: texts[%d] is a %s, not a string'):format(what, i, type(s)), 3) end
  end
  return texts
end

-- Characters (code points, as Python's len) per token over texts (a string or
-- an array of strings).
function Tokenizer:chars_per_token(texts)
  texts = text_list(texts, 'chars_per_token')
  local chars, tokens = 0, 0
  for _, ids in ipairs(self:encode_batch(texts)) do tokens = tokens + #ids end
  for _, s in ipairs(texts) do
    local _, cont = s:gsub('[\128-\191]', '')
    chars = chars + #s - cont
  end
  if tokens == 0 then return 0 end
  return chars / tokens
end

-- Subword fertility over texts: the mean number of tokens per word (words are
-- the whitespace-separated runs, as Python's str.split(), each encoded on its
-- own), and the proportion of continued words (those split into 2+ tokens).
function Tokenizer:fertility(texts)
  texts = text_list(texts, 'fertility')
  local words = {}
  for _, s in ipairs(texts) do
    for w in s:gmatch('[^ \t\n\r\f\v]+') do words[#words + 1] = w end
  end
  if #words == 0 then return 0, 0 end
  local tokens, continued = 0, 0
  for _, ids in ipairs(self:encode_batch(words)) do
    tokens = tokens + #ids
    if #ids > 1 then continued = continued + 1 end
  end
  return tokens / #words, continued / #words
end

local function utf8_len(s)
  local _, cont = s:gsub('[\128-\191]', '')
  return #s - cont
end

-- The n longest tokens (byte-mapped strings, longest in characters first,
-- lower id first among equals); added tokens are left out.
function Tokenizer:longest_tokens(n)
  n = n or 10
  local added, list = {}, {}
  for _, a in ipairs(self.added) do added[a.id] = true end
  for id = 0, self:vocab_size() - 1 do
    local s = self:id_to_token(id)
    if s and not added[id] then list[#list + 1] = { id = id, s = s, n = utf8_len(s) } end
  end
  table.sort(list, function(a, b) if a.n ~= b.n then return a.n > b.n end return a.id < b.id end)
  local out = {}
  for i = 1, math.min(n, #list) do out[i] = list[i].s end
  return out
end

-- The tokens made by the last n merges (byte-mapped strings), newest first:
-- the last tokens a trained tokenizer learned.
function Tokenizer:last_merges(n)
  n = n or 10
  local l, r = ffi.new('int32_t[1]'), ffi.new('int32_t[1]')
  local out, m = {}, tonumber(C.tide_bpe_merge_count(self._t))
  for i = m - 1, math.max(0, m - n), -1 do
    if C.tide_bpe_merge(self._t, i, l, r) ~= 0 then raise(2) end
    out[#out + 1] = self:id_to_token(l[0]) .. self:id_to_token(r[0])
  end
  return out
end

-- For each word of the array, whether it encodes to a single token: a table
-- word -> boolean.
function Tokenizer:is_single_token(words)
  words = text_list(words, 'is_single_token')
  local out = {}
  for i, ids in ipairs(self:encode_batch(words)) do out[words[i]] = #ids == 1 end
  return out
end

-- tok(texts, opts): transformers' tokenizer call (tide/tokenizer_call.lua).
function Tokenizer:__call(texts, opts)
  return require('tide.tokenizer_call').call(self, texts, opts, 2)
end

function Tokenizer:__tostring()
  return ('Tokenizer(%s, %d tokens)'):format(self.source, self:vocab_size())
end

M.Tokenizer = Tokenizer
M.Decoder = Decoder
M.unicode_version = ffi.string(C.tide_unicode_version_str())

-- The GPT-2 pre-tokenizer's pieces of text, as raw byte strings (what Hugging
-- Face's ByteLevel pre_tokenize_str gives, before the byte-to-unicode map):
-- pre_tokenize('Hello  world!') is { 'Hello', ' ', ' world', '!' }. With
-- {offsets = true} a second result holds each piece's byte offsets
-- {first, last}, 1-based and inclusive: text:sub(first, last) is the piece.
function M.pre_tokenize(text, opts)
  if type(text) ~= 'string' then error('pre_tokenize: expected a string, got ' .. type(text), 2) end
  if opts ~= nil and type(opts) ~= 'table' then error('pre_tokenize: options must be a table, got ' .. type(opts), 2) end
  for k in pairs(opts or {}) do
    if k ~= 'offsets' then error('pre_tokenize: unknown option ' .. tostring(k), 2) end
  end
  if C.tide_pretokenize(text, #text, nil, 0, nbuf) ~= 0 then raise(2) end
  local n = tonumber(nbuf[0])
  local ends = ffi.new('int64_t[?]', n + 1)
  if C.tide_pretokenize(text, #text, ends, n, nbuf) ~= 0 then raise(2) end
  local out, offsets, at = new_table(n, 0), new_table(n, 0), 0
  for i = 0, n - 1 do
    local e = tonumber(ends[i])
    out[i + 1] = text:sub(at + 1, e)
    offsets[i + 1] = { at + 1, e }
    at = e
  end
  if opts and opts.offsets then return out, offsets end
  return out
end

function M.install(tide, core)
  tide.tokenizer = M
end

return M

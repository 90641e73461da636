-- tide.data.shards: token shards in llm.c's format, written and read.
--
--   local shards = require 'tide.data.shards'
--   local w = shards.writer('data/tiny', { vocab_size = 50257, shard_tokens = 1e8, seq_length = 1025 })
--   w:write(ids)                 -- a Lua list of 0-based token ids
--   w:close()                    -- commits the last shard, writes data/tiny/shard.json
--
--   local loader = shards.shards('data/tiny', { batch_size = 8, shuffle = true, seed = 1 })
--   for batch in loader do ... end   -- i32 tensors {rows, T + 1}
--
-- A shard is llm.c's file: 256 little-endian int32 of header (magic,
-- version, token count) then the tokens, uint16 when every id fits (vocab
-- up to 65536), else uint32 (llm.c's llama-3 layout). runtime/shards.c does
-- the bytes: shards are written to NAME.tmp and renamed when complete, and
-- a file whose size disagrees with its header is refused.
--
-- A set of shards (one prefix) is all or nothing through its manifest,
-- PREFIX.json: the writer first writes it marked "complete": false and
-- removes the prefix's old shards, and only close() rewrites it (atomically)
-- as complete, after every shard. The loader trusts the manifest alone:
-- it refuses an unfinished one (a run killed or failed midway), a listed
-- shard that is missing, and a PREFIX_NNNNNN.bin beside it that the manifest
-- does not list (left by an older writer), whether it was given the
-- directory, the manifest, a glob or one file. Several prefixes may share a
-- directory (train_* and valid_*), so a temporary directory renamed into
-- place would not do.
--
-- Reading cuts the token stream into windows of T + 1 tokens (inputs are
-- the first T, targets the last T), window k of a shard starting at token
-- k * stride. As in llm.c's loader no window crosses a shard boundary. The
-- stride is T by default (llm.c's windows overlap by one token), or T + 1
-- when a manifest says the shards hold packed sequences of seq_length = T + 1
-- tokens, so that each window is one of them. An epoch visits every window
-- once, in order or in a permutation drawn from (seed, epoch) alone, which
-- leaves tide's global generator untouched; window j of the epoch belongs to
-- rank j % world_size. With drop_last (the default) every rank gets the same
-- number of windows, floor(W / world_size), so that data-parallel ranks run
-- the same number of steps, and a final partial batch is dropped; without it
-- the ranks together cover every window and the last batch may be short.
local ffi = require 'ffi'
local rng = require 'tide.data.rng'
local files = require 'tide.data.files'
local C = require 'tide.C'
local tide = require 'tide'
local errors = require 'tide.errors'
local json = require 'tide.json'

local M = {}

local INT32_MAX = 2147483647
local FORMATS = {
  [2] = { magic = 20240520, version = 1 },
  [4] = { magic = 20240801, version = 7 },
}

local last_error = errors.message

local quote, is_dir, list_dir = files.quote, files.is_dir, files.list_dir

local function is_file(path)
  local f, msg, code = io.open(path, 'rb')
  if not f then
    if code == 23 or code == 24 then error('shards: ' .. msg .. ' (too many open files)', 0) end
    return false
  end
  f:close()
  return not is_dir(path)
end

local function join(dir, name)
  if dir == '' or dir == '.' then return name end
  return dir:sub(-1) == '/' and dir .. name or dir .. '/' .. name
end


local function is_int(v, lo, hi)
  return type(v) == 'number' and v % 1 == 0 and v >= lo and v <= hi
end

local function check_opts(where, opts, known, level)
  if opts == nil then return {} end
  if type(opts) ~= 'table' then error(('%s: options must be a table, got %s'):format(where, type(opts)), level + 1) end
  for k in pairs(opts) do
    if not known[k] then error(('%s: unknown option %s'):format(where, tostring(k)), level + 1) end
  end
  return opts
end

-- writing ---------------------------------------------------------------------------

local Writer = {}
Writer.__index = Writer
M.Writer = Writer

local writer_opts = { vocab_size = true, token_bytes = true, shard_tokens = true, seq_length = true, prefix = true,
                      manifest = true }
local reserved = { format = true, token_bytes = true, magic = true, version = true, shards = true,
                   total_tokens = true, seq_length = true, vocab_size = true, complete = true }
local CHUNK = 65536

local function close_c(p) C.tide_shard_writer_close(p, 0) end

-- The lua pattern of PREFIX's shard names (PREFIX_000000.bin, ...).
local function shard_pattern(prefix)
  return '^' .. prefix:gsub('%W', '%%%0') .. '_%d%d%d%d%d%d%.bin$'
end

local function write_manifest(path, m, level)
  local ok, err = pcall(json.write_file, path, m)
  if not ok then error('shards.writer: ' .. tostring(err):gsub('^json%.write_file: ', ''), level + 1) end
end

-- Creates dir (and its parents) and returns a writer of shards DIR/PREFIX_000000.bin, ...
-- opts: vocab_size (uint16 tokens when <= 65536, else uint32; ids must be
-- below it), token_bytes (2 or 4, instead of vocab_size), shard_tokens
-- (default 1e8; a shard is committed once it holds that many tokens), seq_length
-- (tokens per packed sequence: shards end only between sequences, and readers
-- default to windows of one sequence), prefix ('shard'), manifest (extra fields
-- for DIR/PREFIX.json).
function M.writer(dir, opts)
  local where = 'shards.writer'
  if type(dir) ~= 'string' or dir == '' then
    error(('%s: expected a directory path, got %s'):format(where, tostring(dir)), 2)
  end
  opts = check_opts(where, opts, writer_opts, 2)
  local vocab = opts.vocab_size
  if vocab ~= nil and not is_int(vocab, 1, INT32_MAX) then
    error(('%s: vocab_size must be a positive integer, got %s'):format(where, tostring(vocab)), 2)
  end
  local tb = opts.token_bytes
  if tb ~= nil and tb ~= 2 and tb ~= 4 then
    error(('%s: token_bytes must be 2 or 4, got %s'):format(where, tostring(tb)), 2)
  end
  tb = tb or ((vocab == nil or vocab <= 65536) and 2 or 4)
  if tb == 2 and vocab and vocab > 65536 then
    error(('%s: vocab_size %d does not fit uint16 tokens (token_bytes 2)'):format(where, vocab), 2)
  end
  local shard_tokens = opts.shard_tokens or 100000000
  if not is_int(shard_tokens, 1, INT32_MAX) then
    error(('%s: shard_tokens must be an integer in 1..%d, got %s'):format(where, INT32_MAX, tostring(shard_tokens)), 2)
  end
  local seq = opts.seq_length
  if seq ~= nil and not is_int(seq, 1, INT32_MAX) then
    error(('%s: seq_length must be a positive integer, got %s'):format(where, tostring(seq)), 2)
  end
  -- shards end at the first sequence boundary at or past shard_tokens
  local cap = seq and math.ceil(shard_tokens / seq) * seq or shard_tokens
  if cap > INT32_MAX then
    error(('%s: shards of %d tokens (shard_tokens rounded up to whole sequences of %d) exceed the format\'s %d')
      :format(where, cap, seq, INT32_MAX), 2)
  end
  local prefix = opts.prefix or 'shard'
  if type(prefix) ~= 'string' or not prefix:match('^[%w_%.%-]+$') then
    error(('%s: prefix must be a plain file name part (letters, digits, _ . -), got %s'):format(where, tostring(prefix)), 2)
  end
  local extra = opts.manifest
  if extra ~= nil then
    if type(extra) ~= 'table' then error(('%s: manifest must be a table, got %s'):format(where, type(extra)), 2) end
    for k in pairs(extra) do
      if reserved[k] then error(('%s: manifest field %s is written by the writer itself'):format(where, tostring(k)), 2) end
    end
  end
  files.mkdir_p(dir, where, 2)
  -- the unfinished manifest goes first, then the old shards of this prefix:
  -- from here until close() the loader refuses the prefix, so no mix of old
  -- and new shards and no partial set is ever read
  local fmt = FORMATS[tb]
  write_manifest(join(dir, prefix .. '.json'), { format = 'llm.c', complete = false, token_bytes = tb,
    magic = fmt.magic, version = fmt.version, shards = json.array(), total_tokens = 0 }, 2)
  local pat = shard_pattern(prefix)
  for _, name in ipairs(list_dir(dir)) do
    if name:match(pat) or (name:sub(-4) == '.tmp' and name:sub(1, -5):match(pat)) then
      local ok, err = os.remove(join(dir, name))
      if not ok then error(('%s: cannot remove the old shard %s'):format(where, tostring(err)), 2) end
    end
  end
  return setmetatable({
    dir = dir, prefix = prefix, token_bytes = tb, vocab_size = vocab, seq_length = seq, shard_tokens = shard_tokens,
    _cap = cap, _extra = extra, _max_id = vocab and math.min(vocab - 1, tb == 2 and 65535 or INT32_MAX)
      or (tb == 2 and 65535 or INT32_MAX),
    _c = nil, _count = 0, _shards = {}, _total = 0, _closed = false,
    _buf = ffi.new('int32_t[?]', CHUNK), _out = ffi.new('tide_shard_writer*[1]'),
  }, Writer)
end

function Writer:_name(i) return ('%s_%06d.bin'):format(self.prefix, i) end

function Writer:_check(level)
  if self._closed then error('shards.writer: the writer is closed', level + 1) end
end

-- Commits the current shard (if any) and records it.
function Writer:_commit(level)
  local w = self._c
  if w == nil then return end
  self._c = nil
  ffi.gc(w, nil)
  if C.tide_shard_writer_close(w, 1) ~= 0 then error(last_error(), level + 1) end
  local s = self._shards
  s[#s + 1] = { file = self:_name(#s), tokens = self._count }
  self._count = 0
end

-- Appends n validated tokens at ptr, rotating shards at the cap.
function Writer:_push(ptr, n, level)
  local done = 0
  while done < n do
    if self._c == nil then
      local path = join(self.dir, self:_name(#self._shards))
      if C.tide_shard_writer_open(path, self.token_bytes, self._out) ~= 0 then error(last_error(), level + 1) end
      self._c = ffi.gc(self._out[0], close_c)
    end
    local take = math.min(n - done, self._cap - self._count)
    if C.tide_shard_writer_write(self._c, ptr + done, take) ~= 0 then error(last_error(), level + 1) end
    done = done + take
    self._count = self._count + take
    self._total = self._total + take
    if self._count >= self._cap then self:_commit(level + 1) end
  end
end

local function bad_id(self, v, i, level)
  local why = self.vocab_size and ('outside the vocabulary (vocab_size %d)'):format(self.vocab_size)
    or ('does not fit uint%d'):format(self.token_bytes * 8)
  error(('shards.writer: id %s at index %d %s'):format(tostring(v), i, why), level + 1)
end

-- Appends a Lua list of 0-based ids; a bad id (naming its 1-based index) writes nothing of the call.
function Writer:write(ids)
  self:_check(2)
  if type(ids) ~= 'table' then error('shards.writer: write expects a list of ids, got ' .. type(ids), 2) end
  local n, max = #ids, self._max_id
  for i = 1, n do
    local v = ids[i]
    if type(v) ~= 'number' or not (v >= 0 and v <= max) or v % 1 ~= 0 then bad_id(self, v, i, 2) end
  end
  local buf = self._buf
  for i = 1, n, CHUNK do
    local k = math.min(CHUNK, n - i + 1)
    for j = 0, k - 1 do buf[j] = ids[i + j] end
    self:_push(buf, k, 2)
  end
end

-- Appends n ids from an int32_t pointer (0-based index in errors).
function Writer:write_ptr(ptr, n)
  self:_check(2)
  if type(n) ~= 'number' or n < 0 or n % 1 ~= 0 then
    error('shards.writer: write_ptr expects a count >= 0, got ' .. tostring(n), 2)
  end
  if n == 0 then return end
  if type(ptr) ~= 'cdata' or ptr == nil then error('shards.writer: write_ptr expects an int32_t pointer', 2) end
  local p = ffi.cast('const int32_t*', ptr)
  local max = self._max_id
  for i = 0, n - 1 do
    local v = p[i]
    if v < 0 or v > max then bad_id(self, v, i, 2) end
  end
  self:_push(p, n, 2)
end

-- Tokens written so far (all shards).
function Writer:count() return self._total end

-- Commits the last shard and writes DIR/PREFIX.json atomically; returns the manifest.
function Writer:close()
  if self._closed then return self.manifest end
  self:_commit(2)
  self._closed = true
  local fmt = FORMATS[self.token_bytes]
  local list = json.array()
  for i, s in ipairs(self._shards) do list[i] = { file = s.file, tokens = s.tokens } end
  local m = {}
  for k, v in pairs(self._extra or {}) do m[k] = v end
  m.format, m.token_bytes, m.magic, m.version = 'llm.c', self.token_bytes, fmt.magic, fmt.version
  m.shards, m.total_tokens, m.seq_length, m.vocab_size = list, self._total, self.seq_length, self.vocab_size
  m.complete = true
  write_manifest(join(self.dir, self.prefix .. '.json'), m, 2)
  self.manifest = m
  return m
end

-- Drops what this writer wrote: the shard being written (its temp file), the
-- shards committed so far and the unfinished manifest.
function Writer:abort()
  if self._closed then return end
  if self._c ~= nil then
    local w = self._c
    self._c = nil
    ffi.gc(w, nil)
    C.tide_shard_writer_close(w, 0)
  end
  self._closed = true
  for _, s in ipairs(self._shards) do os.remove(join(self.dir, s.file)) end
  os.remove(join(self.dir, self.prefix .. '.json'))
end

-- reading ---------------------------------------------------------------------------

local Loader = {}
Loader.__index = Loader
M.Loader = Loader

local loader_opts = { batch_size = true, seq_len = true, stride = true, shuffle = true, seed = true, epochs = true,
                      rank = true, world_size = true, drop_last = true, raw_uint16 = true, prefix = true,
                      token_bytes = true }

-- Is this JSON file a shard manifest? (cheap test before decoding it fully)
local function looks_like_manifest(path)
  local f = io.open(path, 'rb')
  if not f then return false end
  local text = f:read('*a')
  f:close()
  return text:find('"format"%s*:%s*"llm%.c"') ~= nil
end

-- Reads a manifest and checks that the shard set it describes is whole: the
-- writer finished it, every shard it lists is there, and no shard of its
-- prefix that it does not list lies beside it.
local function read_manifest(path, level)
  local ok, m = pcall(json.read_file, path)
  if not ok then error('shards: ' .. tostring(m):gsub('^[^:]*:%d+: ', ''), level + 1) end
  if type(m) ~= 'table' or m.format ~= 'llm.c' or type(m.shards) ~= 'table' then
    error(('shards: %s is not a shard manifest (format "llm.c" with a list of shards)'):format(path), level + 1)
  end
  if m.complete == false then
    error(('shards: %s describes an unfinished write (the writer failed or was killed before close()): '
      .. 'write the shards again'):format(path), level + 1)
  end
  local dir = path:match('^(.*)/[^/]*$') or '.'
  local files, listed = {}, {}
  for i, s in ipairs(m.shards) do
    if type(s) ~= 'table' or type(s.file) ~= 'string' or not is_int(s.tokens, 0, INT32_MAX) then
      error(('shards: %s: shard %d has no file name and token count'):format(path, i), level + 1)
    end
    files[i] = { path = join(dir, s.file), tokens = s.tokens }
    listed[s.file] = true
    if not is_file(files[i].path) then
      error(('shards: %s lists %s, which is missing'):format(path, files[i].path), level + 1)
    end
  end
  local pat = shard_pattern(path:match('([^/]*)%.json$'))
  for _, name in ipairs(list_dir(dir)) do
    if name:match(pat) and not listed[name] then
      error(('shards: %s is not listed in its manifest %s (a stray shard, left by an earlier write?)')
        :format(join(dir, name), path), level + 1)
    end
  end
  return m, files
end

-- For a .bin given by name or glob: the manifest of its prefix beside it, if
-- any, must be whole and list it (see read_manifest).
local function check_listed(file_path, seen, level)
  local dir, name = file_path:match('^(.*)/([^/]*)$')
  if not dir then dir, name = '.', file_path end
  if dir == '' then dir = '/' end
  local prefix = name:match('^(.*)_%d%d%d%d%d%d%.bin$')
  if not prefix then return end
  local mpath = join(dir, prefix .. '.json')
  if seen[mpath] == nil then
    seen[mpath] = false
    if is_file(mpath) and looks_like_manifest(mpath) then seen[mpath] = select(2, read_manifest(mpath, level + 1)) end
  end
  local files = seen[mpath]
  if not files then return end
  for _, f in ipairs(files) do
    if f.path == join(dir, name) then return f.tokens end
  end
end

-- Resolves path (directory, manifest, .bin file or glob) to a list of
-- {path=, tokens=?} and the manifest, if any.
local function resolve(path, prefix, level)
  if type(path) ~= 'string' or path == '' then
    error('shards: expected a directory, a .bin file or a glob pattern, got ' .. tostring(path), level + 1)
  end
  if path:find('*', 1, true) and not is_dir(path) and not is_file(path) then
    local dir, pat = path:match('^(.*)/([^/]*)$')
    if not dir then dir, pat = '.', path end
    if dir == '' then dir = '/' end
    if dir:find('*', 1, true) then
      error(('shards: %s: only the file name part of a pattern may hold *'):format(path), level + 1)
    end
    local lpat = files.glob_pattern(pat)
    local found, seen = {}, {}
    for _, name in ipairs(list_dir(dir)) do
      if name:match(lpat) and is_file(join(dir, name)) then
        local p = join(dir, name)
        found[#found + 1] = { path = p, tokens = check_listed(p, seen, level + 1) }
      end
    end
    if #found == 0 then error(('shards: no files match %s'):format(path), level + 1) end
    return found
  end
  if is_dir(path) then
    if prefix then
      local mpath = join(path, prefix .. '.json')
      if is_file(mpath) then
        local m, files = read_manifest(mpath, level + 1)
        return files, m
      end
    else
      local found = {}
      for _, name in ipairs(list_dir(path)) do
        if name:match('%.json$') and looks_like_manifest(join(path, name)) then found[#found + 1] = name end
      end
      if #found == 1 then
        local m, files = read_manifest(join(path, found[1]), level + 1)
        return files, m
      elseif #found > 1 then
        error(('shards: %s holds several manifests (%s): choose one with opts.prefix'):format(path,
          table.concat(found, ', ')), level + 1)
      end
    end
    local files = {}
    for _, name in ipairs(list_dir(path)) do
      if name:match('%.bin$') and (not prefix or name:sub(1, #prefix) == prefix) and is_file(join(path, name)) then
        files[#files + 1] = { path = join(path, name) }
      end
    end
    if #files == 0 then
      error(('shards: no %s shards in directory %s'):format(prefix and prefix .. '*.bin' or '.bin', path), level + 1)
    end
    return files
  end
  if is_file(path) then
    if path:match('%.json$') then
      local m, files = read_manifest(path, level + 1)
      return files, m
    end
    return { { path = path, tokens = check_listed(path, {}, level + 1) } }
  end
  error(('shards: no such file or directory: %s'):format(path), level + 1)
end

local function close_shard(s) C.tide_shard_close(s) end

-- Fisher-Yates permutation of 0..n-1 drawn from (seed, epoch) alone (a
-- private generator: tide's global RNG is never touched).
local function permutation(n, seed, epoch)
  local p = ffi.new('int32_t[?]', n)
  for i = 0, n - 1 do p[i] = i end
  local r = rng.derive(seed, epoch)
  for i = n - 1, 1, -1 do
    local j = r:below(i + 1)
    p[i], p[j] = p[j], p[i]
  end
  return p
end

-- Opens the shards at path (a directory, a manifest .json, one .bin, or a
-- pattern like 'data/train_*.bin') and returns a loader of i32 batches
-- {rows, T + 1}. opts: batch_size (8), seq_len T (default: the manifest's
-- seq_length - 1), stride (T + 1 with a manifest's seq_length, else T),
-- shuffle (false), seed (0), epochs (1, math.huge for endless), rank and
-- world_size (0 and 1; in a tide.dist job with several ranks, this process's
-- rank and their number), drop_last (true), raw_uint16 (nanoGPT's header-less .bin),
-- prefix (which manifest in a directory), token_bytes (require this width).
function M.shards(path, opts)
  local where = 'shards'
  opts = check_opts(where, opts, loader_opts, 2)
  if opts.prefix ~= nil and (type(opts.prefix) ~= 'string' or opts.prefix == '') then
    error('shards: prefix must be a non-empty string, got ' .. tostring(opts.prefix), 2)
  end
  for _, k in ipairs { 'shuffle', 'drop_last', 'raw_uint16' } do
    if opts[k] ~= nil and type(opts[k]) ~= 'boolean' then
      error(('shards: %s must be a boolean, got %s'):format(k, tostring(opts[k])), 2)
    end
  end
  local files, manifest = resolve(path, opts.prefix, 2)
  local raw = opts.raw_uint16 == true
  if raw and manifest then error('shards: raw_uint16 is for header-less .bin files, but ' .. path .. ' has a manifest', 2) end

  local B = opts.batch_size or 8
  if not is_int(B, 1, INT32_MAX) then error('shards: batch_size must be a positive integer, got ' .. tostring(B), 2) end
  local mseq = manifest and manifest.seq_length
  if mseq ~= nil and not is_int(mseq, 2, INT32_MAX) then mseq = nil end
  local T = opts.seq_len
  if T == nil then
    if not mseq then
      error('shards: seq_len is required (no manifest with seq_length at ' .. path .. ')', 2)
    end
    T = mseq - 1
  end
  if not is_int(T, 1, INT32_MAX - 1) then error('shards: seq_len must be a positive integer, got ' .. tostring(T), 2) end
  local stride = opts.stride or (mseq and T + 1 or T)
  if not is_int(stride, 1, INT32_MAX) then error('shards: stride must be a positive integer, got ' .. tostring(stride), 2) end
  local seed = opts.seed or 0
  if not is_int(seed, 0, 2 ^ 53) then error('shards: seed must be an integer in 0..2^53, got ' .. tostring(seed), 2) end
  local epochs = opts.epochs or 1
  if not (epochs == math.huge or is_int(epochs, 1, 2 ^ 53)) then
    error('shards: epochs must be a positive integer or math.huge, got ' .. tostring(epochs), 2)
  end
  -- in a data-parallel job the defaults are this process's rank and the
  -- number of ranks (torch's DistributedSampler), so each reads its own part
  local job = opts.world_size == nil and opts.rank == nil and require('tide.train.dist').world()
  local ws = opts.world_size or (job and job.world_size()) or 1
  if not is_int(ws, 1, INT32_MAX) then error('shards: world_size must be a positive integer, got ' .. tostring(ws), 2) end
  local rank = opts.rank or (job and job.rank()) or 0
  if not is_int(rank, 0, ws - 1) then
    error(('shards: rank must be an integer in 0..%d (world_size %d), got %s'):format(ws - 1, ws, tostring(rank)), 2)
  end
  local want_tb = opts.token_bytes
  if want_tb ~= nil and want_tb ~= 2 and want_tb ~= 4 then
    error('shards: token_bytes must be 2 or 4, got ' .. tostring(want_tb), 2)
  end
  if manifest and manifest.token_bytes and not want_tb then want_tb = manifest.token_bytes end

  -- map every shard once and count its windows
  local len = T + 1
  local handles, ntoks, cum = {}, {}, { 0 }
  local out = ffi.new('tide_shard*[1]')
  local total_tokens, longest = 0, 0
  for i, f in ipairs(files) do
    if C.tide_shard_open(f.path, raw and 1 or 0, out) ~= 0 then error('shards: ' .. last_error(), 2) end
    local h = ffi.gc(out[0], close_shard)
    local n = tonumber(C.tide_shard_ntokens(h))
    local tb = C.tide_shard_token_bytes(h)
    if want_tb and tb ~= want_tb then
      error(('shards: %s holds %d-byte tokens, expected %d'):format(f.path, tb, want_tb), 2)
    end
    if f.tokens and f.tokens ~= n then
      error(('shards: %s holds %d tokens, its manifest says %d'):format(f.path, n, f.tokens), 2)
    end
    handles[i], ntoks[i] = h, n
    total_tokens = total_tokens + n
    longest = math.max(longest, n)
    local w = n >= len and math.floor((n - len) / stride) + 1 or 0
    cum[i + 1] = cum[i] + w
  end
  local W = cum[#files + 1]
  if W == 0 then
    error(('shards: seq_len %d needs %d tokens per window, but the longest of the %d shard(s) at %s holds %d')
      :format(T, len, #files, path, longest), 2)
  end
  if W > INT32_MAX then error(('shards: %d windows per epoch are more than this loader indexes'):format(W), 2) end
  local drop = opts.drop_last ~= false
  local per_rank
  if drop then
    per_rank = math.floor(W / ws)
  else
    per_rank = W > rank and math.floor((W - 1 - rank) / ws) + 1 or 0
  end
  local nb = drop and math.floor(per_rank / B) or math.ceil(per_rank / B)
  if nb == 0 then
    error(('shards: rank %d gets %d windows per epoch (%d in all, world_size %d), not one batch of %d')
      :format(rank, per_rank, W, ws, B), 2)
  end
  return setmetatable({
    path = path, files = files, manifest = manifest, batch_size = B, seq_len = T, stride = stride,
    shuffle = opts.shuffle == true, seed = seed, epochs = epochs, rank = rank, world_size = ws, drop_last = drop,
    total_windows = W,
    _handles = handles, _ntoks = ntoks, _cum = cum, _nshards = #files, _per_rank = per_rank, _nb = nb,
    _tokens = total_tokens, _epoch = 0, _index = 0, _perm = nil, _perm_epoch = nil,
  }, Loader)
end

-- Shard (1-based) and first token of global window g.
function Loader:_locate(g)
  local cum = self._cum
  local lo, hi = 1, self._nshards
  while lo < hi do
    local mid = math.floor((lo + hi + 1) / 2)
    if cum[mid] <= g then lo = mid else hi = mid - 1 end
  end
  return lo, (g - cum[lo]) * self.stride
end

-- Global window of rank-local window k in the current epoch.
function Loader:_window(k)
  local j = k * self.world_size + self.rank
  if not self.shuffle then return j end
  if self._perm_epoch ~= self._epoch then
    self._perm = nil  -- let the old one go before the new one is allocated
    self._perm = permutation(self.total_windows, self.seed, self._epoch)
    self._perm_epoch = self._epoch
  end
  return self._perm[j]
end

-- The next batch, or nil after the last epoch.
function Loader:next()
  if #self._handles == 0 then error('shards: the loader is closed', 2) end
  if self._epoch >= self.epochs then return nil end
  local rows = math.min(self.batch_size, self._per_rank - self._index)
  if rows <= 0 or (self.drop_last and rows < self.batch_size) then
    self._epoch, self._index = self._epoch + 1, 0
    if self._epoch >= self.epochs then return nil end
    rows = math.min(self.batch_size, self._per_rank)
  end
  local len = self.seq_len + 1
  local t = tide.empty({ rows, len }, { dtype = 'i32' })
  local p = ffi.cast('int32_t*', t:data_ptr())
  for r = 0, rows - 1 do
    local s, start = self:_locate(self:_window(self._index + r))
    if C.tide_shard_read(self._handles[s], start, len, p + r * len) ~= 0 then
      error('shards: ' .. last_error(), 2)
    end
  end
  self._index = self._index + rows
  return t
end

Loader.__call = function(self) return self:next() end

-- The position: the next window of this rank in epoch `epoch` (both 0-based).
function Loader:state() return { epoch = self._epoch, index = self._index } end

-- Resumes at a position from state(); the following batches are those an uninterrupted loader would give.
function Loader:set_state(s)
  if type(s) ~= 'table' then error('shards: set_state expects a table from state(), got ' .. type(s), 2) end
  if not (s.epoch == math.huge or is_int(s.epoch, 0, 2 ^ 53)) or not is_int(s.index, 0, self._per_rank) then
    error(('shards: set_state: bad state {epoch=%s, index=%s} (index must be in 0..%d)')
      :format(tostring(s.epoch), tostring(s.index), self._per_rank), 2)
  end
  self._epoch, self._index = s.epoch, s.index
end

-- Back to the start of epoch 0.
function Loader:reset() self._epoch, self._index = 0, 0 end

-- Closes the shards (one open descriptor each) now rather than at garbage
-- collection; reading from it afterwards is an error.
function Loader:close()
  for i, h in ipairs(self._handles) do
    C.tide_shard_close(ffi.gc(h, nil))
    self._handles[i] = nil
  end
end

-- Windows of this rank per epoch.
function Loader:num_windows() return self._per_rank end

-- Batches of this rank per epoch.
function Loader:num_batches() return self._nb end

-- Tokens in all the shards.
function Loader:num_tokens() return self._tokens end

return M

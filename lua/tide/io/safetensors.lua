-- safetensors files from Lua (the format and its checks: runtime/safetensors.c).
--
--   local tensors, names, meta = tide.io.load_safetensors('model.safetensors')
--   tensors['transformer.wte.weight']:shape()   --> { 50257, 768 }
--   tide.io.save_safetensors('out.safetensors', tensors, { format = 'pt' })
--
--   local f = tide.io.open_safetensors('model.safetensors')  -- reads on demand
--   for _, name in ipairs(f:names()) do print(name, f:info(name).dtype) end
--   local w = f:load('lm_head.weight')
--   f:close()
--
-- Loading copies each tensor into a new contiguous tensor (memory: the
-- tensors themselves; nothing is mapped). Saving writes any tensor (views
-- and strided ones as their contiguous values) in the order and layout the
-- Python library uses, atomically: a temp file beside the target, fsync,
-- rename. transformers' from_pretrained accepts files without metadata or
-- with {format = 'pt'}, which is what its save_pretrained writes.
local ffi = require 'ffi'
local C = require 'tide.C'
local errors = require 'tide.errors'
local core = require 'tide.tensor'
local json = require 'tide.json'

local M = {}

local filebuf = ffi.new('tide_st_file*[1]')
local dtbuf = ffi.new('int32_t[1]')
local ndbuf = ffi.new('int32_t[1]')
local shapebuf = ffi.new('int64_t[8]')

-- The safetensors format's header limit (runtime/safetensors.c, ST_MAX_HEADER),
-- which also bounds any one name.
local MAX_NAME = 100000000

local raise = errors.raise

-- An open file: names in data order, tensors read one at a time.
local File = {}
File.__index = File
File.__name = 'tide.io.SafetensorsFile'

local function handle(self, what, level)
  if self._f == nil then error(('%s: %s is closed'):format(what, self.path), level + 1) end
  return self._f
end

local function index_of(self, name, what, level)
  local i = self._index[name]
  if not i then
    error(('%s: no tensor named %s in %s (%d tensors)'):format(what, tostring(name), self.path, #self._names), level + 1)
  end
  return i
end

-- The tensor names, in the order their data lies in the file.
function File:names()
  handle(self, 'names', 2)
  local r = {}
  for i, n in ipairs(self._names) do r[i] = n end
  return r
end

-- { dtype = 'f32', shape = {...} } of a tensor, without reading it.
function File:info(name)
  local f = handle(self, 'info', 2)
  local i = index_of(self, name, 'info', 2)
  if C.tide_st_info(f, i - 1, dtbuf, ndbuf, shapebuf) ~= 0 then raise(2) end
  local shape = {}
  for d = 0, ndbuf[0] - 1 do shape[d + 1] = tonumber(shapebuf[d]) end
  return { dtype = core.dtype_name[dtbuf[0]], shape = shape }
end

-- Reads one tensor into a new contiguous tensor.
function File:load(name)
  local f = handle(self, 'load', 2)
  local i = index_of(self, name, 'load', 2)
  if C.tide_st_load(f, i - 1, core.out1) ~= 0 then raise(2) end
  return core.wrap(core.out1[0])
end

-- The "__metadata__" table of strings ({} when the file has none).
function File:metadata()
  return json.decode(ffi.string(C.tide_st_metadata(handle(self, 'metadata', 2))))
end

-- Closes the file now (garbage collection would, later).
function File:close()
  if self._f ~= nil then
    C.tide_st_close(ffi.gc(self._f, nil))
    self._f = nil
  end
end

-- Opens and validates a safetensors file; raises a clear error if it is malformed.
-- A path C can take: a NUL byte would cut it short there.
local function check_path(path, what, level)
  if type(path) ~= 'string' then error(('%s: expected a path string, got %s'):format(what, type(path)), level + 1) end
  if path == '' then error(what .. ': the path is empty', level + 1) end
  if path:find('%z') then error(('%s: the path "%s" holds a NUL byte'):format(what, (path:gsub('%z', '\\0'))), level + 1) end
end

function M.open_safetensors(path)
  check_path(path, 'open_safetensors', 2)
  if C.tide_st_open(path, filebuf) ~= 0 then raise(2) end
  local self = setmetatable({ path = path, _f = ffi.gc(filebuf[0], C.tide_st_close), _names = {}, _index = {} }, File)
  for i = 0, tonumber(C.tide_st_count(self._f)) - 1 do
    local name = ffi.string(C.tide_st_name(self._f, i))
    self._names[i + 1] = name
    self._index[name] = i + 1
  end
  return self
end

-- Returns { [name] = tensor }, the names in file order, and the metadata
-- table; opts.device (as safetensors' device=) puts the tensors there.
function M.load_safetensors(path, opts)
  check_path(path, 'load_safetensors', 2)
  local device = opts ~= nil and opts.device or nil
  if device ~= nil then core.device_code(device, 'load_safetensors', 2) end
  local ok, f = pcall(M.open_safetensors, path)
  if not ok then error(tostring(f):gsub('^[^:]*:%d+: ', ''), 2) end
  local tensors, names = {}, f:names()
  for i, name in ipairs(names) do
    if C.tide_st_load(f._f, i - 1, core.out1) ~= 0 then
      local msg = errors.message()
      f:close()
      error(msg, 2)
    end
    tensors[name] = core.wrap(core.out1[0])
    if device ~= nil then tensors[name] = tensors[name]:to(device) end
  end
  local meta = f:metadata()
  f:close()
  return tensors, names, meta
end

-- Reads { [name] = tensor } or a list of { name, tensor } pairs into parallel
-- name and tensor lists.
local function collect(tensors, level)
  local names, list = {}, {}
  local first = tensors[1]
  if first ~= nil and type(first) == 'table' and not core.is_tensor(first) then
    for i, pair in ipairs(tensors) do
      if type(pair) ~= 'table' or type(pair[1]) ~= 'string' or not core.is_tensor(pair[2]) then
        error(('save_safetensors: entry %d of the list must be a { name, tensor } pair'):format(i), level + 1)
      end
      names[i], list[i] = pair[1], pair[2]
    end
    for k in pairs(tensors) do
      if type(k) ~= 'number' or k < 1 or k > #tensors or k % 1 ~= 0 then
        error('save_safetensors: a list of { name, tensor } pairs cannot also have the key ' .. tostring(k), level + 1)
      end
    end
    return names, list
  end
  for k, v in pairs(tensors) do
    if type(k) ~= 'string' then
      error(('save_safetensors: tensor names must be strings, got the %s key %s'):format(type(k), tostring(k)), level + 1)
    end
    if not core.is_tensor(v) then
      error(('save_safetensors: %q must map to a tensor, got %s'):format(k, type(v)), level + 1)
    end
    names[#names + 1] = k
  end
  table.sort(names)
  for i, k in ipairs(names) do list[i] = tensors[k] end
  return names, list
end

-- Writes tensors ({ [name] = tensor } or { { name, tensor }, ... }) to path
-- atomically, with the optional metadata table of strings (for example
-- { format = 'pt' }, what transformers writes).
function M.save_safetensors(path, tensors, metadata)
  check_path(path, 'save_safetensors', 2)
  if type(tensors) ~= 'table' or core.is_tensor(tensors) then
    error('save_safetensors: expected a table of name = tensor, got ' .. (core.is_tensor(tensors) and 'a tensor' or type(tensors)), 2)
  end
  local meta_json
  if metadata ~= nil then
    if type(metadata) ~= 'table' then error('save_safetensors: metadata must be a table of strings, got ' .. type(metadata), 2) end
    for k, v in pairs(metadata) do
      if type(k) ~= 'string' or type(v) ~= 'string' then
        error(('save_safetensors: metadata must map strings to strings; %s = %s is a %s'):format(
          tostring(k), tostring(v), type(k) ~= 'string' and (type(k) .. ' key') or (type(v) .. ' value')), 2)
      end
    end
    meta_json = next(metadata) == nil and '{}' or json.encode(metadata)
  end
  local names, list = collect(tensors, 2)
  local n = #names
  -- names go to C as C strings and into a JSON header: a NUL would cut one
  -- short silently, so every name is checked here, in one pass
  local seen, header = {}, 0
  for i, name in ipairs(names) do
    local shown = '"' .. (#name > 80 and name:sub(1, 80) .. '...' or name):gsub('[%z\1-\31\127"\\]', function(c)
      return ('\\%d'):format(c:byte())
    end) .. '"'
    if name == '' then error(('save_safetensors: tensor %d has an empty name'):format(i), 2) end
    local nul = name:find('%z')
    if nul then
      error(('save_safetensors: tensor name %s holds a NUL byte at position %d, which the file cannot store'):format(shown, nul), 2)
    end
    if #name > MAX_NAME then
      error(('save_safetensors: tensor name %s is %d bytes, over the %d a header may spend on one name'):format(shown, #name, MAX_NAME), 2)
    end
    if seen[name] then error(('save_safetensors: duplicate tensor name %s (entries %d and %d)'):format(shown, seen[name], i), 2) end
    seen[name] = i
    header = header + #name
  end
  if header > MAX_NAME then
    error(('save_safetensors: the %d tensor names take %d bytes, over the %d-byte header limit'):format(n, header, MAX_NAME), 2)
  end
  local cnames = ffi.new('const char*[?]', n + 1)
  local ctensors = ffi.new('tide_tensor*[?]', n + 1)
  for i = 1, n do
    cnames[i - 1] = names[i]
    -- a tensor on a device is written from a host copy, as torch's save does
    if list[i]._c.device ~= -1 then list[i] = list[i]:cpu() end
    ctensors[i - 1] = list[i]._c
  end
  local rc = C.tide_st_save(path, n, cnames, ctensors, meta_json)
  local _ = names  -- the name strings stay alive through the call
  if rc ~= 0 then raise(2) end
end

-- Adds the functions to tide.io.
function M.install(tide)
  tide.io = tide.io or {}
  tide.io.load_safetensors = M.load_safetensors
  tide.io.save_safetensors = M.save_safetensors
  tide.io.open_safetensors = M.open_safetensors
end

return M

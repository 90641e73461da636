-- tide.json: JSON text to Lua values and back.
--
--   local cfg = tide.json.read_file('config.json')
--   tide.json.decode('{"a": [1, 2, null]}')   --> { a = { 1, 2, tide.json.null } }
--   tide.json.encode({ b = 1, a = { true } }) --> '{"a":[true],"b":1}'
--   tide.json.write_file('out.json', cfg, { indent = 2 })
--
-- Decoding runs the engine's strict RFC 8259 parser (runtime/json.h has the
-- rules: errors give line and column; no comments, trailing commas, NaN or
-- Infinity; nesting up to 512 levels; lone surrogate escapes are errors; a
-- leading byte order mark is skipped). Objects become tables, arrays 1-based
-- Lua lists (marked with json.array_mt so an empty one encodes back as []),
-- null becomes the json.null sentinel, numbers Lua numbers: doubles, so
-- integers above 2^53 are rounded. A repeated key keeps its last value.
--
-- Strings are bytes, both ways (tide's rule): decoding keeps bytes that are
-- not valid UTF-8 as they are, and encoding writes a string's bytes as they
-- are, escaping only '"', '\' and control characters. The output is valid
-- JSON when the strings are valid UTF-8; nothing is replaced or rejected.
local ffi = require 'ffi'
local C = require 'tide.C'
local errors = require 'tide.errors'

local M = {}

-- The value JSON's null decodes to (and encodes from); prints as "null".
M.null = setmetatable({}, { __name = 'tide.json.null', __tostring = function() return 'null' end,
                            __newindex = function() error('json.null is read-only', 2) end })
-- Metatable of decoded arrays; json.array(t) marks a table so that, even
-- empty, it encodes as [] (an unmarked empty table encodes as {}).
M.array_mt = { __name = 'tide.json.array' }
function M.array(t) return setmetatable(t or {}, M.array_mt) end

-- decoding --------------------------------------------------------------------

local T_NULL, T_FALSE, T_TRUE = C.TIDE_JSON_NULL, C.TIDE_JSON_FALSE, C.TIDE_JSON_TRUE
local T_NUMBER, T_STRING = C.TIDE_JSON_NUMBER, C.TIDE_JSON_STRING
local T_ARRAY, T_OBJECT = C.TIDE_JSON_ARRAY, C.TIDE_JSON_OBJECT
local lenbuf = ffi.new('int64_t[1]')
local docbuf = ffi.new('tide_json*[1]')
local null, array_mt = M.null, M.array_mt

local function build(doc, node)
  local t = C.tide_json_type(doc, node)
  if t == T_STRING then
    local p = C.tide_json_string(doc, node, lenbuf)
    return ffi.string(p, lenbuf[0])
  elseif t == T_NUMBER then
    return C.tide_json_number(doc, node)
  elseif t == T_OBJECT then
    local r = {}
    for i = 0, tonumber(C.tide_json_length(doc, node)) - 1 do
      local k = C.tide_json_key(doc, node, i, lenbuf)
      r[ffi.string(k, lenbuf[0])] = build(doc, C.tide_json_child(doc, node, i))
    end
    return r
  elseif t == T_ARRAY then
    local r = setmetatable({}, array_mt)
    for i = 0, tonumber(C.tide_json_length(doc, node)) - 1 do
      r[i + 1] = build(doc, C.tide_json_child(doc, node, i))
    end
    return r
  elseif t == T_TRUE then
    return true
  elseif t == T_FALSE then
    return false
  end
  return null
end

-- Parses JSON text into Lua values; raises "json: line L, column C: ..." on bad input.
function M.decode(text)
  if type(text) ~= 'string' then
    error('json.decode: expected a string of JSON text, got ' .. type(text), 2)
  end
  if C.tide_json_parse(text, #text, docbuf) ~= 0 then
    errors.raise(2)
  end
  local doc = ffi.gc(docbuf[0], C.tide_json_free)
  local v = build(doc, 0)
  C.tide_json_free(ffi.gc(doc, nil))
  return v
end

-- encoding --------------------------------------------------------------------

local escapes = {
  ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
  ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t',
}
for i = 0, 31 do
  local c = string.char(i)
  escapes[c] = escapes[c] or ('\\u%04x'):format(i)
end

-- The JSON string literal of s: its bytes, with '"', '\' and control
-- characters escaped.
local function quote(s)
  if not s:find('[%c"\\]') then return '"' .. s .. '"' end
  return '"' .. s:gsub('[%c"\\]', escapes) .. '"'
end
M.quote = quote

local function key_text(k)
  return type(k) == 'string' and ('%q'):format(k) or tostring(k)
end

-- Where a value sits, for errors: "value["a"][2]" from the keys on the stack.
local function where(stack, depth)
  if depth == 0 then return 'the value' end
  local parts = { 'value' }
  for i = 1, depth do
    local k = stack[i]
    parts[#parts + 1] = type(k) == 'number' and ('[' .. k .. ']') or ('[' .. key_text(k) .. ']')
  end
  return table.concat(parts)
end

-- The shortest of %.15g..%.17g that reads back as x (integers exactly).
local function number(x, stack, depth)
  if x ~= x or x == math.huge or x == -math.huge then
    error(('json.encode: %s is %s, which JSON cannot represent'):format(where(stack, depth), tostring(x)), 0)
  end
  if x % 1 == 0 and x > -2 ^ 53 and x < 2 ^ 53 then
    if x == 0 and 1 / x < 0 then return '-0' end
    return ('%d'):format(x)
  end
  local s
  for p = 15, 17 do
    s = ('%.' .. p .. 'g'):format(x)
    if tonumber(s) == x then break end
  end
  return s
end

-- Writes v into out (a list of pieces, out.n of them) as JSON; stack holds
-- the keys leading to v, for errors. Strings are pushed as pieces rather than
-- concatenated, so no intermediate strings are made.
local function encode(v, out, opts, stack, depth, seen)
  local tv = type(v)
  local n = out.n
  if tv == 'string' then
    if v:find('[%c"\\]') then
      out[n + 1] = quote(v)
      out.n = n + 1
    else
      out[n + 1], out[n + 2], out[n + 3] = '"', v, '"'
      out.n = n + 3
    end
  elseif tv == 'number' then
    out[n + 1] = number(v, stack, depth)
    out.n = n + 1
  elseif v == nil or v == null then
    out[n + 1] = 'null'
    out.n = n + 1
  elseif tv == 'boolean' then
    out[n + 1] = v and 'true' or 'false'
    out.n = n + 1
  elseif tv == 'table' then
    local mt = getmetatable(v)
    if mt and mt.__name == 'tide.Tensor' then
      error(('json.encode: %s is a tensor; convert it with t:tolist() first'):format(where(stack, depth)), 0)
    end
    if seen[v] then error(('json.encode: %s contains itself (a cycle)'):format(where(stack, depth)), 0) end
    if depth >= 512 then error(('json.encode: %s is nested deeper than 512 levels'):format(where(stack, depth)), 0) end
    seen[v] = true
    local len, count, all_strings = #v, 0, true
    for k in pairs(v) do
      count = count + 1
      if type(k) ~= 'string' then all_strings = false end
    end
    -- separators: before the first item, between items, after the last
    local open_sep, sep, close_sep = '', ',', ''
    if opts.indent then
      local pad = opts.indent:rep(depth)
      open_sep, sep, close_sep = '\n' .. pad .. opts.indent, ',\n' .. pad .. opts.indent, '\n' .. pad
    end
    if (count == len and len > 0) or (count == 0 and mt == array_mt) then
      if len == 0 then
        out[n + 1] = '[]'
        out.n = n + 1
      else
        out[n + 1], out[n + 2] = '[', open_sep
        out.n = n + 2
        for i = 1, len do
          if i > 1 then
            out.n = out.n + 1
            out[out.n] = sep
          end
          stack[depth + 1] = i
          encode(v[i], out, opts, stack, depth + 1, seen)
        end
        out[out.n + 1], out[out.n + 2] = close_sep, ']'
        out.n = out.n + 2
      end
    elseif count == 0 then
      out[n + 1] = '{}'
      out.n = n + 1
    else
      if not all_strings then
        for k in pairs(v) do
          if type(k) ~= 'string' then
            local why = type(k) == 'number' and ' (a list must have keys 1..n with no holes)' or ''
            error(('json.encode: %s has the key %s of type %s; object keys must be strings%s')
              :format(where(stack, depth), tostring(k), type(k), why), 0)
          end
        end
      end
      local keys, nk = {}, 0
      for k in pairs(v) do
        nk = nk + 1
        keys[nk] = k
      end
      if opts.sort_keys then table.sort(keys) end
      local colon = opts.indent and ': ' or ':'
      out[n + 1], out[n + 2] = '{', open_sep
      out.n = n + 2
      for i = 1, nk do
        local k = keys[i]
        if i > 1 then
          out.n = out.n + 1
          out[out.n] = sep
        end
        encode(k, out, opts, stack, depth + 1, seen)
        out.n = out.n + 1
        out[out.n] = colon
        stack[depth + 1] = k
        encode(v[k], out, opts, stack, depth + 1, seen)
      end
      out[out.n + 1], out[out.n + 2] = close_sep, '}'
      out.n = out.n + 2
    end
    seen[v] = nil
  else
    error(('json.encode: %s is a %s, which JSON cannot represent'):format(where(stack, depth), tv), 0)
  end
end

-- Returns the JSON text of v. opts: indent (spaces as a number, or a string;
-- nil or false: compact), sort_keys (default true: the same table always gives the
-- same text). Object keys must be strings; a table with keys 1..n is an array.
function M.encode(v, opts)
  opts = opts or {}
  if type(opts) ~= 'table' then error('json.encode: options must be a table', 2) end
  local o = { sort_keys = opts.sort_keys ~= false }
  if type(opts.indent) == 'number' then
    if opts.indent < 0 or opts.indent % 1 ~= 0 then error('json.encode: indent must be a non-negative integer', 2) end
    o.indent = (' '):rep(opts.indent)
  elseif type(opts.indent) == 'string' then
    o.indent = opts.indent
  elseif opts.indent ~= nil and opts.indent ~= false then
    error('json.encode: indent must be a number or a string, got ' .. type(opts.indent), 2)
  end
  local out = { n = 0 }
  local ok, err = pcall(encode, v, out, o, {}, 0, {})
  if not ok then error(err, 2) end
  out.n = nil
  return table.concat(out)
end

-- files -------------------------------------------------------------------------

-- Reads and decodes a JSON file; errors start with the path.
function M.read_file(path)
  if type(path) ~= 'string' then error('json.read_file: expected a path string, got ' .. type(path), 2) end
  local f, err = io.open(path, 'rb')
  if not f then error('json.read_file: cannot open ' .. err, 2) end
  local text = f:read('*a')
  f:close()
  local ok, v = pcall(M.decode, text)
  if not ok then error(path .. ': ' .. tostring(v):gsub('^[^:]*:%d+: ', ''), 2) end
  return v
end

-- libc calls for atomic writes; one at a time, so that a module that
-- declared one of them already (perhaps with other parameter names) is no
-- conflict
for _, decl in ipairs {
  'void *fopen(const char *path, const char *mode);',
  'size_t fwrite(const void *p, size_t size, size_t n, void *f);',
  'int fflush(void *f);', 'int fclose(void *f);', 'int fileno(void *f);', 'int fsync(int fd);',
  'int open(const char *path, int flags, ...);', 'int close(int fd);',
  'int rename(const char *from, const char *to);', 'int unlink(const char *path);',
  'int getpid(void);', 'char *strerror(int errnum);',
} do
  pcall(ffi.cdef, decl)
end

local function os_error(what)
  return what .. ': ' .. ffi.string(ffi.C.strerror(ffi.errno()))
end

-- Writes text to path atomically: a temp file beside it (PATH.tmp-PID),
-- flushed and fsynced, renamed over path, and the directory fsynced. On any
-- error the temp file is removed and an existing file at path is untouched.
function M.write_atomic(path, text)
  local lib = ffi.C
  local tmp = ('%s.tmp-%d'):format(path, lib.getpid())
  local f = lib.fopen(tmp, 'wb')
  if f == nil then error(os_error('cannot create ' .. tmp), 2) end
  local ok = lib.fwrite(text, 1, #text, f) == #text and lib.fflush(f) == 0 and lib.fsync(lib.fileno(f)) == 0
  local err = not ok and os_error('writing ' .. tmp .. ' failed') or nil
  if lib.fclose(f) ~= 0 and ok then ok, err = false, os_error('writing ' .. tmp .. ' failed') end
  if ok and lib.rename(tmp, path) ~= 0 then ok, err = false, os_error('cannot rename ' .. tmp .. ' to ' .. path) end
  if not ok then
    lib.unlink(tmp)
    error(err, 2)
  end
  local dir = path:match('^(.*)/[^/]*$') or '.'
  if dir == '' then dir = '/' end
  local fd = lib.open(dir, 0)  -- O_RDONLY
  if fd >= 0 then
    lib.fsync(fd)
    lib.close(fd)
  end
end

-- Encodes value (opts as in encode; indent defaults to 2 here) and writes it
-- with a final newline to path, atomically.
function M.write_file(path, value, opts)
  if type(path) ~= 'string' then error('json.write_file: expected a path string, got ' .. type(path), 2) end
  opts = opts or {}
  local o = { indent = opts.indent == nil and 2 or opts.indent, sort_keys = opts.sort_keys }
  local ok, text = pcall(M.encode, value, o)
  if not ok then error(tostring(text):gsub('^[^:]*:%d+: ', ''), 2) end
  local ok2, err = pcall(M.write_atomic, path, text .. '\n')
  if not ok2 then error('json.write_file: ' .. tostring(err):gsub('^[^:]*:%d+: ', ''), 2) end
end

-- Makes the module tide.json.
function M.install(tide)
  tide.json = M
end

return M

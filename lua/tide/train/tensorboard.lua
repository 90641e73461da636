-- TensorBoard event files, written and read in Lua: no TensorFlow, no
-- protobuf library.
--
--   local tb = require 'tide.train.tensorboard'    -- also tide.train.tensorboard
--   local w = tb.EventWriter('run/tb/events.out.tfevents.1764759111.host')
--   w:add_scalar('loss/train', 3.25, 100)          -- wall_time defaults to now
--   w:flush(); w:close()
--   for _, e in ipairs(tb.read_events(path)) do print(e.step, e.tag, e.value) end
--
-- The format (facts from TensorFlow's record and event definitions):
--   * The file is a sequence of TFRecords: uint64 length (little-endian),
--     uint32 masked CRC32C of those 8 bytes, the data, uint32 masked CRC32C of
--     the data. Masking is ((crc >> 15) | (crc << 17)) + 0xa282ead8 mod 2^32,
--     CRC32C the Castagnoli polynomial (reflected 0x82F63B78).
--   * Each record's data is a serialized tensorflow.Event: wall_time (1,
--     double), step (2, int64), file_version (3, string), summary (5),
--     session_log (7). The first event of a file carries file_version
--     "brain.Event:2".
--   * Summary: repeated Value value (1). Value: tag (1), simple_value (2,
--     float), metadata (9, SummaryMetadata: plugin_data (1) { plugin_name (1) }),
--     tensor (8, TensorProto: dtype (1), float_val (5), double_val (6),
--     tensor_content (4), half_val (13), int_val (7), int64_val (10)).
-- tide writes scalars as simple_value (what PyTorch's SummaryWriter.add_scalar
-- writes by default); the reader also takes the tensor form (new_style=True,
-- double_precision=True, TensorFlow 2's tf.summary.scalar).
local ffi = require 'ffi'
local bit = require 'bit'

local M = {}

local band, bor, bxor, rshift, lshift = bit.band, bit.bor, bit.bxor, bit.rshift, bit.lshift

for _, decl in ipairs {
  'struct tide_timespec { long tv_sec; long tv_nsec; };',
  'int clock_gettime(int clk, struct tide_timespec *ts);',
  'int gethostname(char *name, size_t len);',
  'int getpid(void);',
} do
  pcall(ffi.cdef, decl)
end

-- CRC32C ----------------------------------------------------------------------

local crc_table = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do
    if band(c, 1) ~= 0 then c = bxor(rshift(c, 1), 0x82F63B78) else c = rshift(c, 1) end
  end
  crc_table[i] = c
end

-- The CRC32C of s (bytes i..j, default all), an unsigned 32-bit number.
local function crc32c(s, i, j)
  i, j = i or 1, j or #s
  local p = ffi.cast('const uint8_t *', s)
  local c = -1  -- 0xffffffff as a signed 32-bit value
  for k = i - 1, j - 1 do
    c = bxor(rshift(c, 8), crc_table[band(bxor(c, p[k]), 0xff)])
  end
  return bxor(c, -1) % 4294967296
end
M.crc32c = crc32c

-- The masked form TFRecords store (so that a CRC of data holding CRCs stays strong).
local function masked_crc32c(s, i, j)
  local c = crc32c(s, i, j)
  return (bor(rshift(c, 15), lshift(c, 17)) % 4294967296 + 0xa282ead8) % 4294967296
end
M.masked_crc32c = masked_crc32c

-- Little-endian bytes ---------------------------------------------------------

assert(ffi.abi('le'), 'tide.train.tensorboard assumes a little-endian host')
local u64box = ffi.new('union { uint64_t u; int64_t i; double d; uint8_t b[8]; }')
local u32box = ffi.new('union { uint32_t u; float f; uint8_t b[4]; }')

local function u32_bytes(x)
  u32box.u = x
  return ffi.string(u32box.b, 4)
end

local function u64_bytes(x)
  u64box.u = x
  return ffi.string(u64box.b, 8)
end

local function double_bytes(x)
  u64box.d = x
  return ffi.string(u64box.b, 8)
end

local function float_bytes(x)
  u32box.f = x
  return ffi.string(u32box.b, 4)
end

local function read_u32(s, pos)  -- pos 1-based
  ffi.copy(u32box.b, ffi.cast('const uint8_t *', s) + pos - 1, 4)
  return tonumber(u32box.u)
end

local function read_u64(s, pos)
  ffi.copy(u64box.b, ffi.cast('const uint8_t *', s) + pos - 1, 8)
  return u64box.u  -- uint64_t cdata
end

-- Protobuf encoding -----------------------------------------------------------

-- A varint: 7 bits a byte, low first, the top bit set on all but the last.
-- Negative int64s are their two's complement (ten bytes), as protobuf writes them.
local function varint(x)
  if x >= 0 and x < 2 ^ 53 then
    local out = {}
    while x >= 128 do
      out[#out + 1] = string.char(x % 128 + 128)
      x = math.floor(x / 128)
    end
    out[#out + 1] = string.char(x)
    return table.concat(out)
  end
  local u = ffi.cast('uint64_t', ffi.cast('int64_t', x))
  local out = {}
  while u >= 128 do
    out[#out + 1] = string.char(tonumber(u % 128) + 128)
    u = u / 128
  end
  out[#out + 1] = string.char(tonumber(u))
  return table.concat(out)
end
M._varint = varint

local function key(field, wire) return varint(field * 8 + wire) end
local function len_field(field, bytes) return key(field, 2) .. varint(#bytes) .. bytes end

local function check_integer(x, what, level)
  if type(x) ~= 'number' or x % 1 ~= 0 then
    error(('%s must be an integer, got %s'):format(what, tostring(x)), level + 1)
  end
end

-- Event fields shared by every record: wall_time and step.
local function event_head(wall_time, step)
  return key(1, 1) .. double_bytes(wall_time) .. key(2, 0) .. varint(step)
end

local function scalar_event(tag, value, step, wall_time)
  local v = len_field(1, tag) .. key(2, 5) .. float_bytes(value)
  local summary = len_field(1, v)
  return event_head(wall_time, step) .. len_field(5, summary)
end

local function version_event(wall_time)
  return key(1, 1) .. double_bytes(wall_time) .. len_field(3, 'brain.Event:2')
end

local SESSION_STATUS = { START = 1, STOP = 2, CHECKPOINT = 3 }
local SESSION_NAME = { [0] = 'UNSPECIFIED', 'START', 'STOP', 'CHECKPOINT' }

local function session_event(status, step, wall_time)
  return event_head(wall_time, step) .. len_field(7, key(1, 0) .. varint(SESSION_STATUS[status]))
end

-- A TFRecord around data.
local function record(data)
  local len = u64_bytes(#data)
  return len .. u32_bytes(masked_crc32c(len)) .. data .. u32_bytes(masked_crc32c(data))
end
M._record = record

-- Seconds since the epoch, with the fraction (TensorBoard's wall_time).
local tsbuf = ffi.new('struct tide_timespec')
local function now()
  ffi.C.clock_gettime(0, tsbuf)  -- CLOCK_REALTIME
  return tonumber(tsbuf.tv_sec) + tonumber(tsbuf.tv_nsec) * 1e-9
end
M.now = now

local function hostname()
  local buf = ffi.new('char[256]')
  if ffi.C.gethostname(buf, 255) ~= 0 then return 'localhost' end
  local h = ffi.string(buf)
  h = h:gsub('[^%w%.%-_]', '_')
  return h ~= '' and h or 'localhost'
end

local uid = 0
-- A fresh event file name in dir, as TensorFlow and PyTorch name them:
-- events.out.tfevents.<seconds>.<host>.<pid>.<n> (TensorBoard reads every
-- file whose name contains "tfevents"; n keeps names apart within a second).
function M.event_file_name(dir)
  local base = ('%s/events.out.tfevents.%010d.%s.%d'):format(dir, math.floor(now()), hostname(), ffi.C.getpid())
  while true do
    local name = ('%s.%d'):format(base, uid)
    uid = uid + 1
    local f = io.open(name, 'rb')
    if not f then return name end
    f:close()
  end
end

-- EventWriter ---------------------------------------------------------------

local EventWriter = {}
EventWriter.__index = EventWriter
EventWriter.__name = 'tide.train.tensorboard.EventWriter'

local function write_or_fail(self, bytes, level)
  if not self.f then error(('EventWriter: %s is closed'):format(self.path), level + 1) end
  local ok, err = self.f:write(bytes)
  if not ok then error(('EventWriter: cannot write %s: %s'):format(self.path, tostring(err)), level + 1) end
end

-- Opens path for writing (a new file: an existing one is replaced) and
-- writes the file_version event. The file is written to disk at flush().
function M.EventWriter(path)
  if type(path) ~= 'string' then error('EventWriter: expected a file path, got ' .. type(path), 2) end
  local f, err = io.open(path, 'wb')
  if not f then error('EventWriter: cannot create ' .. tostring(err), 2) end
  local self = setmetatable({ path = path, f = f }, EventWriter)
  write_or_fail(self, record(version_event(now())), 1)
  self:flush()
  return self
end

-- A scalar summary: tag (a string such as 'loss/train'), value (stored as a
-- 32-bit float, as TensorBoard does), step (an integer), wall_time (seconds
-- since the epoch, default now).
function EventWriter:add_scalar(tag, value, step, wall_time)
  if type(tag) ~= 'string' or tag == '' then error('add_scalar: tag must be a non-empty string', 2) end
  if type(value) ~= 'number' then
    if type(value) == 'cdata' or (type(value) == 'table' and value.item) then value = tonumber(value.item and value:item() or value) end
    if type(value) ~= 'number' then error(('add_scalar(%q): value must be a number, got %s'):format(tag, type(value)), 2) end
  end
  check_integer(step, ('add_scalar(%q): step'):format(tag), 2)
  write_or_fail(self, record(scalar_event(tag, value, step, wall_time or now())), 2)
end

-- A SessionLog event: 'START' at the step a resumed run restarts from tells
-- TensorBoard to drop the earlier run's points at and after that step.
function EventWriter:add_session_log(status, step, wall_time)
  if not SESSION_STATUS[status] then error('add_session_log: status must be START, STOP or CHECKPOINT', 2) end
  check_integer(step, 'add_session_log: step', 2)
  write_or_fail(self, record(session_event(status, step, wall_time or now())), 2)
end

function EventWriter:flush()
  if not self.f then return end
  local ok, err = self.f:flush()
  if not ok then error(('EventWriter: cannot write %s: %s'):format(self.path, tostring(err)), 2) end
end

function EventWriter:close()
  if not self.f then return end
  self:flush()
  self.f:close()
  self.f = nil
end

-- Protobuf decoding ---------------------------------------------------------

-- A varint at pos (1-based) of s; returns the value (a Lua number; int64s
-- above 2^53 lose precision, negative ones come back negative) and the next pos.
local function read_varint(s, pos, limit, ctx)
  local x, mul = 0, 1
  for n = 1, 10 do
    if pos > limit then error(ctx .. ': truncated varint', 0) end
    local b = s:byte(pos)
    pos = pos + 1
    if n == 10 or mul >= 2 ^ 49 then
      -- long varint: redo it in 64-bit arithmetic
      local u, shift, p = ffi.cast('uint64_t', 0), 0, pos - n
      for _ = 1, 10 do
        if p > limit then error(ctx .. ': truncated varint', 0) end
        local c = s:byte(p)
        p = p + 1
        u = u + ffi.cast('uint64_t', c % 128) * (ffi.cast('uint64_t', 2) ^ shift)
        shift = shift + 7
        if c < 128 then return tonumber(ffi.cast('int64_t', u)), p end
      end
      error(ctx .. ': varint longer than 10 bytes', 0)
    end
    x = x + (b % 128) * mul
    if b < 128 then return x, pos end
    mul = mul * 128
  end
end

-- Calls fn(field, wire, value, pos) for each field of the message in s[i..j]:
-- value is the number for varint, fixed32 and fixed64 fields (fixed64 as a
-- uint64 cdata, fixed32 as a number) and the sub-string for length-delimited ones.
local function fields(s, i, j, ctx, fn)
  local pos = i
  while pos <= j do
    local k
    k, pos = read_varint(s, pos, j, ctx)
    local field, wire = math.floor(k / 8), k % 8
    if wire == 0 then
      local v
      v, pos = read_varint(s, pos, j, ctx)
      fn(field, wire, v)
    elseif wire == 1 then
      if pos + 7 > j then error(ctx .. ': truncated fixed64 field', 0) end
      fn(field, wire, nil, pos)
      pos = pos + 8
    elseif wire == 5 then
      if pos + 3 > j then error(ctx .. ': truncated fixed32 field', 0) end
      fn(field, wire, nil, pos)
      pos = pos + 4
    elseif wire == 2 then
      local n
      n, pos = read_varint(s, pos, j, ctx)
      if n < 0 or pos + n - 1 > j then error(ctx .. ': length-delimited field runs past its message', 0) end
      fn(field, wire, s:sub(pos, pos + n - 1))
      pos = pos + n
    else
      error(('%s: unsupported wire type %d (field %d)'):format(ctx, wire, field), 0)
    end
  end
end

local function read_double(s, pos)
  ffi.copy(u64box.b, ffi.cast('const uint8_t *', s) + pos - 1, 8)
  return u64box.d
end

local function read_float(s, pos)
  ffi.copy(u32box.b, ffi.cast('const uint8_t *', s) + pos - 1, 4)
  return tonumber(u32box.f)
end

local function half_to_number(h)
  local sign = h >= 32768 and -1 or 1
  local e, m = math.floor(h / 1024) % 32, h % 1024
  if e == 0 then return sign * m * 2 ^ -24 end
  if e == 31 then return m == 0 and sign * math.huge or 0 / 0 end
  return sign * (1 + m / 1024) * 2 ^ (e - 15)
end

local DT_FLOAT, DT_DOUBLE, DT_INT32, DT_INT64, DT_HALF, DT_BFLOAT16 = 1, 2, 3, 9, 19, 14

-- The single number a scalar TensorProto holds, or nil when it holds none
-- or several (a histogram or text summary is not a scalar).
local function tensor_scalar(s, ctx)
  local dtype, vals, content = 0, {}, nil
  fields(s, 1, #s, ctx, function(field, wire, v, pos)
    if field == 1 and wire == 0 then dtype = v
    elseif field == 4 and wire == 2 then content = v
    elseif field == 5 then       -- float_val: packed or not
      if wire == 5 then vals[#vals + 1] = read_float(s, pos)
      elseif wire == 2 then for q = 1, #v - 3, 4 do vals[#vals + 1] = read_float(v, q) end end
    elseif field == 6 then       -- double_val
      if wire == 1 then vals[#vals + 1] = read_double(s, pos)
      elseif wire == 2 then for q = 1, #v - 7, 8 do vals[#vals + 1] = read_double(v, q) end end
    elseif field == 7 or field == 10 or field == 13 then  -- int_val, int64_val, half_val (varints)
      local list = {}
      if wire == 0 then list[1] = v
      elseif wire == 2 then
        local q = 1
        while q <= #v do list[#list + 1], q = read_varint(v, q, #v, ctx) end
      end
      for _, x in ipairs(list) do
        vals[#vals + 1] = field == 13 and half_to_number(x % 65536) or x
      end
    end
  end)
  if content then
    if dtype == DT_FLOAT and #content == 4 then return read_float(content, 1) end
    if dtype == DT_DOUBLE and #content == 8 then return read_double(content, 1) end
    if dtype == DT_HALF and #content == 2 then return half_to_number(content:byte(1) + 256 * content:byte(2)) end
    if dtype == DT_BFLOAT16 and #content == 2 then
      u32box.u = (content:byte(1) + 256 * content:byte(2)) * 65536
      return tonumber(u32box.f)
    end
    if dtype == DT_INT32 and #content == 4 then return tonumber(ffi.cast('int32_t', read_u32(content, 1))) end
    if dtype == DT_INT64 and #content == 8 then return tonumber(ffi.cast('int64_t', read_u64(content, 1))) end
    return nil
  end
  if #vals == 1 then return vals[1] end
  return nil
end

-- The plugin a SummaryMetadata names ('scalars', 'histograms', 'text', ...).
local function plugin_name(s, ctx)
  local name
  fields(s, 1, #s, ctx, function(field, wire, v)
    if field == 1 and wire == 2 then
      fields(v, 1, #v, ctx, function(f2, w2, v2) if f2 == 1 and w2 == 2 then name = v2 end end)
    end
  end)
  return name
end

-- Appends one entry per scalar value of the Summary in s to out.
local function read_summary(s, ctx, wall_time, step, out)
  fields(s, 1, #s, ctx, function(field, wire, v)
    if field ~= 1 or wire ~= 2 then return end
    local tag, value, tensor, plugin
    fields(v, 1, #v, ctx, function(f2, w2, v2, pos)
      if f2 == 1 and w2 == 2 then tag = v2
      elseif f2 == 7 and w2 == 2 and not tag then tag = v2  -- node_name, the old name for tag
      elseif f2 == 2 and w2 == 5 then value = read_float(v, pos)
      elseif f2 == 8 and w2 == 2 then tensor = v2
      elseif f2 == 9 and w2 == 2 then plugin = plugin_name(v2, ctx)
      end
    end)
    if value == nil and tensor and (plugin == nil or plugin == 'scalars') then
      value = tensor_scalar(tensor, ctx)
    end
    if value ~= nil then
      out[#out + 1] = { wall_time = wall_time, step = step, tag = tag or '', value = value }
    end
  end)
end

-- Decodes one Event into entries appended to out.
local function read_event(s, ctx, out)
  local wall_time, step, summary, version, session = 0, 0, nil, nil, nil
  fields(s, 1, #s, ctx, function(field, wire, v, pos)
    if field == 1 and wire == 1 then wall_time = read_double(s, pos)
    elseif field == 2 and wire == 0 then step = v
    elseif field == 3 and wire == 2 then version = v
    elseif field == 5 and wire == 2 then summary = v
    elseif field == 7 and wire == 2 then
      session = 'UNSPECIFIED'
      fields(v, 1, #v, ctx, function(f2, w2, v2)
        if f2 == 1 and w2 == 0 then session = SESSION_NAME[v2] or tostring(v2) end
      end)
    end
  end)
  if version then out[#out + 1] = { wall_time = wall_time, step = step, file_version = version } end
  if session then out[#out + 1] = { wall_time = wall_time, step = step, session_log = session } end
  if summary then read_summary(summary, ctx, wall_time, step, out) end
end

local function hex(x) return ('0x%08x'):format(x) end

-- Reads an event file: every record's CRCs are checked and a mismatch is an
-- error naming the file and the record's byte offset. Returns a list of
--   { wall_time =, step =, file_version = 'brain.Event:2' }  (the version event)
--   { wall_time =, step =, session_log = 'START' | ... }
--   { wall_time =, step =, tag =, value = }                  (one per scalar)
-- in file order; other summaries (histograms, images, text) are skipped. A
-- last record cut short (a writer killed mid-write) ends the list, with
-- .truncated_at = its offset; opts.strict makes that an error too.
-- path may also be a directory (a run's tb/, or the run directory holding
-- tb/): its event files are read in name order, one list.
function M.read_events(path, opts)
  opts = opts or {}
  if type(path) ~= 'string' then error('read_events: expected a file path, got ' .. type(path), 2) end
  local files = require 'tide.data.files'
  if files.is_dir(path) then
    local dir = files.is_dir(path .. '/tb') and path .. '/tb' or path
    local all = {}
    for _, f in ipairs(M.event_files(dir)) do
      local ok, ev = pcall(M.read_events, f, opts)
      if not ok then error(tostring(ev):gsub('^[^:]*:%d+: ', ''), 2) end
      for _, e in ipairs(ev) do all[#all + 1] = e end
      if ev.truncated_at then all.truncated_at, all.truncated_file = ev.truncated_at, f end
    end
    return all
  end
  local f, err = io.open(path, 'rb')
  if not f then error('read_events: cannot open ' .. tostring(err), 2) end
  local s = f:read('*a')
  f:close()
  local out, pos, n = {}, 1, #s
  while pos <= n do
    local off = pos - 1
    if pos + 11 > n then
      if opts.strict then error(('%s: truncated record header at offset %d'):format(path, off), 2) end
      out.truncated_at = off
      break
    end
    local stored = read_u32(s, pos + 8)
    local computed = masked_crc32c(s, pos, pos + 7)
    if stored ~= computed then
      error(('%s: record at offset %d: length CRC mismatch (stored %s, computed %s): the file is corrupt')
        :format(path, off, hex(stored), hex(computed)), 2)
    end
    local len = read_u64(s, pos)
    if len > n then
      error(('%s: record at offset %d: length %s is larger than the file'):format(path, off, tostring(len):gsub('ULL$', '')), 2)
    end
    len = tonumber(len)
    local dstart, dend = pos + 12, pos + 11 + len
    if dend + 4 > n then
      if opts.strict then
        error(('%s: record at offset %d is truncated (%d data bytes, the file ends after %d)'):format(path, off, len, n - pos - 11), 2)
      end
      out.truncated_at = off
      break
    end
    stored = read_u32(s, dend + 1)
    computed = masked_crc32c(s, dstart, dend)
    if stored ~= computed then
      error(('%s: record at offset %d: data CRC mismatch (stored %s, computed %s): the file is corrupt')
        :format(path, off, hex(stored), hex(computed)), 2)
    end
    local ctx = ('%s: record at offset %d'):format(path, off)
    local ok, e = pcall(read_event, s:sub(dstart, dend), ctx, out)
    if not ok then error(tostring(e) .. ' (not a valid Event)', 2) end
    pos = dend + 5
  end
  return out
end

-- The event files in dir (names containing "tfevents"), sorted by name,
-- which is by creation time.
function M.event_files(dir)
  local files = require 'tide.data.files'
  local list = {}
  for _, name in ipairs(files.list_dir(dir)) do
    if name:find('tfevents', 1, true) then list[#list + 1] = dir .. '/' .. name end
  end
  table.sort(list)
  return list
end

return M

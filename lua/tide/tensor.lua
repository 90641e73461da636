-- The Tensor class: a Lua table holding one engine handle (cdata released by
-- refcount through ffi.gc), plus the helpers every op family uses: error
-- checks, 1-based/negative dimension handling, shape arguments, dtypes.
local ffi = require 'ffi'
local C = require 'tide.C'
local errors = require 'tide.errors'

local M = {}
local Tensor = {}          -- methods
M.Tensor = Tensor
M.api = {}                 -- functions that go into the `tide` table

local mt = { __name = 'tide.Tensor' }
M.mt = mt

-- dtypes -------------------------------------------------------------------

local dtype_code = {
  f32 = C.TIDE_F32, f64 = C.TIDE_F64, bf16 = C.TIDE_BF16, f16 = C.TIDE_F16,
  i32 = C.TIDE_I32, i64 = C.TIDE_I64, u8 = C.TIDE_U8, bool = C.TIDE_BOOL,
  u16 = C.TIDE_U16,
}
-- the names users bring from PyTorch
local dtype_alias = {
  float32 = 'f32', float = 'f32', float64 = 'f64', double = 'f64',
  bfloat16 = 'bf16', float16 = 'f16', half = 'f16', int32 = 'i32', int = 'i32',
  int64 = 'i64', long = 'i64', uint8 = 'u8', byte = 'u8', uint16 = 'u16',
}
local dtype_name = {}
for name, code in pairs(dtype_code) do dtype_name[tonumber(code)] = name end
M.dtype_code, M.dtype_name = dtype_code, dtype_name

-- Returns the dtype code for a name such as 'f32' (or an alias like 'float32').
function M.dtype(name, level)
  local code = dtype_code[name] or dtype_code[dtype_alias[name] or false]
  if not code then
    error(("unknown dtype %s (expected one of f32, f64, bf16, f16, i32, i64, u8, bool, u16)")
      :format(tostring(name)), (level or 2) + 1)
  end
  return code
end

function M.is_float_code(code) return code <= 3 end

-- errors --------------------------------------------------------------------

-- Raises the engine's last error at `level` (default: the caller of the method
-- that called check) when rc is not 0.
local function check(rc, level)
  if rc ~= 0 then errors.raise(level or 3) end
end
M.check = check

-- handles and memory ----------------------------------------------------------

-- Tensor (and tokenizer) memory lives outside the Lua heap, so Lua's GC
-- cannot see it grow, and a dropped tensor is freed only when its handle is
-- collected. Every new engine object passes here: when the engine's live
-- bytes have grown past a threshold, collect, then set the next threshold
-- from what survived (twice it, as Lua's own pause, and at least gc_step
-- above it), so garbage never holds more than max(live, gc_step) bytes.
local gc_step = 64 * 1024 * 1024
local gc_threshold = gc_step
local release = C.tide_tensor_release

-- Device memory has its own threshold, paced the same way: a loop that
-- makes CUDA temporaries frees them as the device fills, not the Lua heap.
local dev_step = 256 * 1024 * 1024
local dev_threshold = dev_step
local function pace()
  if C.tide_mem_live_bytes() > gc_threshold then
    collectgarbage('collect')
    local live = tonumber(C.tide_mem_live_bytes())
    gc_threshold = math.max(2 * live, live + gc_step)
  end
  if C.tide_cuda_live_bytes() > dev_threshold then
    collectgarbage('collect')
    local live = tonumber(C.tide_cuda_live_bytes())
    dev_threshold = math.max(2 * live, live + dev_step)
  end
end
M.pace = pace

-- The GC pacer's step in bytes (default 64 MiB): memory freed by Lua's GC
-- may wait until the engine has grown by this much (or doubled).
function M.api.set_gc_step(bytes)
  if type(bytes) ~= 'number' or bytes < 0 or bytes ~= bytes then
    error('set_gc_step: expected a number of bytes >= 0, got ' .. tostring(bytes), 2)
  end
  gc_step = bytes
  gc_threshold = math.max(2 * tonumber(C.tide_mem_live_bytes()), tonumber(C.tide_mem_live_bytes()) + gc_step)
end

local function wrap(ptr)
  local t = setmetatable({ _c = ffi.gc(ptr, release) }, mt)
  pace()
  -- Ctrl-C: hooks never fire inside JIT-compiled loops, but every op passes here
  if C.tide_interrupt_take() ~= 0 then error('interrupted', 3) end
  return t
end
M.wrap = wrap

-- scratch output slots: every call reads them right after it returns
local out1 = ffi.new('tide_tensor*[1]')
local out2 = ffi.new('tide_tensor*[1]')
M.out1, M.out2 = out1, out2

-- Calls fn(args..., out1) and returns the new tensor.
function M.call(fn, ...)
  local rc = fn(...)
  -- out of device memory: garbage tensors may hold it; collect and try once more
  if rc ~= 0 and C.tide_cuda_live_bytes() > 0 and C.tide_last_error_is_oom() ~= 0 then
    collectgarbage('collect')
    collectgarbage('collect')
    rc = fn(...)
  end
  check(rc, 3)
  return wrap(out1[0])
end

local function is_tensor(x) return getmetatable(x) == mt end
M.is_tensor = is_tensor

-- Returns the engine handle of x or raises a clear error naming `what`.
function M.handle(x, what, level)
  if getmetatable(x) ~= mt then
    error(("%s: expected a tensor, got %s"):format(what, type(x)), (level or 2) + 1)
  end
  return x._c
end

-- dimensions -------------------------------------------------------------------

-- Converts a 1-based or negative dimension of a `ndim`-d tensor to 0-based.
-- `extra` widens the range (unsqueeze accepts ndim + 1 positions).
local function dim0(d, ndim, what, extra, level)
  local n = ndim + (extra or 0)
  if n == 0 then n = 1 end
  if type(d) ~= 'number' or d % 1 ~= 0 or d == 0 or d > n or d < -n then
    error(("%s: dimension %s out of range for a %d-d tensor (expected 1..%d or -%d..-1)")
      :format(what, tostring(d), ndim, n, n), (level or 2) + 1)
  end
  if d < 0 then d = d + n + 1 end
  return d - 1
end
M.dim0 = dim0

-- shapes ----------------------------------------------------------------------

local shape_buf = ffi.new('int64_t[8]')
M.shape_buf = shape_buf

-- ops where -1 means "infer this size"
local infer_ok = { view = true, reshape = true, expand = true }

-- Reads a shape given as varargs (2, 3) or a table {2, 3}; a trailing table
-- without array part is the options table. Returns ndim, shape list, opts.
function M.parse_shape(what, level, ...)
  local n = select('#', ...)
  local first = ...
  local opts
  local dims
  if n >= 1 and type(first) == 'table' and not is_tensor(first) and (first[1] ~= nil or next(first) == nil) and n <= 2 then
    dims = first
    opts = select(2, ...)
  else
    dims = {}
    for i = 1, n do
      local v = select(i, ...)
      if type(v) == 'table' and i == n and not is_tensor(v) then opts = v
      else dims[#dims + 1] = v end
    end
  end
  if #dims > 8 then error(what .. ': at most 8 dimensions, got ' .. #dims, level + 1) end
  for i, v in ipairs(dims) do
    if type(v) ~= 'number' or v % 1 ~= 0 then
      error(("%s: size %d must be an integer, got %s"):format(what, i, tostring(v)), level + 1)
    end
    if v < 0 and not (v == -1 and infer_ok[what]) then
      error(("%s: negative size %d at dimension %d"):format(what, v, i), level + 1)
    end
    shape_buf[i - 1] = v
  end
  if opts ~= nil and type(opts) ~= 'table' then
    error(what .. ': options must be a table, got ' .. type(opts), level + 1)
  end
  return #dims, dims, opts or {}
end

local function opt_dtype(opts, default, level)
  if opts.dtype == nil then return default end
  return M.dtype(opts.dtype, level + 1)
end
M.opt_dtype = opt_dtype

-- devices -----------------------------------------------------------------------

local CPU = -1  -- the engine's device code for the CPU; n >= 0 is cuda:n

-- The device code for a name as PyTorch spells it: 'cpu', 'cuda' (cuda:0) or
-- 'cuda:N'. Any other value is an error naming it; a well-formed name the
-- build cannot serve (no CUDA allocator yet) fails later, in the engine.
function M.device_code(d, what, level)
  if d == 'cpu' then return CPU end
  if d == 'cuda' then return 0 end
  local n = type(d) == 'string' and d:match('^cuda:(%d+)$')
  if n and tonumber(n) < 2 ^ 31 then return tonumber(n) end
  error(("%s: unknown device %s (expected 'cpu', 'cuda' or 'cuda:N')")
    :format(what, type(d) == 'string' and ("'" .. d .. "'") or tostring(d)), (level or 2) + 1)
end

-- The device name of a code: 'cpu' or 'cuda:N' (what t.device returns).
function M.device_name(code)
  return code < 0 and 'cpu' or ('cuda:' .. tonumber(code))
end

-- opts.device as a device code, or default (the CPU when not given).
function M.opt_device(opts, what, level, default)
  if opts.device == nil then return default or CPU end
  local code = M.device_code(opts.device, what, level + 1)
  return code
end

-- metatable -------------------------------------------------------------------

-- Fields a tensor may hold that read as nil when unset (PyTorch's x.grad is
-- None); any other unknown name is a mistake (model(ids).logits on a bare
-- tensor), so it is an error naming the field rather than a nil found far away.
local nil_fields = { grad = true, requires_grad = true, _node = true }
M.nil_fields = nil_fields

mt.__index = function(t, k)
  local m = Tensor[k]
  if m ~= nil then return m end
  -- t.device is a property, as in PyTorch: 'cpu' or 'cuda:N'
  if k == 'device' then return M.device_name(t._c.device) end
  if type(k) == 'number' then return t:select(1, k) end
  if nil_fields[k] then return nil end
  local c = rawget(t, '_c')
  local where = c and ('a Tensor of shape [' .. table.concat(t:shape(), ', ') .. '] (' .. dtype_name[c.dtype] .. ')') or 'a Tensor'
  error(("'%s' is not a field or method of a Tensor: this value is %s"):format(tostring(k), where), 2)
end

mt.__newindex = function(t, k, v)
  if type(k) == 'number' then
    local dst = t:select(1, k)
    if is_tensor(v) then dst:copy_(v) else dst:fill_(v) end
    return
  end
  rawset(t, k, v)
end

-- queries ----------------------------------------------------------------------

function Tensor:shape()
  local c = self._c
  local s = {}
  for i = 0, c.ndim - 1 do s[i + 1] = tonumber(c.shape[i]) end
  return s
end

function Tensor:size(d)
  if d == nil then return self:shape() end
  local c = self._c
  return tonumber(c.shape[dim0(d, c.ndim, 'size')])
end

function Tensor:stride(d)
  local c = self._c
  if d ~= nil then return tonumber(c.stride[dim0(d, c.ndim, 'stride')]) end
  local s = {}
  for i = 0, c.ndim - 1 do s[i + 1] = tonumber(c.stride[i]) end
  return s
end

function Tensor:dim() return tonumber(self._c.ndim) end
Tensor.ndim = Tensor.dim
function Tensor:numel() return tonumber(self._c.numel) end
function Tensor:dtype() return dtype_name[self._c.dtype] end
function Tensor:is_contiguous() return C.tide_is_contiguous(self._c) ~= 0 end
function Tensor:is_floating_point() return self._c.dtype <= 3 end
function Tensor:element_size() return tonumber(C.tide_dtype_size(self._c.dtype)) end
function Tensor:storage_offset() return tonumber(self._c.offset) end

-- element access ------------------------------------------------------------------

-- A contiguous f64 (floats) or i64 (integers) copy whose elements Lua can
-- read: a tensor on another device is first brought to the host, so Lua
-- never reads device memory (a CPU tensor is read where it is).
local function readable(t)
  if t._c.device ~= CPU then t = t:cpu() end
  local c = t._c
  local code = c.dtype <= 3 and C.TIDE_F64 or C.TIDE_I64
  local r = t
  if c.dtype ~= code or C.tide_is_contiguous(c) == 0 then
    check(C.tide_cast(c, code, out1), 3)
    r = wrap(out1[0])
  end
  -- a NaN whose bits LuaJIT would read as a tagged value (an all-0xFF f32,
  -- say) becomes the canonical NaN, in a copy when r is the caller's tensor
  if code == C.TIDE_F64 and C.tide_f64_odd_nans(r._c, 0) == 1 then
    if r == t then r = t:clone() end
    C.tide_f64_odd_nans(r._c, 1)
  end
  local ptr = ffi.cast(code == C.TIDE_F64 and 'double*' or 'int64_t*', r._c.data)
  return r, ptr, code == C.TIDE_F64
end
M.readable = readable

local function to_lua(ptr, i, is_float, dt)
  local v = ptr[i]
  if is_float then return v end
  if dt == C.TIDE_BOOL then return v ~= 0 end
  return tonumber(v)
end

function Tensor:item()
  local c = self._c
  if c.numel ~= 1 then
    error(("item: the tensor has %d elements; item() needs exactly one"):format(tonumber(c.numel)), 2)
  end
  local _, ptr, f = readable(self)
  return to_lua(ptr, 0, f, c.dtype)
end

function Tensor:tolist()
  local c = self._c
  local keep, ptr, f = readable(self)
  local dt, nd = c.dtype, c.ndim
  if nd == 0 then return to_lua(ptr, 0, f, dt) end
  local shape = self:shape()
  local pos = 0
  local function build(d)
    local out = {}
    if d == nd then
      for i = 1, shape[d] do out[i] = to_lua(ptr, pos, f, dt); pos = pos + 1 end
    else
      for i = 1, shape[d] do out[i] = build(d + 1) end
    end
    return out
  end
  local res = build(1)
  local _ = keep  -- keep the readable copy alive while ptr is in use
  return res
end

-- creation ---------------------------------------------------------------------------

local api = M.api

function api.empty(...)
  local nd, _, opts = M.parse_shape('empty', 2, ...)
  return M.call(C.tide_empty, opt_dtype(opts, C.TIDE_F32, 2), nd, shape_buf, M.opt_device(opts, 'empty', 2), out1)
end

local function filled(what, value, ...)
  local nd, _, opts = M.parse_shape(what, 3, ...)
  return M.call(C.tide_full, opt_dtype(opts, C.TIDE_F32, 3), nd, shape_buf, value, M.opt_device(opts, what, 2), out1)
end
function api.zeros(...) return filled('zeros', 0, ...) end
function api.ones(...) return filled('ones', 1, ...) end

-- tide.full({2, 3}, 7) or tide.full({2, 3}, 7, {dtype='i64'})
function api.full(shape, value, opts)
  if type(shape) ~= 'table' then error('full: expected a shape table such as {2, 3}', 2) end
  if type(value) ~= 'number' and type(value) ~= 'boolean' then
    error('full: fill value must be a number, got ' .. type(value), 2)
  end
  -- the fill value picks the dtype, as in torch.full: bool, i64 or f32
  local default = type(value) == 'boolean' and C.TIDE_BOOL or (value % 1 == 0 and C.TIDE_I64 or C.TIDE_F32)
  if type(value) == 'boolean' then value = value and 1 or 0 end
  local nd = M.parse_shape('full', 2, shape)
  opts = opts or {}
  return M.call(C.tide_full, opt_dtype(opts, default, 2), nd, shape_buf, value, M.opt_device(opts, 'full', 2), out1)
end

local function like(what, t, value, opts)
  local c = M.handle(t, what, 3)
  opts = opts or {}
  local dt = opt_dtype(opts, c.dtype, 3)
  local r = M.call(C.tide_empty, dt, c.ndim, c.shape, M.opt_device(opts, what, 2, c.device), out1)
  check(C.tide_fill_(r._c, value), 3)
  return r
end
function api.zeros_like(t, opts) return like('zeros_like', t, 0, opts) end
function api.ones_like(t, opts) return like('ones_like', t, 1, opts) end
function api.full_like(t, v, opts) return like('full_like', t, v, opts) end
function api.empty_like(t, opts)
  local c = M.handle(t, 'empty_like', 2)
  opts = opts or {}
  return M.call(C.tide_empty, opt_dtype(opts, c.dtype, 2), c.ndim, c.shape, M.opt_device(opts, 'empty_like', 2, c.device), out1)
end

-- tide.arange(n), tide.arange(start, stop[, step][, opts]): integers give
-- i64 like torch.arange, any fractional argument gives f32.
function api.arange(a, b, c, d)
  local opts
  if type(d) == 'table' then opts = d; d = nil end
  if type(c) == 'table' then opts = c; c = nil end
  if type(b) == 'table' then opts = b; b = nil end
  local start, stop, step
  if b == nil then start, stop, step = 0, a, 1 else start, stop, step = a, b, c or 1 end
  for _, v in ipairs { start, stop, step } do
    if type(v) ~= 'number' or v ~= v or v == math.huge or v == -math.huge then
      error(('arange: arguments must be finite numbers, got start=%s, stop=%s, step=%s')
        :format(tostring(start), tostring(stop), tostring(step)), 2)
    end
  end
  if step == 0 then error('arange: step must be nonzero', 2) end
  local n = math.ceil((stop - start) / step)
  if n ~= n or n < 0 then n = 0 end
  if n > 2 ^ 59 then
    error(('arange: %.6g elements from %s to %s by %s are too many (at most 2^59)')
      :format(n, tostring(start), tostring(stop), tostring(step)), 2)
  end
  local integral = start % 1 == 0 and stop % 1 == 0 and step % 1 == 0
  opts = opts or {}
  local dt = opt_dtype(opts, integral and C.TIDE_I64 or C.TIDE_F32, 2)
  return M.call(C.tide_arange, start, step, n, dt, M.opt_device(opts, 'arange', 2), out1)
end

-- Walks a nested table: returns shape and a flat list, checking it is ragged-free.
-- Errors unless v's keys are exactly 1..#v (a hole or a named key would be
-- dropped silently by #v and ipairs).
local function check_list(v, what, path)
  local n, count = #v, 0
  for k in pairs(v) do
    if type(k) ~= 'number' or k % 1 ~= 0 or k < 1 or k > n then
      if type(k) == 'number' and k % 1 == 0 and k > n then
        error(("%s: %s has a hole: %s[%d] is missing but %s[%d] is set"):format(what, path, path, n + 1, path, k), 0)
      end
      error(("%s: %s has the key %s; expected a list indexed 1..n"):format(what, path, type(k) == 'string' and ("'" .. k .. "'") or tostring(k)), 0)
    end
    count = count + 1
  end
  if count ~= n then error(("%s: %s has a hole (%d elements set, length %d)"):format(what, path, count, n), 0) end
end

local function nested_shape(x, what)
  local shape = {}
  local probe = x
  -- the dimension limit is checked as the shape grows: a table holding
  -- itself (t[1] = t) is infinitely deep
  while type(probe) == 'table' and not is_tensor(probe) do
    if #shape == 8 then
      error(what .. ': at most 8 dimensions (is the table nested in itself?)', 0)
    end
    shape[#shape + 1] = #probe
    if #probe == 0 then break end
    probe = probe[1]
  end
  local flat, n = {}, 0
  local is_float, all_bool = false, true
  local function walk(v, d, path)
    if d > #shape then
      local tv = type(v)
      if tv == 'boolean' then v = v and 1 or 0
      elseif tv == 'number' then
        all_bool = false
        -- integers past int64's range are floats, as Python's 1e30 is
        if v % 1 ~= 0 or v ~= v or v >= 2 ^ 63 or v < -2 ^ 63 then is_float = true end
      elseif is_tensor(v) and v:numel() == 1 then
        all_bool = false
        v = v:item(); if type(v) == 'boolean' then v = v and 1 or 0 end
        is_float = true
      else
        error(("%s: element at %s is a %s, expected a number or boolean"):format(what, path, tv), 0)
      end
      n = n + 1
      flat[n] = v
      return
    end
    if type(v) ~= 'table' or is_tensor(v) then
      error(("%s: expected a list at %s (the data is ragged)"):format(what, path), 0)
    end
    check_list(v, what, path)
    if #v ~= shape[d] then
      error(("%s: ragged nested table: %s has %d elements, expected %d"):format(what, path, #v, shape[d]), 0)
    end
    for i = 1, #v do walk(v[i], d + 1, path .. '[' .. i .. ']') end
  end
  walk(x, 1, 'data')
  return shape, flat, is_float, all_bool and n > 0
end

-- Moves a tensor just built on the host to device dev (itself when dev is the CPU).
local function to_device(t, dev)
  if dev == CPU then return t end
  return M.call(C.tide_to_device, t._c, dev, out1)
end

-- tide.tensor(nested_table_or_number, {dtype=..., device=...}): integers give
-- i64 and booleans give bool like torch.tensor; anything else f32. The
-- elements are written on the host, then moved to the device.
function api.tensor(data, opts)
  opts = opts or {}
  if type(opts) ~= 'table' then error('tensor: options must be a table', 2) end
  if is_tensor(data) then
    local dt = opt_dtype(opts, data._c.dtype, 2)
    local dev = M.opt_device(opts, 'tensor', 2, data._c.device)
    check(C.tide_cast(data._c, dt, out1), 3)
    return to_device(wrap(out1[0]), dev)
  end
  local shape, flat, is_float, all_bool
  if type(data) == 'number' or type(data) == 'boolean' then
    shape = {}
    all_bool = type(data) == 'boolean'
    flat = { type(data) == 'boolean' and (data and 1 or 0) or data }
    is_float = type(data) == 'number' and (data % 1 ~= 0 or data ~= data or data >= 2 ^ 63 or data < -2 ^ 63)
  elseif type(data) == 'table' then
    local ok
    ok, shape, flat, is_float, all_bool = pcall(nested_shape, data, 'tensor')
    if not ok then error(shape, 2) end
  else
    error('tensor: expected a number, boolean or nested table, got ' .. type(data), 2)
  end
  local default = is_float and C.TIDE_F32 or (all_bool and C.TIDE_BOOL or C.TIDE_I64)
  local dt = opt_dtype(opts, default, 2)
  local dev = M.opt_device(opts, 'tensor', 2)
  for i, v in ipairs(shape) do shape_buf[i - 1] = v end
  -- fill an f64 buffer on the host (exact for integers up to 2^53), then cast
  local staging
  if default == C.TIDE_I64 and dt == C.TIDE_I64 then
    staging = M.call(C.tide_empty, C.TIDE_I64, #shape, shape_buf, CPU, out1)
    local p = ffi.cast('int64_t*', staging._c.data)
    for i = 1, #flat do p[i - 1] = flat[i] end
    return to_device(staging, dev)
  end
  staging = M.call(C.tide_empty, C.TIDE_F64, #shape, shape_buf, CPU, out1)
  local p = ffi.cast('double*', staging._c.data)
  for i = 1, #flat do p[i - 1] = flat[i] end
  if dt == C.TIDE_F64 then return to_device(staging, dev) end
  check(C.tide_cast(staging._c, dt, out1), 3)
  return to_device(wrap(out1[0]), dev)
end

-- views --------------------------------------------------------------------------

local perm_buf = ffi.new('int32_t[8]')

function Tensor:view(...)
  local nd = M.parse_shape('view', 2, ...)
  return M.call(C.tide_view, self._c, nd, shape_buf, out1)
end

function Tensor:reshape(...)
  local nd = M.parse_shape('reshape', 2, ...)
  return M.call(C.tide_reshape, self._c, nd, shape_buf, out1)
end

function Tensor:view_as(other) return self:view(other:shape()) end
function Tensor:reshape_as(other) return self:reshape(other:shape()) end

function Tensor:flatten(s, e)
  local nd = self:dim()
  if nd == 0 then return self:reshape(1) end
  local a = dim0(s or 1, nd, 'flatten')
  local b = dim0(e or -1, nd, 'flatten')
  if a > b then error('flatten: start dimension comes after end dimension', 2) end
  local shape, out = self:shape(), {}
  for i = 1, a do out[#out + 1] = shape[i] end
  local p = 1
  for i = a + 1, b + 1 do p = p * shape[i] end
  out[#out + 1] = p
  for i = b + 2, nd do out[#out + 1] = shape[i] end
  return self:reshape(out)
end

function Tensor:transpose(d0, d1)
  local c = self._c
  if d0 == nil and d1 == nil then
    if c.ndim ~= 2 then error('transpose: with no dimensions given, the tensor must be 2-d', 2) end
    d0, d1 = 1, 2
  end
  local nd = c.ndim
  return M.call(C.tide_transpose, c, dim0(d0, nd, 'transpose'), dim0(d1, nd, 'transpose'), out1)
end

-- t:t(): the matrix transpose (2-d; 0-d and 1-d unchanged)
function Tensor:t()
  local nd = self._c.ndim
  if nd > 2 then error('t: expects a tensor with at most 2 dimensions; use transpose(d0, d1)', 2) end
  if nd < 2 then return self end
  return self:transpose(1, 2)
end

function Tensor:permute(...)
  local dims = ...
  if type(dims) ~= 'table' then dims = { ... } end
  local c = self._c
  if #dims ~= c.ndim then
    error(("permute: %d dimensions given for a %d-d tensor"):format(#dims, c.ndim), 2)
  end
  for i, d in ipairs(dims) do perm_buf[i - 1] = dim0(d, c.ndim, 'permute') end
  return M.call(C.tide_permute, c, perm_buf, out1)
end

-- narrow(dim, start, length): start is 1-based (negative counts from the end)
function Tensor:narrow(d, start, length)
  local c = self._c
  local d0 = dim0(d, c.ndim, 'narrow')
  local size = tonumber(c.shape[d0])
  if type(start) ~= 'number' or type(length) ~= 'number' or start % 1 ~= 0 or length % 1 ~= 0 then
    error('narrow: start and length must be integers', 2)
  end
  if start < 0 then start = start + size + 1 end
  -- checked here too: sizes past 2^53 lose precision on the way to C
  if start < 1 or start > size + 1 or length < 0 or length > size - start + 1 then
    error(("narrow: elements %.0f..%.0f are outside dimension %d of size %d")
      :format(start, start + length - 1, d, size), 2)
  end
  return M.call(C.tide_narrow, c, d0, start - 1, length, out1)
end

-- select(dim, index): index is 1-based, negative counts from the end
function Tensor:select(d, index)
  local c = self._c
  local d0 = dim0(d, c.ndim, 'select')
  local size = tonumber(c.shape[d0])
  if type(index) ~= 'number' or index % 1 ~= 0 then
    error('select: index must be an integer, got ' .. tostring(index), 2)
  end
  if index == 0 or index > size or index < -size then
    error(("select: index %d out of range for dimension %d of size %d"):format(index, d, size), 2)
  end
  if index < 0 then index = index + size + 1 end
  return M.call(C.tide_select, c, d0, index - 1, out1)
end

function Tensor:expand(...)
  local nd = M.parse_shape('expand', 2, ...)
  return M.call(C.tide_expand, self._c, nd, shape_buf, out1)
end
function Tensor:expand_as(other) return self:expand(other:shape()) end

function Tensor:squeeze(d)
  local c = self._c
  local d0 = -1
  if d ~= nil then d0 = dim0(d, c.ndim, 'squeeze') end
  return M.call(C.tide_squeeze, c, d0, out1)
end

function Tensor:unsqueeze(d)
  local c = self._c
  return M.call(C.tide_unsqueeze, c, dim0(d, c.ndim, 'unsqueeze', 1), out1)
end

function Tensor:contiguous()
  if C.tide_is_contiguous(self._c) ~= 0 then return self end
  return M.call(C.tide_contiguous, self._c, out1)
end

-- copies and dtypes -----------------------------------------------------------------

function Tensor:clone() return M.call(C.tide_cast, self._c, self._c.dtype, out1) end

-- t:to(dtype), t:to(device), t:to(device, dtype) or t:to(other) (other's
-- device and dtype), as PyTorch's Tensor.to: t itself when nothing changes,
-- else a converted copy (a dtype is converted on t's device, then moved).
function Tensor:to(a, b)
  local c = self._c
  local dev, code = c.device, c.dtype
  for i = 1, b == nil and 1 or 2 do
    local x = i == 1 and a or b
    if is_tensor(x) then
      dev, code = x._c.device, x._c.dtype
    elseif x == 'cpu' or (type(x) == 'string' and x:match('^cuda')) then
      dev = M.device_code(x, 'to', 2)
    else
      code = M.dtype(x, 2)
    end
  end
  local r = self
  if code ~= c.dtype then
    check(C.tide_cast(c, code, out1), 3)
    r = wrap(out1[0])
  end
  if dev ~= c.device then
    check(C.tide_to_device(r._c, dev, out1), 3)
    r = wrap(out1[0])
  end
  return r
end

-- t itself when on the CPU, else a copy there (the host transfer before Lua reads elements).
function Tensor:cpu()
  if self._c.device == CPU then return self end
  return M.call(C.tide_to_device, self._c, CPU, out1)
end
Tensor.type = function(self, dtype)
  if dtype == nil then return self:dtype() end
  return self:to(dtype)
end
for name, dt in pairs { float = 'f32', double = 'f64', half = 'f16', bfloat16 = 'bf16',
                        int = 'i32', long = 'i64', byte = 'u8', bool = 'bool' } do
  Tensor[name] = function(self) return self:to(dt) end
end

function Tensor:copy_(src)
  local s = src
  if not is_tensor(s) then s = api.tensor(src) end
  -- across devices, as torch's copy_: the source moves to the destination's device first
  if s._c.device ~= self._c.device then s = s:to(M.device_name(self._c.device)) end
  check(C.tide_copy_(self._c, s._c))
  return self
end

function Tensor:fill_(v)
  if type(v) == 'boolean' then v = v and 1 or 0 end
  if is_tensor(v) then v = v:item() end
  if type(v) ~= 'number' then error('fill_: value must be a number, got ' .. type(v), 2) end
  check(C.tide_fill_(self._c, v))
  return self
end
function Tensor:zero_() return self:fill_(0) end

function Tensor:data_ptr() return self._c.data end

return M

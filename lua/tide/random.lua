-- Random numbers: generators, random constructors, in-place fills and
-- sampling. A generator is a Philox stream (seed, offset) held in a Lua-owned
-- FFI struct and passed to every C call, so the engine keeps no hidden state
-- and get_state/set_state resume a run exactly. The stream layout (which
-- counter feeds which element) is a contract documented in runtime/philox.h.
--
--   tide.manual_seed(1234)
--   local x = tide.rand(2, 3)                         -- uniform [0, 1), f32
--   local g = tide.Generator(7)
--   local y = tide.randn({4}, {dtype = 'f64', generator = g})
--   local i = tide.randint(0, 10, {5})                -- i64 in [0, 10)
--   local s = probs:multinomial(3, {replacement = true})
local ffi = require 'ffi'
local C = require 'tide.C'
local errors = require 'tide.errors'


local M = {}

-- PyTorch's default seed (default_rng_seed_val), so an unseeded program draws
-- the same numbers on every run, as it does in PyTorch (the streams differ).
M.DEFAULT_SEED = 67280421310721

local TWO53 = 2 ^ 53
local TWO63 = 2 ^ 63
local u64_t, i64_t = ffi.typeof('uint64_t'), ffi.typeof('int64_t')

-- A seed or offset as uint64: integers up to 2^53 in magnitude (negatives wrap
-- to 2^64 + n as in torch.manual_seed), or an int64/uint64 cdata for any
-- 64-bit value.
local function to_u64(v, what, name, level)
  if type(v) == 'number' then
    if v % 1 == 0 and v >= -TWO53 and v <= TWO53 then
      return ffi.cast(u64_t, ffi.cast(i64_t, v))
    end
  elseif type(v) == 'cdata' and (ffi.istype(u64_t, v) or ffi.istype(i64_t, v)) then
    return ffi.cast(u64_t, v)
  end
  error(("%s: %s must be an integer (a number up to 2^53 in magnitude, or a 64-bit integer cdata such as 0x123ULL), got %s")
    :format(what, name, tostring(v)), level + 1)
end

-- A uint64 as a Lua number when exact (<= 2^53), else as the uint64 cdata.
local function from_u64(v)
  if v <= u64_t(TWO53) then return tonumber(v) end
  return u64_t(v)
end

-- An integer bound for randint: numbers in [-2^63, 2^63) or int64/uint64 cdata.
local function to_i64(v, what, name, level)
  if type(v) == 'number' then
    if v % 1 == 0 and v >= -TWO63 and v < TWO63 then return v end
  elseif type(v) == 'cdata' and ffi.istype(i64_t, v) then
    return v
  elseif type(v) == 'cdata' and ffi.istype(u64_t, v) and v < u64_t(2) ^ 63 then
    return ffi.cast(i64_t, v)
  end
  error(("%s: %s must be an integer, got %s"):format(what, name, tostring(v)), level + 1)
end

-- Generators ------------------------------------------------------------------

local Generator = { __name = 'tide.Generator' }
Generator.__index = Generator
M.Generator = Generator

local function new_generator(seed, level)
  local self = setmetatable({ _g = ffi.new('tide_generator') }, Generator)
  self._g.seed = to_u64(seed == nil and M.DEFAULT_SEED or seed, 'Generator', 'seed', level + 1)
  self._g.offset = 0
  return self
end

local function check_self(self, what)
  if getmetatable(self) ~= Generator then
    error(what .. ': call it as a method, generator:' .. what .. '(...)', 3)
  end
end

-- Reseeds and restarts the stream (offset 0); returns the generator.
function Generator:manual_seed(seed)
  check_self(self, 'manual_seed')
  self._g.seed = to_u64(seed, 'manual_seed', 'seed', 2)
  self._g.offset = 0
  return self
end

-- The seed the stream was started from (unlike torch.seed, it does not reseed).
function Generator:seed()
  check_self(self, 'seed')
  return from_u64(self._g.seed)
end
Generator.initial_seed = Generator.seed

-- {seed=, offset=}: everything needed to resume the stream with set_state.
function Generator:get_state()
  check_self(self, 'get_state')
  return { seed = from_u64(self._g.seed), offset = from_u64(self._g.offset) }
end

function Generator:set_state(s)
  check_self(self, 'set_state')
  if type(s) ~= 'table' then
    error('set_state: expected a table {seed=, offset=} as returned by get_state, got ' .. type(s), 2)
  end
  local seed = to_u64(s.seed, 'set_state', 'seed', 2)
  local offset = to_u64(s.offset, 'set_state', 'offset', 2)
  self._g.seed, self._g.offset = seed, offset
  return self
end

-- An independent generator at the same point of the same stream.
function Generator:clone()
  check_self(self, 'clone')
  local g = new_generator(0, 2)
  g._g.seed, g._g.offset = self._g.seed, self._g.offset
  return g
end

function Generator:__tostring()
  return ('tide.Generator(seed=%s, offset=%s)'):format(tostring(from_u64(self._g.seed)):gsub('ULL$', ''),
    (tostring(from_u64(self._g.offset)):gsub('ULL$', '')))
end

function M.install(tide, core)
  local Tensor, api = core.Tensor, {}
  local out1, shape_buf = core.out1, core.shape_buf
  local is_tensor = core.is_tensor
  local TIDE_I64 = C.TIDE_I64

  local default = new_generator(nil, 1)
  tide.default_generator = default

  -- Raises the engine's last error under the Lua function's name when rc ~= 0.
  local function ccheck(rc, what, level)
    if rc ~= 0 then
      local msg = errors.message():gsub('^[%w_]+: ', '', 1)
      error(what .. ': ' .. msg, level + 1)
    end
  end

  -- dev: the device code (default the CPU)
  local function new_tensor(dt, nd, shape, what, level, dev)
    ccheck(C.tide_empty(dt, nd, shape, dev or -1, out1), what, level + 1)
    return core.wrap(out1[0])
  end

  local function check_opts(opts, what, level)
    if opts == nil then return {} end
    if type(opts) ~= 'table' or is_tensor(opts) then
      error(what .. ': options must be a table such as {generator=g}, got ' .. type(opts), level + 1)
    end
    return opts
  end

  -- The C generator of opts.generator, or the default one.
  local function gen_of(opts, what, level)
    local g = opts.generator
    if g == nil then return default._g end
    if getmetatable(g) ~= Generator then
      error(what .. ': generator must be a tide.Generator, got ' .. (type(g) == 'table' and 'a table' or type(g)), level + 1)
    end
    return g._g
  end

  local function float_dtype(opts, default_dt, what, level)
    local dt = core.opt_dtype(opts, default_dt, level + 1)
    if not core.is_float_code(dt) then
      error(("%s: dtype must be floating point (f32, f64, bf16, f16), got %s; use randint for integers")
        :format(what, core.dtype_name[tonumber(dt)]), level + 1)
    end
    return dt
  end

  local function number_arg(v, default_v, what, name, level)
    if v == nil then return default_v end
    if type(v) ~= 'number' then
      error(("%s: %s must be a number, got %s"):format(what, name, type(v)), level + 1)
    end
    return v
  end

  -- Splits (a, b, ..., opts) into the leading non-table arguments and a trailing options table.
  local function split_opts(...)
    local n = select('#', ...)
    local last = n > 0 and select(n, ...) or nil
    if type(last) == 'table' and not is_tensor(last) then
      return check_opts(last, '', 1), n - 1, ...
    end
    return {}, n, ...
  end

  -- seeding ---------------------------------------------------------------------

  -- (results go through a local: a tail call would drop the frame error levels count on)
  tide.Generator = function(seed) local g = new_generator(seed, 2); return g end
  tide.is_generator = function(x) return getmetatable(x) == Generator end

  -- Seeds the default generator and restarts its stream; returns it.
  function tide.manual_seed(seed)
    default._g.seed = to_u64(seed, 'manual_seed', 'seed', 2)
    default._g.offset = 0
    return default
  end
  -- The default generator's seed (torch.initial_seed; it never reseeds).
  function tide.seed() return from_u64(default._g.seed) end
  tide.initial_seed = tide.seed
  function tide.get_rng_state() return default:get_state() end
  function tide.set_rng_state(s)
    if type(s) ~= 'table' then
      error('set_rng_state: expected a table {seed=, offset=} as returned by get_rng_state, got ' .. type(s), 2)
    end
    default._g.seed = to_u64(s.seed, 'set_rng_state', 'seed', 2)
    default._g.offset = to_u64(s.offset, 'set_rng_state', 'offset', 2)
  end

  -- constructors -------------------------------------------------------------------

  -- tide.rand(2, 3), tide.rand({2, 3}, {dtype='f64', generator=g}): uniform in [0, 1).
  function api.rand(...)
    local nd, _, opts = core.parse_shape('rand', 2, ...)
    opts = check_opts(opts, 'rand', 2)
    local t = new_tensor(float_dtype(opts, C.TIDE_F32, 'rand', 2), nd, shape_buf, 'rand', 2, core.opt_device(opts, 'rand', 2))
    ccheck(C.tide_rand_(t._c, gen_of(opts, 'rand', 2), 0, 1), 'rand', 2)
    return t
  end

  -- tide.randn(2, 3): standard normal values.
  function api.randn(...)
    local nd, _, opts = core.parse_shape('randn', 2, ...)
    opts = check_opts(opts, 'randn', 2)
    local t = new_tensor(float_dtype(opts, C.TIDE_F32, 'randn', 2), nd, shape_buf, 'randn', 2, core.opt_device(opts, 'randn', 2))
    ccheck(C.tide_randn_(t._c, gen_of(opts, 'randn', 2), 0, 1), 'randn', 2)
    return t
  end

  -- Reads a shape table (or one size) for randint-style signatures into shape_buf.
  local function shape_arg(shape, what, level)
    if type(shape) == 'number' then shape = { shape } end
    if type(shape) ~= 'table' or is_tensor(shape) or (shape[1] == nil and next(shape) ~= nil) then
      error(("%s: expected a shape such as {2, 3}, got %s"):format(what, type(shape) == 'table' and 'an options table' or tostring(shape)), level + 1)
    end
    for i, v in ipairs(shape) do
      if type(v) == 'number' and v < 0 then
        error(("%s: negative size %s at dimension %d"):format(what, tostring(v), i), level + 1)
      end
    end
    return (core.parse_shape(what, level + 1, shape))
  end

  -- tide.randint(low, high, shape[, opts]) or tide.randint(high, shape[, opts]):
  -- integers in [low, high), i64 unless opts.dtype says otherwise.
  function api.randint(a, b, c, d)
    local low, high, shape, opts
    if type(b) == 'table' and not is_tensor(b) then low, high, shape, opts = 0, a, b, c
    else low, high, shape, opts = a, b, c, d end
    if shape == nil then
      error('randint: expected a shape, as in tide.randint(0, 10, {2, 3}) or tide.randint(10, {2, 3})', 2)
    end
    low = to_i64(low, 'randint', 'low', 2)
    high = to_i64(high, 'randint', 'high', 2)
    opts = check_opts(opts, 'randint', 2)
    local nd = shape_arg(shape, 'randint', 2)
    local t = new_tensor(core.opt_dtype(opts, TIDE_I64, 2), nd, shape_buf, 'randint', 2, core.opt_device(opts, 'randint', 2))
    ccheck(C.tide_randint_(t._c, gen_of(opts, 'randint', 2), low, high), 'randint', 2)
    return t
  end

  -- The shape of t into a fresh tensor of dtype dt, on t's device unless opts.device says otherwise.
  local function empty_as(t, dt, what, level, opts)
    local c = t._c
    return new_tensor(dt, c.ndim, c.shape, what, level + 1, core.opt_device(opts, what, level + 1, c.device))
  end

  function api.rand_like(t, opts)
    core.handle(t, 'rand_like', 2)
    opts = check_opts(opts, 'rand_like', 2)
    local r = empty_as(t, float_dtype(opts, t._c.dtype, 'rand_like', 2), 'rand_like', 2, opts)
    ccheck(C.tide_rand_(r._c, gen_of(opts, 'rand_like', 2), 0, 1), 'rand_like', 2)
    return r
  end

  function api.randn_like(t, opts)
    core.handle(t, 'randn_like', 2)
    opts = check_opts(opts, 'randn_like', 2)
    local r = empty_as(t, float_dtype(opts, t._c.dtype, 'randn_like', 2), 'randn_like', 2, opts)
    ccheck(C.tide_randn_(r._c, gen_of(opts, 'randn_like', 2), 0, 1), 'randn_like', 2)
    return r
  end

  -- tide.randint_like(t, high[, opts]) or (t, low, high[, opts]).
  function api.randint_like(t, a, b, c)
    core.handle(t, 'randint_like', 2)
    local low, high, opts
    if b == nil or type(b) == 'table' then low, high, opts = 0, a, b else low, high, opts = a, b, c end
    low = to_i64(low, 'randint_like', 'low', 2)
    high = to_i64(high, 'randint_like', 'high', 2)
    opts = check_opts(opts, 'randint_like', 2)
    local r = empty_as(t, core.opt_dtype(opts, t._c.dtype, 2), 'randint_like', 2, opts)
    ccheck(C.tide_randint_(r._c, gen_of(opts, 'randint_like', 2), low, high), 'randint_like', 2)
    return r
  end

  -- tide.randperm(n[, {dtype=, device=, generator=}]): a random permutation of
  -- 0..n-1 (0-based, i64), by Fisher-Yates in C (tide_randperm_on): n - 1
  -- draws, the same permutation on every device.
  function api.randperm(n, opts)
    if type(n) ~= 'number' or n % 1 ~= 0 or n < 0 then
      error('randperm: n must be a non-negative integer, got ' .. tostring(n), 2)
    end
    opts = check_opts(opts, 'randperm', 2)
    local dt = core.opt_dtype(opts, TIDE_I64, 2)
    local dev = core.opt_device(opts, 'randperm', 2)
    ccheck(C.tide_randperm_on(n, dt, dev, gen_of(opts, 'randperm', 2), out1), 'randperm', 2)
    return core.wrap(out1[0])
  end

  -- tide.multinomial(probs, n[, replacement][, {replacement=, generator=}]):
  -- 0-based i64 category indices, [n] for 1-d weights, [rows, n] for 2-d.
  local function multinomial(probs, n, replacement, opts, what)
    local c = core.handle(probs, what, 3)
    if type(replacement) == 'table' then opts, replacement = replacement, nil end
    opts = check_opts(opts, what, 3)
    if replacement == nil then replacement = opts.replacement end
    if replacement ~= nil and type(replacement) ~= 'boolean' then
      error(what .. ': replacement must be a boolean, got ' .. type(replacement), 3)
    end
    if type(n) ~= 'number' or n % 1 ~= 0 then
      error(what .. ': number of samples must be an integer, got ' .. tostring(n), 3)
    end
    ccheck(C.tide_multinomial(c, n, replacement and 1 or 0, gen_of(opts, what, 3), out1), what, 3)
    return core.wrap(out1[0])
  end
  function api.multinomial(probs, n, replacement, opts)
    local r = multinomial(probs, n, replacement, opts, 'multinomial')
    return r
  end
  function Tensor:multinomial(n, replacement, opts)
    local r = multinomial(self, n, replacement, opts, 'multinomial')
    return r
  end

  -- in-place fills ---------------------------------------------------------------------

  -- t:uniform_(low=0, high=1[, {generator=g}])
  function Tensor:uniform_(...)
    local opts, n, low, high = split_opts(...)
    if n > 2 then error('uniform_: expected (low, high[, opts])', 2) end
    low = number_arg(low, 0, 'uniform_', 'low', 2)
    high = number_arg(high, 1, 'uniform_', 'high', 2)
    ccheck(C.tide_rand_(core.handle(self, 'uniform_', 2), gen_of(opts, 'uniform_', 2), low, high), 'uniform_', 2)
    return self
  end

  -- t:normal_(mean=0, std=1[, {generator=g}])
  function Tensor:normal_(...)
    local opts, n, mean, std = split_opts(...)
    if n > 2 then error('normal_: expected (mean, std[, opts])', 2) end
    mean = number_arg(mean, 0, 'normal_', 'mean', 2)
    std = number_arg(std, 1, 'normal_', 'std', 2)
    ccheck(C.tide_randn_(core.handle(self, 'normal_', 2), gen_of(opts, 'normal_', 2), mean, std), 'normal_', 2)
    return self
  end

  -- What t:random_() draws from with no bounds, as in torch: [0, 2^mantissa]
  -- for floats, the non-negative range of integer types.
  local random_high = { [0] = 2 ^ 24 + 1, 2 ^ 53 + 1, 2 ^ 8 + 1, 2 ^ 11 + 1, 2 ^ 31, i64_t(0x7fffffffffffffffLL), 256, 2, 65536 }

  -- t:random_(low, high), t:random_(high), t:random_(): integers in [low, high) into t.
  function Tensor:random_(...)
    local c = core.handle(self, 'random_', 2)
    local opts, n, a, b = split_opts(...)
    if n > 2 then error('random_: expected ([low,] high[, opts])', 2) end
    local low, high
    if n == 0 then low, high = 0, random_high[tonumber(c.dtype)]
    elseif n == 1 then low, high = 0, a
    else low, high = a, b end
    low = to_i64(low, 'random_', 'low', 2)
    high = to_i64(high, 'random_', 'high', 2)
    ccheck(C.tide_randint_(c, gen_of(opts, 'random_', 2), low, high), 'random_', 2)
    return self
  end

  -- t:bernoulli_(p=0.5[, {generator=g}]): each element 1 with probability p, else 0.
  -- Draws one f64 uniform per element (u < p) in the tensor's logical order.
  function Tensor:bernoulli_(...)
    local c = core.handle(self, 'bernoulli_', 2)
    local opts, n, p = split_opts(...)
    if n > 1 then error('bernoulli_: expected (p[, opts])', 2) end
    p = number_arg(p, 0.5, 'bernoulli_', 'p', 2)
    if not (p >= 0 and p <= 1) then error('bernoulli_: p must be in [0, 1], got ' .. tostring(p), 2) end
    ccheck(C.tide_bernoulli_(c, gen_of(opts, 'bernoulli_', 2), p), 'bernoulli_', 2)
    return self
  end

  for k, v in pairs(api) do
    tide[k] = v
    core.api[k] = v
  end
end

return M

-- tide: the Lua face of the engine. `tide` is the only global a recipe sees;
-- `require 'tide'` returns the same table.
local tide = {}
package.loaded['tide'] = tide

local ffi = require 'ffi'
local C = require 'tide.C'
tide.C = C
local errors = require 'tide.errors'
tide.ffi = ffi
tide.version = ffi.string(C.tide_version())

local core = require 'tide.tensor'
tide.Tensor = core.Tensor
tide.is_tensor = core.is_tensor
for k, v in pairs(core.api) do tide[k] = v end

-- op families add methods to Tensor and functions to tide, and define each
-- op's backward in tide.ops.registry
for _, name in ipairs { 'tide.ops.pointwise', 'tide.ops.reduce', 'tide.ops.linalg',
                        'tide.ops.index', 'tide.ops.views', 'tide.random', 'tide.print' } do
  require(name).install(tide, core)
end
require('tide.json').install(tide)
require('tide.io.safetensors').install(tide)
require('tide.io.hub').install(tide)
-- autograd installs the registry's differentiable forms of the ops above
require('tide.autograd').install(tide, core)
require('tide.functional').install(tide, core)
require('tide.recompute').install(tide, core)
-- after functional: autocast wraps the F ops it converts arguments of
require('tide.amp').install(tide, core)
require('tide.nn').install(tide, core)
require('tide.models.gpt2').install(tide, core)
require('tide.losses').install(tide, core)
require('tide.tokenizer').install(tide, core)
require('tide.tokenizer_train').install(tide, core)
require('tide.data').install(tide)
require('tide.generation.pipeline').install(tide)
tide.optim = require 'tide.optim'

-- 1 to 4 threads per core: more only costs memory (OpenBLAS buffers per thread)
function tide.set_num_threads(n)
  local max = tonumber(C.tide_max_threads())
  if type(n) ~= 'number' or n % 1 ~= 0 or n < 1 or n > max then
    error(('set_num_threads: expected an integer from 1 to %d (4 per core), got %s'):format(max, tostring(n)), 2)
  end
  if C.tide_set_num_threads(n) ~= 0 then errors.raise(2) end
end
function tide.get_num_threads() return tonumber(C.tide_get_num_threads()) end

-- memory the engine holds right now, in bytes, and its high-water mark
function tide.memory()
  local s = ffi.new('tide_mem_stats')
  C.tide_mem_get_stats(s)
  return { live = tonumber(s.live_bytes), peak = tonumber(s.peak_bytes),
           allocated = tonumber(s.total_allocated), allocations = tonumber(s.allocations),
           cached = tonumber(s.cached_bytes), cache_limit = tonumber(s.cache_limit) }
end

-- Freed blocks of 1 MiB and more are cached for reuse (fresh pages fault on
-- first touch); these give the cache back or bound it, in bytes.
function tide.empty_cache() C.tide_mem_empty_cache() end
function tide.set_cache_limit(bytes)
  if type(bytes) ~= 'number' then error('set_cache_limit: expected a number of bytes', 2) end
  C.tide_mem_set_cache_limit(bytes)
end

-- Seconds on a monotonic wall clock (os.clock counts CPU time of all threads).
ffi.cdef [[
  struct tide_timespec { long tv_sec; long tv_nsec; };
  int clock_gettime(int clk, struct tide_timespec *ts);
]]
local ts = ffi.new('struct tide_timespec')
function tide.clock()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

tide.cuda = require 'tide.cuda'
tide.dist = require 'tide.dist'
tide.train = require 'tide.train'

tide.args = tide.args or {}
return tide

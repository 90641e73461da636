-- tide: the Lua face of the engine. `tide` is the only global a recipe sees;
-- `require 'tide'` returns the same table.
local tide = {}
package.loaded['tide'] = tide

local ffi = require 'ffi'
local C = require 'tide.C'
tide.C = C
tide.ffi = ffi
tide.version = ffi.string(C.tide_version())

local core = require 'tide.tensor'
tide.Tensor = core.Tensor
tide.is_tensor = core.is_tensor
for k, v in pairs(core.api) do tide[k] = v end

-- op families add methods to Tensor and functions to tide
for _, name in ipairs { 'tide.ops.pointwise', 'tide.ops.reduce', 'tide.ops.linalg',
                        'tide.ops.index', 'tide.random', 'tide.print' } do
  local ok, mod = pcall(require, name)
  if ok then
    if type(mod) == 'table' and mod.install then mod.install(tide, core) end
  elseif not tostring(mod):find("module '" .. name .. "' not found", 1, true) then
    error(mod, 0)
  end
end

function tide.set_num_threads(n)
  if type(n) ~= 'number' or n < 1 or n % 1 ~= 0 then
    error('set_num_threads: expected a positive integer, got ' .. tostring(n), 2)
  end
  C.tide_set_num_threads(n)
end
function tide.get_num_threads() return tonumber(C.tide_get_num_threads()) end

-- memory the engine holds right now, in bytes, and its high-water mark
function tide.memory()
  local s = ffi.new('tide_mem_stats')
  C.tide_mem_get_stats(s)
  return { live = tonumber(s.live_bytes), peak = tonumber(s.peak_bytes),
           allocated = tonumber(s.total_allocated), allocations = tonumber(s.allocations) }
end

tide.cuda = {
  device_count = function() return tonumber(C.tide_cuda_device_count()) end,
  is_available = function() return C.tide_cuda_device_count() > 0 end,
}

tide.args = tide.args or {}
return tide

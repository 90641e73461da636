-- tide.cuda: CUDA devices as PyTorch's torch.cuda shows them: availability,
-- synchronisation, and the caching allocator's memory statistics.
local ffi = require 'ffi'
local core = require 'tide.tensor'
local C = ffi.C

local M = {}

-- The device code of an optional device argument: nil, a number, 'cuda' or 'cuda:N'.
local function device_of(d, what)
  if d == nil then return 0 end
  if type(d) == 'number' and d >= 0 and d % 1 == 0 then return d end
  local code = core.device_code(d, what, 3)
  if code < 0 then error(what .. ': expected a CUDA device, got ' .. tostring(d), 3) end
  return code
end

function M.device_count() return tonumber(C.tide_cuda_device_count()) end
function M.is_available() return C.tide_cuda_device_count() > 0 end
-- 'CUDA' (a GPU), 'cudaemu' (the CPU emulator of the test build) or '' (built without CUDA)
function M.runtime() return ffi.string(C.tide_cuda_runtime_name()) end
-- cuBLAS's version (major * 10000 + minor * 100 + patch), 0 without it;
-- cuBLAS is loaded by this first use, not at startup
function M.blas_version() return tonumber(C.tide_cuda_blas_version()) end

-- Waits for every kernel launched on the device; an asynchronous fault surfaces here as an error.
function M.synchronize(device)
  core.check(C.tide_cuda_synchronize(device_of(device, 'cuda.synchronize')), 3)
end

local stats = ffi.new('tide_cuda_memstats')
local fields = { 'allocated', 'reserved', 'peak_allocated', 'peak_reserved', 'num_mallocs', 'num_frees',
                 'num_ooms', 'requests', 'segments', 'free_blocks', 'live_blocks' }

-- The caching allocator's counters for a device, in bytes and counts:
-- allocated (held by tensors), reserved (obtained from the driver), their
-- peaks, num_mallocs/num_frees (driver calls), num_ooms, requests, segments,
-- free_blocks and live_blocks.
function M.memory_stats(device)
  core.check(C.tide_cuda_memory_stats(device_of(device, 'cuda.memory_stats'), stats), 3)
  local r = {}
  for _, f in ipairs(fields) do r[f] = tonumber(stats[f]) end
  return r
end
function M.memory_allocated(device) return M.memory_stats(device).allocated end
function M.memory_reserved(device) return M.memory_stats(device).reserved end
function M.max_memory_allocated(device) return M.memory_stats(device).peak_allocated end

-- Collects garbage tensors, then returns the cached free memory to the driver; returns the bytes freed.
function M.empty_cache(device)
  collectgarbage()
  local n = C.tide_cuda_empty_cache(device_of(device, 'cuda.empty_cache'))
  if n < 0 then core.check(-1, 3) end
  return tonumber(n)
end

function M.reset_peak_memory_stats(device)
  core.check(C.tide_cuda_reset_peak_memory_stats(device_of(device, 'cuda.reset_peak_memory_stats')), 3)
end

-- Free and total bytes of the device, as the driver reports them.
function M.mem_get_info(device)
  local f, t = ffi.new('int64_t[1]'), ffi.new('int64_t[1]')
  core.check(C.tide_cuda_mem_info(device_of(device, 'cuda.mem_get_info'), f, t), 3)
  return tonumber(f[0]), tonumber(t[0])
end

-- on: synchronise and check after every kernel, so a fault names its own op
-- (slow; the environment variable TIDE_CUDA_SYNC=1 sets it at start).
function M.set_sync_debug(on)
  core.check(C.tide_cuda_set_sync_debug(on and 1 or 0), 3)
end

-- on: let f32 matmuls use TF32 tensor cores (faster, inputs rounded to 10
-- mantissa bits; off by default, like torch.backends.cuda.matmul.allow_tf32).
-- Returns the previous setting.
function M.set_allow_tf32(on)
  return C.tide_cuda_set_allow_tf32(on and 1 or 0) ~= 0
end

return M

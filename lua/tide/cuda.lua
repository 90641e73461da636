-- tide.cuda: CUDA devices as PyTorch's torch.cuda shows them: availability,
-- synchronisation, and the caching allocator's memory statistics.
local ffi = require 'ffi'
local core = require 'tide.tensor'
local C = ffi.C

local M = {}

-- Graph capture and launch statistics (declared and documented in
-- runtime/device.h); one declaration at a time, so a header that already
-- declares one of them does not stop the others.
for _, decl in ipairs {
  'typedef struct tide_cuda_graph tide_cuda_graph;',
  'int tide_cuda_graph_begin(int32_t device, tide_cuda_graph **out);',
  'int tide_cuda_graph_end(tide_cuda_graph *g);',
  'int tide_cuda_graph_replay(tide_cuda_graph *g);',
  'void tide_cuda_graph_free(tide_cuda_graph *g);',
  'int64_t tide_cuda_graph_pool_bytes(const tide_cuda_graph *g);',
  'int32_t tide_cuda_graph_capturing(void);',
  'int32_t tide_cuda_launch_stats(int32_t device, int32_t cap, const char **ops, const char **kernels, ' ..
    'uint64_t *counts, uint64_t *total, uint64_t *graph_replays);',
  'int tide_cuda_reset_launch_stats(int32_t device);',
} do pcall(ffi.cdef, decl) end

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

-- Launch statistics ---------------------------------------------------------

-- Kernel launches on the device since the start (or the last reset), as
-- { total = n, by_op = { matmul = k, ... }, by_kernel = { binary = k, ... },
--   graph_replays = r }: by_op counts under the op that launched (the op
-- layer's name: add, layer_norm_backward, ...), by_kernel under the name the
-- launch gives itself (binary, reduce, ...). A cuBLASLt call counts as one
-- launch; a graph replay counts once in total (as 'graph_replay'), its
-- recorded launches were counted when it was captured.
function M.launch_stats(device)
  local d = device_of(device, 'cuda.launch_stats')
  local total, graphs = ffi.new('uint64_t[1]'), ffi.new('uint64_t[1]')
  local n = C.tide_cuda_launch_stats(d, 0, nil, nil, nil, total, graphs)
  if n < 0 then core.check(-1, 3) end
  local cap = n + 16  -- launches between the two calls may add entries
  local ops, kernels = ffi.new('const char *[?]', cap), ffi.new('const char *[?]', cap)
  local counts = ffi.new('uint64_t[?]', cap)
  n = C.tide_cuda_launch_stats(d, cap, ops, kernels, counts, total, graphs)
  if n < 0 then core.check(-1, 3) end
  local r = { total = tonumber(total[0]), graph_replays = tonumber(graphs[0]), by_op = {}, by_kernel = {} }
  for i = 0, math.min(n, cap) - 1 do
    local op, k, c = ffi.string(ops[i]), ffi.string(kernels[i]), tonumber(counts[i])
    r.by_op[op] = (r.by_op[op] or 0) + c
    r.by_kernel[k] = (r.by_kernel[k] or 0) + c
  end
  return r
end

function M.reset_launch_stats(device)
  core.check(C.tide_cuda_reset_launch_stats(device_of(device, 'cuda.reset_launch_stats')), 3)
end

-- CUDA graphs -----------------------------------------------------------------

-- Graphs collected while another is being captured are destroyed once that
-- capture ends (destroying one is no work to record).
local doomed = {}
local function free_graph(h)
  if C.tide_cuda_graph_capturing() >= 0 then doomed[#doomed + 1] = h else C.tide_cuda_graph_free(h) end
end
local function free_doomed()
  for i = #doomed, 1, -1 do
    C.tide_cuda_graph_free(doomed[i])
    doomed[i] = nil
  end
end

local function pack(...) return { n = select('#', ...), ... } end

local Graph = {}
Graph.__index = Graph

-- Runs the captured work once more, on the same tensors: copy new inputs
-- into the static inputs first; read the results from the tensors fn
-- returned (returned again here).
function Graph:replay()
  if not self._h then error('graph:replay: this graph was freed', 2) end
  core.check(C.tide_cuda_graph_replay(self._h), 3)
  return unpack(self.outputs, 1, self.outputs.n)
end

-- Bytes of device memory in the graph's private pool.
function Graph:pool_bytes()
  return self._h and tonumber(C.tide_cuda_graph_pool_bytes(self._h)) or 0
end

-- Destroys the graph now and gives its pool back (collection does the same).
function Graph:free()
  if self._h then
    local h = ffi.gc(self._h, nil)
    self._h = nil
    free_graph(h)
  end
end

-- Captures the CUDA work of fn(...) into a graph, without running it, and
-- returns the graph: graph:replay() then runs that work again with one
-- launch from the host. As torch.cuda.graph: the graph replays the same
-- kernels on the same addresses, so its inputs are tensors made before the
-- capture (copy new values into them between replays) and its outputs are
-- the tensors fn returned (graph.outputs, also returned by replay), which
-- every replay overwrites. Whatever fn computes on the host (Lua numbers,
-- shapes, an lr) is fixed at capture. Run fn once eagerly before capturing
-- (warm-up: cuBLASLt, lazily made state). opts.device: the device to capture
-- (default cuda:0).
function M.graph(fn, opts, ...)
  if type(fn) ~= 'function' then error('cuda.graph: expected a function, got ' .. type(fn), 2) end
  if opts ~= nil and type(opts) ~= 'table' then error('cuda.graph: opts must be a table, got ' .. type(opts), 2) end
  local d = device_of(opts and opts.device, 'cuda.graph')
  -- garbage made before the capture but freed during it would stay reserved for the graph
  collectgarbage()
  collectgarbage()
  local out = ffi.new('tide_cuda_graph *[1]')
  core.check(C.tide_cuda_graph_begin(d, out), 3)
  local h = out[0]
  local res = pack(pcall(fn, ...))
  if not res[1] then
    -- end the capture (its own error, if any, is secondary to fn's), free it, raise fn's error
    C.tide_cuda_graph_end(h)
    C.tide_cuda_graph_free(h)
    free_doomed()
    error(res[2], 0)
  end
  local rc = C.tide_cuda_graph_end(h)
  if rc ~= 0 then
    local msg = ffi.string(C.tide_last_error())
    C.tide_cuda_graph_free(h)
    free_doomed()
    error(msg, 2)
  end
  free_doomed()
  local g = setmetatable({ _h = ffi.gc(h, free_graph), device = d }, Graph)
  g.outputs = { n = res.n - 1, unpack(res, 2, res.n) }
  return g
end

-- The device being captured now, or nil.
function M.capturing()
  local d = C.tide_cuda_graph_capturing()
  return d >= 0 and d or nil
end

return M

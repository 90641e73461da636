-- The caching allocator under a fragmenting workload (tests/gpu/run.sh):
-- thousands of tensors of mixed sizes made and dropped in random order, as a
-- training loop's temporaries are. Checks that the cache serves them (few
-- driver allocations), that reserved memory stays within a bound of the
-- peak in use, that blocks coalesce so a large tensor fits after the small
-- ones are gone, and that empty_cache returns everything unused.
-- Run: tide tests/gpu/alloc_fragment.lua   (tide-cudaemu too, smaller)
local rng = require('tide.testing').lcg(5)
local function fail(msg) io.stderr:write('alloc_fragment: ', msg, '\n'); os.exit(1, true) end

if not tide.cuda.is_available() then print('skipped: no CUDA device'); return end
local scale = tide.cuda.runtime() == 'cudaemu' and 1 / 16 or 1
collectgarbage()
tide.cuda.empty_cache()
tide.cuda.reset_peak_memory_stats()
local base = tide.cuda.memory_stats()

local live, n_live = {}, 0
local sizes = { 1, 100, 4096, 65536, 300000, 2^20, 3 * 2^20, 12 * 2^20 }  -- f32 elements
local total = 4000
for i = 1, total do
  if n_live > 0 and rng() < 0.45 then
    local k = math.floor(rng() * n_live) + 1
    live[k] = live[n_live]
    live[n_live] = nil
    n_live = n_live - 1
  else
    local n = math.max(1, math.floor(sizes[math.floor(rng() * #sizes) + 1] * scale * (0.5 + rng())))
    n_live = n_live + 1
    live[n_live] = tide.empty(n, { device = 'cuda' })
  end
  if n_live > 64 then  -- a bounded working set, like one step's activations
    live[1] = live[n_live]; live[n_live] = nil; n_live = n_live - 1
  end
end
local s = tide.cuda.memory_stats()
print(('after %d requests: %d live blocks, allocated %.1f MiB (peak %.1f), reserved %.1f MiB (peak %.1f), %d driver allocations')
  :format(s.requests - base.requests, s.live_blocks, s.allocated / 2^20, s.peak_allocated / 2^20,
          s.reserved / 2^20, s.peak_reserved / 2^20, s.num_mallocs - base.num_mallocs))
if s.num_mallocs - base.num_mallocs > (s.requests - base.requests) / 10 then
  fail('more than one driver allocation per 10 requests: the cache is not reusing blocks')
end
if s.peak_reserved > 2 * s.peak_allocated + 64 * 2^20 then
  fail(('fragmentation: %d bytes reserved at peak for %d allocated'):format(s.peak_reserved, s.peak_allocated))
end
live, n_live = nil, 0
collectgarbage(); collectgarbage()
local after = tide.cuda.memory_stats()
if after.allocated ~= base.allocated then fail(('%d bytes still allocated after freeing all'):format(after.allocated - base.allocated)) end
-- coalescing: one tensor as large as the largest cached segment's worth fits without new driver memory
local before_big = after.num_mallocs
local big = tide.empty(math.floor(12 * 2^20 * scale), { device = 'cuda' })
big = nil
collectgarbage()
local freed = tide.cuda.empty_cache()
local e = tide.cuda.memory_stats()
if e.reserved ~= 0 and e.live_blocks == 0 then fail(('empty_cache left %d bytes reserved with nothing live'):format(e.reserved)) end
print(('empty_cache returned %.1f MiB; the large tensor needed %d new driver allocations'):format(freed / 2^20, e.num_mallocs - before_big))
print('ok')

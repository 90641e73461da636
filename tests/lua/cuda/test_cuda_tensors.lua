-- CUDA tensors through the whole engine (tide-cudaemu in CI, a GPU in
-- tests/gpu/run.sh): creation, transfers, casts, copies of views, and the
-- memory statistics of the caching allocator.
local T = require 'tide.testing'

T.test('creation, transfer and dtype casts on cuda', function()
  local dev = T.need_cuda()
  local x = tide.randn(3, 5)
  local d = x:to(dev)
  T.eq(d.device, 'cuda:0')
  T.same(d:cpu():tolist(), x:tolist())
  T.same(tide.zeros(2, 3, { device = dev }):tolist(), tide.zeros(2, 3):tolist())
  T.same(tide.full({ 4 }, 2.5, { device = dev, dtype = 'bf16' }):tolist(), { 2.5, 2.5, 2.5, 2.5 })
  T.same(tide.arange(7, { device = dev }):tolist(), tide.arange(7):tolist())
  T.same(tide.tensor({ { 1, 2 }, { 3, 4 } }, { device = dev }):tolist(), { { 1, 2 }, { 3, 4 } })
  for _, dt in ipairs { 'f64', 'bf16', 'f16', 'i32', 'i64', 'u8', 'bool' } do
    T.device_parity(function(t) return t:to(dt) end, { x * 10 }, { exact = true }, 'cast to ' .. dt)
  end
end)

T.test('copies of non-contiguous views on cuda', function()
  T.need_cuda()
  local x = tide.randn(4, 6)
  T.device_parity(function(t) return t:t():contiguous() end, { x }, { exact = true }, 'transpose')
  T.device_parity(function(t) return t:narrow(2, 2, 3):contiguous() end, { x }, { exact = true }, 'narrow')
  local y = tide.randn(6, 4):to('cuda')
  T.same(y:t():cpu():tolist(), y:cpu():t():tolist())  -- a strided view comes back in logical order
end)

T.test('memory statistics, empty_cache and freeing', function()
  T.need_cuda()
  collectgarbage()
  tide.cuda.empty_cache()
  local before = tide.cuda.memory_stats()
  local t = tide.zeros(1024, 256, { device = 'cuda' })  -- 1 MiB
  local s = tide.cuda.memory_stats()
  T.truthy(s.allocated >= before.allocated + 1024 * 1024, 'allocated grew by the tensor')
  T.truthy(s.reserved >= s.allocated, 'reserved covers allocated')
  T.truthy(s.peak_allocated >= s.allocated, 'peak')
  t = nil
  collectgarbage()
  collectgarbage()
  local after = tide.cuda.memory_stats()
  T.eq(after.allocated, before.allocated, 'the freed block went back to the cache')
  T.truthy(after.reserved >= after.allocated)
  tide.cuda.empty_cache()
  T.truthy(tide.cuda.memory_stats().reserved <= after.reserved)
  tide.cuda.synchronize()
end)

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

T.test('copy_ across devices, module:to and safetensors with cuda tensors', function()
  T.need_cuda()
  local d = tide.zeros(2, 3, { device = 'cuda' })
  local h = tide.randn(2, 3)
  d:copy_(h)  -- the source moves to the destination's device, as torch's copy_
  T.same(d:tolist(), h:tolist())
  h:copy_(d)  -- and back
  T.same(h:tolist(), d:tolist())
  local lin = tide.nn.Linear(3, 2)
  local w = lin.weight
  lin:to('cuda')
  T.truthy(rawequal(lin.weight, w), 'the parameter keeps its identity')
  T.eq(lin.weight.device, 'cuda:0')
  T.eq(lin:device(), 'cuda:0')
  T.eq(lin.weight.requires_grad, true)
  lin:cpu()
  T.eq(lin.bias.device, 'cpu')
  local tmp, cleanup = T.scratch()
  local dir = tmp()
  local x = tide.randn(4, 5):to('cuda')
  tide.io.save_safetensors(dir .. '/x.safetensors', { x = x, y = tide.arange(3, { device = 'cuda' }) })
  local back = tide.io.load_safetensors(dir .. '/x.safetensors')
  T.same(back.x:tolist(), x:tolist())
  T.eq(back.x.device, 'cpu')
  local on = tide.io.load_safetensors(dir .. '/x.safetensors', { device = 'cuda' })
  T.eq(on.y.device, 'cuda:0')
  T.same(on.y:tolist(), { 0, 1, 2 })
  cleanup()
end)

T.test('two devices: cuda:1 holds its own tensors, and to moves between them', function()
  T.need_cuda()
  if tide.cuda.device_count() < 2 then T.skip('one CUDA device (CUDAEMU_DEVICES=2 emulates two)') end
  local a = tide.randn(3, 4):to('cuda:1')
  T.eq(a.device, 'cuda:1')
  local b = a:t():to('cuda:0')
  T.eq(b.device, 'cuda:0')
  T.same(b:cpu():tolist(), a:cpu():t():tolist())
  T.eq(tide.cuda.memory_stats('cuda:1').allocated > 0, true)
  T.raises(function() return a:to('cuda:0') + a end, 'expected all tensors on one device')
end)

T.test('new device memory is poisoned under the emulator, also when reused from the cache', function()
  T.need_cuda()
  if tide.cuda.runtime() ~= 'cudaemu' and os.getenv('TIDE_CUDA_POISON') ~= '1' then
    T.skip('poisoning is on by default only under the emulator (TIDE_CUDA_POISON=1 elsewhere)')
  end
  for _ = 1, 2 do  -- the second round reuses the first round's freed blocks
    local f = tide.empty(5, { device = 'cuda' }):tolist()
    for i = 1, 5 do T.truthy(f[i] ~= f[i], 'f32 element ' .. i .. ' is NaN (0xFF bytes)') end
    T.same(tide.empty(3, { device = 'cuda', dtype = 'i32' }):tolist(), { -1, -1, -1 })
    collectgarbage()
  end
end)

-- What a user sees when CUDA work goes wrong: out of memory (a clear error,
-- after which the program frees and goes on), garbage freed as device memory
-- grows, operands on two devices, and an asynchronous kernel fault reported
-- at the next synchronisation with the ops launched before it.
local T = require 'tide.testing'
local ffi = require 'ffi'

T.test('out of memory is an error naming the size, and the program goes on', function()
  T.need_cuda()
  local err
  local ok = pcall(function() return tide.empty(2 ^ 38, { device = 'cuda' }) end)  -- 1 TiB of f32
  T.eq(ok, false)
  local _, msg = pcall(function() return tide.empty(2 ^ 38, { device = 'cuda' }) end)
  err = tostring(msg)
  T.truthy(err:find('cuda:0', 1, true) and err:find('out of device memory', 1, true), err)
  T.truthy(err:find('tried to allocate 1099511627776 bytes', 1, true), err)
  T.truthy(err:find('bytes allocated', 1, true) and err:find('reserved', 1, true), err)
  local x = tide.ones(1000, { device = 'cuda' })
  T.eq(x:sum():item(), 1000)
  T.truthy(tide.cuda.memory_stats().num_ooms >= 2)
end)

T.test('garbage tensors are collected as device memory grows', function()
  T.need_cuda()
  collectgarbage()
  tide.cuda.empty_cache()
  local ooms = tide.cuda.memory_stats().num_ooms
  -- 40 x 64 MiB of temporaries, none kept: without pacing by device bytes
  -- they would stay until Lua's heap (which barely grows) triggers a GC, and
  -- the 1 GiB emulated device of the test run would run out
  for _ = 1, 40 do
    local t = tide.empty(16 * 1024 * 1024, { device = 'cuda' })
    t = nil
  end
  local s = tide.cuda.memory_stats()
  T.eq(s.num_ooms, ooms, 'no allocation failed')
  T.truthy(s.reserved <= 512 * 1024 * 1024,
    ('reserved %d bytes: garbage was not collected as the device filled'):format(s.reserved))
end)

T.test('operands on two devices are an error naming both', function()
  T.need_cuda()
  local a, b = tide.ones(3), tide.ones(3, { device = 'cuda' })
  T.raises(function() return a + b end, 'expected all tensors on one device, got operand 1 on cpu and operand 2 on cuda:0')
  T.raises(function() return tide.ones(2, 3, { device = 'cuda' }):matmul(tide.ones(4, 2, { device = 'cuda' })) end, 'matmul')
end)

T.test('an asynchronous fault surfaces at the next sync with the recent ops', function()
  T.need_cuda()
  if tide.cuda.runtime() ~= 'cudaemu' then T.skip('a fault is injected only under the emulator') end
  ffi.cdef 'void cudaemu_inject_fault(void);'
  local x = tide.ones(4, { device = 'cuda' })
  local y = (x * 2):exp()
  ffi.C.cudaemu_inject_fault()
  local ok, msg = pcall(tide.cuda.synchronize)
  T.eq(ok, false)
  msg = tostring(msg)
  T.truthy(msg:find('synchronize on cuda:0', 1, true) and msg:find('injected', 1, true), msg)
  T.truthy(msg:find('the last ops launched', 1, true) and msg:find('exp', 1, true), msg)
  T.truthy(msg:find('TIDE_CUDA_SYNC=1', 1, true), msg)
  -- a copy to the host reports it too
  ffi.C.cudaemu_inject_fault()
  ok, msg = pcall(function() return y:tolist() end)
  T.eq(ok, false)
  T.truthy(tostring(msg):find('copy to the host', 1, true), tostring(msg))
  tide.cuda.synchronize()  -- reported once: the device works again
  T.close(y:tolist(), { math.exp(2), math.exp(2), math.exp(2), math.exp(2) })
end)

T.test('debug sync checks after every op', function()
  T.need_cuda()
  tide.cuda.set_sync_debug(true)
  local x = tide.ones(8, { device = 'cuda' })
  T.eq((x + 1):sum():item(), 16)
  tide.cuda.set_sync_debug(false)
end)

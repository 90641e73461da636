-- Devices from Lua: the device option of every creation function, t.device,
-- t:to(device) and t:cpu(), and the clear errors for a device this build
-- cannot serve (no CUDA device, or no CUDA in the build).
local T = require 'tide.testing'

-- where no GPU is present: a CUDA build finds no device, a build without CUDA has no backend
local no_alloc = 'device cuda:0 is not available'

T.test('t.device, and the device option on the CPU', function()
  local x = tide.zeros(2, 3)
  T.eq(x.device, 'cpu')
  T.eq(x:t().device, 'cpu')
  for _, make in ipairs {
    function(o) return tide.zeros(2, 3, o) end, function(o) return tide.ones({ 2 }, o) end,
    function(o) return tide.empty(4, o) end, function(o) return tide.full({ 2 }, 7, o) end,
    function(o) return tide.arange(5, o) end, function(o) return tide.arange(0, 1, 0.25, o) end,
    function(o) return tide.rand(3, o) end, function(o) return tide.randn(3, o) end,
    function(o) return tide.randint(0, 9, { 3 }, o) end, function(o) return tide.tensor({ 1, 2 }, o) end,
    function(o) return tide.tensor(1.5, o) end, function(o) return tide.zeros_like(x, o) end,
    function(o) return tide.empty_like(x, o) end, function(o) return tide.rand_like(x, o) end,
  } do
    T.eq(make({ device = 'cpu' }).device, 'cpu')
  end
  T.same(tide.full({ 2 }, 7, { device = 'cpu', dtype = 'f64' }):tolist(), { 7, 7 })
  T.same(tide.arange(3, { device = 'cpu' }):tolist(), { 0, 1, 2 })
end)

T.test('cuda is a clear error where no device is present', function()
  if tide.cuda.is_available() then return end  -- tests/lua/cuda covers a present device
  T.raises(function() tide.zeros(2, 3, { device = 'cuda' }) end, no_alloc)
  T.raises(function() tide.ones({ 2 }, { device = 'cuda:0' }) end, no_alloc)
  T.raises(function() tide.empty(2, { device = 'cuda:1' }) end, 'device cuda:1 is not available')
  T.raises(function() tide.full({ 2 }, 1, { device = 'cuda' }) end, no_alloc)
  T.raises(function() tide.arange(4, { device = 'cuda' }) end, no_alloc)
  T.raises(function() tide.rand(2, { device = 'cuda' }) end, 'rand: ' .. no_alloc)
  T.raises(function() tide.randn(2, { device = 'cuda' }) end, 'randn: ' .. no_alloc)
  T.raises(function() tide.tensor({ 1, 2 }, { device = 'cuda' }) end, no_alloc)
  T.raises(function() tide.zeros_like(tide.zeros(2), { device = 'cuda' }) end, no_alloc)
  T.raises(function() tide.zeros(2):to('cuda') end, no_alloc)
  T.raises(function() tide.zeros(2):to('cuda:0', 'f64') end, no_alloc)
end)

T.test('an invalid device is an error naming it', function()
  T.raises(function() tide.zeros(2, { device = 'gpu' }) end, "zeros: unknown device 'gpu' (expected 'cpu', 'cuda' or 'cuda:N')")
  T.raises(function() tide.arange(3, { device = 'cuda:x' }) end, "arange: unknown device 'cuda:x'")
  T.raises(function() tide.tensor({ 1 }, { device = 7 }) end, 'tensor: unknown device 7')
  T.raises(function() tide.rand(2, { device = 'tpu' }) end, "rand: unknown device 'tpu'")
  T.raises(function() tide.zeros(2):to('cudax') end, "to: unknown device 'cudax'")
end)

T.test('to and cpu', function()
  local x = tide.tensor({ 1.5, 2.5 })
  T.eq(x:to('cpu'), x)  -- already there: the tensor itself
  T.eq(x:cpu(), x)
  T.eq(x:to('f32'), x)
  T.eq(x:to('cpu', 'f32'), x)
  local y = x:to('cpu', 'f64')
  T.eq(y:dtype(), 'f64')
  T.eq(y.device, 'cpu')
  T.same(x:to('i64'):tolist(), { 1, 2 })
  local z = tide.zeros(3, { dtype = 'i32' })
  T.eq(x:to(z):dtype(), 'i32')  -- another tensor's device and dtype
  T.raises(function() x:to('float128') end, 'unknown dtype float128')
  T.raises(function() x:to() end, 'unknown dtype nil')
end)

T.test('device errors point at the caller', function()
  for _, f in ipairs {
    function() return (tide.zeros(2, { device = 'xx' })) end, function() return (tide.empty(2, { device = 'xx' })) end,
    function() return (tide.full({ 2 }, 1, { device = 'xx' })) end, function() return (tide.arange(2, { device = 'xx' })) end,
    function() return (tide.tensor({ 1 }, { device = 'xx' })) end, function() return (tide.rand(2, { device = 'xx' })) end,
    function() return (tide.zeros_like(tide.zeros(1), { device = 'xx' })) end,
    function() return (tide.zeros(1):to('cuda:x')) end, function() return (tide.zeros(1):to('cuda:2')) end,
  } do
    local ok, err = pcall(f)
    T.eq(ok, false)
    T.truthy(err:find('test_device.lua:%d+: '), err)
  end
end)

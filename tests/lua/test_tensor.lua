-- The tensor core seen from Lua: constructors, queries, views, casts,
-- element access, 1-based dimension handling, memory, and bad arguments.
local T = require 'tide.testing'

T.test('constructors and queries', function()
  local z = tide.zeros(2, 3)
  T.same(z:shape(), { 2, 3 })
  T.eq(z:dtype(), 'f32')
  T.eq(z:numel(), 6)
  T.eq(z:dim(), 2)
  T.eq(z:size(2), 3)
  T.eq(z:size(-1), 3)
  T.same(tide.zeros({ 2, 3 }):shape(), { 2, 3 })
  T.same(tide.ones(2, 2, { dtype = 'f64' }):tolist(), { { 1, 1 }, { 1, 1 } })
  T.eq(tide.ones({ 4 }, { dtype = 'i32' }):dtype(), 'i32')
  T.same(tide.full({ 2 }, 7):tolist(), { 7, 7 })
  T.eq(tide.full({ 2 }, 7):dtype(), 'i64')
  T.eq(tide.full({ 2 }, 0.5):dtype(), 'f32')
  T.eq(tide.full({ 2 }, true):dtype(), 'bool')
  T.same(tide.zeros():shape(), {})
  T.eq(tide.zeros():numel(), 1)
  T.same(tide.zeros(0, 3):shape(), { 0, 3 })
  T.eq(tide.empty(3, 4):numel(), 12)
  T.same(tide.zeros_like(z):shape(), { 2, 3 })
  T.eq(tide.ones_like(z, { dtype = 'i64' }):dtype(), 'i64')
  T.same(tide.full_like(tide.zeros(2), 4):tolist(), { 4, 4 })
end)

T.test('arange', function()
  T.same(tide.arange(5):tolist(), { 0, 1, 2, 3, 4 })
  T.eq(tide.arange(5):dtype(), 'i64')
  T.same(tide.arange(2, 8, 3):tolist(), { 2, 5 })
  T.same(tide.arange(5, 0, -2):tolist(), { 5, 3, 1 })
  T.close(tide.arange(0, 1, 0.25), { 0, 0.25, 0.5, 0.75 })
  T.eq(tide.arange(0, 1, 0.25):dtype(), 'f32')
  T.same(tide.arange(0):shape(), { 0 })
  T.same(tide.arange(3, { dtype = 'f64' }):tolist(), { 0, 1, 2 })
  T.raises(function() tide.arange(0, 5, 0) end, 'step must be nonzero')
  T.raises(function() tide.arange('x') end, 'arange: arguments must be finite numbers')
  -- these once reached C as a length of -2^63 ('negative length')
  T.raises(function() tide.arange(1 / 0) end, 'arange: arguments must be finite numbers, got start=0, stop=inf')
  T.raises(function() tide.arange(0, 0 / 0) end, 'arange: arguments must be finite numbers')
  T.raises(function() tide.arange(0, 1e18, 1e-18) end, 'arange: 1e+36 elements from 0 to 1e+18 by 1e-18 are too many')
end)

T.test('tensor from nested tables', function()
  local t = tide.tensor({ { 1, 2, 3 }, { 4, 5, 6 } })
  T.eq(t:dtype(), 'i64')
  T.same(t:shape(), { 2, 3 })
  T.same(t:tolist(), { { 1, 2, 3 }, { 4, 5, 6 } })
  T.eq(tide.tensor({ 1.5, 2 }):dtype(), 'f32')
  T.eq(tide.tensor({ true, false }):dtype(), 'bool')
  T.same(tide.tensor({ true, false }):tolist(), { true, false })
  T.eq(tide.tensor(3.5):item(), 3.5)
  T.same(tide.tensor(3.5):shape(), {})
  T.eq(tide.tensor({ 1, 2 }, { dtype = 'f64' }):dtype(), 'f64')
  T.same(tide.tensor({}):shape(), { 0 })
  -- integers beyond 2^31 survive exactly in i64
  T.eq(tide.tensor({ 2 ^ 40 + 1 }):tolist()[1], 2 ^ 40 + 1)
  T.raises(function() tide.tensor({ { 1, 2 }, { 3 } }) end, 'ragged')
  T.raises(function() tide.tensor({ 1, 'a' }) end, 'element at data[2] is a string')
  T.raises(function() tide.tensor('x') end, 'expected a number, boolean or nested table')
  T.raises(function() tide.tensor({ 1 }, { dtype = 'complex' }) end, 'unknown dtype complex')
end)

T.test('every dtype round-trips small integers', function()
  for _, dt in ipairs { 'f32', 'f64', 'bf16', 'f16', 'i32', 'i64', 'u8', 'u16' } do
    local t = tide.tensor({ 0, 1, 2, 100 }, { dtype = dt })
    T.eq(t:dtype(), dt)
    T.same(t:tolist(), { 0, 1, 2, 100 }, dt)
    T.same(t:to('f64'):tolist(), { 0, 1, 2, 100 }, dt)
  end
  T.same(tide.tensor({ 0, 2 }, { dtype = 'bool' }):tolist(), { false, true })
  -- rounding into the storage types
  T.eq(tide.tensor({ 1 / 3 }, { dtype = 'bf16' }):item(), 0.333984375)
  T.eq(tide.tensor({ 1 / 3 }, { dtype = 'f16' }):item(), 0.333251953125)
  -- aliases users bring from PyTorch
  T.eq(tide.zeros(1, { dtype = 'float32' }):dtype(), 'f32')
  T.eq(tide.zeros(1):long():dtype(), 'i64')
  T.eq(tide.zeros(1):half():dtype(), 'f16')
  T.eq(tide.zeros(1):bfloat16():dtype(), 'bf16')
end)

T.test('views share storage and respect strides', function()
  local a = tide.arange(24):view(2, 3, 4)
  T.same(a:stride(), { 12, 4, 1 })
  local b = a:transpose(1, 3)
  T.same(b:shape(), { 4, 3, 2 })
  T.eq(b:is_contiguous(), false)
  T.eq(b:select(1, 2):select(1, 3):tolist()[2], 21)  -- a[2][3][2] (1-based) = 12 + 8 + 1
  T.same(a:permute(3, 1, 2):shape(), { 4, 2, 3 })
  T.same(a:permute({ -1, 1, 2 }):shape(), { 4, 2, 3 })
  T.same(a:narrow(3, 2, 2):tolist()[1][1], { 1, 2 })
  T.same(a:narrow(3, -2, 2):tolist()[1][1], { 2, 3 })
  T.same(a[2][3]:tolist(), { 20, 21, 22, 23 })
  T.same(a:select(-1, -1):tolist(), { { 3, 7, 11 }, { 15, 19, 23 } })
  T.same(tide.tensor({ 1, 2 }):view(2, 1):expand(2, 3):tolist(), { { 1, 1, 1 }, { 2, 2, 2 } })
  T.same(tide.zeros(3, 1):expand(-1, 4):shape(), { 3, 4 })
  T.same(tide.zeros(1, 3, 1):squeeze():shape(), { 3 })
  T.same(tide.zeros(1, 3, 1):squeeze(1):shape(), { 3, 1 })
  T.same(tide.zeros(3):unsqueeze(1):shape(), { 1, 3 })
  T.same(tide.zeros(3):unsqueeze(-1):shape(), { 3, 1 })
  T.same(tide.zeros(3):unsqueeze(2):shape(), { 3, 1 })
  T.same(a:view(-1, 4):shape(), { 6, 4 })
  T.same(a:flatten():shape(), { 24 })
  T.same(a:flatten(2):shape(), { 2, 12 })
  T.same(tide.zeros(2, 3):t():shape(), { 3, 2 })
  -- writes through a view land in the base
  local base = tide.zeros(2, 3)
  base:select(1, 2):fill_(5)
  T.same(base:tolist(), { { 0, 0, 0 }, { 5, 5, 5 } })
  base[1] = 7
  T.same(base:tolist(), { { 7, 7, 7 }, { 5, 5, 5 } })
  base:t():select(1, 1):copy_(tide.tensor({ 1, 2 }))
  T.same(base:tolist(), { { 1, 7, 7 }, { 2, 5, 5 } })
end)

T.test('reshape copies only when it must', function()
  local a = tide.arange(6):view(2, 3)
  local t = a:t()
  T.raises(function() t:view(6) end, 'cannot view a non-contiguous tensor of shape [3, 2] as [6]')
  local r = t:reshape(6)
  T.same(r:tolist(), { 0, 3, 1, 4, 2, 5 })
  local c = t:contiguous()
  T.eq(c:is_contiguous(), true)
  T.same(c:view(6):tolist(), { 0, 3, 1, 4, 2, 5 })
  T.eq(a:contiguous(), a)
  -- a reshape of a contiguous tensor is a view
  local v = a:reshape(3, 2)
  v[1] = 9
  T.same(a:tolist()[1], { 9, 9, 2 })
end)

T.test('clone, copy_ and casts', function()
  local a = tide.tensor({ { 1.5, -2.5 }, { 3.25, 4 } })
  local b = a:clone()
  b:fill_(0)
  T.same(a:tolist(), { { 1.5, -2.5 }, { 3.25, 4 } })
  T.same(a:to('i32'):tolist(), { { 1, -2 }, { 3, 4 } })
  T.same(a:to('bool'):tolist(), { { true, true }, { true, true } })
  local d = tide.zeros(2, 2, { dtype = 'f64' })
  d:copy_(a:t())
  T.same(d:tolist(), { { 1.5, 3.25 }, { -2.5, 4 } })
  d:copy_(tide.tensor({ 1, 2 }))  -- broadcast row
  T.same(d:tolist(), { { 1, 2 }, { 1, 2 } })
  T.raises(function() d:copy_(tide.zeros(3)) end, 'copy_: source of shape [3] cannot be broadcast to destination of shape [2, 2]')
  T.eq(a:to('f32'), a)
  T.eq(a:type(), 'f32')
end)

T.test('item and tolist', function()
  T.eq(tide.tensor({ { 7 } }):item(), 7)
  T.raises(function() tide.zeros(2):item() end, 'item: the tensor has 2 elements')
  T.same(tide.zeros(2, 0):tolist(), { {}, {} })
end)

T.test('bad arguments give clear errors', function()
  local a = tide.zeros(2, 3)
  T.raises(function() a:size(3) end, 'size: dimension 3 out of range for a 2-d tensor')
  T.raises(function() a:size(0) end, 'dimension 0 out of range')
  T.raises(function() a:transpose(1, 5) end, 'transpose: dimension 5 out of range')
  T.raises(function() a:select(1, 3) end, 'select: index 3 out of range for dimension 1 of size 2')
  T.raises(function() a:narrow(2, 3, 2) end, 'narrow: elements 3..4 are outside dimension 2 of size 3')
  T.raises(function() a:view(4, 2) end, 'view: shape [4, 2] is invalid for a tensor of shape [2, 3]')
  T.raises(function() a:expand(4, 3) end, 'expand: cannot expand shape [2, 3] to [4, 3]')
  T.raises(function() a:permute(1, 1) end, 'permute: dimension 1 appears twice')
  T.raises(function() a:permute(1) end, 'permute: 1 dimensions given for a 2-d tensor')
  T.raises(function() tide.zeros(2, -3) end, 'zeros: negative size -3 at dimension 2')
  T.raises(function() tide.zeros(2.5) end, 'zeros: size 1 must be an integer')
  T.raises(function() tide.zeros(1, 1, 1, 1, 1, 1, 1, 1, 1) end, 'at most 8 dimensions')
  T.raises(function() tide.zeros(2, { dtype = 'f8' }) end, 'unknown dtype f8')
  T.raises(function() a:to('nope') end, 'unknown dtype nope')
  T.raises(function() a:fill_('x') end, 'fill_: value must be a number')
  T.raises(function() tide.zeros(1):unsqueeze(3) end, 'unsqueeze: dimension 3 out of range')
  T.raises(function() a:t():view(6) end, 'use reshape or contiguous')
  T.raises(function() tide.zeros_like(3) end, 'zeros_like: expected a tensor, got number')
  -- the error points at the caller's line, not at tide's internals
  local err = T.raises(function() a:view(5) end)
  T.truthy(err:find('test_tensor.lua', 1, true), 'error location: ' .. err)
end)

T.test('memory is returned by refcount and the GC follows tensor bytes', function()
  collectgarbage('collect')
  local before = tide.memory().live
  do
    local big = tide.zeros(1024, 1024)  -- 4 MiB
    T.eq(tide.memory().live - before, 4 * 1024 * 1024)
    local v = big:narrow(1, 1, 10)
    big = nil
    collectgarbage('collect')
    T.eq(tide.memory().live - before, 4 * 1024 * 1024, 'a view keeps the storage alive')
    T.eq(v:numel(), 10240)
  end
  collectgarbage('collect')
  T.eq(tide.memory().live, before)
  -- 200 MiB-sized temporaries in a loop: the engine's live bytes stay bounded
  -- because wrap() runs the GC when tensor memory (not the Lua heap) grows
  local peak = 0
  for _ = 1, 40 do
    local _t = tide.empty(16 * 1024 * 1024)  -- 64 MiB each, 2.5 GiB in all
    peak = math.max(peak, tide.memory().live - before)
  end
  T.truthy(peak < 1024 * 1024 * 1024, 'live bytes peaked at ' .. peak)
end)

T.test('a dropped tensor is collected once the engine grows by the GC step', function()
  collectgarbage('collect')
  tide.set_gc_step(64 * 1024 * 1024)
  local before = tide.memory().live
  local t = tide.empty(10 * 1024 * 1024)  -- 40 MiB
  t = nil  -- Lua cannot see this; the next allocations' growth must trigger the collection
  local u = tide.empty(10 * 1024 * 1024)
  local w = tide.empty(4 * 1024 * 1024)
  -- with the old 256 MiB floor this was 96 MiB, the dropped 40 MiB included
  T.truthy(tide.memory().live - before <= 56 * 1024 * 1024, 'live grew by ' .. (tide.memory().live - before))
  T.eq(u:numel() + w:numel(), 14 * 1024 * 1024)
  T.raises(function() tide.set_gc_step('x') end, 'set_gc_step: expected a number of bytes')
end)

T.test('tokenizers count toward the GC pacer: 40 dropped loads keep memory bounded', function()
  collectgarbage('collect')
  tide.set_gc_step(64 * 1024 * 1024)  -- the threshold from what is live now
  local before = tide.memory().live
  local tok = tide.tokenizer.load('data/gpt2')
  local one = tide.memory().live - before
  T.truthy(one > 4e6, 'a GPT-2 tokenizer counts ' .. one .. ' bytes')
  tok = nil
  local function rss()
    local f = io.open('/proc/self/statm')
    if not f then return 0 end
    local _, res = f:read('*n', '*n')
    f:close()
    return res * 4096
  end
  local r0, peak = rss(), 0
  for _ = 1, 40 do
    tok = tide.tokenizer.load('data/gpt2')  -- each drops the last, with no explicit collect
    peak = math.max(peak, tide.memory().live - before)
  end
  -- once 40 x 5.4 MB = 216 MB stayed live (225 MB RSS) with a 0.6 MB Lua heap
  T.truthy(peak < 100e6, 'engine live bytes peaked at ' .. peak)
  -- (AddressSanitizer quarantines freed memory, so RSS says nothing there; its
  -- builds are the ones with the block cache off)
  if tide.memory().cache_limit > 0 then T.truthy(rss() - r0 < 150e6, 'RSS grew by ' .. (rss() - r0)) end
  tok = nil
  collectgarbage('collect')
  T.eq(tide.memory().live, before)
end)

T.test('large freed blocks are cached and reused', function()
  collectgarbage('collect')
  tide.empty_cache()
  T.eq(tide.memory().cached, 0)
  if tide.memory().cache_limit == 0 then T.skip('the block cache is off in sanitizer builds') end
  local a = tide.empty(1024 * 1024)  -- 4 MiB: cached when freed
  local addr = tostring(a:data_ptr())
  a = nil
  collectgarbage('collect')
  T.eq(tide.memory().cached, 4 * 1024 * 1024)
  local b = tide.empty(1024 * 1024)
  T.eq(tostring(b:data_ptr()), addr, 'the same block comes back')
  T.eq(tide.memory().cached, 0)
  b = nil
  collectgarbage('collect')
  tide.set_cache_limit(0)
  T.eq(tide.memory().cached, 0)
  tide.set_cache_limit(-1)
  T.truthy(tide.memory().cache_limit > 0)
  T.raises(function() tide.set_cache_limit('x') end, 'expected a number of bytes')
end)

T.test('numbers beyond int64 make float tensors', function()
  T.eq(tide.tensor({ 1e30 }):dtype(), 'f32')
  T.eq(tide.tensor(1e30):dtype(), 'f32')
  T.eq(tide.tensor({ 2 ^ 62 }):dtype(), 'i64')
end)

T.test('tensor refuses self-nesting, holes and ragged tables, naming the position', function()
  -- a table holding itself is infinitely deep: once a loop that grew memory without end
  local r = {}
  r[1] = r
  T.raises(function() tide.tensor(r) end, 'tensor: at most 8 dimensions')
  local deep = { 1 }
  for _ = 1, 9 do deep = { deep } end
  T.raises(function() tide.tensor(deep) end, 'at most 8 dimensions')
  -- holes were dropped silently ({[1]=1,[3]=3} gave [1])
  T.raises(function() tide.tensor({ [1] = 1, [3] = 3 }) end, 'tensor: data has a hole: data[2] is missing but data[3] is set')
  T.raises(function() tide.tensor({ { 1, 2 }, { 3, nil, 5 } }) end, 'data[2] has a hole: data[2][2] is missing')
  T.raises(function() tide.tensor({ 1, 2, x = 3 }) end, "data has the key 'x'")
  T.raises(function() tide.tensor({ { 1, 2 }, { 3 } }) end, 'ragged nested table: data[2] has 1 elements, expected 2')
  T.raises(function() tide.tensor({ { 1, 2 }, 3 }) end, 'expected a list at data[2]')
  T.same(tide.tensor({ {}, {} }):shape(), { 2, 0 })
end)

T.test('empty tensors with huge sizes are refused, not overflowed', function()
  -- the strides of [0, 2^62, 7904] overflow int64 though it holds nothing
  T.raises(function() tide.zeros(0, 2 ^ 62, 7904) end, 'tensor: shape [0, 4611686018427387904, 7904] is too large')
  T.raises(function() tide.empty(2 ^ 40, 2 ^ 40) end, 'is too large')
  T.raises(function() tide.zeros(0, 3):view(0, 2 ^ 61, 4) end, 'view: shape [0, 2305843009213693952, 4] is too large')
  T.raises(function() tide.zeros(1, 1):expand(2 ^ 40, 2 ^ 40) end, 'is too large')
  T.raises(function() tide.zeros(5):narrow(1, 2 ^ 62, 2 ^ 62) end, 'narrow: elements 4611686018427387904..')
  T.same(tide.zeros(0, 2 ^ 20, 7):shape(), { 0, 2 ^ 20, 7 })
  T.same(tide.zeros(5):narrow(1, 6, 0):shape(), { 0 })
end)

T.test('a tampered handle is refused by the ops', function()
  local x = tide.ones(3)
  x._c.numel = 1e8  -- once read 100 M floats from a 3-float buffer
  T.raises(function() x:sum() end, 'sum: corrupt tensor handle')
  local y = tide.ones(2, 3)
  y._c.stride[0] = 1000
  T.raises(function() y:add(1) end, 'corrupt tensor handle')
  local z = tide.ones(4)
  z._c.offset = 3
  T.raises(function() z:fill_(0) end, 'corrupt tensor handle')
end)

T.test('unknown fields of a tensor are errors; methods and grad still read', function()
  local x = tide.ones(2, 3)
  T.raises(function() return x.logits end, "'logits' is not a field or method of a Tensor: this value is a Tensor of shape [2, 3] (f32)")
  T.raises(function() return x.foo end, "'foo' is not a field")
  T.eq(x.grad, nil)
  T.eq(x.requires_grad, nil)
  T.eq(x:numel(), 6)
  T.eq(x[2][3]:item(), 1)
end)

T.test('threads can be set', function()
  local n = tide.get_num_threads()
  tide.set_num_threads(1)
  T.eq(tide.get_num_threads(), 1)
  tide.set_num_threads(n)
  T.raises(function() tide.set_num_threads(0) end, 'set_num_threads: expected an integer from 1 to')
  -- 1e9 once went to OpenBLAS, which under an address-space limit retried malloc forever
  T.raises(function() tide.set_num_threads(1e9) end, 'got 1000000000')
  T.raises(function() tide.set_num_threads(1.5) end, 'expected an integer')
  T.eq(tide.get_num_threads(), n)
end)

T.test('require and the global are the same table', function()
  T.eq(require('tide'), tide)
  T.eq(type(tide.version), 'string')
  T.eq(tide.cuda.device_count() >= 0, true)
  local t0 = tide.clock()
  T.truthy(type(t0) == 'number' and tide.clock() >= t0)
end)

T.test('NaNs with any payload read back as NaN (never as a LuaJIT tagged value)', function()
  local ffi = require 'ffi'
  local t = tide.zeros(3, { dtype = 'f32' })
  local bits = ffi.cast('uint32_t*', t:data_ptr())
  bits[0], bits[1] = 0xFFFFFFFF, 0x7FC00001  -- an all-ones NaN (fresh device memory) and a positive one
  local l = t:tolist()
  T.truthy(type(l[1]) == 'number' and l[1] ~= l[1], 'element 1 is a NaN number')
  T.truthy(type(l[2]) == 'number' and l[2] ~= l[2], 'element 2 is a NaN number')
  T.eq(l[3], 0)
  T.truthy(t[1]:item() ~= t[1]:item())
  local d = t:to('f64')
  local before = ffi.cast('uint64_t*', d:data_ptr())[0]
  T.truthy(d:tolist()[1] ~= d:tolist()[1])
  T.eq(ffi.cast('uint64_t*', d:data_ptr())[0], before, "reading does not rewrite the caller's tensor")
  T.truthy(tostring(t):find('nan', 1, true))
end)

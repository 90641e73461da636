-- Tensor printing: PyTorch's layout and number formats, then dtype and shape.
-- Expected strings are what PyTorch prints for the same values, with tide's
-- `dtype=..., shape=[...]` suffix in place of PyTorch's optional dtype.
local T = require 'tide.testing'
local tide = require 'tide'

local nan, inf = 0 / 0, math.huge

local function f32(data) return tide.tensor(data, { dtype = 'f32' }) end

-- Runs fn with some print options set, restoring the previous ones after.
local function with_options(opts, fn)
  local saved = tide.get_printoptions()
  tide.set_printoptions(opts)
  local ok, err = pcall(fn)
  tide.set_printoptions(saved)
  if not ok then error(err, 0) end
end

T.test('integer-valued floats print with a trailing point', function()
  T.eq(tostring(tide.full({ 2, 2 }, 3, { dtype = 'f32' })),
    'tensor([[3., 3.],\n        [3., 3.]], dtype=f32, shape=[2, 2])')
  T.eq(tostring(f32 { 0, 0 }), 'tensor([0., 0.], dtype=f32, shape=[2])')
  T.eq(tostring(f32 { 100, 1 }), 'tensor([100.,   1.], dtype=f32, shape=[2])')
end)

T.test('fractional values use four decimals', function()
  T.eq(tostring(f32 { 0.5, 0.25, 1 / 3 }), 'tensor([0.5000, 0.2500, 0.3333], dtype=f32, shape=[3])')
  T.eq(tostring(f32 { 0, 1.5 }), 'tensor([0.0000, 1.5000], dtype=f32, shape=[2])')
  T.eq(tostring(tide.tensor({ 0.12345678 }, { dtype = 'f64' })), 'tensor([0.1235], dtype=f64, shape=[1])')
end)

T.test('far-apart magnitudes switch to scientific notation', function()
  T.eq(tostring(f32 { 1e-5, 1 }), 'tensor([1.0000e-05, 1.0000e+00], dtype=f32, shape=[2])')
  T.eq(tostring(f32 { 123456.7, 1.5 }), 'tensor([1.2346e+05, 1.5000e+00], dtype=f32, shape=[2])')
  -- integer-valued: only the ratio and the 1e8 bound count
  T.eq(tostring(tide.tensor({ 1e9, 1 }, { dtype = 'f64' })), 'tensor([1.0000e+09, 1.0000e+00], dtype=f64, shape=[2])')
  T.eq(tostring(f32 { 1000, 1 }), 'tensor([1000.,    1.], dtype=f32, shape=[2])')
  T.eq(tostring(f32 { -1e-5, 1 }), 'tensor([-1.0000e-05,  1.0000e+00], dtype=f32, shape=[2])')
end)

T.test('nan and infinities', function()
  T.eq(tostring(f32 { nan, 1 }), 'tensor([nan, 1.], dtype=f32, shape=[2])')
  T.eq(tostring(f32 { 1.5, nan, inf, -inf }), 'tensor([1.5000,    nan,    inf,   -inf], dtype=f32, shape=[4])')
  T.eq(tostring(f32 { nan, nan }), 'tensor([nan, nan], dtype=f32, shape=[2])')
  T.eq(tostring(f32 { -inf, 2 }), 'tensor([-inf, 2.], dtype=f32, shape=[2])')
  -- a nan with its sign bit set still prints as nan
  T.eq(tostring(f32 { -nan }), 'tensor([nan], dtype=f32, shape=[1])')
end)

T.test('negative values align on the right', function()
  T.eq(tostring(f32 { { -1.5, 2.25 }, { 100, -3 } }),
    'tensor([[ -1.5000,   2.2500],\n        [100.0000,  -3.0000]], dtype=f32, shape=[2, 2])')
  T.eq(tostring(f32 { -1, 2, 0 }), 'tensor([-1.,  2.,  0.], dtype=f32, shape=[3])')
  T.eq(tostring(tide.tensor { -10, 5 }), 'tensor([-10,   5], dtype=i64, shape=[2])')
end)

T.test('bool prints true and false', function()
  T.eq(tostring(tide.tensor { true, false }), 'tensor([ true, false], dtype=bool, shape=[2])')
  T.eq(tostring(tide.tensor(true)), 'tensor(true, dtype=bool, shape=[])')
end)

T.test('integer dtypes print plainly', function()
  T.eq(tostring(tide.arange(6):view(2, 3)), 'tensor([[0, 1, 2],\n        [3, 4, 5]], dtype=i64, shape=[2, 3])')
  T.eq(tostring(tide.tensor({ 200, 3 }, { dtype = 'u8' })), 'tensor([200,   3], dtype=u8, shape=[2])')
  T.eq(tostring(tide.tensor({ -7, 12 }, { dtype = 'i32' })), 'tensor([-7, 12], dtype=i32, shape=[2])')
  T.eq(tostring(tide.tensor({ 50257, 1 }, { dtype = 'u16' })), 'tensor([50257,     1], dtype=u16, shape=[2])')
  -- i64 values past 2^53 keep every digit
  T.eq(tostring(tide.tensor { 2 ^ 62, -2 ^ 62 }),
    'tensor([ 4611686018427387904, -4611686018427387904], dtype=i64, shape=[2])')
end)

T.test('0-d tensors', function()
  T.eq(tostring(tide.tensor(3.5)), 'tensor(3.5000, dtype=f32, shape=[])')
  T.eq(tostring(tide.tensor(7)), 'tensor(7, dtype=i64, shape=[])')
  T.eq(tostring(tide.tensor(3, { dtype = 'f32' })), 'tensor(3., dtype=f32, shape=[])')
  T.eq(tostring(tide.tensor(nan)), 'tensor(nan, dtype=f32, shape=[])')
  T.eq(tostring(tide.arange(5):select(1, 2)), 'tensor(1, dtype=i64, shape=[])')
end)

T.test('empty tensors', function()
  T.eq(tostring(tide.zeros(0, 3)), 'tensor([], dtype=f32, shape=[0, 3])')
  T.eq(tostring(tide.zeros(0)), 'tensor([], dtype=f32, shape=[0])')
  T.eq(tostring(tide.zeros({ 2, 0 }, { dtype = 'i64' })), 'tensor([], dtype=i64, shape=[2, 0])')
end)

T.test('3-d and 4-d nesting with blank lines between blocks', function()
  T.eq(tostring(tide.arange(8, { dtype = 'f32' }):view(2, 2, 2)),
    'tensor([[[0., 1.],\n' ..
    '         [2., 3.]],\n' ..
    '\n' ..
    '        [[4., 5.],\n' ..
    '         [6., 7.]]], dtype=f32, shape=[2, 2, 2])')
  T.eq(tostring(tide.zeros(2, 1, 1, 1)),
    'tensor([[[[0.]]],\n\n\n        [[[0.]]]], dtype=f32, shape=[2, 1, 1, 1])')
end)

T.test('large tensors are summarised', function()
  local big = tide.ones(2000, 2000)
  local row = '[1., 1., 1.,  ..., 1., 1., 1.]'
  local expected = 'tensor([' .. row .. ',\n' ..
    '        ' .. row .. ',\n' ..
    '        ' .. row .. ',\n' ..
    '        ...,\n' ..
    '        ' .. row .. ',\n' ..
    '        ' .. row .. ',\n' ..
    '        ' .. row .. '], dtype=f32, shape=[2000, 2000])'
  -- only the 36 shown elements are copied out, not the 4M-element tensor
  local before = tide.memory().allocated
  local s = tostring(big)
  local copied = tide.memory().allocated - before
  T.eq(s, expected)
  T.truthy(s:find('...', 1, true))
  T.truthy(copied < 64 * 1024, 'printing copied ' .. copied .. ' bytes')
  T.eq(tostring(tide.arange(10000)),
    'tensor([   0,    1,    2,  ..., 9997, 9998, 9999], dtype=i64, shape=[10000])')
end)

T.test('the shared format comes from the shown elements only', function()
  -- the hidden middle holds a huge value that must not force scientific mode
  local t = tide.zeros(3000, { dtype = 'f32' })
  t[1500] = 1e20
  t[1] = 1.5
  T.eq(tostring(t), 'tensor([1.5000, 0.0000, 0.0000,  ..., 0.0000, 0.0000, 0.0000], dtype=f32,\n' ..
    '       shape=[3000])')
end)

T.test('summarised 3-d output', function()
  local s = tostring(tide.arange(2000):view(10, 10, 20))
  T.truthy(s:find('^tensor%(%[%[%[   0,    1,    2,  ...,   17,   18,   19%],\n'), s)
  T.truthy(s:find('\n\n        ...,\n\n', 1, true), s)
  T.truthy(s:find('\n         ...,\n', 1, true), s)
  T.truthy(s:find('[1980, 1981, 1982,  ..., 1997, 1998, 1999]]], dtype=i64,\n       shape=[10, 10, 20])', 1, true), s)
end)

T.test('non-contiguous views print their logical values', function()
  local t = tide.arange(6):view(2, 3)
  T.eq(tostring(t:t()), 'tensor([[0, 3],\n        [1, 4],\n        [2, 5]], dtype=i64, shape=[3, 2])')
  T.eq(tostring(t:narrow(2, 2, 2)), 'tensor([[1, 2],\n        [4, 5]], dtype=i64, shape=[2, 2])')
  T.eq(tostring(tide.arange(3):view(1, 3):expand(2, 3)), 'tensor([[0, 1, 2],\n        [0, 1, 2]], dtype=i64, shape=[2, 3])')
  -- summarised and transposed
  local big = tide.arange(3 * 2000):view(3, 2000):t()
  T.eq(tostring(big),
    'tensor([[   0, 2000, 4000],\n' ..
    '        [   1, 2001, 4001],\n' ..
    '        [   2, 2002, 4002],\n' ..
    '        ...,\n' ..
    '        [1997, 3997, 5997],\n' ..
    '        [1998, 3998, 5998],\n' ..
    '        [1999, 3999, 5999]], dtype=i64, shape=[2000, 3])')
end)

T.test('bf16 and f16 print their rounded values', function()
  T.eq(tostring(tide.tensor({ 0.1 }, { dtype = 'bf16' })), 'tensor([0.1001], dtype=bf16, shape=[1])')
  T.eq(tostring(tide.tensor({ 0.1, 1 / 3 }, { dtype = 'f16' })), 'tensor([0.1000, 0.3333], dtype=f16, shape=[2])')
  T.eq(tostring(tide.tensor({ 257 }, { dtype = 'bf16' })), 'tensor([256.], dtype=bf16, shape=[1])')
end)

T.test('long rows wrap with aligned continuation lines', function()
  T.eq(tostring(tide.arange(30, { dtype = 'f32' })),
    'tensor([ 0.,  1.,  2.,  3.,  4.,  5.,  6.,  7.,  8.,  9., 10., 11., 12., 13.,\n' ..
    '        14., 15., 16., 17., 18., 19., 20., 21., 22., 23., 24., 25., 26., 27.,\n' ..
    '        28., 29.], dtype=f32, shape=[30])')
  with_options({ linewidth = 30 }, function()
    T.eq(tostring(tide.arange(12)),
      'tensor([ 0,  1,  2,  3,  4,\n' ..
      '         5,  6,  7,  8,  9,\n' ..
      '        10, 11], dtype=i64,\n' ..
      '       shape=[12])')
    -- nested rows wrap at their own indent
    T.eq(tostring(tide.arange(12):view(2, 6)),
      'tensor([[ 0,  1,  2,  3,  4,\n' ..
      '          5],\n' ..
      '        [ 6,  7,  8,  9, 10,\n' ..
      '         11]], dtype=i64,\n' ..
      '       shape=[2, 6])')
  end)
  with_options({ linewidth = 1 }, function()
    T.eq(tostring(tide.arange(2)), 'tensor([0,\n        1],\n       dtype=i64,\n       shape=[2])')
  end)
end)

T.test('print options', function()
  with_options({ precision = 2 }, function()
    T.eq(tostring(f32 { 1 / 3, 2 }), 'tensor([0.33, 2.00], dtype=f32, shape=[2])')
    T.eq(tostring(f32 { 1e-5, 1 }), 'tensor([1.00e-05, 1.00e+00], dtype=f32, shape=[2])')
  end)
  with_options({ sci_mode = false }, function()
    T.eq(tostring(f32 { 1e-5, 1 }), 'tensor([0.0000, 1.0000], dtype=f32, shape=[2])')
  end)
  with_options({ sci_mode = true }, function()
    T.eq(tostring(f32 { 1.5, 2 }), 'tensor([1.5000e+00, 2.0000e+00], dtype=f32, shape=[2])')
  end)
  with_options({ threshold = 5, edgeitems = 1 }, function()
    T.eq(tostring(tide.arange(12):view(3, 4)),
      'tensor([[ 0,  ...,  3],\n        ...,\n        [ 8,  ..., 11]], dtype=i64, shape=[3, 4])')
    -- at or under the threshold nothing is elided
    T.eq(tostring(tide.arange(5)), 'tensor([0, 1, 2, 3, 4], dtype=i64, shape=[5])')
  end)
  with_options({ threshold = 5, edgeitems = 0 }, function()
    T.eq(tostring(tide.arange(10)), 'tensor([...], dtype=i64, shape=[10])')
  end)
  with_options({ profile = 'full' }, function()
    T.eq(tide.get_printoptions().threshold, math.huge)
    local s = tostring(tide.arange(1200))
    T.truthy(not s:find('...', 1, true))
  end)
  local o = tide.get_printoptions()
  T.eq(o.precision, 4); T.eq(o.threshold, 1000); T.eq(o.edgeitems, 3); T.eq(o.linewidth, 80)
  T.eq(o.sci_mode, 'auto')
  -- get_printoptions hands out a copy
  o.precision = 9
  T.eq(tide.get_printoptions().precision, 4)
end)

T.test('set_printoptions rejects bad options', function()
  T.raises(function() tide.set_printoptions { precison = 3 } end, "unknown option 'precison'")
  T.raises(function() tide.set_printoptions { precision = -1 } end, 'precision must be a non-negative integer')
  T.raises(function() tide.set_printoptions { threshold = 'x' } end, 'threshold')
  T.raises(function() tide.set_printoptions { edgeitems = 1.5 } end, 'edgeitems')
  T.raises(function() tide.set_printoptions { linewidth = 0 } end, 'linewidth')
  T.raises(function() tide.set_printoptions { sci_mode = 1 } end, 'sci_mode')
  T.raises(function() tide.set_printoptions { profile = 'tiny' } end, "unknown profile 'tiny'")
  T.raises(function() tide.set_printoptions(3) end, 'expected an options table')
  -- a rejected call changes nothing
  T.eq(tide.get_printoptions().precision, 4)
end)

T.test('t:print() writes the printed form', function()
  local out = {}
  local saved = _G.print
  _G.print = function(...) out[#out + 1] = table.concat({ ... }, '\t') end
  local ok, err = pcall(function() tide.arange(3):print() end)
  _G.print = saved
  if not ok then error(err, 0) end
  T.eq(out[1], 'tensor([0, 1, 2], dtype=i64, shape=[3])')
end)

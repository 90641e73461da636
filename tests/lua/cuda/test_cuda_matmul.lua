-- matmul, mm, bmm, mv, dot and F.linear on cuda against the CPU (tide-cudaemu
-- in CI, where cuBLASLt is the emulator's reference GEMM; a GPU in
-- tests/gpu/run.sh), forward and backward, in f32, f64 and bf16, with 1-d
-- operands, transposed views and broadcast batches; the TF32 switch; integer
-- products.
local T = require 'tide.testing'
local F = tide.F

local dtypes = { 'f32', 'f64', 'bf16' }

local function randn(shape, dt)
  return tide.randn(shape):to(dt)
end

-- fn(a, b) forward, then backward with the gradient g: returns y, a.grad, b.grad
local function with_grads(fn)
  return function(a, b, g)
    a = a:detach():requires_grad_(true)
    b = b:detach():requires_grad_(true)
    local y = fn(a, b)
    y:backward(g)
    return y, a.grad, b.grad
  end
end

-- parity of fn over operands of shapes sa and sb in every dtype, forward and backward
local function parity(name, fn, sa, sb)
  for _, dt in ipairs(dtypes) do
    local a, b = randn(sa, dt), randn(sb, dt)
    local y = fn(a, b)
    T.device_parity(fn, { a, b }, nil, ('%s %s forward'):format(name, dt))
    T.device_parity(with_grads(fn), { a, b, randn(y:shape(), dt) }, nil, ('%s %s backward'):format(name, dt))
  end
end

local mm = function(a, b) return a:matmul(b) end

-- whether a library whose path contains name is mapped into this process
local function mapped(name)
  local f = io.open('/proc/self/maps')
  if not f then return nil end
  local s = f:read('*a')
  f:close()
  return s:find(name, 1, true) ~= nil
end

-- first in the file: no matmul has run in this process yet
T.test('cuBLASLt is loaded by the first matmul, not before', function()
  local dev = T.need_cuda()
  local a, b = tide.randn(4, 3):to(dev), tide.randn(3, 2):to(dev)
  if tide.cuda.runtime() ~= 'CUDA' then return end  -- the emulator answers cuBLASLt itself
  T.eq(mapped('libcublasLt'), false, 'cuBLASLt mapped before the first matmul')
  a:matmul(b)
  T.eq(mapped('libcublasLt'), true, 'cuBLASLt not mapped after a matmul')
end)

T.test('2-d products: odd sizes, transposed views', function()
  T.need_cuda()
  parity('17x33 @ 33x5', mm, { 17, 33 }, { 33, 5 })
  parity('1x1 @ 1x1', mm, { 1, 1 }, { 1, 1 })
  parity('1x17 @ 17x33', mm, { 1, 17 }, { 17, 33 })
  parity('33x17 @ 17x1', mm, { 33, 17 }, { 17, 1 })
  -- transposed operands go to the GEMM as transpose flags, no copy
  parity('a:t() @ b:t()', function(a, b) return a:t():matmul(b:t()) end, { 9, 17 }, { 5, 9 })
  parity('a @ b:t()', function(a, b) return a:matmul(b:t()) end, { 17, 9 }, { 5, 9 })
  -- a view with a padded row stride (leading dim above the minimum), and one no GEMM layout describes (copied)
  parity('narrowed rows', function(a, b) return a:narrow(2, 2, 7):matmul(b:narrow(2, 1, 5)) end, { 6, 10 }, { 7, 8 })
  parity('strided both ways', function(a, b) return a:select(3, 2):matmul(b) end, { 6, 8, 2 }, { 8, 3 })
  parity('mm', function(a, b) return a:mm(b) end, { 4, 6 }, { 6, 3 })
end)

T.test('1-d operands: vector-matrix, matrix-vector, dot', function()
  T.need_cuda()
  parity('vec @ mat', mm, { 17 }, { 17, 5 })
  parity('mat @ vec', mm, { 5, 17 }, { 17 })
  parity('batch @ vec', mm, { 3, 5, 17 }, { 17 })
  parity('mv', function(a, b) return a:mv(b) end, { 6, 4 }, { 4 })
  parity('vec @ vec', mm, { 33 }, { 33 })
  parity('dot', function(a, b) return a:dot(b) end, { 7 }, { 7 })
end)

T.test('batched products: bmm, broadcast batch dims', function()
  T.need_cuda()
  parity('bmm', function(a, b) return a:bmm(b) end, { 3, 5, 7 }, { 3, 7, 4 })
  parity('bmm transposed', function(a, b) return a:transpose(2, 3):bmm(b:transpose(2, 3)) end, { 3, 7, 5 }, { 3, 4, 7 })
  parity('[2,3,4,5] @ [5,6]', mm, { 2, 3, 4, 5 }, { 5, 6 })
  parity('[5,6] @ [2,3,6,4]', mm, { 5, 6 }, { 2, 3, 6, 4 })
  parity('[2,1,4,5] @ [3,5,6]', mm, { 2, 1, 4, 5 }, { 3, 5, 6 })
  -- a batch dim permuted: entries no single batch stride describes
  parity('permuted batch', function(a, b) return a:transpose(1, 2):matmul(b) end, { 3, 2, 4, 5 }, { 2, 3, 5, 6 })
end)

T.test('F.linear forward and backward', function()
  T.need_cuda()
  for _, dt in ipairs(dtypes) do
    local x, w, bias = randn({ 2, 3, 8 }, dt), randn({ 5, 8 }, dt), randn({ 5 }, dt)
    local function lin(x_, w_, b_, g)
      x_ = x_:detach():requires_grad_(true)
      w_ = w_:detach():requires_grad_(true)
      b_ = b_:detach():requires_grad_(true)
      local y = F.linear(x_, w_, b_)
      y:backward(g)
      return y, x_.grad, w_.grad, b_.grad
    end
    T.device_parity(lin, { x, w, bias, randn({ 2, 3, 5 }, dt) }, nil, 'linear ' .. dt)
  end
end)

T.test('integer products on cuda are exact', function()
  T.need_cuda()
  for _, dt in ipairs { 'i64', 'i32' } do
    local a = (tide.randn(3, 4, 5) * 100):to(dt)
    local b = (tide.randn(5, 6) * 100):to(dt)
    T.device_parity(mm, { a, b }, { exact = true }, 'integer matmul ' .. dt)
    T.device_parity(function(x, y) return x:transpose(2, 3):matmul(y:narrow(1, 1, 4)) end, { a, b }, { exact = true },
      'integer strided ' .. dt)
  end
end)

T.test('TF32 is off by default and switchable', function()
  T.need_cuda()
  local a, b = tide.randn(33, 65), tide.randn(65, 17)
  -- off: f32 accuracy
  T.device_parity(mm, { a, b }, nil, 'f32 without TF32')
  T.eq(tide.cuda.set_allow_tf32(true), false, 'TF32 was off')
  local ok, err = pcall(T.device_parity, mm, { a, b }, { rtol = 1e-2, atol = 5e-2 }, 'f32 with TF32')
  T.eq(tide.cuda.set_allow_tf32(false), true, 'TF32 was on')
  if not ok then error(err, 0) end
  T.device_parity(mm, { a, b }, nil, 'f32 with TF32 off again')
end)

T.test('k == 0 and empty products on cuda', function()
  T.need_cuda()
  for _, dt in ipairs(dtypes) do
    T.device_parity(mm, { tide.zeros({ 3, 0 }, { dtype = dt }), tide.zeros({ 0, 4 }, { dtype = dt }) }, { exact = true },
      'k == 0 ' .. dt)
    T.device_parity(mm, { tide.zeros({ 0, 5 }, { dtype = dt }), randn({ 5, 4 }, dt) }, { exact = true }, 'm == 0 ' .. dt)
  end
end)

-- the fused layers (tide_linear_act): cuBLASLt's BIAS / GELU_AUX_BIAS epilogues forward, BGRADA/B for the
-- bias gradient, their fallbacks (n not a multiple of 8, f64), against the CPU's unfused arithmetic
T.test('F.linear and F.conv1d_gpt2 with bias and GELU fused: forward and backward', function()
  T.need_cuda()
  for _, dt in ipairs(dtypes) do
    for _, n in ipairs { 16, 9 } do
      for _, act in ipairs { 'gelu', 'none' } do
        local a = act == 'gelu' and 'gelu' or nil
        for _, transw in ipairs { true, false } do
          local fn = transw and F.linear or F.conv1d_gpt2
          local x, bias = randn({ 2, 5, 12 }, dt), randn({ n }, dt)
          local w = randn(transw and { n, 12 } or { 12, n }, dt)
          local function layer(x_, w_, b_, g)
            x_ = x_:detach():requires_grad_(true)
            w_ = w_:detach():requires_grad_(true)
            b_ = b_:detach():requires_grad_(true)
            local y = fn(x_, w_, b_, a)
            y:backward(g)
            return y, x_.grad, w_.grad, b_.grad
          end
          -- bf16: the fused epilogue rounds once where the CPU's unfused ops round after each step
          local opts = dt == 'bf16' and { rtol = 2e-2, atol = 2e-2 } or nil
          T.device_parity(layer, { x, w, bias, randn({ 2, 5, n }, dt) }, opts,
            ('%s %s n=%d act=%s'):format(transw and 'linear' or 'conv1d', dt, n, act))
          -- no bias, weight frozen: only dx
          T.device_parity(function(x_, w_, g)
            x_ = x_:detach():requires_grad_(true)
            local y = fn(x_, w_, nil, a)
            y:backward(g)
            return y, x_.grad
          end, { x, w, randn({ 2, 5, n }, dt) }, opts, ('%s %s n=%d act=%s no bias'):format(transw and 'linear' or 'conv1d', dt, n, act))
        end
      end
    end
  end
end)

T.test('GELU on bf16 reads and writes bf16 on cuda, forward and backward', function()
  T.need_cuda()
  local x = randn({ 4, 33 }, 'bf16') * 3
  T.device_parity(function(x_) return x_:gelu() end, { x }, nil, 'gelu bf16')
  T.device_parity(function(x_, g)
    x_ = x_:detach():requires_grad_(true)
    local y = x_:gelu()
    y:backward(g)
    return y, x_.grad
  end, { x, randn({ 4, 33 }, 'bf16') }, { rtol = 1e-2, atol = 1e-2 }, 'gelu bf16 backward')
  -- a strided view and in place
  T.device_parity(function(x_) return x_:t():gelu() end, { x }, nil, 'gelu bf16 transposed')
  T.device_parity(function(x_) local c = x_:clone(); c:gelu_(); return c end, { x }, nil, 'gelu_ bf16')
end)

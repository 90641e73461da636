-- Tensor-op benchmarks: tide against its peers in one run, printed as ratios.
--
--   ./build/tide bench/tensor_ops.lua [--quick] [--only=bandwidth|matmul|overhead]
--
-- (a) bandwidth: large contiguous f32 elementwise ops and reductions against
--     a plain memcpy (ffi.copy) of the same size, in GB/s of bytes touched;
-- (b) f32 matmul through tide against cblas_sgemm called directly through
--     the FFI on the same buffers, in GFLOP/s;
-- (c) the cost of one small op called from a Lua loop, in ns per call.
--
-- Timing is wall-clock on CLOCK_MONOTONIC; every figure is the best of
-- several repetitions after warm-up calls, with the median beside it.
local ffi = require 'ffi'
local tide = tide or require 'tide'
local C = ffi.C

local args = tide.args or {}
local quick = args.quick == true
local only = args.only

-- clock, libc and CBLAS declarations, under names of our own (bound to the
-- real symbols with __asm__) so they cannot clash with declarations that
-- other modules make of the same functions
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } tide_bench_timespec;
  int tide_bench_clock_gettime(int clk_id, tide_bench_timespec *ts) __asm__("clock_gettime");
  void *tide_bench_malloc(size_t n) __asm__("malloc");
  void tide_bench_free(void *p) __asm__("free");
  void tide_bench_sgemm(int order, int transa, int transb, int m, int n, int k, float alpha,
                        const float *a, int lda, const float *b, int ldb, float beta,
                        float *c, int ldc) __asm__("cblas_sgemm");
  float tide_bench_sasum(int n, const float *x, int incx) __asm__("cblas_sasum");
  char *tide_bench_openblas_config(void) __asm__("openblas_get_config");
  char *tide_bench_openblas_corename(void) __asm__("openblas_get_corename");
]]

local CLOCK_MONOTONIC = 1
local ts = ffi.new('tide_bench_timespec')
local function now()
  C.tide_bench_clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

-- OpenBLAS: the symbols the tide executable already links, else the library.
local blas = C
if not pcall(function() return C.tide_bench_sgemm end) then blas = ffi.load('openblas') end
local CblasRowMajor, CblasNoTrans, CblasTrans = 101, 111, 112

-- Times fn() `reps` times after `warm` untimed calls. `setup` (untimed) runs
-- before each call, `teardown` (untimed) after it, once fn's result has been
-- let go. Returns best, median.
local function timeit(fn, reps, warm, setup, teardown)
  local times = {}
  for i = 1 - (warm or 1), reps do
    if setup then setup() end
    local t0 = now()
    local r = fn()
    local t = now() - t0
    r = nil  -- drop the result before teardown collects
    if teardown then teardown() end
    if i >= 1 then times[i] = t end
  end
  table.sort(times)
  return times[1], times[math.floor((#times + 1) / 2)]
end

-- Frees dropped results now, outside the timed region.
local function drop() collectgarbage('collect') end

local function sh(cmd)
  local p = io.popen(cmd .. ' 2>/dev/null')
  if not p then return '' end
  local s = p:read('*a') or ''
  p:close()
  return (s:gsub('%s+$', ''))
end

local function header()
  print(('tide %s bench/tensor_ops.lua%s'):format(tide.version, quick and ' --quick' or ''))
  print(('date: %s'):format(os.date('!%Y-%m-%d %H:%M UTC')))
  local model = sh("lscpu | sed -n 's/^Model name: *//p' | head -1")
  print(('cpu: %s, %s cores; tide threads: %d'):format(model, sh('nproc'), tide.get_num_threads()))
  local ok, cfg = pcall(function() return ffi.string(blas.tide_bench_openblas_config()) end)
  local ok2, core = pcall(function() return ffi.string(blas.tide_bench_openblas_corename()) end)
  print(('openblas: %s; kernel: %s'):format(ok and cfg or '?', ok2 and core or '?'))
end

-- (a) bandwidth ---------------------------------------------------------------

local function bandwidth()
  local mb = quick and 16 or 64
  local n = mb * 1024 * 1024 / 4          -- f32 elements per tensor
  local nbytes = n * 4
  local reps = quick and 5 or 10
  print()
  print(('(a) bandwidth: contiguous f32 tensors of %d MB (%d elements)'):format(mb, n))
  print('    bytes counted = bytes read + bytes written by the op: memcpy of N bytes counts 2N,')
  print('    a:add(b) 3N, a:sum() N. GB/s = bytes counted / best time.')
  print('    "vs memcpy": GB/s over ffi.copy\'s GB/s (one thread, warm destination, same run);')
  print('    "vs copy_": GB/s over dst:copy_(a), which is memcpy cut into chunks over the tide')
  print('    threads, so it is the like-for-like reference when tide runs more than one thread.')
  print('    "cache" = the result block comes from the allocator cache of freed blocks (the steady')
  print('    state of a loop); "first touch" = the cache is emptied first, so the result is fresh')
  print('    mmap\'d memory whose pages fault in as the op writes them; "warm" = in place.')

  local a = tide.full({ n }, 0.5)
  local b = tide.full({ n }, 0.25)
  local dst = tide.zeros(n)
  local mat = a:view(4096, n / 4096)   -- the same bytes as 4096 rows for sum(-1)
  local empty_cache = tide.empty_cache or function() end

  local rows = {}
  local base_cpy, base_par
  local function row(name, counted, fn, opts)
    opts = opts or {}
    local best, med = timeit(fn, reps, 2, opts.setup, opts.teardown or drop)
    local gbs = counted * nbytes / best / 1e9
    if opts.base == 'memcpy' then base_cpy = gbs end
    if opts.base == 'copy_' then base_par = gbs end
    local r = { name = name, counted = counted, best = best, med = med, gbs = gbs,
                vs_cpy = gbs / base_cpy, vs_par = base_par and gbs / base_par }
    rows[#rows + 1] = r
    print(('  %-44s %3dN %8.2f ms %8.2f ms %7.1f GB/s %6.0f%% %6s'):format(name, counted, best * 1e3, med * 1e3, gbs,
      r.vs_cpy * 100, r.vs_par and ('%5.0f%%'):format(r.vs_par * 100) or ''))
  end

  local nothing = function() end
  local cold = function() drop(); empty_cache() end
  local threads = tide.get_num_threads()
  for _, nt in ipairs(threads > 1 and { threads, 1 } or { 1 }) do
    tide.set_num_threads(nt)
    os.execute('sleep 0.5')
    print()
    print(('  tide threads = %d (ffi.copy is always one thread)'):format(nt))
    print(('  %-44s %4s %11s %11s %12s %7s %6s'):format('op', 'bytes', 'best', 'median', 'bandwidth', 'vs memcpy', 'vs copy_'))
    row('memcpy: ffi.copy, warm destination', 2, function() ffi.copy(dst._c.data, a._c.data, nbytes) end,
        { base = 'memcpy', teardown = nothing })
    row('dst:copy_(a), warm', 2, function() return dst:copy_(a) end, { base = 'copy_', teardown = nothing })
    row('memcpy into a fresh malloc block', 2, function()
      local p = C.tide_bench_malloc(nbytes)
      ffi.copy(p, a._c.data, nbytes)
      C.tide_bench_free(p)
    end, { teardown = nothing })
    row('a:clone(), cache', 2, function() return a:clone() end)
    row('a:clone(), first touch', 2, function() return a:clone() end, { setup = cold })
    row('a:add(b), cache', 3, function() return a:add(b) end)
    row('a:add(b), first touch', 3, function() return a:add(b) end, { setup = cold })
    row('a:mul(b), cache', 3, function() return a:mul(b) end)
    row('a:exp(), cache', 2, function() return a:exp() end)
    row('dst:add_(b), warm (in place)', 3, function() return dst:add_(b) end, { teardown = nothing })
    row('dst:mul_(b), warm (in place)', 3, function() return dst:mul_(b) end, { teardown = nothing })
    row('dst:exp_(), warm (in place)', 2, function() return dst:exp_() end, {
      teardown = nothing,
      setup = function() dst:fill_(0.5) end })  -- keep the values finite and normal
    row('a:sum(), all elements', 1, function() return a:sum() end)
    row(('m:sum(-1), %d rows of %d'):format(4096, n / 4096), 1, function() return mat:sum(-1) end)
    -- a tuned read-only pass for comparison: OpenBLAS's sum of |x|, on the
    -- same number of threads (tide.set_num_threads sets OpenBLAS's too)
    local x = ffi.cast('const float*', a._c.data)
    row('peer: cblas_sasum(a), read-only', 1, function() blas.tide_bench_sasum(n, x, 1) end, { teardown = nothing })
  end
  tide.set_num_threads(threads)
  return rows
end

-- (b) matmul -----------------------------------------------------------------------

local function matmul()
  local sizes = quick and { 256, 512, 1024 } or { 512, 1024, 2048, 4096 }
  local reps_for = { [256] = 20, [512] = 20, [1024] = 10, [2048] = 5, [4096] = 3 }
  print()
  print('(b) f32 matmul, square N x N: tide a:matmul(b) vs cblas_sgemm through the FFI on the same buffers')
  print('    GFLOP/s = 2 N^3 / best time; ratio = tide / BLAS. tide allocates its result each call;')
  print('    BLAS writes into a preallocated, already-touched buffer. Calls alternate tide, BLAS.')
  print(('  %-6s %-14s %11s %11s %10s %10s %7s'):format('N', 'case', 'tide best', 'BLAS best', 'tide GF/s', 'BLAS GF/s', 'ratio'))
  local rnd = tide.randn or tide.rand
  local results = {}
  for _, N in ipairs(sizes) do
    local a = rnd and rnd(N, N) or tide.full({ N, N }, 0.5)
    local b = rnd and rnd(N, N) or tide.full({ N, N }, 0.25)
    local c = tide.zeros(N, N)
    local A, B, Cp = ffi.cast('float*', a._c.data), ffi.cast('float*', b._c.data), ffi.cast('float*', c._c.data)
    local reps = reps_for[N] or 3
    local bt = b:t()
    for _, case in ipairs { { 'a @ b', b, CblasNoTrans }, { 'a @ b:t()', bt, CblasTrans } } do
      if not (case[1] == 'a @ b:t()' and N == 4096) then
        local rhs, tb = case[2], case[3]
        local tt, tb_ = {}, {}
        -- one warm-up each, then alternate so drift hits both sides alike
        local r = a:matmul(rhs); r = nil; drop()
        blas.tide_bench_sgemm(CblasRowMajor, CblasNoTrans, tb, N, N, N, 1, A, N, B, N, 0, Cp, N)
        for i = 1, reps do
          local t0 = now()
          r = a:matmul(rhs)
          tt[i] = now() - t0
          r = nil
          drop()
          t0 = now()
          blas.tide_bench_sgemm(CblasRowMajor, CblasNoTrans, tb, N, N, N, 1, A, N, B, N, 0, Cp, N)
          tb_[i] = now() - t0
        end
        table.sort(tt)
        table.sort(tb_)
        local flops = 2 * N ^ 3
        local gt, gb = flops / tt[1] / 1e9, flops / tb_[1] / 1e9
        results[#results + 1] = { N = N, case = case[1], tide = tt[1], blas = tb_[1], ratio = gt / gb }
        print(('  %-6d %-14s %8.2f ms %8.2f ms %10.1f %10.1f %6.1f%%'):format(N, case[1], tt[1] * 1e3, tb_[1] * 1e3, gt, gb,
                                                                           gt / gb * 100))
      end
    end
    -- the results agree (same BLAS, same inputs)
    local r = a:matmul(b)
    blas.tide_bench_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1, A, N, B, N, 0, Cp, N)
    local R = ffi.cast('float*', r._c.data)
    for _, i in ipairs { 0, N + 1, N * N - 1 } do
      assert(math.abs(R[i] - Cp[i]) <= 1e-3 * (1 + math.abs(Cp[i])), 'tide and BLAS disagree')
    end
  end
  return results
end

-- (c) small-op overhead --------------------------------------------------------------

local function overhead()
  local iters = quick and 20000 or 200000
  print()
  print(('(c) one small op from a Lua loop: ns per call, best of 5 loops of %d calls'):format(iters))
  local a, b = tide.ones(4), tide.ones(4)
  local m2 = tide.ones(2, 2)
  local live = C.tide_mem_live_bytes
  local cases = {
    { 'tide.C.tide_mem_live_bytes() (raw FFI)', function(n) local s = 0; for _ = 1, n do s = s + live() end; return s end },
    { 't:size(1)', function(n) local s = 0; for _ = 1, n do s = s + a:size(1) end; return s end },
    { 't:dim()', function(n) local s = 0; for _ = 1, n do s = s + a:dim() end; return s end },
    { 't:t() (a new view)', function(n) local r; for _ = 1, n do r = m2:t() end; return r end },
    { 'a:add(b), 4 elements, new result', function(n) local r; for _ = 1, n do r = a:add(b) end; return r end },
    { 'a:add_(b), 4 elements, in place', function(n) for _ = 1, n do a:add_(b) end end },
    { 'a:matmul(b), 2x2 @ 2x2, new result', function(n) local r; for _ = 1, n do r = m2:matmul(m2) end; return r end },
  }
  local results = {}
  for _, c in ipairs(cases) do
    local best = timeit(function() return c[2](iters) end, 5, 1, nil, drop)
    local ns = best / iters * 1e9
    results[#results + 1] = { name = c[1], ns = ns }
    print(('  %-42s %8.0f ns'):format(c[1], ns))
  end
  return results
end

-- Lets the thread pools go idle between sections: OpenBLAS's threads and
-- OpenMP's spin for a while after their last job.
local function settle() os.execute('sleep 0.5') end

header()
if not only or only == 'bandwidth' then bandwidth(); settle() end
if not only or only == 'matmul' then matmul(); settle() end
if not only or only == 'overhead' then overhead() end

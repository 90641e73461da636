-- tide.dist's collectives against a single-process reference. The same file
-- runs alone (a world of one, in the Lua suite) and under
-- `mpirun -np 2` (tests/dist/run_mpi.sh; ctest dist_collectives_np2): every
-- rank builds its input from its rank, and the expected result is computed
-- here in Lua from all ranks' inputs, for every dtype, odd sizes and zero-size
-- tensors, contiguous or not, on the CPU and (tide-cudaemu, a GPU) on cuda.
local T = require 'tide.testing'
local ffi = require 'ffi'
local d = tide.dist

-- TIDE_TEST_DIST_NCCL=1 (tests/gpu/run.sh, on a GPU): CUDA tensors through NCCL, a world of one
local use_nccl = os.getenv('TIDE_TEST_DIST_NCCL') == '1'
local info = d.init(use_nccl and { nccl = true } or nil)
local R, W = d.rank(), d.world_size()

local dtypes = { 'f32', 'f64', 'bf16', 'f16', 'i32', 'i64', 'u8', 'u16', 'bool' }
local sizes = { 0, 1, 7, 1000, 4097 }

-- Rank r's element i (0-based) of a tensor of dtype: exact in every dtype,
-- and their sums, maxima, minima and (floats) averages over two ranks too.
local function value(dt, r, i)
  if dt == 'bool' then return (i + r) % 3 == 0 and 1 or 0 end
  if dt == 'u8' or dt == 'u16' then return (i % 11) + 3 * r end
  if dt == 'i32' or dt == 'i64' then return (i % 11) - 5 + 3 * r end
  return (i % 7) - 3 + 0.5 * r
end

local function values(dt, r, n)
  local v = {}
  for i = 0, n - 1 do v[i + 1] = value(dt, r, i) end
  return v
end

local function make(dt, list, device)
  local t = tide.tensor(list, { dtype = dt })
  if #list == 0 then t = tide.zeros(0, { dtype = dt }) end
  if device then t = t:to(device) end
  return t
end

local function reduce_ref(dt, op, n)
  local out = {}
  for i = 0, n - 1 do
    local acc = value(dt, 0, i)
    for r = 1, W - 1 do
      local x = value(dt, r, i)
      if op == 'sum' or op == 'avg' then acc = acc + x
      elseif op == 'max' then acc = math.max(acc, x)
      else acc = math.min(acc, x) end
    end
    if op == 'avg' then acc = acc / W end
    if dt == 'bool' then acc = acc ~= 0 and 1 or 0 end
    out[i + 1] = acc
  end
  return out
end

local function check_equal(got, want_list, dt, what)
  T.eq(got:dtype(), dt, what)
  T.same(got:to('cpu'), make(dt, want_list), what)
end

local function ops_for(dt)
  if dt == 'f32' or dt == 'f64' or dt == 'bf16' or dt == 'f16' then return { 'sum', 'avg', 'max', 'min' } end
  return { 'sum', 'max', 'min' }
end

T.test('init joins the world the launcher started', function()
  T.eq(info.rank, R)
  T.eq(info.world_size, W)
  T.eq(d.init(), info)  -- a second init returns the same job
  T.eq(d.is_main_process(), R == 0)
  T.eq(d.local_rank(), info.local_rank)
  T.truthy(d.is_initialized())
  T.eq(info.backend, W > 1 and 'mpi' or 'none')
end)

T.test('all_reduce: every dtype, op and size against the reference', function()
  for _, dt in ipairs(dtypes) do
    for _, op in ipairs(ops_for(dt)) do
      for _, n in ipairs(sizes) do
        local t = make(dt, values(dt, R, n))
        T.eq(d.all_reduce(t, op), t)
        check_equal(t, reduce_ref(dt, op, n), dt, ('all_reduce %s %s n=%d'):format(dt, op, n))
      end
    end
  end
end)

T.test('all_reduce defaults to sum and writes through a strided view', function()
  local base = make('f32', values('f32', R, 12)):view(3, 4)
  local v = base:transpose(1, 2)  -- not contiguous: staged and copied back
  T.truthy(not v:is_contiguous())
  d.all_reduce(v)
  T.same(base:reshape(12), make('f32', reduce_ref('f32', 'sum', 12)))
  local s = tide.tensor(R + 1.0, { dtype = 'f64' })  -- 0-d
  d.all_reduce(s, 'max')
  T.eq(s:item(), W)
end)

T.test('broadcast: every dtype and size from the last rank', function()
  for _, dt in ipairs(dtypes) do
    for _, n in ipairs(sizes) do
      local t = make(dt, values(dt, R, n))
      T.eq(d.broadcast(t, W - 1), t)
      check_equal(t, values(dt, W - 1, n), dt, ('broadcast %s n=%d'):format(dt, n))
    end
  end
  local t = make('i64', { R, R })
  d.broadcast(t)  -- src defaults to rank 0
  T.same(t, make('i64', { 0, 0 }))
end)

T.test('all_gather: ranks concatenated along dim 1, every dtype and size', function()
  for _, dt in ipairs(dtypes) do
    for _, n in ipairs(sizes) do
      local want = {}
      for r = 0, W - 1 do
        for _, x in ipairs(values(dt, r, n)) do want[#want + 1] = x end
      end
      local out = tide.zeros(W * n, { dtype = dt })
      T.eq(d.all_gather(out, make(dt, values(dt, R, n))), out)
      check_equal(out, want, dt, ('all_gather %s n=%d'):format(dt, n))
    end
  end
  -- 2-d: [W * 2, 3] from [2, 3], the input a strided view
  local mine = make('f32', values('f32', R, 6)):view(3, 2):t()
  local out = tide.zeros(W * 2, 3)
  d.all_gather(out, mine)
  for r = 0, W - 1 do
    T.same(out:narrow(1, 1 + 2 * r, 2), make('f32', values('f32', r, 6)):view(3, 2):t())
  end
end)

T.test('reduce_scatter: rank r gets the reduction of part r', function()
  for _, dt in ipairs(dtypes) do
    for _, op in ipairs(ops_for(dt)) do
      for _, n in ipairs({ 0, 1, 7, 513 }) do
        local full = reduce_ref(dt, op, W * n)
        local want = {}
        for i = 1, n do want[i] = full[R * n + i] end
        local out = tide.zeros(n, { dtype = dt })
        T.eq(d.reduce_scatter(out, make(dt, values(dt, R, W * n)), op), out)
        check_equal(out, want, dt, ('reduce_scatter %s %s n=%d'):format(dt, op, n))
      end
    end
  end
end)

T.test('barrier and all_to_all_bytes (any bytes, empty strings)', function()
  d.barrier()
  local send = {}
  for r = 0, W - 1 do send[r + 1] = (r == R and '' or ('%d->%d\0\255'):format(R, r)) .. ('x'):rep(R * 1000 + r) end
  local got = d.all_to_all_bytes(send)
  T.eq(#got, W)
  for r = 0, W - 1 do
    T.eq(got[r + 1], (r == R and '' or ('%d->%d\0\255'):format(r, R)) .. ('x'):rep(r * 1000 + R))
  end
  T.raises(function() d.all_to_all_bytes({}) end, 'one string per rank')
  T.raises(function() d.all_to_all_bytes({ 1 }) end, 'expected a string')
end)

T.test('all_reduce_async: every dtype and op, several in flight, equal to the blocking all_reduce bitwise', function()
  local started = {}
  for _, dt in ipairs(dtypes) do
    for _, op in ipairs(ops_for(dt)) do
      for _, n in ipairs({ 0, 7, 4097 }) do
        local t = make(dt, values(dt, R, n))
        started[#started + 1] = { h = d.all_reduce_async(t, op), t = t, dt = dt, op = op, n = n }
      end
    end
  end
  -- a strided view and a f32 buffer whose average is not exact in binary: staging and division as the blocking path
  local base = tide.arange(0, 24, { dtype = 'f32' }):view({ 4, 6 }) * (R + 1) / 3
  local view = base:t()
  local odd = tide.arange(0, 1000, { dtype = 'f32' }) * (0.1 * (R + 1))
  local hv, ho = d.all_reduce_async(view, 'avg'), d.all_reduce_async(odd, 'avg')
  T.truthy(#started > 40)
  -- waited for in reverse order: each is complete and correct whatever the order of the waits
  for i = #started, 1, -1 do
    local s = started[i]
    T.eq(s.h:wait(), s.t)
    check_equal(s.t, reduce_ref(s.dt, s.op, s.n), s.dt, ('all_reduce_async %s %s n=%d'):format(s.dt, s.op, s.n))
    T.truthy(s.h:is_completed())
    T.eq(s.h:wait(), s.t)  -- a second wait returns at once
  end
  ho:wait(); hv:wait()
  local base2 = tide.arange(0, 24, { dtype = 'f32' }):view({ 4, 6 }) * (R + 1) / 3
  local odd2 = tide.arange(0, 1000, { dtype = 'f32' }) * (0.1 * (R + 1))
  d.all_reduce(base2:t(), 'avg')
  d.all_reduce(odd2, 'avg')
  T.same(base, base2)  -- bitwise: T.same on f32 compares exactly
  T.same(odd, odd2)
end)

T.test('all_reduce_async: a blocking collective between start and wait keeps the order', function()
  local a = tide.full({ 5 }, R + 1)
  local h = d.all_reduce_async(a, 'sum')
  local b = tide.full({ 3 }, R + 2, { dtype = 'i64' })
  d.all_reduce(b, 'max')  -- runs after a's reduction on every rank
  T.same(b, tide.full({ 3 }, W + 1, { dtype = 'i64' }))
  d.barrier()
  h:wait()
  T.same(a, tide.full({ 5 }, W * (W + 1) / 2))
  -- a handle dropped without wait is freed safely (its reduction still runs in order)
  do local _ = d.all_reduce_async(tide.ones(4)) end
  collectgarbage('collect')
  local c = tide.ones(2)
  d.all_reduce(c)
  T.same(c, tide.full({ 2 }, W))
end)

T.test('all_reduce_async: bad calls fail at the start, mismatches at wait naming the call', function()
  T.raises(function() d.all_reduce_async(tide.ones(2), 'mean') end, "op must be 'sum', 'avg', 'max' or 'min'")
  T.raises(function() d.all_reduce_async(tide.ones(2, { dtype = 'i32' }), 'avg') end, 'avg needs a floating-point')
  T.raises(function() d.all_reduce_async({}, 'sum') end, 'expected a tensor')
  if W == 1 then return end
  local ok_t = tide.ones(3)
  local h1 = d.all_reduce_async(ok_t)
  local h2 = d.all_reduce_async(tide.zeros(3 + R), 'max')
  local h3 = d.all_reduce_async(tide.ones(2))
  h1:wait()
  T.same(ok_t, tide.full({ 3 }, W))
  local err = T.raises(function() h2:wait() end, 'disagree')
  T.truthy(err:find('all_reduce_async', 1, true), err)
  T.truthy(err:find(('rank %d called all_reduce(max) of f32 [%d]'):format(R, 3 + R), 1, true), err)
  T.same(h3:wait(), tide.full({ 2 }, W))  -- the next one agrees again
end)

T.test('bad calls are clear errors, and the job goes on after them', function()
  T.raises(function() d.all_reduce(tide.ones(2), 'mean') end, "op must be 'sum', 'avg', 'max' or 'min'")
  T.raises(function() d.all_reduce(tide.ones(2, { dtype = 'i32' }), 'avg') end, 'avg needs a floating-point tensor')
  T.raises(function() d.all_reduce({}, 'sum') end, 'expected a tensor')
  T.raises(function() d.broadcast(tide.ones(2), W) end, 'outside the world')
  T.raises(function() d.all_gather(tide.zeros(W + 1), tide.ones(1)) end, 'world_size')
  T.raises(function() d.all_gather(tide.zeros(W, { dtype = 'f64' }), tide.ones(1)) end, 'dtype')
  T.raises(function() d.reduce_scatter(tide.zeros(2), tide.ones(2 * W + 1)) end, 'world_size')
  T.raises(function() d.init{ timeout = -1 } end, 'timeout')
  T.raises(function() d.init{ bogus = 1 } end, 'unknown option bogus')
  local t = tide.ones(3)
  d.all_reduce(t)
  T.same(t, tide.full({ 3 }, W))
end)

T.test('ranks calling with different shapes or collectives all get an error', function()
  if W == 1 then T.skip('needs two processes (ctest dist_collectives_np2)') end
  local err = T.raises(function() d.all_reduce(tide.zeros(3 + R)) end, 'disagree')
  -- this rank's call and another's, each named with its shape
  T.truthy(err:find(('rank %d called all_reduce(sum) of f32 [%d]'):format(R, 3 + R), 1, true), err)
  T.truthy(err:find('rank %d called all_reduce%(sum%) of f32 %[%d%]', (err:find('), rank', 1, true))), err)
  err = T.raises(function()
    if R == 0 then d.barrier() else d.broadcast(tide.zeros(2), 0) end
  end, 'disagree')
  T.truthy(err:find('barrier', 1, true) and err:find('broadcast(src=0) of f32 [2]', 1, true), err)
  err = T.raises(function() d.all_reduce(tide.zeros(2, { dtype = R == 0 and 'f32' or 'f64' })) end, 'disagree')
  -- and the next collective agrees again
  local t = tide.ones(2)
  d.all_reduce(t)
  T.same(t, tide.full({ 2 }, W))
end)

T.test('CUDA tensors: every collective and dtype (NCCL, or staged through the host)', function()
  local dev = T.need_cuda()
  T.eq(info.nccl, use_nccl)
  for _, dt in ipairs(dtypes) do
    for _, op in ipairs(ops_for(dt)) do
      local t = make(dt, values(dt, R, 1001), dev)
      d.all_reduce(t, op)
      T.eq(t.device, 'cuda:0')
      check_equal(t, reduce_ref(dt, op, 1001), dt, ('cuda all_reduce %s %s'):format(dt, op))
      local full = reduce_ref(dt, op, W * 9)
      local want = {}
      for i = 1, 9 do want[i] = full[R * 9 + i] end
      local out = tide.zeros(9, { dtype = dt, device = dev })
      d.reduce_scatter(out, make(dt, values(dt, R, W * 9), dev), op)
      check_equal(out, want, dt, ('cuda reduce_scatter %s %s'):format(dt, op))
    end
    local out = tide.zeros(W * 5, { dtype = dt, device = dev })
    d.all_gather(out, make(dt, values(dt, R, 5), dev))
    local want = {}
    for r = 0, W - 1 do for _, x in ipairs(values(dt, r, 5)) do want[#want + 1] = x end end
    check_equal(out, want, dt, 'cuda all_gather ' .. dt)
    local b = make(dt, values(dt, R, 9), dev)
    d.broadcast(b, W - 1)
    check_equal(b, values(dt, W - 1, 9), dt, 'cuda broadcast ' .. dt)
  end
  local v = make('f32', values('f32', R, 12), dev):view(3, 4):t()  -- strided on the device
  d.all_reduce(v, 'sum')
  T.same(v:contiguous():to('cpu'), make('f32', reduce_ref('f32', 'sum', 12)):view(3, 4):t())
  -- all_reduce_async on the device: staged through the host (or NCCL, complete at its start)
  local hs = {}
  for _, dt in ipairs(dtypes) do
    local t = make(dt, values(dt, R, 33), dev)
    hs[#hs + 1] = { d.all_reduce_async(t, 'max'), t, dt }
  end
  for _, x in ipairs(hs) do
    T.eq(x[1]:wait(), x[2])
    T.eq(x[2].device, 'cuda:0')
    check_equal(x[2], reduce_ref(x[3], 'max', 33), x[3], 'cuda all_reduce_async ' .. x[3])
  end
  d.barrier()
end)

T.test('the launcher environments: torchrun, Open MPI, Slurm, none', function()
  if W > 1 then T.skip('checked in the single-process run (it starts subprocesses)') end
  pcall(ffi.cdef, 'long readlink(const char *path, char *buf, size_t len);')
  local buf = ffi.new('char[4096]')
  local exe = ffi.string(buf, ffi.C.readlink('/proc/self/exe', buf, 4096))
  local function env_of(vars)
    local clear = 'env -u OMPI_COMM_WORLD_SIZE -u OMPI_COMM_WORLD_RANK -u RANK -u WORLD_SIZE -u SLURM_NTASKS ' ..
                  '-u SLURM_PROCID -u PMI_SIZE -u PMI_RANK '
    local p = io.popen(clear .. vars .. ' ' .. exe .. [[ -e "local e = tide.dist.environment(); ]] ..
                       [[print(e.rank, e.world_size, e.local_rank, e.launcher)" 2>&1]])
    local s = p:read('*a')
    p:close()
    return s:gsub('%s+$', '')
  end
  T.eq(env_of(''), '0\t1\t0\tnone')
  T.eq(env_of('RANK=3 WORLD_SIZE=8 LOCAL_RANK=1 MASTER_ADDR=h MASTER_PORT=29500'), '3\t8\t1\ttorchrun')
  T.eq(env_of('OMPI_COMM_WORLD_RANK=5 OMPI_COMM_WORLD_SIZE=16 OMPI_COMM_WORLD_LOCAL_RANK=2 SLURM_PROCID=0 SLURM_NTASKS=16'),
       '5\t16\t2\tmpirun')
  T.eq(env_of('SLURM_PROCID=7 SLURM_NTASKS=9 SLURM_LOCALID=3'), '7\t9\t3\tslurm')
  T.truthy(env_of('RANK=x WORLD_SIZE=2'):find('RANK="x" is not a non-negative integer', 1, true))
  -- torchrun's environment alone cannot start MPI: a clear error, not a world of one per process
  local p = io.popen('env -u OMPI_COMM_WORLD_SIZE RANK=0 WORLD_SIZE=2 ' .. exe .. ' -e "tide.dist.init()" 2>&1')
  local s = p:read('*a')
  p:close()
  T.truthy(s:find('tide launch -n 2` does when mpirun is installed', 1, true), s)
end)

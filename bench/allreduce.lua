-- All-reduce bus bandwidth of f32 buffers, tide.dist.all_reduce(t, 'sum')
-- against Open MPI's own MPI_Allreduce called through the FFI on the same
-- tensor's memory, in the same processes, alternating (run it under mpirun:
-- bench/allreduce.sh). Bus bandwidth is nccl-tests': size * 2(n-1)/n / time,
-- the bytes each rank must send and receive in a ring all-reduce. Each
-- round times `iters` calls of each side after a barrier; a round's time is
-- the slowest rank's; the best and the median round are printed.
--   --sizes=1,4,16,64,256 (MB)   --rounds=5
local ffi = require 'ffi'
local d = tide.dist
local info = d.init()
local W = info.world_size

-- Open MPI's handles are addresses of its predefined objects (mpi.h's
-- MPI_COMM_WORLD is &ompi_mpi_comm_world); tide.dist.init loaded libmpi
-- globally, so ffi.C finds them.
ffi.cdef [[
int MPI_Allreduce(const void *sendbuf, void *recvbuf, int count, void *datatype, void *op, void *comm);
extern char ompi_mpi_comm_world[];
extern char ompi_mpi_float[];
extern char ompi_mpi_op_sum[];
]]
local MPI = ffi.C
local IN_PLACE = ffi.cast('void *', 1)  -- Open MPI's MPI_IN_PLACE

local sizes = {}
for s in tostring(tide.args.sizes or '1,4,16,64,256'):gmatch('[^,]+') do sizes[#sizes + 1] = tonumber(s) end
local rounds = tide.args.rounds or 5

local elapsed = tide.zeros(1, { dtype = 'f64' })
local function slowest(secs)
  elapsed[1] = secs
  d.all_reduce(elapsed, 'max')
  return elapsed[1]:item()
end

local function time_tide(t, iters)
  d.barrier()
  local t0 = tide.clock()
  for _ = 1, iters do d.all_reduce(t, 'sum') end
  return slowest(tide.clock() - t0) / iters
end

local function time_mpi(t, iters)
  local ptr, n = ffi.cast('void *', t._c.data), t:numel()
  d.barrier()
  local t0 = tide.clock()
  for _ = 1, iters do
    local rc = MPI.MPI_Allreduce(IN_PLACE, ptr, n, MPI.ompi_mpi_float, MPI.ompi_mpi_op_sum, MPI.ompi_mpi_comm_world)
    assert(rc == 0, 'MPI_Allreduce failed')
  end
  return slowest(tide.clock() - t0) / iters
end

local function median(xs)
  local s = {}
  for i, x in ipairs(xs) do s[i] = x end
  table.sort(s)
  return s[math.floor((#s + 1) / 2)]
end
local function best(xs) return math.min(unpack(xs)) end

if d.is_main_process() then
  print(('all_reduce f32 sum, %d ranks, cross-rank check %s, %d rounds; bus bandwidth GB/s (best / median)'):format(
    W, os.getenv('TIDE_DIST_CHECK') == '0' and 'off' or 'on', rounds))
  print(('%8s %6s %22s %22s %14s'):format('size', 'iters', 'tide.dist', 'MPI_Allreduce', 'tide/MPI'))
end
for _, mb in ipairs(sizes) do
  local bytes = mb * 1024 * 1024
  local t = tide.full({ bytes / 4 }, 1e-3)
  local iters = math.max(3, math.floor(64 / mb))
  time_tide(t, 1)  -- warm-up: pages faulted, MPI's buffers registered
  time_mpi(t, 1)
  local tt, tm = {}, {}
  for r = 1, rounds do
    t:fill_(1e-3)
    -- alternate which side goes first, so drift hits both alike
    if r % 2 == 1 then
      tt[r] = time_tide(t, iters); tm[r] = time_mpi(t, iters)
    else
      tm[r] = time_mpi(t, iters); tt[r] = time_tide(t, iters)
    end
  end
  local bus = bytes * 2 * (W - 1) / W / 1e9
  if d.is_main_process() then
    print(('%6d MB %6d %10.2f / %-9.2f %10.2f / %-9.2f %6.3f / %.3f'):format(mb, iters,
      bus / best(tt), bus / median(tt), bus / best(tm), bus / median(tm),
      best(tm) / best(tt), median(tm) / median(tt)))
  end
end

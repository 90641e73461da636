-- All-reduce bus bandwidth of f32 buffers, tide.dist.all_reduce(t, 'sum')
-- against Open MPI's own MPI_Allreduce called through the FFI on the same
-- tensor's memory, in the same processes, alternating call by call (run it
-- under mpirun: bench/allreduce.sh). Bus bandwidth is nccl-tests': size *
-- 2(n-1)/n / time, the bytes each rank must send and receive in a ring
-- all-reduce. Each sample is one call after a barrier, its time the slowest
-- rank's; the best and the median sample of each side are printed, and the
-- ratio tide/MPI of bandwidths (above 1: tide faster). Samples per size:
-- rounds * 64 / MB, at least 6.
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

-- One sample: a barrier, then one call timed on this rank; the slowest
-- rank's time is the call's (taken over all samples at once, at the end).
local function sample(fn)
  d.barrier()
  local t0 = tide.clock()
  fn()
  return tide.clock() - t0
end

local function slowest(times)
  local t = tide.tensor(times, { dtype = 'f64' })
  d.all_reduce(t, 'max')
  return t:tolist()
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
  print(('%8s %7s %22s %22s %14s'):format('size', 'samples', 'tide.dist', 'MPI_Allreduce', 'tide/MPI'))
end
for _, mb in ipairs(sizes) do
  local bytes = mb * 1024 * 1024
  local t = tide.full({ bytes / 4 }, 1e-3)
  local ptr, n = ffi.cast('void *', t._c.data), t:numel()
  local function tide_call() d.all_reduce(t, 'sum') end
  local function mpi_call()
    local rc = MPI.MPI_Allreduce(IN_PLACE, ptr, n, MPI.ompi_mpi_float, MPI.ompi_mpi_op_sum, MPI.ompi_mpi_comm_world)
    assert(rc == 0, 'MPI_Allreduce failed')
  end
  tide_call()  -- warm-up: pages faulted, MPI's buffers registered
  mpi_call()
  local samples = math.max(6, math.floor(rounds * 64 / mb))
  local tt, tm = {}, {}
  for i = 1, samples do
    if i % 8 == 1 then t:fill_(1e-3) end  -- the sums stay finite
    -- alternate which side goes first, so drift hits both alike
    if i % 2 == 1 then
      tt[i] = sample(tide_call); tm[i] = sample(mpi_call)
    else
      tm[i] = sample(mpi_call); tt[i] = sample(tide_call)
    end
  end
  tt, tm = slowest(tt), slowest(tm)
  local bus = bytes * 2 * (W - 1) / W / 1e9
  if d.is_main_process() then
    print(('%6d MB %7d %10.2f / %-9.2f %10.2f / %-9.2f %6.3f / %.3f'):format(mb, samples,
      bus / best(tt), bus / median(tt), bus / best(tm), bus / median(tm),
      best(tm) / best(tt), median(tm) / median(tt)))
  end
end

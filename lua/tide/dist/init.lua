-- tide.dist: collectives across processes, as torch.distributed offers them.
-- Ranks are 0-based, as in torch. A world of one (no launcher environment)
-- needs no MPI: every collective is then the identity. With more processes,
-- the engine loads its MPI backend on the first init (runtime/dist.c over
-- libtide_mpi.so); nothing is loaded in a run that never calls init.
--
--   tide.dist.init{timeout = 300, check = true}
--   tide.dist.rank(), world_size(), local_rank(), is_main_process()
--   tide.dist.all_reduce(t, 'sum'|'avg'|'max'|'min'), broadcast(t, src),
--   all_reduce_async(t, op) -> handle; handle:wait() -> t,
--   all_gather(out, t), reduce_scatter(out, t, op), barrier(),
--   all_to_all_bytes({s0, s1, ...}), finalize()
local ffi = require 'ffi'
local C = require 'tide.C'
local core = require 'tide.tensor'
local errors = require 'tide.errors'

local M = {}

local ops = { sum = 0, avg = 1, max = 2, min = 3 }  -- tide_reduce_op: TIDE_SUM, TIDE_MEAN, TIDE_MAX, TIDE_MIN

local function int_env(name)
  local v = os.getenv(name)
  if v == nil or v == '' then return nil end
  local n = tonumber(v)
  if not n or n % 1 ~= 0 or n < 0 then
    error(('tide.dist: environment variable %s=%q is not a non-negative integer'):format(name, v), 0)
  end
  return n
end

-- The launcher's view of this process: rank, world size, local rank, and which
-- launcher said so. Open MPI's variables come first (mpirun inside a Slurm
-- allocation also has Slurm's), then torchrun's, then Slurm's (srun).
function M.environment()
  local size = int_env('OMPI_COMM_WORLD_SIZE')
  if size then
    return { rank = int_env('OMPI_COMM_WORLD_RANK') or 0, world_size = size,
             local_rank = int_env('OMPI_COMM_WORLD_LOCAL_RANK') or 0,
             local_world_size = int_env('OMPI_COMM_WORLD_LOCAL_SIZE') or size, launcher = 'mpirun' }
  end
  size = int_env('WORLD_SIZE')
  if size and os.getenv('RANK') then
    return { rank = int_env('RANK'), world_size = size, local_rank = int_env('LOCAL_RANK') or 0,
             local_world_size = int_env('LOCAL_WORLD_SIZE') or size, launcher = 'torchrun',
             master_addr = os.getenv('MASTER_ADDR'), master_port = int_env('MASTER_PORT') }
  end
  size = int_env('SLURM_NTASKS')
  if size and os.getenv('SLURM_PROCID') then
    -- SLURM_TASKS_PER_NODE reads like "4(x2),3"; this node's count is not in it, so the most is taken
    local most = 0
    for c in (os.getenv('SLURM_TASKS_PER_NODE') or ''):gmatch('(%d+)') do most = math.max(most, tonumber(c)) end
    return { rank = int_env('SLURM_PROCID'), world_size = size, local_rank = int_env('SLURM_LOCALID') or 0,
             local_world_size = most > 0 and most or size, launcher = 'slurm' }
  end
  size = int_env('PMI_SIZE')  -- MPICH's and Intel MPI's launchers
  if size then
    return { rank = int_env('PMI_RANK') or 0, world_size = size, local_rank = int_env('MPI_LOCALRANKID') or 0,
             local_world_size = int_env('MPI_LOCALNRANKS') or size, launcher = 'pmi' }
  end
  return { rank = 0, world_size = 1, local_rank = 0, local_world_size = 1, launcher = 'none' }
end

local state = nil  -- the joined job: rank, world_size, local_rank, launcher, backend
local sentinel = nil  -- collected when the Lua state closes: finalize then

local function env_number(name, default)
  local v = os.getenv(name)
  if v == nil or v == '' then return default end
  local n = tonumber(v)
  if not n then error(('tide.dist: %s=%q is not a number'):format(name, v), 0) end
  return n
end

-- Joins the job the launcher started (a second call returns the same job).
-- opts.timeout: seconds a collective may block before this process ends
--   with a message naming it (default $TIDE_DIST_TIMEOUT or 300; 0: never);
-- opts.check: compare each collective's dtype and shape across ranks first
--   (default true; $TIDE_DIST_CHECK=0 turns it off), so a mismatch is an
--   error on every rank instead of a hang;
-- opts.backend: 'mpi' (the default with more than one process) or 'none';
-- opts.nccl: CUDA tensors' collectives through NCCL (true: required, even
--   in a world of one; false: never; nil, the default: with more than one
--   process where every rank can load NCCL); without it they are staged
--   through host memory and MPI;
-- opts.device: NCCL's CUDA device (a number or 'cuda:N'; default the local
--   rank modulo the devices).
-- Returns a table {rank, world_size, local_rank, launcher, backend, nccl}.
function M.init(opts)
  opts = opts or {}
  if type(opts) ~= 'table' then error('tide.dist.init: expected a table of options', 2) end
  for k in pairs(opts) do
    if k ~= 'timeout' and k ~= 'check' and k ~= 'backend' and k ~= 'nccl' and k ~= 'device' then
      error(('tide.dist.init: unknown option %s (expected timeout, check, backend, nccl, device)'):format(tostring(k)), 2)
    end
  end
  local timeout = opts.timeout or env_number('TIDE_DIST_TIMEOUT', 300)
  if type(timeout) ~= 'number' or timeout < 0 then
    error('tide.dist.init: timeout must be a number of seconds >= 0, got ' .. tostring(timeout), 2)
  end
  if state then return state end
  local env = M.environment()
  local check = opts.check
  if check == nil then check = env_number('TIDE_DIST_CHECK', 1) ~= 0 end
  local backend = opts.backend or (env.world_size > 1 and 'mpi' or 'none')
  if backend ~= 'mpi' and backend ~= 'none' then
    error(("tide.dist.init: unknown backend %s (expected 'mpi' or 'none')"):format(tostring(backend)), 2)
  end
  if backend == 'none' and env.world_size > 1 then
    error(('tide.dist.init: backend none is a world of one, but %s started %d processes'):format(
      env.launcher, env.world_size), 2)
  end
  if backend == 'mpi' and env.launcher == 'torchrun' then
    -- MPI cannot join processes it did not start: each would be a world of one
    error(('tide.dist.init: %d processes were started with torchrun\'s environment (RANK, WORLD_SIZE) but not by ' ..
           'an MPI launcher, which the MPI backend needs: start them with mpirun (`tide launch -n %d` does when ' ..
           'mpirun is installed), or srun --mpi=pmix'):format(env.world_size, env.world_size), 2)
  end
  local r, n = ffi.new('int32_t[1]'), ffi.new('int32_t[1]')
  if C.tide_dist_init(backend, timeout, check and 1 or 0, r, n) ~= 0 then errors.raise(2) end
  local rank, size = tonumber(r[0]), tonumber(n[0])
  if backend == 'mpi' and (size ~= env.world_size or rank ~= env.rank) then
    C.tide_dist_finalize()
    error(('tide.dist.init: %s says rank %d of %d, but MPI started rank %d of %d: with Slurm, start tide with ' ..
           'srun --mpi=pmix (a process run directly in a batch script is a world of one)'):format(
      env.launcher, env.rank, env.world_size, rank, size), 2)
  end
  local nccl = opts.nccl
  local used = false
  if nccl == true or (nccl == nil and size > 1 and ffi.string(C.tide_cuda_runtime_name()) ~= '') then
    local ndev = tonumber(C.tide_cuda_device_count())
    local device
    if type(opts.device) == 'number' then device = opts.device
    elseif opts.device ~= nil then device = core.device_code(opts.device, 'tide.dist.init', 3)
    elseif env.local_world_size <= ndev then device = env.local_rank % math.max(ndev, 1)
    else device = -1 end  -- more processes than GPUs on this node: NCCL cannot share one (staged through MPI)
    local u = ffi.new('int32_t[1]')
    if C.tide_dist_init_nccl(device, nccl and 1 or 0, u) ~= 0 then
      local msg = errors.message()
      C.tide_dist_finalize()
      error(msg, 2)
    end
    used = u[0] ~= 0
  end
  state = { rank = rank, world_size = size, local_rank = env.local_rank, launcher = env.launcher, backend = backend,
            nccl = used }
  -- a program that ends without tide's exit hook (the REPL) still leaves the job in order when Lua closes
  sentinel = ffi.gc(ffi.new('char[1]'), function() if state then pcall(M.finalize) end end)
  return state
end

function M.is_initialized() return state ~= nil end
-- These read the launcher's environment before init, the joined job after.
function M.rank() return state and state.rank or M.environment().rank end
function M.world_size() return state and state.world_size or M.environment().world_size end
function M.local_rank() return state and state.local_rank or M.environment().local_rank end
function M.is_main_process() return M.rank() == 0 end

local function op_code(op, what)
  if op == nil then return 0 end
  local c = ops[op]
  if not c then error(("tide.dist.%s: op must be 'sum', 'avg', 'max' or 'min', got %s"):format(what, tostring(op)), 3) end
  return c
end

-- t = op over every rank's t, in place; returns t.
function M.all_reduce(t, op)
  local h = core.handle(t, 'tide.dist.all_reduce')
  if C.tide_dist_all_reduce(h, op_code(op, 'all_reduce')) ~= 0 then errors.raise(2) end
  return t
end

-- A started all_reduce_async: wait() blocks until the reduction has run,
-- writes it into the tensor and returns the tensor (raising the call's error
-- if it failed); is_completed() says whether wait() would block.
local Work = {}
Work.__index = Work

function Work:wait()
  if C.tide_dist_wait(self._work) ~= 0 then errors.raise(2) end
  return self.tensor
end

function Work:is_completed() return C.tide_dist_work_done(self._work) ~= 0 end

-- Starts t = op over every rank's t and returns a handle at once, as
-- torch.distributed.all_reduce(t, async_op=True): the engine's
-- communication thread runs the started all-reduces in the order they were
-- started, while this thread goes on. t must not be read or written until
-- handle:wait(). A blocking collective called meanwhile first lets the
-- started ones run (the job's calls keep one order on every rank).
function M.all_reduce_async(t, op)
  local h = core.handle(t, 'tide.dist.all_reduce_async')
  local out = ffi.new('tide_dist_work *[1]')
  if C.tide_dist_all_reduce_async(h, op_code(op, 'all_reduce_async'), out) ~= 0 then errors.raise(2) end
  return setmetatable({ _work = ffi.gc(out[0], C.tide_dist_work_free), tensor = t }, Work)
end

-- t = rank src's t (src 0-based, default 0), in place; returns t.
function M.broadcast(t, src)
  local h = core.handle(t, 'tide.dist.broadcast')
  src = src or 0
  if type(src) ~= 'number' or src % 1 ~= 0 then
    error('tide.dist.broadcast: src must be a 0-based rank, got ' .. tostring(src), 2)
  end
  if C.tide_dist_broadcast(h, src) ~= 0 then errors.raise(2) end
  return t
end

-- out = every rank's t in rank order (out holds world_size * t:numel()
-- elements: [world_size * n, ...] concatenates along dim 1); returns out.
function M.all_gather(out, t)
  local o = core.handle(out, 'tide.dist.all_gather (out)')
  local h = core.handle(t, 'tide.dist.all_gather')
  if C.tide_dist_all_gather(o, h) ~= 0 then errors.raise(2) end
  return out
end

-- out = op over ranks of this rank's part of t (t holds world_size *
-- out:numel() elements, rank r's part the r-th along dim 1); returns out.
function M.reduce_scatter(out, t, op)
  local o = core.handle(out, 'tide.dist.reduce_scatter (out)')
  local h = core.handle(t, 'tide.dist.reduce_scatter')
  if C.tide_dist_reduce_scatter(o, h, op_code(op, 'reduce_scatter')) ~= 0 then errors.raise(2) end
  return out
end

function M.barrier()
  if C.tide_dist_barrier() ~= 0 then errors.raise(2) end
end

-- Sends list[r + 1] (a string of any bytes) to rank r; returns the list of
-- strings received, the one from rank r at r + 1.
function M.all_to_all_bytes(list)
  if type(list) ~= 'table' then error('tide.dist.all_to_all_bytes: expected a list of strings', 2) end
  local n = #list
  local bufs, lens = ffi.new('const char *[?]', math.max(n, 1)), ffi.new('int64_t[?]', math.max(n, 1))
  for i = 1, n do
    if type(list[i]) ~= 'string' then
      error(('tide.dist.all_to_all_bytes: element %d is a %s, expected a string'):format(i, type(list[i])), 2)
    end
    bufs[i - 1], lens[i - 1] = list[i], #list[i]
  end
  local size = M.world_size()
  local recv, rlens = ffi.new('char *[1]'), ffi.new('int64_t[?]', math.max(size, n, 1))
  if C.tide_dist_all_to_all_bytes(n, bufs, lens, recv, rlens) ~= 0 then errors.raise(2) end
  local out, pos = {}, 0
  for r = 0, size - 1 do
    local len = tonumber(rlens[r])
    out[r + 1] = ffi.string(recv[0] + pos, len)
    pos = pos + len
  end
  C.tide_dist_free(recv[0])
  return out
end

-- tide.dist.DataParallel(model, {bucket_mb = 25}): lua/tide/dist/ddp.lua.
function M.DataParallel(model, opts) return require('tide.dist.ddp').DataParallel(model, opts) end

-- Leaves the job; collectives fail afterwards (MPI cannot start again in this process).
function M.finalize()
  if not state then return end
  state = nil
  sentinel = nil
  if C.tide_dist_finalize() ~= 0 then errors.raise(2) end
end

-- Called by the tide executable when a program ends (lua/tide/cli.lua):
-- after success the job is left in order; after an error the whole job is
-- ended (MPI_Abort), so the other ranks do not wait for this one.
function M._at_exit(status)
  if not state then return end
  if status == 0 then
    local ok, err = pcall(M.finalize)
    if not ok then io.stderr:write('tide: ', tostring(err), '\n') end
  elseif state.world_size > 1 then
    io.stderr:write(('tide.dist: rank %d of %d failed (exit code %d); ending the job\n'):format(
      state.rank, state.world_size, status))
    io.stderr:flush()
    C.tide_dist_abort(status)
  end
end

return M

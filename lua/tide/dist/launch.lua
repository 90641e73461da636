-- `tide launch`: runs a recipe on N local processes, as torchrun does.
--
--   tide launch -n N [--master_addr=A] [--master_port=P] [--mpirun|--no-mpirun] recipe.lua [args...]
--
-- With more than one process and Open MPI's mpirun on the PATH (the
-- default), the processes are started by mpirun, because the MPI backend of
-- tide.dist can only join processes an MPI launcher started; each still sees
-- torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
-- MASTER_ADDR, MASTER_PORT). Without mpirun (or with --no-mpirun) tide starts
-- them itself with those variables: enough for programs that read them, but
-- tide.dist.init then says MPI is needed. Every line a process prints is
-- prefixed with its rank ("[rank 1] ..."); when one process fails the others
-- are stopped and tide launch exits with the failed one's code. Unless set,
-- OMP_NUM_THREADS is the cores divided among the processes (at least 1).
-- Multi-node runs go through the cluster's own launcher (srun, mpirun).
local ffi = require 'ffi'

local M = {}

-- libc's functions under names of tide's own (asm renames the symbol), so a
-- recipe that declares readlink or setenv itself does not collide with these
ffi.cdef [[
int tide_launch_run(int32_t n, char *const *const *argvs, char *const *const *envs, const char *const *prefixes,
                    int32_t tagged, double grace_s);
long tide_launch_readlink(const char *path, char *buf, size_t len) asm("readlink");
long tide_launch_sysconf(int name) asm("sysconf");
int tide_launch_geteuid(void) asm("geteuid");
int tide_launch_setenv(const char *name, const char *value, int overwrite) asm("setenv");
]]

local usage = [[
usage: tide launch -n N [--master_addr=ADDR] [--master_port=PORT] [--mpirun|--no-mpirun] recipe.lua [args...]
  -n, --nproc_per_node N   processes to start on this machine (1..4096)
  --master_addr ADDR       MASTER_ADDR the processes see (default 127.0.0.1)
  --master_port PORT       MASTER_PORT the processes see (default 29500)
  --mpirun / --no-mpirun   start them with Open MPI's mpirun (the default when it is on the PATH and N > 1),
                           which tide.dist's MPI backend needs, or directly with torchrun's variables only
Each output line is prefixed with its rank; when a process fails the others are stopped and
tide launch exits with its exit code.]]

local function fail(msg)
  io.stderr:write('tide launch: ', msg, '\n', usage, '\n')
  return 2
end

local function on_path(name)
  for dir in (os.getenv('PATH') or ''):gmatch('[^:]+') do
    local f = io.open(dir .. '/' .. name, 'rb')
    if f then f:close(); return dir .. '/' .. name end
  end
  return nil
end

local function self_exe()
  local buf = ffi.new('char[4096]')
  local n = ffi.C.tide_launch_readlink('/proc/self/exe', buf, 4096)
  if n <= 0 then return 'tide' end
  return ffi.string(buf, n)
end

-- Parses launch's own options (up to the recipe); returns opts and the recipe's argv.
local function parse(args)
  local opts, i = { n = nil, master_addr = '127.0.0.1', master_port = 29500, mpirun = nil }, 1
  local function value(name, inline)
    if inline then return inline end
    i = i + 1
    if args[i] == nil then error(name .. ' needs a value', 0) end
    return args[i]
  end
  while args[i] do
    local a = args[i]
    local key, inline = a:match('^%-%-?([%w_%-]+)=(.*)$')
    key = key or a:match('^%-%-?([%w_%-]+)$')
    if a:sub(1, 1) ~= '-' or a == '-e' then break end  -- the program: a file, or -e CODE
    if a == '--' then i = i + 1; break end
    key = key and key:gsub('-', '_')
    if key == 'n' or key == 'nproc_per_node' or key == 'np' then
      local v = value(a, inline)
      local n = tonumber(v)
      if not n or n % 1 ~= 0 or n < 1 or n > 4096 then error('-n expects a number of processes from 1 to 4096, got ' .. v, 0) end
      opts.n = n
    elseif key == 'master_addr' then
      opts.master_addr = value(a, inline)
    elseif key == 'master_port' then
      local v = value(a, inline)
      local p = tonumber(v)
      if not p or p % 1 ~= 0 or p < 1 or p > 65535 then error('--master_port expects a port from 1 to 65535, got ' .. v, 0) end
      opts.master_port = p
    elseif key == 'mpirun' then
      opts.mpirun = true
    elseif key == 'no_mpirun' then
      opts.mpirun = false
    elseif key == 'h' or key == 'help' then
      opts.help = true
    else
      error('unknown option ' .. a, 0)
    end
    i = i + 1
  end
  local rest = {}
  for j = i, #args do rest[#rest + 1] = args[j] end
  return opts, rest
end

-- Arrays of C strings that live as long as `keep`.
local function cstrings(list, keep)
  local arr = ffi.new('char *[?]', #list + 1)
  for k, s in ipairs(list) do
    local b = ffi.new('char[?]', #s + 1, s)
    keep[#keep + 1] = b
    arr[k - 1] = b
  end
  arr[#list] = nil
  keep[#keep + 1] = arr
  return arr
end

function M.main(args)
  local ok, opts, rest = pcall(parse, args)
  if not ok then return fail(opts) end
  if opts.help then print(usage); return 0 end
  if not opts.n then return fail('the number of processes is missing (-n N)') end
  if #rest == 0 then return fail('the recipe to run is missing') end
  local n = opts.n
  local exe = self_exe()
  local cores = tonumber(ffi.C.tide_launch_sysconf(84)) or 1  -- _SC_NPROCESSORS_ONLN
  local threads = os.getenv('OMP_NUM_THREADS') or tostring(math.max(1, math.floor(cores / n)))
  local mpirun = opts.mpirun
  local mpirun_path = on_path('mpirun')
  if mpirun == nil then mpirun = n > 1 and mpirun_path ~= nil end
  if mpirun and not mpirun_path then
    io.stderr:write('tide launch: --mpirun: mpirun is not on the PATH (Debian: apt-get install openmpi-bin)\n')
    return 2
  end
  local keep = {}
  local argvs, envs, prefixes, tagged
  if mpirun then
    local cmd = { mpirun_path, '-np', tostring(n), '--oversubscribe', '--bind-to', 'none', '--tag-output' }
    -- Open MPI refuses to run as root unless asked; tide launch runs local processes, as torchrun would
    if ffi.C.tide_launch_geteuid() == 0 then cmd[#cmd + 1] = '--allow-run-as-root' end
    for _, kv in ipairs { 'MASTER_ADDR=' .. opts.master_addr, 'MASTER_PORT=' .. opts.master_port,
                          'OMP_NUM_THREADS=' .. threads, 'TIDE_LAUNCH=1' } do
      cmd[#cmd + 1] = '-x'
      cmd[#cmd + 1] = kv
    end
    cmd[#cmd + 1] = exe
    for _, a in ipairs(rest) do cmd[#cmd + 1] = a end
    argvs = ffi.new('char *const *[1]', { cstrings(cmd, keep) })
    envs = ffi.new('char *const *[1]', { cstrings({}, keep) })
    prefixes = ffi.new('const char *[1]', { '' })
    tagged = 1
    n = 1
  else
    argvs = ffi.new('char *const *[?]', n)
    envs = ffi.new('char *const *[?]', n)
    prefixes = ffi.new('const char *[?]', n)
    local cmd = { exe }
    for _, a in ipairs(rest) do cmd[#cmd + 1] = a end
    for r = 0, n - 1 do
      argvs[r] = cstrings(cmd, keep)
      envs[r] = cstrings({ 'RANK=' .. r, 'WORLD_SIZE=' .. n, 'LOCAL_RANK=' .. r, 'LOCAL_WORLD_SIZE=' .. n,
                           'GROUP_RANK=0', 'MASTER_ADDR=' .. opts.master_addr, 'MASTER_PORT=' .. opts.master_port,
                           'OMP_NUM_THREADS=' .. threads, 'TIDE_LAUNCH=1' }, keep)
      local p = ('[rank %d] '):format(r)
      keep[#keep + 1] = p
      prefixes[r] = p
    end
    tagged = 0
  end
  io.stdout:flush()
  io.stderr:flush()
  return tonumber(ffi.C.tide_launch_run(n, argvs, envs, prefixes, tagged, 10))
end

-- Under tide launch's mpirun, a process also gets torchrun's variables from
-- Open MPI's, so a program reads RANK and WORLD_SIZE whichever way it was started.
function M.export_torchrun_env()
  if os.getenv('TIDE_LAUNCH') ~= '1' or os.getenv('RANK') or not os.getenv('OMPI_COMM_WORLD_RANK') then return end
  local map = { RANK = 'OMPI_COMM_WORLD_RANK', WORLD_SIZE = 'OMPI_COMM_WORLD_SIZE',
                LOCAL_RANK = 'OMPI_COMM_WORLD_LOCAL_RANK', LOCAL_WORLD_SIZE = 'OMPI_COMM_WORLD_LOCAL_SIZE' }
  for k, v in pairs(map) do
    local x = os.getenv(v)
    if x then ffi.C.tide_launch_setenv(k, x, 0) end
  end
end

return M

-- Running untrusted commands under limits, several at once (the engine:
-- runtime/sandbox.c). Each job gets its own temporary folder, a wall-clock
-- timeout after which its whole process group is killed, rlimits on CPU
-- time, address space, processes and file size, and no network where the
-- kernel allows user namespaces (sb.isolated, sb.note says which).
--
--   local sandbox = require 'tide.sandbox'
--   local sb = sandbox.new({ timeout = 3, memory_mb = 1024 })
--   local rs = sb:run_all({ { argv = { 'python3', 'p.py' }, file = 'p.py', data = 'print(1)' } },
--                         { workers = 4 })
--   rs[1].exit_code, rs[1].stdout                   --> 0  '1\n'
--
-- Options of new (defaults): timeout = 3 (s, wall clock), cpu = timeout + 1
-- (s, RLIMIT_CPU), memory_mb = 2048 (RLIMIT_AS), max_procs = 64, file_mb =
-- 16 (RLIMIT_FSIZE), tail_bytes = 4096 (kept of stdout and of stderr),
-- isolate = true (namespaces when allowed; false never tries).
local ffi = require 'ffi'
local C = require 'tide.C'
local errors = require 'tide.errors'

local M = {}
local Sandbox = {}
Sandbox.__index = Sandbox
Sandbox.__name = 'tide.Sandbox'

local raise = errors.raise
local sbbuf = ffi.new('tide_sandbox*[1]')
local idbuf = ffi.new('int32_t[1]')
local lenbuf = ffi.new('int64_t[1]')
local resbuf = ffi.new('tide_sandbox_outcome[1]')

local STAGES = { 'setuid', 'unshare', 'fork', 'limits', 'chdir', 'stdio', 'exec' }
local SIGNALS = { [6] = 'SIGABRT', [9] = 'SIGKILL', [11] = 'SIGSEGV', [24] = 'SIGXCPU', [25] = 'SIGXFSZ' }

local function num_opt(opts, name, default, min)
  local v = opts[name]
  if v == nil then return default end
  if type(v) ~= 'number' or v ~= v or v < min then
    error(('sandbox.new: %s must be a number >= %s, got %s'):format(name, tostring(min), tostring(v)), 3)
  end
  return v
end

-- A sandbox (see the options above).
function M.new(opts)
  if opts ~= nil and type(opts) ~= 'table' then error('sandbox.new: options must be a table', 2) end
  opts = opts or {}
  local known = { timeout = 1, cpu = 1, memory_mb = 1, max_procs = 1, file_mb = 1, tail_bytes = 1, isolate = 1 }
  for k in pairs(opts) do
    if not known[k] then error('sandbox.new: unknown option ' .. tostring(k), 2) end
  end
  local timeout = num_opt(opts, 'timeout', 3, 0.001)
  local lim = ffi.new('tide_sandbox_limits')
  lim.timeout_s = timeout
  lim.cpu_s = math.ceil(num_opt(opts, 'cpu', timeout + 1, 0))
  lim.memory_bytes = math.floor(num_opt(opts, 'memory_mb', 2048, 0) * 2^20)
  lim.max_procs = math.floor(num_opt(opts, 'max_procs', 64, 0))
  lim.file_bytes = math.floor(num_opt(opts, 'file_mb', 16, 0) * 2^20)
  lim.tail_bytes = math.floor(num_opt(opts, 'tail_bytes', 4096, 1))
  lim.isolate = opts.isolate == false and 0 or 1
  if C.tide_sandbox_new(lim, sbbuf) ~= 0 then raise(2, 'sandbox.new: ') end
  local self = setmetatable({ _s = ffi.gc(sbbuf[0], C.tide_sandbox_free), timeout = timeout }, Sandbox)
  self.isolated = C.tide_sandbox_isolation(self._s) == 1
  self.note = ffi.string(C.tide_sandbox_isolation_note(self._s))
  return self
end

-- Starts argv (a list of strings) in its own folder, writing file (a name)
-- with data there first when given; returns the job's id at once.
function Sandbox:start(argv, file, data)
  if type(argv) ~= 'table' or #argv == 0 then error('sandbox:start: argv must be a non-empty list of strings', 2) end
  local n = #argv
  local cargv = ffi.new('const char*[?]', n)
  for i = 1, n do
    if type(argv[i]) ~= 'string' then error(('sandbox:start: argv[%d] is a %s, not a string'):format(i, type(argv[i])), 2) end
    cargv[i - 1] = argv[i]
  end
  if file ~= nil and type(file) ~= 'string' then error('sandbox:start: file must be a file name', 2) end
  if data ~= nil and type(data) ~= 'string' then error('sandbox:start: data must be a string', 2) end
  -- argv's strings stay alive in argv for the call
  if C.tide_sandbox_start(self._s, cargv, n, file, data, data and #data or 0, idbuf) ~= 0 then raise(2) end
  return idbuf[0]
end

-- Waits up to max_wait seconds; returns a finished job's id (each once), or
-- nil when none finished by then or none is running.
function Sandbox:wait(max_wait)
  if C.tide_sandbox_wait(self._s, max_wait or 0, idbuf) ~= 0 then raise(2) end
  local id = idbuf[0]
  if id < 0 then return nil end
  return id
end

-- Jobs still running.
function Sandbox:running() return tonumber(C.tide_sandbox_running(self._s)) end

local function output(self, id, stream)
  local p = C.tide_sandbox_output(self._s, id, stream, lenbuf)
  if p == nil then raise(3) end
  return ffi.string(p, lenbuf[0])
end

-- What became of job id: { finished, exit_code (nil unless it exited),
-- signal (a name such as 'SIGKILL', or nil), timed_out, start_error (a
-- sentence, or nil), wall_s, stdout, stderr (their tails), stdout_bytes,
-- stderr_bytes }.
function Sandbox:result(id)
  if C.tide_sandbox_result(self._s, id, resbuf) ~= 0 then raise(2) end
  local r = resbuf[0]
  local out = {
    finished = r.state == 2, timed_out = r.timed_out == 1, wall_s = r.wall_s,
    stdout_bytes = tonumber(r.stdout_bytes), stderr_bytes = tonumber(r.stderr_bytes),
    stdout = output(self, id, 1), stderr = output(self, id, 2),
  }
  if r.exit_code >= 0 then out.exit_code = r.exit_code end
  if r.signal ~= 0 then out.signal = SIGNALS[r.signal] or ('signal ' .. r.signal) end
  if r.start_error ~= 0 then
    out.start_error = ('%s failed: %s'):format(STAGES[r.start_stage] or '?',
      r.start_error > 0 and ffi.string(ffi.C.strerror(r.start_error)) or 'unknown error')
  end
  return out
end

-- Frees job id's slot (killing it if it still runs).
function Sandbox:release(id)
  if C.tide_sandbox_release(self._s, id) ~= 0 then raise(2) end
end

-- Runs jobs ({argv = {...}, file = name, data = text}, ...) with at most
-- opts.workers (default 4) at once; returns their results in order.
-- opts.on_done(i, result) is called as each finishes (progress lines).
function Sandbox:run_all(jobs, opts)
  opts = opts or {}
  local workers = opts.workers or 4
  if type(workers) ~= 'number' or workers < 1 or workers % 1 ~= 0 then
    error('sandbox:run_all: workers must be a positive integer, got ' .. tostring(workers), 2)
  end
  local results, of_id, nxt, done = {}, {}, 1, 0
  while done < #jobs do
    while nxt <= #jobs and self:running() < workers do
      local j = jobs[nxt]
      of_id[self:start(j.argv, j.file, j.data)] = nxt
      nxt = nxt + 1
    end
    local id = self:wait(0.25)
    if id then
      local i = of_id[id]
      of_id[id] = nil
      results[i] = self:result(id)
      self:release(id)
      done = done + 1
      if opts.on_done then opts.on_done(i, results[i]) end
    end
  end
  return results
end

pcall(ffi.cdef, 'char *strerror(int errnum);')

return M

-- A training run's log: metrics.jsonl, TensorBoard scalars and the progress
-- line, from one call per logged step.
--
--   local log = train.Logger('runs/a', { total_steps = 1000, log_every = 10 })
--   log:log(step, { ['loss/train'] = loss, lr = lr, grad_norm = gn, tokens_per_s = tps })
--   log:log(step, { ['loss/eval'] = ev.loss, perplexity = ev.perplexity })
--   log:print('saved checkpoint ...')   -- a line that does not break the live one
--   log:close()
--
-- Options: total_steps (for step/total and the ETA), log_every (default 10),
-- progress ('auto'), tensorboard (default true), stream (default io.stdout),
-- start_step and elapsed (a resumed run's step and seconds already spent:
-- the elapsed time shown counts from there), fd (the descriptor behind a
-- stream other than io.stdout/io.stderr, for the terminal check).
--
-- Each log() appends one JSON object to RUN/metrics.jsonl,
--   {"step":120,"time":1764759111.25,"loss/train":3.41,"lr":0.0003,...}
-- (time: seconds since the epoch; metric names as the Hugging Face course
-- writes them: loss/train, loss/eval, perplexity, lr, samples, steps, plus
-- grad_norm and tokens_per_s; an infinite or NaN value, which JSON cannot
-- hold, is written as the string "inf", "-inf" or "nan" and read back as the
-- number), writes each number as a TensorBoard scalar to
-- RUN/tb/events.out.tfevents.<time>.<host>.<pid>.<n>, and flushes both, so a
-- run killed at any moment keeps everything logged before.
--
-- Progress (opts.progress): 'auto' (default) redraws one live line in place
-- when the stream is a terminal, else prints a plain line every log_every
-- steps (and at the last step; and at least once every log_every steps when
-- log() is called less often); true always redraws in place; 'plain' always
-- prints plain lines; false prints nothing. Logs holding loss/eval print
-- their own line either way.
--
-- Opening a Logger on a run directory that has a metrics.jsonl (a resumed
-- run) appends to it and starts a new event file. With opts.start_step (the
-- step the run resumes from) the event file begins with a SessionLog START
-- at that step, which tells TensorBoard to drop the interrupted run's points
-- after it; read_metrics drops them from metrics.jsonl the same way.
local ffi = require 'ffi'
local json = require 'tide.json'
local files = require 'tide.data.files'
local tensorboard = require 'tide.train.tensorboard'

local M = {}

for _, decl in ipairs {
  'int isatty(int fd);',
  'struct tide_winsize { unsigned short ws_row, ws_col, ws_xpixel, ws_ypixel; };',
  'int ioctl(int fd, unsigned long request, ...);',
  'struct tide_timespec { long tv_sec; long tv_nsec; };',
  'int clock_gettime(int clk, struct tide_timespec *ts);',
  'int truncate(const char *path, int64_t length);', 'char *strerror(int errnum);',
} do
  pcall(ffi.cdef, decl)
end

local tsbuf = ffi.new('struct tide_timespec')
local function monotonic()
  ffi.C.clock_gettime(1, tsbuf)  -- CLOCK_MONOTONIC: elapsed time must not jump with the wall clock
  return tonumber(tsbuf.tv_sec) + tonumber(tsbuf.tv_nsec) * 1e-9
end

-- The descriptor behind a Lua stream, when it is one of the standard ones
-- (LuaJIT does not expose a FILE's descriptor).
local function stream_fd(stream)
  if stream == io.stdout then return 1 end
  if stream == io.stderr then return 2 end
  return nil
end

local function is_terminal(fd)
  return fd ~= nil and ffi.C.isatty(fd) == 1
end

-- Columns of the terminal on fd (0 when unknown): the live line is cut to
-- fit, as a wrapped line cannot be redrawn in place.
local function terminal_width(fd)
  if fd then
    local ws = ffi.new('struct tide_winsize')
    local ok, r = pcall(ffi.C.ioctl, fd, 0x5413, ws)  -- TIOCGWINSZ (Linux)
    if ok and r == 0 and ws.ws_col > 0 then return ws.ws_col end
  end
  return tonumber(os.getenv('COLUMNS')) or 0
end

-- Numbers ---------------------------------------------------------------------

local function json_number(x)
  if x ~= x then return '"nan"' end
  if x == math.huge then return '"inf"' end
  if x == -math.huge then return '"-inf"' end
  return json.encode(x)
end

local NONFINITE = { inf = math.huge, ['-inf'] = -math.huge, nan = 0 / 0 }

-- A plain Lua number from a number, a one-element tensor or a cdata number.
local function to_number(v, name, level)
  if type(v) == 'number' then return v end
  if type(v) == 'boolean' then return v end
  if type(v) == 'cdata' then return tonumber(v) end
  if type(v) == 'table' and type(v.item) == 'function' then return v:item() end
  error(('log: metric %q must be a number, got %s'):format(name, type(v)), level + 1)
end

local function clock_text(s)
  if s ~= s or s == math.huge or s < 0 then return '--:--' end
  s = math.floor(s + 0.5)
  local h, m, sec = math.floor(s / 3600), math.floor(s / 60) % 60, s % 60
  if h > 0 then return ('%d:%02d:%02d'):format(h, m, sec) end
  return ('%d:%02d'):format(m, sec)
end

local function num_text(fmt, x)
  if x ~= x then return 'nan' end
  if x == math.huge then return 'inf' end
  if x == -math.huge then return '-inf' end
  return fmt:format(x)
end

-- A run killed mid-write can leave a last line without its newline; a
-- resumed run's first record would be glued to it. That partial line is cut
-- off (only bytes after the last newline are removed, and only when the file
-- does not end in one).
local function cut_partial_line(path, level)
  local f = io.open(path, 'rb')
  if not f then return end
  local size = f:seek('end')
  if size == 0 then f:close() return end
  f:seek('set', size - 1)
  if f:read(1) == '\n' then f:close() return end
  local keep, pos = 0, size
  while pos > 0 do
    local start = math.max(0, pos - 65536)
    f:seek('set', start)
    local chunk = f:read(pos - start)
    local last = chunk:match('.*()\n')
    if last then keep = start + last break end
    pos = start
  end
  f:close()
  if ffi.C.truncate(path, keep) ~= 0 then
    error(('Logger: cannot cut the partial last line of %s: %s'):format(path, ffi.string(ffi.C.strerror(ffi.errno()))), level + 1)
  end
end

-- Logger ----------------------------------------------------------------------

local Logger = {}
Logger.__index = Logger
Logger.__name = 'tide.train.Logger'

-- On the ranks other than the main one of a data-parallel job the Logger
-- writes and prints nothing (metrics.jsonl, tb/ and the progress line are
-- the main process's), as Accelerate's trackers: same calls, no output.
local QuietLogger = {}
QuietLogger.__index = QuietLogger
function QuietLogger:log(step, metrics)
  if not self.open then error('log: the Logger is closed', 2) end
  if type(step) ~= 'number' or step % 1 ~= 0 then error('log: step must be an integer, got ' .. tostring(step), 2) end
  if type(metrics) ~= 'table' then error('log: metrics must be a table of name = number', 2) end
end
function QuietLogger:print() end
function QuietLogger:draw() end
function QuietLogger:progress_line() return '' end
function QuietLogger:close() self.open = false end

function M.Logger(run_dir, opts)
  if type(run_dir) ~= 'string' or run_dir == '' then error('Logger: expected a run directory path', 2) end
  opts = opts or {}
  if type(opts) ~= 'table' then error('Logger: options must be a table', 2) end
  local log_every = opts.log_every or 10
  if type(log_every) ~= 'number' or log_every < 1 or log_every % 1 ~= 0 then
    error('Logger: log_every must be a positive integer', 2)
  end
  local total = opts.total_steps
  if total ~= nil and (type(total) ~= 'number' or total < 0) then error('Logger: total_steps must be a number', 2) end
  if not require('tide.train.dist').is_main() then
    return setmetatable({ run_dir = run_dir, path = run_dir .. '/metrics.jsonl', mode = 'off', last = {},
                          total_steps = total, log_every = log_every, open = true }, QuietLogger)
  end
  files.mkdir_p(run_dir, 'Logger', 2)
  local path = run_dir .. '/metrics.jsonl'
  cut_partial_line(path, 2)
  local f, err = io.open(path, 'ab')
  if not f then error('Logger: cannot open ' .. tostring(err), 2) end
  local resumed = f:seek('end') > 0
  local stream = opts.stream or io.stdout
  local fd = opts.fd or stream_fd(stream)
  local progress = opts.progress
  if progress == nil then progress = 'auto' end
  local mode
  if progress == false then mode = 'off'
  elseif progress == true then mode = 'live'
  elseif progress == 'plain' then mode = 'plain'
  elseif progress == 'auto' then mode = is_terminal(fd) and 'live' or 'plain'
  else error("Logger: progress must be 'auto', true, false or 'plain'", 2) end
  local self = setmetatable({
    run_dir = run_dir, path = path, f = f, resumed = resumed, stream = stream, fd = fd,
    mode = mode, total_steps = total, log_every = log_every,
    t0 = monotonic(), elapsed0 = opts.elapsed or 0, last = {}, drawn = false, start_step = opts.start_step or 0,
  }, Logger)
  if opts.tensorboard ~= false then
    local tb = run_dir .. '/tb'
    files.mkdir_p(tb, 'Logger', 2)
    self.events = tensorboard.EventWriter(tensorboard.event_file_name(tb))
    self.events_path = self.events.path
    if opts.start_step then
      self.events:add_session_log('START', opts.start_step)
      self.events:flush()
    end
  end
  return self
end

-- The live or plain progress line from the last values seen.
function Logger:progress_line(step)
  local last, parts = self.last, {}
  local total = self.total_steps
  if total and total > 0 then
    parts[1] = ('step %d/%d'):format(step, total)
  else
    parts[1] = ('step %d'):format(step)
  end
  local loss = last['loss/train'] or last.loss
  if loss then parts[#parts + 1] = 'loss ' .. num_text('%.4f', loss) end
  if last.lr then parts[#parts + 1] = 'lr ' .. num_text('%.2e', last.lr) end
  if last.grad_norm then parts[#parts + 1] = 'grad norm ' .. num_text('%.3f', last.grad_norm) end
  if last.tokens_per_s then parts[#parts + 1] = num_text('%.0f', last.tokens_per_s) .. ' tok/s' end
  local now = monotonic()
  parts[#parts + 1] = 'elapsed ' .. clock_text(self.elapsed0 + now - self.t0)
  if total and total > 0 then
    -- the rate since this Logger's first log: a resumed run's own pace
    local eta = 0 / 0
    if self.first_step and step > self.first_step then
      eta = (total - step) * (now - self.first_time) / (step - self.first_step)
    elseif step >= total then
      eta = 0
    end
    parts[#parts + 1] = 'ETA ' .. clock_text(eta)
  end
  return table.concat(parts, '  ')
end

local function eval_line(step, m)
  local parts = { ('step %d'):format(step) }
  if m['loss/eval'] then parts[#parts + 1] = 'eval loss ' .. num_text('%.4f', m['loss/eval']) end
  if m.perplexity then parts[#parts + 1] = 'perplexity ' .. num_text('%.2f', m.perplexity) end
  return table.concat(parts, '  ')
end

function Logger:draw(line)
  local width = terminal_width(self.fd)
  if width > 1 and #line > width - 1 then line = line:sub(1, width - 1) end
  self.stream:write('\r', line, '\27[K')  -- back to the start of the line, draw, clear what is left
  self.stream:flush()
  self.drawn = true
end

-- Prints text as a line of its own; on a terminal the live line is cleared
-- first and drawn again below it.
function Logger:print(text)
  if self.mode == 'off' then return end
  if self.mode == 'live' and self.drawn then
    self.stream:write('\r\27[K', text, '\n')
    self.drawn = false
    if self.last_step then self:draw(self:progress_line(self.last_step)) end
  else
    self.stream:write(text, '\n')
  end
  self.stream:flush()
end

-- Logs metrics (a table name -> number, or a one-element tensor) at step.
function Logger:log(step, metrics)
  if not self.f then error('log: the Logger is closed', 2) end
  if type(step) ~= 'number' or step % 1 ~= 0 then error('log: step must be an integer, got ' .. tostring(step), 2) end
  if type(metrics) ~= 'table' then error('log: metrics must be a table of name = number', 2) end
  local names, values = {}, {}
  for k, v in pairs(metrics) do
    if type(k) ~= 'string' then error('log: metric names must be strings', 2) end
    if k == 'step' or k == 'time' then error(('log: %q is written by the Logger, not a metric name'):format(k), 2) end
    names[#names + 1] = k
    values[k] = to_number(v, k, 2)
  end
  table.sort(names)
  local wall = tensorboard.now()
  local parts = { '{"step":', ('%d'):format(step), ',"time":', json_number(wall) }
  for _, k in ipairs(names) do
    local v = values[k]
    parts[#parts + 1] = ',' .. json.quote(k) .. ':' .. (type(v) == 'number' and json_number(v) or tostring(v))
  end
  parts[#parts + 1] = '}\n'
  local ok, err = self.f:write(table.concat(parts))
  if ok then ok, err = self.f:flush() end
  if not ok then error(('log: cannot write %s: %s'):format(self.path, tostring(err)), 2) end
  if self.events then
    local eok, eerr = pcall(function()
      for _, k in ipairs(names) do
        if type(values[k]) == 'number' then self.events:add_scalar(k, values[k], step, wall) end
      end
      self.events:flush()
    end)
    if not eok then error('log: ' .. tostring(eerr):gsub('^[^:]*:%d+: ', ''), 2) end
  end
  -- progress
  local is_eval = values['loss/eval'] ~= nil
  for _, k in ipairs(names) do
    if k ~= 'loss/eval' and k ~= 'perplexity' then self.last[k] = values[k] end
  end
  local has_train = false  -- this log has more than an evaluation's results
  for _, k in ipairs(names) do if k ~= 'loss/eval' and k ~= 'perplexity' then has_train = true end end
  if not self.first_step and has_train then self.first_step, self.first_time = step, monotonic() end
  if self.mode == 'off' then return end
  if is_eval then self:print(eval_line(step, values)) end
  if has_train then
    self.last_step = step
    if self.mode == 'live' then
      self:draw(self:progress_line(step))
    elseif step % self.log_every == 0 or step == self.total_steps
        or step - (self.printed_step or self.start_step) >= self.log_every then
      -- multiples of log_every, and never log_every steps without a line
      -- (a caller that logs every 25 steps with log_every 10 still gets each)
      self.printed_step = step
      self.stream:write(self:progress_line(step), '\n')
      self.stream:flush()
    end
  end
end

function Logger:close()
  if not self.f then return end
  if self.mode == 'live' and self.drawn then
    self.stream:write('\n')
    self.stream:flush()
    self.drawn = false
  end
  self.f:close()
  self.f = nil
  if self.events then self.events:close() end
end

-- Reading ---------------------------------------------------------------------

-- The records of run_dir/metrics.jsonl (or of the .jsonl file given), in
-- order, as tables; "inf"/"-inf"/"nan" strings come back as numbers. A last
-- line cut short (a run killed mid-write) is left out. A resumed run's
-- records replace the interrupted run's: when a step is lower than one before
-- it, earlier records at that step or after are dropped (opts.raw keeps all).
function M.read_metrics(run_dir, opts)
  opts = opts or {}
  if type(run_dir) ~= 'string' then error('read_metrics: expected a run directory', 2) end
  local path = run_dir:match('%.jsonl$') and run_dir or run_dir .. '/metrics.jsonl'
  local f, err = io.open(path, 'rb')
  if not f then error('read_metrics: cannot open ' .. tostring(err), 2) end
  local text = f:read('*a')
  f:close()
  local out, lineno, pos, max_step = {}, 0, 1, -math.huge
  while pos <= #text do
    local nl = text:find('\n', pos, true)
    local line = text:sub(pos, (nl or #text + 1) - 1)
    lineno = lineno + 1
    pos = (nl or #text) + 1
    if line:match('%S') then
      local ok, rec = pcall(json.decode, line)
      if not ok or type(rec) ~= 'table' then
        if not nl then break end  -- the last line, cut short
        error(('read_metrics: %s line %d: not a JSON object (%s)'):format(path, lineno,
          tostring(rec):gsub('^[^:]*:%d+: ', '')), 2)
      end
      for k, v in pairs(rec) do
        if type(v) == 'string' and NONFINITE[v] then rec[k] = NONFINITE[v] end
      end
      local step = tonumber(rec.step)
      if step and not opts.raw then
        if step < max_step then
          local kept = {}
          for _, r in ipairs(out) do
            if not (tonumber(r.step) and r.step >= step) then kept[#kept + 1] = r end
          end
          out = kept
        end
        max_step = step
      end
      out[#out + 1] = rec
    end
  end
  return out
end

return M

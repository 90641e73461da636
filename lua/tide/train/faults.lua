-- What a training loop does when something goes wrong between steps:
-- Ctrl-C (finish the step, save, say how to resume, exit 130) and a loss or
-- gradient norm that stops being finite (stop and say where, or skip the
-- update and count it). Shared by tide.train.Trainer and the recipes.
local C = require 'tide.C'

local M = {}

local function finite(x) return type(x) == 'number' and x == x and x ~= math.huge and x ~= -math.huge end
M.finite = finite

-- Ctrl-C -----------------------------------------------------------------------------------
-- Normally a Ctrl-C raises "interrupted" inside the next tensor op, which
-- would abandon a step half-done (gradients accumulated, optimizer not
-- stepped). A loop that calls catch_interrupts() asks the engine to leave the
-- interrupt pending instead, and polls it at step boundaries. The tide
-- executable's handler restores the default action on the first Ctrl-C, so a
-- second one ends the process at once (the checkpoint writer is atomic, so
-- that leaves the previous checkpoint intact).
local Catcher = {}
Catcher.__index = Catcher

function M.catch_interrupts()
  local self = setmetatable({ _was = C.tide_interrupt_defer(1) }, Catcher)
  return self
end

-- true once a Ctrl-C has arrived (it stays pending until release). In a
-- data-parallel job it is true on every rank when any rank got one (a
-- one-number all-reduce per call), so all stop at the same step and take
-- part in the same checkpoint.
function Catcher:requested()
  local here = C.tide_interrupt_pending() ~= 0
  local d = require('tide.train.dist').world()
  if d == nil then return here end
  local flag = require('tide').tensor({ here and 1 or 0 }, { dtype = 'i32' })
  d.all_reduce(flag, 'max')
  return flag:item() ~= 0
end

-- Back to the previous mode; a Ctrl-C that was caught here is forgotten when
-- `handled`, else the next op raises it as usual.
function Catcher:release(handled)
  if self._was == nil then return end
  C.tide_interrupt_defer(self._was)
  self._was = nil
  if handled then C.tide_interrupt_take() end
end

-- A word as a POSIX shell reads it back.
local function shell_word(w)
  if w:match('^[%w%-_./=:,+@%%]+$') then return w end
  return "'" .. w:gsub("'", "'\\''") .. "'"
end

-- The command line that continues this run: the script's own, with
-- --resume=auto in place of any --resume or --overwrite, and --out=run_dir
-- when the script takes --out; nil outside a script run by `tide FILE.lua`.
function M.resume_command(run_dir)
  local script = rawget(_G, 'arg') and _G.arg[0]
  if type(script) ~= 'string' or script:sub(1, 1) == '-' then return nil end
  local tide = require 'tide'
  local args, keys = tide.args or {}, {}
  for k in pairs(args) do
    if k ~= 'resume' and k ~= 'overwrite' and k ~= 'out' then keys[#keys + 1] = k end
  end
  table.sort(keys)
  local parts = { 'tide', shell_word(script) }
  if args.out ~= nil and run_dir then parts[#parts + 1] = shell_word('--out=' .. run_dir) end
  for _, k in ipairs(keys) do
    local v = args[k]
    parts[#parts + 1] = shell_word(v == true and '--' .. k or v == false and '--no-' .. k
                                   or ('--%s=%s'):format(k, tostring(v)))
  end
  parts[#parts + 1] = '--resume=auto'
  return table.concat(parts, ' ')
end

-- Says where an interrupted run stopped and how to go on, then exits 130
-- (128 + SIGINT, what a shell reports for a Ctrl-C).
function M.exit_interrupted(step, checkpoint, run_dir, stream)
  stream = stream or io.stderr
  stream:write(('\ninterrupted: stopped after step %d; checkpoint %s\n'):format(step, tostring(checkpoint or 'not written')))
  local cmd = checkpoint and M.resume_command(run_dir)
  if cmd then
    stream:write('to resume: ', cmd, '\n')
  elseif checkpoint then
    stream:write(("to resume: pass --resume=auto (or Trainer:train{resume_from_checkpoint = '%s'})\n")
      :format(run_dir or checkpoint))
  end
  stream:flush()
  io.stdout:flush()
  os.exit(130, true)  -- closing the state frees every tensor and runs finalisers
end

-- Non-finite values ------------------------------------------------------------------------
-- The message for a loss or gradient norm that is NaN or infinite: the step,
-- the micro-batch (within gradient accumulation), and the checkpoint a user
-- can go back to.
function M.nonfinite_message(f)
  local what = {}
  if f.loss ~= nil and not finite(f.loss) then
    what[#what + 1] = ('the loss is %s at micro-batch %d of %d'):format(tostring(f.loss), f.micro or 1, f.accum or 1)
  end
  if f.grad_norm ~= nil and not finite(f.grad_norm) then
    what[#what + 1] = 'the gradient norm is ' .. tostring(f.grad_norm)
  end
  local text = ('step %d: %s'):format(f.step, table.concat(what, ' and '))
  if f.hint == false then return text end
  return ('%s: training diverged; last good checkpoint: %s (lower the learning rate, or skip such updates '
          .. 'with --skip_nonfinite / args.skip_nonfinite)'):format(text, tostring(f.checkpoint or 'none'))
end

-- Guard{skip = bool}: g:check{step=, micro=, accum=, loss=, grad_norm=, checkpoint=}
-- returns true when the values are finite; else, with skip, counts the update
-- as skipped and returns false; without, raises the message above (a plain
-- string error, level 0, so it reads as it is).
local Guard = {}
Guard.__index = Guard

function M.Guard(opts)
  opts = opts or {}
  return setmetatable({ skip = opts.skip and true or false, skipped = opts.skipped or 0 }, Guard)
end

function Guard:ok(loss, grad_norm)
  return (loss == nil or finite(loss)) and (grad_norm == nil or finite(grad_norm))
end

function Guard:check(f)
  if self:ok(f.loss, f.grad_norm) then return true end
  if self.skip then
    self.skipped = self.skipped + 1
    io.stderr:write(('warning: %s: update skipped (%d so far)\n'):format(
      M.nonfinite_message({ step = f.step, micro = f.micro, accum = f.accum, loss = f.loss,
                            grad_norm = f.grad_norm, hint = false }), self.skipped))
    return false
  end
  error(M.nonfinite_message(f), 0)
end

return M

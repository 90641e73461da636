-- tide.train.Trainer, the fault helpers and tide.train itself (issue 12,
-- items 6 and 7), with the real checkpoint, evaluation and metrics modules.
local T = require 'tide.testing'
local ffi = require 'ffi'
local C = require 'tide.C'
local files = require 'tide.data.files'
local train = tide.train
local faults = train.faults

local function tiny_model()
  tide.manual_seed(0)
  return tide.gpt2.new({ vocab_size = 32, n_positions = 8, n_embd = 16, n_layer = 1, n_head = 2,
                         resid_pdrop = 0, embd_pdrop = 0, attn_pdrop = 0 })
end
local function batches(n, rows)
  tide.manual_seed(1)
  local list = {}
  for i = 1, n do list[i] = tide.randint(0, 32, { rows, 8 }) end
  return list
end
local function run_dir() return files.temp_dir('tide_test_trainer') end

T.test('tide.train holds the Trainer, the fault helpers and whatever modules this build has', function()
  T.eq(require('tide.train'), tide.train)
  T.eq(type(train.Trainer), 'function')
  T.eq(type(train.catch_interrupts), 'function')
  T.eq(type(faults.Guard), 'function')
end)

T.test('nonfinite_message names the step, the micro-batch and the last good checkpoint', function()
  local m = faults.nonfinite_message({ step = 7, micro = 2, accum = 4, loss = 0 / 0, checkpoint = 'r/checkpoints/step-000005' })
  T.truthy(m:find('^step 7: the loss is nan at micro%-batch 2 of 4: training diverged; last good checkpoint: r/checkpoints/step%-000005'), m)
  m = faults.nonfinite_message({ step = 3, grad_norm = math.huge })
  T.truthy(m:find('^step 3: the gradient norm is inf: training diverged; last good checkpoint: none'), m)
  local g = faults.Guard()
  T.truthy(g:check({ step = 1, loss = 1, grad_norm = 2 }))
  T.raises(function() g:check({ step = 2, grad_norm = 0 / 0 }) end, 'step 2: the gradient norm is nan')
  g = faults.Guard({ skip = true })
  T.eq(g:check({ step = 2, micro = 1, accum = 1, loss = -math.huge }), false)
  T.eq(g.skipped, 1)
end)

T.test('resume_command is the recipe command line with --out and --resume=auto', function()
  local old_arg, old_args = rawget(_G, 'arg'), tide.args
  _G.arg = { [0] = 'recipes/x.lua' }
  tide.args = { steps = 10, resume = 'auto', out = 'o', skip_nonfinite = true, name = "it's a b" }
  local cmd = faults.resume_command('runs/a')
  tide.args = { steps = 10, overwrite = true }
  local cmd2 = faults.resume_command('runs/a')  -- a script without --out gets none
  _G.arg, tide.args = old_arg, old_args
  T.eq(cmd, [[tide recipes/x.lua --out=runs/a '--name=it'\''s a b' --skip_nonfinite --steps=10 --resume=auto]])
  T.eq(cmd2, 'tide recipes/x.lua --steps=10 --resume=auto')
end)

T.test('Trainer: trains, logs, saves every save_steps and at the end, calls the callbacks', function()
  local dir = run_dir()
  local ends, saves, evals = 0, {}, 0
  local tr = train.Trainer({
    model = tiny_model(), train = batches(4, 4), eval = batches(2, 4),
    args = { output_dir = dir, max_steps = 30, learning_rate = 1e-2, warmup_steps = 2, logging_steps = 10,
             save_steps = 20, eval_steps = 15, progress = false, plot = false },
    callbacks = { on_step_end = function(_, s) ends = ends + 1; T.eq(s.step, ends) end,
                  on_save = function(_, p) saves[#saves + 1] = p end,
                  on_evaluate = function(_, m) evals = evals + 1; T.truthy(m['loss/eval'] == m['loss/eval']) end },
  })
  local first
  tr.callbacks.on_step_end = (function(f) return function(t, s) first = first or s.loss; f(t, s) end end)(tr.callbacks.on_step_end)
  local r = tr:train()
  T.eq(r.step, 30)
  T.eq(ends, 30)
  T.eq(#saves, 2)  -- step 20 and the end
  T.truthy(saves[1]:find('step%-000020$'), saves[1])
  T.truthy(saves[2]:find('step%-000030$'), saves[2])
  T.eq(evals, 2)  -- step 15 and the end
  T.truthy(r.loss < first - 0.5, ('loss %g -> %g'):format(first, r.loss))
  T.eq(r.tokens, 30 * 4 * 8)
  files.remove_tree(dir)
end)

T.test('Trainer: 2 micro-batches of 2 rows step as one batch of 4', function()
  local rows4 = batches(2, 4)
  local rows2 = {}
  for i, b in ipairs(rows4) do rows2[2 * i - 1], rows2[2 * i] = b:narrow(1, 1, 2):contiguous(), b:narrow(1, 3, 2):contiguous() end
  local function run(list, accum)
    local dir = run_dir()
    local m = tiny_model()
    train.Trainer({ model = m, train = list, args = { output_dir = dir, max_steps = 4, learning_rate = 1e-2,
      gradient_accumulation_steps = accum, max_grad_norm = 0, progress = false, plot = false, logging_steps = 100 } }):train()
    files.remove_tree(dir)
    return m:parameters()[1]
  end
  T.close(run(rows2, 2), run(rows4, 1), { atol = 1e-5, rtol = 1e-4 })
end)

T.test('Trainer: a NaN loss at step k stops the run naming the step, micro-batch and checkpoint', function()
  local dir = run_dir()
  local n = 0
  local tr = train.Trainer({
    model = tiny_model(), train = batches(4, 2),
    args = { output_dir = dir, max_steps = 10, gradient_accumulation_steps = 2, save_steps = 2,
             progress = false, plot = false },
    compute_loss = function(m, b)
      n = n + 1
      local loss = m(b, { labels = b }).loss
      if n == 10 then loss = loss * (0 / 0) end  -- step 5, micro-batch 2
      return loss
    end })
  T.raises(function() tr:train() end, 'step 5: the loss is nan at micro-batch 2 of 2: training diverged; '
    .. 'last good checkpoint: ' .. dir .. '/checkpoints/step-000004')
  -- the loop gave Ctrl-C back to the ops
  T.eq(C.tide_interrupt_defer(0), 0)
  files.remove_tree(dir)
end)

T.test('Trainer: skip_nonfinite skips the update, counts it, and goes on', function()
  local dir = run_dir()
  local n, before, after = 0, nil, nil
  local m = tiny_model()
  local tr = train.Trainer({
    model = m, train = batches(4, 2),
    args = { output_dir = dir, max_steps = 6, skip_nonfinite = true, progress = false, plot = false },
    compute_loss = function(model, b)
      n = n + 1
      if n == 3 then before = m:parameters()[1]:clone() end
      local loss = model(b, { labels = b }).loss
      if n == 3 then loss = loss * math.huge * 0 end
      return loss
    end,
    callbacks = { on_step_end = function(_, s)
      if s.step == 3 then T.eq(s.skipped, true); after = m:parameters()[1]:clone() end
    end } })
  local r = tr:train()
  T.eq(r.step, 6)
  T.eq(r.skipped_nonfinite, 1)
  T.close(after, before, { atol = 0, rtol = 0 })
  files.remove_tree(dir)
end)

T.test('Trainer: resuming from a checkpoint gives bitwise the losses of the run never stopped', function()
  local function run(dir, resume, crash_at)
    local losses = {}
    train.Trainer({ model = tiny_model(), train = batches(3, 2), eval = batches(1, 2),
      args = { output_dir = dir, max_steps = 10, learning_rate = 1e-2, warmup_steps = 2,
               lr_scheduler_type = 'cosine', gradient_accumulation_steps = 2, save_steps = 4, eval_steps = 3,
               progress = false, plot = false, logging_steps = 100 },
      callbacks = { on_step_end = function(_, s)
        losses[s.step] = ('%a'):format(s.loss)
        if s.step == crash_at then error('crash') end
      end } })
      :train({ resume_from_checkpoint = resume })
    return losses
  end
  local a, b = run_dir(), run_dir()
  local straight = run(a)
  T.raises(function() run(b, nil, 6) end, 'crash')  -- a run that dies at step 6 ...
  local resumed = run(b, 'auto')                    -- ... taken up from its checkpoint at step 4
  for step = 5, 10 do T.eq(resumed[step], straight[step], 'step ' .. step) end
  T.eq(resumed[4], nil)
  files.remove_tree(a)
  files.remove_tree(b)
end)

T.test('deferred interrupts: a Ctrl-C waits for the loop to poll it; ops do not raise it', function()
  -- the SIGINT handler is the tide executable's; libtide loaded elsewhere has none
  if not pcall(function() return ffi.C.tide_api_header end) then T.skip('not inside the tide executable') end
  ffi.cdef 'int kill(int pid, int sig); int getpid(void);'
  local catcher = faults.catch_interrupts()
  T.eq(catcher:requested(), false)
  ffi.C.kill(ffi.C.getpid(), 2)  -- SIGINT: the tide executable's handler marks it pending
  local x = tide.ones(3) + 1      -- an op, which outside this mode would raise "interrupted"
  for _ = 1, 1000 do x = x * 1 end
  T.eq(catcher:requested(), true)
  catcher:release(true)
  T.eq(C.tide_interrupt_pending(), 0)
  T.close(tide.ones(2) * 2, { 2, 2 })  -- no stale interrupt left behind
end)

-- A tiny training run for tests/cli/test_train_faults.sh: the Trainer on a
-- 2-layer GPT-2 with synthetic batches, steps fast enough to interrupt.
--   tide tests/cli/train_faults_run.lua --out=RUN [--steps=N] [--nan_at=K] [--skip_nonfinite]
--        [--slow_save=SECONDS] [--resume=auto]
-- Prints "started" once 3 steps are done, so the test knows when to send Ctrl-C.
local args = tide.args
local train = tide.train

tide.manual_seed(0)
local model = tide.gpt2.new({ vocab_size = 64, n_positions = 16, n_embd = 16, n_layer = 2, n_head = 2,
                              resid_pdrop = 0, embd_pdrop = 0, attn_pdrop = 0 })
local batches = {}
for i = 1, 8 do batches[i] = tide.randint(0, 64, { 2, 16 }) end
local step = 0
local trainer = train.Trainer({
  model = model, train = batches,
  args = { output_dir = args.out, max_steps = args.steps or 1000000, learning_rate = 1e-3, logging_steps = 1000000,
           save_steps = 0, skip_nonfinite = args.skip_nonfinite or false, progress = false, plot = false,
           gradient_accumulation_steps = args.accum or 1, seed = 0 },
  compute_loss = function(m, batch)
    local loss = m(batch, { labels = batch }).loss
    -- the step the run is in counts from the first micro-batch of each step
    if args.nan_at and step + 1 == args.nan_at then loss = loss * (0 / 0) end
    return loss
  end,
  callbacks = {
    on_step_end = function(_, s)
      step = s.step
      if s.step == 3 then io.stdout:write('started\n'); io.stdout:flush() end
    end,
    on_save = function(_, path)
      io.stdout:write('saved ', path, '\n'); io.stdout:flush()
      if args.slow_save then
        local t = tide.clock()
        while tide.clock() - t < args.slow_save do end
      end
    end,
  },
})
local r = trainer:train({ resume_from_checkpoint = args.resume })
print(('done: step %d, skipped %d'):format(r.step, r.skipped_nonfinite))

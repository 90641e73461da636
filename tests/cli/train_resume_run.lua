-- The training run behind tests/cli/test_train_resume.sh: a tiny GPT-2 (about
-- 4,600 parameters, dropout on) trained on seeded random tokens from shuffled
-- shards, with gradient accumulation, an evaluation every few steps and a
-- checkpoint every few micro-steps (so some are taken inside an accumulation
-- and some right after an evaluation). Every loss, gradient norm, learning
-- rate and evaluation is printed with %a, so two runs compare bit for bit.
--
--   tide tests/cli/train_resume_run.lua --out=RUN --data=DIR [--resume=auto]
--        [--kill_at=N --kill_stage=step|file|rename|latest]
-- --kill_at=N: SIGKILL this process at global micro-step N: after its
-- backward (stage step), or inside the checkpoint written after it (before
-- a file, before the rename into place, before `latest` is replaced).
local ffi = require 'ffi'
local ck = require 'tide.train.checkpoint'
local ev = require 'tide.train.evaluate'
local files = require 'tide.data.files'
local shards = require 'tide.data.shards'
pcall(ffi.cdef, 'int kill(int pid, int sig);')
pcall(ffi.cdef, 'int getpid(void);')

local args = tide.args
local out, data = assert(args.out, '--out=RUN'), assert(args.data, '--data=DIR')
local steps, accum, save_every, eval_every = args.steps or 30, args.accum or 2, args.save_every or 3, args.eval_every or 2
local kill_at, kill_stage = args.kill_at, args.kill_stage or 'step'
local V, T, B = 64, 16, 4
-- one thread: a model this small gains nothing from more, and a busy machine
-- (ctest -j) makes a thread pool wait for its workers
tide.set_num_threads(1)

local function die() ffi.C.kill(ffi.C.getpid(), 9) end

-- the data: seeded tokens, written once and shared by every run
if not files.exists(data .. '/train.json') then
  local s = 12345
  local function rnd() s = (s * 1103515245 + 12345) % 2147483648; return s end
  for _, sp in ipairs { { 'train', 64 }, { 'valid', 8 } } do
    local w = shards.writer(data, { prefix = sp[1], vocab_size = V, seq_length = T })
    local ids = {}
    for i = 1, sp[2] * T do ids[i] = rnd() % V end
    w:write(ids)
    w:close()
  end
end

tide.manual_seed(7)
local model = tide.gpt2.new({ vocab_size = V, n_positions = T, n_embd = 16, n_layer = 1, n_head = 2,
                              resid_pdrop = 0.1, embd_pdrop = 0.1, attn_pdrop = 0.1 })
local opt = tide.optim.AdamW(tide.optim.grouped_params(model, 0.1), { lr = 1e-2, betas = { 0.9, 0.95 } })
local sched = tide.optim.get_scheduler('cosine', opt, { num_warmup_steps = 3, num_training_steps = steps })
local train = shards.shards(data, { prefix = 'train', batch_size = B, shuffle = true, seed = 3, epochs = math.huge })
local valid = shards.shards(data, { prefix = 'valid', batch_size = B })
local state = { model = model, optimizer = opt, scheduler = sched, loader = train }

local step, micro, tokens = 0, 0, 0
if args.resume and #ck.list_checkpoints(out) > 0 then
  local info = ck.load_checkpoint(args.resume == 'auto' and out or args.resume, state)
  step, micro, tokens = info.step, info.micro_step, info.tokens
  io.stderr:write(('resumed from %s at step %d micro %d%s\n'):format(info.path, step, micro,
    info.message and (' (' .. info.message .. ')') or ''))
end
local global = step * accum + micro
while step < steps do
  local x = train()
  local loss = model(x, { labels = x }).loss
  loss:div(accum):backward()
  micro, global, tokens = micro + 1, global + 1, tokens + B * T
  print(('%d.%d loss %a'):format(step + 1, micro, loss:item()))
  if kill_at == global and kill_stage == 'step' then die() end
  if micro == accum then
    local norm = tide.optim.clip_grad_norm(model:parameters(), 1.0)
    opt:step()
    sched:step()
    opt:zero_grad()
    step, micro = step + 1, 0
    print(('%d norm %a lr %a'):format(step, norm, sched:get_last_lr()[1]))
    if step % eval_every == 0 then
      local r = ev.evaluate(model, valid, { max_batches = 2 })
      print(('%d eval %a ppl %a'):format(step, r.loss, r.perplexity))
    end
  end
  if global % save_every == 0 then
    state.step, state.micro_step, state.tokens = step, micro, tokens
    ck.save_checkpoint(out, state, { keep_last = 3, hook = function(stage)
      if kill_at == global and kill_stage == stage then die() end
    end })
  end
end

-- The training run behind tests/cli/test_ddp.sh: a tiny GPT-2 (no dropout,
-- so that the ranks' random draws cannot differ from one process's) trained
-- on seeded random tokens from shuffled shards, data-parallel when started by
-- mpirun. Rank 0 prints, per step, the loss averaged over every rank's batch
-- and the clipped gradient norm, with %a (bit for bit) and %.17g (for the
-- tolerance checks), and at the end how many bucket reductions ran.
--
--   [mpirun -np 2] tide tests/cli/ddp_run.lua --out=RUN --data=DIR [--steps=20] [--batch=4]
--        [--accum=1] [--zero=1] [--save_at=N] [--resume=CHECKPOINT] [--kill_rank=R --kill_step=S]
-- --batch is per rank: one process with --batch=8 sees the batches two ranks
-- with --batch=4 see together. --kill_rank/--kill_step: that rank SIGKILLs
-- itself in the middle of that step (after its forward, while the other is
-- already in backward's collectives).
local ffi = require 'ffi'
local files = require 'tide.data.files'
local shards = require 'tide.data.shards'
pcall(ffi.cdef, 'int kill(int pid, int sig);')
pcall(ffi.cdef, 'int getpid(void);')

local args = tide.args
local out, data = assert(args.out, '--out=RUN'), assert(args.data, '--data=DIR')
local steps, B, accum = args.steps or 20, args.batch or 4, args.accum or 1
local V, T = 64, 16
tide.set_num_threads(1)  -- two ranks on a shared machine; the model is tiny

local job = tide.dist.init()
local main = job.rank == 0

-- the data: seeded tokens, written once (by rank 0) and shared by every run
tide.train.main_process_first(function()
  if not files.exists(data .. '/train.json') then
    local s = 12345
    local function rnd() s = (s * 1103515245 + 12345) % 2147483648; return s end
    local w = shards.writer(data, { prefix = 'train', vocab_size = V, seq_length = T })
    local ids = {}
    for i = 1, 256 * T do ids[i] = rnd() % V end
    w:write(ids)
    w:close()
  end
end)

tide.manual_seed(7)
local model = tide.gpt2.new({ vocab_size = V, n_positions = T, n_embd = 32, n_layer = 2, n_head = 2,
                              resid_pdrop = 0, embd_pdrop = 0, attn_pdrop = 0 })
-- small buckets, so that this tiny model has several (the reduction order
-- and the overlap with backward are exercised)
if job.world_size > 1 or args.zero then
  model = tide.dist.DataParallel(model, { bucket_mb = 0.02, first_bucket_mb = 0.005, overlap = args.overlap ~= 0 })
end
local opt = tide.optim.AdamW(tide.optim.grouped_params(model, 0.1), { lr = 3e-3, betas = { 0.9, 0.95 }, zero = args.zero })
local sched = tide.optim.get_scheduler('cosine', opt, { num_warmup_steps = 3, num_training_steps = steps })
local loader = shards.shards(data, { prefix = 'train', batch_size = B, shuffle = true, seed = 3, epochs = math.huge })
local state = { model = model, optimizer = opt, scheduler = sched, loader = loader }

local start = 0
if args.resume then
  local info = tide.train.load_checkpoint(args.resume, state)
  start = info.step
  if main then io.stderr:write(('resumed from %s at step %d\n'):format(info.path, start)) end
end

local function global_mean(x)
  local t = tide.tensor({ x }, { dtype = 'f64' })
  if job.world_size > 1 then tide.dist.all_reduce(t, 'avg') end
  return t:item()
end

for step = start + 1, steps do
  opt:zero_grad()
  local total = 0
  for micro = 1, accum do
    local x = loader()
    local loss = model(x, { labels = x }).loss
    if args.kill_step == step and args.kill_rank == job.rank then ffi.C.kill(ffi.C.getpid(), 9) end
    total = total + loss:item() / accum
    local scaled = accum > 1 and loss / accum or loss
    if micro < accum and model.no_sync then
      model:no_sync(scaled.backward, scaled)
    else
      scaled:backward()
    end
  end
  local norm = tide.optim.clip_grad_norm(model:parameters(), 1.0)
  opt:step()
  sched:step()
  local l = global_mean(total)
  if main then print(('step %d loss %a norm %a | %.17g %.17g'):format(step, l, norm, l, norm)) end
  if args.save_at == step then tide.train.save_checkpoint(out, { step = step, model = model, optimizer = opt,
                                                                scheduler = sched, loader = loader }) end
end
if main and model.ddp then
  print(('reduces %d buckets %d'):format(model.ddp.stats.reduces, #model.ddp.buckets))
end

-- Data-parallel training step time (bench/ddp.sh runs it on 1 and 2 ranks
-- beside PyTorch DDP over gloo, bench/ddp_peer.py): a small GPT-2 (4 layers,
-- 256 dims, vocab 8192, T=128), --batch rows per rank, forward, backward
-- (gradients averaged in 25 MB buckets from the hooks), clip, AdamW. Rank 0
-- prints the median step, the time spent inside the collectives per step
-- (during backward: starting the buckets' all-reduces, or ZeRO-1's blocking
-- reduce-scatters; after it: the last buckets and waiting for the started
-- ones, the communication backward did not hide), an all-reduce of the gradient's size on
-- its own (what communication costs when nothing overlaps it), and memory.
--   [mpirun -np 2] tide bench/ddp.lua --batch=4 --steps=10 --warmup=2 [--zero=1] [--threads=1] [--overlap=0]
-- (--overlap=0: each bucket all-reduced blocking in its hook, as before all_reduce_async;
-- the line then ends "(blocking)"). "hidden" = 1 - (time in collectives per step) / (all-reduce alone).
local a = tide.args
local job = tide.dist.init({ check = a.check == 1 })
local cfg = { vocab_size = a.vocab or 8192, n_positions = a.seq or 128, n_embd = a.n_embd or 256,
              n_layer = a.n_layer or 4, n_head = a.n_head or 4, resid_pdrop = 0, embd_pdrop = 0, attn_pdrop = 0 }
local B, T = a.batch or 4, a.seq or 128
local steps, warmup = a.steps or 10, a.warmup or 2
tide.set_num_threads(a.threads or 1)
tide.manual_seed(0)
local model = tide.gpt2.new(cfg)
local wrapped = job.world_size > 1 or a.zero
if wrapped then model = tide.dist.DataParallel(model, { bucket_mb = a.bucket_mb or 25, overlap = a.overlap ~= 0 }) end
local opt = tide.optim.AdamW(tide.optim.grouped_params(model, 0.1), { lr = 5e-4, betas = { 0.9, 0.95 }, eps = 1e-8,
                                                                     zero = a.zero })
tide.manual_seed(1 + job.rank)  -- each rank its own batch
local ids = tide.randint(0, cfg.vocab_size, { B, T })
local numel = model:num_parameters()

local times, comm_bw, comm_fin, out = {}, {}, {}, nil
for step = 1, warmup + steps do
  if job.world_size > 1 then tide.dist.barrier() end  -- every rank starts the step together
  local st = wrapped and model.ddp.stats
  local bw0, fin0 = st and st.backward_comm_s or 0, st and st.finalize_comm_s + st.wait_comm_s or 0
  local t0 = tide.clock()
  out = model(ids, { labels = ids })
  opt:zero_grad()
  out.loss:backward()
  tide.optim.clip_grad_norm(model:parameters(), 1.0)
  opt:step()
  local dt = tide.clock() - t0
  if step > warmup then
    times[#times + 1] = dt
    comm_bw[#comm_bw + 1] = (st and st.backward_comm_s or 0) - bw0
    comm_fin[#comm_fin + 1] = (st and st.finalize_comm_s + st.wait_comm_s or 0) - fin0
  end
end
local function median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  return s[math.floor((#s + 1) / 2)]
end
out = nil
collectgarbage('collect'); collectgarbage('collect')
-- what stays between steps: parameters, gradients (buckets), optimizer state
local live = tide.memory().live
local state_bytes = opt.zero and opt.zero.state_bytes or 2 * numel * 4

-- an all-reduce of the whole gradient on its own, 5 times
local ar = 0
if job.world_size > 1 then
  local buf = tide.ones(numel)
  local ts = {}
  for i = 1, 6 do
    tide.dist.barrier()
    local t0 = tide.clock()
    tide.dist.all_reduce(buf, 'avg')
    if i > 1 then ts[#ts + 1] = tide.clock() - t0 end
  end
  ar = median(ts)
end
if job.rank == 0 then
  print(('tide ranks %d batch %d: median step %.1f ms, in collectives %.1f ms during backward + %.1f ms after, ' ..
         'all-reduce of %.1f MB alone %.1f ms, hidden %s, optimizer state %.1f MB/rank, engine live %.1f MB/rank%s%s')
    :format(job.world_size, B, median(times) * 1e3, median(comm_bw) * 1e3, median(comm_fin) * 1e3,
            numel * 4 / 2 ^ 20, ar * 1e3,
            ar > 0 and ('%.2f'):format(1 - (median(comm_bw) + median(comm_fin)) / ar) or 'n/a',
            state_bytes / 2 ^ 20, live / 2 ^ 20, a.zero and ' (zero 1)' or '', a.overlap == 0 and ' (blocking)' or ''))
end

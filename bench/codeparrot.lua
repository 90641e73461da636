-- The training loop of recipes/codeparrot.lua, timed: the course's loop
-- (forward, keytoken-weighted loss, backward, clipping at 1.0, AdamW with
-- decay groups, cosine schedule) on the GPT-2 "small" shape of the recipe
-- (4 layers of 128, 4 heads) over batches a run of the recipe packed;
-- bench/codeparrot.sh runs it beside the same loop in PyTorch eager
-- (bench/codeparrot_peer.py) on the same batches, model and threads.
--   tide bench/codeparrot.lua --run=RUN --batches=FILE --threads=2 [--steps=16] [--warmup=2]
--   tide bench/codeparrot.lua --run=RUN --dump=FILE --n=40    (writes the batches both sides read)
-- Steps alternate between the keytoken-weighted loss and the plain loss
-- (model(x, {labels = x}).loss) so that both see the same machine; the
-- median step of each is printed, and the time from process start to the
-- end of the first training step (start-up: tokenizer, model, batches).
local ffi = require 'ffi'
pcall(ffi.cdef, 'struct tide_timespec { long tv_sec; long tv_nsec; };')  -- as tide.train.metrics declares them
pcall(ffi.cdef, 'int clock_gettime(int clk, struct tide_timespec *ts);')
local function wall()  -- CLOCK_REALTIME: compared with the shell's clock at launch
  local ts = ffi.new('struct tide_timespec')
  ffi.C.clock_gettime(0, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end
local a = tide.args
local B = a.batch or 16
if a.dump then
  -- the recipe's loader, in the order the recipe reads it
  local loader = tide.data.shards(a.run .. '/data', { prefix = 'train', batch_size = B, shuffle = true, seed = 0, epochs = math.huge })
  local list = {}
  for i = 1, a.n or 40 do list[i] = loader():long() end
  tide.io.save_safetensors(a.dump, { input_ids = tide.stack(list) }, { format = 'pt' })
  return
end
if a.threads then tide.set_num_threads(a.threads) end
local tok = tide.tokenizer.load(a.run .. '/tokenizer')
local keytoken_ids = {}
for _, w in ipairs({ ' plt', ' pd', ' sk', ' fit', ' predict' }) do
  keytoken_ids[#keytoken_ids + 1] = tok:encode(w)[1]  -- the first token of each: five comparisons, as on a data-science tokenizer
end
local batches = tide.io.load_safetensors(a.batches).input_ids  -- [N, B, T]
local T = batches:size(3)
tide.manual_seed(0)
local model = tide.gpt2.new({ vocab_size = tok:vocab_size(), n_positions = T, n_embd = 128, n_layer = 4, n_head = 4,
                              resid_pdrop = 0, embd_pdrop = 0, attn_pdrop = 0 })
local steps, warmup = a.steps or 16, a.warmup or 2
local opt = tide.optim.AdamW(tide.optim.grouped_params(model, 0.1), { lr = 2e-3, betas = { 0.9, 0.95 }, eps = 1e-8 })
local sched = tide.optim.get_scheduler('cosine', opt, { num_warmup_steps = 2, num_training_steps = warmup + steps })
local times = { keytoken = {}, plain = {} }
for step = 1, warmup + steps do
  local kind = step % 2 == 1 and 'keytoken' or 'plain'
  local x = batches[(step - 1) % batches:size(1) + 1]
  local t0 = tide.clock()
  local loss
  if kind == 'plain' then
    loss = model(x, { labels = x }).loss
  else
    loss = tide.losses.keytoken_weighted_loss(x, model(x).logits, keytoken_ids, 1.0)
  end
  loss:backward()
  tide.optim.clip_grad_norm(model:parameters(), 1.0)
  opt:step()
  sched:step()
  opt:zero_grad()
  local dt = tide.clock() - t0
  if step == 1 then print(('first_step_end %.6f'):format(wall())) end
  if step > warmup then table.insert(times[kind], dt) end
end
local function median(t) table.sort(t); return t[math.floor((#t + 1) / 2)] end
-- the two losses alone, forward and backward from the same logits (leaf
-- tensors), alternating: what the keytoken loss adds, without the model's noise
local x = batches[1]
local V = tok:vocab_size()
local base = model(x).logits:detach()
local loss_t = { keytoken = {}, plain = {} }
for rep = 1, 2 * (a.loss_reps or 10) do
  local kind = rep % 2 == 1 and 'keytoken' or 'plain'
  local logits = base:clone():requires_grad_(true)
  local t0 = tide.clock()
  local loss
  if kind == 'plain' then
    loss = tide.F.cross_entropy(logits:narrow(2, 1, T - 1):reshape(B * (T - 1), V), x:narrow(2, 2, T - 1):reshape(B * (T - 1)))
  else
    loss = tide.losses.keytoken_weighted_loss(x, logits, keytoken_ids, 1.0)
  end
  loss:backward()
  table.insert(loss_t[kind], tide.clock() - t0)
end
local lk, lp = median(loss_t.keytoken), median(loss_t.plain)
print(('tide  loss alone (forward + backward from logits): keytoken %.2f ms  plain %.2f ms'):format(lk * 1e3, lp * 1e3))
local mk, mp = median(times.keytoken), median(times.plain)
print(('tide  keytoken step %.1f ms  %.0f tokens/s  plain step %.1f ms  %.0f tokens/s  keytoken/plain %.3f  threads %d')
  :format(mk * 1e3, B * T / mk, mp * 1e3, B * T / mp, mk / mp, tide.get_num_threads()))

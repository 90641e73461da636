-- One training step (forward, backward, clip, AdamW) of a small GPT-2 on the
-- CPU, timed; bench/train_step.sh runs it beside PyTorch's eager version
-- (bench/train_step.py) on the same config and thread count.
--   tide bench/train_step.lua --steps=20 --warmup=3 --threads=2
local a = tide.args
local cfg = { vocab_size = a.vocab or 8192, n_positions = a.seq or 128, n_embd = a.n_embd or 256,
              n_layer = a.n_layer or 4, n_head = a.n_head or 4, resid_pdrop = 0, embd_pdrop = 0, attn_pdrop = 0 }
local B, T = a.batch or 8, a.seq or 128
local steps, warmup = a.steps or 20, a.warmup or 3
if a.threads then tide.set_num_threads(a.threads) end
tide.manual_seed(0)
local model = tide.gpt2.new(cfg)
local opt = tide.optim.AdamW(tide.optim.grouped_params(model, 0.1), { lr = 5e-4, betas = { 0.9, 0.95 }, eps = 1e-8 })
local ids = tide.randint(0, cfg.vocab_size, { B, T })
local times = {}
for step = 1, warmup + steps do
  local t0 = tide.clock()
  local out = model(ids, { labels = ids })
  opt:zero_grad()
  out.loss:backward()
  tide.optim.clip_grad_norm(model:parameters(), 1.0)
  opt:step()
  local dt = tide.clock() - t0
  if step > warmup then times[#times + 1] = dt end
end
table.sort(times)
local median = times[math.floor((#times + 1) / 2)]
local peak = tide.memory().peak
print(('tide  median step %.1f ms  %.0f tokens/s  engine peak %.0f MB  threads %d')
  :format(median * 1e3, B * T / median, peak / 2 ^ 20, tide.get_num_threads()))

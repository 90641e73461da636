-- 50 training steps of a small GPT-2 (4 layers, 256 dims, 4 heads, vocab
-- 8192, T = 128, B = 8, dropout off) in bf16 mixed precision on CUDA
-- (tide.autocast: f32 master weights, bf16 compute copies, fused AdamW)
-- against the same steps in f32 on the CPU, from the same initial weights on
-- the same batches: every step's loss within 2e-2 of the CPU's (issue 14).
-- Part of tests/gpu/run.sh; exits 1 on a miss.
--   tide tests/gpu/train_bf16.lua
--   tide-cudaemu tests/gpu/train_bf16.lua --layers=2 --embd=32 --heads=2 --vocab=64 --T=16 --B=2 --steps=8 --lr=1e-3 --precision=fp32
-- (the second: the emulator's dry run; fp32 where tide.autocast is missing, then the bound is 1e-4)
-- The learning rate is 3e-4: on this setup at 1e-3, PyTorch's own bf16 autocast
-- run left its f32 run by up to 0.15 (a transient spike at step 28; 0.003 at
-- step 25, 0.016 at step 50; transformers on the CPU, 2026-12-03), so no bf16
-- implementation could hold 2e-2 there. At 3e-4 that drift was not measured
-- (--lr= to try another rate); the per-step differences are printed.
local a = tide.args
local steps = a.steps or 50
local precision = a.precision or 'bf16'
local tol = a.tol or (precision == 'bf16' and 2e-2 or 1e-4)
local cfg = tide.gpt2.config({ vocab_size = a.vocab or 8192, n_positions = a.T or 128, n_embd = a.embd or 256,
  n_layer = a.layers or 4, n_head = a.heads or 4, resid_pdrop = 0, embd_pdrop = 0, attn_pdrop = 0 })
local B, T = a.B or 8, a.T or 128

if not tide.cuda.is_available() then print('skipped: no GPU visible to tide'); os.exit(0, true) end
if precision == 'bf16' and type(tide.autocast) ~= 'function' then
  print('FAIL: tide.autocast does not exist in this build (bf16 mixed precision, issue 14)'); os.exit(1, true)
end

-- four fixed batches, cycled: the loss falls as they are learnt, so the runs
-- are compared along a real trajectory rather than at the initial plateau
tide.manual_seed(1)
local batches = {}
for i = 1, 4 do batches[i] = tide.randint(0, cfg.vocab_size, { B, T }) end

local function run(device)
  tide.manual_seed(0)
  local model = tide.gpt2.new(cfg):to(device)
  model:train()
  local params = model:parameters()
  local opt = tide.optim.AdamW(tide.optim.grouped_params(model, 0.1),
    { lr = a.lr or 3e-4, betas = { 0.9, 0.95 }, eps = 1e-8, fused = device ~= 'cpu' })
  local losses = {}
  for s = 1, steps do
    local ids = batches[(s - 1) % #batches + 1]:to(device)
    local function loss_fn() return model(ids, { labels = ids }).loss end
    opt:zero_grad()
    local loss
    if device ~= 'cpu' and precision == 'bf16' then loss = tide.autocast('bf16', loss_fn) else loss = loss_fn() end
    loss:backward()
    tide.optim.clip_grad_norm(params, 1.0)
    opt:step()
    losses[s] = loss:item()
  end
  return losses
end

local t0 = tide.clock()
local ref = run('cpu')
local t1 = tide.clock()
local got = run('cuda')
local t2 = tide.clock()
local worst, worst_step = 0, 1
for s = 1, steps do
  local d = math.abs(got[s] - ref[s])
  if not (d <= worst) then worst, worst_step = d, s end  -- a NaN counts as worst
end
print(('GPT-2 %d layers, %d dims, vocab %d, B=%d T=%d, %d steps: CPU f32 %.3f -> %.3f (%.1f s), CUDA %s %.3f -> %.3f (%.1f s)')
  :format(cfg.n_layer, cfg.n_embd, cfg.vocab_size, B, T, steps, ref[1], ref[steps], t1 - t0, precision,
    got[1], got[steps], t2 - t1))
for _, s in ipairs { 1, 2, 5, 10, 20, 30, 40, 50 } do
  if s <= steps then print(('  step %2d  cpu %.5f  cuda %.5f  diff %+.5f'):format(s, ref[s], got[s], got[s] - ref[s])) end
end
if worst <= tol and ref[steps] < ref[1] - 0.1 then
  print(('ok: largest loss difference %.2e at step %d (bound %.0e)'):format(worst, worst_step, tol))
  os.exit(0, true)
end
if ref[steps] >= ref[1] - 0.1 then print('FAIL: the CPU run did not learn (its loss did not fall by 0.1): no trajectory to compare') end
if not (worst <= tol) then
  print(('FAIL: step %d: CUDA loss %.5f, CPU %.5f: difference %.2e over the bound %.0e')
    :format(worst_step, got[worst_step], ref[worst_step], worst, tol))
end
os.exit(1, true)

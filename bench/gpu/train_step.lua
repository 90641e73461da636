-- tide's side of bench/gpu/run.sh: GPT-2 training steps (forward and loss
-- under bf16 autocast, backward, clip_grad_norm 1.0, fused AdamW), timed one
-- step at a time between tide.cuda.synchronize() calls, as llm.c and the
-- PyTorch peers (bench/gpu/peers.py) time theirs.
--   tide bench/gpu/train_step.lua --device=cuda --model=gpt2 --B=16 --T=1024 --precision=bf16
--   tide bench/gpu/train_step.lua --device=cpu --model=tiny --precision=fp32 --B=2 --T=64   (dry run)
-- Options: --B --T --steps (timed, default 20) --warmup (5) --budget_s (the
-- timed steps stop early once they took this long, after at least 3; default 30)
-- --loss=plain|keytoken|both (both) --model=gpt2|tiny --precision=bf16|fp32
-- --device=cuda|cpu --peak_tflops (for MFU; none: MFU not printed) --seed (0)
-- --name (the side's name in the results: tide, and NAME_keytoken; default tide)
-- --tf32 (f32 products on tensor cores, tide.cuda.set_allow_tf32: for --precision=fp32 on a GPU)
-- Prints one line per loss variant and a `RESULT {json}` line that
-- bench/gpu/report.py reads.
local a = tide.args
local json = require 'tide.json'

local function fail(msg) io.stderr:write('bench/gpu/train_step.lua: ', msg, '\n'); os.exit(2) end
local function choice(name, v, default, allowed)
  v = v == nil and default or v
  if not allowed[v] then
    local names = {}
    for k in pairs(allowed) do names[#names + 1] = k end
    table.sort(names)
    fail(('--%s must be one of %s, got %s'):format(name, table.concat(names, ', '), tostring(v)))
  end
  return v
end
local function count(name, v, default)
  v = v == nil and default or v
  if type(v) ~= 'number' or v < 1 or v % 1 ~= 0 then fail(('--%s must be a positive integer, got %s'):format(name, tostring(v))) end
  return v
end

local device = choice('device', a.device, 'cuda', { cuda = true, cpu = true })
local model_name = choice('model', a.model, 'gpt2', { gpt2 = true, tiny = true })
local precision = choice('precision', a.precision, device == 'cuda' and 'bf16' or 'fp32', { bf16 = true, fp32 = true })
local loss_kind = choice('loss', a.loss, 'both', { plain = true, keytoken = true, both = true })
local B, T = count('B', a.B, model_name == 'gpt2' and 16 or 2), count('T', a.T, model_name == 'gpt2' and 1024 or 64)
local steps, warmup = count('steps', a.steps, 20), a.warmup == 0 and 0 or count('warmup', a.warmup, 5)
local budget = a.budget_s or 30
local peak_tflops = a.peak_tflops
local name = a.name or 'tide'

if device == 'cuda' and not tide.cuda.is_available() then
  fail(('--device=cuda but tide sees no GPU (built with CUDA runtime "%s")'):format(tide.cuda.runtime()))
end
-- bf16 is PyTorch-style autocast: f32 master parameters, bf16 compute copies
if precision == 'bf16' and type(tide.autocast) ~= 'function' then
  fail('--precision=bf16 needs tide.autocast (issue 14\'s mixed precision), which this tide does not have; ' ..
    'run with --precision=fp32')
end

if a.tf32 then
  if device ~= 'cuda' then fail('--tf32 is for --device=cuda') end
  tide.cuda.set_allow_tf32(true)
end

-- dropout off, as in llm.c and nanoGPT's benchmark: every side does the same work
local nodrop = { resid_pdrop = 0, embd_pdrop = 0, attn_pdrop = 0 }
local cfg
if model_name == 'gpt2' then
  cfg = tide.gpt2.config('gpt2', nodrop)
else
  cfg = tide.gpt2.config({ vocab_size = a.vocab or 512, n_positions = math.max(T, 64), n_embd = 64, n_layer = 2,
    n_head = 4, resid_pdrop = 0, embd_pdrop = 0, attn_pdrop = 0 })
end
if T > cfg.n_positions then fail(('--T=%d exceeds the model\'s n_positions %d'):format(T, cfg.n_positions)) end

tide.manual_seed(a.seed or 0)
local model = tide.gpt2.new(cfg):to(device)
model:train()
local params = model:parameters()
local n_params = tide.gpt2.num_parameters(cfg)
local opt = tide.optim.AdamW(tide.optim.grouped_params(model, 0.1),
  { lr = 6e-4, betas = { 0.9, 0.95 }, eps = 1e-8, fused = true })
-- one batch of uniform random ids, reused every step: the loss falls as the
-- model memorises it, a check that the steps train
local ids = tide.randint(0, cfg.vocab_size, { B, T }, { device = device })
-- ten ids stand for the seeds' keytokens (plt, pd, sk, fit, predict, ...);
-- their count changes the weights, not the work
local keytoken_ids = { 489, 30094, 8135, 11147, 79, 17, 6024, 4852, 2777, 1150 }
for i, k in ipairs(keytoken_ids) do keytoken_ids[i] = k % cfg.vocab_size end

local function loss_of(kind)
  if kind == 'plain' then return model(ids, { labels = ids }).loss end
  local logits = model(ids).logits
  return tide.losses.keytoken_weighted_loss(ids, logits, keytoken_ids, 1.0)
end

local function sync() if device == 'cuda' then tide.cuda.synchronize() end end

local function step(kind)
  opt:zero_grad()
  local loss
  if precision == 'bf16' then
    loss = tide.autocast('bf16', loss_of, kind)
  else
    loss = loss_of(kind)
  end
  loss:backward()
  local norm = tide.optim.clip_grad_norm(params, 1.0)
  opt:step()
  return loss, norm
end

-- 6N + 12 L C T flops per token (forward and backward of every weight, plus
-- attention's two T x T products), the PaLM appendix's count, N every
-- parameter counted once (lm_head is wte)
local flops_per_token = 6 * n_params + 12 * cfg.n_layer * cfg.n_embd * T

local kinds = loss_kind == 'both' and { 'plain', 'keytoken' } or { loss_kind }
local failures = 0
for _, kind in ipairs(kinds) do
  local ok, err = pcall(function()
    if device == 'cuda' then tide.cuda.reset_peak_memory_stats() end
    local t_start = tide.clock()
    local first_loss
    for i = 1, warmup do
      local loss = step(kind)
      if i == 1 then first_loss = loss:item() end
    end
    sync()
    local warmup_s = tide.clock() - t_start
    local times, last_loss, last_norm = {}, nil, nil
    local t_timed = tide.clock()
    for i = 1, steps do
      local t0 = tide.clock()
      local loss, norm = step(kind)
      sync()
      times[i] = tide.clock() - t0
      if i == 1 and not first_loss then first_loss = loss:item() end
      last_loss, last_norm = loss, norm
      if i >= 3 and tide.clock() - t_timed > budget then break end
    end
    last_loss = last_loss:item()
    local sorted = {}
    for i, t in ipairs(times) do sorted[i] = t end
    table.sort(sorted)
    local n = #sorted
    local median = n % 2 == 1 and sorted[(n + 1) / 2] or (sorted[n / 2] + sorted[n / 2 + 1]) / 2
    local tps = B * T / median
    local mfu = peak_tflops and tps * flops_per_token / (peak_tflops * 1e12) or nil
    local mem = {}
    if device == 'cuda' then
      local s = tide.cuda.memory_stats()
      mem.peak_alloc_mb, mem.peak_reserved_mb = s.peak_allocated / 2 ^ 20, s.peak_reserved / 2 ^ 20
    else
      mem.peak_alloc_mb = tide.memory().peak / 2 ^ 20
    end
    print(('%s %-8s B=%d T=%d %s %s: median step %.2f ms (min %.2f, max %.2f, %d steps), %.0f tokens/s%s, ' ..
      'peak %.0f MiB allocated%s; loss %.4f -> %.4f, grad norm %.3f')
      :format(name, kind, B, T, precision, device, median * 1e3, sorted[1] * 1e3, sorted[n] * 1e3, n, tps,
        mfu and (', MFU %.1f%%'):format(mfu * 100) or '', mem.peak_alloc_mb,
        mem.peak_reserved_mb and (' (%.0f MiB reserved)'):format(mem.peak_reserved_mb) or '',
        first_loss, last_loss, last_norm))
    if last_loss ~= last_loss or last_loss == math.huge then error('the loss is not finite: ' .. tostring(last_loss)) end
    print('RESULT ' .. json.encode({
      side = kind == 'plain' and name or name .. '_keytoken', impl = 'tide', loss = kind, model = model_name,
      B = B, T = T, precision = precision .. (a.tf32 and '+tf32' or ''), device = device, n_params = n_params, flops_per_token = flops_per_token,
      steps = n, warmup = warmup, warmup_s = warmup_s,
      step_ms_median = median * 1e3, step_ms_min = sorted[1] * 1e3, step_ms_max = sorted[n] * 1e3,
      tokens_per_s = tps, mfu = mfu or json.null, peak_alloc_mb = mem.peak_alloc_mb,
      peak_reserved_mb = mem.peak_reserved_mb or json.null, loss_first = first_loss, loss_last = last_loss,
    }))
    io.stdout:flush()
  end)
  if not ok then
    failures = failures + 1
    io.stderr:write(('%s %s B=%d T=%d failed: %s\n'):format(name, kind, B, T, tostring(err)))
    print('RESULT ' .. json.encode({ side = kind == 'plain' and name or name .. '_keytoken', impl = 'tide', B = B, T = T,
      error = tostring(err):sub(1, 300) }))
  end
  -- the next variant starts from what is free again
  collectgarbage(); collectgarbage()
  if device == 'cuda' then tide.cuda.empty_cache() end
end
os.exit(failures == 0 and 0 or 1)

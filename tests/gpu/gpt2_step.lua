-- A bf16 GPT-2 124M training step on CUDA against PyTorch's on the same
-- weights and batch (issue 14): tide saves its random-init model as a Hugging
-- Face directory and a batch (B = 4, T = 1024), takes one step (forward and
-- loss under tide.autocast('bf16'), backward, clip_grad_norm 1.0, fused AdamW),
-- then tests/gpu/gpt2_step_ref.py takes the same step with transformers
-- (GPT2LMHeadModel, SDPA, torch.autocast bf16, fused AdamW, same groups).
-- Compared: the loss, every parameter's gradient norm, the total gradient
-- norm, and the loss on the batch after the AdamW step.
--
-- Bounds for bf16 (both sides compute products from bf16 operands with f32
-- accumulation, softmax/norms/loss in f32, but with different kernels,
-- summation orders and rounding points, e.g. where the residual stream is
-- rounded to bf16). bf16 keeps 8 significant bits: one rounding is a relative
-- error up to 2^-9 = 2e-3. The loss at initialisation is ~ln(50257) = 10.8
-- and its rounding noise averages over B*T = 4096 tokens: bound 1e-2
-- absolute (1e-3 relative) on it and on the loss after the step, 2e-2 there
-- since AdamW's first step moves each weight by about lr*sign(g), and the
-- signs of near-zero gradients differ between the runs. Gradients pass
-- through 12 layers of rounded activations, so a tensor's gradient norm may
-- differ by several roundings: bound 5e-2 relative per tensor and 2e-2 on
-- the total norm; a wrong gradient (a missing path, a wrong scale, a
-- transposed product) moves some tensor's norm by far more than that.
-- In fp32 (the emulator's dry run, --precision=fp32) the bounds are 1e-4.
--   tide tests/gpu/gpt2_step.lua                       (on a GPU, in tests/gpu/run.sh)
--   tide-cudaemu tests/gpu/gpt2_step.lua --model=tiny --B=2 --T=32 --precision=fp32 --ref_device=cpu
-- Options: --model=gpt2|tiny --B --T --precision=bf16|fp32 --ref_device=cuda|cpu
-- --dir (default /tmp/tide-gpt2-step) --python (default $TIDE_REF_PYTHON or python3)
local a = tide.args
local json = require 'tide.json'
local precision = a.precision or 'bf16'
local B, T = a.B or 4, a.T or 1024
local dir = a.dir or '/tmp/tide-gpt2-step'
local python = a.python or os.getenv('TIDE_REF_PYTHON') or 'python3'
local ref_device = a.ref_device or 'cuda'
local bf16 = precision == 'bf16'
local tol_loss0, tol_loss1 = bf16 and 1e-2 or 1e-4, bf16 and 2e-2 or 1e-4
local tol_tensor, tol_total = bf16 and 5e-2 or 1e-4, bf16 and 2e-2 or 1e-4

if not tide.cuda.is_available() then print('skipped: no GPU visible to tide'); os.exit(0, true) end
if bf16 and type(tide.autocast) ~= 'function' then
  print('FAIL: tide.autocast does not exist in this build (bf16 mixed precision, issue 14)'); os.exit(1, true)
end

local nodrop = { resid_pdrop = 0, embd_pdrop = 0, attn_pdrop = 0 }
local cfg = a.model == 'tiny'
  and tide.gpt2.config({ vocab_size = 512, n_positions = math.max(T, 64), n_embd = 64, n_layer = 2, n_head = 4,
    resid_pdrop = 0, embd_pdrop = 0, attn_pdrop = 0 })
  or tide.gpt2.config('gpt2', nodrop)

tide.manual_seed(0)
local model = tide.gpt2.new(cfg)
model:save_pretrained(dir)
local ids = tide.randint(0, cfg.vocab_size, { B, T })
json.write_file(dir .. '/batch.json', { ids = ids:tolist() })

-- tide's step
model:to('cuda')
model:train()
local named = model:named_parameters()
local params = model:parameters()
local opt = tide.optim.AdamW(tide.optim.grouped_params(model, 0.1),
  { lr = 6e-4, betas = { 0.9, 0.95 }, eps = 1e-8, fused = true })
local dids = ids:to('cuda')
local function loss_fn() return model(dids, { labels = dids }).loss end
local function forward() if bf16 then return tide.autocast('bf16', loss_fn) end return loss_fn() end
local t0 = tide.clock()
opt:zero_grad()
local loss = forward()
loss:backward()
local norms = {}
for _, np in ipairs(named) do
  local g = np[2].grad
  if g ~= nil then norms[np[1]] = math.sqrt((g * g):sum():item()) end
end
local total = tide.optim.clip_grad_norm(params, 1.0)
opt:step()
local loss1 = tide.no_grad(forward)
local got = { loss0 = loss:item(), loss1 = loss1:item(), grad_norm = total }
print(('tide  (%s, cuda): loss %.5f, grad norm %.5f, loss after the step %.5f (%.1f s)')
  :format(precision, got.loss0, got.grad_norm, got.loss1, tide.clock() - t0))

-- PyTorch's step
local cmd = ('%s tests/gpu/gpt2_step_ref.py %s --device=%s --precision=%s 2>&1')
  :format(python, dir, ref_device, precision)
local p = io.popen(cmd)
local text = p:read('*a')
local ok, how, code = p:close()
if code == 3 or text:match('^skipped:') then print(text:match('skipped:[^\n]*') or text); os.exit(0, true) end
local line = text:match('REF (%b{})')
if not line then print('FAIL: ' .. cmd .. ' gave no result:\n' .. text); os.exit(1, true) end
local ref = json.decode(line)
print(('torch %s (%s, %s): loss %.5f, grad norm %.5f, loss after the step %.5f')
  :format(ref.torch, precision, ref_device, ref.loss0, ref.grad_norm, ref.loss1))

local fails = {}
local function check(what, g, r, bound, relative)
  local d = math.abs(g - r)
  if relative then d = d / math.max(math.abs(r), 1e-30) end
  if not (d <= bound) then
    fails[#fails + 1] = ('%s: tide %.6g, torch %.6g: %s difference %.2e over %.0e')
      :format(what, g, r, relative and 'relative' or 'absolute', d, bound)
  end
  return d
end
check('loss', got.loss0, ref.loss0, tol_loss0)
check('loss after the step', got.loss1, ref.loss1, tol_loss1)
check('total gradient norm', got.grad_norm, ref.grad_norm, tol_total, true)
local worst, worst_name, n = 0, nil, 0
for name, r in pairs(ref.grad_norms) do
  local g = norms[name]
  if g == nil then
    fails[#fails + 1] = name .. ': torch has a gradient, tide none'
  else
    n = n + 1
    local d = check(name .. ' gradient norm', g, r, tol_tensor, true)
    if not (d <= worst) then worst, worst_name = d, name end
  end
end
for name in pairs(norms) do
  if ref.grad_norms[name] == nil then fails[#fails + 1] = name .. ': tide has a gradient, torch none' end
end
print(('%d gradient norms compared; largest relative difference %.2e (%s); bounds: loss %.0e, after the step %.0e, ' ..
  'per tensor %.0e, total %.0e'):format(n, worst, tostring(worst_name), tol_loss0, tol_loss1, tol_tensor, tol_total))
if n == 0 then fails[#fails + 1] = 'no gradient norms to compare' end
if #fails == 0 then print('ok'); os.exit(0, true) end
for _, f in ipairs(fails) do print('FAIL: ' .. f) end
os.exit(1, true)

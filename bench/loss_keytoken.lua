-- The keytoken-weighted loss against the plain loss, forward and backward
-- from the logits alone (no model): what the course's custom loss costs over
-- GPT-2's own (shifted labels, mean cross-entropy), on the same logits, in
-- alternating rounds. bench/gpu/loss.lua runs it on cuda in bf16 at GPT-2
-- 124M's sizes (it sets the defaults below and runs this file).
--   tide bench/loss_keytoken.lua [--N=2048] [--V=50257] [--T=1024] [--device=cpu] [--dtype=f32]
--                                [--reps=7] [--keytokens=5]
-- N rows = B * T positions (T = min(T, N)); keytokens: how many ids (the
-- course's plt, pd, sk, fit, predict are 5).
local tide = tide or require 'tide'
local F = tide.F

local function num(v, default, name)
  if v == nil then return default end
  local n = tonumber(v)
  if not n or n < 1 or n ~= math.floor(n) then error(('loss_keytoken: --%s must be a positive integer, got %s'):format(name, tostring(v)), 0) end
  return n
end

local function run(args)
  local N, V = num(args.N, 2048, 'N'), num(args.V, 50257, 'V')
  local Tn = math.min(num(args.T, 1024, 'T'), N)
  if N % Tn ~= 0 then error(('loss_keytoken: --N=%d is not a multiple of T = %d'):format(N, Tn), 0) end
  local B = N / Tn
  if Tn < 2 then error('loss_keytoken: T must be at least 2 (a position to predict)', 0) end
  local device, dtype = args.device or 'cpu', args.dtype or 'f32'
  local reps, nkt = num(args.reps, 7, 'reps'), num(args.keytokens, 5, 'keytokens')
  local cuda = device ~= 'cpu'
  local function sync() if cuda then tide.cuda.synchronize() end end

  tide.manual_seed(1)
  local logits = tide.randn(B, Tn, V, { device = device }):to(dtype):requires_grad_(true)
  local ids = tide.randint(0, V, { B, Tn }, { device = device })
  local kt = {}
  for i = 1, nkt do kt[i] = (i * 7919) % V end

  -- GPT-2's loss (lua/tide/models/gpt2.lua): labels shifted left, the last position ignored
  local function plain()
    local shifted = tide.full({ B, Tn }, -100, { dtype = 'i64', device = device })
    shifted:narrow(2, 1, Tn - 1):copy_(ids:narrow(2, 2, Tn - 1))
    return F.cross_entropy(logits:reshape(B * Tn, V), shifted:view(B * Tn), { ignore_index = -100 })
  end
  local function keytoken() return tide.losses.keytoken_weighted_loss(ids, logits, kt, 1.0) end

  local function time(fn)
    logits.grad = nil  -- a fresh gradient each time: accumulating would add a pass over the logits
    collectgarbage()
    sync()
    local t0 = tide.clock()
    fn():backward()
    sync()
    return (tide.clock() - t0) * 1e3
  end
  local tp, tk = {}, {}
  time(plain); time(keytoken)  -- warm-up: allocator, first-call costs
  for r = 1, reps do
    if r % 2 == 1 then tp[#tp + 1] = time(plain); tk[#tk + 1] = time(keytoken)
    else tk[#tk + 1] = time(keytoken); tp[#tp + 1] = time(plain) end
  end
  table.sort(tp); table.sort(tk)
  local mp, mk = tp[math.ceil(#tp / 2)], tk[math.ceil(#tk / 2)]
  local es = ({ f32 = 4, bf16 = 2, f16 = 2, f64 = 8 })[dtype] or 4
  -- the fused path's floor: the forward reads the logits, the backward reads them and writes dlogits
  local bytes = 3 * N * V * es
  print(('loss forward+backward on %s %s, N = %d (B %d x T %d), V = %d, %d keytokens, %d rounds'):format(
    device, dtype, N, B, Tn, V, nkt, reps))
  print(('plain    : median %.3f ms, best %.3f ms (%.1f GB/s over the 3 x N x V x %d bytes it must move)'):format(
    mp, tp[1], bytes / (mp * 1e-3) / 1e9, es))
  print(('keytoken : median %.3f ms, best %.3f ms'):format(mk, tk[1]))
  print(('keytoken / plain: %.4f (median), %.4f (best): %+.2f%%'):format(mk / mp, tk[1] / tp[1], (mk / mp - 1) * 100))
  return { plain = mp, keytoken = mk, ratio = mk / mp }
end

run(tide.args or {})

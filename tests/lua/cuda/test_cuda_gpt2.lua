-- 20 training steps of a small GPT-2 on cuda against the same steps on the
-- CPU: the same initial weights and batches, AdamW with decay groups,
-- gradient clipping, dropout (the same Philox streams give the same masks on
-- both devices). The losses, gradient norms and final weights must agree to
-- f32 rounding accumulated over the steps.
local T = require 'tide.testing'

local cfg = { vocab_size = 96, n_positions = 16, n_embd = 32, n_layer = 2, n_head = 4,
              resid_pdrop = 0.1, embd_pdrop = 0.1, attn_pdrop = 0 }

local function batches(n, B, Tn)
  local rng = T.lcg(7)
  local out = {}
  for i = 1, n do
    local rows = {}
    for b = 1, B do
      local r = {}
      for t = 1, Tn do r[t] = math.floor(rng() * cfg.vocab_size) end
      rows[b] = r
    end
    out[i] = tide.tensor(rows, { dtype = 'i64' })
  end
  return out
end

-- trains a copy of the state sd on device; returns losses, norms, final state
local function train(sd, data, device, steps)
  tide.manual_seed(1234)
  local model = tide.gpt2.new(cfg)
  model:load_state_dict(sd)
  model:to(device)
  local opt = tide.optim.AdamW(tide.optim.grouped_params(model, 0.1), { lr = 3e-3, betas = { 0.9, 0.95 }, eps = 1e-8 })
  local losses, norms = {}, {}
  for step = 1, steps do
    local x = data[step]:to(device)
    local out = model(x, { labels = x })
    opt:zero_grad()
    out.loss:backward()
    norms[step] = tide.optim.clip_grad_norm(model:parameters(), 1.0)
    opt:step()
    losses[step] = out.loss:item()
  end
  local final = {}
  for k, v in pairs(model:state_dict()) do final[k] = v:cpu() end
  return losses, norms, final
end

T.test('20 GPT-2 training steps on cuda equal the CPU steps', function()
  T.need_cuda()
  tide.manual_seed(1)
  local init = tide.gpt2.new(cfg):state_dict()
  local sd = {}
  for k, v in pairs(init) do sd[k] = v:detach():clone() end
  local data = batches(20, 2, 16)
  local lc, nc, fc = train(sd, data, 'cpu', 20)
  local lg, ng, fg = train(sd, data, 'cuda', 20)
  for step = 1, 20 do
    T.close(lg[step], lc[step], { rtol = 1e-4, atol = 1e-5 }, 'loss at step ' .. step)
    T.close(ng[step], nc[step], { rtol = 1e-3, atol = 1e-5 }, 'gradient norm at step ' .. step)
  end
  T.truthy(lc[20] < lc[1], 'the loss fell')
  for k, v in pairs(fc) do T.close(fg[k], v, { rtol = 1e-3, atol = 1e-4 }, k) end
end)

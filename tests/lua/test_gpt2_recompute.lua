-- GPT-2's recompute levels (llm.c's meaning) change what the graph keeps,
-- never the numbers: recompute = 1 keeps the MLP's c_fc output and computes
-- its GELU again in backward, 2 also the layer norms' outputs. On the CPU
-- the loss and every parameter's gradient are the bits of recompute = 0,
-- with dropout on (the same masks) and under bf16 autocast; the memory held
-- between forward and backward goes down level by level.
local T = require 'tide.testing'

local function run(level, amp, device)
  tide.manual_seed(5)
  local m = tide.gpt2.new({ vocab_size = 64, n_positions = 16, n_embd = 32, n_layer = 2, n_head = 4,
                            resid_pdrop = 0.1, embd_pdrop = 0.1, attn_pdrop = 0, recompute = level })
  if device then m:to(device) end
  m:train()
  local ids = tide.randint(0, 64, { 2, 16 })
  if device then ids = ids:to(device) end
  tide.manual_seed(9)
  collectgarbage(); collectgarbage()
  local before = tide.memory().live
  local out
  if amp then
    out = tide.autocast('bf16', function() return m(ids, { labels = ids }) end)
  else
    out = m(ids, { labels = ids })
  end
  collectgarbage(); collectgarbage()  -- the forward's temporaries: what is left is what the graph keeps
  local held = tide.memory().live - before
  out.loss:backward()
  local g = {}
  for _, p in ipairs(m:named_parameters()) do g[p[1]] = p[2].grad:cpu() end
  return out.loss:float():item(), g, held
end

for _, amp in ipairs { false, true } do
  T.test(('recompute 1 and 2 give the bits of 0%s'):format(amp and ' under bf16 autocast' or ''), function()
    local l0, g0, h0 = run(0, amp)
    local held = { h0 }
    for level = 1, 2 do
      local l, g, h = run(level, amp)
      held[#held + 1] = h
      T.eq(l, l0, 'loss at recompute ' .. level)
      local n = 0
      for k, v in pairs(g0) do
        T.truthy(g[k]:equal(v), ('%s: gradient differs at recompute %d'):format(k, level))
        n = n + 1
      end
      T.truthy(n > 10, 'every parameter compared')
    end
    print(('    bytes held after the forward: recompute 0 / 1 / 2: %d / %d / %d'):format(held[1], held[2], held[3]))
    T.truthy(held[2] < held[1] and held[3] < held[2], 'each level keeps less')
  end)
end

T.test('recompute must be 0, 1 or 2', function()
  T.raises(function() tide.gpt2.new({ vocab_size = 8, n_positions = 4, n_embd = 8, n_layer = 1, n_head = 2, recompute = 3 }) end,
    'recompute')
end)


-- The host side of a GPT-2 training step: how many kernels it launches (by
-- op, a GPT-2 with GPT-2 124M's layer structure at small widths), and what a
-- launch costs the host, for docs/cuda.md ("Launch overhead").
--   tide bench/launch_overhead.lua [--n=20000]         host time per small op on the CPU (2x2 tensors)
--   tide-cudaemu bench/launch_overhead.lua [--reps=5]  launches per step by op, and host time per
--                                                      launch: the same work eagerly and as a graph replay
--   tide-cudaemu bench/launch_overhead.lua --ops       the small ops on the emulated device
-- (TIDE_CUDA_POISON=0 for the emulator, as on a GPU: no 0xFF fill of each allocation.)
local a = tide.args or {}
local ffi = require 'ffi'
-- this thread's CPU time: on a loaded machine, time spent descheduled is
-- nobody's (the emulator's device time is counted the same way)
-- (tide's init.lua declares clock_gettime with struct tide_timespec)
local ts = ffi.new('struct tide_timespec')
local function clock()
  ffi.C.clock_gettime(3, ts)  -- CLOCK_THREAD_CPUTIME_ID
  return tonumber(ts.tv_sec) + 1e-9 * tonumber(ts.tv_nsec)
end

local function best_of(reps, fn)
  local best = math.huge
  for _ = 1, reps do
    local t0 = clock()
    fn()
    best = math.min(best, clock() - t0)
  end
  return best
end

-- under the emulator, kernels run inside the launch call: the time they take
-- (emulated device time, counted by cudaemu) is subtracted to leave the host's
local emu = tide.cuda.runtime() == 'cudaemu'
if emu then pcall(ffi.cdef, 'double cudaemu_device_seconds(void);') end
local function device_seconds() return emu and ffi.C.cudaemu_device_seconds() or 0 end

if not tide.cuda.is_available() or a.ops then
  -- host time of one op from Lua on tiny tensors: the Lua call, the op
  -- layer's checks, allocation of the result, dispatch, a 4-element kernel
  -- (on the CPU; with --ops under the emulator, less the emulated kernels)
  local n = tonumber(a.n) or (emu and 2000 or 20000)
  local dev = a.ops and 'cuda' or 'cpu'
  local x, y = tide.ones(2, 2, { device = dev }), tide.ones(2, 2, { device = dev })
  local w, b = tide.ones(2, { device = dev }), tide.zeros(2, { device = dev })
  local xg = tide.ones(2, 2, { device = dev }):requires_grad_(true)
  local wg = tide.ones(2, 2, { device = dev }):requires_grad_(true)
  local F = tide.F
  local cases = {
    { 'none (the loop)', function() end },
    { 'add', function() return x + y end },
    { 'mul by a number', function() return x * 0.5 end },
    { 'add_ (in place)', function() return x:add_(y) end },
    { 'matmul', function() return x:matmul(y) end },
    { 'sum', function() return x:sum() end },
    { 'exp', function() return x:exp() end },
    { 'softmax', function() return F.softmax(x, -1) end },
    { 'layer_norm', function() return F.layer_norm(x, { 2 }, w, b) end },
    { 'gelu', function() return F.gelu(x) end },
    { 'linear (matmul + bias)', function() return F.linear(x, y, b) end },
    { 'matmul, autograd recorded', function() return xg:matmul(wg) end },
    { 'matmul + sum + backward', function() xg:matmul(wg):sum():backward() end },
  }
  print(('host time per call from Lua, %d calls, best of 5, thread CPU time (2x2 f32 tensors on %s%s):')
    :format(n, dev, emu and a.ops and ', emulated kernel time subtracted' or ''))
  for _, c in ipairs(cases) do
    local f = c[2]
    collectgarbage()
    local best = math.huge
    for _ = 1, 5 do
      local t0, d0 = clock(), device_seconds()
      for _ = 1, n do f() end
      best = math.min(best, clock() - t0 - (device_seconds() - d0))
    end
    tide.cuda.reset_launch_stats()
    f()
    local l = tide.cuda.is_available() and tide.cuda.launch_stats().total or 0
    print(('  %-28s %7.2f us%s'):format(c[1], best / n * 1e6, a.ops and ('  (%d launches)'):format(l) or ''))
  end
  return
end

-- on a device: a GPT-2 of 124M's structure (12 layers, tied head, AdamW with
-- decay groups, clipping) at small widths: the launches depend on the
-- structure, not the widths
local cfg = { vocab_size = 128, n_positions = 32, n_embd = 64, n_layer = 12, n_head = 4,
              resid_pdrop = 0, embd_pdrop = 0, attn_pdrop = 0 }
local B, T = 2, 16
local reps = tonumber(a.reps) or 5
tide.manual_seed(0)
local model = tide.gpt2.new(cfg):to('cuda')
local opt = tide.optim.AdamW(tide.optim.grouped_params(model, 0.1), { lr = 3e-4, betas = { 0.9, 0.95 }, eps = 1e-8 })
local ids = tide.randint(0, cfg.vocab_size, { B, T }, { dtype = 'i64' }):to('cuda')

local phases = {}
local function phase(name, fn)
  tide.cuda.reset_launch_stats()
  local t0, d0 = clock(), device_seconds()
  local r = fn()
  tide.cuda.synchronize()
  local wall, dev = clock() - t0, device_seconds() - d0
  phases[#phases + 1] = { name, tide.cuda.launch_stats(), wall, dev }
  return r
end
local function step(record)
  local run = record and phase or function(_, fn) return fn() end
  local out = run('forward', function() return model(ids, { labels = ids }) end)
  opt:zero_grad()
  run('backward', function() out.loss:backward() end)
  run('clip', function() tide.optim.clip_grad_norm(model:parameters(), 1.0) end)
  run('AdamW', function() opt:step() end)
  return out.loss
end
step(false)  -- warm-up: optimizer state, cuBLASLt
collectgarbage()
step(true)
print(('launches per training step, GPT-2 with %d layers (n_embd %d, vocab %d, B %d, T %d), f32, on %s:')
  :format(cfg.n_layer, cfg.n_embd, cfg.vocab_size, B, T, tide.cuda.runtime()))
local total, all, host = 0, {}, 0
for _, p in ipairs(phases) do
  local s = p[2]
  total = total + s.total
  host = host + p[3] - p[4]
  local list = {}
  for op, c in pairs(s.by_op) do
    list[#list + 1] = { op, c }
    all[op] = (all[op] or 0) + c
  end
  table.sort(list, function(x, y) return x[2] > y[2] or (x[2] == y[2] and x[1] < y[1]) end)
  local parts = {}
  for _, e in ipairs(list) do parts[#parts + 1] = e[1] .. ' ' .. e[2] end
  print(('  %-9s %5d: %s'):format(p[1], s.total, table.concat(parts, ', ')))
  if emu then
    print(('            wall %.1f ms, emulated device %.1f ms, host %.2f ms = %.1f us per launch')
      :format(p[3] * 1e3, p[4] * 1e3, (p[3] - p[4]) * 1e3, (p[3] - p[4]) / s.total * 1e6))
  end
end
print(('  total     %5d launches'):format(total))
if emu then print(('  host time of the step %.1f ms: %.1f us per launch'):format(host * 1e3, host / total * 1e6)) end
local params = #model:parameters()
print(('  (%d parameter tensors)'):format(params))

-- host time per launch: the work from the hidden states to the loss and its
-- backward, run eagerly (host work + emulated kernels) and replayed as a
-- graph (emulated kernels only; a replay is one call from the host). The
-- embedding and the cross-entropy check their indices on the host, which a
-- capture refuses, so they stay out of both.
local h0 = tide.randn(B, T, cfg.n_embd, { device = 'cuda' }):requires_grad_(true)
local onehot = tide.zeros(B * T, cfg.vocab_size, { device = 'cuda' })
local function blocks(h, oh)
  local x, tr = h, model.transformer
  for i = 1, tr.h:len() do x = tr.h[i](x) end
  x = tr.ln_f(x)
  local logits = tide.F.linear(x, model.lm_head.weight):reshape(B * T, cfg.vocab_size)
  local loss = -(tide.F.log_softmax(logits, -1) * oh):sum() / (B * T)
  loss:backward()
  return loss
end
blocks(h0, onehot)
model:zero_grad()
h0.grad = nil
tide.cuda.reset_launch_stats()
local g = tide.cuda.graph(blocks, nil, h0, onehot)
local launches = tide.cuda.launch_stats().total
g:replay()
local function eager()
  model:zero_grad()
  h0.grad = nil
  blocks(h0, onehot)
  tide.cuda.synchronize()
end
eager()
-- wall time and host time (wall minus emulated device time), each the best of reps
local function measure(fn)
  local best_host, best_wall = math.huge, math.huge
  for _ = 1, reps do
    collectgarbage()
    local t0, d0 = clock(), device_seconds()
    fn()
    local wall = clock() - t0
    best_wall = math.min(best_wall, wall)
    best_host = math.min(best_host, wall - (device_seconds() - d0))
  end
  return best_wall, best_host
end
local ew, eh = measure(eager)
local rw, rh = measure(function() g:replay(); tide.cuda.synchronize() end)
print(('blocks + head forward and backward: %d launches (best of %d)'):format(launches, reps))
print(('  eager:        wall %.1f ms, host %.2f ms = %.1f us per launch'):format(ew * 1e3, eh * 1e3, eh / launches * 1e6))
print(('  graph replay: wall %.1f ms, host %.2f ms'):format(rw * 1e3, rh * 1e3))

-- Decoding speed of model:generate on the CPU; bench/generate.sh runs it
-- beside transformers' generate (bench/generate_peer.py) on the same model
-- directory, prompt ids and thread count.
--
--   tide bench/generate.lua --save=DIR [--size=124M|small]   write a random GPT-2 (and GPT-2's tokenizer)
--   tide bench/generate.lua --model=DIR [--batch=1] [--prompt=64] [--new=128] [--sample=false]
--        [--threads=2] [--reps=3] [--floor=false]
--
-- Each rep times generate with max_new_tokens = 1 (prefill and the first
-- token) and with max_new_tokens = new; decoding speed is
-- batch * (new - 1) / (t_new - t_1), the median over reps. eos is off, so
-- every row gets all new tokens. The prompt ids are (7 b + 31 t + 11) mod V
-- (0-based b, t), as the peer's. "cpu" is the process's CPU time per decode
-- step (all threads): on a shared machine, with one thread, the steadier
-- figure. --floor also prints the bytes one decode
-- step must read (weights, the KV cache) over the copy bandwidth measured here.
local a = tide.args
local sizes = {
  ['124M'] = { vocab_size = 50257, n_positions = 1024, n_embd = 768, n_layer = 12, n_head = 12 },
  small = { vocab_size = 50257, n_positions = 256, n_embd = 256, n_layer = 4, n_head = 4 },
}

if a.save then
  local cfg = sizes[a.size or '124M']
  if not cfg then error('--size must be 124M or small, got ' .. tostring(a.size)) end
  tide.manual_seed(0)
  local m = tide.gpt2.new(cfg)
  m:save_pretrained(a.save)
  tide.tokenizer.load('data/gpt2'):save(a.save)
  print(('saved a random GPT-2 (%d layers, %d dims, %d parameters) to %s')
    :format(cfg.n_layer, cfg.n_embd, tide.gpt2.num_parameters(cfg), a.save))
  return
end

if not a.model then error('give --model=DIR (or --save=DIR)') end
if a.threads then tide.set_num_threads(a.threads) end
local B, P, N = a.batch or 1, a.prompt or 64, a.new or 128
local reps = a.reps or 3
local model = tide.gpt2.from_pretrained(a.model)
model:eval()
local cfg = model.config
local V = cfg.vocab_size

local rows = {}
for b = 0, B - 1 do
  local r = {}
  for t = 0, P - 1 do r[t + 1] = (7 * b + 31 * t + 11) % V end
  rows[b + 1] = r
end
local ids = tide.tensor(rows, { dtype = 'i64' })
local opts = { eos_token_id = false, do_sample = a.sample == true, seed = 0 }

local function run(new)
  opts.max_new_tokens = new
  local t0, c0 = tide.clock(), os.clock()
  local out = model:generate(ids, opts)
  local dt, dc = tide.clock() - t0, os.clock() - c0
  assert(out:size(2) == P + new, 'generate stopped early')
  return dt, out, dc
end

run(2) -- warm-up: traces, first-touch pages
local firsts, wholes, decodes, cpus = {}, {}, {}, {}
local last
for r = 1, reps do
  local t1, _, c1 = run(1)
  local tn, out, cn = run(N)
  firsts[r], wholes[r], decodes[r], cpus[r] = t1, tn, (tn - t1) / (N - 1), (cn - c1) / (N - 1)
  last = out
end
local function median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  return s[math.floor((#s + 1) / 2)]
end
local step = median(decodes)
-- a checksum of the last run's new ids, to compare greedy runs with the peer
local sum = last:narrow(2, P + 1, N):to('f64'):mul(tide.arange(1, B * N + 1, { dtype = 'f64' }):view(B, N)):sum():item()
print(('tide   %s B=%d: prefill+1 %.1f ms  decode step %.2f ms (cpu %.2f ms)  decode %.1f tokens/s  whole %.1f tokens/s  threads %d  ids %d')
  :format(opts.do_sample and 'sample' or 'greedy', B, median(firsts) * 1e3, step * 1e3, median(cpus) * 1e3, B / step,
          B * N / median(wholes), tide.get_num_threads(), sum % 1000000007))

if a.floor then
  -- copy bandwidth: 256 MB into a warm destination, reads + writes counted
  local n = 64 * 2 ^ 20
  local src, dst = tide.ones(n), tide.empty(n)
  dst:copy_(src)
  local best = math.huge
  for _ = 1, 5 do
    local t0 = tide.clock()
    dst:copy_(src)
    best = math.min(best, tide.clock() - t0)
  end
  local bw = 2 * n * 4 / best
  -- bytes one decode step reads: every weight once (wte once: it is the
  -- tied lm_head; wpe one row), the KV cache up to the middle position
  local params = 0
  for _, p in ipairs(model:parameters()) do params = params + p:numel() end
  local wbytes = (params - cfg.n_positions * cfg.n_embd) * 4
  local kv = 2 * cfg.n_layer * B * (P + N / 2) * cfg.n_embd * 4
  local floor = (wbytes + kv) / bw
  local cpu = median(cpus) / tide.get_num_threads()
  print(('floor  copy bandwidth %.1f GB/s (%d threads); a decode step reads %.1f MB of weights + %.1f MB of cache = %.2f ms; tide step %.2f ms = %.1fx the floor (cpu per thread %.2f ms = %.1fx)')
    :format(bw / 1e9, tide.get_num_threads(), wbytes / 1e6, kv / 1e6, floor * 1e3, step * 1e3, step / floor, cpu * 1e3, cpu / floor))
end

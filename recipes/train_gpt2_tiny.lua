-- Train a tiny GPT-2 from scratch on real text, on the CPU: the shape of the
-- Hugging Face course's training loop (AdamW with decay groups, cosine
-- schedule with warmup, gradient clipping), at byte level until tide's BPE
-- tokenizer lands. The text is tide's own documentation and Lua sources, so
-- the recipe needs nothing outside the repository.
--
--   tide recipes/train_gpt2_tiny.lua --steps=200 --batch=8 --seq=64 --lr=3e-3
local args = tide.args
local steps = args.steps or 600
local B, T = args.batch or 8, args.seq or 64
local lr = args.lr or 3e-3
tide.manual_seed(args.seed or 0)

-- the corpus: every .md and .lua file under docs/ and lua/, as bytes
local here = (arg and arg[0] or 'recipes/x.lua'):match('^(.*)/recipes/[^/]*$') or '.'
local pipe = io.popen(("find '%s/docs' '%s/lua' -type f \\( -name '*.md' -o -name '*.lua' \\) | sort"):format(here, here))
local parts = {}
for path in pipe:lines() do
  local f = io.open(path, 'rb')
  parts[#parts + 1] = f:read('*a')
  f:close()
end
pipe:close()
local text = table.concat(parts, '\n')
if #text < (T + 1) * B then error('corpus too small: ' .. #text .. ' bytes') end
local ids = tide.empty(#text, { dtype = 'i64' })
local p = tide.ffi.cast('int64_t*', ids:data_ptr())
for i = 1, #text do p[i - 1] = text:byte(i) end
print(('corpus: %d bytes from %d files'):format(#text, #parts))

-- hold out the last 5% for evaluation
local n_train = math.floor(#text * 0.95)
local function batch(lo, hi)
  local starts = tide.randint(lo, hi - T - 1, { B })
  local rows = {}
  for i = 1, B do rows[i] = ids:narrow(1, starts[i]:item() + 1, T + 1) end
  return tide.stack(rows, 1)
end

local model = tide.gpt2.new({ vocab_size = 256, n_positions = T, n_embd = args.n_embd or 64,
                              n_layer = args.n_layer or 2, n_head = 4,
                              resid_pdrop = 0, embd_pdrop = 0, attn_pdrop = 0 })
print(('model: %d parameters'):format(model:num_parameters()))
local opt = tide.optim.AdamW(tide.optim.grouped_params(model, 0.1), { lr = lr, betas = { 0.9, 0.95 }, eps = 1e-8 })
local sched = tide.optim.get_scheduler('cosine', opt, { num_warmup_steps = math.floor(steps / 20),
                                                       num_training_steps = steps })

local function evaluate()
  model:eval()
  local total = 0
  tide.no_grad(function()
    for _ = 1, 4 do
      local b = batch(n_train, #text)
      total = total + model(b:narrow(2, 1, T), { labels = b:narrow(2, 1, T) }).loss:item()
    end
  end)
  model:train()
  return total / 4
end

local first_eval = evaluate()
print(('step    0  eval loss %.4f  (ln 256 = %.4f)'):format(first_eval, math.log(256)))
local t0 = tide.clock()
local loss
for step = 1, steps do
  local b = batch(0, n_train)
  local x = b:narrow(2, 1, T)
  local out = model(x, { labels = x })
  opt:zero_grad()
  out.loss:backward()
  local norm = tide.optim.clip_grad_norm(model:parameters(), 1.0)
  opt:step()
  sched:step()
  loss = out.loss:item()
  if step % 20 == 0 or step == steps then
    print(('step %4d  loss %.4f  grad norm %.3f  lr %.2e  %.1f tokens/s')
      :format(step, loss, norm, sched:get_last_lr()[1], step * B * T / (tide.clock() - t0)))
  end
end
local final_eval = evaluate()
print(('eval loss %.4f -> %.4f after %d steps'):format(first_eval, final_eval, steps))
if final_eval > first_eval - 1.0 then
  io.stderr:write('train_gpt2_tiny: the loss did not fall by at least 1 nat\n')
  os.exit(1)
end

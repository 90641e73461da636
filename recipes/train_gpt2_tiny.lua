-- Train a tiny GPT-2 from scratch on Python code, on the CPU (or a GPU with
-- --device=cuda): the seeds' pipeline end to end with nothing downloaded.
--   1. the corpus: this machine's Python sources as CodeParrot-schema
--      JSON Lines (tide.data.build_corpus; kept in data/corpus/);
--   2. a code tokenizer: GPT-2's retrained on it (train_new_from_iterator);
--   3. CodeParrot's cleaning filters, exact dedup, a held-out split, and
--      concat packing into seq-token sequences written as token shards;
--   4. the Hugging Face course's training loop on batches from the shards
--      (AdamW with decay groups, cosine schedule with warmup, gradient
--      clipping), and the held-out loss before and after.
--
--   tide recipes/train_gpt2_tiny.lua --steps=200 --batch=8 --seq=64 --lr=3e-3
--        [--vocab=4096] [--corpus=data/corpus/python.jsonl.gz] [--corpus_mb=20] [--device=cuda]
--
-- Exits 1 when the held-out loss does not fall by a nat, and stops at once
-- with exit 1 when the loss or the gradient norm stops being finite (a
-- learning rate such as 1e38 makes both NaN within a step).
local args = tide.args
local data, F = tide.data, tide.data.filters
local steps = args.steps or 600
local B, T = args.batch or 8, args.seq or 64
local lr = args.lr or 3e-3
local seed = args.seed or 0
local device = args.device or 'cpu'
tide.manual_seed(seed)
local t_start = tide.clock()

-- 1. the corpus
local corpus = args.corpus or 'data/corpus/python.jsonl.gz'
if not require('tide.data.files').exists(corpus) then
  local r = data.build_corpus({ out = corpus, max_mb = args.corpus_mb or 20 })
  print(('corpus: built %s from %d files (%.1f MB of Python source)'):format(corpus, r.files, r.bytes / 1e6))
end
local records = data.jsonl(corpus, { fields = { 'path', 'content' } })
  :filter(F.codeparrot({ seed = seed }), 'codeparrot heuristics')
  :filter(F.exact_dedup(), 'exact dedup')

-- 2. the tokenizer: GPT-2's, retrained on the code, as the seeds do
local vocab = args.vocab or 4096
local tok = tide.tokenizer.load('data/gpt2'):train_new_from_iterator(records, vocab, { show_progress = false })
print(('tokenizer: %d tokens trained in %.1f s; "    return" is %d token(s)'):format(
  tok:vocab_size(), tide.clock() - t_start, #tok:encode('    return')))

-- 3. packed shards: a held-out split, documents joined by EOS, T tokens each,
-- in a temporary directory removed however the recipe ends: by cleanup()
-- before an exit, or, on an error or Ctrl-C (the "interrupted" error), by
-- the finaliser of `guard`, which tide runs when it closes the Lua state
local files = require 'tide.data.files'
local dir = files.temp_dir('tide_train_gpt2_tiny')
local function cleanup()
  if dir then files.remove_tree(dir) end
  dir = nil
end
local guard = newproxy(true)
getmetatable(guard).__gc = cleanup
local function fail(msg)
  io.stderr:write('train_gpt2_tiny: ', msg, '\n')
  cleanup()
  os.exit(1, true)  -- closing the state frees every tensor first (leak checks stay meaningful)
end
local function finite(x) return x == x and x ~= math.huge and x ~= -math.huge end
local ms = data.write_shards(dir, records, { tokenizer = tok, seq_length = T, seed = seed,
                                            split = { valid = 0.05, seed = seed } })
for _, name in ipairs({ 'train', 'valid' }) do
  print(('%s: %d sequences of %d tokens'):format(name, math.floor(ms[name].total_tokens / T), T))
end
print(ms.train.report)
local train = data.shards(dir, { prefix = 'train', batch_size = B, shuffle = true, seed = seed, epochs = math.huge })
local valid = data.shards(dir, { prefix = 'valid', batch_size = B })

-- 4. the model and its training loop
local model = tide.gpt2.new({ vocab_size = tok:vocab_size(), n_positions = T, n_embd = args.n_embd or 64,
                              n_layer = args.n_layer or 2, n_head = 4,
                              resid_pdrop = 0, embd_pdrop = 0, attn_pdrop = 0 })
model:to(device)
print(('model: %d parameters on %s'):format(model:num_parameters(), device))
local opt = tide.optim.AdamW(tide.optim.grouped_params(model, 0.1), { lr = lr, betas = { 0.9, 0.95 }, eps = 1e-8 })
local sched = tide.optim.get_scheduler('cosine', opt, { num_warmup_steps = math.floor(steps / 20),
                                                       num_training_steps = steps })

-- the mean loss over the first (up to) 8 held-out batches, the same each time
local function evaluate()
  model:eval()
  local total, n = 0, 0
  valid:reset()
  tide.no_grad(function()
    for b in valid do
      b = b:to(device)
      total = total + model(b, { labels = b }).loss:item()
      n = n + 1
      if n == 8 then break end
    end
  end)
  model:train()
  return total / n
end

local first_eval = evaluate()
print(('step    0  eval loss %.4f  (ln %d = %.4f)'):format(first_eval, tok:vocab_size(), math.log(tok:vocab_size())))
if not finite(first_eval) then fail(('the held-out loss of the untrained model is %s'):format(first_eval)) end
local t0 = tide.clock()
local loss
for step = 1, steps do
  local x = train():to(device)
  local out = model(x, { labels = x })
  opt:zero_grad()
  out.loss:backward()
  local norm = tide.optim.clip_grad_norm(model:parameters(), 1.0)
  opt:step()
  sched:step()
  loss = out.loss:item()
  if not finite(loss) or not finite(norm) then
    -- every later step would be NaN too: stop here, saying where it began
    fail(('step %d: the loss is %s and the gradient norm %s (lr %g): training diverged'):format(
      step, tostring(loss), tostring(norm), lr))
  end
  if step % 20 == 0 or step == steps then
    print(('step %4d  loss %.4f  grad norm %.3f  lr %.2e  %.1f tokens/s')
      :format(step, loss, norm, sched:get_last_lr()[1], step * B * T / (tide.clock() - t0)))
  end
end
local final_eval = evaluate()
cleanup()
print(('eval loss %.4f -> %.4f after %d steps (%.1f s in all)'):format(first_eval, final_eval, steps, tide.clock() - t_start))
-- written so that NaN fails it: every comparison with NaN is false
if not finite(final_eval) then fail(('the held-out loss after training is %s'):format(final_eval)) end
if not (final_eval <= first_eval - 1.0) then fail('the loss did not fall by at least 1 nat') end

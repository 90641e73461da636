-- Train a tiny GPT-2 from scratch on Python code, on the CPU (or a GPU with
-- --device=cuda): the seeds' pipeline end to end with nothing downloaded.
--   1. the corpus: this machine's Python sources as CodeParrot-schema
--      JSON Lines (tide.data.build_corpus; kept in data/corpus/);
--   2. a code tokenizer: GPT-2's retrained on it (train_new_from_iterator);
--   3. CodeParrot's cleaning filters, exact dedup, a held-out split, and
--      concat packing into seq-token sequences written as token shards;
--   4. the Hugging Face course's training loop on batches from the shards
--      (AdamW with decay groups, cosine schedule with warmup, gradient
--      accumulation and clipping), with tide.train's pieces: checkpoints,
--      evaluation, metrics.jsonl, TensorBoard, a plot, Ctrl-C and NaN guard.
--
--   tide recipes/train_gpt2_tiny.lua --steps=200 --batch=8 --seq=64 --lr=3e-3
--        [--out=RUN] [--resume=auto|RUN/checkpoints/step-000100] [--overwrite]
--        [--eval_every=N] [--save_every=N] [--keep_last=K] [--grad_accum=N] [--log_every=N]
--        [--skip_nonfinite] [--vocab=4096] [--corpus=data/corpus/python.jsonl.gz] [--corpus_mb=20]
--        [--device=cuda] [--zero=1]
--
-- The run directory (--out, default runs/train_gpt2_tiny-DATE-TIME) keeps
-- the token shards and tokenizer (data/, tokenizer/: a resumed run reads
-- the same data), checkpoints/, metrics.jsonl, tb/ and plot.svg.
-- Under a launcher (tide launch -n 2, mpirun -n 2, srun) it trains data-parallel:
-- each rank reads its own part of the batches (--batch is per rank, so the
-- global batch is batch x ranks), gradients are averaged during backward
-- (tide.dist.DataParallel), only rank 0 logs and writes checkpoints, and a
-- checkpoint resumes on any number of ranks. --zero=1 (default 0) shards the
-- AdamW state over the ranks (ZeRO-1). See docs/distributed.md.
-- Ctrl-C finishes the step, saves a checkpoint, prints the command that
-- resumes and exits 130 (a second Ctrl-C exits at once). Exits 1 when the
-- held-out loss does not fall by a nat, and at once with exit 1 when the loss
-- or the gradient norm stops being finite (a learning rate such as 1e38 makes
-- both NaN within a step), unless --skip_nonfinite skips those updates.
local args = tide.args
local data, F = tide.data, tide.data.filters
local files = require 'tide.data.files'
local train = tide.train
local steps = args.steps or 600
local B, T = args.batch or 8, args.seq or 64
local lr = args.lr or 3e-3
local seed = args.seed or 0
local device = args.device or 'cpu'
local accum = args.grad_accum or 1
local log_every, eval_every, save_every = args.log_every or 20, args.eval_every or 0, args.save_every or 500
local t_start = tide.clock()
local job = tide.dist.init()  -- a world of one without a launcher

local function fail(msg)
  io.stderr:write('train_gpt2_tiny: ', msg, '\n')
  os.exit(1, true)  -- closing the state frees every tensor first (leak checks stay meaningful)
end
local finite = train.faults.finite

-- 0. the run directory: a checkpoint path to resume from names its run
local resume = args.resume
if resume == true then resume = 'auto' end
local out = args.out
if not out and type(resume) == 'string' and resume ~= 'auto' then
  out = resume:gsub('/+$', ''):match('^(.*)/checkpoints/[^/]+$') or resume
end
if not out then  -- every rank names the run by rank 0's clock
  local now = tide.dist.broadcast(tide.tensor({ os.time() }, { dtype = 'f64' }), 0):item()
  out = 'runs/train_gpt2_tiny-' .. os.date('!%Y%m%d-%H%M%S', now)
end
args.out = out  -- the command that resumes names it
local made_here = { 'checkpoints', 'metrics.jsonl', 'tb', 'plot.svg', 'data', 'tokenizer' }
train.main_process_first(function()  -- rank 0 clears and makes the run directory, then the others look
if not resume and (files.exists(out .. '/checkpoints') or files.exists(out .. '/metrics.jsonl')) then
  if not args.overwrite then
    fail(('%s holds a run already: pass --resume=auto to continue it, or --overwrite to start it over'):format(out))
  end
  for _, name in ipairs(made_here) do files.remove_tree(out .. '/' .. name) end
  files.remove_tree(out .. '/data.json')
end
files.mkdir_p(out)
end)
tide.manual_seed(seed)

-- 1-3. the data, made once per run directory: a resumed run reads the
-- shards its loader position refers to, with the same tokenizer
local data_dir, tok_dir = out .. '/data', out .. '/tokenizer'
local data_key = tide.json.encode({ seq = T, vocab = args.vocab or 4096, seed = seed,
                                    corpus = args.corpus or 'data/corpus/python.jsonl.gz' })
local tok
train.main_process_first(function()  -- rank 0 makes the data; the others then find it made
if files.exists(tok_dir) and files.exists(data_dir) and files.exists(out .. '/data.json')
   and tide.json.encode(tide.json.read_file(out .. '/data.json')) == data_key then
  tok = tide.tokenizer.load(tok_dir)
  print(('data: the shards and the %d-token tokenizer of %s'):format(tok:vocab_size(), out))
else
  -- 1. the corpus
  local corpus = args.corpus or 'data/corpus/python.jsonl.gz'
  if not files.exists(corpus) then
    local r = data.build_corpus({ out = corpus, max_mb = args.corpus_mb or 20 })
    print(('corpus: built %s from %d files (%.1f MB of Python source)'):format(corpus, r.files, r.bytes / 1e6))
  end
  local records = data.jsonl(corpus, { fields = { 'path', 'content' } })
    :filter(F.codeparrot({ seed = seed }), 'codeparrot heuristics')
    :filter(F.exact_dedup(), 'exact dedup')

  -- 2. the tokenizer: GPT-2's, retrained on the code, as the seeds do
  local vocab = args.vocab or 4096
  tok = tide.tokenizer.load('data/gpt2'):train_new_from_iterator(records, vocab, { show_progress = false })
  print(('tokenizer: %d tokens trained in %.1f s; "    return" is %d token(s)'):format(
    tok:vocab_size(), tide.clock() - t_start, #tok:encode('    return')))

  -- 3. packed shards: a held-out split, documents joined by EOS, T tokens
  -- each; written beside data/ and renamed, so data/ is whole or absent
  local partial = data_dir .. '.partial'
  files.remove_tree(partial)
  files.remove_tree(data_dir)
  files.remove_tree(tok_dir)
  local ms = data.write_shards(partial, records, { tokenizer = tok, seq_length = T, seed = seed,
                                                   split = { valid = 0.05, seed = seed } })
  for _, name in ipairs({ 'train', 'valid' }) do
    print(('%s: %d sequences of %d tokens'):format(name, math.floor(ms[name].total_tokens / T), T))
  end
  print(ms.train.report)
  assert(os.rename(partial, data_dir))
  tok:save(tok_dir)
  tide.json.write_file(out .. '/data.json', tide.json.decode(data_key))  -- what data/ was made from
end
end)
local train_data = data.shards(data_dir, { prefix = 'train', batch_size = B, shuffle = true, seed = seed, epochs = math.huge })
local valid = data.shards(data_dir, { prefix = 'valid', batch_size = B })

-- 4. the model, its optimizer and schedule
local model = tide.gpt2.new({ vocab_size = tok:vocab_size(), n_positions = T, n_embd = args.n_embd or 64,
                              n_layer = args.n_layer or 2, n_head = 4,
                              resid_pdrop = 0, embd_pdrop = 0, attn_pdrop = 0 })
model:to(device)
if job.world_size > 1 or args.zero then model = tide.dist.DataParallel(model) end
print(('model: %d parameters on %s'):format(model:num_parameters(), device))
local opt = tide.optim.AdamW(tide.optim.grouped_params(model, 0.1), { lr = lr, betas = { 0.9, 0.95 }, eps = 1e-8,
                                                                        zero = args.zero })
local sched = tide.optim.get_scheduler('cosine', opt, { num_warmup_steps = math.floor(steps / 20),
                                                       num_training_steps = steps })

-- the mean loss over the first (up to) 8 held-out batches, the same each time
local function evaluate()
  return train.evaluate(model, valid, { max_batches = 8, device = device }).loss
end
local log = train.Logger(out, { total_steps = steps, log_every = log_every })

-- everything a checkpoint holds; the loop updates step, tokens and extra
local state = { step = 0, model = model, optimizer = opt, scheduler = sched, loader = train_data,
                tokenizer = tok, tokens = 0, elapsed = 0, options = args, extra = { skipped_nonfinite = 0 } }
local last_checkpoint, saved_step, elapsed_before = nil, nil, 0
local function save(step)
  if saved_step == step then return last_checkpoint end
  state.step, state.elapsed = step, elapsed_before + tide.clock() - t_start
  last_checkpoint, saved_step = train.save_checkpoint(out, state, { keep_last = args.keep_last }), step
  return last_checkpoint
end

local start = 0
if resume then
  local info = train.load_checkpoint(resume == 'auto' and out or resume, state)
  if info.message then print(info.message) end
  start, last_checkpoint, saved_step = info.step, info.path, info.step
  state.tokens, elapsed_before = info.tokens or 0, info.elapsed or 0
  for k, v in pairs(info.extra or {}) do state.extra[k] = v end
  print(('resumed from %s at step %d'):format(info.path, start))
end

-- the held-out loss before training: the yardstick of the convergence check
local first_eval = state.extra.first_eval
if not first_eval then
  first_eval = evaluate()
  state.extra.first_eval = first_eval
  print(('step    0  eval loss %.4f  (ln %d = %.4f)'):format(first_eval, tok:vocab_size(), math.log(tok:vocab_size())))
  if not finite(first_eval) then fail(('the held-out loss of the untrained model is %s'):format(first_eval)) end
  log:log(0, { ['loss/eval'] = first_eval, perplexity = math.exp(first_eval) })
end

-- the loop: one optimizer step per `accum` micro-batches
local guard = train.faults.Guard({ skip = args.skip_nonfinite, skipped = state.extra.skipped_nonfinite })
local ctrl_c = train.faults.catch_interrupts()  -- Ctrl-C waits for the step's end
local t0, tok0, loss_sum, loss_n = tide.clock(), state.tokens, 0, 0
for step = start + 1, steps do
  opt:zero_grad()
  local total, bad_micro, bad_loss = 0, nil, nil
  for micro = 1, accum do
    local x = train_data():to(device)  -- drawn even after a bad micro-batch: the data stay in step
    if not bad_micro then
      local loss = model(x, { labels = x }).loss
      local l = loss:item()
      if finite(l) then
        local scaled = accum > 1 and loss / accum or loss
        if micro < accum and model.no_sync then  -- the ranks average the sum once, at the last micro-batch
          model:no_sync(scaled.backward, scaled)
        else
          scaled:backward()
        end
        total = total + l
        state.tokens = state.tokens + x:numel() * job.world_size
      else
        bad_micro, bad_loss = micro, l
      end
    end
  end
  local norm = not bad_micro and tide.optim.clip_grad_norm(model:parameters(), 1.0, { warn_if_nonfinite = false }) or nil
  local ok, good = pcall(guard.check, guard, { step = step, micro = bad_micro, accum = accum, loss = bad_loss,
                                               grad_norm = norm, checkpoint = last_checkpoint })
  if not ok then fail(good) end  -- every later step would be NaN too: stop, saying where it began
  if good then
    opt:step()
    loss_sum, loss_n = loss_sum + total / accum, loss_n + 1
  end
  sched:step()
  state.extra.skipped_nonfinite = guard.skipped
  if step % log_every == 0 or step == steps then
    local now = tide.clock()
    log:log(step, { ['loss/train'] = loss_n > 0 and train.mean_over_ranks(loss_sum / loss_n) or nil, lr = sched:get_last_lr()[1],
                    grad_norm = norm, tokens_per_s = (state.tokens - tok0) / (now - t0),
                    samples = step * accum * B * job.world_size, steps = step,
                    skipped_nonfinite = guard.skipped > 0 and guard.skipped or nil })
    t0, tok0, loss_sum, loss_n = now, state.tokens, 0, 0
  end
  if eval_every > 0 and step % eval_every == 0 and step ~= steps then
    local e = evaluate()
    log:log(step, { ['loss/eval'] = e, perplexity = e < 709 and math.exp(e) or math.huge })
  end
  local saved = save_every > 0 and step % save_every == 0 and save(step)
  if ctrl_c:requested() then
    local path = saved or save(step)
    log:close()
    train.faults.exit_interrupted(step, path, out)
  end
end
ctrl_c:release(false)

local final_eval = evaluate()
-- a resumed run that had already finished logged this evaluation the first time
if start < steps then
  log:log(steps, { ['loss/eval'] = final_eval, perplexity = final_eval < 709 and math.exp(final_eval) or math.huge })
end
save(steps)
log:close()
print(('eval loss %.4f -> %.4f after %d steps (%.1f s in all)'):format(first_eval, final_eval, steps,
  elapsed_before + tide.clock() - t_start))
print('plot: ' .. train.plot({ out }))
if last_checkpoint then print('checkpoint: ' .. last_checkpoint) end
-- written so that NaN fails it: every comparison with NaN is false
if not finite(final_eval) then fail(('the held-out loss after training is %s'):format(final_eval)) end
if not (final_eval <= first_eval - 1.0) then fail('the loss did not fall by at least 1 nat') end

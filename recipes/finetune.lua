-- Fine-tune a GPT-2-family model on a text corpus: the Hugging Face causal
-- language modeling guide (DistilGPT2 on ELI5, seeds/hf-guide-causal-lm-
-- finetune-distilgpt2.txt) in tide.
--   1. load a Hugging Face model directory (config.json, model.safetensors,
--      tokenizer files) and its tokenizer;
--   2. read the corpus: JSON Lines with the text in a nested field such as
--      answers.text (a list of strings, joined with spaces as the guide's
--      preprocess_function does after eli5.flatten()), or text files;
--      split train/test (test_size 0.2, as eli5.train_test_split);
--   3. tokenize and group_texts into blocks of block_size tokens, the
--      remainder of every 1000 records dropped, as the guide maps it;
--   4. train with tide.train.Trainer (AdamW, linear decay, clipping at 1.0,
--      evaluation every epoch, checkpoints, metrics.jsonl, TensorBoard, a
--      plot), batches collated as DataCollatorForLanguageModeling(mlm=False);
--   5. report the perplexity, math.exp(eval_loss), before and after;
--   6. save the model and tokenizer to output_dir as a Hugging Face
--      directory (AutoModelForCausalLM.from_pretrained reads it).
--
--   tide recipes/finetune.lua [--model=DIR] [--data=PATHS] [--output_dir=DIR] [--key=value ...]
--
-- Options (defaults in brackets; the training ones are TrainingArguments'):
--   --model=tests/ref/finetune/tiny-gpt2   a model directory or a name in the
--                              local Hugging Face cache (--model=distilgpt2
--                              is the guide's, once downloaded); the
--                              default is a 46k-parameter random GPT-2 that
--                              ships with tide, so a fresh clone runs
--   --data=tests/data/finetune/eli5_tiny.jsonl   .jsonl/.jsonl.gz/.json
--                              files, a glob or a directory; any other
--                              files are read as plain text, one record each
--   --field=answers.text       the field holding the text, dotted for
--                              nested fields; a list is joined with spaces
--                              ('text' for plain text files)
--   --limit=5000               records read (the guide's train[:5000]); 0: all
--   --test_size=0.2            the share of records held out
--   --block_size=128           tokens per block (at most the model's n_positions)
--   --output_dir=my_awesome_eli5_clm-model   checkpoints/, metrics.jsonl,
--                              tb/, plot.svg, and the final model and tokenizer
--   --overwrite                start over in an output_dir that holds a run
--   --learning_rate=2e-5  --weight_decay=0.01  --num_train_epochs=3
--   --per_device_train_batch_size=8  --per_device_eval_batch_size=8
--   --gradient_accumulation_steps=1  --max_steps=-1 (> 0 wins over epochs)
--   --lr_scheduler_type=linear  --warmup_steps=0  --max_grad_norm=1.0
--   --logging_steps=10  --save_steps=500  --save_total_limit=2
--   --seed=42                  the model's dropout, the split and the shuffle
--   --device=cpu               or cuda
--
-- Exits 1 with a message on bad options or inputs. Prints "Perplexity before"
-- and, as the guide, "Perplexity: N" after training.
local args = tide.args
local data, train = tide.data, tide.train
local files = require 'tide.data.files'
local rng = require 'tide.data.rng'

local function fail(msg)
  io.stderr:write('finetune: ', msg, '\n')
  os.exit(1, true)
end

local defaults = {
  model = 'tests/ref/finetune/tiny-gpt2', data = 'tests/data/finetune/eli5_tiny.jsonl', field = false,
  limit = 5000, test_size = 0.2, block_size = 128, output_dir = 'my_awesome_eli5_clm-model', overwrite = false,
  learning_rate = 2e-5, weight_decay = 0.01, num_train_epochs = 3, per_device_train_batch_size = 8,
  per_device_eval_batch_size = 8, gradient_accumulation_steps = 1, max_steps = -1, lr_scheduler_type = 'linear',
  warmup_steps = 0, max_grad_norm = 1.0, logging_steps = 10, save_steps = 500, save_total_limit = 2, seed = 42,
  device = 'cpu',
}
local o = {}
for k, v in pairs(args) do
  if defaults[k] == nil then fail(('unknown option --%s (the header of recipes/finetune.lua lists them)'):format(k)) end
end
for k, v in pairs(defaults) do
  if args[k] == nil then o[k] = v else o[k] = args[k] end
end
local function need_int(k, min)
  if type(o[k]) ~= 'number' or o[k] % 1 ~= 0 or o[k] < min then
    fail(('--%s must be an integer >= %d, got %s'):format(k, min, tostring(o[k])))
  end
end
for _, k in ipairs({ 'limit', 'per_device_train_batch_size', 'per_device_eval_batch_size', 'block_size',
                     'gradient_accumulation_steps', 'logging_steps', 'seed' }) do
  need_int(k, k == 'limit' and 0 or (k == 'seed' and 0 or 1))
end
if type(o.test_size) ~= 'number' or o.test_size <= 0 or o.test_size >= 1 then
  fail('--test_size must be a fraction between 0 and 1, got ' .. tostring(o.test_size))
end
for _, k in ipairs({ 'learning_rate', 'weight_decay', 'num_train_epochs', 'max_grad_norm' }) do
  if type(o[k]) ~= 'number' or o[k] < 0 then fail(('--%s must be a number >= 0, got %s'):format(k, tostring(o[k]))) end
end
for _, k in ipairs({ 'model', 'data', 'output_dir' }) do
  if type(o[k]) ~= 'string' or o[k] == '' then fail(('--%s must be a path'):format(k)) end
end
tide.manual_seed(o.seed)

-- 1. the model and its tokenizer
local ok, model = pcall(tide.gpt2.from_pretrained, o.model)
if not ok then fail(tostring(model)) end
local ok2, tok = pcall(tide.tokenizer.load, o.model)
if not ok2 then fail(tostring(tok)) end
local n_pos = model.config.n_positions
if o.block_size > n_pos then
  fail(('--block_size=%d is longer than the model\'s %d positions'):format(o.block_size, n_pos))
end
local pad = tok.eos_id  -- tokenizer.pad_token = tokenizer.eos_token, as the guide sets it
if not pad then fail(o.model .. ': the tokenizer has no <|endoftext|> to pad with') end
print(('model %s: %d parameters, vocab %d, %d positions'):format(o.model, tide.gpt2.num_parameters(model.config),
  tok:vocab_size(), n_pos))

-- 2. the corpus: one text per record, a list of strings joined with spaces
local is_jsonl = function(p) return p:match('%.jsonl$') or p:match('%.json$') or p:match('%.jsonl%.gz$') or p:match('%.json%.gz$') end
local field = o.field
local source
local okp, paths = pcall(files.expand, o.data, nil, 'finetune --data', 1)
if not okp then fail(tostring(paths)) end
if is_jsonl(paths[1]) then
  field = field or 'answers.text'
  source = data.jsonl(paths, { fields = { field }, progress = false })
else
  field = field or 'text'
  source = data.text(paths)
end
if o.limit > 0 then source = source:take(o.limit) end
local texts = {}
local okr, err = pcall(function()
  for rec in source do
    local v = rec[field]
    if type(v) == 'table' then
      for i = 1, #v do
        if type(v[i]) ~= 'string' then
          error(('record %d: %s[%d] is a %s, not a string'):format(#texts + 1, field, i, type(v[i])), 0)
        end
      end
      v = table.concat(v, ' ')
    end
    if type(v) ~= 'string' then error(('record %d: %s is a %s, not text'):format(#texts + 1, field, type(v)), 0) end
    texts[#texts + 1] = v
  end
end)
if not okr then fail(tostring(err)) end
if #texts < 2 then fail(('%s gave %d records with a %s field; a train and a test split need 2 or more'):format(o.data, #texts, field)) end

-- a shuffled split, test_size of the records held out (rounded up, as
-- datasets' train_test_split does)
local order, r = {}, rng.new(o.seed)
for i = 1, #texts do order[i] = i end
for i = #order, 2, -1 do
  local j = r:below(i) + 1
  order[i], order[j] = order[j], order[i]
end
local n_test = math.ceil(o.test_size * #texts)
local split = { train = {}, test = {} }
for k, i in ipairs(order) do table.insert(k <= n_test and split.test or split.train, texts[i]) end
print(('corpus %s (%s): %d records, %d train, %d test'):format(o.data, field, #texts, #split.train, #split.test))

-- 3. tokenize and group_texts
local blocks = {}
for _, name in ipairs({ 'train', 'test' }) do
  local s = data.from(split[name]):tokenize(tok):group_texts(o.block_size)
  blocks[name] = s:collect()
  print(name .. ': ' .. s:report():gsub('\n', '; '))
  if #blocks[name] == 0 then fail(('the %s split has no tokens to train or evaluate on'):format(name)) end
end

-- DataCollatorForLanguageModeling(mlm=False): blocks stacked, short ones
-- padded with pad; labels = input_ids with every pad id set to -100 (the
-- collator ignores eos too, since pad is eos)
local function collate(list)
  local B, T = #list, 0
  for _, b in ipairs(list) do T = math.max(T, #b.input_ids) end
  local ids, labels, mask, padded = {}, {}, {}, false
  for i, b in ipairs(list) do
    local row = b.input_ids
    for t = 1, T do
      local id = row[t]
      local k = (i - 1) * T + t
      if id == nil then padded = true end
      ids[k] = id or pad
      labels[k] = (id == nil or id == pad) and -100 or id
      mask[k] = id == nil and 0 or 1
    end
  end
  local batch = { input_ids = tide.tensor(ids, { dtype = 'i64' }):reshape(B, T),
                  labels = tide.tensor(labels, { dtype = 'i64' }):reshape(B, T) }
  if padded then batch.attention_mask = tide.tensor(mask, { dtype = 'i64' }):reshape(B, T) end
  return batch
end

local function batches_of(list, B, order_)
  local out = {}
  for first = 1, #list, B do
    local chunk = {}
    for k = first, math.min(first + B - 1, #list) do chunk[#chunk + 1] = list[order_ and order_[k] or k] end
    out[#out + 1] = collate(chunk)
  end
  return out
end

-- the training batches: a new shuffle of the blocks every epoch (the
-- Trainer's RandomSampler), the same for a seed; state() lets checkpoints
-- resume mid-epoch
local loader = { batch_size = o.per_device_train_batch_size, _epoch = 0, _index = 0 }
local n_train_batches = math.ceil(#blocks.train / loader.batch_size)
function loader:num_batches() return n_train_batches end
function loader:_shuffle()
  local ord, g = {}, rng.derive(o.seed, self._epoch)
  for i = 1, #blocks.train do ord[i] = i end
  for i = #ord, 2, -1 do
    local j = g:below(i) + 1
    ord[i], ord[j] = ord[j], ord[i]
  end
  self._batches = batches_of(blocks.train, self.batch_size, ord)
end
function loader:next()
  if not self._batches then self:_shuffle() end
  if self._index >= #self._batches then
    self._epoch, self._index = self._epoch + 1, 0
    self:_shuffle()
  end
  self._index = self._index + 1
  return self._batches[self._index]
end
function loader:reset() self._epoch, self._index, self._batches = 0, 0, nil end
function loader:state() return { epoch = self._epoch, index = self._index } end
function loader:set_state(st) self._epoch, self._index = st.epoch, st.index; self:_shuffle() end
local eval_batches = batches_of(blocks.test, o.per_device_eval_batch_size)

-- the model's loss on a batch: the mean shifted cross-entropy over labels
-- other than -100, as GPT2LMHeadModel computes it
local function compute_loss(m, batch)
  return m(batch.input_ids:to(o.device), { labels = batch.labels:to(o.device),
           attention_mask = batch.attention_mask and batch.attention_mask:to(o.device) }).loss
end

-- Trainer.evaluate's eval_loss: each batch's loss weighted by its examples
local function eval_loss()
  local total, n = 0, 0
  local was = model.training
  model:eval()
  tide.no_grad(function()
    for _, b in ipairs(eval_batches) do
      local rows = b.input_ids:size(1)
      total = total + compute_loss(model, b):item() * rows
      n = n + rows
    end
  end)
  model:train(was)
  return total / n
end

-- 4. train
if files.exists(o.output_dir .. '/checkpoints') or files.exists(o.output_dir .. '/metrics.jsonl') then
  if not o.overwrite then fail(o.output_dir .. ' holds a run already: pass --overwrite to start it over') end
  for _, name in ipairs({ 'checkpoints', 'metrics.jsonl', 'tb', 'plot.svg' }) do files.remove_tree(o.output_dir .. '/' .. name) end
end
model:to(o.device)
local before = eval_loss()
print(('Perplexity before: %.2f (eval_loss %.4f)'):format(math.exp(before), before))

local steps_per_epoch = math.max(1, math.floor(n_train_batches / o.gradient_accumulation_steps))
local trainer = train.Trainer{
  model = model, train = loader, eval = eval_batches, tokenizer = tok, compute_loss = compute_loss,
  args = {
    output_dir = o.output_dir, learning_rate = o.learning_rate, weight_decay = o.weight_decay,
    num_train_epochs = o.num_train_epochs, max_steps = o.max_steps,
    per_device_train_batch_size = o.per_device_train_batch_size,
    gradient_accumulation_steps = o.gradient_accumulation_steps, lr_scheduler_type = o.lr_scheduler_type,
    warmup_steps = o.warmup_steps, max_grad_norm = o.max_grad_norm, logging_steps = o.logging_steps,
    save_steps = o.save_steps, save_total_limit = o.save_total_limit, seed = o.seed, device = o.device,
    eval_steps = steps_per_epoch,  -- eval_strategy="epoch"
  },
}
local okt, res = pcall(trainer.train, trainer)
if not okt then fail(tostring(res)) end

-- 5. the guide's perplexity
local after = eval_loss()
print(('Perplexity: %.2f (eval_loss %.4f, %d steps)'):format(math.exp(after), after, res.step))

-- 6. the model and tokenizer, as trainer.save_model and
-- tokenizer.save_pretrained write them (each file replaced atomically)
local oks, serr = pcall(function()
  model:save_pretrained(o.output_dir)
  tok:save(o.output_dir)
end)
if not oks then fail('saving the model: ' .. tostring(serr)) end
print(('saved the model and tokenizer to %s'):format(o.output_dir))

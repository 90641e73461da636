-- Train a GPT-2 from scratch on the Feynman lectures and let it complete
-- "The equations of motion are": the "LLMs 101: training an LLM from
-- scratch" tutorial (seeds/llms-101-gpt2-from-scratch.txt) in tide.
--   1. the data: a Parquet file with the dataset's 7 columns, of which
--      section_text is read (pd.read_parquet), and its size in words;
--   2. the sections split at sentence ends, as the tutorial's
--      df["section_text"].str.split(".") and explode do (tide.data.
--      split_sentences: the punctuation stays, empty pieces go), and the
--      first --rows pieces kept (its .iloc[0:1000]);
--   3. GPT-2's tokenizer (data/gpt2), truncation at the context length, pad =
--      eos; labels = input_ids, padding ignored;
--   4. GPT2LMHeadModel from a GPT2Config (small by default so that it trains
--      in minutes on 2 cores; --n_embd=768 --n_layer=12 --n_head=12
--      --n_positions=1024 is GPT2Config()'s), trained by tide.train.Trainer
--      with the tutorial's TrainingArguments (batch 8, 5 epochs, a checkpoint
--      every epoch), then saved with its tokenizer as a Hugging Face
--      directory;
--   5. pipeline("text-generation")("The equations of motion are",
--      max_length=50, do_sample=True, temperature=1.0).
--
--   tide recipes/feynman.lua [--data=FILE.parquet] [--key=value ...]
--
-- Options (defaults in brackets):
--   --data=tests/data/feynman/feynman_tiny.parquet   .parquet files (a
--                              path, glob or directory), or .jsonl with the
--                              same section_text field; the tutorial's file
--                              is train-00000-of-00001-d61a336a5c880eb1.parquet
--                              from enesxgrahovac/the-feynman-lectures-on-physics
--   --column=section_text      the column holding the text
--   --max_chars=0              0: every sentence its own row (the tutorial);
--                              N: sections up to N characters kept whole,
--                              longer ones cut into runs of whole sentences
--   --rows=1000                rows trained on (0: all)
--   --tokenizer=data/gpt2      GPT-2's tokenizer (a directory or a Hub name)
--   --n_positions=128  --n_embd=64  --n_layer=2  --n_head=2   the GPT2Config
--                              (the context length is also the truncation)
--   --output_dir=gpt2_pretrained   checkpoints/, metrics.jsonl, tb/, plot.svg,
--                              the final model and tokenizer
--   --overwrite                start over in an output_dir that holds a run
--   --per_device_train_batch_size=8  --num_train_epochs=5  --max_steps=-1
--   --learning_rate=5e-4  (TrainingArguments' 5e-5 learns too slowly for a
--                              model this small in minutes)
--   --weight_decay=0.0  --warmup_steps=0  --lr_scheduler_type=linear
--   --logging_steps=25  --seed=42  --device=cpu
--   --prompt="The equations of motion are"  --max_length=50  --do_sample=true
--   --temperature=1.0          the generation
--
-- Exits 1 with a message on bad options or inputs.
local args = tide.args
local data, train = tide.data, tide.train
local files = require 'tide.data.files'
local rng = require 'tide.data.rng'

local function fail(msg)
  io.stderr:write('feynman: ', msg, '\n')
  os.exit(1, true)
end

local defaults = {
  data = 'tests/data/feynman/feynman_tiny.parquet', column = 'section_text', max_chars = 0, rows = 1000,
  tokenizer = 'data/gpt2', n_positions = 128, n_embd = 64, n_layer = 2, n_head = 2,
  output_dir = 'gpt2_pretrained', overwrite = false, per_device_train_batch_size = 8, num_train_epochs = 5,
  max_steps = -1, learning_rate = 5e-4, weight_decay = 0.0, warmup_steps = 0, lr_scheduler_type = 'linear',
  logging_steps = 25, seed = 42, device = 'cpu',
  prompt = 'The equations of motion are', max_length = 50, do_sample = true, temperature = 1.0,
}
local o = {}
for k in pairs(args) do
  if defaults[k] == nil then fail(('unknown option --%s (the header of recipes/feynman.lua lists them)'):format(k)) end
end
for k, v in pairs(defaults) do
  if args[k] == nil then o[k] = v else o[k] = args[k] end
end
for _, k in ipairs({ 'max_chars', 'rows', 'seed' }) do
  if type(o[k]) ~= 'number' or o[k] % 1 ~= 0 or o[k] < 0 then fail(('--%s must be an integer >= 0, got %s'):format(k, tostring(o[k]))) end
end
for _, k in ipairs({ 'n_positions', 'n_embd', 'n_layer', 'n_head', 'per_device_train_batch_size', 'logging_steps', 'max_length' }) do
  if type(o[k]) ~= 'number' or o[k] % 1 ~= 0 or o[k] < 1 then fail(('--%s must be an integer >= 1, got %s'):format(k, tostring(o[k]))) end
end
for _, k in ipairs({ 'learning_rate', 'weight_decay', 'num_train_epochs', 'temperature' }) do
  if type(o[k]) ~= 'number' or o[k] < 0 then fail(('--%s must be a number >= 0, got %s'):format(k, tostring(o[k]))) end
end
for _, k in ipairs({ 'data', 'column', 'tokenizer', 'output_dir', 'prompt' }) do
  if type(o[k]) ~= 'string' or o[k] == '' then fail(('--%s must be a non-empty string'):format(k)) end
end
tide.manual_seed(o.seed)

-- 1. the sections
local okp, paths = pcall(files.expand, o.data, nil, 'feynman --data', 1)
if not okp then fail(tostring(paths)) end
local source
if paths[1]:match('%.parquet$') then
  if not data.parquet then fail('this build of tide has no Parquet reader (tide.data.parquet); give --data=FILE.jsonl') end
  local ok, s = pcall(data.parquet, paths, { columns = { o.column } })
  if not ok then fail(tostring(s)) end
  source = s
elseif paths[1]:match('%.jsonl$') or paths[1]:match('%.jsonl%.gz$') then
  source = data.jsonl(paths, { fields = { o.column }, progress = false })
else
  fail(paths[1] .. ': expected .parquet (or .jsonl) files')
end
local sections, words = {}, 0
local okr, rerr = pcall(function()
  for rec in source do
    local t = rec[o.column]
    if t ~= nil then  -- a null section is no text, as str.split gives NaN for it
      if type(t) ~= 'string' then error(('row %d: %s is a %s, not text'):format(#sections + 1, o.column, type(t)), 0) end
      sections[#sections + 1] = t
      for _ in t:gmatch('%S+') do words = words + 1 end
    end
  end
end)
if not okr then fail(tostring(rerr)) end
print(('%s: %d sections; Text size: %d words'):format(o.data, #sections, words))

-- 2. sentences, the first --rows of them
local pieces = data.from(sections):split_sentences(o.max_chars > 0 and o.max_chars or nil)
if o.rows > 0 then pieces = pieces:take(o.rows) end
local texts = pieces:collect()
if #texts == 0 then fail(o.data .. ' holds no text in ' .. o.column) end

-- 3. tokenized, truncated at the context length
local okt, tok = pcall(tide.tokenizer.load, o.tokenizer)
if not okt then fail(tostring(tok)) end
local pad = tok.eos_id  -- tokenizer.pad_token = tokenizer.eos_token
if not pad then fail(o.tokenizer .. ': the tokenizer has no <|endoftext|> to pad with') end
local seqs, truncated, tokens = {}, 0, 0
for ids in data.from(texts):tokenize(tok) do
  if #ids > o.n_positions then
    truncated = truncated + 1
    for k = #ids, o.n_positions + 1, -1 do ids[k] = nil end
  end
  if #ids > 0 then
    seqs[#seqs + 1] = ids
    tokens = tokens + #ids
  end
end
print(('%d rows, %d tokens (%d rows truncated at %d tokens)'):format(#seqs, tokens, truncated, o.n_positions))

-- batches padded to their longest row with pad; labels -100 on the padding
local function collate(list)
  local B, T = #list, 0
  for _, ids in ipairs(list) do T = math.max(T, #ids) end
  local ids, labels, mask, padded = {}, {}, {}, false
  for i, row in ipairs(list) do
    for t = 1, T do
      local id, k = row[t], (i - 1) * T + t
      if id == nil then padded = true end
      ids[k], labels[k], mask[k] = id or pad, id or -100, id and 1 or 0
    end
  end
  local b = { input_ids = tide.tensor(ids, { dtype = 'i64' }):reshape(B, T),
              labels = tide.tensor(labels, { dtype = 'i64' }):reshape(B, T) }
  if padded then b.attention_mask = tide.tensor(mask, { dtype = 'i64' }):reshape(B, T) end
  return b
end

-- a new shuffle every epoch (the Trainer's RandomSampler), fixed by the seed
local B = o.per_device_train_batch_size
local loader = { batch_size = B, _epoch = 0, _index = 0 }
local n_batches = math.ceil(#seqs / B)
function loader:num_batches() return n_batches end
function loader:_shuffle()
  local ord, g = {}, rng.derive(o.seed, self._epoch)
  for i = 1, #seqs do ord[i] = i end
  for i = #ord, 2, -1 do
    local j = g:below(i) + 1
    ord[i], ord[j] = ord[j], ord[i]
  end
  self._order = ord
end
function loader:next()
  if not self._order then self:_shuffle() end
  if self._index >= n_batches then
    self._epoch, self._index = self._epoch + 1, 0
    self:_shuffle()
  end
  local first = self._index * B
  self._index = self._index + 1
  local list = {}
  for k = first + 1, math.min(first + B, #seqs) do list[#list + 1] = seqs[self._order[k]] end
  return collate(list)
end
function loader:reset() self._epoch, self._index, self._order = 0, 0, nil end
function loader:state() return { epoch = self._epoch, index = self._index } end
function loader:set_state(st) self._epoch, self._index = st.epoch, st.index; self:_shuffle() end

-- 4. GPT-2 from its config, trained
local okc, model = pcall(tide.gpt2.new, { vocab_size = tok:vocab_size(), n_positions = o.n_positions, n_embd = o.n_embd,
                                          n_layer = o.n_layer, n_head = o.n_head, bos_token_id = pad, eos_token_id = pad })
if not okc then fail(tostring(model)) end
print(('GPT-2 from config: %d parameters (n_embd %d, %d layers, %d heads, %d positions)')
  :format(tide.gpt2.num_parameters(model.config), o.n_embd, o.n_layer, o.n_head, o.n_positions))

if files.exists(o.output_dir .. '/checkpoints') or files.exists(o.output_dir .. '/metrics.jsonl') then
  if not o.overwrite then fail(o.output_dir .. ' holds a run already: pass --overwrite to start it over') end
  for _, name in ipairs({ 'checkpoints', 'metrics.jsonl', 'tb', 'plot.svg' }) do files.remove_tree(o.output_dir .. '/' .. name) end
end

local function compute_loss(m, b)
  return m(b.input_ids:to(o.device), { labels = b.labels:to(o.device),
           attention_mask = b.attention_mask and b.attention_mask:to(o.device) }).loss
end
local trainer = train.Trainer{
  model = model, train = loader, tokenizer = tok, compute_loss = compute_loss,
  args = {
    output_dir = o.output_dir, per_device_train_batch_size = B, num_train_epochs = o.num_train_epochs,
    max_steps = o.max_steps, learning_rate = o.learning_rate, weight_decay = o.weight_decay,
    warmup_steps = o.warmup_steps, lr_scheduler_type = o.lr_scheduler_type, logging_steps = o.logging_steps,
    save_steps = n_batches,  -- save_strategy="epoch"
    seed = o.seed, device = o.device,
  },
}
local okf, res = pcall(trainer.train, trainer)
if not okf then fail(tostring(res)) end
print(('trained %d steps; last loss %.4f'):format(res.step, res.loss or 0 / 0))

-- the trained model and its tokenizer (trainer.save_model, tokenizer.save_pretrained)
local oks, serr = pcall(function()
  model:save_pretrained(o.output_dir)
  tok:save(o.output_dir)
end)
if not oks then fail('saving the model: ' .. tostring(serr)) end
print('saved the model and tokenizer to ' .. o.output_dir)

-- 5. the tutorial's generation
model:eval()
local gen = tide.pipeline('text-generation', { model = model, tokenizer = tok }, { device = o.device })
local okg, out = pcall(gen, o.prompt, { max_length = o.max_length, do_sample = o.do_sample,
                                        temperature = o.temperature, seed = o.seed })
if not okg then fail(tostring(out)) end
print('--- generated ---')
print(out[1].generated_text)

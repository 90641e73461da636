-- GPT-2 against PyTorch + transformers: the golden files in tests/ref/gpt2_tiny
-- (made by tests/ref/make_gpt2_golden.py) hold a random GPT-2 saved by
-- save_pretrained, batches, and what transformers computed from them.
-- Tensors are compared as wholes: max|tide - ref| / max|ref| (tests/ref/README.md).
local T = require 'tide.testing'

local dir = 'tests/ref/gpt2_tiny/'
local load = tide.io.load_safetensors

local function rel_err(a, b)
  local scale = b:abs():max():item()
  if scale == 0 then scale = 1 end
  return (a:to('f64') - b:to('f64')):abs():max():item() / scale
end

local function expect_close(name, a, b, tol)
  local e = rel_err(a, b)
  if not (e <= tol) then error(('%s: relative error %.3g exceeds %.0e'):format(name, e, tol), 2) end
end

local function grads_match(model, ref, tol, what)
  local n = 0
  for _, p in ipairs(model:named_parameters()) do
    local r = ref[p[1]]
    T.truthy(r ~= nil, 'no reference gradient for ' .. p[1])
    T.truthy(p[2].grad ~= nil, 'no gradient for ' .. p[1])
    expect_close(what .. ' ' .. p[1], p[2].grad, r, tol)
    n = n + 1
  end
  T.eq(n, 28)
end

T.test('logits, loss and every gradient match transformers', function()
  local model = tide.gpt2.from_pretrained(dir .. 'model')
  T.eq(model:num_parameters(), 134912)
  local inp, ref = load(dir .. 'inputs.safetensors'), load(dir .. 'outputs.safetensors')
  local out = model(inp.input_ids, { labels = inp.input_ids })
  expect_close('logits', out.logits, ref.logits, 1e-5)
  expect_close('loss', out.loss, ref.loss, 1e-5)
  out.loss:backward()
  grads_match(model, ref, 1e-4, 'gradient of')
  -- the second batch has -100 labels, which the loss skips
  local out2 = model(inp.input_ids_2, { labels = inp.labels_2 })
  expect_close('logits_2', out2.logits, ref.logits_2, 1e-5)
  expect_close('loss_2', out2.loss, ref.loss_2, 1e-5)
end)

T.test('gradient accumulation over two half-weighted batches', function()
  local model = tide.gpt2.from_pretrained(dir .. 'model')
  local inp, ref = load(dir .. 'inputs.safetensors'), load(dir .. 'accum.safetensors')
  local l1 = model(inp.input_ids, { labels = inp.input_ids }).loss
  ;(l1 / 2):backward()
  local l2 = model(inp.input_ids_2, { labels = inp.labels_2 }).loss
  ;(l2 / 2):backward()
  grads_match(model, ref, 1e-4, 'accumulated gradient of')
end)

T.test('the keytoken-weighted loss and its gradients match the course code', function()
  local model = tide.gpt2.from_pretrained(dir .. 'model')
  local inp, ref = load(dir .. 'inputs.safetensors'), load(dir .. 'keytoken.safetensors')
  local ids = ref.keytoken_ids:tolist()
  local loss = tide.losses.keytoken_weighted_loss(inp.input_ids, model(inp.input_ids).logits, ids, 1.0)
  expect_close('keytoken loss', loss, ref.loss, 1e-5)
  loss:backward()
  grads_match(model, ref, 1e-4, 'keytoken gradient of')
end)

T.test('five AdamW steps with clipping and a cosine schedule match torch', function()
  if tide.optim == nil then T.skip('tide.optim is not built yet') end
  local model = tide.gpt2.from_pretrained(dir .. 'model')
  local inp, ref = load(dir .. 'inputs.safetensors'), load(dir .. 'train.safetensors')
  local opt = tide.optim.AdamW(tide.optim.grouped_params(model, 0.1), { lr = 5e-4, betas = { 0.9, 0.95 }, eps = 1e-8 })
  local sched = tide.optim.get_scheduler('cosine', opt, { num_warmup_steps = 2, num_training_steps = 5 })
  local losses, norms, lrs = ref.losses:tolist(), ref.grad_norms:tolist(), ref.lrs:tolist()
  for step = 1, 5 do
    opt:zero_grad()
    local out = model(inp.input_ids, { labels = inp.input_ids })
    T.close(out.loss:item(), losses[step], { rtol = 1e-5, atol = 0 }, 'loss before step ' .. (step - 1))
    out.loss:backward()
    local norm = tide.optim.clip_grad_norm(model:parameters(), 1.0)
    T.close(norm, norms[step], { rtol = 1e-5, atol = 0 }, 'grad norm at step ' .. (step - 1))
    T.close(opt.param_groups[1].lr, lrs[step], { rtol = 1e-12, atol = 1e-15 }, 'lr at step ' .. (step - 1))
    opt:step()
    sched:step()
  end
  local final = tide.no_grad(function() return model(inp.input_ids, { labels = inp.input_ids }).loss:item() end)
  T.close(final, losses[6], { rtol = 1e-5, atol = 0 }, 'loss after 5 steps')
  for _, p in ipairs(model:named_parameters()) do
    T.close(p[2], ref[p[1]], { rtol = 0, atol = 1e-5 }, p[1] .. ' after 5 steps')
  end
end)

T.test('save_pretrained writes what from_pretrained reads back exactly', function()
  tide.manual_seed(9)
  local model = tide.gpt2.new({ vocab_size = 97, n_positions = 16, n_embd = 24, n_layer = 2, n_head = 4 })
  local tmp = os.tmpname()
  os.remove(tmp)
  model:save_pretrained(tmp)
  local st, names, meta = load(tmp .. '/model.safetensors')
  T.eq(meta.format, 'pt')
  T.eq(st['lm_head.weight'], nil)
  T.truthy(st['transformer.h.1.mlp.c_fc.weight'] ~= nil)
  local cfg = tide.json.read_file(tmp .. '/config.json')
  T.eq(cfg.model_type, 'gpt2')
  T.eq(cfg.n_layer, 2)
  local back = tide.gpt2.from_pretrained(tmp)
  local ids = tide.randint(0, 97, { 2, 10 })
  model:eval()
  back:eval()
  T.close(back(ids).logits, model(ids).logits, { rtol = 0, atol = 0 })
  os.execute("rm -rf '" .. tmp .. "'")
end)

T.test('from_pretrained: names without the transformer. prefix, and clear errors', function()
  local st, names = load(dir .. 'model/model.safetensors')
  local tmp = os.tmpname()
  os.remove(tmp)
  os.execute("mkdir -p '" .. tmp .. "'")
  local bare = {}
  for _, n in ipairs(names) do bare[#bare + 1] = { n:gsub('^transformer%.', ''), st[n] } end
  tide.io.save_safetensors(tmp .. '/model.safetensors', bare, { format = 'pt' })
  local f = io.open(dir .. 'model/config.json')
  local cfg_text = f:read('*a')
  f:close()
  f = io.open(tmp .. '/config.json', 'w')
  f:write(cfg_text)
  f:close()
  local a = tide.gpt2.from_pretrained(tmp)
  local b = tide.gpt2.from_pretrained(dir .. 'model')
  T.close(a.transformer.h[2].attn.c_proj.weight, b.transformer.h[2].attn.c_proj.weight, { rtol = 0, atol = 0 })
  -- a missing tensor is named
  table.remove(bare, 3)
  tide.io.save_safetensors(tmp .. '/model.safetensors', bare, { format = 'pt' })
  T.raises(function() tide.gpt2.from_pretrained(tmp) end, 'lacks 1 parameters')
  T.raises(function() tide.gpt2.from_pretrained(tmp .. '/nowhere') end, 'cannot open ' .. tmp .. '/nowhere/config.json')
  -- '' would read /config.json, a NUL would cut the path short
  T.raises(function() tide.gpt2.from_pretrained('') end, 'from_pretrained: the path is empty')
  T.raises(function() tide.gpt2.from_pretrained(tmp .. '\0x') end, 'holds a NUL byte')
  T.raises(function() tide.tokenizer.load('') end, 'tokenizer.load: the path is empty')
  T.raises(function() a:save_pretrained('') end, 'save_pretrained: bad directory path ""')
  T.raises(function() a:save_pretrained(tmp .. '\0x') end, 'save_pretrained: bad directory path')
  os.execute("rm -rf '" .. tmp .. "'")
end)

-- A directory holding the golden model's files, config.json replaced by the
-- text `cfg` (a table is written as JSON) and tensors changed by `edit`.
local function model_dir(cfg, edit)
  local tmp = os.tmpname()
  os.remove(tmp)
  os.execute("mkdir -p '" .. tmp .. "'")
  local st, names = load(dir .. 'model/model.safetensors')
  local list = {}
  for _, n in ipairs(names) do list[#list + 1] = { n, st[n] } end
  if edit then edit(list) end
  tide.io.save_safetensors(tmp .. '/model.safetensors', list, { format = 'pt' })
  local text = cfg
  if type(cfg) == 'table' or cfg == nil then
    local c = tide.json.read_file(dir .. 'model/config.json')
    for k, v in pairs(cfg or {}) do c[k] = v end
    text = tide.json.encode(c)
  end
  local f = io.open(tmp .. '/config.json', 'w')
  f:write(text)
  f:close()
  return tmp
end

local function set_tensor(name, fn)
  return function(list)
    for _, p in ipairs(list) do if p[1] == name then p[2] = fn(p[2]) end end
  end
end

T.test('from_pretrained checks config.json and the header before building the model', function()
  local made = {}
  local function try(cfg, edit, want)
    local d = model_dir(cfg, edit)
    made[#made + 1] = d
    return T.raises(function() tide.gpt2.from_pretrained(d) end, want), d
  end
  -- a million layers beside a 2-layer file: refused at once, naming the field and the file
  local t0 = os.clock()
  local err, d = try({ n_layer = 1000000 }, nil, 'config.json says n_layer = 1000000, but ')
  T.truthy(err:find(d .. '/model.safetensors holds 2 layers (transformer.h.0 to h.1)', 1, true), err)
  T.truthy(os.clock() - t0 < 5, 'the mismatch is found from the header, without building the model')
  -- shapes: the tensor, its shape, the fields and the shape they need
  err = try({ n_embd = 128, n_head = 4 }, nil, 'model.safetensors: tensor transformer.wte.weight has shape [512, 64], but ')
  T.truthy(err:find('(vocab_size, n_embd) needs [512, 128]', 1, true), err)
  try({ n_positions = 64 }, nil, 'tensor transformer.wpe.weight has shape [32, 64], but')
  local od = model_dir(nil)
  made[#made + 1] = od
  T.raises(function() tide.gpt2.from_pretrained(od, { n_layer = 3 }) end,
    od .. '/config.json with the overrides given says n_layer = 3, but ')
  T.eq(tide.gpt2.from_pretrained(od, { attn_pdrop = 0.5 }).config.attn_pdrop, 0.5)
  try({ n_inner = 100 }, nil, 'tensor transformer.h.0.mlp.c_fc.weight has shape [64, 256], but')
  -- config.json that is not an object
  for text, what in pairs { ['5'] = 'a number', ['"gpt2"'] = 'a string', ['[1, 2]'] = 'an array', ['null'] = 'null' } do
    try(text, nil, 'config.json must hold a JSON object of config fields, got ' .. what)
  end
  -- each field's type and range, naming the file and the field
  for _, case in ipairs {
    { { bos_token_id = 'x' }, 'bos_token_id must be an integer from 0 to 2147483647, got "x"' },
    { { eos_token_id = -1 }, 'eos_token_id must be an integer from 0 to 2147483647, got -1' },
    { { layer_norm_epsilon = 'x' }, 'layer_norm_epsilon must be a finite number >= 0, got "x"' },
    { { layer_norm_epsilon = -1 }, 'layer_norm_epsilon must be a finite number >= 0, got -1' },
    { { n_layer = 2.5 }, 'n_layer must be an integer from 1 to 2147483647, got 2.5' },
    { { n_head = 'four' }, 'n_head must be an integer from 1 to 2147483647, got "four"' },
    { { vocab_size = tide.json.array({ 512 }) }, 'vocab_size must be an integer from 1 to 2147483647, got an array' },
    { { attn_pdrop = 1.5 }, 'attn_pdrop must be a probability in [0, 1), got 1.5' },
    { { tie_word_embeddings = 'yes' }, 'tie_word_embeddings must be true or false, got "yes"' },
    { { scale_attn_weights = 1 }, 'scale_attn_weights must be true or false, got 1' },
    { { activation_function = 5 }, 'activation_function must be a string, got 5' },
    { { activation_function = 'relu' }, 'activation_function "relu" is not supported' },
    { { model_type = 'llama' }, 'model_type is "llama"; tide loads gpt2 models' },
  } do
    local e, dd = try(case[1], nil, case[2])
    T.truthy(e:find('from_pretrained: ' .. dd .. '/config.json', 1, true), e)
  end
  -- dtypes: integers are refused naming the tensor; half types are converted
  try(nil, set_tensor('transformer.ln_f.weight', function(t) return t:to('i32') end),
    'model.safetensors: tensor transformer.ln_f.weight is i32; the model needs a floating-point tensor')
  try(nil, set_tensor('transformer.h.1.attn.c_attn.bias', function(t) return t:to('u8') end), 'tensor transformer.h.1.attn.c_attn.bias is u8')
  local hd = model_dir(nil, set_tensor('transformer.wte.weight', function(t) return t:to('bf16') end))
  made[#made + 1] = hd
  local m = tide.gpt2.from_pretrained(hd)
  T.eq(m.transformer.wte.weight:dtype(), 'f32')
  local ref = tide.gpt2.from_pretrained(dir .. 'model')
  T.close(m.transformer.wte.weight, ref.transformer.wte.weight:to('bf16'):to('f32'), { rtol = 0, atol = 0 })
  -- the same parameter twice (with and without the prefix)
  try(nil, function(list) list[#list + 1] = { 'ln_f.bias', list[1][2] } end, 'holds both')
  -- an extra layer in the file
  try(nil, function(list) list[#list + 1] = { 'transformer.h.2.ln_1.weight', tide.ones(64) } end,
    'says n_layer = 2, but ')
  for _, x in ipairs(made) do os.execute("rm -rf '" .. x .. "'") end
end)

T.test('gpt2.config checks fields for tables and overrides too', function()
  T.raises(function() tide.gpt2.config({ layer_norm_epsilon = 'x' }) end, 'gpt2.config: layer_norm_epsilon must be a finite number')
  T.raises(function() tide.gpt2.new('gpt2', { n_layer = 0 }) end, 'n_layer must be an integer from 1')
  T.raises(function() tide.gpt2.config({ bos_token_id = true }) end, 'bos_token_id must be an integer')
  T.eq(tide.gpt2.config({ vocab_size = 10 }).bos_token_id, 9)
  T.eq(tide.gpt2.config({ vocab_size = 10, n_inner = 7 }).n_inner, 7)
end)

T.test('parameter counts of every named config equal transformers\' (param_counts.json)', function()
  local counts = tide.json.read_file(dir .. 'param_counts.json')
  local n = 0
  for name, entry in pairs(counts) do
    if type(entry) == 'table' and entry.config and tide.gpt2.config then
      for key, c in pairs(entry) do
        local vocab = type(key) == 'string' and tonumber(key:match('^vocab_(%d+)$'))
        if vocab then
          local ok, cfg = pcall(tide.gpt2.config, name, { vocab_size = vocab })
          if ok then
            T.eq(tide.gpt2.num_parameters(cfg), c.total, name .. ' vocab ' .. vocab)
            T.eq(tide.gpt2.num_parameters(tide.gpt2.config(name, { vocab_size = vocab, tie_word_embeddings = false })),
              c.untied_total, name .. ' untied')
            n = n + 1
          end
        end
      end
    end
  end
  T.truthy(n >= 7, 'only ' .. n .. ' configurations checked')
end)

-- attention_mask -----------------------------------------------------------------------------

-- Rows of a [B, T, V] tensor at the positions where mask [B, T] is 1, as [N, V].
local function at_tokens(x, mask)
  local rows = {}
  local m = mask:to('i64')
  for b = 1, m:size(1) do
    for t = 1, m:size(2) do
      if m[b][t]:item() == 1 then rows[#rows + 1] = x:select(1, b):select(1, t):unsqueeze(1) end
    end
  end
  return tide.cat(rows, 1)
end

T.test('attention_mask: logits at tokens and the loss of a left- and right-padded batch match transformers', function()
  local model = tide.gpt2.from_pretrained(dir .. 'model')
  local g = load('tests/ref/gpt2_tiny_mask.safetensors')
  local out = model(g.input_ids, { attention_mask = g.attention_mask, labels = g.labels })
  expect_close('logits at tokens', at_tokens(out.logits, g.attention_mask), at_tokens(g.logits, g.attention_mask), 1e-5)
  expect_close('loss', out.loss, g.loss, 1e-5)
  -- explicit positions, as generate passes them for left padding
  local out2 = model(g.input_ids, { attention_mask = g.attention_mask, position_ids = g.position_ids })
  expect_close('logits with position_ids', at_tokens(out2.logits, g.attention_mask), at_tokens(g.logits_pos, g.attention_mask), 1e-5)
  -- without the mask the padded rows differ: the mask is not ignored
  local bare = model(g.input_ids).logits
  T.truthy(rel_err(at_tokens(bare, g.attention_mask), at_tokens(g.logits, g.attention_mask)) > 1e-2)
  -- a bool mask is the same, and no logits are NaN (left-pad queries see no key)
  local outb = model(g.input_ids, { attention_mask = g.attention_mask:ne(0) })
  T.close(outb.logits, out.logits, { rtol = 0, atol = 0 })
  T.eq(out.logits:ne(out.logits):sum():item(), 0)
  -- gradients flow with a mask, in the fused and the explicit (dropout) paths alike
  out.loss:backward()
  local grad = model.transformer.h[1].attn.c_attn.weight.grad:clone()
  model:zero_grad()
  model.transformer.h[1].attn.attn_pdrop, model.transformer.h[2].attn.attn_pdrop = 1e-12, 1e-12
  model:train()
  local out3 = model(g.input_ids, { attention_mask = g.attention_mask, labels = g.labels })
  expect_close('loss, explicit attention path', out3.loss, g.loss, 1e-5)
  expect_close('logits, explicit path (all positions)', out3.logits, out.logits, 1e-5)
  out3.loss:backward()
  expect_close('c_attn grad, explicit path', model.transformer.h[1].attn.c_attn.weight.grad, grad, 1e-4)
end)

T.test('the model returns one output table; bad options are errors naming them', function()
  local model = tide.gpt2.from_pretrained(dir .. 'model')
  local ids = tide.randint(0, 512, { 2, 5 })
  local out = model(ids)
  T.truthy(type(out) == 'table' and tide.is_tensor(out.logits) and out.loss == nil)
  T.same(out.logits:shape(), { 2, 5, 512 })
  T.truthy(model(ids, {}).logits ~= nil)
  T.same(model(ids:select(1, 1)).logits:shape(), { 1, 5, 512 })
  T.raises(function() model(ids, { attention_masks = tide.ones(2, 5) }) end, 'unknown option attention_masks')
  T.raises(function() model(ids, { attention_mask = tide.ones(2, 4, { dtype = 'i64' }) }) end,
    'attention_mask has shape [2, 4], expected [2, 5]')
  T.raises(function() model(ids, { attention_mask = tide.ones(2, 5) }) end, 'attention_mask must be an integer tensor, got f32')
  T.raises(function() model(ids, { attention_mask = tide.full({ 2, 5 }, 2, { dtype = 'i64' }) }) end, 'must hold 0 (padding) and 1')
  T.raises(function() model(ids, { position_ids = tide.tensor({ 0, 1, 2, 3, 32 }) }) end, 'position_ids must lie in [0, 32)')
  T.raises(function() model(ids, { labels = tide.zeros(2, 5) }) end, 'labels must be an integer tensor')
  T.raises(function() model(ids:float()) end, 'input_ids must be an integer tensor, got f32')
  T.raises(function() model(ids, 5) end, 'options must be a table')
  -- the embedding checks ids itself (no extra pass over them here)
  T.raises(function() model(tide.tensor({ { 3, 512 } })) end, 'embedding: id 512 is out of range for an embedding of 512 rows')
  T.raises(function() model(tide.zeros(1, 0, { dtype = 'i64' })) end, 'input_ids has no positions (shape [1, 0])')
  -- a mask of ones is no mask
  T.close(model(ids, { attention_mask = tide.ones(2, 5, { dtype = 'i64' }) }).logits, out.logits, { rtol = 0, atol = 0 })
end)

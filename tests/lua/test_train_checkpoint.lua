-- tide.train checkpoints: the directory layout (a Hugging Face model dir plus
-- the training state), exact round trips of the model, optimizer, scheduler,
-- generators, loader and gradients inside accumulation, `latest` and
-- keep_last, the fallback from a broken `latest`, write failures that leave
-- the previous checkpoint intact, and malformed checkpoints (every file
-- truncated or missing, JSON corrupted, other shapes), with a fuzz pass over
-- the state reader.
local T = require 'tide.testing'
local ck = require 'tide.train.checkpoint'
local json = require 'tide.json'
local files = require 'tide.data.files'
local shards = require 'tide.data.shards'

tide.set_num_threads(1)
local tmp, cleanup = T.scratch()
local counter = 0
local function fresh(name)
  counter = counter + 1
  return tmp(('%s%d'):format(name or 'run', counter))
end

local CFG = { vocab_size = 64, n_positions = 16, n_embd = 16, n_layer = 1, n_head = 2,
              resid_pdrop = 0.1, embd_pdrop = 0.1, attn_pdrop = 0.1 }

-- a model, its optimizer and scheduler, built from the same seed each time
local function setup(cfg)
  tide.manual_seed(5)
  local model = tide.gpt2.new(cfg or CFG)
  local opt = tide.optim.AdamW(tide.optim.grouped_params(model, 0.1), { lr = 1e-2, betas = { 0.9, 0.95 } })
  local sched = tide.optim.get_scheduler('cosine', opt, { num_warmup_steps = 2, num_training_steps = 20 })
  return { model = model, optimizer = opt, scheduler = sched }
end

local X = tide.tensor({ { 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15, 4, 8, 12, 63 },
                        { 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30 } }, { dtype = 'i64' })

-- one optimizer step of two micro-batches, or only the first when half
local function train_step(s, half)
  local l = s.model(X, { labels = X }).loss
  l:div(2):backward()
  if half then return l:item() end
  local l2 = s.model(X, { labels = X }).loss
  l2:div(2):backward()
  tide.optim.clip_grad_norm(s.model:parameters(), 1.0)
  s.optimizer:step()
  s.scheduler:step()
  s.optimizer:zero_grad()
  return l2:item()
end

local function bits(x) return ('%a'):format(x) end

local function write(path, s) T.write(path, s) end
local function truncate(path, n)
  local s = T.read(path)
  write(path, s:sub(1, n or math.floor(#s / 2)))
end
local function copy_tree(a, b)
  assert(os.execute(('cp -r %s %s'):format(files.quote(a), files.quote(b))) == 0)
end

T.test('a checkpoint is a Hugging Face model directory and the whole training state', function()
  local run = fresh()
  local s = setup()
  train_step(s)
  s.step, s.micro_step, s.tokens, s.elapsed = 1, 0, 64, 1.5
  s.options = { lr = 1e-2, epochs = math.huge, name = 'tiny', list = { 1, 2 } }
  s.extra = { skipped_nonfinite = 2 }
  s.tokenizer = tide.tokenizer.load('data/gpt2')
  local path = ck.save_checkpoint(run, s)
  T.eq(path, run .. '/checkpoints/step-000001')
  for _, f in ipairs { 'config.json', 'model.safetensors', 'optimizer.safetensors', 'tide_state.json',
                       'tokenizer.json' } do
    T.truthy(T.exists(path .. '/' .. f), f)
  end
  T.truthy(not T.exists(path .. '/grads.safetensors'), 'no gradients outside accumulation')
  T.eq(T.read(run .. '/checkpoints/latest'), 'step-000001\n')
  local cfg = json.read_file(path .. '/config.json')
  T.eq(cfg.model_type, 'gpt2')
  T.eq(cfg.n_embd, 16)
  -- transformers' loader and tide's own read the model part as it is
  local m = tide.gpt2.from_pretrained(path)
  m:eval()
  s.model:eval()
  T.eq(bits(m(X, { labels = X }).loss:item()), bits(s.model(X, { labels = X }).loss:item()))
  local tok = tide.tokenizer.load(path)
  T.same(tok:encode('hello world'), s.tokenizer:encode('hello world'))
  local doc = json.read_file(path .. '/tide_state.json')
  T.eq(doc.format, 'tide.train.checkpoint')
  T.eq(doc.step, 1)
  T.eq(doc.optimizer.type, 'AdamW')
  -- the info comes back, options with their infinity
  local s2 = setup()
  local info = ck.load_checkpoint(path, s2)
  T.eq(info.step, 1)
  T.eq(info.micro_step, 0)
  T.eq(info.tokens, 64)
  T.eq(info.elapsed, 1.5)
  T.eq(info.options.epochs, math.huge)
  T.eq(info.options.name, 'tiny')
  T.same(info.options.list, { 1, 2 })
  T.eq(info.extra.skipped_nonfinite, 2)
  T.eq(info.path, path)
  T.eq(info.message, nil)
end)

T.test('resuming gives the same losses bit for bit, inside accumulation too', function()
  for _, half in ipairs { false, true } do
    local run = fresh()
    local a = setup()
    local gen = tide.Generator(99)
    a.generators = { noise = gen }
    train_step(a)
    train_step(a, half)  -- inside an accumulation when half
    a.step, a.micro_step = 1, half and 1 or 0
    ck.save_checkpoint(run, a)
    local g_before = gen:get_state()
    -- the uninterrupted run goes on
    local want = {}
    if half then
      local l = a.model(X, { labels = X }).loss
      l:div(2):backward()
      tide.optim.clip_grad_norm(a.model:parameters(), 1.0)
      a.optimizer:step(); a.scheduler:step(); a.optimizer:zero_grad()
      want[#want + 1] = bits(l:item())
    end
    for _ = 1, 3 do want[#want + 1] = bits(train_step(a)) end
    want[#want + 1] = bits(tide.rand(1):item())
    -- a fresh process's objects, loaded
    local b = setup()
    local gen2 = tide.Generator(1)
    b.generators = { noise = gen2 }
    tide.manual_seed(12345)  -- anything: the checkpoint sets it
    local info = ck.load_checkpoint(run, b)
    T.eq(info.micro_step, half and 1 or 0)
    T.same(gen2:get_state(), g_before)
    local got = {}
    if half then
      T.truthy(b.model:parameters()[1].grad ~= nil, 'the accumulated gradients are restored')
      local l = b.model(X, { labels = X }).loss
      l:div(2):backward()
      tide.optim.clip_grad_norm(b.model:parameters(), 1.0)
      b.optimizer:step(); b.scheduler:step(); b.optimizer:zero_grad()
      got[#got + 1] = bits(l:item())
    else
      T.eq(b.model:parameters()[1].grad, nil)
    end
    for _ = 1, 3 do got[#got + 1] = bits(train_step(b)) end
    got[#got + 1] = bits(tide.rand(1):item())
    T.same(got, want)
    T.eq(b.scheduler:get_last_lr()[1], a.scheduler:get_last_lr()[1])
  end
end)

T.test('the loader position comes back', function()
  local run, data = fresh(), fresh('data')
  local w = shards.writer(data, { vocab_size = 64, seq_length = 16 })
  local ids = {}
  for i = 1, 16 * 20 do ids[i] = (i * 7) % 64 end
  w:write(ids)
  w:close()
  local function loader() return shards.shards(data, { batch_size = 2, shuffle = true, seed = 1, epochs = math.huge }) end
  local s = setup()
  s.loader = loader()
  for _ = 1, 13 do s.loader() end  -- into the second epoch
  s.step = 13
  ck.save_checkpoint(run, s)
  local want = s.loader():tolist()
  local s2 = setup()
  s2.loader = loader()
  ck.load_checkpoint(run, s2)
  T.same(s2.loader():tolist(), want)
end)

T.test('latest, list_checkpoints and keep_last', function()
  local run = fresh()
  local s = setup()
  T.same(ck.list_checkpoints(run), {})
  for step = 1, 12 do
    s.step = step
    if step % 2 == 0 and step <= 10 or step == 11 then ck.save_checkpoint(run, s, { keep_last = 3 }) end
  end
  local l = ck.list_checkpoints(run)
  T.same(l, { run .. '/checkpoints/step-000008', run .. '/checkpoints/step-000010', run .. '/checkpoints/step-000011' })
  -- step 12 was not saved; the last was 11
  T.eq(T.read(run .. '/checkpoints/latest'), 'step-000011\n')
  -- saving a step again replaces it whole (a mid-accumulation one after a boundary one)
  s.step, s.micro_step = 11, 1
  train_step(s, true)
  ck.save_checkpoint(run, s, { keep_last = 3 })
  T.eq(#ck.list_checkpoints(run), 3)
  local info = ck.load_checkpoint(run, setup())
  T.eq(info.micro_step, 1)
  -- no temporary directories stay behind
  for _, n in ipairs(files.list_dir(run .. '/checkpoints')) do T.truthy(not n:match('^%.'), n) end
  -- list_checkpoints sorts by step, not by name length
  s.micro_step = 0
  s.step = 1234567
  ck.save_checkpoint(run, s)
  T.eq(ck.list_checkpoints(run)[4], run .. '/checkpoints/step-1234567')
end)

T.test('a broken latest falls back to the newest intact checkpoint and says so', function()
  local run = fresh()
  local s = setup()
  for step = 1, 3 do s.step = step; ck.save_checkpoint(run, s) end
  truncate(run .. '/checkpoints/step-000003/model.safetensors')
  local info = ck.load_checkpoint(run, setup())
  T.eq(info.step, 2)
  T.truthy(info.message:find('step-000003', 1, true) and info.message:find('model.safetensors', 1, true)
    and info.message:find('step-000002', 1, true), info.message)
  -- latest naming nothing, or missing
  write(run .. '/checkpoints/latest', 'step-000009\n')
  info = ck.load_checkpoint(run, setup())
  T.eq(info.step, 2)
  T.truthy(info.message:find('no such checkpoint directory', 1, true), info.message)
  os.remove(run .. '/checkpoints/latest')
  info = ck.load_checkpoint(run, setup())
  T.eq(info.step, 2)
  T.truthy(info.message:find('latest is missing', 1, true), info.message)
  -- a checkpoint named directly does not fall back
  T.raises(function() ck.load_checkpoint(run .. '/checkpoints/step-000003', setup()) end, 'model.safetensors')
  -- nothing intact: every reason is listed
  truncate(run .. '/checkpoints/step-000002/tide_state.json')
  truncate(run .. '/checkpoints/step-000001/optimizer.safetensors')
  local err = T.raises(function() ck.load_checkpoint(run, setup()) end, 'no intact checkpoint')
  T.truthy(err:find('step-000002/tide_state.json', 1, true) and err:find('step-000001/optimizer.safetensors', 1, true), err)
end)

-- A run dir with one good checkpoint, and a function that copies it for damage.
local function damaged()
  local run = fresh()
  local s = setup()
  train_step(s)
  train_step(s, true)
  s.step, s.micro_step = 1, 1
  s.tokenizer = tide.tokenizer.load('data/gpt2')
  local good = ck.save_checkpoint(run, s)
  return function()
    local c = fresh('copy')
    copy_tree(good, c)
    return c
  end
end

T.test('malformed checkpoints: each file truncated or missing, corrupted JSON, other shapes', function()
  local copy = damaged()
  local names = files.list_dir(copy())
  T.truthy(#names >= 6, table.concat(names, ' '))
  for _, n in ipairs(names) do
    local c = copy()
    truncate(c .. '/' .. n)
    local err = T.raises(function() ck.load_checkpoint(c, setup()) end, n, 'truncated ' .. n)
    T.truthy(err:find('truncated', 1, true) or err:find('JSON', 1, true), err)
    c = copy()
    os.remove(c .. '/' .. n)
    err = T.raises(function() ck.load_checkpoint(c, setup()) end, n, 'missing ' .. n)
    T.truthy(err:find('missing', 1, true), err)
  end
  -- corrupted JSON, same size (the manifest's sizes still match)
  local c = copy()
  local s = T.read(c .. '/tide_state.json')
  write(c .. '/tide_state.json', s:gsub('"step": ', '"step"; ', 1))
  T.raises(function() ck.load_checkpoint(c, setup()) end, 'tide_state.json: not valid JSON')
  c = copy()
  s = T.read(c .. '/config.json')
  write(c .. '/config.json', '[' .. s:sub(2))
  T.raises(function() ck.load_checkpoint(c, setup()) end, 'config.json')
  -- a model of another shape
  local other = { vocab_size = 64, n_positions = 16, n_embd = 32, n_layer = 1, n_head = 2 }
  local err = T.raises(function() ck.load_checkpoint(copy(), setup(other)) end, 'model.safetensors')
  T.truthy(err:find('shape', 1, true), err)
  local deeper = { vocab_size = 64, n_positions = 16, n_embd = 16, n_layer = 2, n_head = 2 }
  err = T.raises(function() ck.load_checkpoint(copy(), setup(deeper)) end, 'model.safetensors')
  T.truthy(err:find('lacks', 1, true), err)
  -- another optimizer
  local st = setup()
  st.optimizer = tide.optim.SGD(st.model:parameters(), { lr = 0.1 })
  st.scheduler = nil
  T.raises(function() ck.load_checkpoint(copy(), st) end, 'the optimizer is AdamW, but the one given is SGD')
  -- a state from a newer tide
  c = copy()
  local doc = json.read_file(c .. '/tide_state.json')
  doc.version = 99
  json.write_file(c .. '/tide_state.json', doc)
  T.raises(function() ck.load_checkpoint(c, setup()) end, 'newer')
  -- a failed load changes nothing
  local fresh_state = setup()
  local before = fresh_state.model:parameters()[1]:clone()
  c = copy()
  truncate(c .. '/optimizer.safetensors')
  T.raises(function() ck.load_checkpoint(c, fresh_state) end, 'optimizer.safetensors')
  T.eq(bits(fresh_state.model:parameters()[1]:sum():item()), bits(before:sum():item()))
end)

T.test('fuzz: a mutated state file is refused with a message naming it, never a crash', function()
  local copy = damaged()
  local c = copy()
  local orig = T.read(c .. '/tide_state.json')
  local rnd = T.lcg(2024)
  local refused, loaded = 0, 0
  for i = 1, 300 do
    local s = orig
    local kind = i % 4
    if kind == 0 then
      s = s:sub(1, math.floor(rnd() * #s))
    elseif kind == 1 then
      for _ = 1, 1 + math.floor(rnd() * 4) do
        local p = 1 + math.floor(rnd() * #s)
        s = s:sub(1, p - 1) .. string.char(math.floor(rnd() * 256)) .. s:sub(p + 1)
      end
    elseif kind == 2 then
      -- a value replaced by one of another type
      local vals = { '-1', '1e308', '"x"', 'null', '[]', '{}', 'true', '0.5', '"18446744073709551616"' }
      local n, k = 0, 1 + math.floor(rnd() * 40)
      s = s:gsub(': ([^,{}%[%]\n]+)', function(v)
        n = n + 1
        if n == k then return ': ' .. vals[1 + math.floor(rnd() * #vals)] end
      end)
    else
      -- a line dropped
      local lines = {}
      for l in (s .. '\n'):gmatch('([^\n]*)\n') do lines[#lines + 1] = l end
      table.remove(lines, 1 + math.floor(rnd() * #lines))
      s = table.concat(lines, '\n')
    end
    write(c .. '/tide_state.json', s)
    local ok, err = pcall(ck.load_checkpoint, c, setup())
    if ok then
      loaded = loaded + 1
    else
      refused = refused + 1
      err = tostring(err)
      if not err:find('^load_checkpoint: .*/[%w_%.]+%.[a-z]+: ') then
        error(('mutation %d gave an error that names no file: %s\n%s'):format(i, err, s))
      end
    end
  end
  T.truthy(refused > 200, ('%d refused, %d loaded'):format(refused, loaded))
  -- the safetensors files' headers, bytes changed in place (sizes unchanged)
  write(c .. '/tide_state.json', orig)
  refused = 0
  for i = 1, 150 do
    local name = ({ 'model.safetensors', 'optimizer.safetensors', 'grads.safetensors' })[1 + i % 3]
    local path = c .. '/' .. name
    local keep = T.read(path)
    local s = keep
    for _ = 1, 1 + math.floor(rnd() * 3) do
      local p = 1 + math.floor(rnd() * math.min(#s, 400))
      s = s:sub(1, p - 1) .. string.char(math.floor(rnd() * 256)) .. s:sub(p + 1)
    end
    write(path, s)
    local ok, err = pcall(ck.load_checkpoint, c, setup())
    write(path, keep)
    if not ok then
      refused = refused + 1
      err = tostring(err)
      if not err:find('^load_checkpoint: .*/[%w_%.]+%.[a-z]+: ') then
        error(('mutation %d of %s gave an error that names no file: %s'):format(i, name, err))
      end
    end
  end
  T.truthy(refused > 50, ('%d of 150 header mutations refused'):format(refused))
end)

T.test('an unwritable run directory is a clear error', function()
  local f = fresh('file')
  write(f, 'a file, not a directory')
  local err = T.raises(function()
    local s = setup()
    s.step = 1
    ck.save_checkpoint(f .. '/run', s)
  end, 'save_checkpoint')
  T.truthy(err:find(f, 1, true) and err:find('Not a directory', 1, true), err)
end)

T.test('a write that fails (a full disk) leaves the previous checkpoint intact', function()
  local run = fresh()
  local s = setup()
  s.step = 1
  ck.save_checkpoint(run, s)
  local before = {}
  for _, n in ipairs(files.list_dir(run .. '/checkpoints/step-000001')) do
    before[n] = T.read(run .. '/checkpoints/step-000001/' .. n)
  end
  train_step(s)
  for _, fail_at in ipairs { 'model.safetensors', 'optimizer.safetensors', 'tide_state.json', 'rename' } do
    s.step = 2
    local err = T.raises(function()
      ck.save_checkpoint(run, s, { hook = function(stage, path)
        if stage == fail_at or path:match('[^/]*$') == fail_at then error('No space left on device') end
      end })
    end, 'No space left on device')
    T.truthy(err:find('step-000001 is intact', 1, true), err)
    T.same(ck.list_checkpoints(run), { run .. '/checkpoints/step-000001' })
    T.eq(T.read(run .. '/checkpoints/latest'), 'step-000001\n')
    for _, n in ipairs(files.list_dir(run .. '/checkpoints')) do T.truthy(not n:match('^%.'), 'left behind: ' .. n) end
    -- and step 1 itself can be written again over, failing, and stay whole
    s.step = 1
    T.raises(function()
      ck.save_checkpoint(run, s, { hook = function(stage) if stage == 'rename' then error('disk full') end end })
    end, 'disk full')
    for n, text in pairs(before) do T.eq(T.read(run .. '/checkpoints/step-000001/' .. n), text, n) end
  end
  T.eq(ck.load_checkpoint(run, setup()).step, 1)
  -- a failing `latest` leaves the new checkpoint whole and says so
  s.step = 2
  T.raises(function()
    ck.save_checkpoint(run, s, { hook = function(stage) if stage == 'latest' then error('disk full') end end })
  end, 'could not be updated')
  T.eq(ck.load_checkpoint(run, setup()).step, 1)
end)

T.test('any module with SGD momentum, and a config given', function()
  local function make()
    tide.manual_seed(8)
    local m = tide.nn.Linear(4, 3)
    return m, tide.optim.SGD(m:parameters(), { lr = 0.1, momentum = 0.9 })
  end
  local x = tide.randn(5, 4)
  local function step(m, opt)
    opt:zero_grad()
    local l = m(x):pow(2):mean()
    l:backward()
    opt:step()
    return bits(l:item())
  end
  local run = fresh()
  local m, opt = make()
  step(m, opt)
  ck.save_checkpoint(run, { step = 1, model = m, optimizer = opt, config = { kind = 'linear', n = 4 } })
  local want = { step(m, opt), step(m, opt) }
  local m2, opt2 = make()
  ck.load_checkpoint(run, { model = m2, optimizer = opt2 })
  T.same({ step(m2, opt2), step(m2, opt2) }, want)
  T.eq(json.read_file(run .. '/checkpoints/step-000001/config.json').kind, 'linear')
  -- loaded without an optimizer (weights only), and with a state that lacks one
  ck.load_checkpoint(run, { model = make() })
  local m3 = make()
  ck.save_checkpoint(run, { step = 2, model = m3 })
  T.raises(function() ck.load_checkpoint(run .. '/checkpoints/step-000002', { model = m3, optimizer = opt2 }) end,
    'saved without an optimizer')
end)

T.test('generator positions above 2^53 survive JSON', function()
  local run = fresh()
  local s = setup()
  tide.manual_seed(-5)  -- 2^64 - 5
  tide.rand(3)
  local want = tide.get_rng_state()
  s.step = 1
  ck.save_checkpoint(run, s)
  tide.manual_seed(1)
  ck.load_checkpoint(run, setup())
  local got = tide.get_rng_state()
  T.eq(tostring(got.seed), tostring(want.seed))
  T.eq(tostring(got.offset), tostring(want.offset))
  T.truthy(tostring(got.seed):find('18446744073709551611', 1, true), tostring(got.seed))
end)

T.test('bad arguments', function()
  T.raises(function() ck.save_checkpoint(nil, {}) end, 'run directory')
  T.raises(function() ck.save_checkpoint(fresh(), { model = setup().model }) end, 'state.step')
  T.raises(function() ck.save_checkpoint(fresh(), { step = 1 }) end, 'state.model')
  T.raises(function() ck.save_checkpoint(fresh(), { step = 1, model = setup().model }, { keep_last = 0 }) end, 'keep_last')
  local run = fresh()
  T.raises(function() ck.save_checkpoint(run, { step = 1, model = setup().model, options = { f = print } }) end,
    'state.options.f is a function')
  T.truthy(not T.exists(run), 'nothing is written when the state cannot be')
  T.raises(function() ck.load_checkpoint(fresh(), setup()) end, 'no such checkpoint or run directory')
  T.raises(function() ck.load_checkpoint('/nonexistent/x', setup()) end, 'no such')
end)

T.test('cleanup', function() T.truthy(cleanup()) end)

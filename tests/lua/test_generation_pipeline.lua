-- tide.pipeline('text-generation', ...) against model:generate decoded by
-- hand (greedy, sampling with a seed, num_return_sequences), batches of
-- prompts of different lengths against each prompt alone, return_full_text,
-- a saved directory, tide.generation.first_block and the errors.
local T = require 'tide.testing'
local tide = require 'tide'

local tok = tide.tokenizer.load('data/gpt2')

-- A small random GPT-2 over GPT-2's tokenizer, weights large enough for varied logits.
local function tiny()
  tide.manual_seed(3)
  local m = tide.gpt2.new({ vocab_size = tok:vocab_size(), n_positions = 64, n_embd = 16, n_layer = 2, n_head = 2 })
  tide.no_grad(function()
    for _, p in ipairs(m:named_parameters()) do
      if p[2]:dim() >= 2 then p[2]:normal_(0, 0.3) end
    end
  end)
  m:eval()
  return m
end

local model = tiny()
local gen = tide.pipeline('text-generation', { model = model, tokenizer = tok })

-- what the pipeline should give for one prompt: model:generate on its ids, the
-- new ids (eos dropped) decoded after the prompt's ids
local function by_hand(prompt, opts)
  local enc = tok:encode(prompt)
  local out = model:generate(tide.tensor({ enc }, { dtype = 'i64' }), opts):tolist()
  local prompt_text = tok:decode(enc, { errors = 'replace' })
  local res = {}
  for r, row in ipairs(out) do
    local seq = {}
    for j = 1, #enc do seq[j] = enc[j] end
    for j = #enc + 1, #row do if row[j] ~= tok.eos_id then seq[#seq + 1] = row[j] end end
    res[r] = prompt .. tok:decode(seq, { errors = 'replace' }):sub(#prompt_text + 1)
  end
  return res
end

local function texts(list)
  local t = {}
  for i, e in ipairs(list) do t[i] = e.generated_text end
  return t
end

T.test('greedy: the pipeline gives the decoded ids of model:generate', function()
  for _, prompt in ipairs({ 'def hello():', 'import numpy as np\n', 'x' }) do
    local out = gen(prompt, { max_new_tokens = 12 })
    T.eq(#out, 1)
    T.eq(type(out[1].generated_text), 'string')
    T.eq(out[1].generated_text:sub(1, #prompt), prompt)
    T.same(texts(out), by_hand(prompt, { max_new_tokens = 12 }))
  end
  -- max_length counts the prompt's tokens, as in transformers
  local p = 'def hello():'
  T.same(texts(gen(p, { max_length = 10 })), by_hand(p, { max_length = 10 }))
end)

T.test('a batch of prompts of different lengths gives what each prompt gives alone', function()
  local prompts = { 'def add(a, b):', 'x', 'import os\nimport sys\n\nclass Config:' }
  local lens = {}
  for i, p in ipairs(prompts) do lens[i] = #tok:encode(p) end
  T.truthy(lens[1] ~= lens[2] and lens[2] ~= lens[3], 'the prompts have different token counts')
  local batch = gen(prompts, { max_new_tokens = 10 })
  T.eq(#batch, 3)
  for i, p in ipairs(prompts) do
    T.eq(#batch[i], 1)
    T.same(texts(batch[i]), texts(gen(p, { max_new_tokens = 10 })), 'prompt ' .. i)
  end
end)

T.test('num_return_sequences with a seed: reproducible, as model:generate', function()
  local opts = { do_sample = true, temperature = 0.9, top_k = 40, top_p = 0.95, num_return_sequences = 3,
                 max_new_tokens = 8, seed = 7 }
  local p = 'def f(x):'
  local out = gen(p, opts)
  T.eq(#out, 3)
  T.same(texts(out), by_hand(p, opts))
  T.same(texts(gen(p, opts)), texts(out), 'same seed, same texts')
  local other = gen(p, { do_sample = true, num_return_sequences = 3, max_new_tokens = 8, seed = 8 })
  T.truthy(table.concat(texts(other), '|') ~= table.concat(texts(out), '|'), 'another seed, other texts')
  -- a list of prompts: a list of lists, num_return_sequences each
  local two = gen({ 'a = 1', 'for i in range(10):' }, opts)
  T.eq(#two, 2)
  T.eq(#two[1], 3)
  T.eq(#two[2], 3)
  T.same(texts(gen({ 'a = 1', 'for i in range(10):' }, opts)[2]), texts(two[2]))
end)

T.test('return_full_text = false gives only the completion', function()
  local p = 'def hello():'
  local full = gen(p, { max_new_tokens = 9 })[1].generated_text
  local only = gen(p, { max_new_tokens = 9, return_full_text = false })
  T.eq(#only, 1)
  T.eq(only[1].generated_text, full:sub(#p + 1))
  local batch = gen({ p, 'x' }, { max_new_tokens = 9, return_full_text = false })
  T.eq(batch[1][1].generated_text, full:sub(#p + 1))
end)

T.test('a saved directory (save_pretrained + tokenizer) loads as the pipeline', function()
  local tmp, cleanup = T.scratch()
  local dir = tmp('tiny')
  model:save_pretrained(dir)
  tok:save(dir)
  local g2 = tide.pipeline('text-generation', dir)
  local p = 'class A:'
  T.same(texts(g2(p, { max_new_tokens = 6 })), texts(gen(p, { max_new_tokens = 6 })))
  -- the tokenizer as a directory, the device option
  local g3 = tide.pipeline('text-generation', { model = tide.gpt2.from_pretrained(dir), tokenizer = dir }, { device = 'cpu' })
  T.same(texts(g3({ p, 'x' }, { max_new_tokens = 6 })[1]), texts(gen(p, { max_new_tokens = 6 })))
  cleanup()
end)

T.test('first_block cuts at the next top-level block', function()
  local fb = tide.generation.first_block
  local body = 'def f(x):\n    return x + 1\n'
  T.eq(fb(body .. '\ndef g():\n    pass'), 'def f(x):\n    return x + 1')
  T.eq(fb(body .. '\nclass A:\n    pass'), 'def f(x):\n    return x + 1')
  T.eq(fb(body .. '\nif __name__ == "__main__":\n    f(1)'), 'def f(x):\n    return x + 1')
  T.eq(fb(body .. '\n# tests\nf(2)'), 'def f(x):\n    return x + 1')
  T.eq(fb(body .. '\nprint(f(2))'), 'def f(x):\n    return x + 1')
  -- the first of several wins; nothing to cut: only trailing whitespace goes
  T.eq(fb('    return 1\n#c\ndef g(): pass\nclass B: pass'), '    return 1')
  T.eq(fb(body .. '    y = 2\n  \n'), 'def f(x):\n    return x + 1\n    y = 2')
  T.eq(fb('x = 1'), 'x = 1')
  T.eq(fb(''), '')
  -- indented blocks are not top-level; 'define' is not 'def '
  T.eq(fb('    if x:\n        pass\n    def h(): pass\ndefine = 3'), '    if x:\n        pass\n    def h(): pass\ndefine = 3')
  -- with the prompt: the prompt's own blocks stay, the completion is cut
  local prompt = '# helpers\nimport math\n\ndef area(r):\n'
  T.eq(fb(prompt .. '    return math.pi * r * r\n\ndef other(): pass', prompt), prompt .. '    return math.pi * r * r')
  T.eq(fb(prompt .. '\nprint(1)', prompt), prompt)
  T.eq(fb(prompt, prompt), prompt)
  -- on the pipeline's completions, as the CodeParrot chapter does
  local out = gen(prompt, { max_new_tokens = 12, return_full_text = false })
  local cut = fb(out[1].generated_text)
  T.eq(out[1].generated_text:sub(1, #cut), cut)
end)

T.test('clear errors', function()
  T.raises(function() return tide.pipeline('summarization', { model = model, tokenizer = tok }) end,
    "unknown task 'summarization'")
  T.raises(function() return tide.pipeline('text-generation', '/nonexistent/tide-model') end,
    'cannot load a model from "/nonexistent/tide-model"')
  T.raises(function() return tide.pipeline('text-generation', 42) end, 'expected a model directory')
  T.raises(function() return tide.pipeline('text-generation', { model = model }) end, 'tokenizer')
  T.raises(function() return tide.pipeline('text-generation', { model = model, tokenizer = tok }, { devise = 'cpu' }) end,
    "unknown option 'devise'")
  T.raises(function() return gen(42) end, 'expected a prompt string')
  T.raises(function() return gen({}) end, 'non-empty list')
  T.raises(function() return gen({ 'a', 7 }) end, 'prompt 2 is a number')
  T.raises(function() return gen('') end, 'prompt 1 is empty')
  T.raises(function() return gen('a', 5) end, 'options must be a table')
  T.raises(function() return gen('a', { max_new_tokens = 1000 }) end, 'pipeline: ')
  T.raises(function() return gen('a', { num_return_sequences = 2 }) end, 'num_return_sequences')
  T.raises(function() return gen('a', { bogus = 1 }) end, 'unknown option bogus')
  local small = tide.gpt2.new({ vocab_size = 97, n_positions = 8, n_embd = 8, n_layer = 1, n_head = 1 })
  T.raises(function() return tide.pipeline('text-generation', { model = small, tokenizer = tok }) end,
    'the tokenizer has 50257 ids but the model only 97')
  T.raises(function() return tide.generation.first_block(3) end, 'first_block: expected a string')
end)

-- Generation on cuda against the CPU: the text-generation pipeline gives the
-- same greedy text on both devices (one prompt, and a batch of prompts of
-- different lengths, left-padded under a mask), and model:generate the same
-- ids with repetition_penalty and min_new_tokens (scatter_add_, masked_fill
-- over the vocabulary on the device) and a KV cache on the device.
local T = require 'tide.testing'

local function tiny()
  tide.manual_seed(11)
  local tok = tide.tokenizer.load('data/gpt2')
  local m = tide.gpt2.new({ vocab_size = tok:vocab_size(), n_positions = 48, n_embd = 32, n_layer = 2, n_head = 4 })
  tide.no_grad(function()
    -- weights large enough for varied, well-separated logits
    for _, p in ipairs(m:named_parameters()) do
      if p[2]:dim() >= 2 then p[2]:normal_(0, 0.2) end
    end
  end)
  return m, tok
end

T.test('the text-generation pipeline gives the same greedy text on cuda as on the CPU', function()
  local dev = T.need_cuda()
  local m, tok = tiny()
  local cpu = tide.pipeline('text-generation', { model = m, tokenizer = tok })
  local want1 = cpu('def add(a, b):', { max_new_tokens = 16 })
  local want2 = cpu({ 'import numpy as', 'x = 1' }, { max_new_tokens = 12 })
  local gpu = tide.pipeline('text-generation', { model = m, tokenizer = tok }, { device = dev })
  local got1 = gpu('def add(a, b):', { max_new_tokens = 16 })
  local got2 = gpu({ 'import numpy as', 'x = 1' }, { max_new_tokens = 12 })
  T.eq(m.transformer.wte.weight.device, 'cuda:0', 'the pipeline moved the model')
  T.eq(got1[1].generated_text, want1[1].generated_text, 'one prompt')
  T.eq(#got2, 2)
  for i = 1, 2 do T.eq(got2[i][1].generated_text, want2[i][1].generated_text, 'left-padded batch, prompt ' .. i) end
end)

T.test('generate on cuda: the same ids as the CPU with repetition_penalty and min_new_tokens', function()
  local dev = T.need_cuda()
  local m = tiny()
  local ids = tide.tensor({ { 5, 900, 31, 7 }, { 1200, 3, 3, 44 } }, { dtype = 'i64' })
  local opts = { max_new_tokens = 10, repetition_penalty = 1.3, min_new_tokens = 4, eos_token_id = 50256 }
  local want = m:generate(ids, opts)
  m:to(dev)
  local got = m:generate(ids:to(dev), opts)
  T.eq(got.device, 'cuda:0', 'the result stays on the device')
  T.same(got:to('cpu'):tolist(), want:tolist())
end)

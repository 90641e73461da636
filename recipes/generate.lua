-- Complete a prompt with a trained model: the seeds' last step,
-- pipeline("text-generation", model=dir)(prompt, ...), in tide.
--
--   tide recipes/generate.lua --model=DIR [--prompt="def add(a, b):"] [--max_new_tokens=50]
--        [--do_sample=true] [--temperature=1.0] [--top_k=50] [--top_p=0.95]
--        [--repetition_penalty=1.0] [--num_return_sequences=1] [--seed=N] [--first_block]
--        [--device=cuda]
--
-- DIR is a Hugging Face model directory with its tokenizer (config.json,
-- model.safetensors, tokenizer files), such as a checkpoint of
-- recipes/codeparrot.lua (RUN/model, RUN/checkpoints/step-000200). Without
-- --prompt the prompt is read from standard input. With one sequence the
-- completion streams to the terminal as it is generated; with several, each
-- is printed whole after a `--- sequence N ---` line. --first_block cuts each
-- completion at the next top-level def/class/if/#/print, as the CodeParrot
-- chapter does. Options are transformers' generate() options (docs/generation.md).
local args = tide.args
local function fail(msg) io.stderr:write('generate: ', msg, '\n'); os.exit(1, true) end

if not args.model then fail('--model=DIR is required (a Hugging Face model directory with its tokenizer)') end
local prompt = args.prompt
if prompt == nil then prompt = io.read('*a') end
if type(prompt) ~= 'string' or prompt == '' then fail('the prompt is empty (give --prompt="..." or text on standard input)') end
prompt = tostring(prompt)

local ok, gen = pcall(tide.pipeline, 'text-generation', args.model, { device = args.device })
if not ok then fail(tostring(gen)) end

local n = args.num_return_sequences or 1
local opts = {
  max_new_tokens = args.max_new_tokens or 50, do_sample = args.do_sample, temperature = args.temperature,
  top_k = args.top_k, top_p = args.top_p, repetition_penalty = args.repetition_penalty,
  num_return_sequences = n > 1 and n or nil, seed = args.seed,
}
-- a single sequence streams: decode what has come so far and print what is new,
-- waiting while the last token ends inside a multi-byte character
local stream = n == 1 and not args.first_block
if stream then
  local tok = tide.tokenizer.load(args.model)
  local eos = tok.eos_id
  local new, shown = {}, ''
  io.write(prompt)
  opts.on_token = function(_, ids)
    local id = ids[1]:item()
    if id ~= eos then new[#new + 1] = id end
    local text = tok:decode(new, { errors = 'replace' })
    if text:sub(1, #shown) == shown and not text:find('\239\191\189', #shown + 1, true) then
      io.write(text:sub(#shown + 1))
      io.flush()
      shown = text
    end
  end
  local ok2, res = pcall(gen, prompt, opts)
  if not ok2 then io.write('\n'); fail(tostring(res)) end
  local full = res[1].generated_text
  io.write(full:sub(#prompt + #shown + 1), '\n')
  return
end

local ok2, res = pcall(gen, prompt, opts)
if not ok2 then fail(tostring(res)) end
for i, r in ipairs(res) do
  local text = r.generated_text
  if args.first_block then
    text = tide.generation.first_block(text, prompt)
  end
  if n > 1 then print(('--- sequence %d ---'):format(i)) end
  print(text)
end

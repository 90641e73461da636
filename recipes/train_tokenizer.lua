-- Train a byte-level BPE tokenizer for Python code, as the chapters'
-- tokenizer sections do (seeds/nlp-with-transformers-ch10-training-from-scratch.txt,
-- "Training a Tokenizer"; the HF course's causal-LM chapter): GPT-2's
-- tokenizer retrained with train_new_from_iterator on an iterator over the
-- corpus, saved as a tokenizer directory, then inspected as the chapter
-- inspects it: the example function's tokens and token count against
-- GPT-2's, the longest tokens, the first and the last tokens learned, which
-- Python keywords are in the vocabulary, and how indentation (runs of
-- spaces) tokenizes.
--
--   tide recipes/train_tokenizer.lua [--vocab_size=32768] [--out=runs/tokenizer-codeparrot]
--   tide recipes/codeparrot.lua --tokenizer=runs/tokenizer-codeparrot     (then train with it)
--
-- Options (defaults):
--   --data=data/corpus/python.jsonl.gz   the corpus: CodeParrot-schema JSON Lines
--                     (.jsonl or .jsonl.gz, a glob or a directory of them); the
--                     default is built from this machine's Python sources when missing
--   --field=content   the field holding the text
--   --length=N        train on the first N documents (all by default; the chapter
--                     takes 100,000, then 200,000 for the larger vocabulary)
--   --vocab_size=32768  CodeParrot-small's (the course's is 52,000, the chapter's first 12,500)
--   --min_frequency=0 merges of pairs seen fewer times are not made (Hugging Face's default)
--   --base=data/gpt2  the tokenizer retrained: its kind and special tokens are kept
--   --out=runs/tokenizer-codeparrot   the tokenizer directory written (tokenizer.json,
--                     vocab.json, merges.txt, tokenizer_config.json; transformers'
--                     AutoTokenizer.from_pretrained loads it)
--   --eval_docs=200   documents after the training slice on which the token counts of
--                     both tokenizers are compared (the training documents when none are left)
--   --top=12          how many longest, first and last tokens are shown
--   --max_mb=N        when the default corpus is built: stop after N MB of source
local args = tide.args
local data = tide.data

local function fail(msg) io.stderr:write('train_tokenizer: ', msg, '\n'); os.exit(2, true) end
local function int_arg(name, default, min)
  local v = args[name]
  if v == nil then return default end
  if type(v) ~= 'number' or v % 1 ~= 0 or v < min then fail(('--%s must be an integer >= %d, got %s'):format(name, min, tostring(v))) end
  return v
end

local corpus = args.data or 'data/corpus/python.jsonl.gz'
local field = args.field or 'content'
local length = int_arg('length', math.huge, 1)
local vocab_size = int_arg('vocab_size', 32768, 1)
local eval_docs = int_arg('eval_docs', 200, 0)
local top = int_arg('top', 12, 1)
local out = args.out or 'runs/tokenizer-codeparrot'

if not args.data and not io.open(corpus, 'rb') then
  local r = data.build_corpus({ out = corpus, max_mb = args.max_mb })
  print(('corpus: built %s, %d files, %.1f MB of Python source'):format(r.path, r.files, r.bytes / 1e6))
end
local okb, base = pcall(tide.tokenizer.load, args.base or 'data/gpt2')
if not okb then fail(tostring(base)) end
local okd, ds = pcall(data.jsonl, corpus, { fields = { field } })
if not okd then fail(tostring(ds)) end

-- The chapter's batch_iterator: the corpus's texts, one at a time, up to
-- --length documents (the trainer counts them in batches over the threads).
local it = ds:iter()
local docs, bytes = 0, 0
local function texts()
  if docs >= length then return nil end
  local rec = it()
  if rec == nil then return nil end
  docs, bytes = docs + 1, bytes + #rec[field]
  return rec[field]
end

local t0 = tide.clock()
local okt, tok = pcall(base.train_new_from_iterator, base, texts, vocab_size,
                       { min_frequency = args.min_frequency, show_progress = true })
if not okt then fail(tostring(tok)) end
if docs == 0 then fail(corpus .. ' holds no documents with a ' .. field .. ' field') end
print(('trained on %d documents (%.1f MB) in %.1f s: %d tokens, %d merges'):format(
  docs, bytes / 1e6, tide.clock() - t0, tok:vocab_size(), #tok:merges()))
local oks, err = pcall(tok.save, tok, out)
if not oks then fail(tostring(err)) end
print('saved ' .. out .. ' (load it with tide.tokenizer.load, or AutoTokenizer.from_pretrained)')

-- The inspections. Tokens are shown as the chapter shows them: first as the
-- byte-mapped strings (Ġ a space, Ċ a newline), then as text.
local function quoted(list)
  local q = {}
  for i, s in ipairs(list) do q[i] = ('%q'):format(s):gsub('\\\n', '\\n') end
  return '[' .. table.concat(q, ', ') .. ']'
end
local function as_text(t, id) return t:decode({ id }, { errors = 'replace' }) end

local python_code = 'def say_hello():\n    print("Hello, World!")\n\n# Print it\nsay_hello()\n'
print('\n== the example function ==')
io.write(python_code)
local gpt2_tokens, new_tokens = base:tokens(python_code), tok:tokens(python_code)
print('GPT-2:       ' .. quoted(gpt2_tokens))
print('new:         ' .. quoted(new_tokens))
print(('tokens: GPT-2 %d, new %d (%.2fx)'):format(#gpt2_tokens, #new_tokens, #gpt2_tokens / #new_tokens))

-- the chapter's "about twice as efficient": token counts over held-out documents
local held, where = {}, 'held-out'
for _ = 1, eval_docs do
  local rec = it()
  if rec == nil then break end
  held[#held + 1] = rec[field]
end
if #held == 0 and eval_docs > 0 then
  where = 'training'
  for rec in data.jsonl(corpus, { fields = { field }, progress = false }):iter() do
    held[#held + 1] = rec[field]
    if #held >= eval_docs then break end
  end
end
if #held > 0 then
  local n_old, n_new = 0, 0
  for _, ids in ipairs(base:encode_batch(held)) do n_old = n_old + #ids end
  for _, ids in ipairs(tok:encode_batch(held)) do n_new = n_new + #ids end
  print(('%d %s documents: GPT-2 %d tokens, new %d (%.2fx fewer; %.2f characters per token against %.2f)'):format(
    #held, where, n_old, n_new, n_old / math.max(n_new, 1), tok:chars_per_token(held), base:chars_per_token(held)))
end

print('\n== the longest tokens ==')
local function longest(t)
  local l = t:longest_tokens(top)
  for i, s in ipairs(l) do l[i] = as_text(t, t:token_to_id(s)) end
  return quoted(l)
end
print('GPT-2: ' .. longest(base))
print('new:   ' .. longest(tok))

print('\n== the first and the last tokens learned (the last: newest first) ==')
local first, last = {}, {}
local nb = 256 + #tok.added  -- the byte alphabet and the special tokens come first
for id = nb, math.min(nb + top - 1, tok:vocab_size() - 1) do first[#first + 1] = as_text(tok, id) end
for _, s in ipairs(tok:last_merges(top)) do last[#last + 1] = as_text(tok, tok:token_to_id(s)) end
print('first: ' .. quoted(first))
print('last:  ' .. quoted(last))

print('\n== Python keywords ==')
-- keyword.kwlist of Python 3.11 (35 keywords), as the chapter checks them
local kwlist = { 'False', 'None', 'True', 'and', 'as', 'assert', 'async', 'await', 'break', 'class', 'continue',
  'def', 'del', 'elif', 'else', 'except', 'finally', 'for', 'from', 'global', 'if', 'import', 'in', 'is',
  'lambda', 'nonlocal', 'not', 'or', 'pass', 'raise', 'return', 'try', 'while', 'with', 'yield' }
print(('There are in total %d Python keywords.'):format(#kwlist))
local missing, spaced = {}, {}
for _, kw in ipairs(kwlist) do
  if not tok:token_to_id(kw) then missing[#missing + 1] = kw end
  -- inside code a keyword mostly follows a space: 'Ġreturn'
  if not tok:token_to_id('Ġ' .. kw) then spaced[#spaced + 1] = kw end
end
for _, kw in ipairs(missing) do print(('No, keyword `%s` is not in the vocabulary'):format(kw)) end
print(('%d of %d are tokens; with a leading space %d of %d%s'):format(#kwlist - #missing, #kwlist,
  #kwlist - #spaced, #kwlist, #spaced > 0 and (' (not: ' .. table.concat(spaced, ', ') .. ')') or ''))

print('\n== indentation ==')
-- which runs of spaces are single tokens, and how an indented line splits
-- (the pre-tokenizer leaves the last space of a run to the next word)
local singles = {}
for w = 1, 32 do
  if tok:token_to_id(('Ġ'):rep(w)) then singles[#singles + 1] = w end
end
print('runs of spaces that are single tokens: ' .. (#singles > 0 and table.concat(singles, ', ') or 'none'))
for _, w in ipairs({ 4, 8, 12, 16 }) do
  local line = '\n' .. (' '):rep(w) .. 'return x'
  print(('%2d spaces: new %-40s GPT-2 %s'):format(w, quoted(tok:tokens(line)), quoted(base:tokens(line))))
end

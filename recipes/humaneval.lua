-- HumanEval pass@k, as the CodeParrot blog (seeds/codeparrot-blog.txt,
-- "Evaluation") and the Codex paper define it: for each of HumanEval's 164
-- problems, n completions are sampled from the model, cut at the blog's
-- stop sequences (\nclass, \ndef, \n#, \nif, \nprint), and each candidate
-- (prompt + completion + the problem's tests + check(entry_point)) is run
-- by python3 in a sandbox; pass@k = 1 - C(n-c, k) / C(n, k) averaged over
-- the problems, c being the problem's candidates that pass. It is what
-- `code_eval.compute(references=tests, predictions=candidates, k=[1, 10, 100])`
-- of the blog gives, and human-eval's evaluate_functional_correctness.
--
--   tide recipes/humaneval.lua --model=DIR [--n=20] [--k=1,10,100]
--   tide recipes/humaneval.lua --canonical          (the harness's own check: pass@1 = 1)
--   tide recipes/humaneval.lua --samples=FILE.jsonl (human-eval's samples: task_id, completion)
--
-- Options (defaults):
--   --model=DIR          a Hugging Face model directory with its tokenizer
--                        (a checkpoint or the model/ of recipes/codeparrot.lua)
--   --canonical          candidates are the problems' canonical solutions instead
--   --samples=FILE       candidates from a JSON Lines file of {task_id, completion}
--                        (human-eval's format; completions are used as they are, all
--                        of a problem's samples unless --n says how many there must be)
--   --n=20               samples per problem (the Codex paper and CodeParrot's
--                        script use 200; 1 with --canonical)
--   --k=1,10,100         the k of pass@k; a k above n is reported as not estimable
--   --temperature=0.2    sampling temperature (CodeParrot's script; the Codex paper
--                        takes 0.2 for pass@1, 0.8 for pass@100)
--   --top_p=0.95         nucleus sampling
--   --top_k=0            0: off, as CodeParrot's script
--   --max_new_tokens=256 tokens generated per completion at most
--   --batch_size=10      completions of a problem generated together
--   --seed=1             the sampling seed
--   --device=cpu         or cuda
--   --problems=data/humaneval/HumanEval.jsonl.gz   the problems
--   --limit=N            only the first N problems (all by default)
--   --workers=4          candidates run at once
--   --timeout=3          seconds of wall clock per candidate (human-eval's 3.0)
--   --memory_mb=2048     address space per candidate (RLIMIT_AS)
--   --max_procs=64       processes a candidate may add (RLIMIT_NPROC)
--   --file_mb=16         largest file a candidate may write (RLIMIT_FSIZE)
--   --python=/usr/bin/python3   the interpreter (python3 on PATH when absent)
--   --out=runs/humaneval/results.jsonl   one line per problem: its samples,
--                        their verdicts, c and pass@k; pass_at_k.json beside it
--   --quiet              no per-problem lines
--
-- The sandbox (runtime/sandbox.c, tide.sandbox): each candidate has its own
-- temporary folder, a wall-clock timeout that kills its whole process group,
-- rlimits on CPU time, memory, processes and file size, a clean environment,
-- and no network where the kernel allows user namespaces (the first line
-- printed says whether it does). Generated code is untrusted: this is a
-- sandbox against accidents (runaway loops, fork bombs, huge allocations),
-- not a security boundary against a determined attacker.
local ce = require 'tide.code_eval'
local sandbox = require 'tide.sandbox'
local json = tide.json
local args = tide.args

local function fail(msg) io.stderr:write('humaneval: ', msg, '\n'); os.exit(2, true) end
local function int_arg(name, default, min)
  local v = args[name]
  if v == nil then return default end
  if type(v) ~= 'number' or v % 1 ~= 0 or v < min then fail(('--%s must be an integer >= %d, got %s'):format(name, min, tostring(v))) end
  return v
end

local sources = (args.model and 1 or 0) + (args.canonical and 1 or 0) + (args.samples and 1 or 0)
if sources ~= 1 then fail('give exactly one of --model=DIR, --canonical or --samples=FILE.jsonl') end
local n = int_arg('n', args.canonical and 1 or 20, 1)
if args.samples and args.n == nil then n = nil end  -- as many as the file holds per problem
local ks = {}
for k in tostring(args.k or '1,10,100'):gmatch('[^,]+') do
  local v = tonumber(k)
  if not v or v % 1 ~= 0 or v < 1 then fail('--k must be a list of positive integers such as 1,10,100, got ' .. tostring(args.k)) end
  ks[#ks + 1] = v
end
local workers = int_arg('workers', 4, 1)
local out_path = args.out or 'runs/humaneval/results.jsonl'

local ok, problems = pcall(ce.read_problems, args.problems or 'data/humaneval/HumanEval.jsonl.gz')
if not ok then fail(tostring(problems)) end
local limit = int_arg('limit', #problems, 1)
for i = #problems, limit + 1, -1 do problems[i] = nil end

local ok2, sb = pcall(sandbox.new, { timeout = args.timeout or 3, memory_mb = args.memory_mb or 2048,
                                     max_procs = args.max_procs or 64, file_mb = args.file_mb or 16 })
if not ok2 then fail(tostring(sb)) end
local python = args.python or ce.python()
print(('humaneval: %d problems, n = %s, k = %s; sandbox: %s; %d workers, %gs timeout'):format(
  #problems, n or 'from the samples', table.concat(ks, ','), sb.note, workers, sb.timeout))
-- the interpreter runs in the sandbox at all (a clear error now rather than 164 failures)
do
  local okp, r = pcall(sb.run_all, sb, { { argv = { python, '-c', 'print(1)' } } })
  if not okp then fail(('cannot run %s in the sandbox: %s'):format(python, tostring(r))) end
  r = r[1]
  if r.exit_code ~= 0 or r.stdout ~= '1\n' then
    fail(('%s does not run in the sandbox: %s %s'):format(python, ce.verdict(r), r.stderr))
  end
end

-- The candidates' source: a function (problem, count) -> list of completions.
local completions_of
local truncated_prompts = 0  -- prompts cut on the left to fit the model's context
if args.canonical then
  completions_of = function(p, count)
    local out = {}
    for i = 1, count do out[i] = p.canonical_solution end
    return out
  end
elseif args.samples then
  local by_task = {}
  local ok3, err = pcall(function()
    for rec in tide.data.jsonl(args.samples, { fields = { 'task_id', 'completion' }, strict = true, progress = false }):iter() do
      local list = by_task[rec.task_id] or {}
      list[#list + 1] = rec.completion
      by_task[rec.task_id] = list
    end
  end)
  if not ok3 then fail(tostring(err)) end
  completions_of = function(p, count)
    local list = by_task[p.task_id] or {}
    if #list == 0 then fail(('%s has no samples for %s'):format(args.samples, p.task_id)) end
    if count and #list ~= count then fail(('%s has %d samples for %s; --n=%d expects %d'):format(args.samples, #list, p.task_id, count, count)) end
    return list
  end
else
  local okm, model = pcall(tide.gpt2.from_pretrained, args.model)
  if not okm then fail(tostring(model)) end
  local okt, tok = pcall(tide.tokenizer.load, args.model)
  if not okt then fail(tostring(tok)) end
  if args.device then model:to(args.device) end
  model:eval()
  local max_new = int_arg('max_new_tokens', 256, 1)
  local batch = int_arg('batch_size', 10, 1)
  local n_pos = model.config.n_positions
  if max_new >= n_pos then fail(('--max_new_tokens=%d leaves no room for a prompt in n_positions = %d'):format(max_new, n_pos)) end
  local gen = tide.Generator(args.seed or 1)  -- one stream: each batch draws new samples
  -- count completions of p.prompt, sampled in batches of batch_size; a row
  -- stops at eos, and the batch stops once every row holds a stop sequence
  completions_of = function(p, count)
    local ids = tok:encode(p.prompt)
    if #ids + max_new > n_pos then  -- the model sees the prompt's last tokens; the program keeps it whole
      ids = { unpack(ids, #ids - (n_pos - max_new) + 1) }
      truncated_prompts = truncated_prompts + 1
      if truncated_prompts == 1 then
        io.stderr:write(('humaneval: %s: the prompt is cut to its last %d tokens to fit n_positions = %d (reported at the end)\n'):format(
          p.task_id, #ids, n_pos))
      end
    end
    local out = {}
    while #out < count do
      local b = math.min(batch, count - #out)
      local input = tide.tensor({ ids }, { dtype = 'i64' })
      if args.device then input = input:to(args.device) end
      local rows, done, ndone = {}, {}, 0
      for r = 1, b do rows[r] = {} end
      model:generate(input, {
        do_sample = true, temperature = args.temperature or 0.2, top_p = args.top_p or 0.95,
        top_k = args.top_k or 0, max_new_tokens = max_new, num_return_sequences = b,
        generator = gen,
        on_token = function(_, nxt)
          local v = nxt:tolist()
          for r = 1, b do
            if not done[r] then
              if v[r] == tok.eos_id then
                done[r], ndone = true, ndone + 1
              else
                rows[r][#rows[r] + 1] = v[r]
                local text = tok:decode(rows[r], { errors = 'replace' })
                if ce.truncate(text) ~= text then done[r], ndone = true, ndone + 1 end
              end
            end
          end
          return ndone < b
        end,
      })
      for r = 1, b do out[#out + 1] = ce.truncate(tok:decode(rows[r], { errors = 'replace' })) end
    end
    return out
  end
end

-- The harness: candidates queue for the sandbox, at most --workers at once;
-- pump starts what fits and records what finished.
local samples, pending, queue, qhead, qtail, of_job = {}, 0, {}, 1, 0, {}
local function pump(wait)
  while qhead <= qtail and sb:running() < workers do
    local q = queue[qhead]
    queue[qhead], qhead = nil, qhead + 1
    of_job[sb:start({ python, 'candidate.py' }, 'candidate.py', q.program)] = q
  end
  local id = sb:wait(wait)
  while id do
    local q = of_job[id]
    of_job[id] = nil
    local r = sb:result(id)
    sb:release(id)
    local s = samples[q.p][q.j]
    s.result = ce.verdict(r)
    s.passed = s.result == 'passed'
    pending = pending - 1
    id = sb:wait(0)
  end
end

local t0 = tide.clock()
for pi, p in ipairs(problems) do
  local comps = completions_of(p, n)
  samples[pi] = {}
  for j, c in ipairs(comps) do
    samples[pi][j] = { completion = c }
    qtail = qtail + 1
    queue[qtail] = { p = pi, j = j, program = ce.program(p, c) }
    pending = pending + 1
  end
  pump(0)
  if not args.quiet and args.model then
    io.stderr:write(('humaneval: %s: %d completions generated (%.0f s)\n'):format(p.task_id, #comps, tide.clock() - t0))
  end
end
while pending > 0 do pump(0.25) end

-- pass@k per problem and its mean over the problems
require('tide.data.files').mkdir_p(out_path:match('^(.*)/[^/]+$') or '.', 'humaneval', 1)
local f = assert(io.open(out_path, 'wb'))
local sums, counted, total_c = {}, {}, 0
for pi, p in ipairs(problems) do
  local c = 0
  for _, s in ipairs(samples[pi]) do if s.passed then c = c + 1 end end
  total_c = total_c + c
  local rec = { task_id = p.task_id, n = #samples[pi], c = c, samples = json.array(samples[pi]) }
  for _, k in ipairs(ks) do
    local v = ce.pass_at_k(#samples[pi], c, k)
    rec['pass@' .. k] = v == nil and json.null or v
    if v then sums[k], counted[k] = (sums[k] or 0) + v, (counted[k] or 0) + 1 end
  end
  f:write(json.encode(rec), '\n')
  if not args.quiet then
    print(('%-14s %d/%d passed%s'):format(p.task_id, c, #samples[pi], c < #samples[pi] and
      ('  (first failure: %s)'):format((function()
        for _, s in ipairs(samples[pi]) do if not s.passed then return s.result:sub(1, 70) end end
      end)()) or ''))
  end
end
f:close()
local candidates, min_n = 0, math.huge
for pi = 1, #problems do candidates, min_n = candidates + #samples[pi], math.min(min_n, #samples[pi]) end
local summary = { problems = #problems, n = n or json.null, passed = total_c, candidates = candidates,
                  sandbox = sb.note, seconds = tide.clock() - t0 }
for _, k in ipairs(ks) do
  local key = 'pass@' .. k
  if counted[k] == #problems then
    summary[key] = sums[k] / #problems
    print(('%s = %.4f'):format(key, summary[key]))
  else
    summary[key] = json.null
    print(('%s: not estimable, k = %d is more than the n = %d samples per problem'):format(key, k, min_n))
  end
end
if truncated_prompts > 0 then
  print(('%d prompts were longer than the model\'s context allows and were cut on the left for generation'):format(truncated_prompts))
end
local sf = assert(io.open((out_path:match('^(.*)/[^/]+$') or '.') .. '/pass_at_k.json', 'wb'))
sf:write(json.encode(summary, { indent = 2 }), '\n')
sf:close()
print(('%d of %d candidates passed in %.1f s; per problem: %s'):format(total_c, candidates, tide.clock() - t0, out_path))

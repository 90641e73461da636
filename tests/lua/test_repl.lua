-- Unit tests of lua/tide/repl.lua: chunk compilation, result display,
-- commands, completion and sessions fed line by line (no terminal involved).
local T = require 'tide.testing'
local repl = require 'tide.repl'

-- A session writing into strings instead of stdout/stderr, running chunks in
-- a private environment that still sees tide and the standard library.
local function session()
  local out, err = {}, {}
  local env = setmetatable({}, { __index = _G })
  local s = repl.session {
    out = function(text) out[#out + 1] = text end,
    err = function(text) err[#err + 1] = text end,
    env = env,
  }
  local function texts() return table.concat(out), table.concat(err) end
  return s, texts, env
end

-- Feeds lines and returns (stdout, stderr, last status).
local function feed(lines)
  local s, texts = session()
  local status
  for _, line in ipairs(lines) do status = s:feed(line) end
  local o, e = texts()
  return o, e, status, s
end

T.test('compile: expressions before statements', function()
  local fn, how = repl.compile('1 + 1')
  T.eq(how, 'expr')
  T.eq(select(1, repl.call(fn, how)), 2)
  fn, how = repl.compile('x = 1')
  T.eq(how, 'stmt')
  T.truthy(fn)
  fn, how = repl.compile('=1 + 2')
  T.eq(how, 'expr')
  T.eq(repl.call(fn, how), 3)
end)

T.test('compile: several results and a trailing comment', function()
  local fn, how = repl.compile('1, "a", nil')
  T.eq(how, 'expr')
  T.eq(select('#', repl.call(fn, how)), 3)
  fn, how = repl.compile('1 + 1 -- a comment')
  T.eq(how, 'expr')
  T.eq(repl.call(fn, how), 2)
  fn, how = repl.compile('1 + 1;')
  T.eq(how, 'expr')
  T.eq(repl.call(fn, how), 2)
end)

T.test('compile: incomplete chunks are recognised', function()
  for _, src in ipairs { 'function f()', 'for i = 1, 2 do', 'x = ', '{1, 2,',
                         'tide.zeros(2,', 'if x then', '"abc" ..', '[[long', '--[[ comment',
                         'local t = {', 'f(' } do
    local fn, how = repl.compile(src)
    T.eq(fn, nil, src)
    T.eq(how, 'incomplete', src)
  end
end)

T.test('compile: syntax errors are not incomplete', function()
  for _, src in ipairs { 'x = = 1', '1 +* 2', 'end', '"unfinished', 'local 1 = 2', '{1, 2}}' } do
    local fn, err = repl.compile(src)
    T.eq(fn, nil, src)
    T.truthy(err ~= 'incomplete', src .. ' is not incomplete')
    T.truthy(err:find('^stdin:1:'), 'message has a position: ' .. err)
  end
end)

T.test('is_incomplete and is_silent', function()
  T.eq(repl.is_incomplete("stdin:1: 'end' expected near '<eof>'"), true)
  T.eq(repl.is_incomplete("stdin:1: '<eof>' expected near 'end'"), false)
  T.eq(repl.is_incomplete(nil), false)
  T.eq(repl.is_incomplete("stdin:1: unfinished string near '<eof>'", '"abc'), false)
  T.eq(repl.is_incomplete("stdin:1: unfinished string near '<eof>'", '"abc\\'), true)
  T.eq(repl.is_silent('x * 3;'), true)
  T.eq(repl.is_silent('x * 3;  '), true)
  T.eq(repl.is_silent('x * 3'), false)
end)

T.test('show: plain tables by content, strings raw at the top', function()
  T.eq(repl.show({ 2, 3 }), '{2, 3}')
  T.eq(repl.show({}), '{}')
  T.eq(repl.show({ a = 1, b = 'x' }), '{a = 1, b = "x"}')
  T.eq(repl.show({ 1, n = 2, [10] = 3, ['a b'] = 4 }), '{1, [10] = 3, ["a b"] = 4, n = 2}')
  T.eq(repl.show({ { { { 1 } } } }), '{{{...}}}')
  T.eq(repl.show({ 'a\nb' }), '{"a\\nb"}')
  T.eq(repl.show({ ['end'] = 1 }), '{["end"] = 1}')
  T.eq(repl.show('hi'), 'hi')
  T.eq(repl.show(nil), 'nil')
  T.eq(repl.show(1.5), '1.5')
  T.eq(repl.show(true), 'true')
  local big = {}
  for i = 1, 100 do big[i] = i end
  local s = repl.show(big)
  T.truthy(s:find(', %.%.%.}$'), 'long tables are cut: ' .. s)
  T.truthy(#s < 100, 'cut short')
  -- a table with its own metatable shows through tostring
  local obj = setmetatable({}, { __tostring = function() return 'OBJ' end })
  T.eq(repl.show(obj), 'OBJ')
  T.eq(repl.show({ obj }), '{OBJ}')
  -- a failing __tostring does not break the REPL
  local broken = setmetatable({}, { __tostring = function() error('no') end })
  T.truthy(repl.show(broken):find('tostring failed', 1, true))
  -- a table that contains itself is cut by depth
  local cyc = {}
  cyc.self = cyc
  T.eq(repl.show(cyc), '{self = {self = {...}}}')
end)

T.test('format_results: tab-separated, nothing for no results', function()
  T.eq(repl.format_results(0), nil)
  T.eq(repl.format_results(1, nil), 'nil')
  T.eq(repl.format_results(3, 1, 'a', nil), '1\ta\tnil')
end)

T.test('show: tensors go through tostring', function()
  local x = tide.ones(2, 2)
  T.eq(repl.show(x), tostring(x))
  T.eq(repl.format_results(2, x, 1), tostring(x) .. '\t1')
end)

T.test('traceback: the REPL frames are dropped', function()
  local tb = 'stdin:1: deep\nstack traceback:\n\t[C]: in function \'error\'\n' ..
             "\tstdin:1: in function 'g'\n\tstdin:1: in main chunk\n" ..
             "\t[C]: in function 'xpcall'\n\t/x/lua/tide/repl.lua:10: in function 'run'"
  T.eq(repl.traceback('stdin:1: deep', tb),
       "stdin:1: deep\nstack traceback:\n\tstdin:1: in function 'g'\n\tstdin:1: in main chunk")
  -- an error raised by the typed line itself needs no traceback
  local short = "stdin:1: boom\nstack traceback:\n\t[C]: in function 'error'\n\tstdin:1: in main chunk\n" ..
                "\t[C]: in function 'xpcall'"
  T.eq(repl.traceback('stdin:1: boom', short), 'stdin:1: boom')
  T.eq(repl.traceback('msg', nil), 'msg')
  -- frames inside tide's library are left out
  local lib = "stdin:1: add: shapes\nstack traceback:\n\t[C]: in function 'error'\n" ..
              "\t/src/lua/tide/ops/pointwise.lua:51: in function 'raise'\n" ..
              "\t.../lua/tide/ops/pointwise.lua:197: in function '__add'\n" ..
              "\tstdin:1: in function 'h'\n\tstdin:1: in main chunk\n\t[C]: in function 'xpcall'"
  T.eq(repl.traceback('stdin:1: add: shapes', lib),
       "stdin:1: add: shapes\nstack traceback:\n\tstdin:1: in function 'h'\n\tstdin:1: in main chunk")
end)

T.test('command: help, quit and unknown', function()
  T.eq(repl.command(':help'), 'help')
  T.eq(repl.command('  :h'), 'help')
  T.eq(repl.command(':quit'), 'quit')
  T.eq(repl.command(':q'), 'quit')
  local action, err = repl.command(':frobnicate now')
  T.eq(action, nil)
  T.truthy(err:find(':frobnicate', 1, true))
  T.eq(repl.is_command(':help'), true)
  T.eq(repl.is_command('::label::'), false)
  T.eq(repl.is_command('x:sum()'), false)
end)

T.test('split_word', function()
  local function check(word, path, sep, partial)
    local p, s, w = repl.split_word(word)
    T.same(p, path, word)
    T.eq(s, sep, word)
    T.eq(w, partial, word)
  end
  check('tide.ze', { 'tide' }, '.', 'ze')
  check('a.b:su', { 'a', 'b' }, ':', 'su')
  check('pri', {}, nil, 'pri')
  check('x:', { 'x' }, ':', '')
  T.eq(repl.split_word('a:b.c'), nil)
  T.eq(repl.split_word('a..b'), nil)
  T.eq(repl.split_word('1x.y'), nil)
end)

T.test('complete: globals and keywords', function()
  local env = { alpha = 1, alps = 2, beta = 3 }
  T.same(repl.complete('al', env), { 'alpha', 'alps' })
  T.same(repl.complete('fun', env), { 'function' })
  T.same(repl.complete('zz', env), {})
  local all = repl.complete('pri')
  T.truthy(#all >= 1 and all[1] == 'print', 'print is a global')
end)

T.test('complete: fields after . and methods after :', function()
  local obj = { name = 'n', size = function() end, _hidden = 1, sub = { deep = 1 } }
  local env = { obj = obj }
  T.same(repl.complete('obj.s', env), { 'obj.size', 'obj.sub' })
  T.same(repl.complete('obj:s', env), { 'obj:size', 'obj:sub' })
  T.same(repl.complete('obj:n', env), {}, 'methods only after :')
  T.same(repl.complete('obj.', env), { 'obj.name', 'obj.size', 'obj.sub' }, '_private names hidden')
  T.same(repl.complete('obj._', env), { 'obj._hidden' })
  T.same(repl.complete('obj.sub.d', env), { 'obj.sub.deep' })
  T.same(repl.complete('nothing.x', env), {})
  T.same(repl.complete('obj.name.x', env), {}, 'a string field has no fields')
end)

T.test('complete: metatable __index tables are followed', function()
  local Base = { greet = function() end }
  Base.__index = Base
  local Derived = setmetatable({ wave = function() end }, Base)
  Derived.__index = Derived
  local o = setmetatable({ own = 1 }, Derived)
  local env = { o = o, s = 'text' }
  T.same(repl.complete('o.', env), { 'o.greet', 'o.own', 'o.wave' })
  T.same(repl.complete('o:', env), { 'o:greet', 'o:wave' })
  T.same(repl.complete('o.ow', env), { 'o.own' })
  T.same(repl.complete('s:up', env), { 's:upper' })
end)

T.test('complete: tensor methods through tide.Tensor', function()
  local env = { x = tide.ones(2, 2) }
  T.same(repl.complete('x:num', env), { 'x:numel' })
  local all = repl.complete('x:', env)
  T.truthy(#all > 10, 'tensors have many methods')
  for _, c in ipairs(all) do T.truthy(not c:find('^x:_'), 'private key offered: ' .. c) end
  if tide.Tensor.sum then
    local found = false
    for _, c in ipairs(repl.complete('x:su', env)) do found = found or c == 'x:sum' end
    T.truthy(found, 'x:su offers x:sum')
  end
  T.same(repl.complete('tide.ze', _G)[1], 'tide.zeros')
end)

T.test('complete: an __index that raises offers nothing', function()
  local bad = setmetatable({}, { __index = function() error('boom') end })
  T.same(repl.complete('bad.x.y', { bad = bad }), {})
end)

T.test('complete: commands at the start of a line', function()
  T.same(repl.complete(':he', nil, true), { ':help' })
  T.same(repl.complete(':q', nil, true), { ':quit' })
end)

T.test('session: expressions print, statements do not', function()
  local o, e, status = feed { '1 + 1' }
  T.eq(o, '2\n'); T.eq(e, ''); T.eq(status, 'ok')
  o = feed { 'x = 5', 'x * 2' }
  T.eq(o, '10\n')
  o = feed { 'x = 5;' }
  T.eq(o, '')
  o = feed { '1 + 1;' }
  T.eq(o, '', 'a trailing ; suppresses')
  o = feed { 'print' }
  T.truthy(o:find('^builtin') or o:find('^function'), 'functions show through tostring')
  o = feed { 'nil' }
  T.eq(o, 'nil\n')
  o = feed { '(function() end)()' }
  T.eq(o, '', 'no results, nothing printed')
end)

T.test('session: multi-line chunks', function()
  local s, texts = session()
  T.eq(s:prompt(), repl.prompt)
  T.eq(s:feed('function twice(a)'), 'more')
  T.eq(s:prompt(), repl.continuation)
  T.eq(s:feed(''), 'more', 'blank lines inside a chunk are kept')
  T.eq(s:feed('  return a * 2'), 'more')
  T.eq(s:feed('end'), 'ok')
  T.eq(s:feed('twice(21)'), 'ok')
  T.eq((texts()), '42\n')
  T.eq(s:feed('{1,'), 'more')
  T.eq(s:feed('2}'), 'ok')
  T.eq((texts()), '42\n{1, 2}\n')
end)

T.test('session: abandon and finish', function()
  local s, texts = session()
  T.eq(s:feed('for i = 1, 3 do'), 'more')
  T.eq(s:abandon(), true)
  T.eq(s:prompt(), repl.prompt)
  T.eq(s:abandon(), false)
  T.eq(s:finish(), 'ok')
  T.eq(s:feed('function f('), 'more')
  T.eq(s:finish(), 'error')
  local _, e = texts()
  T.truthy(e:find("<eof>", 1, true), 'the syntax error is reported: ' .. e)
  T.eq(s.errors, 1)
end)

T.test('session: errors are reported and the session goes on', function()
  local o, e, status, s = feed { 'error("boom")' }
  T.eq(status, 'error')
  T.eq(o, '')
  T.eq(e, 'stdin:1: boom\n')
  T.eq(s.errors, 1)
  o, e = feed { 'function g() error("deep") end', 'g()', '1 + 2' }
  T.eq(o, '3\n')
  T.truthy(e:find('stdin:1: deep', 1, true))
  T.truthy(e:find("in function 'g'", 1, true), 'traceback names g: ' .. e)
  T.truthy(not e:find('repl.lua', 1, true), 'no REPL frames: ' .. e)
  o, e, status = feed { 'x = = 1' }
  T.eq(status, 'error')
  T.truthy(e:find('unexpected symbol', 1, true))
  o, e = feed { 'error({})' }
  T.eq(e, '(error object is a table value)\n')
  o, e = feed { 'error(setmetatable({}, {__tostring = function() return "custom" end}))' }
  T.eq(e, 'custom\n')
end)

T.test('session: commands', function()
  local o, e, status = feed { ':help' }
  T.eq(status, 'help')
  T.truthy(o:find(':quit', 1, true) and o:find('tide.args', 1, true), 'help text')
  T.eq(e, '')
  o, e, status = feed { ':quit' }
  T.eq(status, 'quit')
  o, e, status = feed { ':nope' }
  T.eq(status, 'error')
  T.truthy(e:find(':help', 1, true))
  o, e, status = feed { '' }
  T.eq(status, 'empty')
  T.eq(o .. e, '')
end)

T.test('session: chunks run in the session environment', function()
  local s, texts, env = session()
  s:feed('answer = 42')
  T.eq(env.answer, 42)
  T.eq(rawget(_G, 'answer'), nil)
  s:feed('local y = 1')
  s:feed('y')
  T.eq((texts()), 'nil\n', 'locals last one chunk')
end)

T.test('banner names the version', function()
  T.truthy(repl.banner():find(tide.version, 1, true))
end)

T.test('session: messages and tracebacks name the input line, not the line within the chunk', function()
  local _, e = feed { 'x = 1', '', 'error("third")' }
  T.eq(e, 'stdin:3: third\n')
  _, e = feed { 'function f()', '  error("in f")', 'end', 'y = 2', 'f()' }
  T.truthy(e:find('^stdin:2: in f'), e)
  T.truthy(e:find("stdin:2: in function 'f'", 1, true) and e:find('stdin:5: in main chunk', 1, true), e)
  -- syntax errors and expressions too; commands and blank lines count as lines
  _, e = feed { ':help', '', 'x = = 1' }
  T.truthy(e:find('^stdin:3: unexpected symbol'), e)
  _, e = feed { '1 + 1', 'nil + 1' }
  T.truthy(e:find('^stdin:2: attempt to perform arithmetic'), e)
  -- an unfinished chunk at the end names where it started
  local s, texts = session()
  s:feed('a = 1')
  s:feed('function g(')
  s:finish()
  local _, e2 = texts()
  T.truthy(e2:find('^stdin:2:'), e2)
end)

T.test('session: :help NAME and help(x) show the docs entry', function()
  local o, e, status = feed { ':help tide.zeros' }
  T.eq(status, 'help')
  T.eq(e, '')
  T.truthy(o:find('docs/tensors.md:%d+') and o:find('`tide.zeros(shape...)`', 1, true), o)
  o = feed { ':help F.cross_entropy' }
  T.truthy(o:find('docs/autograd.md', 1, true) and o:find('ignore_index', 1, true), o)
  o = feed { ':help tide.gpt2.from_pretrained' }
  T.truthy(o:find('docs/training.md', 1, true) and o:find('model.safetensors', 1, true), o)
  o = feed { 'help(tide.tokenizer.load)' }
  T.truthy(o:find('docs/tokenizer.md', 1, true) and o:find('tide.tokenizer.load(path)', 1, true), o)
  o = feed { 'help(tide.Tensor.sum)' }
  T.truthy(o:find('docs/tensors.md', 1, true) and o:find('x:sum()', 1, true), o)
  o = feed { 'help("GPT-2")' }
  T.truthy(o:find('## GPT-2', 1, true), o)
  o = feed { 'help(function() end)' }
  T.truthy(o:find('not reachable from tide', 1, true), o)
  o = feed { ':help no_such_thing_here' }
  T.truthy(o:find('no documentation entry for no_such_thing_here', 1, true), o)
  o = feed { 'help()' }
  T.truthy(o:find(':quit', 1, true), 'help() is :help')
  local _, _, st = feed { ':quit now' }
  T.eq(st, 'error')
  -- help is the REPL's: a name the user gave wins, and the global table is untouched
  local s, texts, env = session()
  T.eq(type(env.help), 'function')
  T.eq(rawget(_G, 'help'), nil)
  s:feed('help = 5')
  s:feed('help')
  T.eq((texts()), '5\n')
end)

T.test('complete: modules loaded on first use are offered before they are loaded', function()
  local found = {}
  for _, c in ipairs(repl.complete('tide.data.', _G)) do found[c] = true end
  T.truthy(found['tide.data.shards'] and found['tide.data.filters'] and found['tide.data.build_corpus'], 'lazy names')
  T.same(repl.complete('tide.data.sha', _G), { 'tide.data.shards' })
  -- a module that lists its lazy names in __complete
  local mod = setmetatable({ eager = 1 }, { __index = function() end, __complete = { lazy_one = true, 'lazy_two' } })
  T.same(repl.complete('m.', { m = mod }), { 'm.eager', 'm.lazy_one', 'm.lazy_two' })
end)

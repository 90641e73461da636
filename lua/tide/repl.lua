-- The REPL's logic: reading chunks that span lines, compiling a line as an
-- expression or a statement, showing results, `:commands`, and tab completion.
-- bindings/repl.c owns the terminal (libedit, signals, history) and feeds this
-- module one line at a time:
--
--   local repl = require 'tide.repl'
--   local s = repl.session()
--   s:feed('x = tide.ones(2, 2)')   --> 'ok'
--   s:feed('function f(a)')         --> 'more'  (the chunk is incomplete)
--   s:feed('  return a * 2 end')    --> 'ok'
--   s:feed('f(x)')                  --> 'ok', after writing the result
--   s:feed(':quit')                 --> 'quit'
--
-- Everything here is plain Lua so it can be unit-tested without a terminal.
local M = {}

M.prompt = '> '
M.continuation = '..> '
M.chunkname = '=stdin'

local commands = {
  { names = { ':help', ':h', ':?' }, action = 'help', text = 'this help; :help NAME shows the docs entry of NAME' },
  { names = { ':quit', ':q', ':exit' }, action = 'quit', text = 'leave the REPL (Ctrl-D does too)' },
}

M.help = [[
tide REPL
  1 + 1                 an expression prints its value(s), tab-separated
  x = tide.ones(2, 2)   a statement runs; globals persist between lines
  x * 3;                a trailing ';' runs without printing the result
  function f(t)         an incomplete chunk continues on the next line
    return t:sum()      (prompt '..> '); Ctrl-C abandons it
  end

Keys
  Tab                   complete globals, fields after '.', methods after ':'
                        (x:su<Tab> on a tensor gives x:sum)
  Ctrl-C                interrupt running code, or clear the line
  Ctrl-D                leave (on an empty line)
  Up / Down, Ctrl-R     history, kept in ~/.tide_history (or $TIDE_HISTORY)

Commands
  :help  :h             this help
  :help NAME            the documentation of NAME (:help tide.zeros, :help t:sum,
                        :help F.cross_entropy, :help GPT-2); help(f) for a value
  :quit  :q             leave the REPL

A short tour of tide
  t = tide.tensor({{1, 2}, {3, 4}})    from nested tables (i64 here; {{1.5}} gives f32)
  tide.zeros(2, 3)  tide.ones(2, 3)  tide.full({2, 3}, 7)  tide.arange(6)
  tide.rand(2, 3)  tide.randn(4)  tide.manual_seed(0)
  t:shape()  t:size(1)  t:dim()  t:numel()  t:dtype()  t:item()  t:tolist()
  t:view(4, 1)  t:transpose(1, 2)  t:narrow(1, 1, 1)  t:to('f64')
  t + 1  t * t  -t  t:sum()  t:mean(1)    (dims are 1-based; -1 is the last)
  tok = tide.tokenizer.load('data/gpt2')   tok:encode('Hi')  tok:decode({17250})
  ds = tide.data.jsonl('tests/data/corpus')  for r in ds:take(2) do print(r.repo_name) end
  gen = tide.pipeline('text-generation', DIR)   gen('def add(a, b):', {max_new_tokens = 20})
  model:generate(ids, {do_sample = true, top_p = 0.95})   (:help generate; docs/generation.md)
  tide.args             --key=value options given to a recipe
  tide.memory()         bytes the engine holds
Run a recipe with  tide FILE.lua --key=value ...   (see docs/repl.md; docs/index.md for the rest)]]

-- chunks ------------------------------------------------------------------------

-- True when `err`, a message from loadstring for `src`, says the chunk ended
-- too early: more lines could still make it valid.
function M.is_incomplete(err, src)
  if type(err) ~= 'string' or not err:find("near '<eof>'$") then return false end
  -- a quoted string continues on the next line only after a backslash
  if err:find('unfinished string', 1, true) then
    return src ~= nil and src:match('\\$') ~= nil
  end
  return true
end

-- True when the chunk ends in ';', which asks for its results not to be shown.
function M.is_silent(src)
  return src:match(';%s*$') ~= nil
end

-- Compiles a chunk typed at the prompt. An expression is tried first so that
-- `1 + 1` and `f(x)` show what they return; then a statement.
-- Returns fn, 'expr'|'stmt'; or nil, 'incomplete'; or nil, message.
-- Run an 'expr' chunk as fn(M.pass) (see M.call). firstline (default 1) is
-- the input line the chunk starts on, so that messages and tracebacks name
-- the line as it was read (stdin:7), not the line within the chunk.
function M.compile(src, chunkname, firstline)
  chunkname = chunkname or M.chunkname
  local lead = ('\n'):rep((firstline or 1) - 1)
  -- `= expr` is the Lua 5.1 REPL's way to ask for a value; accept it too
  local eq = src:match('^%s*=(.*)$')
  if eq then src = eq end
  -- The values pass through a function taken from the chunk's arguments so
  -- that a call typed at the prompt is not a tail call: a tail call would drop
  -- the typed line from tracebacks. The ')' goes on a line of its own in case
  -- the input ends in a comment; a final ';' would end the list too early.
  local expr = src:gsub(';%s*$', '')
  local fn = loadstring(lead .. 'local __tide_pass = ...; return __tide_pass(' .. expr .. '\n)', chunkname)
  if fn then return fn, 'expr' end
  -- whether an expression is unfinished shows without the wrapping, whose
  -- ')' would end `{1,` with a different error
  local _, experr = loadstring(lead .. 'return ' .. src, chunkname)
  if eq then
    if M.is_incomplete(experr, src) then return nil, 'incomplete' end
    return nil, experr
  end
  local stfn, sterr = loadstring(lead .. src, chunkname)
  if stfn then return stfn, 'stmt' end
  -- `{1,` is incomplete only as an expression, `for i = 1, 2 do` only as a
  -- statement: either one means another line may finish it
  if M.is_incomplete(sterr, src) or M.is_incomplete(experr, src) then return nil, 'incomplete' end
  return nil, sterr
end

local function pass(...) return ... end
M.pass = pass

-- Calls a chunk from M.compile; returns what it returns.
function M.call(fn, mode)
  if mode == 'expr' then return fn(pass) end
  return fn()
end

-- showing values ------------------------------------------------------------------

local max_items = 20   -- entries shown of one table before '...'
local max_depth = 2    -- nesting shown before '{...}'

local function is_identifier(k)
  return type(k) == 'string' and k:match('^[%a_][%w_]*$') ~= nil and not M.keywords_set[k]
end

local function quote(s)
  return (string.format('%q', s):gsub('\\\n', '\\n'))
end

local type_order = { number = 1, string = 2, boolean = 3 }

local function key_less(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return (type_order[ta] or 9) < (type_order[tb] or 9) end
  if ta == 'number' or ta == 'string' then return a < b end
  return tostring(a) < tostring(b)
end

local show

-- A plain table as {1, 2, 3} or {a = 1, b = 'x'}; nested tables up to
-- max_depth, at most max_items entries, keys in a stable order.
local function show_table(t, depth)
  if depth > max_depth then return '{...}' end
  local parts, n = {}, #t
  for i = 1, math.min(n, max_items) do parts[#parts + 1] = show(t[i], depth + 1, true) end
  local keys = {}
  for k in pairs(t) do
    if not (type(k) == 'number' and k >= 1 and k <= n and k % 1 == 0) then keys[#keys + 1] = k end
  end
  table.sort(keys, key_less)
  for _, k in ipairs(keys) do
    if #parts >= max_items then break end
    local ks = is_identifier(k) and k or ('[' .. show(k, depth + 1, true) .. ']')
    parts[#parts + 1] = ks .. ' = ' .. show(t[k], depth + 1, true)
  end
  if n + #keys > #parts then parts[#parts + 1] = '...' end
  return '{' .. table.concat(parts, ', ') .. '}'
end

-- The text shown for one value. Tables without a metatable are shown by
-- content (so t:shape() reads {2, 3}); everything else goes through tostring,
-- which is how tensors print. Strings are raw at the top level, quoted inside.
function show(v, depth, nested)
  depth = depth or 1
  local tv = type(v)
  if tv == 'string' then return nested and quote(v) or v end
  if tv == 'table' and getmetatable(v) == nil then return show_table(v, depth) end
  local ok, s = pcall(tostring, v)
  if not ok then return '<' .. tv .. ': tostring failed: ' .. tostring(s) .. '>' end
  return s
end
M.show = show

-- The line printed for a chunk's results, or nil when it returned nothing.
function M.format_results(n, ...)
  if n == 0 then return nil end
  local parts = {}
  for i = 1, n do parts[i] = show((select(i, ...))) end
  return table.concat(parts, '\t')
end

-- The traceback of an error in typed code, keeping only the frames of the
-- user's code; just the message when the only such frame is the typed chunk.
function M.traceback(msg, tb)
  msg = tostring(msg)
  if not tb then return msg end
  local lines = {}
  for line in tb:gmatch('[^\n]+') do lines[#lines + 1] = line end
  -- frames below the call into typed code belong to the REPL
  local frames = {}
  local started = false
  for _, line in ipairs(lines) do
    if started then
      if line:find("in function 'xpcall'", 1, true) or line:find('tide/repl.lua', 1, true) then break end
      frames[#frames + 1] = line
    elseif line == 'stack traceback:' then
      started = true
    end
  end
  -- tide's own frames (an op checking its arguments) and C frames say
  -- nothing the message does not; what is left is the user's code
  local kept = {}
  for _, f in ipairs(frames) do
    if not (f:match('^%s*%[C%]') or f:match('^%s*%[builtin') or f:match('^%s*[^:]*tide/[%w_/]*%.lua:')) then
      kept[#kept + 1] = f
    end
  end
  -- a traceback that only says "the typed line" adds nothing to the message
  if #kept == 0 or (#kept == 1 and kept[1]:find('in main chunk', 1, true)) then return msg end
  frames = kept
  return msg .. '\nstack traceback:\n' .. table.concat(frames, '\n')
end

-- commands ----------------------------------------------------------------------

-- The action of a `:command` line ('help', 'quit') and the rest of the line
-- (nil when empty), or nil, message.
function M.command(line)
  local word, rest = line:match('^%s*(:%S*)%s*(.-)%s*$')
  if rest == '' then rest = nil end
  for _, c in ipairs(commands) do
    for _, name in ipairs(c.names) do
      if word == name then
        if rest and c.action ~= 'help' then return nil, ('%s takes no argument'):format(word) end
        return c.action, rest
      end
    end
  end
  return nil, ('unknown command %s (try :help)'):format(tostring(word))
end

-- True for a line the REPL handles itself; `::label::` is Lua.
function M.is_command(line)
  return line:match('^%s*:') ~= nil and line:match('^%s*::') == nil
end

-- completion --------------------------------------------------------------------

M.keywords = { 'and', 'break', 'do', 'else', 'elseif', 'end', 'false', 'for',
  'function', 'goto', 'if', 'in', 'local', 'nil', 'not', 'or', 'repeat',
  'return', 'then', 'true', 'until', 'while' }
M.keywords_set = {}
for _, k in ipairs(M.keywords) do M.keywords_set[k] = true end

-- Splits the word being completed: 'x.y:su' -> {'x', 'y'}, ':', 'su'.
-- Returns nil when the word is not a chain of names.
function M.split_word(word)
  local head, sep, partial = word:match('^(.-)([%.:])([%w_]*)$')
  if not head then
    if word:match('^[%a_]?[%w_]*$') then return {}, nil, word end
    return nil
  end
  if sep == ':' and head:find(':', 1, true) then return nil end
  local path = {}
  for name in (head .. '.'):gmatch('(.-)%.') do
    if not name:match('^[%a_][%w_]*$') then return nil end
    path[#path + 1] = name
  end
  return path, sep, partial
end

-- Adds the string keys of `v` that complete `partial` to `out`: the value's
-- own keys, then its metatable's __index table(s). tide tensors look methods
-- up through an __index function, so their methods come from tide.Tensor.
local function collect(v, partial, out, methods_only, seen)
  seen = seen or {}
  if v == nil or seen[v] then return end
  seen[v] = true
  local tide = package.loaded.tide
  if type(tide) == 'table' and tide.is_tensor and tide.Tensor and tide.is_tensor(v) then
    collect(tide.Tensor, partial, out, methods_only, seen)
    return
  end
  if type(v) == 'table' then
    for k, x in pairs(v) do
      if type(k) == 'string' and k:sub(1, #partial) == partial and k:match('^[%a_][%w_]*$')
         and (not methods_only or type(x) == 'function' or type(x) == 'table')
         and (k:sub(1, 1) ~= '_' or partial:sub(1, 1) == '_') then
        out[k] = true
      end
    end
  end
  local mt = (type(v) == 'table' or type(v) == 'string' or type(v) == 'userdata') and debug.getmetatable(v)
  if type(mt) == 'table' then
    local idx = rawget(mt, '__index')
    if type(idx) == 'table' then collect(idx, partial, out, methods_only, seen) end
    -- names an __index function would load on first use (tide.data.shards):
    -- a module lists them in its metatable's __complete (keys or a list)
    local more = rawget(mt, '__complete')
    if type(more) == 'table' then
      for k, x in pairs(more) do
        local name = type(k) == 'string' and k or x
        if type(name) == 'string' and name:sub(1, #partial) == partial and name:match('^[%a_][%w_]*$') then
          out[name] = true
        end
      end
    end
  end
end

-- Looks a dotted path up from `env` without running arbitrary code twice:
-- any error (an __index that raises) just means there is nothing to offer.
local function lookup(env, path)
  local v = env
  for _, name in ipairs(path) do
    local ok, x = pcall(function() return v[name] end)
    if not ok or x == nil then return nil end
    v = x
  end
  return v
end

-- Candidates for the word before the cursor, each a whole replacement for it,
-- sorted. `line_start` is true when the word begins the line (for commands).
function M.complete(word, env, line_start)
  env = env or _G
  local out = {}
  if line_start and word:sub(1, 1) == ':' then
    for _, c in ipairs(commands) do
      for _, name in ipairs(c.names) do
        if name:sub(1, #word) == word and #name > 2 then out[#out + 1] = name end
      end
    end
    table.sort(out)
    return out
  end
  local path, sep, partial = M.split_word(word)
  if not path then return out end
  local found = {}
  if sep == nil then
    collect(env, partial, found, false)
    for _, k in ipairs(M.keywords) do
      if k:sub(1, #partial) == partial then found[k] = true end
    end
  else
    local v = lookup(env, path)
    if v == nil then return out end
    collect(v, partial, found, sep == ':')
  end
  local prefix = word:sub(1, #word - #partial)
  for k in pairs(found) do out[#out + 1] = prefix .. k end
  table.sort(out)
  return out
end

-- sessions ----------------------------------------------------------------------

local Session = {}
Session.__index = Session

-- A REPL session. opts.out and opts.err are functions that write text (stdout
-- and stderr by default); opts.env is where chunks run (_G by default);
-- opts.interactive is true on a terminal.
function M.session(opts)
  opts = opts or {}
  local s = setmetatable({}, Session)
  s.out = opts.out or function(text) io.stdout:write(text); io.stdout:flush() end
  s.err = opts.err or function(text) io.stdout:flush(); io.stderr:write(text); io.stderr:flush() end
  s.env = opts.env or _G
  s.interactive = opts.interactive  -- on a terminal: ^C was echoed mid-line
  s.pending = nil    -- lines of an incomplete chunk
  s.first = nil      -- the input line the pending chunk starts on
  s.lineno = 0       -- input lines fed so far
  s.errors = 0       -- chunks that failed, for the exit status of a piped run
  -- help(x) at the prompt, as in Python's REPL; only where nothing else is
  -- called help, and only in the REPL's environment
  if rawget(s.env, 'help') == nil then
    rawset(s.env, 'help', function(x)
      if x == nil then s.out(M.help .. '\n') return end
      s.out(require('tide.help').text(x) .. '\n')
    end)
  end
  return s
end

-- The prompt for the next line.
function Session:prompt()
  return self.pending and M.continuation or M.prompt
end

-- Drops an incomplete chunk (Ctrl-C or Ctrl-D at the continuation prompt).
function Session:abandon()
  local had = self.pending ~= nil
  self.pending = nil
  return had
end

local function error_handler(e)
  if type(e) ~= 'string' and type(e) ~= 'number' then
    local mt = getmetatable(e)
    if not (mt and mt.__tostring) then
      return ('(error object is a %s value)'):format(type(e))
    end
  end
  return M.traceback(tostring(e), debug.traceback('', 2))
end

local function pack(...) return select('#', ...), { ... } end

-- Runs a compiled chunk and shows its results or its error.
function Session:run(fn, mode, silent)
  setfenv(fn, self.env)
  local n, res = pack(xpcall(M.call, error_handler, fn, mode))
  if not res[1] then
    self.errors = self.errors + 1
    local msg = tostring(res[2])
    if self.interactive and msg:match('^[^\n]*interrupted') then msg = '\n' .. msg end
    self.err(msg .. '\n')
    return 'error'
  end
  if not silent then
    local text = M.format_results(n - 1, unpack(res, 2, n))
    if text then self.out(text .. '\n') end
  end
  return 'ok'
end

-- Takes one line of input. Returns 'more' while a chunk is incomplete, 'ok',
-- 'error' (already reported), 'empty' (nothing to do), 'help' or 'quit'.
function Session:feed(line)
  self.lineno = self.lineno + 1
  if not self.pending then
    if line:match('^%s*$') then return 'empty' end
    if M.is_command(line) then
      local action, err = M.command(line)
      if action == 'help' then
        if err then
          local ok, text = pcall(function() return require('tide.help').text(err) end)
          self.out((ok and text or ('help: ' .. tostring(text))) .. '\n')
        else
          self.out(M.help .. '\n')
        end
      end
      if not action then
        self.errors = self.errors + 1
        self.err(err .. '\n')
        return 'error'
      end
      return action
    end
    self.pending = {}
    self.first = self.lineno
  end
  local lines = self.pending
  lines[#lines + 1] = line
  local src = table.concat(lines, '\n')
  local fn, how = M.compile(src, nil, self.first)
  if not fn and how == 'incomplete' then return 'more' end
  self.pending = nil
  if not fn then
    self.errors = self.errors + 1
    self.err(how .. '\n')
    return 'error'
  end
  return self:run(fn, how, M.is_silent(src))
end

-- End of input: a chunk still incomplete is an error (its syntax error is
-- reported). Returns 'ok' or 'error'.
function Session:finish()
  if not self.pending then return 'ok' end
  local src = ('\n'):rep((self.first or 1) - 1) .. table.concat(self.pending, '\n')
  self.pending = nil
  local _, err = loadstring(src, M.chunkname)
  self.errors = self.errors + 1
  self.err((err or 'incomplete chunk at end of input') .. '\n')
  return 'error'
end

-- The line shown when the REPL starts on a terminal.
function M.banner()
  local tide = package.loaded.tide
  local version = type(tide) == 'table' and tide.version or '?'
  local jit_version = jit and jit.version or _VERSION
  return ('tide %s (%s)  :help for help, Ctrl-D to quit'):format(version, jit_version)
end

return M

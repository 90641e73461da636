-- Command line of the `tide` executable:
--   tide FILE.lua [--key=value ...] [args]   run a recipe
--   tide -e CODE                            run a chunk (returned values are printed)
--   tide test [DIR_OR_FILE ...] [--filter=PATTERN]
--   tide plot RUN [RUN ...] [--out=FILE]    training curves of runs, as SVG
--   tide launch -n N recipe.lua [args]      the recipe on N local processes (tide.dist)
--   tide                                    the REPL (statements from stdin when piped)
local M = {}

local usage = [[
usage: tide FILE.lua [--key=value] [--flag] [args...]   run a recipe
       tide -e CODE                                    run a chunk of Lua
       tide test [DIR_OR_FILE...] [--filter=PATTERN]   run Lua tests
       tide plot RUN [RUN...] [--out=FILE]             plot runs' metrics.jsonl to SVG
       tide launch -n N FILE.lua [args...]             run a recipe on N local processes
       tide                                            interactive REPL
       tide -h | --version
Recipe options --key=value and --flag land in tide.args (numbers and
booleans converted); everything else stays in arg.]]

-- Converts an option value: numbers and true/false become Lua values.
local function convert(v)
  if v == 'true' then return true end
  if v == 'false' then return false end
  local n = tonumber(v)
  if n ~= nil and v:match('^%s*[-+]?[%d.]') then return n end
  return v
end

-- Splits recipe arguments into tide.args (options) and a plain list.
function M.parse_args(list)
  local opts, rest = {}, {}
  local only_positional = false
  for _, a in ipairs(list) do
    if only_positional then
      rest[#rest + 1] = a
    elseif a == '--' then
      only_positional = true
    else
      local k, v = a:match('^%-%-([%w_%.%-]+)=(.*)$')
      if k then
        opts[k:gsub('-', '_')] = convert(v)
      else
        local flag = a:match('^%-%-([%w_%.%-]+)$')
        if flag then
          local neg = flag:match('^no%-(.+)$')
          if neg then opts[neg:gsub('-', '_')] = false else opts[flag:gsub('-', '_')] = true end
        else
          rest[#rest + 1] = a
        end
      end
    end
  end
  return opts, rest
end

-- Values a chunk returned, shown as the REPL shows them.
local function print_values(n, ...)
  local text = require('tide.repl').format_results(n, ...)
  if text then print(text) end
end

-- The message and traceback of an error in a recipe; the frames below the
-- recipe's own (this file calling it) say nothing to its author.
local function on_error(e)
  if type(e) ~= 'string' and type(e) ~= 'number' then
    local mt = getmetatable(e)
    e = (mt and mt.__tostring) and tostring(e) or ('(error object is a %s value)'):format(type(e))
  end
  local tb = debug.traceback(tostring(e), 2)
  local cut = tb:find("\n%s*%[C%]: in function 'xpcall'")
  return cut and tb:sub(1, cut - 1) or tb
end

local function pack(...) return { n = select('#', ...), ... } end

-- A distributed job is left in order after success and ended on every rank
-- after an error here (tide.dist._at_exit), so no rank waits for a dead one.
local function dist_exit(status)
  local dist = package.loaded['tide.dist']
  if dist then dist._at_exit(status) end
  return status
end

local function run_chunk(fn, ...)
  local res = pack(xpcall(fn, on_error, ...))
  if not res[1] then
    io.stderr:write('tide: ' .. tostring(res[2]) .. '\n')  -- one write: mpirun tags each write as a line
    return dist_exit(1)
  end
  return dist_exit(0), res
end

function M.main(argv)
  local tide = require 'tide'
  local a1 = argv[1]
  if a1 == nil then return 'repl' end
  if a1 == '-h' or a1 == '--help' then print(usage); return 0 end
  if a1 == '-v' or a1 == '--version' then print('tide ' .. tide.version); return 0 end
  if a1 == '-' then return 'repl' end
  if a1 == '-e' then
    local code = argv[2]
    if code == nil then io.stderr:write('tide: -e needs a chunk of code\n'); return 1 end
    local rest = {}
    for i = 3, #argv do rest[#rest + 1] = argv[i] end
    tide.args, rest = M.parse_args(rest)
    rest[0] = '-e'
    _G.arg = rest
    local fn, err = loadstring(code, '=(command line)')
    if not fn then io.stderr:write('tide: ', err, '\n'); return 1 end
    local status, res = run_chunk(fn, unpack(rest))
    if status == 0 then print_values(res.n - 1, unpack(res, 2, res.n)) end
    return status
  end
  if a1 == 'test' then
    local paths = {}
    for i = 2, #argv do paths[#paths + 1] = argv[i] end
    return dist_exit(require('tide.testing').main(paths))
  end
  if a1 == 'launch' then
    local rest = {}
    for i = 2, #argv do rest[#rest + 1] = argv[i] end
    return require('tide.dist.launch').main(rest)
  end
  if a1 == 'plot' then
    local rest = {}
    for i = 2, #argv do rest[#rest + 1] = argv[i] end
    return require('tide.train.plot')._main(rest)
  end
  if a1:sub(1, 1) == '-' then
    io.stderr:write('tide: unknown option ', a1, '\n', usage, '\n')
    return 1
  end
  local rest = {}
  for i = 2, #argv do rest[#rest + 1] = argv[i] end
  local opts
  opts, rest = M.parse_args(rest)
  tide.args = opts
  rest[0] = a1
  rest[-1] = argv[0]
  _G.arg = rest
  require('tide.dist.launch').export_torchrun_env()
  local fn, err = loadfile(a1)
  if not fn then io.stderr:write('tide: ', err, '\n'); return 1 end
  return (run_chunk(fn, unpack(rest)))
end

return M

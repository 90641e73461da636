-- The Lua test runner behind `tide test` and the assertions test files use.
--
--   local T = require 'tide.testing'
--   T.test('add broadcasts', function()
--     T.close(tide.ones(2, 1) + tide.ones(3), {{2, 2, 2}, {2, 2, 2}})
--     T.raises(function() return tide.zeros(2) + tide.zeros(3) end, 'broadcast')
--   end)
--
-- A run ends with the line `N passed, N failed` and exits 1 on any failure.
local M = {}

local registered = {}

-- Registers a test; files are loaded first, then their tests run in order.
function M.test(name, fn)
  if type(name) ~= 'string' or type(fn) ~= 'function' then
    error('test: expected (name, function)', 2)
  end
  registered[#registered + 1] = { name = name, fn = fn, file = M._current_file }
end

-- Marks the running test as skipped, with a reason that is printed.
function M.skip(reason)
  error({ tide_skip = true, reason = reason }, 2)
end

local function fail(msg, level)
  error(msg, (level or 1) + 2)
end

local function show(v)
  if type(v) == 'table' and getmetatable(v) == nil then
    local parts = {}
    for i, x in ipairs(v) do parts[i] = show(x) end
    return '{' .. table.concat(parts, ', ') .. '}'
  end
  return tostring(v)
end

function M.truthy(v, msg)
  if not v then fail(msg or 'expected a true value', 1) end
  return v
end

function M.eq(a, b, msg)
  if a ~= b then fail(('%sexpected %s, got %s'):format(msg and msg .. ': ' or '', show(b), show(a)), 1) end
end

-- Deep equality of plain tables (and of tensors through tolist).
local function deep_eq(a, b)
  local tide = require 'tide'
  if tide.is_tensor(a) then a = a:tolist() end
  if tide.is_tensor(b) then b = b:tolist() end
  if type(a) ~= 'table' or type(b) ~= 'table' then return a == b end
  if #a ~= #b then return false end
  for k, v in pairs(a) do if not deep_eq(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end
M.deep_eq = deep_eq

function M.same(a, b, msg)
  if not deep_eq(a, b) then
    local tide = require 'tide'
    local sa = tide.is_tensor(a) and show(a:tolist()) or show(a)
    local sb = tide.is_tensor(b) and show(b:tolist()) or show(b)
    fail(('%sexpected %s, got %s'):format(msg and msg .. ': ' or '', sb, sa), 1)
  end
end

-- Flattens a number, nested table or tensor to a list of numbers and a shape.
local function flatten(x)
  local tide = require 'tide'
  if tide.is_tensor(x) then x = x:tolist() end
  local flat, shape = {}, {}
  local function walk(v, d)
    if type(v) == 'table' then
      shape[d] = #v
      for _, e in ipairs(v) do walk(e, d + 1) end
    else
      if type(v) == 'boolean' then v = v and 1 or 0 end
      flat[#flat + 1] = v
    end
  end
  walk(x, 1)
  return flat, shape
end
M.flatten = flatten

-- Elementwise |a - b| <= atol + rtol * |b| (NaNs must match, infinities too).
-- a and b may be tensors, nested tables or numbers; shapes must agree.
function M.close(a, b, opts, msg)
  opts = opts or {}
  local rtol, atol = opts.rtol or 1e-5, opts.atol or 1e-6
  local tide = require 'tide'
  if tide.is_tensor(a) and tide.is_tensor(b) then
    local sa, sb = a:shape(), b:shape()
    if not deep_eq(sa, sb) then fail(('shape %s ~= %s'):format(show(sa), show(sb)), 1) end
  end
  local fa, sa = flatten(a)
  local fb, sb = flatten(b)
  if #fa ~= #fb then
    fail(('%ssizes differ: %d vs %d elements (shapes %s, %s)'):format(msg and msg .. ': ' or '', #fa, #fb, show(sa), show(sb)), 1)
  end
  for i = 1, #fa do
    local x, y = fa[i], fb[i]
    local ok
    if y ~= y then ok = x ~= x
    elseif y == math.huge or y == -math.huge then ok = x == y
    else ok = math.abs(x - y) <= atol + rtol * math.abs(y) end
    if not ok then
      fail(('%selement %d: got %.9g, expected %.9g (rtol %g, atol %g)'):format(msg and msg .. ': ' or '', i, x, y, rtol, atol), 1)
    end
  end
end

-- The CUDA device the device-parity tests run on: 'cuda' when one is present
-- (a GPU, or the emulator of tide-cudaemu), else nil; a test calls
-- T.need_cuda() first to be skipped where there is none.
function M.need_cuda()
  local tide = require 'tide'
  if not tide.cuda.is_available() then M.skip('no CUDA device') end
  return 'cuda'
end

-- Default tolerances of device parity per dtype: f32 and f64 agree to
-- rounding, bf16/f16 to their precision.
local parity_tol = {
  f32 = { rtol = 1e-5, atol = 1e-6 }, f64 = { rtol = 1e-12, atol = 1e-12 },
  bf16 = { rtol = 1e-2, atol = 1e-2 }, f16 = { rtol = 1e-3, atol = 1e-3 },
}

-- Runs fn on args (tensors, numbers, tables...) as given on the CPU and on
-- copies on device (default 'cuda'), then requires every result to be on the
-- right device and close (per opts.rtol/atol, else by dtype; opts.exact: the
-- same bits). Results may be a tensor, a list of tensors or numbers. Returns
-- the CPU results and the device results moved to the CPU.
function M.device_parity(fn, args, opts, msg)
  local tide = require 'tide'
  opts = opts or {}
  local device = opts.device or 'cuda'
  local function move(v)
    if tide.is_tensor(v) then
      local d = v:to(device)
      if v.requires_grad then d = d:detach():requires_grad_(true) end
      return d
    end
    if type(v) == 'table' and getmetatable(v) == nil then
      local r = {}
      for k, x in pairs(v) do r[k] = move(x) end
      return r
    end
    return v
  end
  local dargs = move(args)
  local want = { fn(unpack(args, 1, args.n or #args)) }
  local got = { fn(unpack(dargs, 1, dargs.n or #dargs)) }
  local label = msg and msg .. ': ' or ''
  if #got ~= #want then fail(('%s%d results on %s, %d on the cpu'):format(label, #got, device, #want), 1) end
  local host = {}
  local function compare(g, w, where)
    if tide.is_tensor(w) then
      if not tide.is_tensor(g) then fail(label .. where .. ': not a tensor on ' .. device, 2) end
      if g.device == 'cpu' then fail(label .. where .. ': result is on the cpu, expected ' .. device, 2) end
      if g:dtype() ~= w:dtype() then fail(('%s%s: dtype %s, expected %s'):format(label, where, g:dtype(), w:dtype()), 2) end
      local gh = g:cpu()
      if opts.exact then
        M.same(gh:tolist(), w:tolist(), label .. where)
      else
        local tol = opts.rtol and opts or parity_tol[w:dtype()] or { rtol = 0, atol = 0 }
        M.close(gh, w, tol, label .. where)
      end
      return gh
    elseif type(w) == 'table' then
      local r = {}
      for k, x in pairs(w) do r[k] = compare(g[k], x, where .. '[' .. tostring(k) .. ']') end
      return r
    else
      if type(w) == 'number' and not opts.exact then M.close(g, w, opts, label .. where)
      else M.eq(g, w, label .. where) end
      return g
    end
  end
  for i = 1, #want do host[i] = compare(got[i], want[i], 'result ' .. i) end
  return want, host
end

-- Calls fn and requires an error whose message contains `pattern` (plain text).
function M.raises(fn, pattern, msg)
  local ok, err = pcall(fn)
  if ok then fail((msg and msg .. ': ' or '') .. 'expected an error' .. (pattern and (' mentioning "' .. pattern .. '"') or ''), 1) end
  err = tostring(err)
  if pattern and not err:find(pattern, 1, true) then
    fail(('%serror "%s" does not mention "%s"'):format(msg and msg .. ': ' or '', err, pattern), 1)
  end
  return err
end

-- Files for tests: whole-file read and write (binary), existence, and a
-- scratch directory made on first use:
--   local tmp, cleanup = T.scratch()
--   T.write(tmp('a.txt'), 'x')   -- tmp() alone is the directory
--   cleanup()                     -- removes it; true when it is gone
function M.read(path)
  local f = assert(io.open(path, 'rb'))
  local s = f:read('*a')
  f:close()
  return s
end

function M.write(path, s)
  local f = assert(io.open(path, 'wb'))
  f:write(s)
  f:close()
end

function M.exists(path)
  local f = io.open(path, 'rb')
  if f then f:close() end
  return f ~= nil
end

function M.scratch()
  local files = require 'tide.data.files'
  local dir = files.temp_dir('tide_scratch')
  local function tmp(name)
    files.mkdir_p(dir, 'scratch')  -- again, after a cleanup
    return name and dir .. '/' .. name or dir
  end
  local function cleanup()
    files.remove_tree(dir)
    return not M.exists(dir)
  end
  return tmp, cleanup, dir
end

-- A deterministic pseudo-random number stream in Lua, for reference data that
-- does not depend on the engine being tested.
function M.lcg(seed)
  local s = seed or 12345
  return function()
    s = (s * 1103515245 + 12345) % 2147483648
    return s / 2147483648
  end
end

-- A random f64 tensor of shape that requires grad, values in [lo, hi)
-- (default [-1, 1)) drawn from rng (an M.lcg): gradcheck's inputs.
function M.rand_param(rng, shape, lo, hi)
  local tide = require 'tide'
  lo, hi = lo or -1, hi or 1
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  local vals = {}
  for i = 1, n do vals[i] = lo + (hi - lo) * rng() end
  local t = tide.tensor(vals, { dtype = 'f64' })
  if #shape == 0 then t = t:reshape({}) else t = t:view(shape) end
  return t:requires_grad_()
end

local function list_files(paths)
  local files = {}
  for _, p in ipairs(paths) do
    local quoted = "'" .. p:gsub("'", "'\\''") .. "'"
    local is_file = os.execute('test -f ' .. quoted) == 0
    if p:match('%.lua$') and is_file then
      files[#files + 1] = p
    else
      local pipe = io.popen('find ' .. quoted .. " -name 'test_*.lua' -type f 2>/dev/null | sort")
      local found = false
      for line in pipe:lines() do files[#files + 1] = line; found = true end
      pipe:close()
      if not found then io.stderr:write('tide test: no test files in ', p, '\n') end
    end
  end
  return files
end

function M.main(args)
  local cli = require 'tide.cli'
  local opts, paths = cli.parse_args(args)
  if #paths == 0 then paths = { 'tests/lua' } end
  local files = list_files(paths)
  local passed, failed, skipped = 0, 0, 0
  local failures = {}
  for _, file in ipairs(files) do
    registered = {}
    M._current_file = file
    local chunk, err = loadfile(file)
    local ok = chunk ~= nil
    if ok then ok, err = xpcall(chunk, debug.traceback) end
    if not ok then
      failed = failed + 1
      failures[#failures + 1] = file .. ': cannot load: ' .. tostring(err)
      io.write('FAIL ', file, ' (load)\n')
    end
    for _, t in ipairs(registered) do
      if not opts.filter or t.name:find(opts.filter, 1, true) or file:find(opts.filter, 1, true) then
        local t0 = os.clock()
        local tok, terr = xpcall(t.fn, function(e)
          if type(e) == 'table' and e.tide_skip then return e end
          return debug.traceback(tostring(e), 2)
        end)
        collectgarbage('collect')
        local dt = os.clock() - t0
        if tok then
          passed = passed + 1
          if opts.verbose then io.write(('ok   %s :: %s (%.2fs)\n'):format(file, t.name, dt)) end
        elseif type(terr) == 'table' and terr.tide_skip then
          skipped = skipped + 1
          io.write(('skip %s :: %s: %s\n'):format(file, t.name, tostring(terr.reason)))
        else
          failed = failed + 1
          failures[#failures + 1] = ('%s :: %s\n%s'):format(file, t.name, tostring(terr))
          io.write(('FAIL %s :: %s\n'):format(file, t.name))
        end
      end
    end
  end
  for _, f in ipairs(failures) do io.write('\n', f, '\n') end
  if skipped > 0 then
    io.write(('%d passed, %d failed, %d skipped\n'):format(passed, failed, skipped))
  else
    io.write(('%d passed, %d failed\n'):format(passed, failed))
  end
  io.flush()
  return (failed > 0 or passed == 0) and 1 or 0
end

return M

-- Streams: the data pipeline's Lua face. A stream yields records (tables,
-- strings, id arrays) one at a time and is read with a plain
--   for rec in stream do ... end
-- Each combinator returns a new stream over the old one; nothing is read
-- until a loop asks, and a pass holds one record (or one buffer, for
-- shuffle and batch) at a time, so memory stays constant however large the
-- source. A stream can be read again: each `for` loop is a pass from the
-- start of its source; `stream:iter()` gives a fresh pass's next function
-- (and its close function) for reading a record at a time.
--
-- Open files: a pass releases its file when it reaches the end, when it
-- fails, when it is closed (the close function from iter(), or
-- `stream:close()` for the pass a `for` loop left by break) and when the
-- next `for` loop over the same stream starts. A loop left by break cannot
-- be seen otherwise; its reader is closed at garbage collection, which the
-- readers trigger themselves when many files are open.
--
-- Counts: every filter counts what it saw and kept, the readers count
-- bytes, records and skipped lines, packing counts dropped tokens;
-- `stream:report()` lists them for the last pass, from the source down.
local rng = require 'tide.data.rng'
local new_table = require 'table.new'

local M = {}
local Stream = {}
Stream.__index = Stream
M.Stream = Stream

-- A stream whose passes come from open(), which returns a next function
-- (giving nil at the end) and, when the pass holds something to release, a
-- close function (called at most once by the stream; a pass that ends
-- releases what it holds by itself). desc names the step for reports and
-- manifests.
local function new(open, desc, parent)
  return setmetatable({ _open = open, desc = desc, parent = parent }, Stream)
end
M.new = new

function M.is_stream(x)
  return getmetatable(x) == Stream
end

local function nothing() end

-- A fresh pass: the next function of a new reading, and a function that
-- closes it (its files) when it is left before the end.
function Stream:iter()
  local nx, close = self._open()
  return nx, close or nothing
end

-- Closes the pass kept for a `for` loop (a loop left by break keeps it).
function Stream:close()
  local close = self._close
  self._cur, self._close = nil, nil
  if close then close() end
  return self
end

-- `for rec in stream do`: the loop calls the stream itself, first with a
-- nil control value and then with the record it got last, never nil; so a
-- nil one marks a loop's start, and every loop is a whole pass from the
-- start, even after an earlier loop left with break.
function Stream:__call(_, last)
  local nx = self._cur
  if last == nil or not nx then
    if self._close then self:close() end  -- an earlier loop's pass, left by break
    local close
    nx, close = self._open()
    self._cur, self._close = nx, close
  end
  -- (no pcall here: it would keep every loop out of compiled traces; a
  -- reader closes its own file when it fails)
  local v = nx()
  if v == nil then self:close() end
  return v
end

-- Drops the pass a loop left open (its reader and buffers): as close().
Stream.reset = Stream.close

-- A stream over an array (each pass walks it) or an iterator function (one
-- pass only: a function cannot be rewound).
function M.from(src, desc)
  if type(src) == 'table' and not M.is_stream(src) then
    return new(function()
      local i = 0
      return function()
        i = i + 1
        return src[i]
      end
    end, desc or ('array of %d'):format(#src))
  elseif type(src) == 'function' then
    local used = false
    return new(function()
      if used then error('stream: a stream over an iterator function can be read only once', 3) end
      used = true
      return src
    end, desc or 'iterator')
  end
  error('stream.from: expected an array or an iterator function, got ' .. type(src), 2)
end

local function check_fn(fn, what)
  if type(fn) ~= 'function' and not (type(fn) == 'table' and getmetatable(fn) and getmetatable(fn).__call) then
    error(what .. ': expected a function, got ' .. type(fn), 3)
  end
end

-- Keeps the records for which fn(rec) is true. name labels the filter in
-- reports (default: '?'); the counts are in s.seen and s.kept. A stateful
-- filter (a callable table such as tide.data.filters.exact_dedup()) with a
-- reset method is reset at the start of each pass, so every pass (each split
-- of a split stream, each epoch) makes the same decisions.
function Stream:filter(fn, name)
  check_fn(fn, 'filter')
  local s
  s = new(function()
    if type(fn) == 'table' and type(fn.reset) == 'function' then fn:reset() end
    local nx, cl = self:iter()
    s.seen, s.kept = 0, 0
    return function()
      while true do
        local rec = nx()
        if rec == nil then return nil end
        s.seen = s.seen + 1
        if fn(rec) then
          s.kept = s.kept + 1
          return rec
        end
      end
    end, cl
  end, 'filter ' .. (name or '?'), self)
  s.is_filter, s.name, s.seen, s.kept = true, name, 0, 0
  return s
end

-- Replaces each record by fn(rec); a nil result drops the record.
function Stream:map(fn, name)
  check_fn(fn, 'map')
  return new(function()
    local nx, cl = self:iter()
    return function()
      while true do
        local rec = nx()
        if rec == nil then return nil end
        local out = fn(rec)
        if out ~= nil then return out end
      end
    end, cl
  end, 'map ' .. (name or '?'), self)
end

-- Replaces each record by the records of the list fn(rec) returns, in
-- order (datasets' batched map that returns more rows than it was given,
-- or pandas' explode); nil or an empty list drops the record.
function Stream:flat_map(fn, name)
  check_fn(fn, 'flat_map')
  return new(function()
    local nx, cl = self:iter()
    local list, n, pos = nil, 0, 1
    return function()
      while true do
        if pos <= n then
          local v = list[pos]
          list[pos] = nil
          pos = pos + 1
          if v ~= nil then return v end
        else
          local rec = nx()
          if rec == nil then return nil end
          list, pos = fn(rec), 1
          if list ~= nil and type(list) ~= 'table' then
            error(('flat_map %s: fn must return a list or nil, got a %s'):format(name or '?', type(list)), 0)
          end
          n = list and #list or 0
        end
      end
    end, cl
  end, 'flat_map ' .. (name or '?'), self)
end

local function count_arg(n, what, min)
  if type(n) ~= 'number' or n % 1 ~= 0 or n < min then
    error(('%s: expected an integer >= %d, got %s'):format(what, min, tostring(n)), 3)
  end
end

-- The first n records.
function Stream:take(n)
  count_arg(n, 'take', 0)
  return new(function()
    local nx, cl, i = nil, nil, 0
    local function close()
      if cl then cl() end
      nx, cl = nil, nil
    end
    return function()
      if i >= n then
        close()  -- the source may hold more: release it now
        return nil
      end
      if not nx then nx, cl = self:iter() end
      i = i + 1
      return nx()
    end, close
  end, 'take ' .. n, self)
end

-- All but the first n records.
function Stream:skip(n)
  count_arg(n, 'skip', 0)
  return new(function()
    local nx, cl = self:iter()
    local ok, err = pcall(function()
      for _ = 1, n do
        if nx() == nil then break end
      end
    end)
    if not ok then cl(); error(err, 0) end
    return nx, cl
  end, 'skip ' .. n, self)
end

-- Arrays of n records (the last may be shorter).
function Stream:batch(n)
  count_arg(n, 'batch', 1)
  return new(function()
    local nx, cl = self:iter()
    local done = false
    return function()
      if done then return nil end
      local b = new_table(n, 0)
      for i = 1, n do
        local rec = nx()
        if rec == nil then done = true; break end
        b[i] = rec
      end
      if #b == 0 then return nil end
      return b
    end, cl
  end, 'batch ' .. n, self)
end

-- A buffer shuffle, as datasets' IterableDataset.shuffle: buffer_size
-- records are held; each output is a random one of them, replaced by the
-- next record read. Deterministic for a seed; each pass reshuffles the same
-- way (pass seed + epoch for a different order per epoch).
function Stream:shuffle(buffer_size, seed)
  count_arg(buffer_size, 'shuffle', 1)
  seed = seed or 0
  count_arg(seed, 'shuffle seed', 0)
  return new(function()
    local nx, cl = self:iter()
    local r = rng.new(seed)
    local buf, n, eof = new_table(buffer_size, 0), 0, false
    return function()
      while not eof and n < buffer_size do
        local rec = nx()
        if rec == nil then eof = true else n = n + 1; buf[n] = rec end
      end
      if n == 0 then return nil end
      local i = r:below(n) + 1
      local out = buf[i]
      local rec = not eof and nx() or nil
      if rec ~= nil then
        buf[i] = rec
      else
        eof = true
        buf[i] = buf[n]
        buf[n] = nil
        n = n - 1
      end
      return out
    end, cl
  end, ('shuffle %d seed %d'):format(buffer_size, seed), self)
end

-- The split of opts such as {valid = 0.005, seed = 1} (every key but seed
-- names a split and its fraction; what the fractions leave goes to 'train'):
-- the split names, and which(i), the split of record i (0-based), which
-- depends only on (seed, i).
function M.splitter(opts, level)
  level = (level or 1) + 1
  if type(opts) ~= 'table' then error('split: expected a table such as {valid = 0.005, seed = 1}', level) end
  local seed = opts.seed or 0
  if type(seed) ~= 'number' or seed % 1 ~= 0 or seed < 0 then
    error('split seed: expected an integer >= 0, got ' .. tostring(seed), level)
  end
  local names, total = {}, 0
  for k, v in pairs(opts) do
    if k ~= 'seed' then
      if type(k) ~= 'string' or type(v) ~= 'number' or v < 0 or v > 1 then
        error(('split: %s = %s is not a fraction in [0, 1]'):format(tostring(k), tostring(v)), level)
      end
      names[#names + 1] = k
      total = total + v
    end
  end
  if total > 1 + 1e-12 then error(('split: the fractions add up to %g, more than 1'):format(total), level) end
  table.sort(names)
  local rest = opts.train == nil and 'train' or nil
  local bounds, acc = {}, 0
  for _, k in ipairs(names) do
    acc = acc + opts[k]
    bounds[#bounds + 1] = { k, acc }
  end
  local function which(i)
    local u = rng.hash_uniform(seed, i)
    for _, b in ipairs(bounds) do
      if u < b[2] then return b[1] end
    end
    return rest or bounds[#bounds][1]
  end
  local all = rest and { rest } or {}
  for _, k in ipairs(names) do all[#all + 1] = k end
  return all, which, seed
end

-- Two streams over the same source: { train = ..., valid = ... } (see
-- M.splitter). Record i's split depends only on (seed, i), so the splits are
-- disjoint, cover the source, and do not change from pass to pass; each
-- split's pass reads the whole source (write_shards with opts.split writes
-- every split in one pass).
function Stream:split(opts)
  local names, which, seed = M.splitter(opts, 2)
  local out = {}
  for _, name in ipairs(names) do
    out[name] = new(function()
      local nx, cl = self:iter()
      local i = -1
      return function()
        while true do
          local rec = nx()
          if rec == nil then return nil end
          i = i + 1
          if which(i) == name then return rec end
        end
      end, cl
    end, ('split %s seed %d'):format(name, seed), self)
  end
  return out
end

-- The number of records in a fresh pass.
function Stream:count()
  local n, nx = 0, self:iter()
  while nx() ~= nil do n = n + 1 end
  return n
end

-- The records of a fresh pass, as an array (for small streams).
function Stream:collect()
  local out, nx = {}, self:iter()
  for rec in nx do out[#out + 1] = rec end
  return out
end

-- The steps from the source to this stream, for manifests.
function Stream:describe()
  local steps, s = {}, self
  while s do
    table.insert(steps, 1, s.desc)
    s = s.parent
  end
  return steps
end

-- The counts of the last pass, one line per counting step from the source
-- down: the readers' bytes and records, each filter's share kept (and the
-- share of the source left after it), packing's dropped tokens.
function Stream:report()
  local chain, s = {}, self
  while s do
    table.insert(chain, 1, s)
    s = s.parent
  end
  local lines, source_n = {}, nil
  for _, st in ipairs(chain) do
    if st.report_line then
      lines[#lines + 1] = st:report_line()
      source_n = source_n or st.records
    elseif st.is_filter then
      local base = source_n or st.seen
      lines[#lines + 1] = ('filter %s: kept %d of %d (%.2f%%); %.2f%% of data after filtering'):format(
        st.name or '?', st.kept, st.seen, st.seen > 0 and 100 * st.kept / st.seen or 0,
        base > 0 and 100 * st.kept / base or 0)
    end
  end
  return table.concat(lines, '\n')
end

return M

-- The data readers: JSON Lines (plain or gzip) and plain text files, as
-- streams (tide/data/stream.lua). Reading, inflating and parsing are C
-- (runtime/lines.c, runtime/jsonl.c); only the requested fields become Lua
-- values, so unused fields cost a scan and nothing more.
local ffi = require 'ffi'
local C = require 'tide.C'
local json = require 'tide.json'
local errors = require 'tide.errors'
local stream = require 'tide.data.stream'
local files = require 'tide.data.files'

local M = {}

local PROGRESS_EVERY = 5  -- seconds between progress lines on long reads

local last_error = errors.message

-- Readers open now: a loop left by break leaves its reader to the garbage
-- collector, which the Lua heap alone would not wake in time (each reader is
-- a few hundred bytes of Lua and a descriptor). Past this many, a full
-- collection runs before the next file is opened.
local open_readers, COLLECT_AT = 0, 32

local function release(reader)
  open_readers = open_readers - 1
  C.tide_lines_close(reader)
end

-- Opens path for reading lines; running out of descriptors is reported as
-- such, after one collection has had the chance to close forgotten readers.
local function open_lines(path, rbuf, max_line, level)
  if open_readers >= COLLECT_AT then collectgarbage() end
  local rc = C.tide_lines_open(path, rbuf)
  if rc ~= 0 and last_error():find('Too many open files', 1, true) then
    collectgarbage()
    rc = C.tide_lines_open(path, rbuf)
  end
  if rc ~= 0 then
    local msg = last_error()
    if msg:find('Too many open files', 1, true) then
      msg = msg .. (' (%d of them jsonl readers: close a stream left by break with stream:close(), '
        .. 'or raise ulimit -n)'):format(open_readers)
    end
    error('tide.data.jsonl: ' .. msg, level + 1)
  end
  open_readers = open_readers + 1
  local reader = ffi.gc(rbuf[0], release)
  if max_line and C.tide_lines_set_max_line(reader, max_line) ~= 0 then
    error('tide.data.jsonl: ' .. last_error(), level + 1)
  end
  return reader
end

local function mb(n) return n / 1e6 end

local JSONL_NAME = function(name)
  return name:match('%.jsonl$') or name:match('%.json$') or name:match('%.jsonl%.gz$') or name:match('%.json%.gz$')
end

-- tide.data.jsonl(paths_or_glob, opts): a stream of records, one per JSON
-- Lines line, from .jsonl/.json files and their .gz forms (a directory: all
-- such files in it, recursively, sorted). opts:
--   fields    array of the fields to keep (default: every top-level one); a
--             record missing one is skipped and counted. A dotted name is a
--             path, as datasets' flatten() names nested fields: 'answers.text'
--             is member text of the object answers (rec['answers.text'], a
--             Lua list when the JSON holds a list); a top-level key spelled
--             'answers.text' is taken first (runtime/jsonl.c has the rules)
--   strict    a malformed line or missing field is an error instead of a
--             skip (default false)
--   progress  false: no progress lines (default: one every 5 s on long reads)
--   max_line_bytes  the longest line read (default 256 MiB); a longer one is
--             never held whole: it is skipped like a malformed line, or an
--             error naming the file and line with strict
-- A skipped line is counted, and each file with skips gets one warning line
-- naming the first bad line. A corrupt or truncated gzip ends the pass with
-- an error naming the file and byte offset, after every whole record before it.
-- The stream's counts (bytes, records, malformed, missing) are live fields.
function M.jsonl(spec, opts)
  opts = opts or {}
  if type(opts) ~= 'table' then error('jsonl: options must be a table', 2) end
  local paths = files.expand(spec, JSONL_NAME, 'tide.data.jsonl', 2)
  local fields = opts.fields
  if fields ~= nil and type(fields) ~= 'table' then error('jsonl: fields must be an array of names', 2) end
  fields = fields or {}
  for i, f in ipairs(fields) do
    if type(f) ~= 'string' then error(('jsonl: fields[%d] is a %s, not a name'):format(i, type(f)), 2) end
  end
  local nf = #fields
  local cfields, clens = ffi.new('const char*[?]', nf + 1), ffi.new('int64_t[?]', nf + 1)
  for i, f in ipairs(fields) do cfields[i - 1], clens[i - 1] = f, #f end
  local total = 0
  for _, p in ipairs(paths) do total = total + files.size(p) end
  local show = opts.progress ~= false
  local max_line = opts.max_line_bytes
  if max_line ~= nil and (type(max_line) ~= 'number' or max_line % 1 ~= 0 or max_line < 1 or max_line > 2^50) then
    error('jsonl: max_line_bytes must be an integer in 1..2^50, got ' .. tostring(max_line), 2)
  end
  local s
  s = stream.new(function()
    s.files, s.bytes, s.text_bytes, s.records, s.malformed, s.missing = 0, 0, 0, 0, 0, 0
    local pbuf = ffi.new('tide_jsonl*[1]')
    if C.tide_jsonl_new(cfields, clens, nf, pbuf) ~= 0 then error('jsonl: ' .. last_error(), 3) end
    local parser = ffi.gc(pbuf[0], C.tide_jsonl_free)
    local rbuf = ffi.new('tide_lines*[1]')
    local line, len = ffi.new('const char*[1]'), ffi.new('int64_t[1]')
    local key, klen, kind = ffi.new('const char*[1]'), ffi.new('int64_t[1]'), ffi.new('int32_t[1]')
    local val, vlen = ffi.new('const char*[1]'), ffi.new('int64_t[1]')
    local fb, tb, fs = ffi.new('int64_t[1]'), ffi.new('int64_t[1]'), ffi.new('int64_t[1]')
    local fi, reader, path = 0, nil, nil
    local done_bytes = 0                   -- bytes of the files already finished
    local bad, bad_first, miss, miss_first  -- this file's skips
    local t0, next_report = os.time(), os.time() + PROGRESS_EVERY
    local function finish_file()
      C.tide_lines_counts(reader, fb, tb, fs)
      done_bytes = done_bytes + tonumber(fs[0])
      s.bytes, s._reader = done_bytes, nil
      s.text_bytes = s.text_bytes + tonumber(tb[0])
      release(ffi.gc(reader, nil))
      reader = nil
      if bad > 0 or miss > 0 then
        local parts = {}
        if bad > 0 then parts[#parts + 1] = ('%d malformed line%s (first: %s)'):format(bad, bad == 1 and '' or 's', bad_first) end
        if miss > 0 then parts[#parts + 1] = ('%d record%s missing a field (first: %s)'):format(miss, miss == 1 and '' or 's', miss_first) end
        io.stderr:write(('tide.data.jsonl: %s: skipped %s\n'):format(path, table.concat(parts, ' and ')))
      end
    end
    local function record()
      local rec, n = {}, C.tide_jsonl_count(parser)
      for i = 0, n - 1 do
        C.tide_jsonl_field(parser, i, key, klen, kind, val, vlen)
        local k = nf > 0 and fields[i + 1] or ffi.string(key[0], klen[0])
        local kd = kind[0]
        if kd == C.TIDE_JV_MISSING then return nil, k end
        local v
        if kd == C.TIDE_JV_STRING then v = ffi.string(val[0], vlen[0])
        elseif kd == C.TIDE_JV_NUMBER then v = tonumber(ffi.string(val[0], vlen[0]))
        elseif kd == C.TIDE_JV_TRUE then v = true
        elseif kd == C.TIDE_JV_FALSE then v = false
        elseif kd == C.TIDE_JV_NULL then v = json.null
        else v = json.decode(ffi.string(val[0], vlen[0])) end
        rec[k] = v
      end
      return rec
    end
    -- the pass's file, released when the pass ends, fails or is closed
    local function close()
      if reader then
        release(ffi.gc(reader, nil))
        reader = nil
        if s._reader then s._reader = nil end
      end
      fi = #paths  -- a closed pass gives nothing more
    end
    local function fail(msg)
      close()
      error(msg, 3)
    end
    return function()
      while true do
        if not reader then
          fi = fi + 1
          path = paths[fi]
          if not path then return nil end
          reader = open_lines(path, rbuf, max_line, 2)
          s._reader, s._done = reader, done_bytes
          bad, miss = 0, 0
          s.files = s.files + 1
        end
        local r = C.tide_lines_next(reader, line, len)
        if r < 0 then
          fail('tide.data.jsonl: ' .. last_error())
        elseif r == 0 then
          finish_file()
        elseif r == 2 then  -- a line over max_line_bytes, skipped without being held
          local msg = last_error()
          if opts.strict then fail('tide.data.jsonl: ' .. msg) end
          bad = bad + 1
          s.malformed = s.malformed + 1
          if bad == 1 then bad_first = msg:match(': (line %d+ .*)$') or msg end
        else
          local pr = C.tide_jsonl_parse(parser, line[0], len[0])
          if pr < 0 then
            local where = ('%s:%d: %s'):format(path, tonumber(C.tide_lines_lineno(reader)), last_error())
            if opts.strict then fail('tide.data.jsonl: ' .. where) end
            bad = bad + 1
            s.malformed = s.malformed + 1
            if bad == 1 then bad_first = 'line ' .. where:match(':(%d+: .*)$') end
          elseif pr > 0 then
            local rec, missing = record()
            if rec then
              s.records = s.records + 1
              if show and s.records % 4096 == 0 and os.time() >= next_report then
                C.tide_lines_counts(reader, fb, tb, fs)
                local at = done_bytes + tonumber(fb[0])
                io.stderr:write(('tide.data.jsonl: %.1f of %.1f MB read (%.0f%%), %d records, %.1f MB/s\n'):format(
                  mb(at), mb(total), total > 0 and 100 * at / total or 100, s.records, mb(at) / math.max(1, os.time() - t0)))
                next_report = os.time() + PROGRESS_EVERY
              end
              return rec
            end
            local lineno = tonumber(C.tide_lines_lineno(reader))
            if opts.strict then fail(('tide.data.jsonl: %s:%d: no field %q'):format(path, lineno, missing)) end
            miss = miss + 1
            s.missing = s.missing + 1
            if miss == 1 then miss_first = ('line %d has no field %q'):format(lineno, missing) end
          end
        end
      end
    end, close
  end, 'jsonl ' .. table.concat(paths, ' ', 1, math.min(#paths, 3)) .. (#paths > 3 and (' and %d more'):format(#paths - 3) or ''))
  s.paths, s.total_bytes = paths, total
  -- bytes of the input consumed so far (compressed bytes for gzip), at any time
  function s.bytes_read(st)
    if not st._reader then return st.bytes end
    local a, b, c = ffi.new('int64_t[1]'), ffi.new('int64_t[1]'), ffi.new('int64_t[1]')
    C.tide_lines_counts(st._reader, a, b, c)
    return st._done + tonumber(a[0])
  end
  s.files, s.bytes, s.text_bytes, s.records, s.malformed, s.missing = 0, 0, 0, 0, 0, 0
  function s.report_line(st)
    return ('jsonl: %d records from %d files (%.1f MB, %.1f MB of text); skipped %d malformed lines, %d missing a field'):format(
      st.records, st.files, mb(st.total_bytes), mb(st.text_bytes), st.malformed, st.missing)
  end
  return s
end

-- tide.data.text(paths_or_glob, opts): one record per file, {path = ...,
-- text = ...}, from files, globs and directories (recursively, sorted).
-- opts.extensions: an array such as {'.py'} to take only those files from
-- directories.
function M.text(spec, opts)
  opts = opts or {}
  if type(opts) ~= 'table' then error('text: options must be a table', 2) end
  local exts = opts.extensions
  local accept
  if exts then
    if type(exts) ~= 'table' then error('text: extensions must be an array such as {".py"}', 2) end
    accept = function(name)
      for _, e in ipairs(exts) do
        if name:sub(-#e) == e then return true end
      end
      return false
    end
  end
  local paths = files.expand(spec, accept, 'tide.data.text', 2)
  local s
  s = stream.new(function()
    local i = 0
    s.records, s.bytes = 0, 0
    return function()
      i = i + 1
      local p = paths[i]
      if not p then return nil end
      local f, err = io.open(p, 'rb')
      if not f then error('tide.data.text: ' .. tostring(err), 2) end
      local t = f:read('*a')
      f:close()
      s.records, s.bytes = s.records + 1, s.bytes + #t
      return { path = p, text = t }
    end
  end, ('text %d files'):format(#paths))
  s.paths, s.records, s.bytes = paths, 0, 0
  function s.report_line(st)
    return ('text: %d files, %.1f MB'):format(st.records, mb(st.bytes))
  end
  return s
end

return M

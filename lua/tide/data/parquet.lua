-- tide.data.parquet: Parquet files as a stream of records, like
-- tide.data.jsonl. The footer, pages, codecs and encodings are C
-- (runtime/parquet.c): it reads one row group's column chunks at a time and
-- decodes each a page at a time into flat arrays (string pointers and
-- lengths, numbers, a null flag per row), and the records are built here by
-- index, so a column costs one ffi.string or one number per row and nothing
-- is parsed in Lua. A page's buffers are reused for the next, so they stay
-- in cache and memory holds the compressed chunks and one page per column.
local ffi = require 'ffi'
local C = require 'tide.C'
local errors = require 'tide.errors'
local stream = require 'tide.data.stream'
local files = require 'tide.data.files'
local new_table = require 'table.new'

local M = {}

local PROGRESS_EVERY = 5  -- seconds between progress lines on long reads
local last_error = errors.message

local BOOLEAN, INT32, INT64, FLOAT, DOUBLE, BYTE_ARRAY =
  C.TIDE_PQ_BOOLEAN, C.TIDE_PQ_INT32, C.TIDE_PQ_INT64, C.TIDE_PQ_FLOAT, C.TIDE_PQ_DOUBLE, C.TIDE_PQ_BYTE_ARRAY
local value_ptr = {
  [BOOLEAN] = ffi.typeof('const uint8_t *'), [INT32] = ffi.typeof('const int32_t *'),
  [INT64] = ffi.typeof('const int64_t *'), [FLOAT] = ffi.typeof('const float *'),
  [DOUBLE] = ffi.typeof('const double *'),
}

local function mb(n) return n / 1e6 end

local PARQUET_NAME = function(name) return name:match('%.parquet$') or name:match('%.parq$') end

-- Opens one file: the reader (closed by the GC if a pass is abandoned) and
-- the indices of the columns asked for (all when names is nil), each
-- checked readable; errors name the file and the column.
local function open_file(path, names, level)
  local pbuf = ffi.new('tide_parquet*[1]')
  if C.tide_parquet_open(path, pbuf) ~= 0 then
    if last_error():find('Too many open files', 1, true) then
      collectgarbage()
      if C.tide_parquet_open(path, pbuf) ~= 0 then errors.raise(level + 1, 'tide.data.parquet: ') end
    else
      errors.raise(level + 1, 'tide.data.parquet: ')
    end
  end
  local r = ffi.gc(pbuf[0], C.tide_parquet_close)
  local cols = {}
  local name, ty = ffi.new('const char*[1]'), ffi.new('int32_t[1]')
  if names then
    for i, n in ipairs(names) do
      local idx = C.tide_parquet_find_column(r, n, #n)
      if idx < 0 then
        local have = {}
        for j = 0, C.tide_parquet_num_columns(r) - 1 do
          C.tide_parquet_column_info(r, j, name, ty)
          have[#have + 1] = ffi.string(name[0])
        end
        error(('tide.data.parquet: %s has no column %q (its columns: %s)'):format(path, n, table.concat(have, ', ')), level + 1)
      end
      cols[i] = { index = idx, name = n }
    end
  else
    for j = 0, C.tide_parquet_num_columns(r) - 1 do
      C.tide_parquet_column_info(r, j, name, ty)
      cols[#cols + 1] = { index = j, name = ffi.string(name[0]) }
    end
  end
  for _, c in ipairs(cols) do
    C.tide_parquet_column_info(r, c.index, name, ty)
    c.type = tonumber(ty[0])
    if C.tide_parquet_check_column(r, c.index) ~= 0 then
      local msg = last_error()
      if not names then msg = msg .. ' (choose the columns to read with opts.columns)' end
      error('tide.data.parquet: ' .. msg, level + 1)
    end
  end
  return r, cols
end

-- tide.data.parquet(paths_or_glob, opts): a stream of records, one per row,
-- from .parquet files (a path, a glob, a directory read recursively, or an
-- array of those; as tide.data.jsonl). A record is a table {column = value}:
-- BYTE_ARRAY (strings and binary) as Lua strings, INT32/INT64/FLOAT/DOUBLE
-- as numbers (INT64 beyond 2^53 rounded, as any Lua number), BOOLEAN as
-- booleans; a null leaves its key out. opts:
--   columns   array of the top-level columns to read (default: all); only
--             these are read from the file and decoded
--   progress  false: no progress lines (default: one every 5 s on long reads)
-- Memory: one row group's compressed chunks of the chosen columns, and one
-- decoded page of each, at a time.
-- Nested and repeated columns (lists, structs, maps), INT96 and fixed-length
-- byte arrays, encodings other than PLAIN and dictionary, and codecs other
-- than none, Snappy, gzip and Zstandard are errors naming the file and the
-- column; so is a corrupt file (with the byte offset), after every record
-- before the row group at fault.
-- The stream's counts are live fields: files, row_groups, rows, and bytes
-- (compressed bytes of the column chunks read).
function M.parquet(spec, opts)
  opts = opts or {}
  if type(opts) ~= 'table' then error('parquet: options must be a table', 2) end
  local paths = files.expand(spec, PARQUET_NAME, 'tide.data.parquet', 2)
  local names = opts.columns
  if names ~= nil then
    if type(names) ~= 'table' then error('parquet: columns must be an array of names', 2) end
    if #names == 0 then error('parquet: columns must name at least one column', 2) end
    local seen = {}
    for i, n in ipairs(names) do
      if type(n) ~= 'string' then error(('parquet: columns[%d] is a %s, not a name'):format(i, type(n)), 2) end
      if seen[n] then error(('parquet: column %q is named twice in columns'):format(n), 2) end
      seen[n] = true
    end
  end
  local total = 0
  for _, p in ipairs(paths) do total = total + files.size(p) end
  local show = opts.progress ~= false
  local s
  s = stream.new(function()
    s.files, s.row_groups, s.rows, s.bytes = 0, 0, 0, 0
    local fi, reader, path, cols, nc = 0, nil, nil, nil, 0
    local rg, nrg, i, n = 0, 0, 0, 0
    local outs
    local t0, next_report = os.time(), os.time() + PROGRESS_EVERY
    local done_bytes = 0  -- sizes of the files finished
    local function close()
      if reader then
        C.tide_parquet_close(ffi.gc(reader, nil))
        reader = nil
      end
      fi = #paths  -- a closed pass gives nothing more
    end
    local function fail(msg)
      close()
      error(msg, 3)
    end
    -- the next page of column c (its rows now at col.i = 0 .. col.n - 1)
    local function next_page(col, c)
      local out = outs + (c - 1)
      local got = C.tide_parquet_next(reader, col.index, out)
      if got < 0 then fail('tide.data.parquet: ' .. last_error()) end
      if got == 0 then fail(('tide.data.parquet: %s: column %q ends before its row group does'):format(path, col.name)) end
      col.valid = out.valid ~= nil and out.valid or nil
      if col.type == BYTE_ARRAY then
        col.ptrs, col.lens = out.ptrs, out.lens
      else
        col.values = ffi.cast(value_ptr[col.type], out.values)
      end
      col.i, col.n = 0, tonumber(out.rows)
    end
    -- starts row group rg of the open file: each column's chunk read, its
    -- pages decoded as the rows reach them
    local function load_row_group()
      for c = 1, nc do
        local col = cols[c]
        if C.tide_parquet_start(reader, rg, col.index) ~= 0 then fail('tide.data.parquet: ' .. last_error()) end
        col.i, col.n = 0, 0
        s.bytes = s.bytes + tonumber(C.tide_parquet_chunk_bytes(reader, rg, col.index))
      end
      n = tonumber(C.tide_parquet_row_group_rows(reader, rg))
      i = 0
      s.row_groups = s.row_groups + 1
      if show and os.time() >= next_report then
        local at = done_bytes + (tonumber(C.tide_parquet_file_size(reader)) * (rg + 1) / nrg)
        io.stderr:write(('tide.data.parquet: %.1f of %.1f MB read (%.0f%%), %d rows, %.1f MB/s\n'):format(
          mb(at), mb(total), total > 0 and 100 * at / total or 100, s.rows, mb(at) / math.max(1, os.time() - t0)))
        next_report = os.time() + PROGRESS_EVERY
      end
    end
    return function()
      while i >= n do
        if reader and rg + 1 < nrg then
          rg = rg + 1
          load_row_group()
        else
          if reader then
            done_bytes = done_bytes + tonumber(C.tide_parquet_file_size(reader))
            C.tide_parquet_close(ffi.gc(reader, nil))
            reader = nil
          end
          fi = fi + 1
          path = paths[fi]
          if not path then return nil end
          reader, cols = open_file(path, names, 2)
          nc = #cols
          outs = ffi.new('tide_parquet_column[?]', nc)
          nrg = C.tide_parquet_num_row_groups(reader)
          s.files = s.files + 1
          rg, i, n = -1, 0, 0
        end
      end
      local rec = new_table(0, nc)
      for c = 1, nc do
        local col = cols[c]
        if col.i >= col.n then
          repeat next_page(col, c) until col.n > 0
        end
        local j = col.i
        col.i = j + 1
        local valid = col.valid
        if not valid or valid[j] ~= 0 then
          local t = col.type
          if t == BYTE_ARRAY then
            rec[col.name] = ffi.string(col.ptrs[j], col.lens[j])
          elseif t == BOOLEAN then
            rec[col.name] = col.values[j] ~= 0
          else
            rec[col.name] = tonumber(col.values[j])
          end
        end
      end
      i = i + 1
      s.rows = s.rows + 1
      return rec
    end, close
  end, 'parquet ' .. table.concat(paths, ' ', 1, math.min(#paths, 3)) .. (#paths > 3 and (' and %d more'):format(#paths - 3) or '')
    .. (names and (' columns ' .. table.concat(names, ',')) or ''))
  s.paths, s.total_bytes = paths, total
  s.files, s.row_groups, s.rows, s.bytes = 0, 0, 0, 0
  function s.report_line(st)
    return ('parquet: %d rows from %d files (%d row groups; %.1f MB of column chunks read, of %.1f MB)'):format(
      st.rows, st.files, st.row_groups, mb(st.bytes), mb(st.total_bytes))
  end
  return s
end

return M

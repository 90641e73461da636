-- tide.data.parquet on pyarrow's files (tests/data/parquet, made by
-- tools/make_parquet_golden.py): every type, codec and encoding against the
-- rows pyarrow reads back; column choice, globs and counts; the clear
-- errors for what tide does not read; and malformed files (truncated,
-- bad magic, corrupt footer and page headers, lengths past the end, bad
-- codec data), each an error naming the file, never a crash.
local T = require 'tide.testing'
local json = require 'tide.json'
local data = tide.data

local DIR = 'tests/data/parquet/'
local tmp, cleanup = T.scratch()

local function hex(s)
  return (s:gsub('.', function(c) return ('%02x'):format(c:byte()) end))
end

local function expected_rows(name)
  local rows = {}
  for line in io.lines(DIR .. name .. '.jsonl') do rows[#rows + 1] = json.decode(line) end
  return rows
end

-- rec equals the expected row: the same keys, bytes columns (*_bin) as hex
local function same_row(rec, want, where)
  for k, v in pairs(want) do
    local got = rec[k]
    if type(got) == 'string' and k:match('_bin$') then got = hex(got) end
    if got ~= v then
      error(('%s: column %s: expected %s, got %s'):format(where, k, tostring(v), tostring(got)), 2)
    end
  end
  for k in pairs(rec) do
    if want[k] == nil then error(('%s: column %s should be null (absent), got %s'):format(where, k, tostring(rec[k])), 2) end
  end
end

local function check_file(file, rows_name, opts)
  local want = expected_rows(rows_name)
  local ds = data.parquet(DIR .. file .. '.parquet', opts or { progress = false })
  local n = 0
  for rec in ds do
    n = n + 1
    T.truthy(want[n], file .. ': more rows than expected')
    same_row(rec, want[n], ('%s row %d'):format(file, n))
  end
  T.eq(n, #want, file .. ': rows')
  T.eq(ds.rows, #want)
  T.eq(ds.files, 1)
  return ds
end

T.test('parquet: every type, PLAIN, dictionary and data page v2, against pyarrow', function()
  for _, f in ipairs { 'types_plain', 'types_dict', 'types_v2', 'types_v2_plain' } do check_file(f, 'types') end
  local r = data.parquet(DIR .. 'types_plain.parquet', { progress = false }):take(1):collect()[1]
  T.eq(type(r.b), 'boolean')
  T.eq(type(r.i64), 'number')
  T.eq(type(r.s), 'string')
  T.eq(r.s_bin, '')  -- an empty binary value is an empty string, not a null
end)

T.test('parquet: each codec, gzip in v2 pages', function()
  for _, c in ipairs { 'none', 'snappy', 'gzip', 'zstd', 'gzip_v2' } do check_file('codec_' .. c, 'code') end
end)

T.test('parquet: nulls, empty strings, row groups, many pages, a dictionary falling back to PLAIN', function()
  local ds = check_file('row_groups', 'many')
  T.eq(ds.row_groups, 5)
  T.truthy(ds.bytes > 10000 and ds.bytes < ds.total_bytes, 'bytes of column chunks read')
  for _, f in ipairs { 'pages', 'pages_v2', 'dict_fallback' } do check_file(f, 'many') end
  check_file('edge', 'edge')
  local e = check_file('empty', 'empty')
  T.eq(e.rows, 0)
  -- the null and empty cells are there to be checked
  local nulls, empties = 0, 0
  for rec in data.parquet(DIR .. 'pages.parquet', { columns = { 'text' }, progress = false }) do
    if rec.text == nil then nulls = nulls + 1 elseif rec.text == '' then empties = empties + 1 end
  end
  T.truthy(nulls > 10 and empties > 10, ('%d nulls, %d empty'):format(nulls, empties))
end)

T.test('parquet: the C reader whole-chunk and page by page give the same column', function()
  local ffi = require 'ffi'
  local C = require 'tide.C'
  for _, file in ipairs { 'pages', 'pages_v2', 'dict_fallback', 'types_v2' } do
    local pbuf = ffi.new('tide_parquet*[1]')
    T.eq(C.tide_parquet_open(DIR .. file .. '.parquet', pbuf), 0)
    local r = ffi.gc(pbuf[0], C.tide_parquet_close)
    local out = ffi.new('tide_parquet_column[1]')
    for col = 0, C.tide_parquet_num_columns(r) - 1 do
      local function cell(o, i)
        if o.valid ~= nil and o.valid[i] == 0 then return 'null' end
        if o.type == C.TIDE_PQ_BYTE_ARRAY then return ffi.string(o.ptrs[i], o.lens[i]) end
        local ct = ({ [C.TIDE_PQ_BOOLEAN] = 'const uint8_t *', [C.TIDE_PQ_INT32] = 'const int32_t *',
                      [C.TIDE_PQ_INT64] = 'const int64_t *', [C.TIDE_PQ_FLOAT] = 'const float *',
                      [C.TIDE_PQ_DOUBLE] = 'const double *' })[tonumber(o.type)]
        return tostring(ffi.cast(ct, o.values)[i])
      end
      T.eq(C.tide_parquet_read(r, 0, col, out), 0)
      local whole = {}
      for i = 0, tonumber(out[0].rows) - 1 do whole[#whole + 1] = cell(out[0], i) end
      T.eq(C.tide_parquet_start(r, 0, col), 0)
      local paged, pages = {}, 0
      while C.tide_parquet_next(r, col, out) == 1 do
        pages = pages + 1
        for i = 0, tonumber(out[0].rows) - 1 do paged[#paged + 1] = cell(out[0], i) end
      end
      T.same(paged, whole, file .. ' column ' .. col)
      -- the text, id and x columns span dozens of pages (the word column, four values, fits one)
      if file:match('^pages') and col ~= 2 then T.truthy(pages > 20, file .. ': ' .. pages .. ' pages') end
    end
  end
end)

T.test('parquet: columns, lists of files, globs, counts, passes', function()
  local want = expected_rows('many')
  local ds = data.parquet(DIR .. 'row_groups.parquet', { columns = { 'x', 'word' }, progress = false })
  local n = 0
  for rec in ds do
    n = n + 1
    T.eq(rec.x, want[n].x)
    T.eq(rec.word, want[n].word)
    T.eq(rec.id, nil)
    T.eq(rec.text, nil)
  end
  T.eq(n, 600)
  -- a second pass, and one left by break, then a whole one
  T.eq(ds:count(), 600)
  for _ in ds do break end
  T.eq(ds:count(), 600)
  local two = data.parquet({ DIR .. 'codec_none.parquet', DIR .. 'codec_zstd.parquet' }, { columns = { 'size' }, progress = false })
  T.eq(two:count(), 400)
  T.eq(two.files, 2)
  T.eq(data.parquet(DIR .. 'types_*.parquet', { columns = { 'i32' }, progress = false }):count(), 160)
  T.truthy(two:report():find('parquet: 400 rows from 2 files', 1, true), two:report())
  -- a stream like any other
  local lens = data.parquet(DIR .. 'codec_snappy.parquet', { columns = { 'content' }, progress = false })
    :filter(function(r) return r.content ~= nil end):map(function(r) return #r.content end):collect()
  T.eq(#lens, 200 - 12)  -- every 17th of 200 rows is null
end)

T.test('parquet: what tide does not read is an error naming the file, the column and why', function()
  local function err(file, opts)
    return T.raises(function() data.parquet(DIR .. file .. '.parquet', opts or { progress = false }):count() end,
      DIR .. file .. '.parquet')
  end
  local e = err('nested')
  T.truthy(e:find("column 'answers' is nested", 1, true) and e:find('opts.columns', 1, true), e)
  e = err('nested', { columns = { 'tags' }, progress = false })
  T.truthy(e:find("'tags' is nested (a LIST group", 1, true), e)
  check_file('nested', 'nested_title', { columns = { 'title' }, progress = false })
  e = err('encoding_delta')
  T.truthy(e:find("column 'n'", 1, true) and e:find('DELTA_BINARY_PACKED', 1, true), e)
  T.eq(data.parquet(DIR .. 'encoding_delta.parquet', { columns = { 's' }, progress = false }):count(), 2)
  e = err('codec_lz4')
  T.truthy(e:find('LZ4_RAW codec is not supported', 1, true), e)
  e = err('type_flba')
  T.truthy(e:find("column 'd' has the physical type FIXED_LEN_BYTE_ARRAY", 1, true), e)
  e = err('types_plain', { columns = { 'nope' }, progress = false })
  T.truthy(e:find('has no column "nope" (its columns: b, b_null, i32', 1, true), e)
  T.raises(function() data.parquet(DIR .. 'types_plain.parquet', { columns = {} }) end, 'at least one column')
  T.raises(function() data.parquet(DIR .. 'types_plain.parquet', { columns = 's' }) end, 'array of names')
  T.raises(function() data.parquet(DIR .. 'types_plain.parquet', { columns = { 's', 'b', 's' } }) end, 'named twice')
  T.raises(function() data.parquet(tmp('missing.parquet')) end, 'missing.parquet')
end)

-- malformed files --------------------------------------------------------------

local function bytes_of(file) return T.read(DIR .. file .. '.parquet') end
local function le32(n) return string.char(n % 256, math.floor(n / 256) % 256, math.floor(n / 65536) % 256, math.floor(n / 16777216) % 256) end

-- reading s as a file fails with an error naming it (and containing pattern)
local function refused(s, pattern, name)
  local p = tmp(name or 'bad.parquet')
  T.write(p, s)
  local e = T.raises(function() data.parquet(p, { progress = false }):count() end, p)
  if pattern then T.truthy(e:find(pattern, 1, true), ('%q not in: %s'):format(pattern, e)) end
  return e
end

T.test('parquet: truncated files, bad magic, corrupt footers', function()
  local s = bytes_of('codec_snappy')
  refused('', 'not a Parquet file')
  refused(s:sub(1, 11), 'not a Parquet file')
  refused(s:sub(1, #s - 1), 'closing magic bytes are not PAR1')
  refused(s:sub(1, #s - 100), 'closing magic bytes are not PAR1')
  refused('PAR2' .. s:sub(5), 'byte 0: the magic bytes are not PAR1')
  refused(s:sub(1, #s - 4) .. 'PARE', 'encrypted')
  -- a footer length past the start of the file
  refused(s:sub(1, #s - 8) .. le32(#s) .. 'PAR1', 'corrupt footer')
  -- a footer cut short: the length says less than it is
  local flen = s:byte(#s - 7) + 256 * s:byte(#s - 6)
  refused(s:sub(1, #s - 8) .. le32(flen - 30) .. 'PAR1', 'corrupt footer metadata (byte ')
  -- a schema root claiming more columns than the schema holds
  local e = bytes_of('edge')
  local at = e:find('schema\21\6', 1, true)
  T.truthy(at, 'the root schema element of edge.parquet')
  refused(e:sub(1, at + 5) .. '\21\14' .. e:sub(at + 8), 'a schema root with more children than elements')
  -- the footer overwritten with noise at every position in turn: errors or,
  -- where the damage hits a field tide skips, the right rows
  local fstart = #s - 8 - flen
  for at = fstart + 1, #s - 8, 7 do
    local bad = s:sub(1, at - 1) .. '\255\255\255' .. s:sub(at + 3)
    local p = tmp('footer.parquet')
    T.write(p, bad)
    local ok, e = pcall(function() return data.parquet(p, { progress = false }):count() end)
    if not ok then T.truthy(tostring(e):find(p, 1, true), e) end
  end
end)

T.test('parquet: corrupt page headers, lengths past the end, bad codec data', function()
  -- codec_none's first chunk (repo_name) starts with its dictionary page at byte 4
  local s = bytes_of('codec_none')
  refused(s:sub(1, 4) .. '\255\255\255\255\255\255\255\255\255\255\255' .. s:sub(16), 'corrupt page header')
  refused(s:sub(1, 4) .. '\0' .. s:sub(6), 'page at byte 4')
  -- a string's length past the end of its page (uncompressed PLAIN)
  local t = bytes_of('types_plain')
  local first = expected_rows('types')[1].s
  local at = t:find(le32(#first) .. first, 1, true)
  T.truthy(at, 'the first string of s in types_plain')
  local e = refused(t:sub(1, at - 1) .. le32(0x7ffffff0) .. t:sub(at + 4), "column 's'")
  T.truthy(e:find('past the end', 1, true), e)
  -- compressed pages zeroed or cut: each codec's own error
  for _, c in ipairs { 'snappy', 'gzip', 'zstd' } do
    local z = bytes_of('codec_' .. c)
    local e2 = refused(z:sub(1, 60) .. ('\0'):rep(200) .. z:sub(261), nil, c .. '.parquet')
    T.truthy(e2:find("column '", 1, true), e2)
  end
  -- every byte of the data region of a small file flipped in turn: an error
  -- naming the file or rows (the damage may hit a value, which decodes)
  local z = bytes_of('types_v2')
  local flen = z:byte(#z - 7) + 256 * z:byte(#z - 6)
  local p = tmp('flip.parquet')
  local errs = 0
  for i = 5, #z - 8 - flen, 3 do
    T.write(p, z:sub(1, i - 1) .. string.char((z:byte(i) + 101) % 256) .. z:sub(i + 1))
    local ok, err = pcall(function() return data.parquet(p, { progress = false }):count() end)
    if not ok then
      errs = errs + 1
      T.truthy(tostring(err):find(p, 1, true), err)
    end
  end
  T.truthy(errs > 50, errs .. ' errors')
end)

T.test('parquet: cleanup', function()
  T.truthy(cleanup())
end)

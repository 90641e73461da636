-- tide.data.dedup_across_ranks: the filtering and deduplication of a
-- corpus spread over the ranks of a tide.dist job, with the same result as
-- one process reading every file in order.
--
--   local kept = tide.data.dedup_across_ranks('corpus/*.jsonl.gz', {
--     read = function(path) return tide.data.jsonl(path):filter(...) end,  -- per-file, stateless filters
--     exact = true, near = { seed = 1 } })
--   -- rank 0: a stream of the kept records, in file order; other ranks: an empty one
--
-- Input file i (0-based, in the order files.expand gives) is read by rank
-- i % N, through opts.read (filters that decide on a record alone: keyword
-- and CodeParrot heuristics). Then, for the records left:
--   exact dedup  each rank hashes its texts (tide_hash_normalized, as
--                filters.exact_dedup); the hashes go to rank hash % N with
--                all_to_all_bytes, which keeps the first occurrence in
--                (file, record) order and sends the others back as drops;
--   near dedup   each rank computes the MinHash signatures of its exact
--                survivors (the costly part) and gathers them on rank 0,
--                which runs filters.near_dedup's greedy pass (LSH bands,
--                Jaccard >= threshold against the *kept* earlier texts) in
--                (file, record) order: a text's fate depends on which earlier
--                ones survived, so that pass is sequential by nature;
--   gathering    the surviving records go to rank 0 (JSON), in order.
-- With the same filters, rank 0 then sees exactly the records a single
-- process's stream would give, so write_shards writes the same shards
-- (tests/cli/test_prepare_data_dist.sh). Each rank holds its own kept
-- records in memory until they are gathered.
local ffi = require 'ffi'
local C = require 'tide.C'
local json = require 'tide.json'
local files = require 'tide.data.files'
local stream = require 'tide.data.stream'
local errors = require 'tide.errors'

local M = {}

local function tide_() return require 'tide' end

-- A record (a string, or a table of string/number/boolean fields; other
-- values go as JSON) as bytes and back, exactly: texts may hold any bytes.
local function pack_record(rec)
  if type(rec) == 'string' then return 's' .. #rec .. ':' .. rec end
  local names = {}
  for k in pairs(rec) do names[#names + 1] = k end
  table.sort(names, function(a, b) return tostring(a) < tostring(b) end)
  local parts = { 't' .. #names .. ':' }
  for _, k in ipairs(names) do
    local v, tv = rec[k], type(rec[k])
    local code, bytes
    if tv == 'string' then code, bytes = 's', v
    elseif tv == 'number' then code, bytes = 'n', ('%.17g'):format(v)
    elseif tv == 'boolean' then code, bytes = 'b', v and '1' or '0'
    else code, bytes = 'j', json.encode(v) end
    k = tostring(k)
    parts[#parts + 1] = #k .. ':' .. k .. code .. #bytes .. ':' .. bytes
  end
  return table.concat(parts)
end

-- Reads one packed record at pos; returns it and the position after it.
local function unpack_record(msg, pos)
  local kind, n, p = msg:match('^([st])(%d+):()', pos)
  if not kind then error('dedup_across_ranks: a malformed record message', 0) end
  n = tonumber(n)
  if kind == 's' then return msg:sub(p, p + n - 1), p + n end
  local rec = {}
  for _ = 1, n do
    local klen, q = msg:match('^(%d+):()', p)
    local k = msg:sub(q, q + klen - 1)
    local code, vlen, r = msg:match('^(%a)(%d+):()', q + klen)
    local bytes = msg:sub(r, r + vlen - 1)
    local v
    if code == 's' then v = bytes
    elseif code == 'n' then v = tonumber(bytes)
    elseif code == 'b' then v = bytes == '1'
    else v = json.decode(bytes) end
    rec[k] = v
    p = r + vlen
  end
  return rec, p
end

local function text_of(rec, field)
  if type(rec) == 'string' then return rec end
  local t = type(rec) == 'table' and rec[field]
  if type(t) ~= 'string' then
    error(('dedup_across_ranks: a record has no string field %q'):format(field), 0)
  end
  return t
end

-- The near_dedup options with filters.near_dedup's defaults and checks.
local function near_params(o)
  local F = require 'tide.data.filters'
  o = o == true and {} or o
  local threshold, num_perm = o.threshold or 0.85, o.num_perm or 256
  local bands, rows = o.bands, o.rows
  if bands == nil and rows == nil then bands, rows = F.lsh_params(math.min(threshold, 0.999), num_perm) end
  F.near_dedup(o)  -- raises on a bad option
  return { threshold = threshold, num_perm = num_perm, seed = o.seed or 1, min_tokens = o.min_tokens or 10,
           bands = bands, rows = rows }
end

function M.dedup_across_ranks(spec, opts)
  local what = 'dedup_across_ranks'
  opts = opts or {}
  if type(opts) ~= 'table' then error(what .. ': options must be a table', 2) end
  local read = opts.read or function(path) return require('tide.data.readers').jsonl(path) end
  if type(read) ~= 'function' then error(what .. ': opts.read must be a function(path) -> stream', 2) end
  local field = opts.field or 'content'
  local near = opts.near and near_params(opts.near) or nil
  local tide = tide_()
  local dist = tide.dist
  if not dist.is_initialized() then dist.init() end
  local N, rank = dist.world_size(), dist.rank()
  local list = files.expand(spec, nil, what, 2)

  -- 1. this rank's files, read in order; kept[i] = {file, rec, record}
  local mine = {}
  for fi = rank, #list - 1, N do
    local path = type(list[fi + 1]) == 'table' and list[fi + 1].path or list[fi + 1]
    local s = read(path)
    if not stream.is_stream(s) then error(what .. ': opts.read must return a stream', 2) end
    local ri = 0
    for rec in s do
      mine[#mine + 1] = { fi, ri, rec }
      ri = ri + 1
    end
  end
  local drop = {}  -- "file:rec" -> true
  local function key(f, r) return f .. ':' .. r end

  -- 2. exact dedup: hashes partitioned by hash % N
  if opts.exact ~= false then
    local out = {}
    for r = 1, N do out[r] = {} end
    for _, e in ipairs(mine) do
      local text = text_of(e[3], field)
      local h = C.tide_hash_normalized(text, #text)
      local dst = tonumber(h % N) + 1
      local o = out[dst]
      o[#o + 1] = ('%s %d %d\n'):format(tostring(h):gsub('ULL$', ''), e[1], e[2])
    end
    for r = 1, N do out[r] = table.concat(out[r]) end
    local got = dist.all_to_all_bytes(out)
    -- the first (file, record) of each hash wins
    local first = {}
    local entries = {}
    for _, msg in ipairs(got) do
      for h, f, r in msg:gmatch('(%d+) (%d+) (%d+)\n') do
        f, r = tonumber(f), tonumber(r)
        entries[#entries + 1] = { h, f, r }
        local w = first[h]
        if w == nil or f < w[1] or (f == w[1] and r < w[2]) then first[h] = { f, r } end
      end
    end
    local back = {}
    for r = 1, N do back[r] = {} end
    for _, e in ipairs(entries) do
      local w = first[e[1]]
      if w[1] ~= e[2] or w[2] ~= e[3] then
        local b = back[e[2] % N + 1]
        b[#b + 1] = ('%d %d\n'):format(e[2], e[3])
      end
    end
    for r = 1, N do back[r] = table.concat(back[r]) end
    for _, msg in ipairs(dist.all_to_all_bytes(back)) do
      for f, r in msg:gmatch('(%d+) (%d+)\n') do drop[key(f, r)] = true end
    end
  end

  -- 3. near dedup: signatures here, the greedy pass on rank 0
  if near then
    local np = near.num_perm
    local sig, ntok = ffi.new('uint32_t[?]', np), ffi.new('int64_t[1]')
    local seed64 = ffi.new('uint64_t', near.seed)
    local parts = {}
    for _, e in ipairs(mine) do
      if not drop[key(e[1], e[2])] then
        local text = text_of(e[3], field)
        if C.tide_minhash(text, #text, np, seed64, sig, ntok) ~= 0 then errors.raise(2, what .. ': ') end
        -- texts with few tokens are kept and never compared (as near_dedup)
        if tonumber(ntok[0]) >= near.min_tokens then
          parts[#parts + 1] = ('%d %d\n'):format(e[1], e[2]) .. ffi.string(sig, np * 4)
        end
      end
    end
    local out = {}
    for r = 1, N do out[r] = r == 1 and table.concat(parts) or '' end
    local got = dist.all_to_all_bytes(out)
    local back = {}
    for r = 1, N do back[r] = {} end
    if rank == 0 then
      local docs = {}
      for _, msg in ipairs(got) do
        local pos = 1
        while pos <= #msg do
          local f, r, nl = msg:match('^(%d+) (%d+)\n()', pos)
          if not f then error(what .. ': a malformed signature message', 0) end
          local s = ffi.new('uint32_t[?]', np)
          ffi.copy(s, msg:sub(nl, nl + np * 4 - 1), np * 4)
          docs[#docs + 1] = { tonumber(f), tonumber(r), s }
          pos = nl + np * 4
        end
      end
      table.sort(docs, function(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end)
      local bands, rows = near.bands, near.rows
      local keys = ffi.new('double[?]', bands)
      local buckets = {}
      for b = 1, bands do buckets[b] = {} end
      for _, d in ipairs(docs) do
        if C.tide_minhash_bands(d[3], np, bands, rows, keys) ~= 0 then errors.raise(2, what .. ': ') end
        local dup = false
        for b = 1, bands do
          local kept_list = buckets[b][keys[b - 1]]
          if kept_list then
            for _, e in ipairs(kept_list) do
              if C.tide_minhash_jaccard(d[3], e[3], np) >= near.threshold then dup = true; break end
            end
          end
          if dup then break end
        end
        if dup then
          local bb = back[d[1] % N + 1]
          bb[#bb + 1] = ('%d %d\n'):format(d[1], d[2])
        else
          for b = 1, bands do
            local t, k = buckets[b], keys[b - 1]
            t[k] = t[k] or {}
            local l = t[k]
            l[#l + 1] = d
          end
        end
      end
    end
    for r = 1, N do back[r] = table.concat(back[r]) end
    for _, msg in ipairs(dist.all_to_all_bytes(back)) do
      for f, r in msg:gmatch('(%d+) (%d+)\n') do drop[key(f, r)] = true end
    end
  end

  -- 4. the survivors to rank 0, in (file, record) order
  local lines = {}
  for _, e in ipairs(mine) do
    if not drop[key(e[1], e[2])] then
      lines[#lines + 1] = ('%d %d\n'):format(e[1], e[2]) .. pack_record(e[3])
    end
  end
  local out = {}
  for r = 1, N do out[r] = r == 1 and table.concat(lines) or '' end
  local got = dist.all_to_all_bytes(out)
  local records = {}
  if rank == 0 then
    local all = {}
    for _, msg in ipairs(got) do
      local pos = 1
      while pos <= #msg do
        local f, r, nl = msg:match('^(%d+) (%d+)\n()', pos)
        if not f then error(what .. ': a malformed record message', 0) end
        local rec
        rec, pos = unpack_record(msg, nl)
        all[#all + 1] = { tonumber(f), tonumber(r), rec }
      end
    end
    table.sort(all, function(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end)
    for i, e in ipairs(all) do records[i] = e[3] end
  end
  local desc = ('%d file(s) over %d rank(s)%s%s'):format(#list, N, opts.exact ~= false and ', exact dedup' or '',
    near and ', near dedup' or '')
  return stream.from(records, desc)
end

return M

-- Documentation lookup for the REPL's `:help NAME` and `help(x)`: the entries
-- of docs/*.md, indexed when first asked for. An entry is where a docs page
-- gives a name in backquotes, as a call (`tide.zeros(...)`, `t:sum(dim)`,
-- `F.cross_entropy(...)`) or a plain name, at the start of a paragraph, a
-- list item or a table row; the entry's text is that paragraph, item or row
-- (and the code block right after a paragraph). Headings are entries too.
--
--   local help = require 'tide.help'
--   print(help.text('tide.gpt2.from_pretrained'))
--   print(help.text(tide.zeros))         -- a function: found by its name in tide
local M = {}

-- The docs directory: beside lua/ in the source tree, share/tide/docs when
-- installed (both are ../docs from the directory holding tide/).
function M.docs_dir()
  local path = package.searchpath and package.searchpath('tide.help', package.path)
  if not path then return nil end
  local root = path:gsub('/?tide/help%.lua$', '')
  if root == '' then root = '.' end
  -- lua/ -> docs/, share/tide/lua/ -> share/tide/docs/
  local up = root:match('^(.*)/[^/]+$')
  if up == nil then up = root == '.' and '..' or '.' end
  return up .. '/docs'
end

local index  -- { entries = { {names = {...}, file =, line =, text =} }, files = n }

-- Name parts of a backquoted span: 'tide.gpt2.from_pretrained(dir)' ->
-- 'tide.gpt2.from_pretrained'; nil when it does not start with a name.
local function span_name(span)
  local name = span:match('^([%a_][%w_%.:]*)%s*%(') or span:match('^([%a_][%w_%.:]*)$')
  if not name or name:match('[%.:]$') then return nil end
  return name
end

local function trim(s) return (s:gsub('^%s+', ''):gsub('%s+$', '')) end

-- Splits a page into blocks (paragraphs, list items, table rows, headings,
-- code blocks), each { kind, first line number, lines }.
local function blocks_of(lines)
  local blocks, cur = {}, nil
  local function close() if cur then blocks[#blocks + 1] = cur; cur = nil end end
  local in_code = false
  for i, line in ipairs(lines) do
    if in_code then
      cur.lines[#cur.lines + 1] = line
      if line:match('^%s*```') then in_code = false; close() end
    elseif line:match('^%s*```') then
      close()
      cur = { kind = 'code', line = i, lines = { line } }
      in_code = true
    elseif line:match('^%s*$') then
      close()
    elseif line:match('^#+%s') then
      close()
      blocks[#blocks + 1] = { kind = 'heading', line = i, lines = { line } }
    elseif line:match('^%s*|') then
      close()
      if not line:match('^%s*|[%s%-|:]*$') then blocks[#blocks + 1] = { kind = 'row', line = i, lines = { line } } end
    elseif line:match('^%s*[-*]%s') or line:match('^%s*%d+%.%s') then
      close()
      cur = { kind = 'item', line = i, lines = { line } }
    elseif line:match('^    ') and not cur then
      cur = { kind = 'code', line = i, lines = { line } }
    else
      if not cur then cur = { kind = 'para', line = i, lines = {} } end
      cur.lines[#cur.lines + 1] = line
    end
  end
  close()
  return blocks
end

-- The names a block documents, each { name, weight }: those in backquotes
-- at its start (a row's first cell, or the leading spans of a paragraph or
-- item) weigh 1; calls written out elsewhere in a paragraph
-- ("... `tide.data.shards(dir, opts)` reads ...") weigh 0.75.
local function defined_names(b)
  local names, seen = {}, {}
  local function add(n, w)
    if n and not seen[n] then seen[n] = true; names[#names + 1] = { n, w } end
  end
  if b.kind == 'heading' then
    add(trim(b.lines[1]:gsub('^#+', '')), 1)
    return names
  end
  local text = table.concat(b.lines, ' ')
  local head
  if b.kind == 'row' then
    head = text:match('^%s*|([^|]*)|') or ''
  else
    text = text:gsub('^%s*[-*]%s+', ''):gsub('^%s*%d+%.%s+', '')
    -- the leading run of spans: "`a(x)`, `b(y)` and `c` do ..." gives a, b and c
    head = text:match('^(`[^`]*`[`%w%s,/]*)') or ''
    head = head:gsub('%s+[%a][%w]*%s+[%a].*$', '')
  end
  for span in head:gmatch('`([^`]+)`') do add(span_name(trim(span)), 1) end
  if b.kind ~= 'row' then
    for span in text:gmatch('`([^`]+)`') do
      if span:find('(', 1, true) then add(span_name(trim(span)), 0.75) end
    end
  end
  return names
end

-- Builds the index from every docs/*.md (docs/dev is for developers).
local function build()
  local dir = M.docs_dir()
  index = { entries = {}, files = 0, dir = dir }
  if not dir then return index end
  local files = require('tide.data.files').list_dir(dir)
  for _, f in ipairs(files) do
    if f:match('%.md$') then
      local fh = io.open(dir .. '/' .. f, 'rb')
      if fh then
        index.files = index.files + 1
        local lines = {}
        for line in fh:lines() do lines[#lines + 1] = line end
        fh:close()
        local blocks = blocks_of(lines)
        local section
        for bi, b in ipairs(blocks) do
          if b.kind == 'heading' then section = b end
          local names = b.kind ~= 'code' and defined_names(b) or {}
          if #names > 0 then
            local text = table.concat(b.lines, '\n')
            if b.kind == 'row' then
              local cells = {}
              for c in b.lines[1]:gmatch('|([^|]*)') do cells[#cells + 1] = trim(c) end
              if cells[#cells] == '' then cells[#cells] = nil end
              text = table.concat(cells, '\n    ')
            elseif b.kind == 'heading' then
              -- a section: its first paragraph says what it is about
              local nxt = blocks[bi + 1]
              if nxt and nxt.kind ~= 'heading' then text = text .. '\n' .. table.concat(nxt.lines, '\n') end
            else
              local nxt = blocks[bi + 1]
              if nxt and nxt.kind == 'code' and #nxt.lines <= 16 then text = text .. '\n' .. table.concat(nxt.lines, '\n') end
            end
            index.entries[#index.entries + 1] = {
              names = names, file = 'docs/' .. f, line = b.line, text = text,
              heading = b.kind == 'heading', section = section and trim(section.lines[1]:gsub('^#+', '')) or nil,
            }
          end
        end
      end
    end
  end
  return index
end

function M.index()
  return index or build()
end

-- How well documented name `n` answers query `q` (0: not at all). Both are
-- dotted names; a method in the docs is written on a sample variable
-- (`t:sum`, `tok:encode`), so only the last part must agree then.
local function score(n, q)
  if n == q then return 4 end
  local nl, ql = n:lower(), q:lower()
  if nl == ql then return 3.5 end
  local qual_n, last_n = n:match('^(.*)[%.:]([^%.:]+)$')
  if not qual_n then qual_n, last_n = '', n end
  local qual_q, last_q = q:match('^(.*)[%.:]([^%.:]+)$')
  if not qual_q then qual_q, last_q = '', q end
  if last_n ~= last_q then return 0 end
  if qual_q == '' then return 2 end                       -- 'sum' matches t:sum and tide.sum
  if qual_n == '' then return 1.5 end                     -- a list of bare method names
  if qual_n:match('[%w_]+$') == qual_q:match('[%w_]+$') then return 3 end  -- 'gpt2.from_pretrained'
  if (qual_q == 'tide.Tensor' or qual_q == 'Tensor') and n:find(':', 1, true) then return 3 end
  return 0
end

-- The entries for a name, best first (at most `max`).
function M.lookup(name, max)
  local idx = M.index()
  local found = {}
  for _, e in ipairs(idx.entries) do
    local best = 0
    for _, nw in ipairs(e.names) do
      local n = nw[1]
      local s = (e.heading and (n:lower() == name:lower() and 3 or 0) or score(n, name)) * nw[2]
      if s > best then best = s end
    end
    if best > 0 then found[#found + 1] = { e = e, s = best } end
  end
  table.sort(found, function(a, b)
    if a.s ~= b.s then return a.s > b.s end
    if a.e.file ~= b.e.file then return a.e.file < b.e.file end
    return a.e.line < b.e.line
  end)
  local out = {}
  for i = 1, math.min(#found, max or 3) do out[i] = found[i].e end
  return out
end

-- The qualified names under which value v is reachable from tide (functions,
-- modules, classes), shortest first: tide.zeros, tide.Tensor.sum, ...
function M.names_of(v)
  local tide = package.loaded.tide
  if type(tide) ~= 'table' then return {} end
  local out, seen = {}, {}
  local function walk(t, prefix, depth)
    if seen[t] or depth > 4 then return end
    seen[t] = true
    local keys = {}
    for k in pairs(t) do if type(k) == 'string' and k:match('^[%a][%w_]*$') then keys[#keys + 1] = k end end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local x = rawget(t, k)
      local name = prefix .. '.' .. k
      if rawequal(x, v) then out[#out + 1] = name end
      if type(x) == 'table' and k ~= 'C' and k ~= 'ffi' and k ~= 'loaded' then walk(x, name, depth + 1) end
    end
  end
  if rawequal(v, tide) then return { 'tide' } end
  walk(tide, 'tide', 1)
  table.sort(out, function(a, b) if #a ~= #b then return #a < #b end return a < b end)
  return out
end

-- The help text for x: a name (string) or a value reachable from tide.
function M.text(x)
  local names
  if type(x) == 'string' then
    names = { trim(x) }
  else
    names = M.names_of(x)
    if #names == 0 then
      return ('no documentation: this %s is not reachable from tide (help takes a name too: help("tide.zeros"))'):format(type(x))
    end
  end
  local idx = M.index()
  if idx.files == 0 then
    return ('no documentation found: %s holds no docs/*.md'):format(tostring(idx.dir))
  end
  local entries, shown = {}, {}
  for _, n in ipairs(names) do
    -- tide.Tensor.sum is documented as t:sum
    local q = n:gsub('^tide%.Tensor%.', 'tide.Tensor:')
    for _, e in ipairs(M.lookup(q, 3)) do
      if not shown[e] and #entries < 3 then entries[#entries + 1] = e; shown[e] = true end
    end
  end
  if #entries == 0 then
    return ('no documentation entry for %s in %s (try :help with a shorter name, or see docs/index.md)')
      :format(table.concat(names, ', '), idx.dir)
  end
  local parts = {}
  for _, e in ipairs(entries) do
    parts[#parts + 1] = ('%s:%d%s\n%s'):format(e.file, e.line, e.section and ('  (' .. e.section .. ')') or '', e.text)
  end
  return table.concat(parts, '\n\n')
end

return M

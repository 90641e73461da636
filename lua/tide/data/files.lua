-- File lists for the data readers: a path, a directory, a glob, or an array
-- of those, expanded to a sorted list of files. Globs match the last path
-- component only (`data/*.jsonl.gz`), as most dataset layouts need; the
-- directory part is literal. Listing goes through find(1) with the directory
-- single-quoted, so no other shell expansion ever happens.
local M = {}

-- s single-quoted for the shell: nothing in it is expanded.
local function quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end
M.quote = quote

local function is_dir(path)
  local f = io.open(path, 'rb')
  if not f then return false end
  local ok, _, code = f:read(1)
  f:close()
  return ok == nil and code == 21  -- EISDIR
end
M.is_dir = is_dir

local function exists(path)
  local f = io.open(path, 'rb')
  if f then f:close() end
  return f ~= nil
end
M.exists = exists

-- The entries find(1) prints for dir with the given extra arguments, sorted.
local function find(dir, args)
  if dir:sub(1, 1) == '-' then dir = './' .. dir end  -- else find reads it as an option
  local p = io.popen('find ' .. quote(dir) .. ' ' .. args .. ' -print0 2>/dev/null')
  local out = p:read('*a')
  p:close()
  local list = {}
  for name in out:gmatch('([^%z]+)%z') do list[#list + 1] = name end
  table.sort(list)
  return list
end

-- The names in dir (not recursive), sorted byte-wise; none when it cannot be read.
function M.list_dir(dir)
  local names = find(dir, '-mindepth 1 -maxdepth 1')
  for i, f in ipairs(names) do names[i] = f:match('[^/]*$') end
  table.sort(names)
  return names
end

-- A Lua pattern matching what the glob matches (*, ?, [...]).
local function glob_pattern(g)
  local out, i = { '^' }, 1
  while i <= #g do
    local c = g:sub(i, i)
    if c == '*' then out[#out + 1] = '.*'
    elseif c == '?' then out[#out + 1] = '.'
    elseif c == '[' then
      local j = g:find(']', i + 1, true)
      if not j then out[#out + 1] = '%['
      else
        local set = g:sub(i + 1, j - 1):gsub('^!', '^'):gsub('%%', '%%%%')
        out[#out + 1] = '[' .. set .. ']'
        i = j
      end
    else out[#out + 1] = c:gsub('%W', '%%%0') end
    i = i + 1
  end
  out[#out + 1] = '$'
  return table.concat(out)
end
M.glob_pattern = glob_pattern

-- Expands spec (a string or an array of strings) into files. In a directory,
-- files whose names match `accept` (a Lua pattern, or a function of the name)
-- are taken, recursively. `what` names the caller for errors.
function M.expand(spec, accept, what, level)
  level = (level or 1) + 1
  local specs = type(spec) == 'table' and spec or { spec }
  if type(spec) ~= 'string' and type(spec) ~= 'table' then
    error(what .. ': expected a path, a glob or an array of them, got ' .. type(spec), level)
  end
  local ok_name = type(accept) == 'function' and accept
    or function(name) return accept == nil or name:match(accept) ~= nil end
  local files = {}
  for _, s in ipairs(specs) do
    if type(s) ~= 'string' then error(what .. ': paths must be strings, got ' .. type(s), level) end
    if s:find('[*?%[]') then
      local dir, base = s:match('^(.*)/([^/]*)$')
      if not dir then dir, base = '.', s end
      if dir:find('[*?%[]') then error(what .. ': only the last part of a path may hold wildcards: ' .. s, level) end
      local pat, n = glob_pattern(base), 0
      for _, f in ipairs(find(dir == '' and '/' or dir, '-mindepth 1 -maxdepth 1 -type f')) do
        local name = f:match('[^/]*$')
        if name:match(pat) then
          files[#files + 1] = (dir == '.' and not s:match('^%./')) and name or f
          n = n + 1
        end
      end
      if n == 0 then error(what .. ': no file matches ' .. s, level) end
    elseif is_dir(s) then
      local n = 0
      for _, f in ipairs(find(s, '-type f')) do
        if ok_name(f:match('[^/]*$')) then files[#files + 1] = f; n = n + 1 end
      end
      if n == 0 then error(what .. ': no data files in directory ' .. s, level) end
    elseif exists(s) then
      files[#files + 1] = s
    else
      error(what .. ': no such file or directory: ' .. s, level)
    end
  end
  return files
end

return M

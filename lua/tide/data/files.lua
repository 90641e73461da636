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

local ffi = require 'ffi'
for _, decl in ipairs {
  'int mkdir(const char *path, unsigned int mode);', 'char *strerror(int errnum);',
  'int unlink(const char *path);', 'int rmdir(const char *path);', 'char *mkdtemp(char *tmpl);',
  -- glibc's struct dirent on 64-bit Linux (readdir is readdir64 there)
  'struct tide_dirent { uint64_t d_ino; int64_t d_off; unsigned short d_reclen; unsigned char d_type; char d_name[256]; };',
  'void *opendir(const char *path);', 'struct tide_dirent *readdir(void *dir);', 'int closedir(void *dir);',
} do
  pcall(ffi.cdef, decl)
end

local EPERM, ENOENT, ENOTDIR, EEXIST, ENFILE, EMFILE, EISDIR = 1, 2, 20, 17, 23, 24, 21

-- io.open's failure, unless it only says that nothing is there: running out
-- of descriptors must not read as "no such file" (a leaked reader per loop
-- once made an existing file look missing).
local function open_failed(path, msg, code)
  if code == EMFILE or code == ENFILE then
    error(('%s: too many open files (the process or system limit on descriptors; '
      .. 'close streams left by a break with :close(), or raise ulimit -n)'):format(path), 3)
  end
end

local function is_dir(path)
  local f, msg, code = io.open(path, 'rb')
  if not f then
    open_failed(path, msg, code)
    return false
  end
  local ok, _, rcode = f:read(1)
  f:close()
  return ok == nil and rcode == EISDIR
end
M.is_dir = is_dir

local function exists(path)
  local f, msg, code = io.open(path, 'rb')
  if f then f:close() return true end
  open_failed(path, msg, code)
  -- a file that is there but unreadable exists: reading it gives the real error
  return code ~= ENOENT and code ~= ENOTDIR
end
M.exists = exists

-- The size of the file at path in bytes, 0 when it cannot be opened (the
-- reader that opens it next gives the real error); running out of
-- descriptors is an error, as in exists.
function M.size(path)
  local f, msg, code = io.open(path, 'rb')
  if not f then
    open_failed(path, msg, code)
    return 0
  end
  local n = f:seek('end') or 0
  f:close()
  return n
end

-- Creates dir and its missing parents (mkdir -p). Errors name the directory
-- that could not be made and why, with the errno of that mkdir (read before
-- any other call can overwrite it: a read-only mount once read as "No such
-- file or directory", the errno of a later check).
function M.mkdir_p(dir, what, level)
  level = (level or 1) + 1
  local parts, path = {}, dir:sub(1, 1) == '/' and '/' or ''
  for part in dir:gmatch('[^/]+') do parts[#parts + 1] = part end
  for i, part in ipairs(parts) do
    path = path .. part
    if part ~= '.' and part ~= '..' and ffi.C.mkdir(path, 511) ~= 0 then  -- 0777, less the umask
      local e = ffi.errno()
      if e ~= EEXIST or (i == #parts and not is_dir(path)) then
        error(('%s: cannot create directory %s: %s'):format(what, path, ffi.string(ffi.C.strerror(e))), level)
      end
    end
    path = path .. '/'
  end
end

-- The names in dir but . and .., in readdir's order; nil and the errno when
-- it cannot be opened.
local function read_dir(dir)
  local d = ffi.C.opendir(dir)
  if d == nil then return nil, ffi.errno() end
  local names = {}
  while true do
    local e = ffi.C.readdir(d)
    if e == nil then break end
    local name = ffi.string(e.d_name)
    if name ~= '.' and name ~= '..' then names[#names + 1] = name end
  end
  ffi.C.closedir(d)
  return names
end

-- Removes path and, when it is a directory, everything under it (rm -rf,
-- through unlink/rmdir: no shell). Symbolic links are removed, never
-- followed: unlink takes any non-directory, a link to a directory included,
-- and fails with EISDIR (EPERM on some systems) only on a real directory.
-- A path already gone is fine. Returns true, or nil and a message naming the
-- first entry that could not be removed (the rest are still tried).
function M.remove_tree(path)
  if ffi.C.unlink(path) == 0 then return true end
  local e = ffi.errno()
  if e == ENOENT then return true end
  if e ~= EISDIR and e ~= EPERM then
    return nil, ('cannot remove %s: %s'):format(path, ffi.string(ffi.C.strerror(e)))
  end
  local names, de = read_dir(path)
  if not names then return nil, ('cannot read directory %s: %s'):format(path, ffi.string(ffi.C.strerror(de))) end
  local first
  for _, name in ipairs(names) do
    local ok, msg = M.remove_tree(path .. '/' .. name)
    if not ok then first = first or msg end
  end
  if ffi.C.rmdir(path) ~= 0 then
    e = ffi.errno()
    if e ~= ENOENT then first = first or ('cannot remove %s: %s'):format(path, ffi.string(ffi.C.strerror(e))) end
  end
  if first then return nil, first end
  return true
end

-- A new private directory $TMPDIR/PREFIX.XXXXXX (mkdtemp: created at once
-- with mode 0700, so no other process can take the name between choosing
-- and creating it). Returns its path; errors name the reason.
function M.temp_dir(prefix, level)
  local base = os.getenv('TMPDIR')
  if not base or base == '' then base = '/tmp' end
  local tmpl = ('%s/%s.XXXXXX'):format(base:gsub('/+$', ''), prefix)
  local buf = ffi.new('char[?]', #tmpl + 1, tmpl)
  if ffi.C.mkdtemp(buf) == nil then
    error(('cannot create a temporary directory %s: %s'):format(tmpl, ffi.string(ffi.C.strerror(ffi.errno()))),
      (level or 1) + 1)
  end
  return ffi.string(buf)
end

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

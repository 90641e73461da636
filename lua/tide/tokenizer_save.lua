-- Writing a tokenizer's files (tokenizer.json, vocab.json, merges.txt,
-- tokenizer_config.json) into a directory as one set: a reader, tide's or
-- Hugging Face's, sees the old set whole or the new set whole, never files
-- of two tokenizers, whenever the save stops (an error, a full disk, SIGKILL).
--
-- A directory that does not exist yet (or is empty) is written beside it
-- under a temporary name, fsynced and renamed into place: one rename.
--
-- A directory that already holds files (a model's, another tokenizer's) is
-- not replaced, since its other files must stay. There the tokenizer's files
-- are symbolic links of fixed targets, NAME -> .tide-tokenizer/NAME, and
-- .tide-tokenizer is itself a link to the current generation,
-- .tide-tokenizer.<id>/, which holds the real files. A save writes a new
-- generation beside the current one and then swings .tide-tokenizer over to
-- it with one rename: the commit point. The first save into such a directory
-- first moves the plain files there into a generation of their own (copies,
-- then each file swapped for its link, which shows the same bytes), so that
-- step too never mixes sets. Names of the set that the new generation lacks
-- (a stale special_tokens_map.json or added_tokens.json that transformers
-- would read with the new files) dangle after the swing, which readers take
-- as absent. Generations and temporary names left by an interrupted save are
-- removed by the next save into the directory (not those of a save still
-- running in another process; two saves into one directory at once each
-- commit whole, the later swing winning).
local ffi = require 'ffi'
local json = require 'tide.json'
local files = require 'tide.data.files'

local M = {}

for _, decl in ipairs {
  'int mkdir(const char *path, unsigned int mode);', 'int rmdir(const char *path);',
  'int symlink(const char *target, const char *linkpath);',
  'long readlink(const char *path, char *buf, size_t size);',
  'int rename(const char *from, const char *to);', 'int unlink(const char *path);',
  'int open(const char *path, int flags, ...);', 'int close(int fd);', 'int fsync(int fd);',
  'int getpid(void);', 'char *strerror(int errnum);', 'int kill(int pid, int sig);',
} do
  pcall(ffi.cdef, decl)
end
local C = ffi.C

-- Names a save owns in a directory: what it writes and what transformers
-- would read beside them.
M.names = { 'tokenizer.json', 'vocab.json', 'merges.txt', 'tokenizer_config.json',
            'special_tokens_map.json', 'added_tokens.json' }
local LINK = '.tide-tokenizer'

-- Called with the name of each step before it is taken (tests stop a save
-- there, as a crash would); nil in normal use.
M.hook = nil
local function step(name) if M.hook then M.hook(name) end end

local function os_error(what)
  return what .. ': ' .. ffi.string(C.strerror(ffi.errno()))
end

local function fsync_dir(path)
  local fd = C.open(path, 0)  -- O_RDONLY
  if fd < 0 then error(os_error('cannot open directory ' .. path), 0) end
  local rc = C.fsync(fd)
  C.close(fd)
  if rc ~= 0 then error(os_error('cannot fsync directory ' .. path), 0) end
end

local linkbuf = ffi.new('char[4096]')
-- The target of symbolic link path, or nil when path is not one.
local function readlink(path)
  local n = tonumber(C.readlink(path, linkbuf, 4096))
  if n < 0 then return nil end
  return ffi.string(linkbuf, n)
end

local counter = 0
local function unique(prefix)
  counter = counter + 1
  return ('%s%d-%d-%d'):format(prefix, C.getpid(), os.time(), counter)
end

-- Whether a leftover name (...<pid>-<time>-<n>) belongs to a save still
-- running in another process: that one's files are not ours to remove.
local function in_use(name)
  local pid = tonumber(name:match('(%d+)%-%d+%-%d+$'))
  if not pid or pid == C.getpid() then return false end
  return C.kill(pid, 0) == 0 or ffi.errno() == 1  -- EPERM: alive, not ours
end

local function remove_tree(path)  -- a generation or temporary directory
  files.remove_tree(path)
end

local function must(ok, what)
  if not ok then error(os_error(what), 0) end
end

-- Writes the set into a fresh directory at path, each file fsynced, then the directory.
local function write_generation(path, set, label)
  must(C.mkdir(path, tonumber('755', 8)) == 0, 'cannot create directory ' .. path)
  for _, f in ipairs(set) do
    step(label .. ' ' .. f.name)
    json.write_atomic(path .. '/' .. f.name, f.text)
  end
  fsync_dir(path)
end

-- Points link at target through a temporary link and a rename (atomic).
local function swing(dir, name, target)
  local tmp = dir .. '/' .. unique('.tide-link-')
  must(C.symlink(target, tmp) == 0, 'cannot create a symbolic link in ' .. dir)
  if C.rename(tmp, dir .. '/' .. name) ~= 0 then
    local err = os_error('cannot replace ' .. dir .. '/' .. name)
    C.unlink(tmp)
    error(err, 0)
  end
end

local function is_empty_dir(dir) return #files.list_dir(dir) == 0 end

-- Writes set ({name =, text =} in order) into dir as one; see the top.
function M.write(dir, set)
  local parent, base = dir:match('^(.*)/([^/]+)$')
  if not parent then parent, base = '.', dir elseif parent == '' then parent = '/' end
  -- what an interrupted save left beside the directory
  for _, name in ipairs(files.list_dir(parent)) do
    if name:find('.' .. base .. '.tide-new-', 1, true) == 1 and not in_use(name) then remove_tree(parent .. '/' .. name) end
  end
  if not files.is_dir(dir) or is_empty_dir(dir) then
    local tmp = parent .. '/' .. unique('.' .. base .. '.tide-new-')
    write_generation(tmp, set, 'write')
    step('rename into place')
    if C.rename(tmp, dir) == 0 then
      fsync_dir(parent)
      return
    end
    remove_tree(tmp)  -- filled meanwhile: write it as a directory that holds files
    if not files.is_dir(dir) then error(os_error('cannot rename ' .. tmp .. ' to ' .. dir), 0) end
  end
  local current = readlink(dir .. '/' .. LINK)
  for _, name in ipairs(files.list_dir(dir)) do
    local keep = (current and name == current) or in_use(name)
    if not keep and (name:find(LINK .. '.', 1, true) == 1 or name:find('.tide-link-', 1, true) == 1) then
      if files.is_dir(dir .. '/' .. name) then remove_tree(dir .. '/' .. name) else C.unlink(dir .. '/' .. name) end
    end
  end
  local function linked(name) return readlink(dir .. '/' .. name) == LINK .. '/' .. name end
  local plain, stale = not current, nil
  for _, name in ipairs(M.names) do
    local path = dir .. '/' .. name
    plain = plain or (not linked(name) and (files.exists(path) or readlink(path) ~= nil))
  end
  if plain then
    stale = current
    -- the files there now become a generation of their own, each name a
    -- link into it: every step shows the same old set
    local old = unique(LINK .. '.')
    local olds = {}
    for _, name in ipairs(M.names) do
      local path = dir .. '/' .. name
      if files.exists(path) and not files.is_dir(path) then
        local f = assert(io.open(path, 'rb'))
        olds[#olds + 1] = { name = name, text = f:read('*a') }
        f:close()
      end
    end
    write_generation(dir .. '/' .. old, olds, 'keep')
    step('link ' .. LINK)
    swing(dir, LINK, old)
    for _, f in ipairs(olds) do
      if not linked(f.name) then
        step('link old ' .. f.name)
        swing(dir, f.name, LINK .. '/' .. f.name)
      end
    end
    current = old
  end
  local new = unique(LINK .. '.')
  write_generation(dir .. '/' .. new, set, 'write')
  -- links for names the current generation lacks dangle until the switch: absent, as now
  for _, f in ipairs(set) do
    if not linked(f.name) then
      step('link new ' .. f.name)
      swing(dir, f.name, LINK .. '/' .. f.name)
    end
  end
  fsync_dir(dir)
  step('switch')
  swing(dir, LINK, new)  -- the commit point
  fsync_dir(dir)
  step('cleanup')
  remove_tree(dir .. '/' .. current)
  if stale then remove_tree(dir .. '/' .. stale) end
  for _, name in ipairs(M.names) do  -- names the new set lacks: links to nothing now
    if linked(name) and not files.exists(dir .. '/' .. name) then C.unlink(dir .. '/' .. name) end
  end
end

return M

-- Hugging Face Hub names ('gpt2', 'openai-community/gpt2') resolved through
-- the local Hub cache, offline, as transformers does with HF_HUB_OFFLINE=1.
-- tide never downloads; `hf download gpt2` (or any transformers run) fills
-- the cache this reads.
--
--   local dir = tide.io.hub.resolve('gpt2')   -- a snapshot directory
--   --> /root/.cache/huggingface/hub/models--gpt2/snapshots/<commit>
--
-- The cache directory is, first found: $HF_HUB_CACHE, $HUGGINGFACE_HUB_CACHE
-- (its older name), $HF_HOME/hub, $XDG_CACHE_HOME/huggingface/hub,
-- ~/.cache/huggingface/hub. A repository lives in models--ORG--NAME; the
-- revision ('main' unless opts.revision says otherwise) names a file under
-- refs/ holding a commit hash, or is itself the hash, and the files are in
-- snapshots/<hash>/.
local files = require 'tide.data.files'

local M = {}

local function getenv(k)
  local v = os.getenv(k)
  if v == nil or v == '' then return nil end
  return v
end

-- The Hub cache directory and how it was chosen (for error messages).
function M.cache_dir()
  local v = getenv('HF_HUB_CACHE')
  if v then return v, 'HF_HUB_CACHE' end
  v = getenv('HUGGINGFACE_HUB_CACHE')
  if v then return v, 'HUGGINGFACE_HUB_CACHE' end
  v = getenv('HF_HOME')
  if v then return v:gsub('/+$', '') .. '/hub', 'HF_HOME' end
  v = getenv('XDG_CACHE_HOME')
  if v then return v:gsub('/+$', '') .. '/huggingface/hub', 'XDG_CACHE_HOME' end
  local home = getenv('HOME')
  if home then return home:gsub('/+$', '') .. '/.cache/huggingface/hub', 'HOME' end
  return nil, 'no HOME'
end

-- True when s has the form of a Hub model id: NAME or ORG/NAME, each part of
-- letters, digits, '-', '_' and '.', not starting or ending with '-' or '.',
-- and no '..' (huggingface_hub's validate_repo_id).
function M.is_repo_id(s)
  if type(s) ~= 'string' or #s == 0 or #s > 96 then return false end
  local parts = {}
  for p in (s .. '/'):gmatch('([^/]*)/') do parts[#parts + 1] = p end
  if #parts > 2 then return false end
  for _, p in ipairs(parts) do
    if p == '' or not p:match('^[%w%-_%.]+$') or p:match('^[%-%.]') or p:match('[%-%.]$') or p:find('..', 1, true) then
      return false
    end
  end
  return true
end

local function read_line(path)
  local f = io.open(path, 'rb')
  if not f then return nil end
  local s = f:read(256)
  f:close()
  return s and s:match('^%s*(%S+)')
end

-- resolve(name, opts) -> the snapshot directory of model `name` in the local
-- cache, or raises an error listing where it looked. opts.revision: a branch
-- or tag under refs/ (default 'main') or a commit hash; opts.what: the
-- caller's name for messages; opts.level: the error level.
function M.resolve(name, opts)
  opts = opts or {}
  local what, level = opts.what or 'hub.resolve', (opts.level or 1) + 1
  if not M.is_repo_id(name) then
    error(('%s: %q is neither a directory nor a Hugging Face model id (NAME or ORG/NAME)'):format(what, tostring(name)), level)
  end
  local revision = opts.revision or 'main'
  if type(revision) ~= 'string' or revision == '' or revision:find('..', 1, true) or revision:sub(1, 1) == '/' then
    error(('%s: revision must be a branch, tag or commit hash, got %s'):format(what, tostring(revision)), level)
  end
  local cache, how = M.cache_dir()
  if not cache then
    error(('%s: %q is not a directory and there is no Hugging Face cache to look in (HF_HUB_CACHE, HF_HOME and HOME are unset)')
      :format(what, name), level)
  end
  local repo = cache:gsub('/+$', '') .. '/models--' .. name:gsub('/', '--')
  local function absent(why)
    error(('%s: %q is not a directory, and not in the Hugging Face cache: %s (cache %s, from %s). '
      .. 'tide works offline: download it first, e.g. `hf download %s`, or pass a directory')
      :format(what, name, why, cache, how == 'HOME' and '~/.cache/huggingface/hub' or how, name), level + 1)
  end
  if not files.is_dir(repo) then absent('no directory ' .. repo) end
  local commit = read_line(repo .. '/refs/' .. revision)
  if not commit then
    if revision:match('^%x+$') and #revision == 40 then
      commit = revision
    else
      absent(('no %s/refs/%s naming a snapshot'):format(repo, revision))
    end
  end
  local snap = repo .. '/snapshots/' .. commit
  if not files.is_dir(snap) then absent(('refs/%s names %s, but there is no %s'):format(revision, commit, snap)) end
  return snap
end

-- A local directory as it is; otherwise a Hub id resolved through the cache.
-- Used by tide.gpt2.from_pretrained and tide.tokenizer.load.
function M.locate(path, opts)
  opts = opts or {}
  local what, level = opts.what or 'hub.locate', (opts.level or 1) + 1
  -- C sees a path up to its first NUL, and '' joined with a file name is a
  -- file in the root directory: neither may reach a file
  if path == '' then error(what .. ': the path is empty', level) end
  if path:find('%z') then error(('%s: the path "%s" holds a NUL byte'):format(what, (path:gsub('%z', '\\0'))), level) end
  if files.is_dir(path) or files.exists(path) then return path end
  -- a path that looks like one (./x, /x, x/y/z) stays a path: its error is "no such"
  if not M.is_repo_id(path) then return path end
  return M.resolve(path, { what = opts.what, revision = opts.revision, level = (opts.level or 1) + 1 })
end

function M.install(tide)
  tide.io = tide.io or {}
  tide.io.hub = M
end

return M

-- Hub ids ('gpt2', 'org/name') resolved through a local Hugging Face cache
-- that the test builds: models--NAME/refs/main holding a commit hash and
-- snapshots/<hash>/ holding the files, as huggingface_hub lays them out.
local T = require 'tide.testing'
local ffi = require 'ffi'
local hub = tide.io.hub

pcall(ffi.cdef, 'int setenv(const char *name, const char *value, int overwrite);')
pcall(ffi.cdef, 'int unsetenv(const char *name);')

local VARS = { 'HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE', 'HF_HOME', 'XDG_CACHE_HOME', 'HOME' }
local saved = {}
for _, k in ipairs(VARS) do saved[k] = os.getenv(k) end

-- Sets the environment to exactly `env` for the variables above.
local function set_env(env)
  for _, k in ipairs(VARS) do
    if env[k] then ffi.C.setenv(k, env[k], 1) else ffi.C.unsetenv(k) end
  end
end

local function sh(cmd) assert(os.execute(cmd) == 0, cmd) end

local root = os.tmpname()
os.remove(root)

-- Puts the golden tiny model and data/gpt2's tokenizer files under
-- cache/models--<id with / as -->/snapshots/<commit>, with refs/<ref> naming it.
local function add_model(cache, id, commit, ref)
  local repo = cache .. '/models--' .. id:gsub('/', '--')
  local snap = repo .. '/snapshots/' .. commit
  sh(("mkdir -p '%s' '%s/refs'"):format(snap, repo))
  -- huggingface_hub stores blobs and links the snapshot files to them
  sh(("mkdir -p '%s/blobs' && cp tests/ref/gpt2_tiny/model/model.safetensors '%s/blobs/b1' && ln -s ../../blobs/b1 '%s/model.safetensors'")
    :format(repo, repo, snap))
  sh(("cp tests/ref/gpt2_tiny/model/config.json data/gpt2/vocab.json data/gpt2/merges.txt '%s/'"):format(snap))
  if ref then
    local f = assert(io.open(repo .. '/refs/' .. ref, 'w'))
    f:write(commit)  -- no newline, as huggingface_hub writes it
    f:close()
  end
  return snap
end

local C1 = ('a1'):rep(20)
local C2 = ('b2'):rep(20)

T.test('from_pretrained and tokenizer.load find a Hub id in HF_HUB_CACHE', function()
  local cache = root .. '/hubcache'
  local snap = add_model(cache, 'gpt2', C1, 'main')
  set_env({ HF_HUB_CACHE = cache, HOME = root .. '/nohome' })
  T.eq(hub.resolve('gpt2'), snap)
  local m = tide.gpt2.from_pretrained('gpt2')
  local ref = tide.gpt2.from_pretrained('tests/ref/gpt2_tiny/model')
  T.close(m.transformer.wte.weight, ref.transformer.wte.weight, { rtol = 0, atol = 0 })
  local tok = tide.tokenizer.load('gpt2')
  T.same(tok:encode('Hello world'), { 15496, 995 })
  -- a local path that looks like an id is still the path
  T.same(tide.tokenizer.load('data/gpt2'):encode('Hi'), tok:encode('Hi'))
end)

T.test('org/name ids, HF_HOME, XDG_CACHE_HOME, ~/.cache and revisions', function()
  local home = root .. '/hfhome'
  local snap = add_model(home .. '/hub', 'tiny-org/tiny.gpt2_v1', C1, 'main')
  set_env({ HF_HOME = home, HOME = root .. '/nohome' })
  T.eq(hub.resolve('tiny-org/tiny.gpt2_v1'), snap)
  T.eq(tide.gpt2.from_pretrained('tiny-org/tiny.gpt2_v1').config.n_layer, 2)
  T.eq(tide.tokenizer.load('tiny-org/tiny.gpt2_v1'):vocab_size(), 50257)
  -- a branch under refs/, and a commit hash with no ref
  local other = add_model(home .. '/hub', 'tiny-org/tiny.gpt2_v1', C2, 'v2')
  T.eq(hub.resolve('tiny-org/tiny.gpt2_v1', { revision = 'v2' }), other)
  T.eq(hub.resolve('tiny-org/tiny.gpt2_v1', { revision = C2 }), other)
  T.eq(tide.gpt2.from_pretrained('tiny-org/tiny.gpt2_v1', nil, { revision = 'v2' }).config.n_embd, 64)
  T.raises(function() hub.resolve('tiny-org/tiny.gpt2_v1', { revision = 'v3' }) end, 'no ' .. home .. '/hub/models--tiny-org--tiny.gpt2_v1/refs/v3')
  T.raises(function() hub.resolve('tiny-org/tiny.gpt2_v1', { revision = '../../x' }) end, 'revision must be a branch, tag or commit hash')
  -- XDG_CACHE_HOME, then HOME
  local xdg = root .. '/xdg'
  local s2 = add_model(xdg .. '/huggingface/hub', 'gpt2', C2, 'main')
  set_env({ XDG_CACHE_HOME = xdg, HOME = root .. '/nohome' })
  T.eq(hub.resolve('gpt2'), s2)
  local s3 = add_model(root .. '/h/.cache/huggingface/hub', 'gpt2', C1, 'main')
  set_env({ HOME = root .. '/h' })
  T.eq(hub.resolve('gpt2'), s3)
  -- HF_HUB_CACHE wins over HF_HOME
  set_env({ HF_HUB_CACHE = root .. '/hubcache', HF_HOME = home, HOME = root .. '/h' })
  T.eq(hub.cache_dir(), root .. '/hubcache')
end)

T.test('an id not in the cache is an error saying where tide looked', function()
  set_env({ HF_HUB_CACHE = root .. '/hubcache', HOME = root .. '/nohome' })
  local err = T.raises(function() tide.gpt2.from_pretrained('distilgpt2') end,
    'from_pretrained: "distilgpt2" is not a directory, and not in the Hugging Face cache: no directory '
    .. root .. '/hubcache/models--distilgpt2')
  T.truthy(err:find('from HF_HUB_CACHE', 1, true) and err:find('hf download distilgpt2', 1, true), err)
  T.raises(function() tide.tokenizer.load('openai-community/gpt2') end,
    'tokenizer.load: "openai-community/gpt2" is not a directory, and not in the Hugging Face cache: no directory '
    .. root .. '/hubcache/models--openai-community--gpt2')
  -- a ref naming a snapshot that is not there (an interrupted download)
  local repo = root .. '/hubcache/models--broken'
  sh(("mkdir -p '%s/refs' && printf '%s' > '%s/refs/main'"):format(repo, C2, repo))
  T.raises(function() hub.resolve('broken') end, 'refs/main names ' .. C2 .. ', but there is no ' .. repo .. '/snapshots/' .. C2)
  -- the default cache is named as ~/.cache/huggingface/hub
  set_env({ HOME = root .. '/nohome' })
  T.raises(function() hub.resolve('gpt2') end, 'from ~/.cache/huggingface/hub')
  -- not an id: paths keep their own errors
  T.raises(function() tide.tokenizer.load('a/b/c') end, 'no such file or directory: a/b/c')
  T.raises(function() tide.gpt2.from_pretrained('./nothere') end, 'cannot open ./nothere/config.json')
  T.eq(hub.is_repo_id('gpt2'), true)
  T.eq(hub.is_repo_id('org/name-1.5_x'), true)
  for _, bad in ipairs { '', '/abs', 'a/b/c', 'a..b', '-a', 'a-', 'a b', '../x' } do T.eq(hub.is_repo_id(bad), false, bad) end
end)

T.test('cleanup', function()
  set_env(saved)
  os.execute("rm -rf '" .. root .. "'")
end)

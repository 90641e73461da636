-- tide.train checkpoints: one directory per checkpoint that is at once a
-- Hugging Face model directory and the whole training state.
--
--   train.save_checkpoint('runs/a', { step = 400, micro_step = 0, model = model, optimizer = opt,
--                                     scheduler = sched, loader = train_loader, tokenizer = tok,
--                                     tokens = n, elapsed = s, options = args }, { keep_last = 3 })
--   --> runs/a/checkpoints/step-000400
--   local info = train.load_checkpoint('runs/a', { model = model, optimizer = opt, ... })
--   --> info.step, info.micro_step, info.message (set when `latest` was broken)
--
-- RUN/checkpoints/step-000400/ holds
--   config.json, model.safetensors   what transformers' from_pretrained reads
--   tokenizer.json, ...               when a tokenizer is given
--   optimizer.safetensors             the optimizer's state tensors, "state.<id>.<key>"
--                                     (ids: 1-based positions across the groups, as in
--                                     Optimizer:state_dict)
--   grads.safetensors                 the gradients accumulated so far, only when the
--                                     checkpoint was taken inside gradient accumulation
--   tide_state.json                   everything else (step, micro_step, the optimizer's
--                                     groups and step counts, the scheduler, the global
--                                     generator and named ones, the loader position,
--                                     tokens, elapsed, options, extra) and the byte size
--                                     of every other file, so truncation is caught
-- (tide_state.json, not trainer_state.json: that name is Hugging Face Trainer's
-- own format, which this is not.)
--
-- A checkpoint is written into checkpoints/.tmp-step-N-PID, every file fsynced,
-- tide_state.json last, the directory fsynced and renamed into place (an
-- existing one of the same step is swapped out atomically); then
-- checkpoints/latest (a one-line file naming the directory) is replaced
-- atomically, then older checkpoints are pruned to keep_last. A crash at any
-- point leaves the previous checkpoint and a `latest` naming a whole one.
local ffi = require 'ffi'
local json = require 'tide.json'
local files = require 'tide.data.files'
local safetensors = require 'tide.io.safetensors'
local core = require 'tide.tensor'
local distributed = require 'tide.train.dist'

local M = {}

M.FORMAT = 'tide.train.checkpoint'
M.VERSION = 1
M.STATE_FILE = 'tide_state.json'

for _, decl in ipairs {
  'int open(const char *path, int flags, ...);', 'int close(int fd);', 'int fsync(int fd);',
  'int rename(const char *from, const char *to);', 'int getpid(void);', 'char *strerror(int errnum);',
  'int mkdir(const char *path, unsigned int mode);',
  'int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags);',
} do
  pcall(ffi.cdef, decl)
end
local lib = ffi.C
local AT_FDCWD, RENAME_EXCHANGE = -100, 2

local function tide_() return require 'tide' end
local function strip(msg) return (tostring(msg):gsub('^[^:\n]*%.lua:%d+: ', '')) end
local function errno_text() return ffi.string(lib.strerror(ffi.errno())) end
local function join(dir, name) return (dir:gsub('/+$', '')) .. '/' .. name end

local function file_size(path)
  local f = io.open(path, 'rb')
  if not f then return nil end
  local n = f:seek('end')
  f:close()
  return n
end

-- fsync of a file or a directory (opened read-only, which both allow).
local function fsync_path(path)
  local fd = lib.open(path, 0)
  if fd < 0 then return nil, ('cannot open %s to sync it: %s'):format(path, errno_text()) end
  local ok = lib.fsync(fd) == 0
  local err = not ok and ('fsync %s failed: %s'):format(path, errno_text()) or nil
  lib.close(fd)
  return ok, err
end

-- JSON values ----------------------------------------------------------------------

-- JSON has no NaN or infinities; options such as epochs = math.huge still
-- belong in a checkpoint, so they travel as {"$float": "inf"}.
local FLOAT_KEY = '$float'

local function to_json(v, where)
  local tv = type(v)
  if tv == 'number' then
    if v ~= v then return { [FLOAT_KEY] = 'nan' } end
    if v == math.huge then return { [FLOAT_KEY] = 'inf' } end
    if v == -math.huge then return { [FLOAT_KEY] = '-inf' } end
    return v
  elseif tv == 'string' or tv == 'boolean' or v == json.null then
    return v
  elseif tv == 'table' and not core.is_tensor(v) then
    local n, keys = #v, 0
    for _ in pairs(v) do keys = keys + 1 end
    if getmetatable(v) == json.array_mt or (n > 0 and n == keys) then
      local r = json.array()
      for i = 1, n do r[i] = to_json(v[i], where .. '[' .. i .. ']') end
      return r
    end
    local r = {}
    for k, x in pairs(v) do
      if type(k) ~= 'string' and type(k) ~= 'number' then
        error(('%s has a %s key, which JSON cannot hold'):format(where, type(k)), 0)
      end
      r[tostring(k)] = to_json(x, where .. '.' .. tostring(k))
    end
    return r
  end
  error(('%s is a %s, which a checkpoint cannot hold (only JSON values: numbers, strings, booleans, tables)')
    :format(where, core.is_tensor(v) and 'tensor' or tv), 0)
end

local function from_json(v)
  if type(v) ~= 'table' or v == json.null then return v end
  if getmetatable(v) ~= json.array_mt then
    local f, n = v[FLOAT_KEY], 0
    for _ in pairs(v) do n = n + 1 end
    if n == 1 and f ~= nil then
      if f == 'nan' then return 0 / 0 elseif f == 'inf' then return math.huge elseif f == '-inf' then return -math.huge end
    end
  end
  local r = {}
  for k, x in pairs(v) do r[k] = from_json(x) end
  return setmetatable(r, getmetatable(v))
end

-- Generator positions are uint64: written as decimal strings, so that values
-- above 2^53 (a negative seed wraps to 2^64 + n) survive JSON.
local u64 = ffi.typeof('uint64_t')
local function u64_text(v) return (tostring(ffi.cast(u64, v)):gsub('ULL$', '')) end
local function parse_u64(s)
  if type(s) ~= 'string' or not s:match('^%d+$') or #s > 20 then return nil end
  local v = u64(0)
  for i = 1, #s do
    local nv = v * 10 + (s:byte(i) - 48)
    if nv < v or (v > u64(0) and nv / 10 ~= v) then return nil end  -- overflow
    v = nv
  end
  if #s == 20 and s > '18446744073709551615' then return nil end
  return v
end
local function u64_number(v) if v <= u64(2 ^ 53) then return tonumber(v) end return v end

local function gen_state(g)
  return { seed = u64_text(g._g.seed), offset = u64_text(g._g.offset) }
end

-- helpers shared by save and load -------------------------------------------------------

local function is_module(m) return type(m) == 'table' and type(m.named_parameters) == 'function' end

local function shape_text(s) return '[' .. table.concat(s, ', ') .. ']' end
local function same_shape(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

-- The optimizer's parameters in state_dict order (ids 1, 2, ...).
local function optimizer_params(opt)
  local list = {}
  for _, g in ipairs(opt.param_groups) do
    for _, p in ipairs(g.params) do list[#list + 1] = p end
  end
  return list
end

local function step_name(step) return ('step-%06d'):format(step) end
local function step_of(name)
  local n = name:match('^step%-(%d+)$')
  return n and tonumber(n)
end

-- list ---------------------------------------------------------------------------------

-- The checkpoint directories of a run, oldest (lowest step) first.
function M.list_checkpoints(run_dir)
  if type(run_dir) ~= 'string' or run_dir == '' then
    error('list_checkpoints: expected a run directory path, got ' .. tostring(run_dir), 2)
  end
  local dir = join(run_dir, 'checkpoints')
  local found = {}
  for _, name in ipairs(files.list_dir(dir)) do
    local s = step_of(name)
    if s and files.is_dir(join(dir, name)) then found[#found + 1] = { s, join(dir, name) } end
  end
  table.sort(found, function(a, b) return a[1] < b[1] end)
  local r = {}
  for i, e in ipairs(found) do r[i] = e[2] end
  return r
end

-- save ---------------------------------------------------------------------------------

local function check_int(what, name, v, level)
  if type(v) ~= 'number' or v % 1 ~= 0 or v < 0 or v >= 2 ^ 53 then
    error(('%s: %s must be an integer >= 0, got %s'):format(what, name, tostring(v)), level + 1)
  end
end

-- The JSON document of everything that is not a tensor, and the tensors of
-- the optimizer (and the gradients inside accumulation).
local function collect_state(state, level)
  local what = 'save_checkpoint'
  local doc = {
    format = M.FORMAT, version = M.VERSION,
    step = state.step, micro_step = state.micro_step or 0,
    tokens = state.tokens, elapsed = state.elapsed,
  }
  local ok, err = pcall(function()
    doc.options = state.options ~= nil and to_json(state.options, 'state.options') or nil
    doc.extra = state.extra ~= nil and to_json(state.extra, 'state.extra') or nil
  end)
  if not ok then error(what .. ': ' .. strip(err), level + 1) end
  local tide = tide_()
  doc.rng = { default = gen_state(tide.default_generator) }
  if state.generators ~= nil then
    if type(state.generators) ~= 'table' then error(what .. ': state.generators must be a table name -> Generator', level + 1) end
    local gens = {}
    for k, g in pairs(state.generators) do
      if type(k) ~= 'string' or not tide.is_generator(g) then
        error(('%s: state.generators.%s must be a tide.Generator'):format(what, tostring(k)), level + 1)
      end
      gens[k] = gen_state(g)
    end
    doc.rng.generators = gens
  end
  if state.loader ~= nil then
    if type(state.loader) ~= 'table' or type(state.loader.state) ~= 'function' then
      error(what .. ': state.loader must be a loader with state() (tide.data.shards)', level + 1)
    end
    doc.loader = to_json(state.loader:state(), 'the loader state')
  end
  if state.scheduler ~= nil then
    if type(state.scheduler) ~= 'table' or type(state.scheduler.state_dict) ~= 'function' then
      error(what .. ': state.scheduler must be a scheduler with state_dict()', level + 1)
    end
    doc.scheduler = to_json(state.scheduler:state_dict(), 'the scheduler state')
  end
  local opt_tensors
  if state.optimizer ~= nil then
    local opt = state.optimizer
    if type(opt) ~= 'table' or type(opt.state_dict) ~= 'function' then
      error(what .. ': state.optimizer must be a tide.optim optimizer', level + 1)
    end
    local sd = opt:state_dict()
    local groups = json.array()
    for gi, g in ipairs(sd.param_groups) do
      local jg = {}
      for k, v in pairs(g) do
        if k ~= 'params' then jg[k] = to_json(v, ('optimizer group %d option %s'):format(gi, k)) end
      end
      jg.params = #g.params
      groups[gi] = jg
    end
    local scalars = {}
    opt_tensors = {}
    for id, st in pairs(sd.state) do
      local s = {}
      for k, v in pairs(st) do
        if core.is_tensor(v) then
          opt_tensors[#opt_tensors + 1] = { ('state.%d.%s'):format(id, k), v }
        else
          s[k] = to_json(v, ('optimizer state %d.%s'):format(id, k))
        end
      end
      scalars[tostring(id)] = s
    end
    table.sort(opt_tensors, function(a, b) return a[1] < b[1] end)
    doc.optimizer = { type = opt._name or 'optimizer', param_groups = groups, state = scalars }
  end
  local grads
  if doc.micro_step > 0 and state.model ~= nil then
    grads = {}
    for _, p in ipairs(state.model:named_parameters()) do
      local g = rawget(p[2], 'grad')
      if g ~= nil then grads[#grads + 1] = { p[1], g } end
    end
  end
  return doc, opt_tensors, grads
end

-- Swaps the new directory into place: rename, or when one of that name is
-- there (a second save at the same step), an atomic exchange, so that the
-- name never lacks a whole checkpoint.
local function install_dir(tmp, final)
  if not files.is_dir(final) then
    if lib.rename(tmp, final) ~= 0 then return nil, ('cannot rename %s to %s: %s'):format(tmp, final, errno_text()) end
    return true
  end
  local ok, rc = pcall(function() return lib.renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_EXCHANGE) end)
  if ok and rc == 0 then
    files.remove_tree(tmp)  -- now the old one
    return true
  end
  -- no renameat2 here: move the old one aside first (a crash in between
  -- leaves an older intact checkpoint to fall back on)
  local old = ('%s.old-%d'):format(final, lib.getpid())
  if lib.rename(final, old) ~= 0 then return nil, ('cannot move %s aside: %s'):format(final, errno_text()) end
  if lib.rename(tmp, final) ~= 0 then
    local e = errno_text()
    lib.rename(old, final)
    return nil, ('cannot rename %s to %s: %s'):format(tmp, final, e)
  end
  files.remove_tree(old)
  return true
end

local function read_latest(ckdir)
  local f = io.open(join(ckdir, 'latest'), 'rb')
  if not f then return nil end
  local s = f:read(256) or ''
  f:close()
  local name = s:match('^%s*(%S+)')
  if name and step_of(name) then return name end
  return nil, s
end

-- train.save_checkpoint(run_dir, state, opts) -> the checkpoint's path.
-- opts.keep_last: keep this many newest checkpoints (the one `latest` names
-- always stays). opts.hook(stage, path), for tests: called before each file
-- ('file'), before the directory is renamed into place ('rename') and before
-- `latest` is replaced ('latest'); an error it raises fails the save as a
-- write error would (a full disk), and a process killed inside it is a crash.
local write_checkpoint

function M.save_checkpoint(run_dir, state, opts)
  local what = 'save_checkpoint'
  if type(run_dir) ~= 'string' or run_dir == '' or run_dir:find('%z') then
    error(what .. ': expected a run directory path, got ' .. tostring(run_dir), 2)
  end
  if type(state) ~= 'table' then error(what .. ': expected a state table {step=, model=, ...}, got ' .. type(state), 2) end
  opts = opts or {}
  if type(opts) ~= 'table' then error(what .. ': opts must be a table such as {keep_last=3}', 2) end
  check_int(what, 'state.step', state.step, 2)
  if state.micro_step ~= nil then check_int(what, 'state.micro_step', state.micro_step, 2) end
  if not is_module(state.model) then error(what .. ': state.model must be a module (tide.nn / tide.gpt2)', 2) end
  if opts.keep_last ~= nil and (type(opts.keep_last) ~= 'number' or opts.keep_last < 1 or opts.keep_last % 1 ~= 0) then
    error(what .. ': keep_last must be a positive integer, got ' .. tostring(opts.keep_last), 2)
  end
  for _, k in ipairs { 'tokens', 'elapsed' } do
    if state[k] ~= nil and type(state[k]) ~= 'number' then
      error(('%s: state.%s must be a number, got %s'):format(what, k, type(state[k])), 2)
    end
  end
  -- everything is gathered before anything is written: a bad option fails
  -- here with no directory touched
  local doc, opt_tensors, grads = collect_state(state, 2)
  local config = state.config
  if config ~= nil then
    local ok, err = pcall(to_json, config, 'state.config')
    if not ok then error(what .. ': ' .. strip(err), 2) end
    config = err
  end

  -- a data-parallel job: every rank took part in gathering the state
  -- above (a ZeRO-1 optimizer's slices); the main process writes it, and
  -- every rank returns its path or raises its error
  local d = distributed.world()
  if d then
    if doc.micro_step > 0 then
      error(what .. ': inside gradient accumulation each rank holds its own partial gradients; ' ..
        'save a data-parallel run at a step boundary (micro_step = 0)', 2)
    end
    if doc.loader then doc.loader.world_size = d.world_size() end
    local okm, path = pcall(distributed.on_main, function()
      return write_checkpoint(run_dir, state, opts, doc, opt_tensors, grads, config)
    end)
    if not okm then error(strip(path), 2) end
    return d.rank() == 0 and path or join(join(run_dir, 'checkpoints'), step_name(state.step))
  end
  return write_checkpoint(run_dir, state, opts, doc, opt_tensors, grads, config)
end

-- Writes what save_checkpoint gathered (the directory, its files, `latest`).
function write_checkpoint(run_dir, state, opts, doc, opt_tensors, grads, config)
  local what = 'save_checkpoint'
  local hook = opts.hook or function() end
  local ckdir = join(run_dir, 'checkpoints')
  local ok, err = pcall(files.mkdir_p, ckdir, what)
  if not ok then error(strip(err), 2) end
  local name = step_name(state.step)
  local final = join(ckdir, name)
  local tmp = ('%s/.tmp-%s-%d'):format(ckdir, name, lib.getpid())
  -- leftovers of saves that crashed
  for _, n in ipairs(files.list_dir(ckdir)) do
    if n:match('^%.tmp%-step%-') or n:match('^%.prune%-step%-') or n:match('^step%-%d+%.old%-%d+$') then
      files.remove_tree(join(ckdir, n))
    end
  end
  local prev = read_latest(ckdir)
  local function fail(msg)
    files.remove_tree(tmp)
    local keep = prev and ('the previous checkpoint %s is intact'):format(join(ckdir, prev)) or 'no checkpoint was written'
    error(('%s: writing %s failed: %s; %s'):format(what, final, strip(msg), keep), 3)
  end
  if lib.mkdir(tmp, 511) ~= 0 then fail(('cannot create directory %s: %s'):format(tmp, errno_text())) end

  local sizes = {}
  local function write(fname, fn)
    local path = join(tmp, fname)
    local okw, e = pcall(function()
      hook('file', path)
      fn(path)
    end)
    if not okw then fail(e) end
  end
  local model = state.model
  if type(model.save_pretrained) == 'function' then
    write('model.safetensors', function() model:save_pretrained(tmp) end)
  else
    write('model.safetensors', function(path)
      local list = {}
      for _, p in ipairs(model:named_parameters()) do list[#list + 1] = { p[1], p[2] } end
      safetensors.save_safetensors(path, list, { format = 'pt' })
    end)
    if config == nil and type(model.config) == 'table' then config = to_json(model.config, 'model.config') end
  end
  if config ~= nil then
    write('config.json', function(path) json.write_file(path, config, { indent = 2 }) end)
  end
  if state.tokenizer ~= nil then
    if type(state.tokenizer) ~= 'table' or type(state.tokenizer.save) ~= 'function' then
      fail('state.tokenizer must be a tide tokenizer (with save(dir))')
    end
    -- saved into a directory of its own and moved in: into one that already
    -- holds files the tokenizer's writer would link its files in generations
    write('tokenizer.json', function()
      local tokdir = join(tmp, '.tokenizer')
      state.tokenizer:save(tokdir)
      for _, n in ipairs(files.list_dir(tokdir)) do
        if lib.rename(join(tokdir, n), join(tmp, n)) ~= 0 then
          error(('cannot move %s into %s: %s'):format(n, tmp, errno_text()), 0)
        end
      end
      files.remove_tree(tokdir)
    end)
  end
  if opt_tensors then
    write('optimizer.safetensors', function(path) safetensors.save_safetensors(path, opt_tensors) end)
  end
  if grads then
    write('grads.safetensors', function(path) safetensors.save_safetensors(path, grads) end)
  end
  -- every file's size goes into the state file, written last; the files
  -- written by other writers (the tokenizer's) are synced here
  for _, n in ipairs(files.list_dir(tmp)) do
    local path = join(tmp, n)
    if n:sub(1, 1) == '.' or files.is_dir(path) then fail('unexpected entry ' .. path) end
    local okf, e = fsync_path(path)
    if not okf then fail(e) end
    sizes[n] = file_size(path)
  end
  doc.files = sizes
  write(M.STATE_FILE, function(path) json.write_file(path, doc, { indent = 2 }) end)
  local oks, e = fsync_path(tmp)
  if not oks then fail(e) end
  local okh, he = pcall(hook, 'rename', final)
  if not okh then fail(he) end
  local okr, re = install_dir(tmp, final)
  if not okr then fail(re) end
  fsync_path(ckdir)
  local okl, le = pcall(function()
    hook('latest', join(ckdir, 'latest'))
    json.write_atomic(join(ckdir, 'latest'), name .. '\n')
  end)
  if not okl then
    error(('%s: %s was written, but %s could not be updated: %s'):format(what, final, join(ckdir, 'latest'), strip(le)), 2)
  end
  if opts.keep_last then
    local all = M.list_checkpoints(run_dir)
    for i = 1, #all - opts.keep_last do
      local n = all[i]:match('[^/]*$')
      if n ~= name then
        -- renamed out of the step-N names first: a crash while removing
        -- leaves no half-deleted checkpoint that looks like one
        local doomed = ('%s/.prune-%s-%d'):format(ckdir, n, lib.getpid())
        if lib.rename(all[i], doomed) == 0 then files.remove_tree(doomed) end
      end
    end
  end
  return final
end

-- read and check -----------------------------------------------------------------------

-- Raised by the reader: the file and the reason, for load errors and for the
-- fallback message.
local function bad(path, reason) error({ tide_bad_checkpoint = true, msg = path .. ': ' .. reason }, 0) end

local function is_object(v) return type(v) == 'table' and v ~= json.null and getmetatable(v) ~= json.array_mt end
local function is_array(v) return type(v) == 'table' and getmetatable(v) == json.array_mt end
local function is_count(v) return type(v) == 'number' and v % 1 == 0 and v >= 0 and v < 2 ^ 53 end

local function open_st(path)
  local ok, f = pcall(safetensors.open_safetensors, path)
  if not ok then
    local msg = strip(f):gsub('^safetensors: ', '')
    if msg:sub(1, #path + 1) == path .. ':' then msg = msg:sub(#path + 2):gsub('^%s+', '') end
    bad(path, msg)
  end
  return f
end

-- Reads the tensors of a safetensors file into { name = tensor }, checking
-- each against want[name] (a tensor: same shape, a floating dtype).
local function read_tensors(path, want, label, exact)
  local f = open_st(path)
  local out = {}
  local ok, err = pcall(function()
    for _, n in ipairs(f:names()) do
      local ref = want[n]
      if ref == nil then
        if exact then bad(path, ('holds %s, which %s does not have (a checkpoint of another model?)'):format(n, label)) end
      else
        local info = f:info(n)
        if not same_shape(info.shape, ref:shape()) then
          bad(path, ('tensor %s has shape %s, but %s needs %s (a checkpoint of another model shape)')
            :format(n, shape_text(info.shape), label, shape_text(ref:shape())))
        end
        if info.dtype ~= 'f32' and info.dtype ~= 'f64' and info.dtype ~= 'bf16' and info.dtype ~= 'f16' then
          bad(path, ('tensor %s is %s, expected a floating-point tensor'):format(n, info.dtype))
        end
        local okl, t = pcall(f.load, f, n)
        if not okl then bad(path, ('cannot read tensor %s: %s'):format(n, strip(t))) end
        out[n] = t
      end
    end
  end)
  f:close()
  if not ok then error(err, 0) end
  return out
end

-- Reads and checks a whole checkpoint against `state` (what it will be loaded
-- into) without changing anything; returns what apply() needs. Errors are
-- {tide_bad_checkpoint, msg} naming the file and the reason.
function M.read_checkpoint(dir, state)
  state = state or {}
  local spath = join(dir, M.STATE_FILE)
  local f = io.open(spath, 'rb')
  if not f then
    bad(spath, files.is_dir(dir) and 'missing (a checkpoint that was never finished, or not a tide checkpoint)'
      or 'no such checkpoint directory')
  end
  local text = f:read('*a') or ''
  f:close()
  local okd, doc = pcall(json.decode, text)
  if not okd then bad(spath, 'not valid JSON (' .. strip(doc):gsub('^json: ', '') .. '; truncated or corrupted?)') end
  if not is_object(doc) then bad(spath, 'expected a JSON object') end
  if doc.format ~= M.FORMAT then bad(spath, ('format is %s, expected %q'):format(tostring(doc.format), M.FORMAT)) end
  if type(doc.version) ~= 'number' then bad(spath, 'no version number') end
  if doc.version > M.VERSION then
    bad(spath, ('version %s is newer than this tide reads (%d); update tide'):format(tostring(doc.version), M.VERSION))
  end
  if not is_count(doc.step) then bad(spath, 'step must be an integer >= 0, got ' .. tostring(doc.step)) end
  if not is_count(doc.micro_step) then bad(spath, 'micro_step must be an integer >= 0, got ' .. tostring(doc.micro_step)) end
  for _, k in ipairs { 'tokens', 'elapsed' } do
    if doc[k] ~= nil and type(doc[k]) ~= 'number' then bad(spath, k .. ' must be a number') end
  end
  -- every file at its recorded size: a missing or truncated one is named
  if not is_object(doc.files) then bad(spath, 'no list of files (files)') end
  for n, size in pairs(doc.files) do
    if type(n) ~= 'string' or n:find('/', 1, true) or n == '..' or n == '.' then bad(spath, 'bad file name ' .. tostring(n)) end
    if not is_count(size) then bad(spath, ('the size of %s must be an integer, got %s'):format(n, tostring(size))) end
    local p = join(dir, n)
    local have = file_size(p)
    if have == nil or files.is_dir(p) then bad(p, 'missing') end
    if have < size then bad(p, ('truncated: %d bytes of %d'):format(have, size)) end
    if have ~= size then bad(p, ('%d bytes, but the checkpoint recorded %d (changed after it was written)'):format(have, size)) end
  end
  if doc.files['model.safetensors'] == nil then bad(spath, 'lists no model.safetensors') end
  if doc.files['config.json'] ~= nil then
    local cpath = join(dir, 'config.json')
    local okc, cfg = pcall(json.read_file, cpath)
    if not okc then bad(cpath, 'not valid JSON: ' .. strip(cfg):gsub('^.-config%.json: ', '')) end
    if not is_object(cfg) then bad(cpath, 'expected a JSON object') end
  end
  local r = { doc = doc, dir = dir }

  -- the model
  local model = state.model
  if model ~= nil then
    local want, names = {}, {}
    for _, p in ipairs(model:named_parameters()) do want[p[1]] = p[2]; names[#names + 1] = p[1] end
    local mpath = join(dir, 'model.safetensors')
    r.model = read_tensors(mpath, want, 'the model', true)
    for _, n in ipairs(names) do
      if r.model[n] == nil then bad(mpath, ('lacks %s (a checkpoint of another model?)'):format(n)) end
    end
    if doc.micro_step > 0 then
      local gpath = join(dir, 'grads.safetensors')
      if doc.files['grads.safetensors'] then
        r.grads = read_tensors(gpath, want, 'the model', true)
      else
        r.grads = {}
      end
    end
  end

  -- the optimizer
  local opt = state.optimizer
  if opt ~= nil then
    local o = doc.optimizer
    if o == nil then bad(spath, 'holds no optimizer state (it was saved without an optimizer)') end
    if not is_object(o) or not is_array(o.param_groups) or not is_object(o.state) then
      bad(spath, 'optimizer must be {type=, param_groups=[...], state={...}}')
    end
    if o.type ~= opt._name then
      bad(spath, ('the optimizer is %s, but the one given is %s'):format(tostring(o.type), tostring(opt._name)))
    end
    if #o.param_groups ~= #opt.param_groups then
      bad(spath, ('the optimizer has %d parameter groups, the one given %d'):format(#o.param_groups, #opt.param_groups))
    end
    local sd = { param_groups = {}, state = {} }
    local id = 0
    for gi, g in ipairs(o.param_groups) do
      if not is_object(g) or not is_count(g.params) then bad(spath, ('optimizer group %d is malformed'):format(gi)) end
      if g.params ~= #opt.param_groups[gi].params then
        bad(spath, ('optimizer group %d has %d parameters, the one given %d'):format(gi, g.params, #opt.param_groups[gi].params))
      end
      local sg = from_json(g)
      -- the optimizer's own checks of a group (lr, betas, ...), run here so
      -- that a bad value fails before anything is changed
      if type(opt._validate_group) == 'function' then
        local probe = {}
        for k, v in pairs(sg) do probe[k] = v end
        probe.params = opt.param_groups[gi].params
        local okv, e = pcall(opt._validate_group, opt, probe, gi, 1)
        if not okv then bad(spath, 'optimizer: ' .. strip(e)) end
      end
      sg.params = {}
      for i = 1, g.params do id = id + 1; sg.params[i] = id end
      sd.param_groups[gi] = sg
    end
    local params = optimizer_params(opt)
    for k, s in pairs(o.state) do
      local i = tonumber(k)
      if not i or not params[i] or not is_object(s) then bad(spath, ('optimizer state %s names no parameter'):format(tostring(k))) end
      sd.state[i] = from_json(s)
    end
    local opath = join(dir, 'optimizer.safetensors')
    if doc.files['optimizer.safetensors'] then
      local want = setmetatable({}, { __index = function(_, n)
        local i = tonumber(n:match('^state%.(%d+)%.'))
        return i and params[i] or nil
      end })
      local ts = read_tensors(opath, want, 'the optimizer\'s parameters', true)
      for n, t in pairs(ts) do
        local i, key = n:match('^state%.(%d+)%.(.+)$')
        i = tonumber(i)
        if sd.state[i] == nil then bad(opath, ('tensor %s belongs to no saved parameter state'):format(n)) end
        sd.state[i][key] = t:to(params[i]:dtype()):to(params[i].device)
      end
    end
    -- a state whose tensors are missing would fail at the next step
    for i, s in pairs(sd.state) do
      if opt._name == 'AdamW' and (not core.is_tensor(s.exp_avg) or not core.is_tensor(s.exp_avg_sq) or not is_count(s.step)) then
        bad(opath, ('the AdamW state of parameter %d is incomplete'):format(i))
      end
    end
    r.optimizer = sd
  end

  -- the scheduler: the Hugging Face schedules' fields, checked before anything changes
  local sched = state.scheduler
  if sched ~= nil then
    local s = doc.scheduler
    if s == nil then bad(spath, 'holds no scheduler state (it was saved without a scheduler)') end
    if not is_object(s) then bad(spath, 'scheduler must be an object') end
    s = from_json(s)
    if sched.base_lrs ~= nil then
      if type(s.last_epoch) ~= 'number' or not is_array(s.base_lrs) or #s.base_lrs ~= #sched.base_lrs then
        bad(spath, ('scheduler must hold last_epoch and %d base_lrs'):format(#sched.base_lrs))
      end
      for _, v in ipairs(s.base_lrs) do if type(v) ~= 'number' then bad(spath, 'scheduler base_lrs must be numbers') end end
      if s.last_epoch % 1 ~= 0 or s.last_epoch < -1 or s.last_epoch >= 2 ^ 53 then
        bad(spath, 'scheduler last_epoch must be an integer >= -1')
      end
      if s.last_lr ~= nil then
        if not is_array(s.last_lr) or #s.last_lr ~= #sched.base_lrs then
          bad(spath, ('scheduler last_lr must hold %d numbers'):format(#sched.base_lrs))
        end
        for _, v in ipairs(s.last_lr) do if type(v) ~= 'number' then bad(spath, 'scheduler last_lr must be numbers') end end
      end
    end
    r.scheduler = s
  end

  -- generators
  if not is_object(doc.rng) or not is_object(doc.rng.default) then bad(spath, 'no rng.default generator state') end
  local function gen(s, label)
    local seed, offset = is_object(s) and parse_u64(s.seed), is_object(s) and parse_u64(s.offset)
    if not seed or not offset then bad(spath, ('%s must be {seed="<uint64>", offset="<uint64>"}'):format(label)) end
    return { seed = u64_number(seed), offset = u64_number(offset) }
  end
  r.rng = gen(doc.rng.default, 'rng.default')
  if state.generators ~= nil then
    r.generators = {}
    local saved = doc.rng.generators
    for k in pairs(state.generators) do
      if not is_object(saved) or saved[k] == nil then bad(spath, ('holds no state for the generator %s'):format(tostring(k))) end
      r.generators[k] = gen(saved[k], 'rng.generators.' .. k)
    end
  end

  -- the loader position
  local loader = state.loader
  if loader ~= nil then
    local l = doc.loader
    if l == nil then bad(spath, 'holds no loader position (it was saved without a loader)') end
    if not is_object(l) then bad(spath, 'loader must be an object') end
    l = from_json(l)
    if l.epoch ~= nil and not (is_count(l.epoch) or l.epoch == math.huge) then bad(spath, 'loader.epoch must be an integer') end
    if l.index ~= nil and not is_count(l.index) then bad(spath, 'loader.index must be an integer') end
    if l.world_size ~= nil and not (is_count(l.world_size) and l.world_size >= 1) then
      bad(spath, 'loader.world_size must be a positive integer')
    end
    -- a position saved by another number of ranks: the windows of the
    -- epoch consumed so far by all of them, shared out again
    local ws = type(loader.world_size) == 'number' and loader.world_size or 1
    if l.index ~= nil and (l.world_size or 1) ~= ws then
      local consumed = l.index * (l.world_size or 1)
      if consumed % ws ~= 0 then
        bad(spath, ('the loader position (%d windows of the epoch, read by %d rank(s)) does not split evenly over %d ranks')
          :format(consumed, l.world_size or 1, ws))
      end
      l.index = consumed / ws
    end
    l.world_size = nil
    if l.index ~= nil and type(loader.num_windows) == 'function' and l.index > loader:num_windows() then
      bad(spath, ('loader.index %d is past the %d windows of this loader (another data set?)'):format(l.index, loader:num_windows()))
    end
    r.loader = l
  end
  if doc.options ~= nil and not is_object(doc.options) and not is_array(doc.options) then bad(spath, 'options must be a table') end
  return r
end

-- Puts what read_checkpoint returned into the state's objects, the parts
-- whose own checks could still object first.
local function apply(r, state)
  local tide = tide_()
  if r.optimizer then state.optimizer:load_state_dict(r.optimizer) end
  if r.scheduler then state.scheduler:load_state_dict(r.scheduler) end
  if r.loader then state.loader:set_state(r.loader) end
  if state.model ~= nil then
    local own = {}
    for _, p in ipairs(state.model:named_parameters()) do own[p[1]] = p[2] end
    tide.no_grad(function()
      for n, p in pairs(own) do p:copy_(r.model[n]) end
    end)
    for n, p in pairs(own) do
      local g = r.grads and r.grads[n]
      -- a checkpoint outside accumulation carries no gradients: none pending
      p.grad = g and g:to(p:dtype()):to(p.device) or nil
    end
  end
  tide.set_rng_state(r.rng)
  if r.generators then
    for k, s in pairs(r.generators) do state.generators[k]:set_state(s) end
  end
  local doc = r.doc
  return {
    step = doc.step, micro_step = doc.micro_step, tokens = doc.tokens, elapsed = doc.elapsed,
    options = from_json(doc.options), extra = from_json(doc.extra), path = r.dir,
  }
end

local function apply_checked(r, state)
  local ok, info = pcall(apply, r, state)
  if not ok then
    error(('load_checkpoint: %s: cannot be restored: %s'):format(join(r.dir, M.STATE_FILE), strip(info)), 0)
  end
  return info
end

-- Reads dir against state; nil and the reason when it is not intact.
local function try_read(dir, state)
  local ok, r = pcall(M.read_checkpoint, dir, state)
  if ok then return r end
  if type(r) == 'table' and r.tide_bad_checkpoint then return nil, r.msg end
  error(r, 0)  -- a bug, not a bad file
end

-- train.load_checkpoint(path, state) -> info. path: a checkpoint directory,
-- or a run directory (its checkpoints/latest; when that is broken or
-- missing, the newest intact checkpoint, and info.message says why).
function M.load_checkpoint(path, state)
  local what = 'load_checkpoint'
  if type(path) ~= 'string' or path == '' or path:find('%z') then
    error(what .. ': expected a checkpoint or run directory path, got ' .. tostring(path), 2)
  end
  state = state or {}
  if type(state) ~= 'table' then error(what .. ': state must be a table {model=, optimizer=, ...}', 2) end
  if state.model ~= nil and not is_module(state.model) then error(what .. ': state.model must be a module', 2) end
  path = path:gsub('(.)/+$', '%1')
  local ckdir
  if files.is_dir(join(path, 'checkpoints')) then
    ckdir = join(path, 'checkpoints')
  elseif path:match('[^/]*$') == 'checkpoints' and files.is_dir(path) then
    ckdir = path
  end
  if not ckdir then
    if not files.is_dir(path) then error(('%s: no such checkpoint or run directory: %s'):format(what, path), 2) end
    local r, msg = try_read(path, state)
    if not r then error(what .. ': ' .. msg, 2) end
    return apply_checked(r, state)
  end
  local all = M.list_checkpoints(ckdir:match('^(.*)/checkpoints$') or '.')
  if #all == 0 then error(('%s: %s holds no checkpoint (no step-NNNNNN directory)'):format(what, ckdir), 2) end
  local latest, raw = read_latest(ckdir)
  local why
  if latest then
    local r, msg = try_read(join(ckdir, latest), state)
    if r then return apply_checked(r, state) end
    why = ('%s names %s, which cannot be loaded (%s)'):format(join(ckdir, 'latest'), latest, msg)
  elseif raw then
    why = ('%s does not name a checkpoint (%q)'):format(join(ckdir, 'latest'), raw)
  else
    why = ('%s is missing'):format(join(ckdir, 'latest'))
  end
  local reasons = { why }
  for i = #all, 1, -1 do
    local n = all[i]:match('[^/]*$')
    if n ~= latest then
      local r, msg = try_read(all[i], state)
      if r then
        local info = apply_checked(r, state)
        info.message = ('%s; resumed from %s, the newest intact checkpoint'):format(why, all[i])
        return info
      end
      reasons[#reasons + 1] = msg
    end
  end
  error(('%s: no intact checkpoint in %s:\n  %s'):format(what, ckdir, table.concat(reasons, '\n  ')), 2)
end

return M

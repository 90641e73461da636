-- Builds a CodeParrot-schema corpus from the Python source installed on
-- this machine (recipes/build_corpus.lua is its command line): one JSON
-- Lines record per .py file, {"repo_name", "path", "copies", "size",
-- "content", "license"}, gzip-compressed, written under a temporary name and
-- renamed when complete. The repository is named by the root a file was
-- found under: the standard library (/usr/lib/python3.N) is
-- "python/cpython"; each package in dist-packages is "debian/<package>",
-- with the license its Debian copyright file names when one is found; any
-- other root is "local/<the root's last component>", license "unknown".
local ffi = require 'ffi'
local C = require 'tide.C'
local json = require 'tide.json'
local files = require 'tide.data.files'
local readers = require 'tide.data.readers'

pcall(ffi.cdef, [[
typedef struct gzFile_s *gzFile;
gzFile gzopen(const char *path, const char *mode);
int gzwrite(gzFile file, const void *buf, unsigned len);
int gzclose(gzFile file);
int gzbuffer(gzFile file, unsigned size);
const char *gzerror(gzFile file, int *errnum);
]])
pcall(ffi.cdef, 'char *strerror(int errnum);')

local M = {}
M.default_out = 'data/corpus/python.jsonl.gz'

-- The Python source directories of this machine: every /usr/lib/python3.*
-- and /usr/lib/python3/dist-packages.
function M.default_roots()
  local roots = {}
  local p = io.popen('ls -d /usr/lib/python3.[0-9]* 2>/dev/null')
  for line in p:lines() do roots[#roots + 1] = line end
  p:close()
  if files.is_dir('/usr/lib/python3/dist-packages') then roots[#roots + 1] = '/usr/lib/python3/dist-packages' end
  return roots
end

-- License named by a Debian copyright file (its first "License:" field).
local function debian_license(cache, pkg)
  if cache[pkg] == nil then
    local lic = false
    for _, name in ipairs({ 'python3-' .. pkg:lower(), 'python3-' .. pkg:lower():gsub('_', '-') }) do
      local f = io.open('/usr/share/doc/' .. name .. '/copyright', 'rb')
      if f then
        local text = f:read('*a')
        f:close()
        lic = text:match('\nLicense:%s*([^\n]+)')
        if lic then lic = lic:gsub('%s+$', ''):lower() break end
      end
    end
    cache[pkg] = lic or 'unknown'
  end
  return cache[pkg]
end

local function origin(cache, root, path)
  root = root:gsub('/+$', '')
  local rel = path:sub(#root + 2)
  if root:match('dist%-packages$') or root:match('site%-packages$') then
    local pkg = rel:match('^([^/]+)/') or rel:match('^([^/.]+)')
    return 'debian/' .. pkg, rel, debian_license(cache, pkg)
  end
  if root:match('/python3%.%d+$') then return 'python/cpython', 'Lib/' .. rel, 'psf-2.0' end
  local name = root:match('([^/]+)$') or root
  if name == '.' or name == '' then name = 'root' end
  return 'local/' .. name, rel, 'unknown'
end

-- Whether s is valid UTF-8: the peers' JSON readers (datasets, pyarrow)
-- reject anything else, so such files (old latin-1 tests) are skipped.
local function utf8_checker()
  local buf, cap = nil, 0
  return function(s)
    if not s:find('[\128-\255]') then return true end
    if cap < 3 * #s then cap = 3 * #s; buf = ffi.new('char[?]', cap) end
    local n = C.tide_utf8_replace_invalid(s, #s, buf)
    return n == #s and ffi.string(buf, n) == s
  end
end

-- Writes the corpus. opts: out (default M.default_out), roots (array of
-- directories; default M.default_roots()), max_mb (stop after this much
-- source). Returns {path, files, bytes, skipped, roots}.
function M.build(opts)
  opts = opts or {}
  local out = opts.out or M.default_out
  local roots = opts.roots or M.default_roots()
  local max_bytes = (opts.max_mb or math.huge) * 1e6
  if #roots == 0 then
    error('build_corpus: no Python source found (no /usr/lib/python3.*); install libpython3-stdlib or pass roots', 2)
  end
  files.mkdir_p(out:match('^(.*)/[^/]*$') or '.', 'build_corpus', 2)
  local tmp = out .. '.tmp'
  local gz = ffi.C.gzopen(tmp, 'wb6')
  if gz == nil then
    local e = ffi.errno()  -- before any other call can change it
    error(('build_corpus: cannot create %s: %s'):format(tmp, ffi.string(ffi.C.strerror(e))), 2)
  end
  ffi.C.gzbuffer(gz, 256 * 1024)
  local errnum = ffi.new('int[1]')
  local function put(s)
    if ffi.C.gzwrite(gz, s, #s) ~= #s then
      local e = ffi.errno()
      local why = ffi.string(ffi.C.gzerror(gz, errnum))
      if errnum[0] == -1 then why = ffi.string(ffi.C.strerror(e)) end  -- Z_ERRNO: the system's reason
      ffi.C.gzclose(gz)
      os.remove(tmp)
      error(('build_corpus: writing %s failed: %s'):format(tmp, why), 0)
    end
  end
  local quote, valid_utf8, licenses = json.quote, utf8_checker(), {}
  local nfiles, bytes, skipped = 0, 0, 0
  for _, root in ipairs(roots) do
    if bytes >= max_bytes then break end
    for rec in readers.text(root, { extensions = { '.py' } }):iter() do
      if bytes >= max_bytes then break end
      local content = rec.text
      if content:find('\0', 1, true) or not valid_utf8(content) then
        skipped = skipped + 1
      else
        local repo, path, license = origin(licenses, root, rec.path)
        put('{"repo_name":' .. quote(repo) .. ',"path":' .. quote(path) .. ',"copies":"1","size":' ..
            quote(tostring(#content)) .. ',"content":' .. quote(content) .. ',"license":' .. quote(license) .. '}\n')
        nfiles, bytes = nfiles + 1, bytes + #content
      end
    end
  end
  if ffi.C.gzclose(gz) ~= 0 then
    local e = ffi.errno()
    os.remove(tmp)
    error(('build_corpus: closing %s failed: %s'):format(tmp, ffi.string(ffi.C.strerror(e))), 2)
  end
  local ok, err = os.rename(tmp, out)
  if not ok then
    os.remove(tmp)
    error('build_corpus: ' .. tostring(err), 2)
  end
  return { path = out, files = nfiles, bytes = bytes, skipped = skipped, roots = roots }
end

return M

-- Builds a local corpus in the CodeParrot schema from the Python source
-- installed on this machine: one JSON Lines record per .py file,
--   {"repo_name", "path", "copies", "size", "content", "license"}
-- gzip-compressed, as the seeds' codeparrot-clean data (no download).
-- The standard library counts as repository "python/cpython"; each package
-- in dist-packages as "debian/<package>", with the license its Debian
-- copyright file names when one is found.
--
--   tide recipes/build_corpus.lua [--out=data/corpus/python.jsonl.gz]
--        [--roots=DIR,DIR...] [--max_mb=N] [--quiet]
--
-- The roots default to every /usr/lib/python3.* and /usr/lib/python3/
-- dist-packages present (installing python3-pandas, python3-sklearn,
-- python3-matplotlib and python3-seaborn gives the seeds' data-science
-- filter real matches). Files are taken in sorted order, so the same
-- machine gives the same corpus; --max_mb stops after that many MB of source.
local ffi = require 'ffi'

pcall(ffi.cdef, [[
typedef struct gzFile_s *gzFile;
gzFile gzopen(const char *path, const char *mode);
int gzwrite(gzFile file, const void *buf, unsigned len);
int gzclose(gzFile file);
int gzbuffer(gzFile file, unsigned size);
]])

local args = tide.args
local out_path = args.out or 'data/corpus/python.jsonl.gz'
local max_bytes = (args.max_mb or math.huge) * 1e6
local quote = tide.json.quote

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function list(cmd)
  local p = io.popen(cmd)
  local all = p:read('*a')
  p:close()
  local t = {}
  for line in all:gmatch('[^\n]+') do t[#t + 1] = line end
  return t
end

local roots = {}
if args.roots then
  for r in tostring(args.roots):gmatch('[^,]+') do roots[#roots + 1] = r end
else
  for _, d in ipairs(list('ls -d /usr/lib/python3.[0-9]* 2>/dev/null')) do roots[#roots + 1] = d end
  if require('tide.data.files').is_dir('/usr/lib/python3/dist-packages') then
    roots[#roots + 1] = '/usr/lib/python3/dist-packages'
  end
end
if #roots == 0 then
  error('build_corpus: no Python source found (no /usr/lib/python3.*); install libpython3-stdlib or pass --roots=DIR', 0)
end

-- License named by a Debian copyright file (its first "License:" field).
local license_cache = {}
local function debian_license(pkg)
  if license_cache[pkg] == nil then
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
    license_cache[pkg] = lic or 'unknown'
  end
  return license_cache[pkg]
end

local function origin(root, path)
  local rel = path:sub(#root + 2)
  if root:match('dist%-packages$') or root:match('site%-packages$') then
    local pkg = rel:match('^([^/]+)/') or rel:match('^([^/.]+)')
    return 'debian/' .. pkg, rel, debian_license(pkg)
  end
  return 'python/cpython', 'Lib/' .. rel, 'psf-2.0'
end

os.execute('mkdir -p ' .. shell_quote(out_path:match('^(.*)/[^/]*$') or '.'))
local tmp = out_path .. '.tmp'
local gz = ffi.C.gzopen(tmp, 'wb6')
if gz == nil then error('build_corpus: cannot write ' .. tmp, 0) end
ffi.C.gzbuffer(gz, 256 * 1024)
local function put(s)
  if ffi.C.gzwrite(gz, s, #s) ~= #s then
    ffi.C.gzclose(gz)
    os.remove(tmp)
    error('build_corpus: writing ' .. tmp .. ' failed (disk full?)', 0)
  end
end

-- Whether s is valid UTF-8: the JSON readers of the peers (datasets,
-- pyarrow) reject anything else, so such files (old latin-1 tests) are skipped.
local fixbuf, fixcap = nil, 0
local function valid_utf8(s)
  if not s:find('[\128-\255]') then return true end
  if fixcap < 3 * #s then fixcap = 3 * #s; fixbuf = ffi.new('char[?]', fixcap) end
  local n = tide.C.tide_utf8_replace_invalid(s, #s, fixbuf)
  return n == #s and ffi.string(fixbuf, n) == s
end

local files, bytes, skipped = 0, 0, 0
local t0 = tide.clock()
for _, root in ipairs(roots) do
  if bytes >= max_bytes then break end
  local src = tide.data.text(root, { extensions = { '.py' } })
  for rec in src:iter() do
    if bytes >= max_bytes then break end
    local content = rec.text
    if content:find('\0', 1, true) or not valid_utf8(content) then
      skipped = skipped + 1  -- binary, or not UTF-8
    else
      local repo, path, license = origin(root, rec.path)
      put('{"repo_name":' .. quote(repo) .. ',"path":' .. quote(path) .. ',"copies":"1","size":' ..
          quote(tostring(#content)) .. ',"content":' .. quote(content) .. ',"license":' .. quote(license) .. '}\n')
      files, bytes = files + 1, bytes + #content
    end
  end
end
if ffi.C.gzclose(gz) ~= 0 then os.remove(tmp) error('build_corpus: closing ' .. tmp .. ' failed', 0) end
assert(os.rename(tmp, out_path))
if not args.quiet then
  print(('build_corpus: %d files, %.1f MB of Python source from %s -> %s (%.1f s)%s'):format(
    files, bytes / 1e6, table.concat(roots, ', '), out_path, tide.clock() - t0,
    skipped > 0 and (' (%d binary or non-UTF-8 files skipped)'):format(skipped) or ''))
end

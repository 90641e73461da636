-- The engine as LuaJIT's FFI sees it. Inside the `tide` executable the
-- symbols are in the process (ffi.C); elsewhere libtide is loaded by name.
local ffi = require 'ffi'

ffi.cdef 'const char *tide_api_header(void);'
local ok, C = pcall(function()
  local c = ffi.C
  local _ = c.tide_api_header
  return c
end)
if not ok then
  C = ffi.load(os.getenv('TIDE_LIB') or 'tide')
end
ffi.cdef(ffi.string(C.tide_api_header()))
return C

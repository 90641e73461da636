-- The engine's errors as Lua errors. A C function reached through the FFI
-- returns a status and keeps its message per thread (tide_last_error); the
-- Lua wrapper raises it with these, the one place that reads it.
local ffi = require 'ffi'
local C = require 'tide.C'

local M = {}

-- The message of the engine's last failure.
function M.message() return ffi.string(C.tide_last_error()) end

-- Raises the last failure's message (after prefix, when given) at `level`
-- counted from the caller of raise, as error() counts: 1 blames the caller.
-- Never tail-call it (`return raise(2)`): the count would skip a frame.
function M.raise(level, prefix)
  local msg = ffi.string(C.tide_last_error())
  if prefix then msg = prefix .. msg end
  error(msg, level + 1)
end

return M

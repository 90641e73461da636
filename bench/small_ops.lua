-- One small op called N times from a Lua loop, for counting its cost in
-- instructions (bench/small_ops_instructions.sh runs it under callgrind,
-- which counts the same on a busy machine as on an idle one).
--   tide bench/small_ops.lua --op=add|add_|t|matmul|sum|exp|softmax|layernorm|none [--n=20000]
local tide = tide or require 'tide'
local args = tide.args or {}
local op, n = args.op or 'add', tonumber(args.n) or 20000
local a, b = tide.ones(2, 2), tide.ones(2, 2)
local w, bias = tide.ones(2), tide.zeros(2)
local F = tide.F
local calls = {
  none = function() end,
  add = function() return a:add(b) end,
  add_ = function() return a:add_(b) end,
  t = function() return a:t() end,
  matmul = function() return a:matmul(b) end,
  sum = function() return a:sum() end,
  exp = function() return a:exp() end,
  softmax = function() return F.softmax(a, -1) end,
  layernorm = function() return F.layer_norm(a, { 2 }, w, bias) end,
}
local f = calls[op]
if not f then error('small_ops: unknown --op=' .. tostring(op)) end
for _ = 1, n do f() end

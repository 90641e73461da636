-- The tide side of bench/parquet.sh: one column of a Parquet file into Lua
-- strings through tide.data.parquet, counting their bytes (best of 3), then
-- every column into records.
--   tide bench/parquet.lua FILE COLUMN
local path, column = arg[1], arg[2]
-- best wall time of 3 runs, and the CPU time (all threads) of that run:
-- on a shared machine the CPU time is the steadier measure of the work
local cpu
local function best(fn)
  local t, out = math.huge, nil
  for _ = 1, 3 do
    local t0, c0 = tide.clock(), os.clock()
    out = fn()
    local dt = tide.clock() - t0
    if dt < t then t, cpu = dt, os.clock() - c0 end
  end
  return t, out
end
local t, n = best(function()
  local rows, bytes = 0, 0
  for rec in tide.data.parquet(path, { columns = { column }, progress = false }) do
    local s = rec[column]
    if s then bytes = bytes + #s end
    rows = rows + 1
  end
  return { rows, bytes }
end)
print(('tide      %d rows, %d bytes of %s'):format(n[1], n[2], column))
print(('tide      tide.data.parquet(columns={%s}) into Lua strings: %.3f s (cpu %.3f s)'):format(column, t, cpu))
local ta, rows = best(function()
  local k = 0
  for _ in tide.data.parquet(path, { progress = false }) do k = k + 1 end
  return k
end)
print(('tide      tide.data.parquet() (every column, a table per row): %.3f s (cpu %.3f s) for %d rows'):format(ta, cpu, rows))

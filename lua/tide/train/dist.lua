-- How tide.train's pieces behave in a data-parallel job (tide.dist joined
-- with more than one rank), as Accelerate's do: only the main process logs,
-- plots and writes checkpoints; evaluation averages over every rank's
-- batches. tide.dist is consulted only when the recipe loaded and joined it,
-- so a single-process run never loads MPI.
local M = {}

-- tide.dist when this process is one of several ranks, else nil.
function M.world()
  local d = package.loaded['tide.dist']
  if type(d) ~= 'table' then return nil end
  if type(d.is_initialized) == 'function' and not d.is_initialized() then return nil end
  if d.world_size() <= 1 then return nil end
  return d
end

function M.is_main()
  local d = M.world()
  return d == nil or d.rank() == 0
end

-- Runs fn on the main process and tells every rank how it went: returns
-- fn's first result on the main process and true elsewhere; an error on
-- the main process is raised on every rank (so none waits forever at the
-- next collective). fn runs directly outside a multi-rank job.
function M.on_main(fn)
  local d = M.world()
  if d == nil then return fn() end
  local tide = require 'tide'
  local ok, res
  if d.rank() == 0 then ok, res = pcall(fn) end
  local flag = tide.tensor({ (d.rank() ~= 0 or ok) and 1 or 0 }, { dtype = 'i32' })
  d.broadcast(flag, 0)
  if flag:item() == 0 then
    if d.rank() == 0 then error(res, 0) end
    error('the main process (rank 0) failed; see its error above', 0)
  end
  return res
end

-- train.mean_over_ranks(x): the mean of the number x over every rank (x
-- itself outside a multi-rank job), for logging a loss each rank measured
-- on its own batches (Accelerate's gather(...).mean()). A collective: every
-- rank calls it.
function M.mean_over_ranks(x)
  local d = M.world()
  if d == nil then return x end
  local t = require('tide').tensor({ x }, { dtype = 'f64' })
  d.all_reduce(t, 'avg')
  return t:item()
end

-- train.main_process_first(fn): the main process runs fn first, and the
-- others run it once it has finished (Accelerate's main_process_first): a
-- data set prepared by the main process is then found ready by the others.
-- An error on the main process is raised on every rank.
function M.main_process_first(fn)
  local d = M.world()
  if d == nil then return fn() end
  if d.rank() == 0 then
    return M.on_main(fn)
  end
  M.on_main(fn)  -- waits for the main process's verdict
  return fn()
end

return M

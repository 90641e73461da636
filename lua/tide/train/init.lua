-- tide.train: the pieces of a training run people can trust (checkpoints,
-- evaluation, metrics and TensorBoard, plots, Ctrl-C and NaN handling) and a
-- Trainer built from them. Each module's public functions are copied into
-- this one table (tide.train.save_checkpoint, tide.train.Logger, ...);
-- tensorboard stays a namespace (tide.train.tensorboard.EventWriter).
local train = {}
-- set before the modules load, so that they (and the Trainer) can require it
package.loaded['tide.train'] = train

-- Copies a module's public functions and classes; names starting with '_'
-- and ALL-CAPS constants (file names, format versions) stay in the module.
local function merge(name, mod)
  for k, v in pairs(mod) do
    if type(k) == 'string' and k:sub(1, 1) ~= '_' and k:upper() ~= k then
      if train[k] ~= nil and train[k] ~= v then
        error(('tide.train: %s.lua and another module both define %s'):format(name, k))
      end
      train[k] = v
    end
  end
end

for _, name in ipairs { 'checkpoint', 'evaluate', 'metrics', 'plot', 'trainer' } do
  merge(name, require('tide.train.' .. name))
end
train.tensorboard = require 'tide.train.tensorboard'
-- data-parallel helpers (tide.train.dist): who logs, who prepares the data
local distributed = require 'tide.train.dist'
train.main_process_first = distributed.main_process_first
train.is_main_process = distributed.is_main
train.mean_over_ranks = distributed.mean_over_ranks
-- the fault helpers stay a namespace (tide.train.faults.finite, ...) but for
-- the three a loop of one's own calls
local faults = require 'tide.train.faults'
train.faults = faults
merge('faults', { catch_interrupts = faults.catch_interrupts, Guard = faults.Guard,
                  nonfinite_message = faults.nonfinite_message })

return train

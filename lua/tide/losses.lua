-- Losses written in Lua with tide's ops: differentiable like built-in ones
-- because every op they use is. The example of a custom loss (docs/autograd.md).
local M = {}

function M.install(tide, core)
  local losses = {}
  tide.losses = losses
  local F = tide.F

  -- The Hugging Face course's keytoken-weighted loss (seeds: training a causal
  -- LM from scratch): per-token cross-entropy of the shifted sequence,
  -- averaged per sample, weighted by alpha * (1 + the number of keytoken ids
  -- in the sample), then averaged over the batch.
  --   inputs [B, T] token ids, logits [B, T, V], keytoken_ids a list of ids
  function losses.keytoken_weighted_loss(inputs, logits, keytoken_ids, alpha)
    if not core.is_tensor(inputs) or not core.is_tensor(logits) then
      error('keytoken_weighted_loss: inputs and logits must be tensors', 2)
    end
    if type(keytoken_ids) ~= 'table' then error('keytoken_weighted_loss: keytoken_ids must be a list of ids', 2) end
    alpha = alpha or 1.0
    if type(alpha) ~= 'number' then error('keytoken_weighted_loss: alpha must be a number, got ' .. type(alpha), 2) end
    if inputs:dim() ~= 2 or logits:dim() ~= 3 or logits:size(1) ~= inputs:size(1) or logits:size(2) ~= inputs:size(2)
       or inputs:size(2) < 2 then
      error(('keytoken_weighted_loss: expected inputs [B, T] and logits [B, T, V] with T >= 2, got inputs [%s] and logits [%s]')
        :format(table.concat(inputs:size(), ', '), table.concat(logits:size(), ', ')), 2)
    end
    local B, T, V = logits:size(1), logits:size(2), logits:size(3)
    -- tokens < n predict token n
    local shift_labels = inputs:narrow(2, 2, T - 1)
    local shift_logits = logits:narrow(2, 1, T - 1)
    local loss = F.cross_entropy(shift_logits:reshape(B * (T - 1), V), shift_labels:reshape(B * (T - 1)),
      { reduction = 'none' })
    local loss_per_sample = loss:view(B, T - 1):mean(2)
    -- occurrences of each keytoken in the whole sample, summed over keytokens
    -- (built from inputs, so it lives on their device)
    local counts
    for i, kt in ipairs(keytoken_ids) do
      if type(kt) ~= 'number' then
        error(('keytoken_weighted_loss: keytoken_ids[%d] is a %s, not an id'):format(i, type(kt)), 2)
      end
      local c = inputs:eq(kt):float():sum(2)
      counts = counts and counts + c or c
    end
    if not counts then return loss_per_sample:mean() * alpha end  -- no keytokens: every weight is alpha
    local weights = (counts + 1) * alpha
    return (loss_per_sample * weights):mean()
  end
end

return M

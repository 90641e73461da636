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
    for i, kt in ipairs(keytoken_ids) do
      if type(kt) ~= 'number' then
        error(('keytoken_weighted_loss: keytoken_ids[%d] is a %s, not an id'):format(i, type(kt)), 2)
      end
    end
    -- tokens < n predict token n: the labels shift left and the last position is ignored
    -- (ignore_index -100), so the loss reads the logits in place instead of a narrowed copy
    -- of B * (T-1) * V; the per-sample weights reach the fused kernel's backward as its
    -- per-row dloss (reduction 'none'), with no further pass over the logits
    local shift_labels = tide.full({ B, T }, -100, { dtype = 'i64', device = inputs.device })
    shift_labels:narrow(2, 1, T - 1):copy_(inputs:narrow(2, 2, T - 1))
    local loss = F.cross_entropy(logits:reshape(B * T, V), shift_labels:view(B * T), { reduction = 'none' })
    -- the ignored last position adds 0: the mean over the T - 1 real ones
    local loss_per_sample = loss:view(B, T):sum(2) / (T - 1)
    if #keytoken_ids == 0 then return loss_per_sample:mean() * alpha end  -- no keytokens: every weight is alpha
    -- occurrences of each keytoken in the whole sample, summed over keytokens (an id listed
    -- twice counts twice, as in the course's code): one isin over the distinct ids, then the
    -- repeats; built from inputs, so it lives on their device
    local distinct, extra, seen = {}, {}, {}
    for _, kt in ipairs(keytoken_ids) do
      if seen[kt] then extra[#extra + 1] = kt else distinct[#distinct + 1] = kt end
      seen[kt] = true
    end
    local counts = tide.isin(inputs, distinct):float():sum(2)
    for _, kt in ipairs(extra) do counts = counts + inputs:eq(kt):float():sum(2) end
    local weights = (counts + 1) * alpha
    return (loss_per_sample * weights):mean()
  end
end

return M

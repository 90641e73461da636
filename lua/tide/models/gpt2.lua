-- GPT-2 as Hugging Face's GPT2LMHeadModel computes it, with its parameter
-- names and layouts (Conv1D weights are [in, out]), so Hugging Face
-- directories load and save as they are. docs/dev/gpt2-facts.md describes the
-- reference behaviour this follows.
local files = require 'tide.data.files'

local M = {}

-- The released configurations (vocab 50257, 1024 positions).
local named = {
  ['gpt2'] = { n_embd = 768, n_layer = 12, n_head = 12 },
  ['gpt2-medium'] = { n_embd = 1024, n_layer = 24, n_head = 16 },
  ['gpt2-large'] = { n_embd = 1280, n_layer = 36, n_head = 20 },
  ['gpt2-xl'] = { n_embd = 1600, n_layer = 48, n_head = 25 },
  ['distilgpt2'] = { n_embd = 768, n_layer = 6, n_head = 12 },
}

-- GPT2Config's defaults.
local defaults = {
  vocab_size = 50257, n_positions = 1024, n_embd = 768, n_layer = 12, n_head = 12,
  n_inner = nil, activation_function = 'gelu_new',
  resid_pdrop = 0.1, embd_pdrop = 0.1, attn_pdrop = 0.1,
  layer_norm_epsilon = 1e-5, initializer_range = 0.02,
  scale_attn_weights = true, scale_attn_by_inverse_layer_idx = false, reorder_and_upcast_attn = false,
  tie_word_embeddings = true, bos_token_id = 50256, eos_token_id = 50256,
}
M.defaults = defaults

-- What each config field may hold: a kind and, for numbers, a range.
-- Fields tide does not read (n_ctx, summary_*, task_specific_params, ...)
-- are left alone, as transformers keeps them.
local LIMIT = 2 ^ 31 - 1  -- sizes and ids are int32 in the engine's kernels
local fields = {
  vocab_size = 'size', n_positions = 'size', n_embd = 'size', n_layer = 'size', n_head = 'size',
  n_inner = 'size?',
  resid_pdrop = 'prob', embd_pdrop = 'prob', attn_pdrop = 'prob',
  layer_norm_epsilon = 'nonneg', initializer_range = 'nonneg',
  scale_attn_weights = 'bool', scale_attn_by_inverse_layer_idx = 'bool', reorder_and_upcast_attn = 'bool',
  tie_word_embeddings = 'bool',
  bos_token_id = 'id?', eos_token_id = 'id?',
  activation_function = 'string',
  -- tide's own, for training (llm.c's meaning): 0 or nil keeps every
  -- activation; 1 recomputes the MLP's GELU output in backward from its
  -- input; 2 also the layer norms' outputs from theirs (mean and rstd kept)
  recompute = 'level?',
}

local function show(v)
  if type(v) == 'string' then return ('%q'):format(v) end
  if type(v) == 'table' then return getmetatable(v) and getmetatable(v).__name == 'tide.json.array' and 'an array' or 'an object' end
  return tostring(v)
end

-- Checks every known field of cfg (a config table, json.null already
-- removed) and raises "WHERE: FIELD must be ..., got VALUE" naming the first
-- bad one; `where` names the file or the function.
function M.check_config(cfg, where, level)
  local keys = {}
  for k in pairs(fields) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local kind, v = fields[k], cfg[k]
    local optional = kind:sub(-1) == '?'
    if optional then kind = kind:sub(1, -2) end
    local bad
    if v == nil then
      if not optional then bad = 'must be given' end
    elseif kind == 'bool' then
      if type(v) ~= 'boolean' then bad = 'must be true or false' end
    elseif kind == 'string' then
      if type(v) ~= 'string' then bad = 'must be a string' end
    else
      local num = type(v) == 'number'
      if kind == 'size' then
        if not (num and v >= 1 and v <= LIMIT and v % 1 == 0) then bad = ('must be an integer from 1 to %d'):format(LIMIT) end
      elseif kind == 'id' then
        if not (num and v >= 0 and v <= LIMIT and v % 1 == 0) then bad = ('must be an integer from 0 to %d'):format(LIMIT) end
      elseif kind == 'prob' then
        if not (num and v >= 0 and v < 1) then bad = 'must be a probability in [0, 1)' end
      elseif kind == 'nonneg' then
        if not (num and v >= 0 and v < math.huge) then bad = 'must be a finite number >= 0' end
      elseif kind == 'level' then
        if not (v == 0 or v == 1 or v == 2) then bad = 'must be 0 (keep activations), 1 (recompute GELU) or 2 (GELU and layer norms)' end
      end
    end
    if bad then error(('%s: %s %s, got %s'):format(where, k, bad, show(v)), level + 1) end
  end
  if cfg.n_embd % cfg.n_head ~= 0 then
    error(('%s: n_embd (%d) must be divisible by n_head (%d)'):format(where, cfg.n_embd, cfg.n_head), level + 1)
  end
  if cfg.activation_function ~= 'gelu_new' and cfg.activation_function ~= 'gelu_pytorch_tanh' then
    error(('%s: activation_function %q is not supported (gelu_new, the tanh GELU, is)')
      :format(where, cfg.activation_function), level + 1)
  end
end

function M.install(tide, core)
  local nn, F = tide.nn, tide.F
  local gpt2 = {}
  tide.gpt2 = gpt2

  -- tide.gpt2.config('gpt2' | table, overrides): a full config table.
  function gpt2.config(name_or_table, overrides)
    local cfg = {}
    for k, v in pairs(defaults) do cfg[k] = v end
    if type(name_or_table) == 'string' then
      local base = named[name_or_table]
      if base == nil then
        local names = {}
        for k in pairs(named) do names[#names + 1] = k end
        table.sort(names)
        error(('gpt2.config: unknown model %q (known: %s)'):format(name_or_table, table.concat(names, ', ')), 2)
      end
      for k, v in pairs(base) do cfg[k] = v end
    elseif type(name_or_table) == 'table' then
      for k, v in pairs(name_or_table) do cfg[k] = v end
    elseif name_or_table ~= nil then
      error('gpt2.config: expected a model name or a table', 2)
    end
    for k, v in pairs(overrides or {}) do cfg[k] = v end
    -- GPT2Config's bos/eos default (50256) lies outside a smaller vocabulary,
    -- which transformers warns about; such a model gets the last id instead
    local given = function(k) return (type(name_or_table) == 'table' and name_or_table[k] ~= nil)
      or (overrides and overrides[k] ~= nil) end
    M.check_config(cfg, 'gpt2.config', 2)
    for _, k in ipairs { 'bos_token_id', 'eos_token_id' } do
      if cfg[k] ~= nil and cfg[k] >= cfg.vocab_size and not given(k) then cfg[k] = cfg.vocab_size - 1 end
    end
    return cfg
  end

  -- blocks --------------------------------------------------------------------

  local Attention = nn.Module:extend('GPT2Attention')
  function Attention:init(cfg, layer_idx)
    self.n_head, self.n_embd = cfg.n_head, cfg.n_embd
    self.head_dim = cfg.n_embd / cfg.n_head
    self.scale = 1 / math.sqrt(self.head_dim)
    if cfg.scale_attn_weights == false then self.scale = 1 end
    if cfg.scale_attn_by_inverse_layer_idx then self.scale = self.scale / (layer_idx + 1) end
    self.attn_pdrop = cfg.attn_pdrop
    self:add_module('c_attn', nn.Conv1D(3 * cfg.n_embd, cfg.n_embd))
    self:add_module('c_proj', nn.Conv1D(cfg.n_embd, cfg.n_embd))
    self:add_module('resid_dropout', nn.Dropout(cfg.resid_pdrop))
  end
  -- key_mask: nil or a bool [B, T], true where a key is a real token.
  -- layer_cache: nil, or { k = [B, H, T_max, D], v = ..., past = n } (one
  -- layer of a KVCache): this call's keys and values are written at
  -- positions past..past+T-1 and the queries attend to all past+T of them.
  -- qkv: c_attn(x) when the caller has it already (recompute = 2 makes it
  -- with the layer norm in one op); x is then the layer norm's input.
  function Attention:forward(x, key_mask, layer_cache, qkv)
    local B, T, C = x:size(1), x:size(2), x:size(3)
    local H, D = self.n_head, self.head_dim
    qkv = qkv or self.c_attn(x)
    if layer_cache == nil and not (self.training and self.attn_pdrop > 0) then
      -- one op over the packed projection: the head views, the merge of the
      -- heads and the gradient of qkv cost no copy (a split would give each
      -- part's gradient as a zero-padded copy of qkv, then add the three)
      local y = F.qkv_attention(qkv, H, { is_causal = true, scale = self.scale, key_mask = key_mask })
      return self.resid_dropout(self.c_proj(y))
    end
    local parts = qkv:split(C, 3)
    -- [B, T, C] -> [B, H, T, D] as views: the kernel reads any strides
    local q = parts[1]:view(B, T, H, D):transpose(2, 3)
    local k = parts[2]:view(B, T, H, D):transpose(2, 3)
    local v = parts[3]:view(B, T, H, D):transpose(2, 3)
    local y
    if layer_cache ~= nil then
      -- decoding over the cache: written in place, never re-concatenated
      local past = layer_cache.past
      layer_cache.k:narrow(3, past + 1, T):copy_(k)
      layer_cache.v:narrow(3, past + 1, T):copy_(v)
      local keys = layer_cache.k:narrow(3, 1, past + T)
      local values = layer_cache.v:narrow(3, 1, past + T)
      y = F.scaled_dot_product_attention(q, keys, values, { is_causal = true, scale = self.scale, q_offset = past, key_mask = key_mask })
    else
      -- dropout on the attention probabilities needs them materialised: the
      -- explicit path (scores, mask, softmax, dropout, weighted sum)
      local scores = q:matmul(k:transpose(3, 4)) * self.scale
      local ar = tide.arange(T, { device = q.device })
      local future = ar:view(1, T):gt(ar:view(T, 1))
      local probs
      if key_mask == nil then
        probs = F.softmax(scores:masked_fill(future, -math.huge), -1)
      else
        -- a finite fill keeps the rows of queries that see no key free of
        -- NaN; those rows are then zeroed, as the fused kernel gives them
        local hidden = future:view(1, 1, T, T):logical_or(key_mask:logical_not():view(B, 1, 1, T))
        local none = hidden:logical_not():sum(4, true):eq(0)
        local fill = scores:dtype() == 'f16' and -65504 or -1e30  -- f16 has no -1e30
        probs = F.softmax(scores:masked_fill(hidden, fill), -1):masked_fill(none, 0)
      end
      y = F.dropout(probs, self.attn_pdrop, true):matmul(v)
    end
    y = y:transpose(2, 3):reshape(B, T, C)
    return self.resid_dropout(self.c_proj(y))
  end

  local MLP = nn.Module:extend('GPT2MLP')
  function MLP:init(cfg)
    local inner = cfg.n_inner or 4 * cfg.n_embd
    self:add_module('c_fc', nn.Conv1D(inner, cfg.n_embd))
    self:add_module('c_proj', nn.Conv1D(cfg.n_embd, inner))
    self:add_module('dropout', nn.Dropout(cfg.resid_pdrop))
    self.recompute = cfg.recompute or 0
  end
  -- c_proj(gelu(h)) keeping only h (c_fc's output before the GELU): the
  -- GELU is computed again in c_proj's backward (F.gelu_conv1d_gpt2)
  function MLP:from_pre(h)
    return self.dropout(F.gelu_conv1d_gpt2(h, self.c_proj.weight, self.c_proj.bias))
  end
  function MLP:forward(x)
    if self.recompute >= 1 and tide.autograd.is_grad_enabled() then return self:from_pre(self.c_fc(x)) end
    -- c_fc's bias and the tanh GELU fused into its product (cuBLASLt's
    -- GELU_AUX_BIAS epilogue on CUDA; the same bits as the unfused ops on the CPU)
    return self.dropout(self.c_proj(self.c_fc(x, 'gelu')))
  end

  local Block = nn.Module:extend('GPT2Block')
  function Block:init(cfg, layer_idx)
    self:add_module('ln_1', nn.LayerNorm(cfg.n_embd, { eps = cfg.layer_norm_epsilon }))
    self:add_module('attn', Attention(cfg, layer_idx))
    self:add_module('ln_2', nn.LayerNorm(cfg.n_embd, { eps = cfg.layer_norm_epsilon }))
    self:add_module('mlp', MLP(cfg))
    self.recompute = cfg.recompute or 0
  end
  -- A LayerNorm module's parameters as F.residual_layer_norm takes them; the
  -- one place the model reads them, so a precision policy can substitute them.
  local function ln_params(m) return m.weight, m.bias, m.eps end

  -- The residual stream arrives as x + r (r: the previous block's MLP
  -- output, nil for the first block) and leaves the same way, so each
  -- residual add is fused with the layer norm that follows it (ln_1, ln_2,
  -- then the next block's ln_1 or ln_f): returns the stream before this
  -- block's MLP output, and that output. The model calls this.
  function Block:stream(x, r, key_mask, layer_cache)
    if self.recompute == 2 and layer_cache == nil and tide.autograd.is_grad_enabled() then
      return self:stream_recompute(x, r, key_mask)
    end
    local h
    x, h = F.residual_layer_norm(x, r, ln_params(self.ln_1))
    x, h = F.residual_layer_norm(x, self.attn(h, key_mask, layer_cache), ln_params(self.ln_2))
    return x, self.mlp(h)
  end
  -- recompute = 2 (llm.c's): the layer norms' outputs are not kept either;
  -- each norm is fused with the product that reads it (F.layer_norm_conv1d_gpt2
  -- keeps its input, mean and rstd and normalises again in backward), so the
  -- residual adds run on their own here
  function Block:stream_recompute(x, r, key_mask)
    local a, mlp = self.attn, self.mlp
    if r ~= nil then x = x + r end
    local w, b, eps = ln_params(self.ln_1)
    local qkv = F.layer_norm_conv1d_gpt2(x, w, b, eps, a.c_attn.weight, a.c_attn.bias)
    x = x + a(x, key_mask, nil, qkv)
    w, b, eps = ln_params(self.ln_2)
    return x, mlp:from_pre(F.layer_norm_conv1d_gpt2(x, w, b, eps, mlp.c_fc.weight, mlp.c_fc.bias))
  end
  -- block(x): transformers' GPT2Block, x + attn + mlp (one tensor), for
  -- code that calls a block by itself.
  function Block:forward(x, key_mask, layer_cache)
    local s, m = self:stream(x, nil, key_mask, layer_cache)
    return s + m
  end

  local Transformer = nn.Module:extend('GPT2Model')
  function Transformer:init(cfg)
    self:add_module('wte', nn.Embedding(cfg.vocab_size, cfg.n_embd))
    self:add_module('wpe', nn.Embedding(cfg.n_positions, cfg.n_embd))
    self:add_module('drop', nn.Dropout(cfg.embd_pdrop))
    local h = nn.ModuleList()
    for i = 0, cfg.n_layer - 1 do h:append(Block(cfg, i)) end
    self:add_module('h', h)
    self:add_module('ln_f', nn.LayerNorm(cfg.n_embd, { eps = cfg.layer_norm_epsilon }))
  end

  -- the model ---------------------------------------------------------------------

  local LMHead = nn.Module:extend('GPT2LMHeadModel')
  gpt2.GPT2LMHeadModel = LMHead

  function LMHead:init(cfg, opts)
    self.config = cfg
    self:add_module('transformer', Transformer(cfg))
    -- lm_head shares wte's weight: one tensor under two names
    local head = nn.Module:extend('Linear')()
    if cfg.tie_word_embeddings ~= false then
      head:register_parameter('weight', self.transformer.wte.weight)
    else
      head:register_parameter('weight', tide.empty(cfg.vocab_size, cfg.n_embd):normal_(0, cfg.initializer_range))
    end
    self:add_module('lm_head', head)
    if not (opts and opts.skip_init) then self:init_weights() end
  end

  -- Hugging Face's _init_weights: normal(0, initializer_range) for Conv1D and
  -- embedding weights, zero biases, LayerNorm weight 1 and bias 0; then every
  -- c_proj.weight normal(0, initializer_range / sqrt(2 n_layer)).
  function LMHead:init_weights()
    local cfg = self.config
    local std = cfg.initializer_range
    tide.no_grad(function()
      for _, pair in ipairs(self:named_modules()) do
        local name, m = pair[1], pair[2]
        if m.type_name == 'Conv1D' then
          local s = name:match('c_proj$') and std / math.sqrt(2 * cfg.n_layer) or std
          m.weight:normal_(0, s)
          m.bias:zero_()
        elseif m.type_name == 'Embedding' then
          m.weight:normal_(0, std)
        elseif m.type_name == 'LayerNorm' then
          m.weight:fill_(1)
          m.bias:zero_()
        end
      end
    end)
  end

  -- An integer (or, for masks, bool) tensor of ids' shape [B, T], or [T]
  -- given for every row; names the option in errors.
  local function batch_arg(x, name, B, T, level, bool_ok)
    if not core.is_tensor(x) then error(('GPT2LMHeadModel: %s must be a tensor, got %s'):format(name, type(x)), level + 1) end
    local dt = x:dtype()
    if not (dt == 'i64' or dt == 'i32' or dt == 'u8' or dt == 'u16' or (bool_ok and dt == 'bool')) then
      error(('GPT2LMHeadModel: %s must be an integer tensor, got %s'):format(name, dt), level + 1)
    end
    if x:dim() == 1 and x:size(1) == T then x = x:unsqueeze(1) end
    if x:dim() ~= 2 or (x:size(1) ~= B and x:size(1) ~= 1) or x:size(2) ~= T then
      error(('GPT2LMHeadModel: %s has shape [%s], expected [%d, %d] as input_ids')
        :format(name, table.concat(x:shape(), ', '), B, T), level + 1)
    end
    return x
  end

  local forward_opts = { labels = true, attention_mask = true, position_ids = true, cache = true, logits_to_keep = true }

  -- A KV cache for decoding: per layer k and v [B, H, T_max, D] allocated
  -- once (T_max <= n_positions), filled in place by model(ids, {cache = c});
  -- c.length is the number of positions it holds.
  local KVCache = {}
  KVCache.__index = KVCache
  KVCache.__name = 'tide.gpt2.KVCache'
  gpt2.KVCache = KVCache

  -- model:new_cache(batch_size, max_length = n_positions, {dtype=, device=})
  function LMHead:new_cache(B, T_max, opts)
    local cfg = self.config
    T_max = T_max or cfg.n_positions
    if type(B) ~= 'number' or B < 1 or B % 1 ~= 0 then
      error('new_cache: batch_size must be a positive integer, got ' .. tostring(B), 2)
    end
    if type(T_max) ~= 'number' or T_max < 1 or T_max % 1 ~= 0 or T_max > cfg.n_positions then
      error(('new_cache: max_length must be an integer from 1 to n_positions (%d), got %s'):format(cfg.n_positions, tostring(T_max)), 2)
    end
    local w = self.transformer.wte.weight
    local topts = { dtype = opts and opts.dtype or w:dtype(), device = opts and opts.device or w.device }
    local H = cfg.n_head
    local D = cfg.n_embd / H
    local layers = {}
    for i = 1, cfg.n_layer do
      layers[i] = { k = tide.zeros({ B, H, T_max, D }, topts), v = tide.zeros({ B, H, T_max, D }, topts), past = 0 }
    end
    return setmetatable({ layers = layers, length = 0, batch_size = B, max_length = T_max }, KVCache)
  end

  -- Forgets what the cache holds (the memory is kept).
  function KVCache:reset() self.length = 0; return self end

  -- model(input_ids, {labels=, attention_mask=, position_ids=, cache=, logits_to_keep=})
  -- -> an output table, as transformers' CausalLMOutput: out.logits [B, T, V]
  -- ([B, n, V], the last n positions, with logits_to_keep = n > 0) always,
  -- out.loss (the mean shifted cross-entropy over labels other than -100)
  -- when labels are given. attention_mask [B, T] (1 = token, 0 = padding)
  -- hides padding keys from every query; positions are 0..T-1 unless
  -- position_ids says otherwise, as in transformers' forward (its generate
  -- passes cumsum(mask) - 1 for left padding).
  function LMHead:forward(ids, opts)
    if not core.is_tensor(ids) then error('GPT2LMHeadModel: input_ids must be an integer tensor, got ' .. type(ids), 2) end
    local idt = ids:dtype()
    if idt ~= 'i64' and idt ~= 'i32' and idt ~= 'u16' and idt ~= 'u8' then
      error('GPT2LMHeadModel: input_ids must be an integer tensor, got ' .. idt, 2)
    end
    if ids:dim() == 1 then ids = ids:unsqueeze(1) end
    if ids:dim() ~= 2 then error(('GPT2LMHeadModel: input_ids must be [B, T] or [T], got shape [%s]'):format(table.concat(ids:shape(), ', ')), 2) end
    if opts ~= nil and type(opts) ~= 'table' then error('GPT2LMHeadModel: options must be a table, got ' .. type(opts), 2) end
    opts = opts or {}
    for k in pairs(opts) do
      if not forward_opts[k] then
        error(('GPT2LMHeadModel: unknown option %s (labels, attention_mask, position_ids, cache and logits_to_keep are known)'):format(tostring(k)), 2)
      end
    end
    local B, T = ids:size(1), ids:size(2)
    local cfg = self.config
    local cache, past = opts.cache, 0
    if cache ~= nil then
      if getmetatable(cache) ~= KVCache then error('GPT2LMHeadModel: cache must be a cache from model:new_cache, got ' .. type(cache), 2) end
      if #cache.layers ~= cfg.n_layer then
        error(('GPT2LMHeadModel: cache has %d layers, the model %d'):format(#cache.layers, cfg.n_layer), 2)
      end
      if cache.batch_size ~= B then
        error(('GPT2LMHeadModel: cache was made for batch size %d, input_ids has %d rows'):format(cache.batch_size, B), 2)
      end
      past = cache.length
      if past + T > cache.max_length then
        error(('GPT2LMHeadModel: cache holds %d positions and room for %d; %d more do not fit'):format(past, cache.max_length, T), 2)
      end
      if opts.labels ~= nil then error('GPT2LMHeadModel: labels cannot be given with a cache (decoding is forward only)', 2) end
      if self.training then error('GPT2LMHeadModel: a cache decodes in eval mode (call model:eval() first)', 2) end
      if tide.is_grad_enabled() then
        error('GPT2LMHeadModel: a cache is for decoding, forward only: call the model inside tide.no_grad', 2)
      end
    end
    if past + T > cfg.n_positions then
      if past > 0 then
        error(('GPT2LMHeadModel: sequence length %d (%d cached + %d new) exceeds n_positions %d'):format(past + T, past, T, cfg.n_positions), 2)
      end
      error(('GPT2LMHeadModel: sequence length %d exceeds n_positions %d'):format(T, cfg.n_positions), 2)
    end
    if T == 0 then error(('GPT2LMHeadModel: input_ids has no positions (shape [%d, 0])'):format(B), 2) end
    local keep = opts.logits_to_keep or 0
    if type(keep) ~= 'number' or keep % 1 ~= 0 or keep < 0 then
      error('GPT2LMHeadModel: logits_to_keep must be a non-negative integer, got ' .. tostring(opts.logits_to_keep), 2)
    end
    if keep > 0 and opts.labels ~= nil then
      error('GPT2LMHeadModel: logits_to_keep cannot be given with labels (the loss needs every position\'s logits)', 2)
    end

    local pos
    if opts.position_ids ~= nil then
      pos = batch_arg(opts.position_ids, 'position_ids', B, T, 2)
      if pos:numel() > 0 and (pos:min():item() < 0 or pos:max():item() >= cfg.n_positions) then
        error(('GPT2LMHeadModel: position_ids must lie in [0, %d), got values from %d to %d')
          :format(cfg.n_positions, pos:min():item(), pos:max():item()), 2)
      end
    else
      pos = past  -- positions past..past+T-1: gpt2_embedding makes them itself
    end
    local key_mask
    if opts.attention_mask ~= nil then
      -- with a cache, the mask covers the cached positions too: [B, past + T]
      local m = batch_arg(opts.attention_mask, 'attention_mask', B, past + T, 2, true)
      if m:dtype() ~= 'bool' then
        if m:numel() > 0 and (m:min():item() < 0 or m:max():item() > 1) then
          error(('GPT2LMHeadModel: attention_mask must hold 0 (padding) and 1 (token), got values from %d to %d')
            :format(m:min():item(), m:max():item()), 2)
        end
        m = m:ne(0)
      end
      if m:size(1) ~= B then m = m:expand(B, past + T) end
      -- a mask of ones changes nothing: the kernel's unmasked path
      if m:numel() > 0 and m:logical_not():sum():item() > 0 then key_mask = m:contiguous() end
    end
    local tr = self.transformer
    -- the token and position embeddings in one op; the tables read here only
    local wte, wpe = tr.wte.weight, tr.wpe.weight
    local x = F.gpt2_embedding(ids, wte, wpe, pos)
    x = tr.drop(x)
    local r  -- the last block's output, added to the stream by ln_f's fused op
    if cache ~= nil then
      for i = 1, tr.h:len() do
        local lc = cache.layers[i]
        lc.past = past
        x, r = tr.h[i]:stream(x, r, key_mask, lc)
      end
      cache.length = past + T
    else
      for i = 1, tr.h:len() do x, r = tr.h[i]:stream(x, r, key_mask) end
    end
    -- logits_to_keep = n: only the last n positions' logits (generate needs
    -- the last one; the prompt's other positions would cost most of a prefill)
    if keep > 0 and keep < T then
      x = x:narrow(2, T - keep + 1, keep)
      if r ~= nil then r = r:narrow(2, T - keep + 1, keep) end
    end
    local _
    _, x = F.residual_layer_norm(x, r, ln_params(tr.ln_f))
    local logits = F.linear(x, self.lm_head.weight)
    if opts.labels == nil then return { logits = logits } end
    local labels = batch_arg(opts.labels, 'labels', B, T, 2)
    if labels:size(1) ~= B then labels = labels:expand(B, T) end
    -- predict token t+1 from tokens up to t: the labels shift left and the last position gets
    -- ignore_index, so the loss reads the logits in place (a narrowed copy would move all of
    -- B * (T-1) * V); the same rows, the same mean in the same order, so the same bits
    local shift_labels = tide.full({ B, T }, -100, { dtype = 'i64', device = labels.device })
    if T > 1 then shift_labels:narrow(2, 1, T - 1):copy_(labels:narrow(2, 2, T - 1)) end
    local loss = F.cross_entropy(logits:reshape(B * T, cfg.vocab_size), shift_labels:view(B * T),
      { ignore_index = -100 })
    return { logits = logits, loss = loss }
  end

  -- model:generate(input_ids, opts): see tide/generation/generate.lua
  function LMHead:generate(ids, opts)
    return require('tide.generation.generate').generate(self, ids, opts)
  end

  -- The number of distinct parameters of a config (lm_head tied), without
  -- building the model: embeddings, per block two LayerNorms, c_attn, c_proj,
  -- c_fc and the MLP's c_proj, then ln_f.
  function gpt2.num_parameters(cfg)
    local C, inner = cfg.n_embd, cfg.n_inner or 4 * cfg.n_embd
    local block = 2 * 2 * C + (C * 3 * C + 3 * C) + (C * C + C) + (C * inner + inner) + (inner * C + C)
    local n = cfg.vocab_size * C + cfg.n_positions * C + cfg.n_layer * block + 2 * C
    if cfg.tie_word_embeddings == false then n = n + cfg.vocab_size * C end
    return n
  end

  -- Hugging Face directories ---------------------------------------------------

  local function join(dir, name) return (dir:gsub('/+$', '')) .. '/' .. name end

  -- The parameters a config needs, in order: { name, shape, fields } with
  -- the config fields that decide the shape (for mismatch messages).
  local function expected_tensors(cfg)
    local C, V, P, inner = cfg.n_embd, cfg.vocab_size, cfg.n_positions, cfg.n_inner or 4 * cfg.n_embd
    local inner_f = cfg.n_inner and 'n_inner' or 'n_embd (n_inner = 4 n_embd)'
    local list = {
      { 'transformer.wte.weight', { V, C }, 'vocab_size, n_embd' },
      { 'transformer.wpe.weight', { P, C }, 'n_positions, n_embd' },
    }
    local function add(name, shape, f) list[#list + 1] = { name, shape, f } end
    for i = 0, cfg.n_layer - 1 do
      local h = 'transformer.h.' .. i .. '.'
      add(h .. 'ln_1.weight', { C }, 'n_embd')
      add(h .. 'ln_1.bias', { C }, 'n_embd')
      add(h .. 'attn.c_attn.weight', { C, 3 * C }, 'n_embd')
      add(h .. 'attn.c_attn.bias', { 3 * C }, 'n_embd')
      add(h .. 'attn.c_proj.weight', { C, C }, 'n_embd')
      add(h .. 'attn.c_proj.bias', { C }, 'n_embd')
      add(h .. 'ln_2.weight', { C }, 'n_embd')
      add(h .. 'ln_2.bias', { C }, 'n_embd')
      add(h .. 'mlp.c_fc.weight', { C, inner }, 'n_embd, ' .. inner_f)
      add(h .. 'mlp.c_fc.bias', { inner }, inner_f)
      add(h .. 'mlp.c_proj.weight', { inner, C }, inner_f .. ', n_embd')
      add(h .. 'mlp.c_proj.bias', { C }, 'n_embd')
    end
    add('transformer.ln_f.weight', { C }, 'n_embd')
    add('transformer.ln_f.bias', { C }, 'n_embd')
    if cfg.tie_word_embeddings == false then add('lm_head.weight', { V, C }, 'vocab_size, n_embd') end
    return list
  end

  local float_dtypes = { f32 = true, f64 = true, bf16 = true, f16 = true }

  -- tide.gpt2.from_pretrained(dir_or_hub_id, overrides, opts): config.json +
  -- model.safetensors as transformers writes them; names with or without
  -- the 'transformer.' prefix, Conv1D weights [in, out], any float dtype
  -- (converted to f32, as transformers loads into a float32 model). A name
  -- that is not a directory ('gpt2', 'org/name') is looked up in the local
  -- Hugging Face cache (tide.io.hub; opts.revision). The config is checked
  -- field by field and against the file's header (names, shapes, dtypes,
  -- number of layers) before the model is built or any tensor read.
  function gpt2.from_pretrained(dir, overrides, opts)
    if type(dir) ~= 'string' then error('from_pretrained: expected a directory path or a model id, got ' .. type(dir), 2) end
    if overrides ~= nil and type(overrides) ~= 'table' then error('from_pretrained: overrides must be a table, got ' .. type(overrides), 2) end
    dir = tide.io.hub.locate(dir, { what = 'from_pretrained', revision = opts and opts.revision, level = 2 })
    local cfg_path, st_path = join(dir, 'config.json'), join(dir, 'model.safetensors')
    local ok, file_cfg = pcall(tide.json.read_file, cfg_path)
    if not ok then error('from_pretrained: ' .. tostring(file_cfg):gsub('^[^:]*:%d+: ', ''), 2) end
    if type(file_cfg) ~= 'table' or file_cfg == tide.json.null or getmetatable(file_cfg) == tide.json.array_mt then
      local what = file_cfg == tide.json.null and 'null' or type(file_cfg) == 'table' and 'an array' or ('a ' .. type(file_cfg))
      error(('from_pretrained: %s must hold a JSON object of config fields, got %s'):format(cfg_path, what), 2)
    end
    if file_cfg.model_type ~= nil and file_cfg.model_type ~= 'gpt2' then
      error(('from_pretrained: %s: model_type is %s; tide loads gpt2 models'):format(cfg_path, show(file_cfg.model_type)), 2)
    end
    local given = {}
    for k, v in pairs(file_cfg) do
      if fields[k] ~= nil then given[k] = v ~= tide.json.null and v or nil end
    end
    -- the file's own fields first, so that an error names the file
    local merged = {}
    for k, v in pairs(defaults) do merged[k] = v end
    for k, v in pairs(given) do merged[k] = v end
    M.check_config(merged, 'from_pretrained: ' .. cfg_path, 2)
    local okc, cfg = pcall(gpt2.config, given, overrides)
    if not okc then error('from_pretrained: ' .. tostring(cfg):gsub('^[^:]*:%d+: ', ''), 2) end
    -- what mismatch messages blame: the file, or the file and the caller's overrides
    local cfg_from = (overrides and next(overrides)) and (cfg_path .. ' with the overrides given') or cfg_path

    local ok2, f = pcall(tide.io.open_safetensors, st_path)
    if not ok2 then
      local hint = ''
      if not files.exists(st_path) and files.exists(join(dir, 'pytorch_model.bin')) then
        hint = ' (the directory has pytorch_model.bin, a pickle, which tide never reads; save it with safe_serialization)'
      end
      error('from_pretrained: ' .. tostring(f):gsub('^[^:]*:%d+: ', '') .. hint, 2)
    end
    -- the file's names as the model's, from the header alone
    local file_of, layers = {}, -1
    for _, name in ipairs(f:names()) do
      local key = name
      -- the causal-mask buffers older versions saved are not parameters
      if not (key:match('%.attn%.bias$') or key:match('%.attn%.masked_bias$')) then
        if not key:match('^transformer%.') and not key:match('^lm_head%.') then key = 'transformer.' .. key end
        if file_of[key] then
          f:close()
          error(('from_pretrained: %s holds both %s and %s, the same parameter'):format(st_path, file_of[key], name), 2)
        end
        file_of[key] = name
        local l = key:match('^transformer%.h%.(%d+)%.')
        if l then layers = math.max(layers, tonumber(l)) end
      end
    end
    local function fail(msg)
      f:close()
      error('from_pretrained: ' .. msg, 3)
    end
    if layers + 1 ~= cfg.n_layer then
      fail(('%s says n_layer = %d, but %s holds %d layers (transformer.h.0 to h.%d)')
        :format(cfg_from, cfg.n_layer, st_path, layers + 1, layers))
    end
    -- a tied head is wte itself; a file's own lm_head.weight is only used untied
    if cfg.tie_word_embeddings ~= false then file_of['lm_head.weight'] = nil end
    local want, missing, wanted = expected_tensors(cfg), {}, {}
    for _, e in ipairs(want) do
      local name, shape = e[1], e[2]
      wanted[name] = true
      local fname = file_of[name]
      if fname == nil then
        missing[#missing + 1] = name
      else
        local info = f:info(fname)
        if not float_dtypes[info.dtype] then
          fail(('%s: tensor %s is %s; the model needs a floating-point tensor (f32, f64, bf16 or f16)')
            :format(st_path, fname, info.dtype))
        end
        local same = #info.shape == #shape
        for i = 1, #shape do if info.shape[i] ~= shape[i] then same = false end end
        if not same then
          fail(('%s: tensor %s has shape [%s], but %s (%s) needs [%s]')
            :format(st_path, fname, table.concat(info.shape, ', '), cfg_from, e[3], table.concat(shape, ', ')))
        end
      end
    end
    if #missing > 0 then
      fail(('%s lacks %d parameters: %s'):format(dir, #missing, table.concat(missing, ', ', 1, math.min(#missing, 5))))
    end
    local unexpected = {}
    for k, fname in pairs(file_of) do if not wanted[k] then unexpected[#unexpected + 1] = fname end end
    if #unexpected > 0 then
      table.sort(unexpected)
      fail(('%s has tensors the model does not: %s'):format(dir, table.concat(unexpected, ', ', 1, math.min(#unexpected, 5))))
    end
    local model = nn.skip_init(function() return LMHead(cfg, { skip_init = true }) end)
    local own = model:state_dict()
    local modules = {}
    for _, pair in ipairs(model:named_modules()) do modules[pair[1]] = pair[2] end
    local ok3, err = pcall(tide.no_grad, function()
      for _, e in ipairs(want) do
        local t = f:load(file_of[e[1]])
        if t:dtype() == 'f32' then
          -- the tensor just read becomes the parameter: no second copy of
          -- the weights to allocate, fault in and fill
          local path, pname = e[1]:match('^(.*)%.([^.]+)$')
          modules[path]:register_parameter(pname, t)
        else
          own[e[1]]:copy_(t)
        end
      end
      -- the tied head is wte's tensor, whichever wte now holds
      if cfg.tie_word_embeddings ~= false then
        model.lm_head:register_parameter('weight', model.transformer.wte.weight)
      end
    end)
    f:close()
    if not ok3 then error('from_pretrained: ' .. tostring(err):gsub('^[^:]*:%d+: ', ''), 2) end
    return model
  end

  -- model:save_pretrained(dir): config.json and model.safetensors that
  -- transformers.AutoModelForCausalLM.from_pretrained(dir) loads unchanged.
  -- Both files are written atomically (temp file, fsync, rename).
  function LMHead:save_pretrained(dir)
    if type(dir) ~= 'string' then error('save_pretrained: expected a directory path, got ' .. type(dir), 2) end
    -- '' would put the files in the root directory; C would cut a NUL short
    if dir == '' or dir:find('%z') then error(('save_pretrained: bad directory path "%s" (empty, or holding a NUL byte)'):format((dir:gsub('%z', '\\0'))), 2) end
    if not pcall(files.mkdir_p, dir, 'save_pretrained') then error('save_pretrained: cannot create directory ' .. dir, 2) end
    local cfg = {}
    for k, v in pairs(self.config) do cfg[k] = v end
    cfg.model_type = 'gpt2'
    cfg.architectures = tide.json.array({ 'GPT2LMHeadModel' })
    cfg.n_inner = cfg.n_inner or tide.json.null
    cfg.torch_dtype = 'float32'
    local tensors = {}
    for _, p in ipairs(self:named_parameters()) do tensors[#tensors + 1] = { p[1], p[2] } end
    tide.io.save_safetensors(join(dir, 'model.safetensors'), tensors, { format = 'pt' })
    tide.json.write_file(join(dir, 'config.json'), cfg, { indent = 2 })
  end

  -- tide.gpt2.new(config_or_name, overrides)
  function gpt2.new(cfg, overrides)
    return LMHead(gpt2.config(cfg, overrides))
  end
end

return M

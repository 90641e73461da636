-- tide.nn: modules in the style of Torch7 and PyTorch. A module owns named
-- parameters (tensors that require grad) and named child modules; its
-- parameter names are the dotted paths PyTorch and Hugging Face use
-- (`transformer.h.0.attn.c_attn.weight`), so state dicts move between them.
local M = {}

function M.install(tide, core)
  local nn = {}
  tide.nn = nn
  local F = tide.F
  local is_tensor = core.is_tensor
  -- under tide.autocast('bf16', ...) a parameter's bf16 shadow (tide/amp.lua)
  local param = tide.amp.param

  -- the base class ------------------------------------------------------------

  local Module = { type_name = 'Module' }
  Module.__index = Module
  nn.Module = Module

  -- Module:extend('Name') makes a subclass; Class(...) makes an instance and
  -- calls its init(...); instance(...) calls forward(...).
  function Module:extend(name)
    local cls = setmetatable({ type_name = name }, { __index = self, __call = function(c, ...) return c:new(...) end })
    cls.__index = cls
    cls.__call = function(m, ...) return m:forward(...) end
    cls.__tostring = Module.__tostring
    return cls
  end
  setmetatable(Module, { __call = function(c, ...) return c:new(...) end })
  Module.__call = function(m, ...) return m:forward(...) end

  function Module:new(...)
    local m = setmetatable({ _params = {}, _param_order = {}, _modules = {}, _module_order = {}, training = true }, self)
    if m.init then m:init(...) end
    return m
  end

  function Module:forward()
    error(self.type_name .. ': forward is not defined', 2)
  end

  -- Registers t (made to require grad) as parameter `name`, reachable as self[name].
  function Module:register_parameter(name, t)
    if not is_tensor(t) then error(('register_parameter: %s must be a tensor'):format(name), 2) end
    if rawget(t, 'requires_grad') ~= true then t:requires_grad_() end
    if self._params[name] == nil then self._param_order[#self._param_order + 1] = name end
    self._params[name] = t
    rawset(self, name, t)
    return t
  end

  -- Registers a child module under `name`, reachable as self[name].
  function Module:add_module(name, m)
    if getmetatable(m) == nil or m._params == nil then error(('add_module: %s must be a module'):format(name), 2) end
    if self._modules[name] == nil then self._module_order[#self._module_order + 1] = name end
    self._modules[name] = m
    rawset(self, name, m)
    return m
  end

  -- { {name, module}, ... } depth first, the root first with name ''.
  function Module:named_modules(prefix, out)
    out = out or {}
    prefix = prefix or ''
    out[#out + 1] = { prefix, self }
    for _, k in ipairs(self._module_order) do
      self._modules[k]:named_modules(prefix == '' and k or (prefix .. '.' .. k), out)
    end
    return out
  end

  -- { {name, tensor}, ... }; a tensor shared by several modules (tied weights)
  -- is listed once, under its first name, as PyTorch does. With recurse=false
  -- only this module's own parameters.
  function Module:named_parameters(prefix, recurse)
    local out, seen = {}, {}
    local mods = recurse == false and { { prefix or '', self } } or self:named_modules(prefix or '')
    for _, pair in ipairs(mods) do
      local name, m = pair[1], pair[2]
      for _, k in ipairs(m._param_order) do
        local t = m._params[k]
        if not seen[t] then
          seen[t] = true
          out[#out + 1] = { name == '' and k or (name .. '.' .. k), t }
        end
      end
    end
    return out
  end

  function Module:parameters()
    local list = {}
    for i, p in ipairs(self:named_parameters()) do list[i] = p[2] end
    return list
  end

  function Module:num_parameters()
    local n = 0
    for _, p in ipairs(self:parameters()) do n = n + p:numel() end
    return n
  end

  function Module:train(mode)
    if mode == nil then mode = true end
    for _, pair in ipairs(self:named_modules()) do pair[2].training = mode and true or false end
    return self
  end
  function Module:eval() return self:train(false) end

  -- Moves (or converts) every parameter in place, as torch's Module.to:
  -- m:to('cuda'), m:to('f64'), m:to('cuda', 'bf16'). A parameter keeps its
  -- identity (the same Lua tensor, so tied weights stay tied and an optimizer
  -- made before still holds it); its gradient moves with it. Returns m.
  function Module:to(...)
    local moved = {}
    for _, p in ipairs(self:parameters()) do
      if not moved[p] then
        moved[p] = true
        local q = p:detach():to(...)
        if q._c ~= p._c then
          local g = rawget(p, 'grad')
          rawset(p, '_c', q._c)
          if g ~= nil then rawset(p, 'grad', g:to(...)) end
        end
      end
    end
    return self
  end
  function Module:cuda(device) return self:to(device and ('cuda:' .. device) or 'cuda') end
  function Module:cpu() return self:to('cpu') end
  -- where the first parameter lives ('cpu' for a module without any)
  function Module:device()
    local p = self:parameters()[1]
    return p and p.device or 'cpu'
  end

  function Module:zero_grad()
    for _, p in ipairs(self:parameters()) do p.grad = nil end
  end

  -- name -> tensor for every parameter, tied ones under each of their names
  -- (as torch's state_dict), plus `_order`, the names in registration order.
  function Module:state_dict()
    local sd, order = {}, {}
    for _, pair in ipairs(self:named_modules()) do
      local name, m = pair[1], pair[2]
      for _, k in ipairs(m._param_order) do
        local full = name == '' and k or (name .. '.' .. k)
        sd[full] = m._params[k]
        order[#order + 1] = full
      end
    end
    return sd, order
  end

  -- Copies tensors into the parameters; {strict=true} (the default) requires
  -- the keys to match exactly. Returns the lists of missing and unexpected keys.
  function Module:load_state_dict(sd, opts)
    if type(sd) ~= 'table' or core.is_tensor(sd) then
      error(('load_state_dict: expected a table of name -> tensor (from state_dict() or tide.load_safetensors), got %s')
        :format(core.is_tensor(sd) and 'a tensor' or type(sd)), 2)
    end
    if opts ~= nil and type(opts) ~= 'table' then
      error(('load_state_dict: options must be a table such as {strict=false}, got %s'):format(type(opts)), 2)
    end
    local strict = not (opts and opts.strict == false)
    local own = self:state_dict()
    local missing, unexpected = {}, {}
    for k in pairs(own) do if sd[k] == nil then missing[#missing + 1] = k end end
    for k in pairs(sd) do if own[k] == nil then unexpected[#unexpected + 1] = k end end
    table.sort(missing)
    table.sort(unexpected)
    if strict and (#missing > 0 or #unexpected > 0) then
      error(('load_state_dict: missing keys: %s; unexpected keys: %s')
        :format(#missing > 0 and table.concat(missing, ', ') or 'none',
                #unexpected > 0 and table.concat(unexpected, ', ') or 'none'), 2)
    end
    for k, p in pairs(own) do
      local v = sd[k]
      if v ~= nil then
        if not core.is_tensor(v) then
          error(('load_state_dict: %s is a %s in the state dict, expected a tensor'):format(k, type(v)), 2)
        end
        local ps, vs = p:shape(), v:shape()
        local same = #ps == #vs
        for i = 1, #ps do if ps[i] ~= vs[i] then same = false end end
        if not same then
          error(('load_state_dict: %s has shape [%s] in the model but [%s] in the state dict')
            :format(k, table.concat(ps, ', '), table.concat(vs, ', ')), 2)
        end
        tide.no_grad(function() p:copy_(v) end)  -- copy_ moves v to p's device
      end
    end
    return missing, unexpected
  end

  function Module.__tostring(m)
    local lines = {}
    local function walk(mod, name, depth)
      local own = {}
      for _, k in ipairs(mod._param_order) do
        own[#own + 1] = ('%s[%s]'):format(k, table.concat(mod._params[k]:shape(), 'x'))
      end
      lines[#lines + 1] = ('%s%s%s%s'):format(('  '):rep(depth), name ~= '' and (name .. ': ') or '',
        mod.type_name, #own > 0 and ('(' .. table.concat(own, ', ') .. ')') or '')
      for _, k in ipairs(mod._module_order) do walk(mod._modules[k], k, depth + 1) end
    end
    walk(m, '', 0)
    return table.concat(lines, '\n')
  end

  -- layers ----------------------------------------------------------------------

  -- false inside nn.skip_init: layers leave their weights undrawn
  local drawing = true

  -- nn.skip_init(fn, ...): calls fn(...) (which builds modules) and returns
  -- its results, with the layers' random initial draws skipped (as
  -- torch.nn.utils.skip_init): their weights hold whatever memory they got
  -- until a load overwrites them. For models about to be loaded from a file,
  -- where drawing 124M normals costs more than reading them.
  function nn.skip_init(fn, ...)
    if type(fn) ~= 'function' then error('skip_init: expected a function, got ' .. type(fn), 2) end
    local before = drawing
    drawing = false
    local function finish(ok, ...)
      drawing = before
      if not ok then error((...), 0) end
      return ...
    end
    return finish(pcall(fn, ...))
  end

  local function normal(shape, std)
    local t = tide.empty(shape)
    if drawing then t:normal_(0, std) end
    return t
  end

  local function uniform(shape, bound)
    local t = tide.empty(shape)
    if drawing then t:uniform_(-bound, bound) end
    return t
  end

  -- Linear(in, out, {bias=true}): y = x W^T + b, W [out, in], initialised as torch does.
  local Linear = Module:extend('Linear')
  nn.Linear = Linear
  function Linear:init(n_in, n_out, opts)
    local bound = 1 / math.sqrt(n_in)
    self.in_features, self.out_features = n_in, n_out
    self:register_parameter('weight', uniform({ n_out, n_in }, bound))
    if not (opts and opts.bias == false) then self:register_parameter('bias', uniform({ n_out }, bound)) end
  end
  -- act (nil or 'gelu') is fused into the product: F.linear's
  function Linear:forward(x, act) return F.linear(x, param(self.weight), param(self._params.bias), act) end

  -- Conv1D(n_out, n_in): Hugging Face GPT-2's layer, W [in, out], y = x W + b.
  local Conv1D = Module:extend('Conv1D')
  nn.Conv1D = Conv1D
  function Conv1D:init(n_out, n_in)
    self.nf = n_out
    self:register_parameter('weight', normal({ n_in, n_out }, 0.02))
    self:register_parameter('bias', tide.zeros(n_out))
  end
  -- act (nil or 'gelu') is fused into the product: F.conv1d_gpt2's
  function Conv1D:forward(x, act) return F.conv1d_gpt2(x, param(self.weight), param(self.bias), act) end

  local Embedding = Module:extend('Embedding')
  nn.Embedding = Embedding
  function Embedding:init(num, dim)
    self.num_embeddings, self.embedding_dim = num, dim
    self:register_parameter('weight', normal({ num, dim }, 1))
  end
  function Embedding:forward(ids) return F.embedding(ids, param(self.weight)) end

  local LayerNorm = Module:extend('LayerNorm')
  nn.LayerNorm = LayerNorm
  function LayerNorm:init(dim, opts)
    self.eps = opts and opts.eps or 1e-5
    self.dim = dim
    self:register_parameter('weight', tide.ones(dim))
    self:register_parameter('bias', tide.zeros(dim))
  end
  -- the shadows only for a bf16 input: an f32 one stays f32 (tide/amp.lua's table)
  function LayerNorm:forward(x)
    local w, b = self.weight, self.bias
    if tide.amp.is_autocast() and x:dtype() == 'bf16' then w, b = param(w), param(b) end
    return F.layer_norm(x, { self.dim }, w, b, self.eps)
  end

  local Dropout = Module:extend('Dropout')
  nn.Dropout = Dropout
  function Dropout:init(p) self.p = p or 0.5 end
  function Dropout:forward(x) return F.dropout(x, self.p, self.training) end

  local GELU = Module:extend('GELU')
  nn.GELU = GELU
  function GELU:forward(x) return x:gelu() end

  local Sequential = Module:extend('Sequential')
  nn.Sequential = Sequential
  function Sequential:init(...)
    local list = select('#', ...) == 1 and type((...)) == 'table' and (...)._params == nil and (...) or { ... }
    for i, m in ipairs(list) do self:add_module(tostring(i - 1), m) end
  end
  function Sequential:forward(x)
    for _, k in ipairs(self._module_order) do x = self._modules[k]:forward(x) end
    return x
  end

  -- ModuleList: children named 0, 1, ... (Python's indices, as in state dicts);
  -- self[i] in Lua is 1-based.
  local ModuleList = Module:extend('ModuleList')
  nn.ModuleList = ModuleList
  function ModuleList:init(list)
    for _, m in ipairs(list or {}) do self:append(m) end
  end
  function ModuleList:append(m)
    local i = #self._module_order
    self:add_module(tostring(i), m)
    rawset(self, i + 1, m)
    return self
  end
  function ModuleList:len() return #self._module_order end
  function ModuleList:forward() error('ModuleList: call its members, it has no forward', 2) end
end

return M

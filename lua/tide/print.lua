-- Printing tensors the way PyTorch users are used to reading them:
--
--   tensor([[3., 3.],
--           [3., 3.]], dtype=f32, shape=[2, 2])
--
-- Every printed value of a tensor shares one format (integer-valued floats as
-- "3.", otherwise fixed with `precision` decimals, scientific when the
-- magnitudes are far apart), right-aligned to a common width. Tensors with
-- more than `threshold` elements are summarised: along each dimension longer
-- than 2 * `edgeitems` only the first and last `edgeitems` are shown, with
-- "..." between. Only those elements are ever read: they are copied out of
-- narrowed views into one small contiguous buffer, so printing a huge tensor
-- costs about as much as printing a small one.
local C = require 'tide.C'

local M = {}

local floor, max, huge = math.floor, math.max, math.huge
local srep, concat = string.rep, table.concat

local defaults = { precision = 4, threshold = 1000, edgeitems = 3, linewidth = 80, sci_mode = 'auto' }

local profiles = {
  default = defaults,
  short = { precision = 2, threshold = 1000, edgeitems = 2, linewidth = 80, sci_mode = 'auto' },
  full = { precision = 4, threshold = huge, edgeitems = 3, linewidth = 80, sci_mode = 'auto' },
}

local options = {}
for k, v in pairs(defaults) do options[k] = v end

-- Functions (t) -> string or nil whose results are appended after dtype and
-- shape, e.g. a later autograd layer adding "requires_grad=true".
M.suffixes = {}

-- options ---------------------------------------------------------------------

local function check_count(name, v, allow_inf, level)
  if type(v) ~= 'number' or v ~= v or v < 0 or (v % 1 ~= 0 and not (allow_inf and v == huge)) then
    error(("set_printoptions: %s must be a non-negative integer%s, got %s")
      :format(name, allow_inf and ' (or math.huge)' or '', tostring(v)), level + 1)
  end
end

-- tide.set_printoptions{precision=4, threshold=1000, edgeitems=3,
-- linewidth=80, sci_mode='auto'|true|false, profile='default'|'short'|'full'}.
-- Keys left out keep their current values; a profile is applied first.
function M.set_printoptions(opts)
  if opts == nil then opts = { profile = 'default' } end
  if type(opts) ~= 'table' then
    error('set_printoptions: expected an options table, got ' .. type(opts), 2)
  end
  for k in pairs(opts) do
    if defaults[k] == nil and k ~= 'profile' then
      error(("set_printoptions: unknown option '%s' (expected precision, threshold, edgeitems, linewidth, sci_mode or profile)")
        :format(tostring(k)), 2)
    end
  end
  local new = {}
  for k, v in pairs(options) do new[k] = v end
  if opts.profile ~= nil then
    local p = profiles[opts.profile]
    if not p then
      error(("set_printoptions: unknown profile '%s' (expected default, short or full)")
        :format(tostring(opts.profile)), 2)
    end
    for k, v in pairs(p) do new[k] = v end
  end
  if opts.precision ~= nil then
    check_count('precision', opts.precision, false, 2)
    if opts.precision > 30 then error('set_printoptions: precision must be at most 30', 2) end
    new.precision = opts.precision
  end
  if opts.threshold ~= nil then check_count('threshold', opts.threshold, true, 2); new.threshold = opts.threshold end
  if opts.edgeitems ~= nil then check_count('edgeitems', opts.edgeitems, false, 2); new.edgeitems = opts.edgeitems end
  if opts.linewidth ~= nil then
    check_count('linewidth', opts.linewidth, false, 2)
    if opts.linewidth < 1 then error('set_printoptions: linewidth must be at least 1', 2) end
    new.linewidth = opts.linewidth
  end
  if opts.sci_mode ~= nil then
    local s = opts.sci_mode
    if s ~= true and s ~= false and s ~= 'auto' then
      error("set_printoptions: sci_mode must be true, false or 'auto', got " .. tostring(s), 2)
    end
    new.sci_mode = s
  end
  options = new
end

-- A copy of the current print options.
function M.get_printoptions()
  local r = {}
  for k, v in pairs(options) do r[k] = v end
  return r
end

-- reading the shown elements ----------------------------------------------------

-- Returns (keep, ptr, is_float, kept, cut): `ptr` reads a contiguous f64 or
-- i64 copy (kept alive by `keep`) of the elements that will be shown, laid
-- out in the shape `kept`; cut[d] tells that dimension d was shortened to its
-- first and last `e` entries.
local function gather(core, t, summarize, e)
  local shape = t:shape()
  local nd = #shape
  local kept, cut, any = {}, {}, false
  for d = 1, nd do
    if summarize and shape[d] > 2 * e then
      kept[d], cut[d], any = 2 * e, true, true
    else
      kept[d], cut[d] = shape[d], false
    end
  end
  if not any then
    local keep, ptr, is_float = core.readable(t)
    return keep, ptr, is_float, kept, cut
  end
  local is_float = t:is_floating_point()
  local buf = core.shape_buf
  for d = 1, nd do buf[d - 1] = kept[d] end
  -- gathered on the tensor's device; readable() then moves only what is shown to the host
  local dst = core.call(C.tide_empty, is_float and C.TIDE_F64 or C.TIDE_I64, nd, buf, t._c.device, core.out1)
  if e > 0 then
    -- one block copy per combination of head/tail along the cut dimensions
    local function copy_blocks(d, src, out)
      if d > nd then
        core.check(C.tide_copy_(out._c, src._c), 4)
      elseif cut[d] then
        copy_blocks(d + 1, src:narrow(d, 1, e), out:narrow(d, 1, e))
        copy_blocks(d + 1, src:narrow(d, shape[d] - e + 1, e), out:narrow(d, e + 1, e))
      else
        copy_blocks(d + 1, src, out)
      end
    end
    copy_blocks(1, t, dst)
  end
  local keep, ptr = core.readable(dst)
  return keep, ptr, is_float, kept, cut
end

-- formatting values -----------------------------------------------------------------

local function fmt_special(v)
  if v ~= v then return 'nan' end
  if v == huge then return 'inf' end
  if v == -huge then return '-inf' end
  return nil
end

-- Formats n floats; returns the strings (0-based) and their common width.
local function float_cells(ptr, n, o)
  local int_mode, have = true, false
  local lo, hi = huge, 0
  for i = 0, n - 1 do
    local v = ptr[i]
    if v == v and v ~= 0 and v ~= huge and v ~= -huge then
      have = true
      local a = v < 0 and -v or v
      if a < lo then lo = a end
      if a > hi then hi = a end
      if int_mode and v ~= math.ceil(v) then int_mode = false end
    end
  end
  local sci = false
  if have then
    sci = hi / lo > 1000 or hi > 1e8 or (not int_mode and lo < 1e-4)
  end
  if o.sci_mode ~= 'auto' then sci = o.sci_mode end
  local pattern
  if sci then pattern = '%.' .. o.precision .. 'e'
  elseif int_mode then pattern = '%.0f.'
  else pattern = '%.' .. o.precision .. 'f' end
  -- the width comes from the nonzero finite values, as in PyTorch, so a lone
  -- nan or inf does not widen a column of small integers
  local cells, width = {}, 1
  for i = 0, n - 1 do
    local v = ptr[i]
    local s = fmt_special(v)
    if not s then
      s = pattern:format(v)
      if v ~= 0 and #s > width then width = #s end
    end
    cells[i] = s
  end
  return cells, width
end

local function int_cells(ptr, n, is_bool)
  local cells, width = {}, 1
  for i = 0, n - 1 do
    local v = ptr[i]
    local s
    if is_bool then
      s = v ~= 0 and 'true' or 'false'
    else
      local x = tonumber(v)
      if x > -2 ^ 53 and x < 2 ^ 53 then s = ('%d'):format(x)
      else s = tostring(v):gsub('U?LL$', '') end
    end
    if #s > width then width = #s end
    cells[i] = s
  end
  return cells, width
end

-- layout --------------------------------------------------------------------------------

-- Lays out the cells in nested brackets. `indent` is the column of the
-- opening bracket of the outermost list.
local function layout(cells, width, kept, cut, e, linewidth, indent)
  local nd = #kept
  local pos = 0
  local function cell()
    local s = cells[pos]
    pos = pos + 1
    if #s < width then s = srep(' ', width - #s) .. s end
    return s
  end
  local function level(d, ind)
    local items = {}
    local is_vector = d == nd
    local function add() items[#items + 1] = is_vector and cell() or level(d + 1, ind + 1) end
    if cut[d] then
      for _ = 1, e do add() end
      items[#items + 1] = is_vector and (e == 0 and '...' or ' ...') or '...'
      for _ = 1, e do add() end
    else
      for _ = 1, kept[d] do add() end
    end
    if not is_vector then
      return '[' .. concat(items, ',' .. srep('\n', nd - d) .. srep(' ', ind + 1)) .. ']'
    end
    local per = max(1, floor((linewidth - ind) / (width + 2)))
    local lines = {}
    for i = 1, #items, per do
      lines[#lines + 1] = concat(items, ', ', i, math.min(i + per - 1, #items))
    end
    return '[' .. concat(lines, ',\n' .. srep(' ', ind + 1)) .. ']'
  end
  return level(1, indent)
end

-- Appends ", suffix" pieces, moving one to a new line (aligned under the
-- values) when the current line would pass the line width. Like PyTorch, the
-- first line keeps two columns spare for the closing parenthesis and comma.
local function add_suffixes(body, suffixes, indent, linewidth)
  local parts = { body }
  local last = body:match('[^\n]*$')
  local col = #last + 2
  for _, s in ipairs(suffixes) do
    if col + #s + 2 > linewidth then
      parts[#parts + 1] = ',\n' .. srep(' ', indent) .. s
      col = indent + #s
    else
      parts[#parts + 1] = ', ' .. s
      col = col + #s + 2
    end
  end
  parts[#parts + 1] = ')'
  return concat(parts)
end

-- Returns the printed form of tensor t.
function M.format(core, t)
  local o = options
  local prefix = 'tensor('
  local indent = #prefix
  local c = t._c
  local shape = t:shape()
  local dtype = t:dtype()
  local numel = tonumber(c.numel)
  local body
  if numel == 0 then
    body = '[]'
  else
    local summarize = numel > o.threshold
    local e = o.edgeitems
    local keep, ptr, is_float, kept, cut = gather(core, t, summarize, e)
    local n = 1
    for d = 1, #kept do n = n * kept[d] end
    local cells, width
    if is_float then cells, width = float_cells(ptr, n, o)
    else cells, width = int_cells(ptr, n, dtype == 'bool') end
    local _ = keep  -- the buffer behind ptr stays alive until here
    if #kept == 0 then
      body = cells[0]
    else
      body = layout(cells, width, kept, cut, e, o.linewidth, indent)
    end
  end
  local suffixes = { 'dtype=' .. dtype, 'shape=[' .. concat(shape, ', ') .. ']' }
  for _, f in ipairs(M.suffixes) do
    local s = f(t)
    if s then suffixes[#suffixes + 1] = s end
  end
  return add_suffixes(prefix .. body, suffixes, indent, o.linewidth)
end

function M.install(tide, core)
  local Tensor = core.Tensor
  core.mt.__tostring = function(t) return M.format(core, t) end
  -- t:print() writes the printed form and a newline to stdout
  function Tensor:print() print(M.format(core, self)) end
  tide.set_printoptions = M.set_printoptions
  tide.get_printoptions = M.get_printoptions
end

return M

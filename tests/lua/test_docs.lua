-- The documentation's examples are tests: every ```lua block in docs/*.md
-- and README.md that shows its output in `-->` comment lines is run, and what
-- it prints must equal those lines exactly.
local T = require 'tide.testing'

local function doc_files()
  local files = { 'README.md' }
  local pipe = io.popen("ls docs/*.md 2>/dev/null")
  for f in pipe:lines() do files[#files + 1] = f end
  pipe:close()
  return files
end

local function expected_output(block)
  local lines = {}
  for line in (block .. '\n'):gmatch('(.-)\n') do
    local rest = line:match('^%s*%-%->(.*)$')
    if rest then lines[#lines + 1] = rest:sub(1, 1) == ' ' and rest:sub(2) or rest end
  end
  return lines
end

-- Runs a block with print captured; returns the printed lines.
local function run_block(block, name)
  local out = {}
  local function cprint(...)
    local parts = {}
    for i = 1, select('#', ...) do parts[i] = tostring((select(i, ...))) end
    local text = table.concat(parts, '\t')
    for line in (text .. '\n'):gmatch('(.-)\n') do out[#out + 1] = line end
  end
  local env = setmetatable({ print = cprint }, { __index = _G })
  local fn, err = loadstring(block, '=' .. name)
  if not fn then error(err, 0) end
  setfenv(fn, env)
  fn()
  return out
end

local checked = 0
for _, file in ipairs(doc_files()) do
  local f = io.open(file, 'r')
  local text = f:read('*a')
  f:close()
  local n = 0
  for block in text:gmatch('```lua\n(.-)```') do
    n = n + 1
    local want = expected_output(block)
    if #want > 0 then
      checked = checked + 1
      local name = ('%s, lua block %d'):format(file, n)
      T.test(name, function()
        local got = run_block(block, name)
        local a, b = table.concat(got, '\n'), table.concat(want, '\n')
        if a ~= b then error(('printed:\n%s\nbut the doc says:\n%s'):format(a, b), 0) end
      end)
    end
  end
end

T.test('the docs have checked examples', function()
  T.truthy(checked >= 10, 'only ' .. checked .. ' checked blocks found')
end)

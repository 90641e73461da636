-- tide's GPT-2 encoder on a corpus: one call over the whole text, and
-- encode_batch over its documents; prints MB/s and a checksum of the ids
-- (bench/tokenizer.sh runs the peers on the same corpus).
--   tide bench/tokenizer_encode.lua CORPUS GPT2_DIR THREADS
local path, dir, threads = arg[1], arg[2], tonumber(arg[3] or 2)
tide.set_num_threads(threads)
local f = assert(io.open(path, 'rb'))
local text = f:read('*a')
f:close()
local docs = {}
local pos = 1
while true do
  local s, e = text:find('\n\n\n', pos, true)
  if not s then docs[#docs + 1] = text:sub(pos); break end
  docs[#docs + 1] = text:sub(pos, s - 1)
  pos = e + 1
end
local tok = tide.tokenizer.load(dir)
local mb = #text / 1e6
-- the first call on a fresh tokenizer: its piece memo starts empty (later
-- calls reuse it, as a program encoding document after document does)
local t0 = tide.clock()
tok:encode(text)
local cold = tide.clock() - t0
local function best(fn)
  local b = math.huge
  for _ = 1, 3 do
    local t0 = tide.clock()
    fn()
    b = math.min(b, tide.clock() - t0)
  end
  return b
end
local ids = tok:encode(text)
local sum = 0
for _, i in ipairs(ids) do sum = (sum * 31 + i) % 1000000007 end
local t1 = best(function() tok:encode(text) end)
local tb = best(function() tok:encode_batch(docs) end)
print(('tide          %d tokens checksum %d  one call %.2f MB/s  batch (%d threads) %.2f MB/s  first call %.2f MB/s')
  :format(#ids, sum, mb / t1, threads, mb / tb, mb / cold))

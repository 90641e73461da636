-- tide's BPE trainer on a list of files, as the seeds' train_new_from_iterator:
-- ByteLevel pieces, all 256 bytes, <|endoftext|>, vocab 32,768 by default.
-- Reads one file at a time (the trainer keeps only distinct pieces), writes
-- the merges to OUT/merges.txt for comparison and prints the time.
--   tide bench/tokenizer_train.lua FILE_LIST OUT [VOCAB]
local list, out, vocab = arg[1], arg[2], tonumber(arg[3] or 32768)
local paths = {}
for line in io.lines(list) do paths[#paths + 1] = line end
local i = 0
local function next_file()
  i = i + 1
  if not paths[i] then return nil end
  local f = assert(io.open(paths[i], 'rb'))
  local s = f:read('*a')
  f:close()
  return s
end
local t0 = tide.clock()
local tok = tide.tokenizer.train(next_file, { vocab_size = vocab, show_progress = os.getenv("PROGRESS") == "1" })
local dt = tide.clock() - t0
tok:save(out)
print(('tide      vocab %d  train %.2f s'):format(tok:vocab_size(), dt))

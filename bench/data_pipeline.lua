-- The seeds' data path in tide: jsonl.gz -> keyword filter -> GPT-2
-- tokenization -> concat packing (EOS between documents) into 1024-token
-- sequences -> llm.c shards. Prints the time of reading alone and of the
-- whole path, and a checksum of the sequences (bench/data_pipeline.sh runs
-- Hugging Face datasets on the same file).
--   tide bench/data_pipeline.lua CORPUS OUTDIR THREADS [filter|all]
local corpus, out, threads, mode = arg[1], arg[2], tonumber(arg[3] or 2), arg[4] or 'filter'
tide.set_num_threads(threads)
local data, F = tide.data, tide.data.filters
local tok = tide.tokenizer.load('data/gpt2')
local kw = F.data_science_keywords
local SEQ = 1024

local t0 = tide.clock()
local reader = data.jsonl(corpus, { fields = { 'content' }, progress = false })
local n = reader:count()
local t_read = tide.clock() - t0
local text_mb = reader.text_bytes / 1e6

t0 = tide.clock()
local s = data.jsonl(corpus, { fields = { 'content' }, progress = false })
if mode == 'filter' then
  s = s:filter(function(r) return F.any_keyword(r.content, kw) end, 'any_keyword')
end
local summary = data.write_shards(out, s, { tokenizer = tok, seq_length = SEQ, save_tokenizer = false })
local t_all = tide.clock() - t0
local in_mb = reader.total_bytes / 1e6
-- the checksum of the written sequences, read back from the shard files in
-- 1 MB pieces (not timed, and not mapped, so the peak RSS stays the path's)
local sum, nseq = 0, 0
for _, sh in ipairs(summary.shards) do
  local f = assert(io.open(out .. '/' .. sh.file, 'rb'))
  f:seek('set', 1024)
  while true do
    local chunk = f:read(512 * SEQ * 2)
    if not chunk then break end
    for q = 0, #chunk / (SEQ * 2) - 1 do
      nseq = nseq + 1
      for i = 0, SEQ - 1, 7 do
        local lo, hi = chunk:byte(q * SEQ * 2 + 2 * i + 1, q * SEQ * 2 + 2 * i + 2)
        sum = (sum * 31 + lo + 256 * hi) % 1000000007
      end
    end
  end
  f:close()
end
print(('tide      records %d  read alone %.2f s (%.1f MB/s of text)  whole path %.2f s (%.1f MB/s of jsonl.gz, %.1f MB/s of text)  sequences %d checksum %d'):format(
  n, t_read, text_mb / t_read, t_all, in_mb / t_all, text_mb / t_all, nseq, sum))
print(summary.report)

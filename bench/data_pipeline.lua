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
local sum, nseq = 0, 0
local packed = s:tokenize(tok):pack(SEQ, { eos = tok.eos_id }):map(function(seq)
  nseq = nseq + 1
  for i = 1, SEQ, 7 do sum = (sum * 31 + seq[i]) % 1000000007 end
  return seq
end, 'checksum')
local summary = data.write_shards(out, packed, { vocab_size = tok:vocab_size(), seq_length = SEQ })
local t_all = tide.clock() - t0
local in_mb = reader.total_bytes / 1e6
print(('tide      records %d  read alone %.2f s (%.1f MB/s of text)  whole path %.2f s (%.1f MB/s of jsonl.gz, %.1f MB/s of text)  sequences %d checksum %d'):format(
  n, t_read, text_mb / t_read, t_all, in_mb / t_all, text_mb / t_all, nseq, sum))
print(packed:report())
local _ = summary

-- The token data llm.c's train_gpt2cu reads, written by tide: one shard in
-- llm.c's .bin format (256 int32 header: magic 20240520, version 1, token
-- count; then uint16 ids), uniform random ids as the other sides of
-- bench/gpu/run.sh train on. llm.c's loader wants at least B*T+1 tokens per
-- shard; the default 2^21 + 1 covers B = 32, T = 1024 many times over.
--   tide bench/gpu/llmc_data.lua --dir=DIR [--tokens=2097153] [--vocab=50257] [--seed=0]
-- Writes DIR/train_000000.bin (and tide's manifest DIR/train.json).
local a = tide.args
if type(a.dir) ~= 'string' then
  io.stderr:write('bench/gpu/llmc_data.lua: --dir=DIR is required\n'); os.exit(2)
end
local n, V = a.tokens or 2 ^ 21 + 1, a.vocab or 50257
tide.manual_seed(a.seed or 0)
local w = tide.data.writer(a.dir, { vocab_size = V, prefix = 'train', shard_tokens = n })
local chunk = 65536
local done = 0
while done < n do
  local k = math.min(chunk, n - done)
  w:write(tide.randint(0, V, { k }):tolist())
  done = done + k
end
w:close()
print(('llmc_data: %d random ids below %d in %s/train_000000.bin'):format(n, V, a.dir))

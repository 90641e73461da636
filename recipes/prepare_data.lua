-- The seeds' data preparation, on the local corpus: read the CodeParrot-
-- schema jsonl.gz (built by tide.data.build_corpus when missing), keep the
-- data-science files (any_keyword_in_string with pandas, sklearn,
-- matplotlib, seaborn), apply CodeParrot's cleaning heuristics, drop exact
-- and near duplicates, split off a validation set, tokenize with GPT-2's
-- tokenizer and pack into constant-length sequences, written as llm.c shards
-- (train_*.bin, valid_*.bin and their manifests) in one pass over the
-- corpus. Prints each step's counts.
--
-- Under a launcher (mpirun -np N, srun, tide launch -n N) with a corpus of
-- several files (--corpus='dir/*.jsonl.gz'), rank r reads and filters files
-- r, r + N, ...; exact dedup is global (hashes exchanged by hash % N), near
-- dedup's signatures are computed by every rank and its greedy pass runs on
-- rank 0 (tide.data.dedup_across_ranks), and rank 0 tokenizes and writes:
-- the shards are byte for byte those of one process, whatever N.
--
--   tide recipes/prepare_data.lua [--corpus=data/corpus/python.jsonl.gz]
--     [--out=data/shards/python] [--keywords=datascience|none|word,word]
--     [--clean=true] [--dedup=both|exact|near|none] [--mode=concat|per_document]
--     [--seq=1025] [--valid=0.005] [--seed=1] [--max_mb=N] [--tokenizer=data/gpt2]
local args = tide.args
local data, F = tide.data, tide.data.filters

local corpus = args.corpus or 'data/corpus/python.jsonl.gz'
local out = args.out or 'data/shards/python'
local seq = args.seq or 1025           -- 1024 positions plus the shifted target
local seed = args.seed or 1
local mode = args.mode or 'concat'
local dedup = args.dedup or 'both'
local t0 = tide.clock()
local job = tide.dist.init()  -- a world of one without a launcher

local f = io.open(corpus, 'rb')
if f or corpus:find('[*?]') then
  if f then f:close() end
elseif job.world_size > 1 then
  error('prepare_data: ' .. corpus .. ' does not exist; build it with one process first', 0)
else
  local r = data.build_corpus({ out = corpus, max_mb = args.max_mb })
  print(('corpus: built %s, %d files, %.1f MB of Python source'):format(r.path, r.files, r.bytes / 1e6))
end

local keywords = args.keywords or 'datascience'
local kw = F.data_science_keywords
if keywords ~= 'datascience' then
  kw = {}
  for w in tostring(keywords):gmatch('[^,]+') do kw[#kw + 1] = w end
end
local clean = args.clean ~= false and F.codeparrot({ seed = seed }) or nil
-- the filters that decide on a record alone
local function read(spec)
  local s = data.jsonl(spec, { fields = { 'repo_name', 'path', 'content' } })
  if keywords ~= 'none' then
    s = s:filter(function(r) return F.any_keyword(r.content, kw) end, 'any_keyword ' .. table.concat(kw, ','))
  end
  if clean then s = s:filter(clean, 'codeparrot heuristics') end
  return s
end
local exact, near = dedup == 'exact' or dedup == 'both', dedup == 'near' or dedup == 'both'
local ds
if job.world_size > 1 then
  ds = data.dedup_across_ranks(corpus, { read = read, exact = exact, near = near and { seed = seed } or nil })
else
  ds = read(corpus)
  if exact then ds = ds:filter(F.exact_dedup(), 'exact dedup') end
  if near then ds = ds:filter(F.near_dedup({ seed = seed }), 'near dedup (MinHash, Jaccard 0.85)') end
end
if job.rank ~= 0 then  -- rank 0 writes the shards
  print(('prepare_data: rank %d filtered its files in %.1f s'):format(job.rank, tide.clock() - t0))
  tide.dist.finalize()  -- leaves the job in order, then this rank is done
  os.exit(0, true)
end

local tok = tide.tokenizer.load(args.tokenizer or 'data/gpt2')
-- one pass: each record goes to its split, each split is packed and written
local manifests = data.write_shards(out, ds, { tokenizer = tok, seq_length = seq, mode = mode, seed = seed,
                                                split = { valid = args.valid or 0.005, seed = seed } })
for _, name in ipairs({ 'train', 'valid' }) do
  local m = manifests[name]
  print(('%s: %d tokens in %d shard%s of %s'):format(name, m.total_tokens, #m.shards, #m.shards == 1 and '' or 's', out))
  print(m.report)
  if name == 'train' and m.total_tokens == 0 then
    error('prepare_data: the filters kept nothing to train on (try --keywords=none, or install python3-pandas and friends)', 0)
  end
  -- read back: the loader must see every sequence the manifest lists
  if m.total_tokens > 0 then
    local rows = 0
    for batch in data.shards(out, { prefix = name, batch_size = 64, drop_last = false, rank = 0, world_size = 1 }) do rows = rows + batch:size(1) end
    assert(rows * seq == m.total_tokens, ('prepare_data: read back %d sequences of %s, manifest says %d tokens'):format(rows, name, m.total_tokens))
  end
end
if clean then
  local why = {}
  for k, v in pairs(clean.why) do if v > 0 then why[#why + 1] = ('%s %d'):format(k, v) end end
  table.sort(why)
  if #why > 0 then print('codeparrot heuristics dropped: ' .. table.concat(why, ', ')) end
end
print(('prepare_data: done in %.1f s'):format(tide.clock() - t0))

-- Logits processors and next-token choice (tide.generation.processors) against
-- transformers' own processor classes (tests/data/generation/processors_golden.json,
-- written by tools/make_sampling_golden.py): the same processors in the same
-- order, exact -inf masks and candidate sets (ties at the top-k and top-p cuts,
-- min_tokens_to_keep), values within 1e-6; transformers' messages for bad
-- options; seeded sampling reproducible and independent of the thread count;
-- sampled frequencies follow the processed distribution (chi-square with a
-- fixed seed and a threshold far in the tail, so it cannot flake).
local T = require 'tide.testing'
local P = require 'tide.generation.processors'

local golden = tide.json.read_file('tests/data/generation/processors_golden.json')

local function num(v)
  if v == '-inf' then return -math.huge elseif v == 'inf' then return math.huge end
  return v
end

local function matrix(rows)
  local m = {}
  for i, row in ipairs(rows) do
    m[i] = {}
    for j, v in ipairs(row) do m[i][j] = num(v) end
  end
  return m
end

-- The options of a golden case as build() takes them.
local function case_opts(c)
  local o = {}
  for k, v in pairs(c.opts) do o[k] = v end
  o.prompt_length = c.prompt_length
  return o
end

local function run_case(c, device)
  local logits = tide.tensor(matrix(c.logits), { dtype = 'f32' })
  local ids = tide.tensor(c.input_ids, { dtype = 'i64' })
  if device then logits, ids = logits:to(device), ids:to(device) end
  local process, names = P.build(case_opts(c))
  return process(logits, ids), names, logits
end

T.test('processed scores equal transformers\' on every golden case', function()
  T.truthy(#golden.cases >= 20)
  for _, c in ipairs(golden.cases) do
    local out, names = run_case(c)
    T.same(names, c.processors, c.name .. ': processors and their order')
    T.eq(out:dtype(), 'f32', c.name)
    local got, want = out:tolist(), matrix(c.expected)
    for i, row in ipairs(want) do
      local kept = {}
      for j, w in ipairs(row) do
        local g = got[i][j]
        if w == -math.huge then
          T.truthy(g == -math.huge, ('%s: [%d][%d] is %s, transformers removes it'):format(c.name, i, j - 1, g))
        else
          kept[#kept + 1] = j - 1
          T.truthy(g ~= -math.huge, ('%s: [%d][%d] removed, transformers keeps it'):format(c.name, i, j - 1))
          T.truthy(math.abs(g - w) <= 1e-6 * math.max(1, math.abs(w)),
            ('%s: [%d][%d] = %.9g, transformers %.9g'):format(c.name, i, j - 1, g, w))
        end
      end
      T.same(kept, c.kept[i], c.name .. ': candidate set of row ' .. i)
    end
  end
end)

T.test('the candidate sets include ties at both cuts and min_tokens_to_keep', function()
  local by = {}
  for _, c in ipairs(golden.cases) do by[c.name] = c end
  -- top-k keeps every token tied with the k-th value
  T.same(by['top_k ties at the cut'].kept[1], { 0, 2, 3, 6 })
  -- top-p cuts tied values by their position in the stable ascending sort
  T.same(by['top_p uniform cut at half'].kept[1], { 2, 3 })
  T.same(by['top_p tie straddling the cut'].kept[1], { 0, 6, 7 })
  T.same(by['top_p min_tokens_to_keep'].kept[1], { 0, 1, 4 })
  T.same(by['top_k min_tokens_to_keep above k'].kept[1], { 0, 2, 3, 6 })
end)

T.test('top-p after top-k sorts only the finite scores, with the same result as a whole sort', function()
  local g = tide.Generator(31)
  local x = tide.randn({ 16, 5000 }, { generator = g }) * 2
  x:narrow(1, 1, 1):narrow(2, 1, 200):fill_(0.5)            -- ties across the cut in row 1
  local ids = tide.zeros(16, 1, { dtype = 'i64' })
  for _, o in ipairs {
    { do_sample = true, top_k = 40, top_p = 0.9 },
    { do_sample = true, top_k = 300, top_p = 0.5, temperature = 0.6 },
    { do_sample = true, top_k = 7, top_p = 0.2, min_tokens_to_keep = 3 },
    { do_sample = true, top_k = 1000, top_p = 0.95 },
  } do
    local process = P.build(o)
    local before = P.partial_top_p
    P.partial_top_p = false
    local whole = process(x, ids)
    P.partial_top_p = true
    local partial = process(x, ids)
    P.partial_top_p = before
    T.truthy(tide.equal(whole, partial), tide.json.encode(o))
    T.truthy(partial:gt(-math.huge):sum():item() >= 16, 'keeps at least one per row')
  end
end)

T.test('the input scores are left as they were', function()
  for _, c in ipairs(golden.cases) do
    local _, _, logits = run_case(c)
    T.same(logits:tolist(), matrix(c.logits), c.name)
  end
end)

T.test('options that switch a processor off, as transformers', function()
  local function names(o) local _, n = P.build(o); return n end
  T.same(names {}, {})
  -- generate's default top_k = 50 applies to sampling unless top_k = 0
  T.same(names { do_sample = true }, { 'TopKLogitsWarper' })
  T.same(names { do_sample = true, top_k = 0 }, {})
  T.eq(P.DEFAULT_TOP_K, 50)
  T.same(names { do_sample = true, temperature = 1.0, top_k = 0, top_p = 1.0, repetition_penalty = 1.0 }, {})
  -- the warpers need sampling; their options are then not even checked (transformers warns)
  T.same(names { do_sample = false, temperature = 0, top_k = -3, top_p = 7 }, {})
  -- min_new_tokens needs an eos token
  T.same(names { min_new_tokens = 3, prompt_length = 2 }, {})
  T.same(names { min_new_tokens = 0, eos_token_id = 1 }, {})
  T.same(names { do_sample = true, top_k = 5, top_p = 0.9, temperature = 0.5, repetition_penalty = 1.1,
                 min_new_tokens = 1, eos_token_id = 0, prompt_length = 1 },
    { 'RepetitionPenaltyLogitsProcessor', 'MinNewTokensLengthLogitsProcessor', 'TemperatureLogitsWarper',
      'TopKLogitsWarper', 'TopPLogitsWarper' })
end)

T.test('bad options get transformers\' messages', function()
  T.truthy(#golden.errors >= 8)
  for _, e in ipairs(golden.errors) do
    local o = {}
    for k, v in pairs(e.opts) do o[k] = v end
    T.raises(function() P.build(o) end, e.message, tide.json.encode(e.opts))
  end
end)

T.test('bad options beyond transformers\' own checks', function()
  local function raises(o, msg) T.raises(function() P.build(o) end, msg) end
  -- top_p must lie in (0, 1] (transformers lets 0 through, and generate ignores values above 1)
  raises({ do_sample = true, top_p = 0 }, '`top_p` has to be a float > 0 and < 1, but is 0.0')
  raises({ do_sample = true, top_p = 1.7 }, '`top_p` has to be a float > 0 and < 1, but is 1.7')
  raises({ do_sample = true, top_p = -0.5 }, '`top_p` has to be a float > 0 and < 1, but is -0.5')
  raises({ do_sample = true, top_p = 0 / 0 }, '`top_p` has to be a float > 0 and < 1, but is nan')
  raises({ do_sample = true, top_p = '0.9' }, '`top_p` has to be a float > 0 and < 1, but is 0.9')
  raises({ do_sample = true, top_k = 2.5 }, '`top_k` has to be a strictly positive integer, but is 2.5')
  raises({ do_sample = true, temperature = 0 / 0 }, '`temperature` (=nan) has to be a strictly positive float')
  raises({ do_sample = true, temperature = 0 }, "set `do_sample=False`")
  raises({ do_sample = 'yes' }, '`do_sample` has to be a boolean, but is yes')
  raises({ repetition_penalty = math.huge }, '`penalty` has to be a strictly positive float, but is inf')
  raises({ repetition_penalty = 1.2, prompt_ignore_length = -1 }, '`prompt_ignore_length` has to be a positive integer, but is -1')
  raises({ repetition_penalty = 1.2, prompt_ignore_length = tide.zeros(2, 2, { dtype = 'i64' }) }, '`prompt_ignore_length` must be 1D')
  raises({ min_new_tokens = 1.5, eos_token_id = 0 }, '`min_new_tokens` has to be a positive integer, but is 1.5')
  raises({ min_new_tokens = 2, eos_token_id = -1, prompt_length = 3 }, '`eos_token_id` has to be a non-negative integer')
  raises({ min_new_tokens = 2, eos_token_id = {}, prompt_length = 3 }, '`eos_token_id` has to be an integer or a non-empty list')
  raises({ min_new_tokens = 2, eos_token_id = 1 }, '`prompt_length` (the length of the prompt, to count new tokens from)')
  T.raises(function() P.build(3) end, 'generate: options must be a table, got number')
  -- at run time: shapes, and a per-row prompt_ignore_length of the wrong batch size
  local process = P.build { repetition_penalty = 1.2, prompt_ignore_length = { 1, 2, 3 } }
  T.raises(function() process(tide.zeros(3), tide.zeros(3, 2, { dtype = 'i64' })) end, 'scores must be a [batch, vocab] tensor')
  T.raises(function() process(tide.zeros(3, 4), tide.zeros(2, 2, { dtype = 'i64' })) end,
    "input_ids must be a [batch, length] i64 tensor with the scores' batch size (3)")
  T.raises(function() process(tide.zeros(2, 4), tide.zeros(2, 2, { dtype = 'i64' })) end,
    'Incompatible `prompt_ignore_length` batch size')
  T.raises(function() P.sample(tide.zeros(4)) end, 'sample: scores must be a [batch, vocab] tensor')
  T.raises(function() P.greedy(tide.zeros(4)) end, 'greedy: scores must be a [batch, vocab] tensor')
end)

T.test('the warpers need no input_ids; f64 scores compare with 1 - top_p in f64', function()
  local process = P.build { do_sample = true, top_k = 2, temperature = 0.5 }
  T.same(process(tide.tensor({ { 1, 3, 2 } }, { dtype = 'f32' })):tolist(), { { -math.huge, 6, 4 } })
  -- uniform over 10: the third cumulative sum meets 1 - 0.7 (torch keeps ids 3..9 in f64 and f32)
  for _, dt in ipairs { 'f64', 'f32' } do
    local out = P.build { do_sample = true, top_k = 0, top_p = 0.7 }(tide.zeros({ 1, 10 }, { dtype = dt }))
    T.eq(out:dtype(), dt)
    T.same(out:gt(-math.huge):tolist(), { { false, false, false, true, true, true, true, true, true, true } }, dt)
  end
end)

T.test('min_new_tokens counts from prompt_length, with cur_len or the ids\' length', function()
  local process = P.build { min_new_tokens = 2, eos_token_id = { 1, 9 }, prompt_length = 3 }
  local scores = tide.zeros(1, 4)
  local masked = process(scores, tide.zeros(1, 4, { dtype = 'i64' }))      -- one new token
  T.same(masked:tolist(), { { 0, -math.huge, 0, 0 } })                     -- eos 9 is outside the vocabulary
  T.same(process(scores, tide.zeros(1, 5, { dtype = 'i64' })):tolist(), { { 0, 0, 0, 0 } })
  T.same(process(scores, tide.zeros(1, 5, { dtype = 'i64' }), 4):tolist(), { { 0, -math.huge, 0, 0 } })
end)

T.test('greedy takes the first maximum on ties, as torch.argmax', function()
  local s = tide.tensor({ { 1, 3, 3, 0 }, { -math.huge, -1, -2, -1 }, { 5, 5, 5, 5 } }, { dtype = 'f32' })
  local ids = P.greedy(s)
  T.eq(ids:dtype(), 'i64')
  T.same(ids:tolist(), { 1, 1, 0 })
end)

-- Runs fn with n threads, restoring the thread count afterwards.
local function with_threads(n, fn)
  local before = tide.get_num_threads()
  tide.set_num_threads(n)
  local ok, r = pcall(fn)
  tide.set_num_threads(before)
  if not ok then error(r, 0) end
  return r
end

-- Processed scores of one golden-like row, repeated `rows` times.
local function processed_rows(rows)
  local logits = tide.tensor({ { 2.0, 1.5, -0.5, 1.5, 0.25, 3.0, -2.0, 0.75, 1.0, -1.0, 0.5, 2.5 } }, { dtype = 'f32' })
  local process = P.build { do_sample = true, temperature = 0.8, top_k = 8, top_p = 0.95 }
  local scores = process(logits, tide.zeros(1, 1, { dtype = 'i64' }))
  return scores:expand(rows, scores:size(2)):contiguous(), scores
end

T.test('a seeded sampling run is reproducible and the same on 1, 2 and 4 threads', function()
  local scores = processed_rows(4096)
  local function draw(seed) return P.sample(scores, tide.Generator(seed)) end
  local a = with_threads(1, function() return draw(2024) end)
  local b = with_threads(2, function() return draw(2024) end)
  local c = with_threads(4, function() return draw(2024) end)
  T.eq(a:dtype(), 'i64')
  T.same(a:shape(), { 4096 })
  T.truthy(tide.equal(a, b), '1 and 2 threads')
  T.truthy(tide.equal(a, c), '1 and 4 threads')
  T.truthy(tide.equal(a, draw(2024)), 'same seed again')
  T.truthy(not tide.equal(a, draw(2025)), 'another seed differs')
  -- the default generator, reseeded
  tide.manual_seed(7)
  local d = P.sample(scores)
  tide.manual_seed(7)
  T.truthy(tide.equal(d, P.sample(scores)), 'manual_seed')
end)

T.test('sampled tokens follow the processed distribution (chi-square, fixed seed)', function()
  local n = 200000
  local scores, row = processed_rows(n)
  local ids = P.sample(scores, tide.Generator(12345)):tolist()
  -- the processed distribution, in double precision
  local s = row:to('f64'):tolist()[1]
  local mx, z = -math.huge, 0
  for _, v in ipairs(s) do if v > mx then mx = v end end
  local probs = {}
  for j, v in ipairs(s) do probs[j] = v == -math.huge and 0 or math.exp(v - mx); z = z + probs[j] end
  local counts, kept = {}, 0
  for j = 1, #probs do probs[j] = probs[j] / z; counts[j] = 0; if probs[j] > 0 then kept = kept + 1 end end
  T.truthy(kept >= 4 and kept < #probs, 'top-k/top-p leave a strict subset: ' .. kept)
  for _, id in ipairs(ids) do counts[id + 1] = counts[id + 1] + 1 end
  local chi2 = 0
  for j, p in ipairs(probs) do
    if p == 0 then
      T.eq(counts[j], 0, 'removed token ' .. (j - 1) .. ' was sampled')
    else
      local e = n * p
      chi2 = chi2 + (counts[j] - e) ^ 2 / e
    end
  end
  -- at most 7 degrees of freedom: P(chi2 > 60) < 2e-10
  print(('    chi-square %.2f, %d categories'):format(chi2, kept))
  T.truthy(chi2 < 60, ('chi-square %.2f with %d categories'):format(chi2, kept))
end)

T.test('on CUDA the processors give the CPU\'s scores', function()
  T.need_cuda()
  for _, c in ipairs(golden.cases) do
    local cpu = run_case(c)
    local gpu = run_case(c, 'cuda')
    T.eq(gpu.device, 'cuda:0', c.name)
    local a, b = cpu:tolist(), gpu:cpu():tolist()
    for i, row in ipairs(a) do
      for j, v in ipairs(row) do
        local g = b[i][j]
        T.truthy((v == -math.huge) == (g == -math.huge) and (v == -math.huge or math.abs(v - g) <= 1e-6 * math.max(1, math.abs(v))),
          ('%s [%d][%d]: cpu %s, cuda %s'):format(c.name, i, j - 1, v, g))
      end
    end
  end
  local scores = processed_rows(1024)
  local ids = P.sample(scores:to('cuda'), tide.Generator(3))
  T.eq(ids.device, 'cuda:0')
  T.same(P.greedy(scores:to('cuda')):cpu():tolist(), P.greedy(scores):tolist())
end)

-- tide.data.filters: each CodeParrot/Codex heuristic on crafted texts at
-- the edges of its threshold, the HF course's keyword filter, the combined
-- CodeParrot predicate on records, exact dedup counts, near dedup of a
-- lightly edited copy (kept: an unrelated file), the LSH band/row choice,
-- and characters per GPT-2 token.
local T = require 'tide.testing'
local F = require 'tide.data.filters'
local tokenizer = tide.tokenizer or require 'tide.tokenizer'

local GPT2 = 'data/gpt2'
local function exists(path)
  local f = io.open(path, 'rb')
  if f then f:close() end
  return f ~= nil
end
local have_gpt2 = exists(GPT2 .. '/vocab.json') and exists(GPT2 .. '/merges.txt')
local tok = have_gpt2 and tokenizer.load(GPT2)

local function lines(list) return table.concat(list, '\n') .. '\n' end
local function rep_lines(line, n)
  local t = {}
  for i = 1, n do t[i] = line end
  return lines(t)
end

-- A Python-like file of n lines, identifiers drawn from a vocabulary named
-- by prefix so that files with different prefixes share few tokens.
local function python_file(prefix, n, seed)
  local rnd = T.lcg(seed)
  local function pick(k) return math.floor(rnd() * k) end
  local out = { 'import os', 'import sys', '', ('class %sModel(object):'):format(prefix) }
  for i = 5, n do
    local kind = pick(4)
    if kind == 0 then
      out[i] = ('    def %s_method_%d(self, %s_arg_%d):'):format(prefix, pick(500), prefix, pick(100))
    elseif kind == 1 then
      out[i] = ('        %s_value_%d = %s_func_%d(%s_x_%d, %d)'):format(prefix, pick(400), prefix, pick(300), prefix,
        pick(200), pick(1000))
    elseif kind == 2 then
      out[i] = ('        for %s_i in range(%d):'):format(prefix, pick(100))
    else
      out[i] = ('            return self.%s_attr_%d + %d'):format(prefix, pick(300), pick(1000))
    end
  end
  return lines(out)
end

T.test('any_keyword is a plain substring search (the HF course examples)', function()
  T.eq(F.any_keyword('import numpy as np', F.data_science_keywords), false)
  T.eq(F.any_keyword('import pandas as pd', F.data_science_keywords), true)
  T.eq(F.any_keyword('from sklearn.linear_model import X', F.data_science_keywords), true)
  T.eq(F.any_keyword('anything', {}), false)
  T.eq(F.any_keyword('a.b', { '.' }), true)
  T.eq(F.any_keyword('ab', { '.' }), false, 'pattern characters are plain')
  T.eq(F.any_keyword('x%d', { '%d' }), true)
  T.same(F.data_science_keywords, { 'pandas', 'sklearn', 'matplotlib', 'seaborn' })
  T.raises(function() F.any_keyword(nil, { 'a' }) end, 'expected the text as a string')
  T.raises(function() F.any_keyword('a', 'a') end, 'keywords must be an array')
  T.raises(function() F.any_keyword('a', { 'b', 3 }) end, 'keyword 2 must be a string')
end)

T.test('line_lengths_ok: mean line length <= 100 and longest <= 1000', function()
  T.eq(F.line_lengths_ok(rep_lines(('x'):rep(100), 10)), true, 'mean exactly 100')
  T.eq(F.line_lengths_ok(rep_lines(('x'):rep(101), 10)), false, 'mean 101')
  -- one long line among many short ones: the mean stays small
  local t = {}
  for i = 1, 50 do t[i] = 'y = 1' end
  t[51] = ('z'):rep(1000)
  T.eq(F.line_lengths_ok(lines(t)), true, 'longest exactly 1000')
  t[51] = ('z'):rep(1001)
  T.eq(F.line_lengths_ok(lines(t)), false, 'longest 1001')
  local mean, longest = F.line_stats(lines(t))
  T.eq(longest, 1001)
  T.close(mean, (50 * 5 + 1001) / 51)
  -- characters, not bytes: 100 two-byte characters are 100 long
  T.eq(F.line_lengths_ok(rep_lines(('é'):rep(100), 3)), true)
  T.eq(F.line_lengths_ok(rep_lines(('é'):rep(101), 3)), false)
  -- CRLF endings do not count, a missing final newline is fine
  T.eq(F.line_lengths_ok((('x'):rep(100) .. '\r\n'):rep(5)), true)
  T.eq(F.line_lengths_ok(('x'):rep(100) .. '\n' .. ('x'):rep(100)), true)
  T.same({ F.line_stats('ab\r\ncdef\r\n\nxy\r') }, { 2, 4 }, 'CRLF, empty line, final CR')
  T.same({ F.line_stats('é\nabc') }, { 2, 3 })
  -- empty lines count toward the mean (Python's splitlines)
  T.eq(F.line_lengths_ok(('x'):rep(150) .. '\n\n'), true, 'mean 75')
  T.eq(F.line_lengths_ok(''), true)
  T.eq(F.line_lengths_ok(rep_lines(('x'):rep(50), 3), { mean = 40 }), false)
  T.eq(F.line_lengths_ok(rep_lines(('x'):rep(50), 3), { max = 49 }), false)
  T.raises(function() F.line_lengths_ok('x', { mean = 'a' }) end, 'option mean must be a number')
  T.raises(function() F.line_lengths_ok('x', 5) end, 'options must be a table')
end)

T.test('alphanum_ok: at least 25% alphanumeric characters', function()
  T.eq(F.alphanum_ok('a---'), true, 'exactly 0.25')
  T.eq(F.alphanum_ok('a----'), false, '0.2')
  T.close(F.alphanum_fraction('ab1_ \n'), 0.5)
  T.eq(F.alphanum_ok(('0x00, '):rep(100)), true)
  T.eq(F.alphanum_ok((' {}, '):rep(100)), false)
  -- non-ASCII letters count as one alphanumeric character each
  T.close(F.alphanum_fraction('éé--'), 0.5)
  T.close(F.alphanum_fraction('名前 = 1'), 3 / 6)
  T.eq(F.alphanum_ok(''), true, 'empty: undefined fraction, kept')
  T.eq(F.alphanum_ok('ab--', { min = 0.6 }), false)
end)

T.test('not_autogenerated: markers in the first 5 lines, any case', function()
  local body = rep_lines('x = 1', 20)
  T.eq(F.not_autogenerated(body), true)
  T.eq(F.not_autogenerated('# This file is AUTO-GENERATED\n' .. body), false)
  T.eq(F.not_autogenerated('# Autogenerated by tool\n' .. body), false)
  T.eq(F.not_autogenerated('"""\nAutomatically generated\n"""\n' .. body), false)
  T.eq(F.not_autogenerated('# Generated by Django 3.2 on 2021-01-01\n' .. body), false)
  T.eq(F.not_autogenerated('# DO NOT EDIT\n' .. body), false)
  local four = rep_lines('a = 1', 4)
  T.eq(F.not_autogenerated(four .. '# auto-generated\n' .. body), false, 'marker on line 5')
  T.eq(F.not_autogenerated(four .. 'b = 2\n# auto-generated\n' .. body), true, 'marker on line 6')
  T.eq(F.not_autogenerated(four .. 'b = 2\n# auto-generated\n', { lines = 6 }), false)
  T.eq(F.not_autogenerated('# generated\n', { markers = { 'generated' } }), false)
  T.eq(F.not_autogenerated(''), true)
end)

T.test('not_config_or_test: phrases in the first 5 lines or too many config/test words', function()
  local body = rep_lines('x = compute(y)', 100) -- 100 newlines: threshold floor(0.05 * 100) = 5
  T.eq(F.not_config_or_test(body), true)
  T.eq(F.not_config_or_test('# Unit tests for the parser\n' .. body), false)
  T.eq(F.not_config_or_test('"""Configuration file for Sphinx"""\n' .. body), false)
  T.eq(F.not_config_or_test(rep_lines('a = 1', 5) .. '# unit tests\n' .. body), true, 'phrase on line 6')
  T.eq(F.not_config_or_test(body .. ('test '):rep(5)), true, '5 occurrences at threshold 5')
  T.eq(F.not_config_or_test(body .. ('Test '):rep(6)), false, '6 occurrences, case ignored')
  T.eq(F.not_config_or_test(body .. ('config '):rep(6)), false)
  T.eq(F.not_config_or_test(body .. ('test config '):rep(5)), true, 'counted separately')
  -- under 20 lines the threshold is 0: one mention is enough
  T.eq(F.not_config_or_test('import config\nx = 1\n'), false)
  T.eq(F.not_config_or_test('x = 1\n', nil, { ratio = 1 }), true)
  -- the path only counts when asked for (CodeParrot looks at content only)
  T.eq(F.not_config_or_test(body, 'repo/tests/test_io.py'), true)
  T.eq(F.not_config_or_test(body, 'repo/tests/io.py', { check_path = true }), false)
  T.eq(F.not_config_or_test(body, 'repo/pkg/test_io.py', { check_path = true }), false)
  T.eq(F.not_config_or_test(body, 'repo/pkg/io_test.py', { check_path = true }), false)
  T.eq(F.not_config_or_test(body, 'repo/conftest.py', { check_path = true }), false)
  T.eq(F.not_config_or_test(body, 'docs/conf_config.py', { check_path = true }), false)
  T.eq(F.not_config_or_test(body, 'repo/pkg/contest.py', { check_path = true }), true)
  T.raises(function() F.not_config_or_test(body, 5) end, 'path must be a string or nil')
end)

T.test('has_code_structure and enough_assignments', function()
  T.eq(F.has_code_structure('def f(x):\n  return x\n'), true)
  T.eq(F.has_code_structure('class A:\n  pass\n'), true)
  T.eq(F.has_code_structure('for x in y: pass'), true)
  T.eq(F.has_code_structure('while True: pass'), true)
  T.eq(F.has_code_structure('DEF F'), true, 'case ignored')
  T.eq(F.has_code_structure('x = 1\ny = [1, 2]\n# define\n'), false)
  T.eq(F.has_code_structure(''), false)
  T.eq(F.enough_assignments('a=1\nb=2\nc=3\nd=4\n'), false, '4 assignments')
  T.eq(F.enough_assignments('a=1\nb=2\nc=3\nd=4\ne=5\n'), true, '5 assignments')
  T.eq(F.enough_assignments('a == b', { min = 1 }), true)
end)

T.test('chars_per_token_ok: at least 1.5 characters per token', function()
  local count = function(n) return function() return n end end
  T.eq(F.chars_per_token_ok(('x'):rep(15), count(10)), true, 'exactly 1.5')
  T.eq(F.chars_per_token_ok(('x'):rep(15), count(11)), false)
  T.eq(F.chars_per_token_ok(('é'):rep(15), count(10)), true, 'characters, not bytes')
  T.eq(F.chars_per_token_ok('abc', function() return { 1, 2, 3 } end), false, 'ids array')
  T.eq(F.chars_per_token_ok('', count(0)), true, 'no tokens: kept')
  T.raises(function() F.chars_per_token_ok('x', 5) end, 'expected a tokenizer')
  T.raises(function() F.chars_per_token_ok('x', function() return 'no' end) end, 'expected ids or a count')
  if not have_gpt2 then T.skip('GPT-2 files not found in ' .. GPT2) end
  local code = python_file('gpt', 60, 3)
  local r = F.chars_per_token(code, tok)
  print(('  GPT-2 characters per token on generated Python: %.2f'):format(r))
  T.truthy(r > 1.5, 'code has a high ratio')
  T.eq(F.chars_per_token_ok(code, tok), true)
  -- random CJK and hex-escaped bytes tokenise into many short tokens
  local rnd = T.lcg(11)
  local junk = {}
  for i = 1, 300 do
    local cp = 0x4E00 + math.floor(rnd() * 20000)
    junk[i] = string.char(0xE0 + math.floor(cp / 4096), 0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
  end
  local cjk = table.concat(junk)
  print(('  GPT-2 characters per token on random CJK: %.2f'):format(F.chars_per_token(cjk, tok)))
  T.eq(F.chars_per_token_ok(cjk, tok), false)
end)

T.test('codeparrot: the combined filter on records', function()
  local good = python_file('good', 40, 1)
  T.eq(F.line_lengths_ok(good) and F.alphanum_ok(good) and F.not_config_or_test(good), true)
  local keep = F.codeparrot { filter_proba = 1, tokenizer = tok or nil }
  local function rec(content, path) return { repo_name = 'r', path = path or 'a.py', copies = '1',
    size = tostring(#content), content = content, license = 'mit' } end
  T.eq(keep(rec(good)), true)
  T.eq(keep(good), true, 'a string is the content')
  T.eq(keep(rec('# auto-generated\n' .. good)), false)
  T.eq(keep(rec(good .. ('x'):rep(1200) .. '\n')), false)
  T.eq(keep(rec(rep_lines(('a = 1 + 2'):rep(12), 30))), false)
  T.eq(keep(rec(rep_lines('a = [ {} , {} , {} , {} ]', 10) .. 'def f(): pass\n')), false)
  T.eq(keep(rec('# unit tests\n' .. good)), false)
  T.eq(keep(rec(rep_lines('x = 1', 10))), false)
  T.eq(keep(rec('def f(x):\n    return x + 1\n')), false, 'few assignments')
  T.eq(keep.seen, 9)
  T.eq(keep.kept, 2)
  T.eq(keep.dropped, 7)
  T.same(keep.why, { dedup = 0, autogenerated = 1, line_max = 1, line_mean = 1, alpha_frac = 1, token_ratio = 0,
                     config_or_test = 1, no_keywords = 1, few_assignments = 1 })
  -- with probability 0 config/test and keyword-less files pass those checks
  local lenient = F.codeparrot { filter_proba = 0 }
  T.eq(lenient(rec('# unit tests\n' .. good)), true)
  T.eq(lenient(rec(rep_lines('x = 1', 10))), true)
  -- with 0.7 about 70% of config files go, the same ones on every run
  local a, b = F.codeparrot { seed = 5 }, F.codeparrot { seed = 5 }
  local dropped, same = 0, true
  for i = 1, 400 do
    local text = ('# unit tests %d\n'):format(i) .. good
    local ka, kb = a(rec(text)), b(rec(text))
    if not ka then dropped = dropped + 1 end
    same = same and ka == kb
  end
  T.truthy(same, 'deterministic')
  T.truthy(dropped > 240 and dropped < 320, 'about 70% dropped, got ' .. dropped)
  -- check_path, and the dedup stage
  T.eq(F.codeparrot { check_path = true, filter_proba = 1 } (rec(good, 'x/tests/a.py')), false)
  local d = F.codeparrot { dedup = true }
  T.eq(d(rec(good)), true)
  T.eq(d(rec((good:gsub('\n', '\n\n')))), false)
  T.eq(d.why.dedup, 1)
  T.raises(function() keep({ content = 5 }) end, 'record.content must be a string')
  T.raises(function() keep(5) end, 'expected a record')
  T.raises(function() F.codeparrot { line_max = 'x' } end, 'option line_max must be a number')
end)

T.test('exact_dedup keeps the first of each whitespace-normalised text', function()
  local d = F.exact_dedup()
  T.eq(d('def f(x):\n    return x\n'), true)
  T.eq(d('def f(x):\n\treturn x'), false, 'whitespace variant')
  T.eq(d({ content = '  def f(x): return x  ' }), false, 'record')
  T.eq(d('def f(x):\n    return y\n'), true)
  T.eq(d('def f(x):\n    return y\n'), false)
  T.eq(d(''), true)
  T.eq(d('\n\n'), false)
  T.eq(d.seen, 7)
  T.eq(d.kept, 3)
  T.eq(d.dropped, 4)
  local d2 = F.exact_dedup()
  T.eq(d2('def f(x):\n    return x\n'), true, 'state is per predicate')
  -- many distinct texts: no false duplicates
  local d3 = F.exact_dedup()
  for i = 1, 20000 do d3('x = ' .. i) end
  T.eq(d3.kept, 20000)
end)

T.test('LSH parameters for threshold 0.85 and 256 permutations', function()
  local b, r = F.lsh_params(0.85, 256)
  print(('  LSH for threshold 0.85, num_perm 256: %d bands x %d rows (uses %d of 256)'):format(b, r, b * r))
  T.truthy(b * r <= 256)
  -- the S-curve's midpoint (1/b)^(1/r) sits near the threshold
  local mid = (1 / b) ^ (1 / r)
  T.truthy(mid > 0.7 and mid < 0.95, 'midpoint ' .. mid)
  local b2, r2 = F.lsh_params(0.5, 128)
  T.truthy(b2 * r2 <= 128)
  T.truthy(r2 < r, 'a lower threshold uses fewer rows per band')
  T.raises(function() F.lsh_params(1.5, 256) end, 'threshold must be a number in (0, 1)')
  T.raises(function() F.lsh_params(0.5, 0) end, 'num_perm must be a positive integer')
end)

T.test('near_dedup drops a lightly edited copy and keeps an unrelated file', function()
  local orig = python_file('alpha', 200, 1)
  local lines_of = {}
  for l in orig:gmatch('([^\n]*)\n') do lines_of[#lines_of + 1] = l end
  T.eq(#lines_of, 200)
  local edited = {}
  for i, l in ipairs(lines_of) do edited[i] = l end
  edited[20] = '        changed_one = 1'
  edited[90] = '        changed_two = other_call(changed_one)'
  edited[150] = '    # a new comment here'
  local copy = lines(edited)
  local other = python_file('beta', 200, 2)

  local near = F.near_dedup()
  print(('  near_dedup defaults: threshold %.2f, %d perms, %d bands x %d rows'):format(near.threshold,
    near.num_perm, near.bands, near.rows))
  T.eq(near(orig), true)
  T.eq(near(copy), false, 'edited copy')
  T.eq(near(other), true, 'unrelated file')
  T.eq(near({ content = other .. '\n# trailing\n' }), false, 'record, copy of the second')
  -- below min_tokens: kept and not indexed, even when identical
  T.eq(near('x = y'), true)
  T.eq(near('x = y'), true)
  T.eq(near.seen, 6)
  T.eq(near.kept, 4)
  T.eq(near.dropped, 2)
  T.eq(near.indexed, 2)

  -- a heavily edited copy (half the lines replaced) is kept
  local half = {}
  for i, l in ipairs(lines_of) do half[i] = i % 2 == 0 and l or ('    new_%d = thing_%d'):format(i, i) end
  T.eq(near(lines(half)), true)

  -- the signature store grows past its first capacity
  local many = F.near_dedup { num_perm = 64 }
  for i = 1, 300 do many(python_file('f' .. i, 30, i)) end
  T.eq(many.kept, 300)
  for i = 1, 300, 7 do T.eq(many(python_file('f' .. i, 30, i)), false, 'repeat ' .. i) end

  T.raises(function() F.near_dedup { threshold = 0 } end, 'threshold must be in (0, 1]')
  T.raises(function() F.near_dedup { num_perm = 0 } end, 'num_perm must be an integer')
  T.raises(function() F.near_dedup { bands = 20, rows = 20 } end, 'bands * rows <= num_perm (256)')
  T.raises(function() F.near_dedup { seed = -1 } end, 'seed must be a non-negative integer')
  T.raises(function() near(nil) end, 'expected a record')
end)

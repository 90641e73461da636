-- tide.data.split_sentences(text, max_chars): long texts cut at sentence
-- ends, as the GPT-2-from-scratch tutorial (llms-101) splits the Feynman
-- lectures' sections that exceed the context (it splits on every "." with
-- pandas' str.split and explodes the rows). A sentence ends at ".", "!" or
-- "?" (and any closing quotes or brackets after it) followed by whitespace
-- or the end, or at a newline; "3.14" and "e.g.x" do not end one.
--
--   split_sentences(text)         every sentence on its own (the tutorial's
--                                 split, but keeping the punctuation, and
--                                 dropping the empty pieces it leaves)
--   split_sentences(text, 1000)   a text of at most 1000 characters whole;
--                                 a longer one as runs of whole sentences of
--                                 at most 1000 characters each, a sentence
--                                 longer than that cut at whitespace (or,
--                                 with none, anywhere between characters)
--
-- Characters are UTF-8 code points; pieces are trimmed of the whitespace
-- around them and keep the text between their sentences as it was.
-- stream:split_sentences(max_chars, opts) is the same as a stream stage: each
-- record (a string, or a table whose opts.field, default 'text' then
-- 'content', holds the text) becomes its pieces, as strings.
local stream = require 'tide.data.stream'
local pack = require 'tide.data.pack'
local Stream = stream.Stream

local M = {}

local byte, find = string.byte, string.find

-- code points in s[i..j]: the bytes that do not continue a UTF-8 sequence
local function nchars(s, i, j)
  local n = 0
  for k = i, j do
    local b = byte(s, k)
    if b < 0x80 or b >= 0xC0 then n = n + 1 end
  end
  return n
end

-- s[i..j] without the whitespace around it, or nil when nothing is left
local function trimmed(s, i, j)
  while i <= j and find(s, '^%s', i) do i = i + 1 end
  while j >= i and find(s, '^%s', j) do j = j - 1 end
  if i > j then return nil end
  return i, j
end

-- the sentences of s as {first, last} byte spans, trimmed, none empty
local function spans(s)
  local out, start, at, n = {}, 1, 1, #s
  local function add(i, j)
    local a, b = trimmed(s, i, j)
    if a then out[#out + 1] = { a, b } end
  end
  while at <= n do
    local i = find(s, '[%.!?\n]', at)
    if not i then break end
    if byte(s, i) == 10 then
      add(start, i - 1)
      start, at = i + 1, i + 1
    else
      local j = i + 1
      while j <= n and find(s, '^[%.!?"\')%]]', j) do j = j + 1 end
      if j > n or find(s, '^%s', j) then
        add(start, j - 1)
        start = j
      end
      at = j
    end
  end
  add(start, n)
  return out
end

-- the byte index in s at or before which the first `max` characters from i
-- end (i <= j): the last byte of character number max
local function cut_at(s, i, j, max)
  local n = 0
  for k = i, j do
    local b = byte(s, k)
    if b < 0x80 or b >= 0xC0 then
      n = n + 1
      if n > max then return k - 1 end
    end
  end
  return j
end

-- one sentence s[i..j] longer than max, cut at whitespace where it can be
local function cut_long(s, i, j, max, out)
  while i <= j do
    if nchars(s, i, j) <= max then out[#out + 1] = s:sub(i, j); return end
    local e = cut_at(s, i, j, max)
    -- the last whitespace inside the first max characters
    local k = e
    while k > i and not find(s, '^%s', k + 1) do k = k - 1 end
    if k > i then e = k end
    local a, b = trimmed(s, i, e)
    if a then out[#out + 1] = s:sub(a, b) end
    local ni = trimmed(s, e + 1, j)
    if not ni then return end
    i = ni
  end
end

function M.split_sentences(text, max_chars)
  if type(text) ~= 'string' then error('split_sentences: expected a string, got ' .. type(text), 2) end
  if max_chars ~= nil and (type(max_chars) ~= 'number' or max_chars % 1 ~= 0 or max_chars < 1) then
    error('split_sentences: max_chars must be an integer >= 1 (or nil: every sentence alone), got ' .. tostring(max_chars), 2)
  end
  local out = {}
  if max_chars and nchars(text, 1, #text) <= max_chars then
    local a, b = trimmed(text, 1, #text)
    if a then out[1] = text:sub(a, b) end
    return out
  end
  local sp = spans(text)
  if not max_chars then
    for k, p in ipairs(sp) do out[k] = text:sub(p[1], p[2]) end
    return out
  end
  -- greedy: as many whole sentences per piece as fit
  local k = 1
  while k <= #sp do
    local first = sp[k][1]
    if nchars(text, first, sp[k][2]) > max_chars then
      cut_long(text, first, sp[k][2], max_chars, out)
      k = k + 1
    else
      local last = sp[k][2]
      k = k + 1
      while k <= #sp and nchars(text, first, sp[k][2]) <= max_chars do
        last = sp[k][2]
        k = k + 1
      end
      out[#out + 1] = text:sub(first, last)
    end
  end
  return out
end

function Stream:split_sentences(max_chars, opts)
  if max_chars ~= nil and (type(max_chars) ~= 'number' or max_chars % 1 ~= 0 or max_chars < 1) then
    error('split_sentences: max_chars must be an integer >= 1 (or nil), got ' .. tostring(max_chars), 2)
  end
  opts = opts or {}
  local field = opts.field
  local split = M.split_sentences
  return self:flat_map(function(rec)
    return split(pack.text_of(rec, field), max_chars)
  end, ('split_sentences %s'):format(max_chars or 'each'))
end

return M

-- stream:group_texts(block_size, opts): the Hugging Face causal-LM guide's
-- group_texts, mapped as datasets.map(group_texts, batched=True) runs it:
-- the token ids of each batch of batch_size records (1000, datasets'
-- default) are concatenated and cut into blocks of block_size; the
-- remainder of each batch is dropped, except that a batch holding fewer
-- than block_size tokens in all gives one short block (the guide's
-- `if total_length >= block_size` keeps it). Each block is a record
--   { input_ids = {...}, labels = {...} }
-- with labels a copy of input_ids (the model shifts them), and
-- attention_mask (all ones) when the input records had one.
--
-- Records in: an id array (stream:tokenize's) or a table with input_ids
-- (a tokenizer call's result). Memory: one batch's blocks at a time.
local stream = require 'tide.data.stream'
local new_table = require 'table.new'
local Stream = stream.Stream

local function ids_of(rec, n)
  if type(rec) ~= 'table' then
    error(('group_texts: record %d is a %s; expected an id array or a table with input_ids'):format(n, type(rec)), 0)
  end
  local ids = rec.input_ids or rec
  if type(ids) ~= 'table' then
    error(('group_texts: record %d: input_ids is a %s, not an id array'):format(n, type(ids)), 0)
  end
  local m = #ids
  if m > 0 and type(ids[1]) ~= 'number' then
    error(('group_texts: record %d holds a %s where a token id belongs (a batch? give one record per text)')
      :format(n, type(ids[1])), 0)
  end
  return ids, m, rec.attention_mask ~= nil
end

local function copy(t, n)
  local c = new_table(n, 0)
  for i = 1, n do c[i] = t[i] end
  return c
end

-- opts: batch_size (records per batch; 0 = the whole stream as one batch;
-- default 1000), labels (default true: add labels = a copy of input_ids).
function Stream:group_texts(block_size, opts)
  if type(block_size) ~= 'number' or block_size % 1 ~= 0 or block_size < 1 then
    error('group_texts: block_size must be an integer >= 1, got ' .. tostring(block_size), 2)
  end
  opts = opts or {}
  if type(opts) ~= 'table' then error('group_texts: opts must be a table such as {batch_size = 1000}', 2) end
  local batch = opts.batch_size == nil and 1000 or opts.batch_size
  if type(batch) ~= 'number' or batch % 1 ~= 0 or batch < 0 then
    error('group_texts: opts.batch_size must be an integer >= 0 (0: the whole stream), got ' .. tostring(batch), 2)
  end
  if batch == 0 then batch = math.huge end
  local with_labels = opts.labels ~= false
  local s
  s = stream.new(function()
    local nx, cl = self:iter()
    s.records, s.tokens, s.blocks, s.dropped, s.short = 0, 0, 0, 0, 0
    local out, nout, pos, eof = {}, 0, 1, false
    local function block(buf, from, n, mask)
      local ids = new_table(n, 0)
      for i = 1, n do ids[i] = buf[from + i] end
      local b = { input_ids = ids }
      if with_labels then b.labels = copy(ids, n) end
      if mask then
        local m = new_table(n, 0)
        for i = 1, n do m[i] = 1 end
        b.attention_mask = m
      end
      return b
    end
    -- the next batch's blocks into out
    local function fill()
      local buf, total, nrec, mask = {}, 0, 0, false
      while nrec < batch do
        local rec = nx()
        if rec == nil then eof = true; break end
        nrec = nrec + 1
        s.records = s.records + 1
        local ids, m, has_mask = ids_of(rec, s.records)
        mask = mask or has_mask
        for i = 1, m do buf[total + i] = ids[i] end
        total = total + m
      end
      s.tokens = s.tokens + total
      out, nout, pos = {}, 0, 1
      if total == 0 then return end
      local usable = total
      if total >= block_size then usable = total - total % block_size else s.short = s.short + 1 end
      s.dropped = s.dropped + (total - usable)
      for from = 0, usable - 1, block_size do
        nout = nout + 1
        out[nout] = block(buf, from, math.min(block_size, usable - from), mask)
      end
      s.blocks = s.blocks + nout
    end
    return function()
      while pos > nout do
        if eof then return nil end
        fill()
      end
      local b = out[pos]
      out[pos] = nil
      pos = pos + 1
      return b
    end, cl
  end, ('group_texts %d batch %s'):format(block_size, batch == math.huge and 'all' or tostring(batch)), self)
  s.records, s.tokens, s.blocks, s.dropped, s.short = 0, 0, 0, 0, 0
  function s.report_line(st)
    return ('group_texts: %d blocks of %d tokens from %d records (%d tokens); %d tokens dropped (%.2f%%)%s'):format(
      st.blocks, block_size, st.records, st.tokens, st.dropped, st.tokens > 0 and 100 * st.dropped / st.tokens or 0,
      st.short > 0 and (', %d short block%s'):format(st.short, st.short == 1 and '' or 's') or '')
  end
  return s
end

return {}

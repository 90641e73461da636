-- Tokenizing and packing streams: stream:tokenize(tok) gives each record's
-- ids (encoded in batches over the tokenizer's threads), stream:pack(n)
-- cuts them into sequences of n tokens, the two ways the seeds do:
--   'concat'        documents joined with EOS between them and cut into n-token
--                   chunks, the last partial chunk dropped (the seeds'
--                   ConstantLengthDataset);
--   'per_document'  each document cut on its own, chunks shorter than n dropped
--                   (tokenizer(..., return_overflowing_tokens=True) and the
--                   length filter of the Hugging Face course).
-- Both count the tokens they drop; stream:report() shows the share.
local ffi = require 'ffi'
local stream = require 'tide.data.stream'
local new_table = require 'table.new'
local Stream = stream.Stream

local M = {}

-- The text of a record: the record itself when a string, else rec[field]
-- (default: 'content', then 'text').
local function text_of(rec, field)
  if type(rec) == 'string' then return rec end
  if type(rec) ~= 'table' then
    error(('tokenize: records must be strings or tables, got a %s'):format(type(rec)), 0)
  end
  local t
  if field then t = rec[field] else t = rec.content or rec.text end
  if type(t) ~= 'string' then
    error(('tokenize: the record has no string field %s'):format(field and ("'" .. field .. "'") or "'content' or 'text'"), 0)
  end
  return t
end
M.text_of = text_of

-- A tokenizing step's report line from its counts (documents, tokens,
-- bytes of text); label, when given, goes in front ('split valid: ').
function M.tokenize_report(st, label)
  return ('%stokenize: %d documents, %d tokens from %.1f MB (%.2f bytes per token)'):format(
    type(label) == 'string' and label or '', st.documents, st.tokens, st.bytes / 1e6,
    st.tokens > 0 and st.bytes / st.tokens or 0)
end

-- A stream of id arrays (Lua arrays of 0-based ids), one per record. opts:
-- field (which field holds the text), batch_bytes (text gathered per
-- encode_batch call, default 4 MB: enough for every thread to keep busy),
-- allowed_special (as for encode).
function Stream:tokenize(tok, opts)
  if type(tok) ~= 'table' or type(tok.encode_batch) ~= 'function' then
    error('tokenize: expected a tokenizer (tide.tokenizer.load), got ' .. type(tok), 2)
  end
  opts = opts or {}
  local field, batch_bytes = opts.field, opts.batch_bytes or 4 * 2^20
  local eopts = opts.allowed_special and { allowed_special = opts.allowed_special } or nil
  local s
  s = stream.new(function()
    local nx, cl = self:iter()
    local out, pos, eof = {}, 1, false
    s.documents, s.tokens, s.bytes = 0, 0, 0
    return function()
      if pos > #out then
        if eof then return nil end
        local texts, bytes = {}, 0
        while bytes < batch_bytes do
          local rec = nx()
          if rec == nil then eof = true; break end
          local ok, t = pcall(text_of, rec, field)
          if not ok then error(t, 2) end
          texts[#texts + 1] = t
          bytes = bytes + #t
        end
        if #texts == 0 then return nil end
        out, pos = tok:encode_batch(texts, eopts), 1
        s.documents, s.bytes = s.documents + #texts, s.bytes + bytes
        for i = 1, #out do s.tokens = s.tokens + #out[i] end
      end
      local ids = out[pos]
      out[pos] = nil
      pos = pos + 1
      return ids
    end, cl
  end, 'tokenize' .. (field and (' ' .. field) or ''), self)
  s.documents, s.tokens, s.bytes = 0, 0, 0
  s.report_line = M.tokenize_report
  return s
end

-- Checks pack's arguments; returns the mode and the EOS id.
local function pack_args(n, opts, level)
  if type(n) ~= 'number' or n % 1 ~= 0 or n < 1 then
    error('pack: the sequence length must be an integer >= 1, got ' .. tostring(n), level + 1)
  end
  local mode = opts.mode or 'concat'
  if mode ~= 'concat' and mode ~= 'per_document' then
    error("pack: mode must be 'concat' or 'per_document', got " .. tostring(mode), level + 1)
  end
  local eos = opts.eos
  if mode == 'concat' and (type(eos) ~= 'number' or eos % 1 ~= 0 or eos < 0) then
    error('pack: concat mode needs opts.eos, the id joining documents (tok.eos_id)', level + 1)
  end
  return mode, eos
end

-- A packer's report: its sequences and the share of tokens it dropped.
local function pack_report(st)
  local dropped = st.tokens_in - st.tokens_out
  return ('pack %s %d: %d sequences, %d of %d tokens dropped (%.3f%%)'):format(
    st.mode, st.n, st.sequences, dropped, st.tokens_in, st.tokens_in > 0 and 100 * dropped / st.tokens_in or 0)
end

-- A packer: packer:push(ids) takes a document's ids and calls emit(seq)
-- for every n-token sequence it completes. Counts: tokens_in, tokens_out,
-- sequences; packer:report_line() describes them. Memory: the pending
-- tokens of concat mode (under n plus one document).
function M.packer(n, opts, emit)
  opts = opts or {}
  local mode, eos = pack_args(n, opts, 2)
  local p = { tokens_in = 0, tokens_out = 0, sequences = 0, mode = mode, n = n }
  local buf, head, tail = {}, 1, 0      -- concat: pending tokens buf[head .. tail]
  local function take(src, from)
    local seq = new_table(n, 0)
    for i = 0, n - 1 do seq[i + 1] = src[from + i] end
    p.sequences, p.tokens_out = p.sequences + 1, p.tokens_out + n
    emit(seq)
  end
  function p.push(_, ids)
    if type(ids) ~= 'table' then error('pack: expected arrays of ids (stream:tokenize(tok)), got a ' .. type(ids), 3) end
    if mode == 'concat' then
      for i = 1, #ids do buf[tail + i] = ids[i] end
      tail = tail + #ids + 1
      buf[tail] = eos
      p.tokens_in = p.tokens_in + #ids + 1
      while tail - head + 1 >= n do
        take(buf, head)
        head = head + n
      end
      if head > 65536 and head > tail / 2 then  -- compact: keep the table small
        local nb, k = {}, 0
        for i = head, tail do k = k + 1; nb[k] = buf[i] end
        buf, head, tail = nb, 1, k
      end
    else
      p.tokens_in = p.tokens_in + #ids
      for from = 1, #ids - n + 1, n do take(ids, from) end
    end
  end
  p.report_line = pack_report
  return p
end

-- The packer for ids in C memory: packer:push_ptr(ids, len) takes a
-- document's ids (int32_t*) and calls emit(ptr, count) with the sequences it
-- completes, count a multiple of n (several sequences at once). Same modes,
-- counts and report as M.packer; no Lua arrays, so tokens move by memcpy.
function M.cpacker(n, opts, emit)
  opts = opts or {}
  local mode, eos = pack_args(n, opts, 2)
  local p = { tokens_in = 0, tokens_out = 0, sequences = 0, mode = mode, n = n }
  local cap, pending, len = 4 * n + 1024, nil, 0   -- concat: tokens not yet in a sequence
  pending = ffi.new('int32_t[?]', cap)
  local function emit_full(ptr, count)
    local full = count - count % n
    if full > 0 then
      emit(ptr, full)
      p.sequences, p.tokens_out = p.sequences + full / n, p.tokens_out + full
    end
    return full
  end
  function p.push_ptr(_, ids, m)
    if mode == 'per_document' then
      p.tokens_in = p.tokens_in + m
      emit_full(ids, m)
      return
    end
    if len + m + 1 > cap then
      while cap < len + m + 1 do cap = cap * 2 end
      local bigger = ffi.new('int32_t[?]', cap)
      ffi.copy(bigger, pending, len * 4)
      pending = bigger
    end
    ffi.copy(pending + len, ids, m * 4)
    pending[len + m] = eos
    len = len + m + 1
    p.tokens_in = p.tokens_in + m + 1
    local full = emit_full(pending, len)
    if full > 0 then
      -- the remainder (under n tokens) to the front; it cannot overlap what
      -- it overwrites, as full >= n
      ffi.copy(pending, pending + full, (len - full) * 4)
      len = len - full
    end
  end
  p.report_line = pack_report
  return p
end

-- A stream of n-token sequences (Lua arrays) from a stream of id arrays.
-- opts.mode: 'concat' (default; opts.eos, the id put after every document,
-- is required) or 'per_document'.
function Stream:pack(n, opts)
  opts = opts or {}
  local mode = pack_args(n, opts, 2)
  local s
  s = stream.new(function()
    local nx, cl = self:iter()
    local ready, r_head, r_tail = {}, 1, 0   -- sequences made, not yet returned
    local p = M.packer(n, opts, function(seq) r_tail = r_tail + 1; ready[r_tail] = seq end)
    s.tokens_in, s.tokens_out, s.sequences = 0, 0, 0
    return function()
      while r_head > r_tail do
        local ids = nx()
        if ids == nil then return nil end
        p:push(ids)
        s.tokens_in, s.tokens_out, s.sequences = p.tokens_in, p.tokens_out, p.sequences
      end
      local seq = ready[r_head]
      ready[r_head] = nil
      r_head = r_head + 1
      return seq
    end, cl
  end, ('pack %s %d'):format(mode, n), self)
  -- the counts of the current (or last) pass, copied from its packer
  s.mode, s.n, s.tokens_in, s.tokens_out, s.sequences = mode, n, 0, 0, 0
  s.report_line = pack_report
  return s
end

return M

-- TensorBoard event files: CRC32C, TFRecord framing, Event/Summary encoding,
-- the reader on tide's files and on a golden file PyTorch's SummaryWriter
-- wrote (tests/data/tensorboard, made by tools/make_tensorboard_golden.py).
local T = require 'tide.testing'
local tb = require 'tide.train.tensorboard'
local json = require 'tide.json'

local golden_dir = 'tests/data/tensorboard'  -- tests run from the repository root

-- CRC-32C written out with plain arithmetic (no bit library): the reference
-- the table-driven one is checked against.
local function slow_crc32c(s)
  local function xor(a, b)
    local r, p = 0, 1
    for _ = 1, 32 do
      if (a % 2) ~= (b % 2) then r = r + p end
      a, b, p = math.floor(a / 2), math.floor(b / 2), p * 2
    end
    return r
  end
  local c = 0xffffffff
  for i = 1, #s do
    c = xor(c, s:byte(i))
    for _ = 1, 8 do
      if c % 2 == 1 then c = xor(math.floor(c / 2), 0x82F63B78) else c = math.floor(c / 2) end
    end
  end
  return xor(c, 0xffffffff)
end

local function f32(x)
  local b = require('ffi').new('float[1]', x)
  return tonumber(b[0])
end

T.test('crc32c: known vectors (RFC 3720 B.4 and the check value)', function()
  T.eq(tb.crc32c(''), 0)
  T.eq(tb.crc32c('123456789'), 0xE3069283)
  T.eq(tb.crc32c(('\0'):rep(32)), 0x8A9136AA)
  T.eq(tb.crc32c(('\255'):rep(32)), 0x62A8AB43)
  local up, down = {}, {}
  for i = 0, 31 do up[#up + 1] = string.char(i); down[#down + 1] = string.char(31 - i) end
  T.eq(tb.crc32c(table.concat(up)), 0x46DD794E)
  T.eq(tb.crc32c(table.concat(down)), 0x113FDB5C)
  local rng = T.lcg(7)
  for n = 1, 40 do
    local bytes = {}
    for i = 1, n do bytes[i] = string.char(math.floor(rng() * 256)) end
    local s = table.concat(bytes)
    T.eq(tb.crc32c(s), slow_crc32c(s), 'random string of ' .. n)
  end
  -- a sub-range, as the reader uses it
  T.eq(tb.crc32c('xx123456789yy', 3, 11), 0xE3069283)
end)

T.test('masked crc32c: rotate right 15, add 0xa282ead8', function()
  local c = 0xE3069283
  local rot = (math.floor(c / 2 ^ 15) + (c % 2 ^ 15) * 2 ^ 17) % 2 ^ 32
  T.eq(tb.masked_crc32c('123456789'), (rot + 0xa282ead8) % 2 ^ 32)
end)

T.test('varints: protobuf encoding, negatives as ten bytes', function()
  T.eq(tb._varint(0), '\0')
  T.eq(tb._varint(1), '\1')
  T.eq(tb._varint(300), '\172\2')
  T.eq(tb._varint(2 ^ 40), '\128\128\128\128\128\32')
  T.eq(tb._varint(-1), ('\255'):rep(9) .. '\1')
  T.eq(tb._varint(-2), '\254' .. ('\255'):rep(8) .. '\1')
end)

T.test('record framing: length, masked CRC of length, data, masked CRC of data', function()
  local r = tb._record('hello')
  T.eq(#r, 8 + 4 + 5 + 4)
  T.eq(r:sub(1, 8), '\5\0\0\0\0\0\0\0')
  T.eq(r:sub(13, 17), 'hello')
  local function u32(s, i) return s:byte(i) + s:byte(i + 1) * 256 + s:byte(i + 2) * 65536 + s:byte(i + 3) * 16777216 end
  T.eq(u32(r, 9), tb.masked_crc32c(r:sub(1, 8)))
  T.eq(u32(r, 18), tb.masked_crc32c('hello'))
end)

T.test('EventWriter and read_events round trip', function()
  local tmp, cleanup = T.scratch()
  local path = tmp('events.out.tfevents.test')
  local w = tb.EventWriter(path)
  local want = {}
  local rng = T.lcg(3)
  for step = 0, 49 do
    local v = rng() * 10 - 5
    w:add_scalar('loss/train', v, step, 1700000000 + step / 8)
    want[#want + 1] = { tag = 'loss/train', step = step, value = f32(v), wall_time = 1700000000 + step / 8 }
    if step % 10 == 0 then
      w:add_scalar('lr', 3e-4, step, 1700000000.5 + step)
      want[#want + 1] = { tag = 'lr', step = step, value = f32(3e-4), wall_time = 1700000000.5 + step }
    end
  end
  w:add_scalar('big', 1 / 0, 2 ^ 40, 1)
  want[#want + 1] = { tag = 'big', step = 2 ^ 40, value = 1 / 0, wall_time = 1 }
  w:add_scalar('neg', -0.25, -7, 2)
  want[#want + 1] = { tag = 'neg', step = -7, value = -0.25, wall_time = 2 }
  w:add_session_log('START', 12, 3)
  w:close()
  w:close()  -- twice is fine
  local ev = tb.read_events(path)
  T.eq(ev[1].file_version, 'brain.Event:2', 'the version event comes first')
  T.truthy(math.abs(ev[1].wall_time - tb.now()) < 60, 'its wall time is now')
  T.eq(#ev, 1 + #want + 1)
  for i, w1 in ipairs(want) do
    local e = ev[i + 1]
    T.eq(e.tag, w1.tag); T.eq(e.step, w1.step); T.eq(e.value, w1.value); T.eq(e.wall_time, w1.wall_time)
  end
  T.eq(ev[#ev].session_log, 'START'); T.eq(ev[#ev].step, 12)
  -- a NaN survives as a NaN
  local w2 = tb.EventWriter(tmp('nan'))
  w2:add_scalar('x', 0 / 0, 1)
  w2:close()
  local v = tb.read_events(tmp('nan'))[2].value
  T.truthy(v ~= v, 'NaN reads back as NaN')
  T.truthy(cleanup())
end)

T.test('EventWriter: bad arguments and unwritable paths are clear errors', function()
  local tmp, cleanup = T.scratch()
  local w = tb.EventWriter(tmp('e'))
  T.raises(function() w:add_scalar('', 1, 1) end, 'tag')
  T.raises(function() w:add_scalar('a', 'x', 1) end, 'must be a number')
  T.raises(function() w:add_scalar('a', 1, 1.5) end, 'step must be an integer')
  w:close()
  T.raises(function() w:add_scalar('a', 1, 1) end, 'is closed')
  T.raises(function() tb.EventWriter(tmp('no/such/dir/e')) end, 'cannot create')
  T.truthy(cleanup())
end)

T.test('event_file_name: TensorBoard-style names, fresh each time', function()
  local tmp, cleanup = T.scratch()
  local a = tb.event_file_name(tmp())
  T.truthy(a:match('/events%.out%.tfevents%.%d%d%d%d%d%d%d%d%d%d+%.[^/]+$'), a)
  tb.EventWriter(a):close()
  local b = tb.event_file_name(tmp())
  T.truthy(a ~= b)
  tb.EventWriter(b):close()
  T.eq(#tb.event_files(tmp()), 2)
  T.eq(tb.event_files(tmp())[1], a < b and a or b)
  T.truthy(cleanup())
end)

-- Byte offsets of the records in s.
local function record_offsets(s)
  local offs, pos = {}, 1
  while pos <= #s do
    offs[#offs + 1] = pos - 1
    local len = 0
    for i = 8, 1, -1 do len = len * 256 + s:byte(pos + i - 1) end
    pos = pos + 16 + len
  end
  return offs
end

T.test('read_events: a corrupted CRC is an error naming the file and offset', function()
  local tmp, cleanup = T.scratch()
  local path = tmp('events.out.tfevents.x')
  local w = tb.EventWriter(path)
  for s = 1, 5 do w:add_scalar('loss', s, s) end
  w:close()
  local good = T.read(path)
  local offs = record_offsets(good)
  T.eq(#offs, 6)
  -- flip a bit in the data of the fourth record
  local at = offs[4] + 14
  local bad = good:sub(1, at - 1) .. string.char((good:byte(at) + 1) % 256) .. good:sub(at + 1)
  T.write(tmp('bad1'), bad)
  local err = T.raises(function() tb.read_events(tmp('bad1')) end, 'data CRC mismatch')
  T.truthy(err:find(tmp('bad1'), 1, true), 'names the file: ' .. err)
  T.truthy(err:find('offset ' .. offs[4], 1, true), 'names the offset: ' .. err)
  -- a length byte changed: the length CRC catches it
  at = offs[3] + 1
  bad = good:sub(1, at - 1) .. string.char((good:byte(at) + 3) % 256) .. good:sub(at + 1)
  T.write(tmp('bad2'), bad)
  err = T.raises(function() tb.read_events(tmp('bad2')) end, 'length CRC mismatch')
  T.truthy(err:find('offset ' .. offs[3], 1, true), err)
  -- a stored data CRC changed
  at = #good
  bad = good:sub(1, at - 1) .. string.char((good:byte(at) + 1) % 256)
  T.write(tmp('bad3'), bad)
  T.raises(function() tb.read_events(tmp('bad3')) end, 'offset ' .. offs[6])
  -- a last record cut short: the events before it, and where it stopped
  T.write(tmp('cut'), good:sub(1, #good - 3))
  local ev = tb.read_events(tmp('cut'))
  T.eq(#ev, 5)
  T.eq(ev.truncated_at, offs[6])
  T.raises(function() tb.read_events(tmp('cut'), { strict = true }) end, 'offset ' .. offs[6] .. ' is truncated')
  -- valid framing around bytes that are not an Event
  T.write(tmp('junk'), good .. tb._record('\7\7\7'))
  T.raises(function() tb.read_events(tmp('junk')) end, 'not a valid Event')
  T.raises(function() tb.read_events(tmp('missing')) end, 'cannot open')
  T.truthy(cleanup())
end)

T.test('golden: an event file from PyTorch SummaryWriter reads with the expected scalars', function()
  local path = golden_dir .. '/events.out.tfevents.pytorch'
  T.truthy(T.exists(path), 'the committed golden file ' .. path)
  local want = json.read_file(golden_dir .. '/expected.json')
  local ev = tb.read_events(path, { strict = true })
  T.eq(ev[1].file_version, want.file_version)
  local scalars = {}
  for _, e in ipairs(ev) do if e.tag then scalars[#scalars + 1] = e end end
  T.eq(#scalars, #want.scalars, 'text and histogram summaries are skipped')
  local kinds = {}
  for i, w in ipairs(want.scalars) do
    local e = scalars[i]
    T.eq(e.tag, w.tag, 'scalar ' .. i)
    T.eq(e.step, w.step, 'scalar ' .. i .. ' step')
    T.eq(e.value, w.value, 'scalar ' .. i .. ' value')
    T.eq(e.wall_time, w.wall_time, 'scalar ' .. i .. ' wall_time')
    kinds[w.tag] = true
  end
  -- the three forms add_scalar writes are all there
  T.truthy(kinds['loss/train'] and kinds.lr and kinds['loss/eval'] and kinds.grad_norm)
end)

-- tide.json (decode through the engine's parser, encode in Lua, atomic file
-- writes) and tide.io's safetensors functions: round trips of every dtype,
-- views, metadata, the lazy file handle, and clear errors for bad input.
local T = require 'tide.testing'
local json = tide.json or require 'tide.json'
if not (tide.io and tide.io.load_safetensors) then require('tide.io.safetensors').install(tide) end
local tio = tide.io

local tmp, cleanup, tmpdir = T.scratch()
tmp()  -- made now: leftover_temps lists it
local read, write, exists = T.read, T.write, T.exists
local function leftover_temps(prefix)
  local p = io.popen('ls ' .. tmpdir)
  local n = 0
  for line in p:lines() do if line:find(prefix .. '.tmp-', 1, true) == 1 then n = n + 1 end end
  p:close()
  return n
end

-- json: decoding ---------------------------------------------------------------------

T.test('json.decode maps JSON values to Lua values', function()
  local v = json.decode(' {"a": [1, 2.5, -3e2, true, false, null], "b": {"c": "d"}, "e": [], "f": {}} ')
  T.same(v.a, { 1, 2.5, -300, true, false, json.null })
  T.eq(v.a[6], json.null)
  T.eq(tostring(json.null), 'null')
  T.eq(v.b.c, 'd')
  T.eq(#v.e, 0)
  T.eq(getmetatable(v.e), json.array_mt)
  T.eq(next(v.f), nil)
  T.eq(json.decode('"x"'), 'x')
  T.eq(json.decode('3'), 3)
  T.eq(json.decode('null'), json.null)
  T.eq(json.decode('{"k": 1, "k": 2}').k, 2)  -- the last repeat wins
  T.eq(1 / json.decode('-0'), -math.huge)
  T.eq(json.decode('9007199254740993'), 2 ^ 53)  -- doubles: rounded above 2^53
end)

T.test('json.decode strings: escapes, surrogate pairs, raw bytes', function()
  T.eq(json.decode([["\"\\\/\b\f\n\r\t"]]), '"\\/\b\f\n\r\t')
  T.eq(json.decode([["\u00e9\u20ac\ud83d\ude00"]]), '\195\169\226\130\172\240\159\152\128')
  T.eq(json.decode([["a\u0000b"]]), 'a\0b')
  T.eq(json.decode('"\255\254"'), '\255\254')  -- invalid UTF-8 stays as bytes
  T.eq(json.decode('{"\196\160the": 1}')['\196\160the'], 1)
end)

T.test('json.decode errors name the line, column and what was expected', function()
  T.raises(function() json.decode('{"a": 1,}') end, 'json: line 1, column 9: trailing comma')
  T.raises(function() json.decode('{\n  "a" 1\n}') end, 'line 2, column 7: expected \':\' after an object key, got \'1\'')
  T.raises(function() json.decode('[1, 2') end, "expected ',' or ']' after an array element, got end of input")
  T.raises(function() json.decode('NaN') end, 'expected a JSON value')
  T.raises(function() json.decode('1e400') end, 'out of the range of a double')
  T.raises(function() json.decode('"\\ud800"') end, 'lone high surrogate')
  T.raises(function() json.decode('{} x') end, "unexpected 'x' after the JSON value")
  T.raises(function() json.decode(('['):rep(600) .. (']'):rep(600)) end, 'nesting deeper than 512 levels')
  T.raises(function() json.decode(nil) end, 'json.decode: expected a string of JSON text, got nil')
  T.raises(function() json.decode('') end, 'got end of input')
end)

-- json: encoding ---------------------------------------------------------------------

T.test('json.encode: compact and indented text, sorted keys', function()
  local v = { b = 1, a = { true, false, json.null }, c = { d = 'x' }, e = {}, f = json.array() }
  T.eq(json.encode(v), '{"a":[true,false,null],"b":1,"c":{"d":"x"},"e":{},"f":[]}')
  -- the text Python's json.dumps(v, indent=2, sort_keys=True) gives
  T.eq(json.encode(v, { indent = 2 }), table.concat({
    '{',
    '  "a": [',
    '    true,',
    '    false,',
    '    null',
    '  ],',
    '  "b": 1,',
    '  "c": {',
    '    "d": "x"',
    '  },',
    '  "e": {},',
    '  "f": []',
    '}' }, '\n'))
  T.eq(json.encode({ 1, { 2 } }, { indent = '\t' }), '[\n\t1,\n\t[\n\t\t2\n\t]\n]')
  T.eq(json.encode({ 1, 2 }, { indent = 0 }), '[\n1,\n2\n]')
  local keys = json.encode({ z = 1, y = 2, x = 3 }, { sort_keys = false })
  T.eq(#keys, #'{"z":1,"y":2,"x":3}')
end)

T.test('json.encode numbers and strings', function()
  T.eq(json.encode({ 0, -0.0, 42, -7, 2 ^ 53 - 1, 0.1, 1 / 3, 1e300, 5e-324, 2 ^ 60 }),
       '[0,-0,42,-7,9007199254740991,0.1,0.3333333333333333,1e+300,4.94065645841247e-324,1.152921504606847e+18]')
  for _, x in ipairs { 0.1, 1 / 3, math.pi, 1e300, 5e-324, 2 ^ 60, -1.5e-7, 123456.789 } do
    T.eq(json.decode(json.encode(x)), x)
  end
  T.eq(json.encode('a"b\\c\n\t\1\31\127/'), '"a\\"b\\\\c\\n\\t\\u0001\\u001f\127/"')
  T.eq(json.encode('\195\169\255'), '"\195\169\255"')  -- bytes are written as they are
  -- any bytes survive encode then decode
  local rnd = T.lcg(7)
  for _ = 1, 50 do
    local parts = {}
    for i = 1, math.floor(rnd() * 40) do parts[i] = string.char(math.floor(rnd() * 256)) end
    local s = table.concat(parts)
    T.eq(json.decode(json.encode(s)), s)
  end
end)

T.test('json.encode rejects what JSON cannot hold, saying where', function()
  T.raises(function() json.encode({ a = { 0 / 0 } }) end, 'json.encode: value["a"][1] is nan')
  T.raises(function() json.encode(math.huge) end, 'the value is inf')
  T.raises(function() json.encode({ f = print }) end, 'value["f"] is a function')
  T.raises(function() json.encode({ 1, 2, x = 3 }) end, 'has the key 1 of type number; object keys must be strings')
  T.raises(function() json.encode({ [1] = 1, [3] = 3 }) end, 'keys 1..n with no holes')
  local cyc = {}
  cyc.self = cyc
  T.raises(function() json.encode(cyc) end, 'value["self"] contains itself')
  T.raises(function() json.encode({ t = tide.zeros(2) }) end, 'is a tensor; convert it with t:tolist()')
  T.raises(function() json.encode(1, { indent = -1 }) end, 'indent must be a non-negative integer')
end)

T.test('json round trip of a nested document and a 50k-entry vocab', function()
  local doc = {
    model = { type = 'BPE', vocab = { ['hello'] = 0, ['\196\160world'] = 1 }, merges = { 'h e', 'l l' } },
    added_tokens = { { id = 50256, content = '<|endoftext|>', special = true } },
    normalizer = json.null, list = json.array(),
  }
  for _, indent in ipairs { false, 2 } do
    local text = json.encode(doc, { indent = indent or nil })
    T.same(json.decode(text), doc)
    T.eq(json.encode(json.decode(text), { indent = indent or nil }), text)
  end
  local parts = {}
  for i = 0, 49999 do parts[#parts + 1] = ('"tok%d\\u0120": %d'):format(i, i) end
  local text = '{' .. table.concat(parts, ', ') .. '}'
  local t0 = tide.clock()
  local vocab = json.decode(text)
  local dt = tide.clock() - t0
  T.eq(vocab['tok49999\196\160'], 49999)
  T.eq(vocab['tok0\196\160'], 0)
  local n = 0
  for _ in pairs(vocab) do n = n + 1 end
  T.eq(n, 50000)
  -- not asserted: printed so a slow-down shows in verbose runs
  if os.getenv('TIDE_VERBOSE') then print(('decoded a %.1f MB vocab in %.1f ms'):format(#text / 1e6, dt * 1e3)) end
end)

T.test('json.read_file and json.write_file (atomic)', function()
  local p = tmp('config.json')
  json.write_file(p, { n_embd = 768, activation_function = 'gelu_new', architectures = { 'GPT2LMHeadModel' } })
  T.eq(read(p), '{\n  "activation_function": "gelu_new",\n  "architectures": [\n    "GPT2LMHeadModel"\n  ],\n  "n_embd": 768\n}\n')
  T.eq(json.read_file(p).n_embd, 768)
  json.write_file(p, { 1 }, { indent = false })
  T.eq(read(p), '[1]\n')
  write(tmp('bad.json'), '{\n "a": tru\n}')
  T.raises(function() json.read_file(tmp('bad.json')) end, tmp('bad.json') .. ': json: line 2, column 7: invalid literal (expected true)')
  T.raises(function() json.read_file(tmp('missing.json')) end, 'json.read_file: cannot open')
  -- a value that cannot be encoded leaves the old file alone
  T.raises(function() json.write_file(p, { bad = print }) end, 'is a function')
  T.eq(read(p), '[1]\n')
  -- a failed rename (a directory is in the way) leaves no temp file behind
  assert(os.execute('mkdir -p ' .. tmp('adir.json') .. ' && touch ' .. tmp('adir.json') .. '/keep') == 0)
  T.raises(function() json.write_file(tmp('adir.json'), {}) end, 'json.write_file: cannot rename')
  T.eq(leftover_temps('adir.json'), 0)
  T.raises(function() json.write_file(tmp('no/such/dir.json'), {}) end, 'cannot create')
  T.eq(leftover_temps('config.json'), 0)
end)

-- safetensors --------------------------------------------------------------------------

local dtypes = { 'f32', 'f64', 'bf16', 'f16', 'i32', 'i64', 'u8', 'bool', 'u16' }

T.test('safetensors round trip: every dtype, 0-d, empty and strided tensors', function()
  local src = {}
  for _, dt in ipairs(dtypes) do
    local base = dt == 'bool' and tide.tensor({ true, false, true, true, false, false })
                 or tide.tensor({ 1, 2, 3, 4, 5, 250 }, { dtype = dt })
    src['m.' .. dt] = base:view(2, 3)
    src['t.' .. dt] = base:view(2, 3):t()  -- not contiguous
    src['s.' .. dt] = tide.tensor(7, { dtype = dt == 'bool' and 'bool' or dt })
    src['e.' .. dt] = tide.zeros(0, 4, { dtype = dt })
  end
  local p = tmp('all.safetensors')
  tio.save_safetensors(p, src, { format = 'pt' })
  local got, names, meta = tio.load_safetensors(p)
  T.same(meta, { format = 'pt' })
  T.eq(#names, 36)
  for name, t in pairs(src) do
    local g = got[name]
    T.truthy(g, 'missing ' .. name)
    T.eq(g:dtype(), t:dtype(), name)
    T.same(g:shape(), t:shape(), name)
    T.same(g:tolist(), t:tolist(), name)
    T.truthy(g:is_contiguous())
  end
  -- names come in file order: larger elements first, then by name
  T.eq(names[1], 'e.i64')
  T.eq(names[#names], 't.bool')
end)

T.test('safetensors: list form, no metadata, the lazy file handle', function()
  local p = tmp('list.safetensors')
  local w = tide.arange(12, { dtype = 'f32' }):view(3, 4)
  tio.save_safetensors(p, { { 'b.weight', w }, { 'a.bias', tide.ones(4, { dtype = 'f64' }) } })
  local f = tio.open_safetensors(p)
  T.same(f:names(), { 'a.bias', 'b.weight' })  -- f64 before f32
  T.same(f:info('b.weight'), { dtype = 'f32', shape = { 3, 4 } })
  T.same(f:load('b.weight'):tolist(), w:tolist())
  T.same(f:metadata(), {})
  T.raises(function() f:load('c') end, 'load: no tensor named c in ' .. p .. ' (2 tensors)')
  f:close()
  f:close()
  T.raises(function() f:load('a.bias') end, 'is closed')
  local empty = tmp('empty.safetensors')
  tio.save_safetensors(empty, {}, {})
  local t, names, meta = tio.load_safetensors(empty)
  T.eq(next(t), nil)
  T.same(names, {})
  T.same(meta, {})
end)

T.test('safetensors: a file written by hand in the format loads', function()
  local hdr = '{"__metadata__":{"format":"pt"},"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
  local len = #hdr
  local le = string.char(len % 256, math.floor(len / 256), 0, 0, 0, 0, 0, 0)
  write(tmp('hand.safetensors'), le .. hdr .. '\0\0\128\63\0\0\0\192')  -- 1.0, -2.0
  local t, names, meta = tio.load_safetensors(tmp('hand.safetensors'))
  T.same(t.x:tolist(), { 1, -2 })
  T.same(names, { 'x' })
  T.eq(meta.format, 'pt')
  -- tide writes the same bytes back, padded to 8
  tio.save_safetensors(tmp('hand2.safetensors'), t, meta)
  local pad = (8 - len % 8) % 8
  T.eq(read(tmp('hand2.safetensors')), string.char(len + pad, 0, 0, 0, 0, 0, 0, 0) .. hdr .. (' '):rep(pad) .. '\0\0\128\63\0\0\0\192')
end)

T.test('safetensors: malformed files and bad arguments are clear errors', function()
  local p = tmp('good.safetensors')
  tio.save_safetensors(p, { w = tide.ones(3) })
  local bytes = read(p)
  for _, cut in ipairs { 0, 5, 8, 20, #bytes - 1 } do
    write(tmp('cut.safetensors'), bytes:sub(1, cut))
    local err = T.raises(function() tio.load_safetensors(tmp('cut.safetensors')) end, 'safetensors: ' .. tmp('cut.safetensors'))
    T.truthy(err:find('truncated', 1, true), err)
  end
  write(tmp('huge.safetensors'), '\255\255\255\255\0\0\0\0{}')
  T.raises(function() tio.load_safetensors(tmp('huge.safetensors')) end, 'header length 4294967295 is over the 100000000-byte limit')
  write(tmp('json.safetensors'), '\8\0\0\0\0\0\0\0{"a":1 }')
  T.raises(function() tio.load_safetensors(tmp('json.safetensors')) end, 'expected an object with dtype, shape and data_offsets')
  local i8 = '{"a":{"dtype":"I8","shape":[1],"data_offsets":[0,1]}}'
  write(tmp('i8.safetensors'), string.char(#i8) .. ('\0'):rep(7) .. i8 .. '\1')
  T.raises(function() tio.load_safetensors(tmp('i8.safetensors')) end, 'unsupported dtype I8 in tensor "a"')
  T.raises(function() tio.load_safetensors(tmp('nope.safetensors')) end, 'cannot open')
  T.raises(function() tio.load_safetensors(nil) end, 'load_safetensors: expected a path string, got nil')
  T.raises(function() tio.save_safetensors(p, { w = 3 }) end, '"w" must map to a tensor, got number')
  T.raises(function() tio.save_safetensors(p, { [1] = tide.ones(1) }) end, 'tensor names must be strings')
  T.raises(function() tio.save_safetensors(p, { { 'a', tide.ones(1) }, { 'a', tide.ones(2) } }) end, 'duplicate tensor name "a"')
  T.raises(function() tio.save_safetensors(p, { { 'a' } }) end, 'entry 1 of the list must be a { name, tensor } pair')
  T.raises(function() tio.save_safetensors(p, { w = tide.ones(1) }, { format = 1 }) end, 'metadata must map strings to strings')
  T.raises(function() tio.save_safetensors(p, tide.ones(1)) end, 'expected a table of name = tensor, got a tensor')
  T.raises(function() tio.save_safetensors(tmp('no/dir/x.safetensors'), { w = tide.ones(1) }) end, 'cannot create')
  -- names: a NUL would be cut short in C; empty, too long, duplicate: all refused before writing
  T.raises(function() tio.save_safetensors(p, { ['a\0b'] = tide.ones(1) }) end,
    'tensor name "a\\0b" holds a NUL byte at position 2')
  T.raises(function() tio.save_safetensors(p, { { 'w', tide.ones(1) }, { 'x\0', tide.ones(1) } }) end, 'holds a NUL byte')
  T.raises(function() tio.save_safetensors(p, { [''] = tide.ones(1) }) end, 'tensor 1 has an empty name')
  -- paths: a NUL would cut the path short in C; '' is no file
  T.raises(function() tio.save_safetensors(p .. '\0.x', { w = tide.ones(1) }) end, 'save_safetensors: the path "' .. p .. '\\0.x" holds a NUL byte')
  T.raises(function() tio.load_safetensors(p .. '\0') end, 'holds a NUL byte')
  T.raises(function() tio.open_safetensors('') end, 'open_safetensors: the path is empty')
  T.raises(function() tio.save_safetensors('', { w = tide.ones(1) }) end, 'save_safetensors: the path is empty')
  T.raises(function() tio.save_safetensors(p, { [('n'):rep(100000001)] = tide.ones(1) }) end,
    'is 100000001 bytes, over the 100000000')
  T.raises(function() tio.save_safetensors(p, { { 'b', tide.ones(1) }, { 'a', tide.ones(2) }, { 'b', tide.ones(2) } }) end,
    'duplicate tensor name "b" (entries 1 and 3)')
  -- none of the failed saves touched the good file or left a temp file
  T.eq(read(p), bytes)
  T.eq(leftover_temps('good.safetensors'), 0)
end)

T.test('cleanup', function()
  T.truthy(cleanup(), tmpdir)
end)

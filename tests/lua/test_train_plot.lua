-- tide.train.plot: the SVG is well-formed XML, its polylines are the metrics
-- (mapped back through the scale the SVG states), runs get legend entries,
-- NaN/inf are left out, and bad or missing metrics files give clear errors.
local T = require 'tide.testing'
local plot = require 'tide.train.plot'

local function quiet() return { write = function() end } end

-- A well-formedness check of the XML the plotter writes: tags nest and
-- close, attributes are quoted and unique, entities are the five XML ones or
-- character references, text holds no raw '<' or '&'. Returns the elements
-- as { name=, attrs= } in document order.
local function parse_xml(s)
  local elements, stack = {}, {}
  local pos = 1
  local decl = s:match('^<%?xml[^?]*%?>()')
  if decl then pos = decl end
  local function check_text(t, where)
    for ent in t:gmatch('&([^;]*);?') do
      if not (ent == 'amp' or ent == 'lt' or ent == 'gt' or ent == 'quot' or ent == 'apos'
              or ent:match('^#%d+$') or ent:match('^#x%x+$')) then
        error(('bad entity &%s in %s'):format(ent, where))
      end
    end
    local i = t:find('&', 1, true)
    while i do
      if not t:find('^&[#%w]+;', i) then error('raw & in ' .. where) end
      i = t:find('&', i + 1, true)
    end
  end
  while pos <= #s do
    local lt = s:find('<', pos, true)
    if not lt then
      T.truthy(s:sub(pos):match('^%s*$'), 'text after the root element')
      break
    end
    local text = s:sub(pos, lt - 1)
    if #stack == 0 then T.truthy(text:match('^%s*$'), 'text outside the root element: ' .. text) end
    check_text(text, 'text')
    local gt = s:find('>', lt, true)
    if not gt then error('unclosed tag at byte ' .. lt) end
    local tag = s:sub(lt + 1, gt - 1)
    if tag:sub(1, 1) == '/' then
      local name = tag:match('^/([%w:_%-%.]+)%s*$')
      if not name then error('bad end tag <' .. tag .. '>') end
      local open = table.remove(stack)
      if open ~= name then error(('</%s> closes <%s>'):format(name, tostring(open))) end
    elseif tag:sub(1, 3) == '!--' then
      gt = s:find('-->', lt, true) + 2
    else
      local selfclose = tag:sub(-1) == '/'
      if selfclose then tag = tag:sub(1, -2) end
      local name, rest = tag:match('^([%a_][%w:_%-%.]*)(.*)$')
      if not name then error('bad tag <' .. tag .. '>') end
      if #elements > 0 and #stack == 0 then error('a second root element <' .. name .. '>') end
      local attrs = {}
      rest = rest:gsub('%s*([%a_][%w:_%-%.]*)%s*=%s*"([^"<]*)"', function(k, v)
        if attrs[k] then error(('attribute %s repeated in <%s>'):format(k, name)) end
        check_text(v, 'attribute ' .. k)
        attrs[k] = v
        return ''
      end)
      if not rest:match('^%s*$') then error(('unparsed attribute text in <%s>: %s'):format(name, rest)) end
      elements[#elements + 1] = { name = name, attrs = attrs }
      if not selfclose then stack[#stack + 1] = name end
    end
    pos = gt + 1
  end
  if #stack > 0 then error('unclosed <' .. stack[#stack] .. '>') end
  return elements
end

-- Writes a run directory with metrics.jsonl made of the given lines.
local function make_run(tmp, name, lines, no_final_newline)
  local files = require 'tide.data.files'
  local dir = tmp(name)
  files.mkdir_p(dir, 'run')
  T.write(dir .. '/metrics.jsonl', table.concat(lines, '\n') .. (no_final_newline and '' or '\n'))
  return dir
end

-- A synthetic run: train loss decaying with a wiggle every step from 0 to
-- n-1 (every `every` steps), lr with warmup then linear decay, eval loss
-- every 5 logs, tokens/s around 12000.
local function synthetic(n, every, offset)
  local lines, want = {}, { train = {}, eval = {}, lr = {}, tps = {} }
  offset = offset or 0
  for i = 0, n - 1 do
    local step = i * every
    local loss = 3 + 8 * math.exp(-i / 15) + 0.3 * math.sin(i * 1.7) + offset
    local lr = (i < 5 and (i + 1) / 5 or (n - i) / (n - 5)) * 6e-4
    local tps = 12000 + 800 * math.cos(i)
    lines[#lines + 1] = ('{"step":%d,"time":%.3f,"loss/train":%.17g,"lr":%.17g,"tokens_per_s":%.17g}')
      :format(step, 1e9 + i, loss, lr, tps)
    want.train[#want.train + 1] = { step, loss }
    want.lr[#want.lr + 1] = { step, lr }
    want.tps[#want.tps + 1] = { step, tps }
    if i % 5 == 4 then
      local el = loss + 0.2
      lines[#lines + 1] = ('{"step":%d,"time":%.3f,"loss/eval":%.17g,"perplexity":%.17g}'):format(
        step, 1e9 + i + 0.5, el, math.exp(el))
      want.eval[#want.eval + 1] = { step, el }
    end
  end
  return lines, want
end

-- The points of a polyline, mapped back through its plot area's scale.
local function back_mapped(area, poly)
  local a = area.attrs
  local x0, y0, w, h = tonumber(a['data-x0']), tonumber(a['data-y0']), tonumber(a['data-width']),
    tonumber(a['data-height'])
  local xmin, xmax, ymin, ymax = tonumber(a['data-xmin']), tonumber(a['data-xmax']), tonumber(a['data-ymin']),
    tonumber(a['data-ymax'])
  local pts = {}
  for xs, ys in poly.attrs.points:gmatch('([-%d.]+),([-%d.]+)') do
    local px, py = tonumber(xs), tonumber(ys)
    pts[#pts + 1] = { xmin + (px - x0) / w * (xmax - xmin), ymin + (y0 + h - py) / h * (ymax - ymin),
                      tol_x = 0.006 / w * (xmax - xmin), tol_y = 0.006 / h * (ymax - ymin) }
  end
  return pts
end

-- The panels of a parsed SVG: metric -> { area = element, polylines = {...}, circles = n, skipped = element }
local function panels(elements)
  local out, cur = {}, nil
  for _, e in ipairs(elements) do
    if e.name == 'g' and e.attrs.class == 'panel' then
      cur = { polylines = {}, circles = 0 }
      out[e.attrs['data-metric']] = cur
    elseif cur and e.name == 'g' and e.attrs.class == 'plot-area' then cur.area = e
    elseif cur and e.name == 'polyline' then cur.polylines[#cur.polylines + 1] = e
    elseif cur and e.name == 'circle' then cur.circles = cur.circles + 1
    elseif cur and e.name == 'text' and e.attrs.class == 'skipped' then cur.skipped = e
    end
  end
  return out
end

local function find_poly(panel, run, cls)
  for _, p in ipairs(panel.polylines) do
    if p.attrs['data-run'] == run and p.attrs.class == cls then return p end
  end
end

local function check_points(got, want, what)
  T.eq(#got, #want, what .. ': number of points')
  for i, w in ipairs(want) do
    local g = got[i]
    if math.abs(g[1] - w[1]) > g.tol_x or math.abs(g[2] - w[2]) > g.tol_y then
      error(('%s: point %d maps back to (%.9g, %.9g), the metrics say (%.9g, %.9g)'):format(
        what, i, g[1], g[2], w[1], w[2]))
    end
  end
end

T.test('polylines map back to the metrics of a synthetic run', function()
  local tmp, cleanup = T.scratch()
  local lines, want = synthetic(40, 10)
  local run = make_run(tmp, 'run-a', lines)
  local path = plot.plot({ run }, { warn = quiet() })
  T.eq(path, run .. '/plot.svg')
  local svg = T.read(path)
  local els = parse_xml(svg)
  T.eq(els[1].name, 'svg')
  local p = panels(els)
  check_points(back_mapped(p['loss/train'].area, find_poly(p['loss/train'], 'run-a', 'raw')), want.train, 'train raw')
  check_points(back_mapped(p['loss/train'].area, find_poly(p['loss/train'], 'run-a', 'smoothed')),
    plot._ema(want.train, 0.6), 'train smoothed')
  check_points(back_mapped(p['loss/eval'].area, find_poly(p['loss/eval'], 'run-a', 'raw')), want.eval, 'eval')
  T.eq(p['loss/eval'].circles, #want.eval, 'one marker per eval point')
  check_points(back_mapped(p.lr.area, find_poly(p.lr, 'run-a', 'raw')), want.lr, 'lr')
  check_points(back_mapped(p.tokens_per_s.area, find_poly(p.tokens_per_s, 'run-a', 'raw')), want.tps, 'tokens/s')
  -- the axes: ticks are labelled, and the x axis starts at 0 and covers the last step
  local xmax = tonumber(p.lr.area.attrs['data-xmax'])
  T.truthy(xmax >= 390 and xmax < 600, 'x range ' .. xmax)
  T.truthy(svg:find('>step</text>', 1, true), 'x axis label')
  T.truthy(svg:find('>Train loss</text>', 1, true) and svg:find('>Learning rate</text>', 1, true), 'titles')
  T.truthy(svg:find('>6</text>', 1, true) and svg:find('lr (\195\1511e-4)', 1, true), 'lr ticks in units of 1e-4')
  T.truthy(cleanup())
end)

T.test('smoothing is TensorBoard\'s debiased EMA', function()
  local s = plot._ema({ { 0, 1 }, { 1, 1 }, { 2, 1 } }, 0.6)
  for _, p in ipairs(s) do T.truthy(math.abs(p[2] - 1) < 1e-12, 'a constant stays constant: ' .. p[2]) end
  s = plot._ema({ { 0, 0 }, { 1, 10 } }, 0.6)
  T.eq(s[1][2], 0)
  T.truthy(math.abs(s[2][2] - 10 * 0.4 / (1 - 0.36)) < 1e-12)
  T.eq(plot._ema({ { 0, 3 } }, 0)[1][2], 3)
end)

T.test('two runs: two legend entries, two colours, one shared scale', function()
  local tmp, cleanup = T.scratch()
  local la = synthetic(30, 10)
  local lb, want_b = synthetic(20, 10, 0.5)
  local a = make_run(tmp, 'a/run', la)
  local b = make_run(tmp, 'b/run', lb)
  local out = tmp('cmp.svg')
  T.eq(plot.plot({ a, b }, { out = out, warn = quiet() }), out)
  local els = parse_xml(T.read(out))
  local entries, colors = {}, {}
  for _, e in ipairs(els) do
    if e.name == 'g' and e.attrs.class == 'legend-entry' then entries[#entries + 1] = e.attrs['data-run'] end
  end
  T.same(entries, { 'a/run', 'b/run' }, 'labels grow until the runs differ')
  local p = panels(els)
  local ra, rb = find_poly(p['loss/train'], 'a/run', 'raw'), find_poly(p['loss/train'], 'b/run', 'raw')
  T.truthy(ra and rb, 'a raw curve per run')
  T.truthy(ra.attrs.stroke ~= rb.attrs.stroke, 'distinct colours')
  check_points(back_mapped(p['loss/train'].area, rb), want_b.train, 'run b')
  T.truthy(cleanup())
end)

T.test('NaN and inf are left out, and counted', function()
  local tmp, cleanup = T.scratch()
  local run = make_run(tmp, 'bad-values', {
    '{"step":0,"loss/train":5,"lr":0.001}',
    '{"step":1,"loss/train":null,"lr":0.001}',
    '{"step":2,"loss/train":"nan","lr":0.001}',
    '{"step":3,"loss/train":NaN,"lr":Infinity}',
    '{"step":4,"loss/train":"-inf","lr":0.001}',
    '{"step":5,"loss/train":4,"lr":0.001}',
    '{"step":6,"loss/train":1e308,"lr":0.001,"tokens_per_s":-Infinity}',
  })
  local path = plot.plot({ run }, { smoothing = 0, warn = quiet() })
  local svg = T.read(path)
  T.truthy(not svg:lower():find('nan', 1, true) and not svg:lower():find('inf', 1, true), 'no nan/inf text in the SVG')
  local p = panels(parse_xml(svg))
  local pts = back_mapped(p['loss/train'].area, find_poly(p['loss/train'], 'bad-values', 'raw'))
  T.eq(#pts, 3, 'steps 0, 5 and 6 drawn')
  T.eq(p['loss/train'].skipped ~= nil, true, 'the panel says values were skipped')
  T.truthy(svg:find('4 non-finite values not drawn', 1, true))
  T.truthy(svg:find('1 non-finite value not drawn', 1, true), 'lr')
  T.truthy(svg:find('no tokens_per_s values in this run', 1, true), 'an all-nonfinite series is an empty panel')
  for _, e in ipairs(parse_xml(svg)) do
    for k, v in pairs(e.attrs) do
      T.truthy(not v:find('nan') and not v:find('inf'), k .. '=' .. v)
    end
  end
  T.truthy(cleanup())
end)

T.test('a truncated last line is tolerated; malformed lines are named', function()
  local tmp, cleanup = T.scratch()
  local run = make_run(tmp, 'cut', {
    '{"step":0,"loss/train":5}',
    '{"step":1,"loss/train":4.5',
    '[1,2]',
    '{"loss/train":4}',
    '',
    '{"step":4,"loss/train":4}',
    '{"step":5,"loss/tr',
  }, true)
  local out, notes = plot.plot({ run }, { warn = quiet() })
  T.truthy(T.exists(out))
  local f = run .. '/metrics.jsonl'
  T.eq(#notes, 4, table.concat(notes, '\n'))
  T.truthy(notes[1]:find(f .. ':2: malformed JSON', 1, true), notes[1])
  T.truthy(notes[2]:find(f .. ':3: not a JSON object', 1, true), notes[2])
  T.truthy(notes[3]:find(f .. ':4: no numeric "step"', 1, true), notes[3])
  T.truthy(notes[4]:find(f .. ':7: skipped the truncated last line', 1, true), notes[4])
  T.raises(function() plot.plot({ run }, { strict = true, warn = quiet() }) end, f .. ':2: malformed JSON')
  -- the same line with its newline is no truncation: it is malformed
  T.write(f, '{"step":0,"loss/train":5}\n{"step":5,"loss/tr\n')
  local _, n2 = plot.plot({ run }, { warn = quiet() })
  T.truthy(n2[1]:find(':2: malformed JSON', 1, true), n2[1])
  T.truthy(cleanup())
end)

T.test('missing, empty and useless metrics are clear errors', function()
  local tmp, cleanup = T.scratch()
  local files = require 'tide.data.files'
  files.mkdir_p(tmp('empty'), 'run')
  T.raises(function() plot.plot({ tmp('nothere') }) end, tmp('nothere') .. '/metrics.jsonl: cannot read the metrics')
  T.raises(function() plot.plot({ tmp('empty') }) end, tmp('empty') .. '/metrics.jsonl: cannot read')
  T.write(tmp('empty/metrics.jsonl'), '')
  T.raises(function() plot.plot({ tmp('empty') }) end, 'metrics.jsonl: the metrics file is empty')
  T.write(tmp('empty/metrics.jsonl'), 'garbage\n')
  T.raises(function() plot.plot({ tmp('empty') }, { warn = quiet() }) end, 'no metrics records in the file')
  T.write(tmp('empty/metrics.jsonl'), '{"step":1,"samples":8}\n')
  T.raises(function() plot.plot({ tmp('empty') }) end, 'no finite loss/train, loss/eval, lr or tokens_per_s')
  T.raises(function() plot.plot({}) end, 'expected a list of run directories')
  local ok = make_run(tmp, 'ok', synthetic(5, 1))
  T.raises(function() plot.plot({ ok, tmp('nothere') }) end, 'nothere/metrics.jsonl')
  T.raises(function() plot.plot({ ok }, { out = tmp('no/such/dir/p.svg') }) end, 'cannot write')
  T.raises(function() plot.plot({ ok }, { smoothing = 1 }) end, 'smoothing')
  T.truthy(cleanup())
end)

T.test('a resumed run: the later records of a step replace the abandoned tail', function()
  local tmp, cleanup = T.scratch()
  -- killed after step 30 (and its eval), resumed from a checkpoint at step 10
  local run = make_run(tmp, 'resumed', {
    '{"step":10,"loss/train":5,"lr":1}', '{"step":20,"loss/train":4.2,"lr":1}', '{"step":30,"loss/train":3.9}',
    '{"step":30,"loss/eval":4.4}',
    '{"step":20,"loss/train":4}', '{"step":30,"loss/train":3.5}', '{"step":30,"loss/train":3.4}',
    '{"step":40,"loss/train":3}',
  })
  local svg = T.read(plot.plot({ run }, { smoothing = 0, warn = quiet() }))
  local p = panels(parse_xml(svg))
  check_points(back_mapped(p['loss/train'].area, find_poly(p['loss/train'], 'resumed', 'raw')),
    { { 10, 5 }, { 20, 4 }, { 30, 3.4 }, { 40, 3 } }, 'resumed')
  T.truthy(svg:find('no loss/eval values in this run', 1, true), 'the abandoned eval is dropped')
  T.eq(p.lr.circles, 1, 'lr kept its step-10 point (a lone point, drawn as a marker)')
  T.truthy(cleanup())
end)

T.test('a long run is thinned to the pixel columns, keeping its extremes', function()
  local tmp, cleanup = T.scratch()
  local lines = {}
  for i = 0, 19999 do
    local v = 3 + math.sin(i / 100)
    if i == 12345 then v = 9 end  -- a spike must survive
    lines[#lines + 1] = ('{"step":%d,"loss/train":%.17g}'):format(i, v)
  end
  local run = make_run(tmp, 'long', lines)
  local p = panels(parse_xml(T.read(plot.plot({ run }, { smoothing = 0, warn = quiet() }))))
  local pts = back_mapped(p['loss/train'].area, find_poly(p['loss/train'], 'long', 'raw'))
  T.truthy(#pts < 4 * 600 and #pts > 500, #pts .. ' points')
  local top = -math.huge
  for _, q in ipairs(pts) do top = math.max(top, q[2]) end
  T.truthy(math.abs(top - 9) < 0.01, 'the spike is drawn: ' .. top)
  T.truthy(cleanup())
end)

T.test('nice ticks and their labels', function()
  local lo, hi, step = plot._nice_ticks(3.1, 10.9, 5)
  T.eq(lo, 2); T.eq(hi, 12); T.eq(step, 2)
  lo, hi, step = plot._nice_ticks(0, 6.1e-4, 5)
  T.eq(step, 1e-4); T.truthy(math.abs(hi - 7e-4) < 1e-15)
  local label, unit = plot._format_tick(2e-4, 1e-4, 7e-4)
  T.eq(label, '2'); T.eq(unit, '\195\1511e-4')
  label, unit = plot._format_tick(1.4e-3, 2e-4, 1.4e-3)
  T.eq(label, '1.4'); T.eq(unit, '\195\1511e-3')
  T.eq(plot._format_tick(1.5e-4, 5e-5, 7e-4), '1.5')
  T.eq(plot._format_tick(0.25, 0.05, 1), '0.25')
  T.eq(plot._format_tick(12000, 1000, 14000), '12k')
  T.eq(plot._format_tick(12500, 500, 14000), '12.5k')
  T.eq(plot._format_tick(0, 1000, 14000), '0')
  T.eq(plot._format_tick(400, 100, 500), '400')
  lo, hi, step = plot._nice_ticks(0, 3, 6, 1)
  T.eq(step, 1, 'steps are whole: no 0.5 ticks')
  lo, hi = plot._nice_ticks(5, 5)
  T.truthy(lo < 5 and hi > 5, 'a constant gets a range')
end)

T.test('the SVG parses with python3 xml.etree', function()
  local p = io.popen('command -v python3 2>/dev/null')
  local py = p:read('*l')
  p:close()
  if not py or py == '' then T.skip('skipped: no python3') end
  local tmp, cleanup = T.scratch()
  local a = make_run(tmp, 'x&y <run>', synthetic(30, 10))
  local out = plot.plot({ a, make_run(tmp, 'other', synthetic(10, 10)) }, { out = tmp('p.svg'), warn = quiet() })
  local cmd = ([[python3 -c "import sys, xml.etree.ElementTree as E; r = E.parse(sys.argv[1]).getroot(); ]]
    .. [[ns = '{http://www.w3.org/2000/svg}'; assert r.tag == ns + 'svg', r.tag; ]]
    .. [[print(len(r.findall('.//' + ns + 'polyline')))" '%s' 2>&1]]):format(out)
  local h = io.popen(cmd)
  local res = h:read('*a')
  h:close()
  T.eq(res, '12\n', 'python3 parsed it; 6 polylines a run: ' .. res)
  T.truthy(T.read(out):find('x&amp;y &lt;run&gt;', 1, true), 'names are escaped')
  T.truthy(cleanup())
end)

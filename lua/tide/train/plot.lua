-- tide.train.plot: one SVG of a run's (or several runs') training curves.
--
--   local path = tide.train.plot({ 'runs/a', 'runs/b' }, { out = 'cmp.svg' })
--   $ tide plot runs/a runs/b --out=cmp.svg
--
-- Each RUN is a run directory holding metrics.jsonl (one JSON object per
-- line, as tide.train.Logger writes it: step, time, loss/train, loss/eval,
-- lr, tokens_per_s, ...) or the path of such a .jsonl file. The SVG has four
-- panels sharing the step axis: train loss (raw, faint, and smoothed with
-- TensorBoard's debiased exponential moving average, weight 0.6 by default),
-- eval loss (markers and line), learning rate, and tokens/s (raw and
-- smoothed like the train loss, since it is as noisy). Runs are overlaid
-- in distinct colours and named in a legend. The file is plain SVG 1.1 that
-- browsers and rsvg-convert show as it is.
--
-- Reading is forgiving where a run's life makes it so, and loud elsewhere:
--   * a truncated last line (a run killed in the middle of a write) is
--     skipped with a note;
--   * a malformed line elsewhere is skipped with a warning naming the file
--     and line (opts.strict = true makes it an error);
--   * NaN and infinite values (written as null, "nan", "inf" or the bare
--     non-JSON tokens NaN/Infinity) are not drawn; each panel says how many
--     it skipped;
--   * after a resume the run appends again from its checkpoint's step, so a
--     step lower than one before it drops the records at or after that step
--     (the abandoned tail, in every panel; read_metrics does the same), and
--     a metric logged twice at one step keeps the later value;
--   * a missing or empty metrics file, or runs with nothing to plot, are
--     errors that name the file.
local json = require 'tide.json'

local M = {}
-- Only plot is public (tide.train copies it); the helpers behind it are
-- reached as _read_jsonl, _ema, _nice_ticks, _format_tick (for tests) and
-- _main (the `tide plot` command).

-- the panels, in reading order (two columns); names are tried in order, so
-- the Hugging Face Trainer's names work as well as tide's
local PANELS = {
  { names = { 'loss/train', 'train_loss', 'loss' }, title = 'Train loss', ylabel = 'loss', smooth = true },
  { names = { 'loss/eval', 'eval_loss', 'eval/loss' }, title = 'Eval loss', ylabel = 'loss', markers = true },
  { names = { 'lr', 'learning_rate' }, title = 'Learning rate', ylabel = 'lr' },
  { names = { 'tokens_per_s', 'tokens/s', 'train_tokens_per_second' }, title = 'Throughput', ylabel = 'tokens/s',
    smooth = true },
}

-- Tableau's ten colours: distinct, and readable on white
local COLORS = { '#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd',
                 '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf' }

local function finite(x) return type(x) == 'number' and x == x and x ~= math.huge and x ~= -math.huge end

-- reading ---------------------------------------------------------------------

local NONFINITE = { nan = 0 / 0, ['-nan'] = 0 / 0, inf = math.huge, ['+inf'] = math.huge, ['-inf'] = -math.huge,
                    infinity = math.huge, ['+infinity'] = math.huge, ['-infinity'] = -math.huge }

-- A metric's value as a number: NaN for null and the spellings of NaN/inf
-- that writers use for values JSON cannot hold; nil when it is no number.
local function value_of(v)
  if type(v) == 'number' then return v end
  if v == json.null then return 0 / 0 end
  if type(v) == 'string' then return NONFINITE[v:lower()] end
  return nil
end

-- Python's json.dumps writes NaN, Infinity and -Infinity bare; they are not
-- JSON, so such a line is retried with them quoted (only where a value
-- starts, so no string is touched that a valid parse would have kept).
local function decode_lenient(line)
  local ok, v = pcall(json.decode, line)
  if ok then return true, v end
  local fixed, n = line:gsub('([:%[,]%s*)(%-?)(%a+)', function(pre, sign, word)
    local w = word:lower()
    if w == 'nan' or w == 'infinity' or w == 'inf' then return pre .. '"' .. sign .. word .. '"' end
  end)
  if n > 0 then
    local ok2, v2 = pcall(json.decode, fixed)
    if ok2 then return true, v2 end
  end
  return false, tostring(v):gsub('^json: ', '')
end

-- The metrics file of a run: RUN/metrics.jsonl, or RUN itself when it names a file.
local function metrics_path(run)
  if run:match('%.jsonl$') then return run end
  return (run:gsub('/+$', '')) .. '/metrics.jsonl'
end

-- Reads a metrics.jsonl file. Returns the records (tables with a numeric
-- step, in file order) and a list of notes (strings "FILE:LINE: ...").
-- opts.strict: malformed lines are errors instead of notes.
function M._read_jsonl(path, opts)
  opts = opts or {}
  local f, err = io.open(path, 'rb')
  if not f then
    error(('%s: cannot read the metrics (%s)'):format(path, tostring(err):gsub('^[^:]*: ', '')), 2)
  end
  local text = f:read('*a')
  f:close()
  if text:match('^%s*$') then error(path .. ': the metrics file is empty: nothing to plot yet', 2) end
  local records, notes = {}, {}
  local lineno, pos = 0, 1
  while pos <= #text do
    local nl = text:find('\n', pos, true)
    local line = text:sub(pos, (nl or #text + 1) - 1)
    lineno = lineno + 1
    pos = (nl or #text) + 1
    if not line:match('^%s*$') then
      local ok, v = decode_lenient(line)
      local why
      if not ok then why = 'malformed JSON (' .. v .. ')'
      elseif type(v) ~= 'table' or getmetatable(v) == json.array_mt then why = 'not a JSON object'
      elseif not finite(v.step) then why = 'no numeric "step"'
      end
      if why and not nl then
        -- the last line, without its newline: the writer was stopped mid-line
        notes[#notes + 1] = ('%s:%d: skipped the truncated last line (the run was stopped while writing it)')
          :format(path, lineno)
      elseif why then
        local msg = ('%s:%d: %s'):format(path, lineno, why)
        if opts.strict then error(msg, 2) end
        notes[#notes + 1] = msg .. '; line skipped'
      else
        records[#records + 1] = v
      end
    end
  end
  if #records == 0 then error(path .. ': no metrics records in the file (every line was skipped)', 2) end
  return records, notes
end

-- The records without the tails that resumed runs abandoned: a step lower
-- than the highest before it drops the earlier records at or after it.
local function drop_abandoned(records)
  local out, max_step = {}, -math.huge
  for _, r in ipairs(records) do
    if r.step < max_step then
      local kept = {}
      for _, q in ipairs(out) do
        if q.step < r.step then kept[#kept + 1] = q end
      end
      out = kept
    end
    max_step = math.max(max_step, r.step)
    out[#out + 1] = r
  end
  return out
end

-- The series of one metric: points { step, value } in step order, the
-- number of non-finite values left out. A step that goes back (the run was
-- resumed from an earlier checkpoint) drops the points at or after it.
local function series(records, names)
  local pts, skipped, name_used = {}, 0, nil
  for _, r in ipairs(records) do
    local raw, name
    for _, n in ipairs(names) do
      if r[n] ~= nil then raw, name = r[n], n; break end
    end
    local v = raw ~= nil and value_of(raw) or nil
    if v ~= nil then
      name_used = name_used or name
      local s = r.step
      while #pts > 0 and pts[#pts][1] >= s do pts[#pts] = nil end
      if finite(v) then pts[#pts + 1] = { s, v } else skipped = skipped + 1 end
    end
  end
  return pts, skipped, name_used
end

-- TensorBoard's smoothing: an exponential moving average over the points
-- (not the steps), debiased so that the first points are not pulled to 0.
function M._ema(pts, weight)
  if weight <= 0 then return pts end
  local out, last, k = {}, 0, 0
  for i, p in ipairs(pts) do
    last = last * weight + (1 - weight) * p[2]
    k = k + 1
    out[i] = { p[1], last / (1 - weight ^ k) }
  end
  return out
end

-- scales and ticks ------------------------------------------------------------

-- Ticks at 1, 2 or 5 times a power of ten, about `target` of them, and the
-- range widened to whole ticks: returns lo, hi, step, list of ticks.
-- min_step: no finer spacing (1 for steps, which are whole numbers).
function M._nice_ticks(lo, hi, target, min_step)
  target = target or 5
  if hi < lo then lo, hi = hi, lo end
  if hi == lo then
    local d = lo == 0 and 1 or math.abs(lo) * 0.1
    lo, hi = lo - d, hi + d
  end
  local raw = (hi - lo) / target
  local mag = 10 ^ math.floor(math.log10(raw))
  local norm = raw / mag
  local step = (norm < 1.5 and 1 or norm < 3 and 2 or norm < 7 and 5 or 10) * mag
  if min_step and step < min_step then step = min_step end
  local i0, i1 = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
  local ticks = {}
  for i = i0, i1 do ticks[#ticks + 1] = i * step end
  return i0 * step, i1 * step, step, ticks
end

-- A tick label: as few digits as the tick spacing needs; k, M and G for
-- thousands, millions and billions. Small values (spacing under 0.001, a
-- learning rate) are written in units of a power of ten, which is returned
-- second for the axis label ("x1e-4"), as matplotlib does: 0, 2, 4, 6
-- rather than 0.0000, 0.0002, ...
function M._format_tick(v, step, maxabs)
  local div, suf, note = 1, '', nil
  if maxabs >= 1e9 then div, suf = 1e9, 'G'
  elseif maxabs >= 1e6 then div, suf = 1e6, 'M'
  elseif maxabs >= 1e4 then div, suf = 1e3, 'k'
  elseif step < 1e-3 and maxabs > 0 then
    local e = math.floor(math.log10(maxabs) + 1e-9)
    div, note = 10 ^ e, '\195\1511e' .. e
  end
  local d = math.max(0, math.ceil(-math.log10(step / div) - 1e-9))
  if math.abs(v) < step * 1e-6 then return '0', note end
  return ('%%.%df'):format(d):format(v / div) .. suf, note
end

-- drawing ---------------------------------------------------------------------

local function esc(s)
  return (tostring(s):gsub('[&<>"\']', { ['&'] = '&amp;', ['<'] = '&lt;', ['>'] = '&gt;',
                                         ['"'] = '&quot;', ["'"] = '&apos;' }))
end

local function num(x) return (('%.2f'):format(x):gsub('%.?0+$', '')) end

-- Keeps a long series drawable: with many more points than pixel columns,
-- each column keeps its first, lowest, highest and last point (in order),
-- so the drawn envelope is the same.
local function decimate(pts, x_of, width)
  if #pts <= 4 * width then return pts end
  local out, col, bucket = {}, nil, {}
  local function flush()
    if #bucket == 0 then return end
    local lo, hi = bucket[1], bucket[1]
    for _, p in ipairs(bucket) do
      if p[2] < lo[2] then lo = p end
      if p[2] > hi[2] then hi = p end
    end
    local keep = { bucket[1], lo, hi, bucket[#bucket] }
    table.sort(keep, function(a, b) return a[1] < b[1] end)
    local prev
    for _, p in ipairs(keep) do
      if p ~= prev then out[#out + 1] = p end
      prev = p
    end
    bucket = {}
  end
  for _, p in ipairs(pts) do
    local c = math.floor(x_of(p[1]))
    if c ~= col then flush(); col = c end
    bucket[#bucket + 1] = p
  end
  flush()
  return out
end

-- Short names for the runs: the last path component, or more of the path
-- where two runs would otherwise look alike.
local function labels_for(runs)
  local function tail(path, n)
    local parts = {}
    for p in path:gsub('/metrics%.jsonl$', ''):gmatch('[^/]+') do parts[#parts + 1] = p end
    if #parts == 0 then return path end
    return table.concat(parts, '/', math.max(1, #parts - n + 1))
  end
  for n = 1, 8 do
    local seen, clash, out = {}, false, {}
    for i, r in ipairs(runs) do
      out[i] = tail(r, n)
      if seen[out[i]] then clash = true end
      seen[out[i]] = true
    end
    if not clash or n == 8 then return out end
  end
end

local function text_width(s, size) return #s * size * 0.58 end

-- Writes the SVG for runs (a list of run directories or .jsonl files) and
-- returns its path and the notes from reading (also printed to opts.warn,
-- default io.stderr; false to keep quiet).
-- opts: out (default runs[1]/plot.svg, or beside the .jsonl file), smoothing
-- (0..1, default 0.6; 0 draws the raw curve only), title, labels (a list,
-- one per run), strict (malformed lines are errors), width (default 1200).
function M.plot(runs, opts)
  opts = opts or {}
  if type(runs) == 'string' then runs = { runs } end
  if type(runs) ~= 'table' or #runs == 0 then
    error('plot: expected a list of run directories (each holding metrics.jsonl)', 2)
  end
  local smoothing = opts.smoothing == nil and 0.6 or opts.smoothing
  if type(smoothing) ~= 'number' or smoothing < 0 or smoothing >= 1 then
    error('plot: smoothing must be a number in [0, 1), got ' .. tostring(smoothing), 2)
  end
  local out = opts.out
  if out == nil then
    local r1 = runs[1]
    out = r1:match('%.jsonl$') and r1:gsub('%.jsonl$', '.svg') or (r1:gsub('/+$', '')) .. '/plot.svg'
  end
  -- in a data-parallel job the main process draws it (the others would race
  -- it for the same file)
  if not require('tide.train.dist').is_main() then return out, {} end
  local labels = opts.labels or labels_for(runs)

  -- read every run; a bad run is an error naming its file
  local data, notes = {}, {}
  for i, run in ipairs(runs) do
    local path = metrics_path(run)
    local ok, records, n = pcall(M._read_jsonl, path, { strict = opts.strict })
    if not ok then error('plot: ' .. tostring(records), 2) end
    for _, s in ipairs(n) do notes[#notes + 1] = s end
    data[i] = { label = labels[i] or run, color = COLORS[(i - 1) % #COLORS + 1], records = drop_abandoned(records) }
  end

  -- the series of each panel, and the step range they share
  local xmin, xmax = math.huge, -math.huge
  local any = false
  for _, spec in ipairs(PANELS) do
    for _, d in ipairs(data) do
      local pts, skipped, name = series(d.records, spec.names)
      d[spec] = { pts = pts, skipped = skipped, name = name }
      for _, p in ipairs(pts) do
        any = true
        if p[1] < xmin then xmin = p[1] end
        if p[1] > xmax then xmax = p[1] end
      end
    end
  end
  if not any then
    local files = {}
    for i, run in ipairs(runs) do files[i] = metrics_path(run) end
    error(('plot: no finite loss/train, loss/eval, lr or tokens_per_s values in %s'):format(
      table.concat(files, ', ')), 2)
  end
  -- a run that logs from step 1 or 10 (or logged once) starts its axis at 0
  if xmin > 0 and xmin <= (xmax - xmin) * 0.25 or xmin == xmax and xmin > 0 then xmin = 0 end
  local x_lo, x_hi, x_step, x_ticks = M._nice_ticks(xmin, xmax, 6, 1)

  -- layout: a header (title and legend), then two columns of panels
  local W = opts.width or 1200
  local pad, font = 16, 13
  local svg = {}
  local function put(s) svg[#svg + 1] = s end
  local title = opts.title or (#runs == 1 and ('Training run ' .. data[1].label)
    or ('%d training runs'):format(#runs))

  -- legend entries flow left to right and wrap
  local legend, lx, ly = {}, pad, 58
  for _, d in ipairs(data) do
    local last = d[PANELS[1]].pts
    local extra = #last > 0 and ('step %s, loss %.4g'):format(num(last[#last][1]), last[#last][2]) or ''
    local w = 34 + text_width(d.label, font) + 8 + text_width(extra, font - 2) + 28
    if lx + w > W - pad and lx > pad then lx, ly = pad, ly + 22 end
    legend[#legend + 1] = { d = d, x = lx, y = ly, extra = extra }
    lx = lx + w
  end
  local top = ly + 22
  local cols, gap = 2, 24
  local pw_total = (W - 2 * pad - gap) / cols
  local ph_total = 330
  local rows = math.ceil(#PANELS / cols)
  local H = top + rows * ph_total + (rows - 1) * gap + pad

  put('<?xml version="1.0" encoding="UTF-8"?>\n')
  put(('<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="%d" height="%d" viewBox="0 0 %d %d" '
    .. 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="%d">\n'):format(W, H, W, H, font))
  put(('<title>%s</title>\n'):format(esc(title)))
  put(('<rect x="0" y="0" width="%d" height="%d" fill="#ffffff"/>\n'):format(W, H))
  put(('<text x="%d" y="30" font-size="18" font-weight="bold" fill="#222">%s</text>\n'):format(pad, esc(title)))
  if smoothing > 0 then
    put(('<text x="%d" y="30" font-size="12" fill="#666" text-anchor="end">faint: raw values; solid: '
      .. 'smoothed (EMA %s)</text>\n'):format(W - pad, num(smoothing)))
  end
  put('<g class="legend">\n')
  for _, e in ipairs(legend) do
    put(('<g class="legend-entry" data-run="%s">'):format(esc(e.d.label)))
    put(('<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="3"/>'):format(
      num(e.x), num(e.y - 4), num(e.x + 26), num(e.y - 4), e.d.color))
    put(('<text x="%s" y="%s" fill="#222">%s<tspan dx="8" fill="#777" font-size="%d">%s</tspan></text>'):format(
      num(e.x + 34), num(e.y), esc(e.d.label), font - 2, esc(e.extra)))
    put('</g>\n')
  end
  put('</g>\n')

  for k, spec in ipairs(PANELS) do
    local col, row = (k - 1) % cols, math.floor((k - 1) / cols)
    local ox, oy = pad + col * (pw_total + gap), top + row * (ph_total + gap)
    -- the plot area inside the panel: room for the title, tick labels and axis labels
    local px, py = ox + 70, oy + 30
    local pw, ph = pw_total - 70 - 12, ph_total - 30 - 44
    local ymin, ymax, skipped, shown = math.huge, -math.huge, 0, nil
    for _, d in ipairs(data) do
      local s = d[spec]
      skipped = skipped + s.skipped
      shown = shown or s.name
      for _, p in ipairs(s.pts) do
        if p[2] < ymin then ymin = p[2] end
        if p[2] > ymax then ymax = p[2] end
      end
    end
    local name = shown or spec.names[1]
    put(('<g class="panel" data-metric="%s">\n'):format(esc(name)))
    put(('<text x="%s" y="%s" font-size="15" font-weight="bold" fill="#222">%s</text>'):format(
      num(px), num(oy + 18), esc(spec.title)))
    put(('<text x="%s" y="%s" font-size="11" fill="#888" text-anchor="end">%s</text>\n'):format(
      num(px + pw), num(oy + 18), esc(name)))
    put(('<rect x="%s" y="%s" width="%s" height="%s" fill="#fafafa" stroke="#bbb"/>\n'):format(
      num(px), num(py), num(pw), num(ph)))
    if ymin > ymax then
      put(('<text x="%s" y="%s" fill="#999" text-anchor="middle">no %s values in %s</text>\n'):format(
        num(px + pw / 2), num(py + ph / 2), esc(name), #runs == 1 and 'this run' or 'these runs'))
    else
      -- a little air above and below the curves, but no negative axis for
      -- values that cannot be negative
      local span = ymax - ymin
      local lo, hi = ymin - 0.04 * span, ymax + 0.04 * span
      if ymin >= 0 and lo < 0 then lo = 0 end
      local y_lo, y_hi, y_step, y_ticks = M._nice_ticks(lo, hi, 5)
      local function X(s) return px + (s - x_lo) / (x_hi - x_lo) * pw end
      local function Y(v) return py + ph - (v - y_lo) / (y_hi - y_lo) * ph end
      -- the scale, so that a reader (or a test) can map points back to values
      put(('<g class="plot-area" data-x0="%s" data-y0="%s" data-width="%s" data-height="%s" '
        .. 'data-xmin="%.17g" data-xmax="%.17g" data-ymin="%.17g" data-ymax="%.17g">\n'):format(
        num(px), num(py), num(pw), num(ph), x_lo, x_hi, y_lo, y_hi))
      local maxabs = math.max(math.abs(y_lo), math.abs(y_hi))
      local _, unit = M._format_tick(y_hi, y_step, maxabs)
      for _, t in ipairs(y_ticks) do
        local y = Y(t)
        put(('<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#e4e4e4"/>'):format(num(px), num(y), num(px + pw), num(y)))
        put(('<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#888"/>'):format(num(px - 4), num(y), num(px), num(y)))
        put(('<text x="%s" y="%s" fill="#444" font-size="11" text-anchor="end">%s</text>\n'):format(
          num(px - 7), num(y + 4), M._format_tick(t, y_step, maxabs)))
      end
      local xmaxabs = math.max(math.abs(x_lo), math.abs(x_hi))
      for _, t in ipairs(x_ticks) do
        local x = X(t)
        put(('<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#e4e4e4"/>'):format(num(x), num(py), num(x), num(py + ph)))
        put(('<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#888"/>'):format(num(x), num(py + ph), num(x),
          num(py + ph + 4)))
        put(('<text x="%s" y="%s" fill="#444" font-size="11" text-anchor="middle">%s</text>\n'):format(
          num(x), num(py + ph + 17), M._format_tick(t, x_step, xmaxabs)))
      end
      put(('<text x="%s" y="%s" fill="#444" text-anchor="middle">step</text>\n'):format(
        num(px + pw / 2), num(py + ph + 36)))
      put(('<text transform="translate(%s %s) rotate(-90)" fill="#444" text-anchor="middle">%s</text>\n'):format(
        num(ox + 14), num(py + ph / 2), esc(spec.ylabel .. (unit and ' (' .. unit .. ')' or ''))))

      local function polyline(pts, cls, d, attrs)
        local xy = {}
        for i, p in ipairs(decimate(pts, X, pw)) do xy[i] = num(X(p[1])) .. ',' .. num(Y(p[2])) end
        put(('<polyline class="%s" data-run="%s" fill="none" stroke="%s" %s points="%s"/>\n'):format(
          cls, esc(d.label), d.color, attrs, table.concat(xy, ' ')))
      end
      for _, d in ipairs(data) do
        local pts = d[spec].pts
        if #pts > 0 then
          if spec.smooth and smoothing > 0 then
            polyline(pts, 'raw', d, 'stroke-width="1" stroke-opacity="0.35" stroke-linejoin="round"')
            polyline(M._ema(pts, smoothing), 'smoothed', d, 'stroke-width="2" stroke-linejoin="round"')
          else
            polyline(pts, 'raw', d, 'stroke-width="2" stroke-linejoin="round"')
          end
          -- a lone point is no line: it gets a marker in every panel
          if (spec.markers and #pts <= 400) or #pts == 1 then
            put(('<g class="markers" data-run="%s" fill="%s" stroke="#fff" stroke-width="1">'):format(
              esc(d.label), d.color))
            for _, p in ipairs(pts) do
              put(('<circle cx="%s" cy="%s" r="3.5"/>'):format(num(X(p[1])), num(Y(p[2]))))
            end
            put('</g>\n')
          end
        end
      end
      put('</g>\n')
    end
    if skipped > 0 then
      put(('<text class="skipped" x="%s" y="%s" fill="#c0392b" font-size="11" text-anchor="end">'
        .. '%d non-finite value%s not drawn</text>\n'):format(num(px + pw - 6), num(py + 14), skipped,
        skipped == 1 and '' or 's'))
    end
    put('</g>\n')
  end
  put('</svg>\n')

  local ok, err = pcall(json.write_atomic, out, table.concat(svg))
  if not ok then error('plot: cannot write ' .. out .. ': ' .. tostring(err), 2) end
  local warn = opts.warn
  if warn == nil then warn = io.stderr end
  if warn then
    for _, s in ipairs(notes) do warn:write('tide plot: ', s, '\n') end
  end
  return out, notes
end

-- `tide plot RUN [RUN ...] [--out=FILE] [--smoothing=W] [--title=TEXT] [--strict]`:
-- writes the SVG and prints its path; returns the exit status.
function M._main(argv)
  local cli = require 'tide.cli'
  local o, runs = cli.parse_args(argv)
  if o.h or o.help or #runs == 0 then
    local usage = 'usage: tide plot RUN [RUN ...] [--out=FILE] [--smoothing=0.6] [--title=TEXT] [--strict]\n'
      .. 'Draws RUN/metrics.jsonl of each run (train and eval loss, lr, tokens/s) into one SVG\n'
      .. '(default RUN/plot.svg) and prints its path.\n'
    if #runs == 0 and not (o.h or o.help) then io.stderr:write(usage); return 1 end
    io.write(usage)
    return 0
  end
  for k in pairs(o) do
    if k ~= 'out' and k ~= 'smoothing' and k ~= 'title' and k ~= 'strict' then
      io.stderr:write('tide plot: unknown option --', k, '\n')
      return 1
    end
  end
  local ok, path = pcall(M.plot, runs, { out = o.out and tostring(o.out), smoothing = o.smoothing,
    title = o.title and tostring(o.title), strict = o.strict })
  if not ok then
    io.stderr:write('tide ', tostring(path):gsub('^[^:]*:%d+: ', ''), '\n')
    return 1
  end
  print(path)
  return 0
end

return M

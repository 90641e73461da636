-- Causal scaled dot-product attention (tide_attention and its backward)
-- against plain f64 references computed here in Lua: explicit scores, mask,
-- softmax and weighted sums for the forward and lse, the explicit gradient
-- formulas and central finite differences for the backward; causal and not,
-- T == S and T != S, several head sizes, one and many heads (one backward
-- task per head, or query blocks dealt to several groups per head), blocks of
-- 64 queries crossed, causal diagonal blocks, GPT-2's transposed views,
-- other strides, half types, empty sizes, thread-count determinism and errors;
-- the query offset (bottom-right causal mask of a KV cache) against the same
-- references and against slices of full causal attention.
local T = require 'tide.testing'
local ffi = require 'ffi'
local C = require 'tide.C'
local core = require 'tide.tensor'

local slot = { ffi.new('tide_tensor*[1]'), ffi.new('tide_tensor*[1]'), ffi.new('tide_tensor*[1]') }

local function h(t) return t and t._c or nil end

-- tide_attention through the FFI: returns out, lse (km: an optional [B, S] key mask; qoff: the
-- causal mask's query offset, 0 when nil).
local function attn(q, k, v, causal, scale, km, qoff)
  core.check(C.tide_attention(h(q), h(k), h(v), h(km), causal and 1 or 0, qoff or 0, scale, slot[1], slot[2]), 2)
  return core.wrap(slot[1][0]), core.wrap(slot[2][0])
end

-- tide_attention_backward through the FFI: returns dq, dk, dv.
local function attn_bwd(dout, q, k, v, out, lse, causal, scale, km, qoff)
  core.check(C.tide_attention_backward(h(dout), h(q), h(k), h(v), h(km), h(out), h(lse), causal and 1 or 0, qoff or 0, scale,
                                       slot[1], slot[2], slot[3]), 2)
  return core.wrap(slot[1][0]), core.wrap(slot[2][0]), core.wrap(slot[3][0])
end

local rng = T.lcg(77)

local function numel(shape)
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  return n
end

-- A tensor of shape with values uniform in [-1, 1) from the Lua stream.
local function rand(shape, dtype)
  local flat = {}
  for i = 1, numel(shape) do flat[i] = 2 * rng() - 1 end
  if #flat == 0 then return tide.zeros(shape, { dtype = dtype or 'f32' }) end
  return tide.tensor(flat, { dtype = dtype or 'f32' }):view(shape)
end

-- The values of a tensor in row-major order of its shape.
local function vals(t) return (T.flatten(t)) end

-- The keys query t of head bh sees: the causal prefix (keys s <= t + qoff),
-- less those the flat [B, S] key mask km (optional) hides.
local function keys_seen(bh, t, H, S, causal, km, qoff)
  local n, list = causal and math.min(S, t + (qoff or 0) + 1) or S, {}
  local b = math.floor(bh / H)
  for s = 0, n - 1 do
    if not km or km[b * S + s + 1] ~= 0 then list[#list + 1] = s end
  end
  return list
end

-- Forward reference on flat [B, H, T, D] / [B, H, S, D] value lists; a
-- query that sees no key gives zeros and lse -inf.
local function ref_forward(q, k, v, B, H, Tq, S, D, causal, scale, km, qoff)
  local out, lse = {}, {}
  for bh = 0, B * H - 1 do
    for t = 0, Tq - 1 do
      local qo = (bh * Tq + t) * D
      local xs, m = {}, -math.huge
      local seen = keys_seen(bh, t, H, S, causal, km, qoff)
      for _, s in ipairs(seen) do
        local ko, dot = (bh * S + s) * D, 0
        for d = 1, D do dot = dot + q[qo + d] * k[ko + d] end
        xs[s] = dot * scale
        if xs[s] > m then m = xs[s] end
      end
      local l = 0
      for _, s in ipairs(seen) do l = l + math.exp(xs[s] - m) end
      lse[bh * Tq + t + 1] = #seen > 0 and m + math.log(l) or -math.huge
      for d = 1, D do
        local acc = 0
        for _, s in ipairs(seen) do acc = acc + math.exp(xs[s] - m) / l * v[(bh * S + s) * D + d] end
        out[qo + d] = acc
      end
    end
  end
  return out, lse
end

-- Backward reference from the explicit probability matrix of each head.
local function ref_backward(dout, q, k, v, B, H, Tq, S, D, causal, scale, km, qoff)
  local dq, dk, dv = {}, {}, {}
  for i = 1, B * H * Tq * D do dq[i] = 0 end
  for i = 1, B * H * S * D do dk[i] = 0; dv[i] = 0 end
  for bh = 0, B * H - 1 do
    for t = 0, Tq - 1 do
      local qo = (bh * Tq + t) * D
      local seen = keys_seen(bh, t, H, S, causal, km, qoff)
      local xs, m = {}, -math.huge
      for _, s in ipairs(seen) do
        local ko, dot = (bh * S + s) * D, 0
        for d = 1, D do dot = dot + q[qo + d] * k[ko + d] end
        xs[s] = dot * scale
        if xs[s] > m then m = xs[s] end
      end
      local l = 0
      for _, s in ipairs(seen) do l = l + math.exp(xs[s] - m) end
      local P, dP, rowdot = {}, {}, 0
      for _, s in ipairs(seen) do
        P[s] = math.exp(xs[s] - m) / l
        local vo, acc = (bh * S + s) * D, 0
        for d = 1, D do acc = acc + dout[qo + d] * v[vo + d] end
        dP[s] = acc
        rowdot = rowdot + P[s] * acc
      end
      for _, s in ipairs(seen) do
        local ds = P[s] * (dP[s] - rowdot)
        local ko = (bh * S + s) * D
        for d = 1, D do
          dq[qo + d] = dq[qo + d] + scale * ds * k[ko + d]
          dk[ko + d] = dk[ko + d] + scale * ds * q[qo + d]
          dv[ko + d] = dv[ko + d] + P[s] * dout[qo + d]
        end
      end
    end
  end
  return dq, dk, dv
end

-- Checks forward (out, lse) and backward (dq, dk, dv) of the given tensors
-- against the references computed from their values.
local function check_against_ref(q, k, v, causal, scale, tol, km, qoff)
  local sq, sk = q:shape(), k:shape()
  local B, H, Tq, D, S = sq[1], sq[2], sq[3], sq[4], sk[3]
  local fm = km and vals(km:to('i64'))
  local out, lse = attn(q, k, v, causal, scale, km, qoff)
  T.same(out:shape(), sq)
  T.same(lse:shape(), { B, H, Tq })
  local fq, fk, fv = vals(q), vals(k), vals(v)
  local rout, rlse = ref_forward(fq, fk, fv, B, H, Tq, S, D, causal, scale, fm, qoff)
  T.close(vals(out), rout, tol, 'out')
  T.close(vals(lse), rlse, tol, 'lse')
  local dout = rand(sq, q:dtype())
  local dq, dk, dv = attn_bwd(dout, q, k, v, out, lse, causal, scale, km, qoff)
  T.same(dq:shape(), sq)
  T.same(dk:shape(), sk)
  T.same(dv:shape(), v:shape())
  local rdq, rdk, rdv = ref_backward(vals(dout), fq, fk, fv, B, H, Tq, S, D, causal, scale, fm, qoff)
  T.close(vals(dq), rdq, tol, 'dq')
  T.close(vals(dk), rdk, tol, 'dk')
  T.close(vals(dv), rdv, tol, 'dv')
end

local F64 = { rtol = 1e-11, atol = 1e-12 }
local F32 = { rtol = 2e-5, atol = 2e-6 }

-- forward and backward against the references ------------------------------------------

T.test('attention matches the reference: causal and not, T == S and T != S, D 1/8/16, B*H 1/6', function()
  for _, dtype in ipairs { 'f64', 'f32' } do
    for _, D in ipairs { 1, 8, 16 } do
      for _, bh in ipairs { { 1, 1 }, { 2, 3 } } do
        for _, ts in ipairs { { 7, 7 }, { 5, 9 }, { 9, 4 } } do
          for _, causal in ipairs { true, false } do
            local B, H, Tq, S = bh[1], bh[2], ts[1], ts[2]
            local q, k, v = rand({ B, H, Tq, D }, dtype), rand({ B, H, S, D }, dtype), rand({ B, H, S, D }, dtype)
            check_against_ref(q, k, v, causal, 1 / math.sqrt(D), dtype == 'f64' and F64 or F32)
          end
        end
      end
    end
  end
end)

T.test('attention crosses 64-row blocks and splits large products (T, S > 64, D = 64 and 80)', function()
  for _, cfg in ipairs { { 1, 1, 130, 130, 64 }, { 1, 2, 70, 150, 80 }, { 1, 1, 150, 70, 8 } } do
    for _, causal in ipairs { true, false } do
      local B, H, Tq, S, D = cfg[1], cfg[2], cfg[3], cfg[4], cfg[5]
      local q, k, v = rand({ B, H, Tq, D }, 'f64'), rand({ B, H, S, D }, 'f64'), rand({ B, H, S, D }, 'f64')
      check_against_ref(q, k, v, causal, 1 / math.sqrt(D), F64)
    end
  end
end)

T.test('attention backward with several query blocks per group (B*H = 6, T = 200) matches the reference', function()
  for _, causal in ipairs { true, false } do
    local q, k, v = rand({ 2, 3, 200, 4 }, 'f64'), rand({ 2, 3, 200, 4 }, 'f64'), rand({ 2, 3, 200, 4 }, 'f64')
    check_against_ref(q, k, v, causal, 0.5, F64)
  end
end)

T.test('attention backward with one task per head (B*H >= 16) matches the reference', function()
  for _, ts in ipairs { { 70, 70 }, { 5, 9 }, { 9, 5 } } do
    for _, causal in ipairs { true, false } do
      local q, k, v = rand({ 2, 8, ts[1], 4 }, 'f64'), rand({ 2, 8, ts[2], 4 }, 'f64'), rand({ 2, 8, ts[2], 4 }, 'f64')
      check_against_ref(q, k, v, causal, 0.5, F64)
    end
  end
end)

T.test('attention reads GPT-2 style views: split c_attn output, view(B, T, H, D), transpose(2, 3)', function()
  local B, Tq, H, D = 2, 6, 3, 8
  local Cc = H * D
  for _, dtype in ipairs { 'f64', 'f32' } do
    local x = rand({ B, Tq, 3 * Cc }, dtype)
    local function head(i) return x:narrow(3, 1 + i * Cc, Cc):view(B, Tq, H, D):transpose(2, 3) end
    local q, k, v = head(0), head(1), head(2)
    T.eq(q:is_contiguous(), false)
    for _, causal in ipairs { true, false } do
      local tol = dtype == 'f64' and F64 or F32
      check_against_ref(q, k, v, causal, 1 / math.sqrt(D), tol)
      -- same numbers as from contiguous copies
      local o1, l1 = attn(q, k, v, causal, 0.3)
      local o2, l2 = attn(q:contiguous(), k:contiguous(), v:contiguous(), causal, 0.3)
      T.same(o1, o2)
      T.same(l1, l2)
    end
  end
end)

T.test('attention output is [B, H, T, D] over [B, T, H, D] memory: merging heads is free', function()
  local q, k, v = rand({ 2, 3, 5, 4 }), rand({ 2, 3, 5, 4 }), rand({ 2, 3, 5, 4 })
  local out = attn(q, k, v, true, 0.5)
  T.same(out:shape(), { 2, 3, 5, 4 })
  T.eq(out:transpose(2, 3):is_contiguous(), true)
  T.same(out:transpose(2, 3):view(2, 5, 12):shape(), { 2, 5, 12 })
end)

T.test('attention reads other strides: non-unit last stride, expanded batch, narrowed rows', function()
  local D = 8
  local q = rand({ 1, 2, 6, D, 2 }, 'f64'):select(5, 2)  -- last stride 2: copied
  local k = rand({ 1, 2, 9, D }, 'f64'):expand(3, 2, 9, D)  -- batch stride 0
  local v = rand({ 3, 2, 12, D }, 'f64'):narrow(3, 2, 9)
  local q3 = q:expand(3, 2, 6, D)
  for _, causal in ipairs { true, false } do
    check_against_ref(q3, k, v, causal, 0.35, F64)
  end
  -- a transposed last dim (stride != 1 along D)
  local qt = rand({ 1, 2, D, 6 }, 'f64'):transpose(3, 4)
  check_against_ref(qt, k:narrow(1, 1, 1), v:narrow(1, 1, 1), true, 0.35, F64)
end)

T.test('attention in bf16 and f16 computes through f32', function()
  for _, dtype in ipairs { 'bf16', 'f16' } do
    local q, k, v = rand({ 1, 2, 7, 8 }, dtype), rand({ 1, 2, 7, 8 }, dtype), rand({ 1, 2, 7, 8 }, dtype)
    local out, lse = attn(q, k, v, true, 0.35)
    T.eq(out:dtype(), dtype)
    T.eq(lse:dtype(), 'f32')
    local ro, rl = ref_forward(vals(q), vals(k), vals(v), 1, 2, 7, 7, 8, true, 0.35)
    local tol = { rtol = dtype == 'bf16' and 1e-2 or 2e-3, atol = 1e-2 }
    T.close(vals(out), ro, tol)
    T.close(vals(lse), rl, { rtol = 1e-5, atol = 1e-5 })
    local dout = rand({ 1, 2, 7, 8 }, dtype)
    local dq, dk, dv = attn_bwd(dout, q, k, v, out, lse, true, 0.35)
    T.eq(dq:dtype(), dtype)
    -- against the f32 kernel on the same values
    local f = function(t) return t:to('f32') end
    local o32, l32 = attn(f(q), f(k), f(v), true, 0.35)
    local eq, ek, ev = attn_bwd(f(dout), f(q), f(k), f(v), o32, l32, true, 0.35)
    T.close(dq:to('f32'), eq, tol)
    T.close(dk:to('f32'), ek, tol)
    T.close(dv:to('f32'), ev, tol)
  end
end)

T.test('attention lse is f64 for f64 inputs and stable for large scores', function()
  local q, k, v = rand({ 1, 1, 4, 2 }, 'f64'), rand({ 1, 1, 4, 2 }, 'f64'), rand({ 1, 1, 4, 2 }, 'f64')
  local _, lse = attn(q, k, v, false, 1)
  T.eq(lse:dtype(), 'f64')
  -- scores near 1e3 overflow a naive exp; the max is subtracted first
  for _, dtype in ipairs { 'f32', 'f64' } do
    local qq = (rand({ 1, 1, 4, 2 }, 'f64') * 40):to(dtype)
    local kk = (rand({ 1, 1, 4, 2 }, 'f64') * 40):to(dtype)
    local vv = rand({ 1, 1, 4, 2 }, dtype)
    local out, l = attn(qq, kk, vv, true, 1)
    local ro, rl = ref_forward(vals(qq), vals(kk), vals(vv), 1, 1, 4, 4, 2, true, 1)
    T.close(vals(out), ro, { rtol = 1e-4, atol = 1e-5 })
    T.close(vals(l), rl, { rtol = 1e-6, atol = 1e-5 })
  end
end)

-- gradients by central differences ---------------------------------------------------

-- sum(out * w) for the values in flat lists, through the kernel.
local function loss(fq, fk, fv, sq, sk, w, causal, scale, km)
  local q = tide.tensor(fq, { dtype = 'f64' }):view(sq)
  local k = tide.tensor(fk, { dtype = 'f64' }):view(sk)
  local v = tide.tensor(fv, { dtype = 'f64' }):view(sk)
  local o = vals(attn(q, k, v, causal, scale, km))
  local s = 0
  for i = 1, #o do s = s + o[i] * w[i] end
  return s
end

T.test('attention backward matches central finite differences in f64 (dq, dk, dv)', function()
  local eps = 1e-6
  for _, cfg in ipairs { { 1, 2, 4, 4, 3 }, { 1, 1, 3, 5, 2 }, { 2, 1, 5, 3, 2 } } do
    for _, causal in ipairs { true, false } do
      local B, H, Tq, S, D = cfg[1], cfg[2], cfg[3], cfg[4], cfg[5]
      local sq, sk = { B, H, Tq, D }, { B, H, S, D }
      local q, k, v = rand(sq, 'f64'), rand(sk, 'f64'), rand(sk, 'f64')
      local w = rand(sq, 'f64')
      local scale = 0.7
      local out, lse = attn(q, k, v, causal, scale)
      local grads = { attn_bwd(w, q, k, v, out, lse, causal, scale) }
      local flats = { vals(q), vals(k), vals(v) }
      local fw = vals(w)
      for which = 1, 3 do
        local f = flats[which]
        local num = {}
        for i = 1, #f do
          local x = f[i]
          f[i] = x + eps
          local lp = loss(flats[1], flats[2], flats[3], sq, sk, fw, causal, scale)
          f[i] = x - eps
          local lm = loss(flats[1], flats[2], flats[3], sq, sk, fw, causal, scale)
          f[i] = x
          num[i] = (lp - lm) / (2 * eps)
        end
        T.close(vals(grads[which]), num, { rtol = 1e-6, atol = 1e-8 }, ({ 'dq', 'dk', 'dv' })[which])
      end
    end
  end
end)

-- key padding mask -------------------------------------------------------------------------

-- A [B, S] key mask: row b keeps keys [lo, hi) (left and right padding).
local function pad_mask(B, S, spans, dtype)
  local flat = {}
  for b = 1, B do
    local lo, hi = spans[b][1], spans[b][2]
    for s = 0, S - 1 do flat[#flat + 1] = (s >= lo and s < hi) and 1 or 0 end
  end
  return tide.tensor(flat, { dtype = 'i64' }):view(B, S):to(dtype or 'bool')
end

T.test('attention with a key mask matches the reference: left and right padding, causal and not, T > 64', function()
  for _, dtype in ipairs { 'f64', 'f32' } do
    for _, case in ipairs {
      { 3, 2, 7, 7, 8, { { 0, 7 }, { 3, 7 }, { 0, 4 } } },       -- none, left, right
      { 2, 3, 5, 9, 4, { { 2, 9 }, { 1, 6 } } },                -- T != S
      { 2, 1, 130, 130, 16, { { 70, 130 }, { 0, 100 } } },      -- blocks of 64 crossed, diagonal tiles
      { 1, 2, 6, 6, 4, { { 0, 0 } } },                          -- every key masked
    } do
      for _, causal in ipairs { true, false } do
        local B, H, Tq, S, D = case[1], case[2], case[3], case[4], case[5]
        if dtype == 'f32' or Tq < 100 then
          local q, k, v = rand({ B, H, Tq, D }, dtype), rand({ B, H, S, D }, dtype), rand({ B, H, S, D }, dtype)
          check_against_ref(q, k, v, causal, 1 / math.sqrt(D), dtype == 'f64' and F64 or F32, pad_mask(B, S, case[6]))
        end
      end
    end
  end
end)

T.test('attention key mask: left-padding queries that see no key give zeros, lse -inf and no gradient', function()
  local q, k, v = rand({ 1, 2, 5, 4 }, 'f64'), rand({ 1, 2, 5, 4 }, 'f64'), rand({ 1, 2, 5, 4 }, 'f64')
  local km = pad_mask(1, 5, { { 2, 5 } }, 'u8')
  local out, lse = attn(q, k, v, true, 0.5, km)
  T.same(out:narrow(3, 1, 2), tide.zeros(1, 2, 2, 4, { dtype = 'f64' }))
  T.same(vals(lse:narrow(3, 1, 2)), { -math.huge, -math.huge, -math.huge, -math.huge })
  for _, x in ipairs(vals(out)) do T.truthy(x == x, 'no NaN in the output') end
  local dq, dk, dv = attn_bwd(rand({ 1, 2, 5, 4 }, 'f64'), q, k, v, out, lse, true, 0.5, km)
  T.same(dq:narrow(3, 1, 2), tide.zeros(1, 2, 2, 4, { dtype = 'f64' }))
  -- the padding keys influence nothing
  T.same(dk:narrow(3, 1, 2), tide.zeros(1, 2, 2, 4, { dtype = 'f64' }))
  T.same(dv:narrow(3, 1, 2), tide.zeros(1, 2, 2, 4, { dtype = 'f64' }))
  -- an all-ones mask is the unmasked kernel, bit for bit
  local ones = tide.ones(1, 5, { dtype = 'bool' })
  local o1 = attn(q, k, v, true, 0.5, ones)
  T.same(o1, (attn(q, k, v, true, 0.5)))
end)

T.test('attention key mask: backward matches central finite differences in f64', function()
  local eps = 1e-6
  for _, case in ipairs { { 2, 1, 5, 5, 3, { { 2, 5 }, { 0, 3 } } }, { 1, 2, 4, 6, 2, { { 1, 5 } } } } do
    for _, causal in ipairs { true, false } do
      local B, H, Tq, S, D = case[1], case[2], case[3], case[4], case[5]
      local sq, sk = { B, H, Tq, D }, { B, H, S, D }
      local km = pad_mask(B, S, case[6])
      local q, k, v, w = rand(sq, 'f64'), rand(sk, 'f64'), rand(sk, 'f64'), rand(sq, 'f64')
      local out, lse = attn(q, k, v, causal, 0.7, km)
      local grads = { attn_bwd(w, q, k, v, out, lse, causal, 0.7, km) }
      local flats, fw = { vals(q), vals(k), vals(v) }, vals(w)
      for which = 1, 3 do
        local f, num = flats[which], {}
        for i = 1, #f do
          local x = f[i]
          f[i] = x + eps
          local lp = loss(flats[1], flats[2], flats[3], sq, sk, fw, causal, 0.7, km)
          f[i] = x - eps
          local lm = loss(flats[1], flats[2], flats[3], sq, sk, fw, causal, 0.7, km)
          f[i] = x
          num[i] = (lp - lm) / (2 * eps)
        end
        T.close(vals(grads[which]), num, { rtol = 1e-6, atol = 1e-8 }, ({ 'dq', 'dk', 'dv' })[which])
      end
    end
  end
end)

T.test('F.scaled_dot_product_attention key_mask: integer masks, autograd, gradcheck, bad masks', function()
  local q = rand({ 2, 2, 4, 3 }, 'f64'):requires_grad_()
  local k = rand({ 2, 2, 4, 3 }, 'f64'):requires_grad_()
  local v = rand({ 2, 2, 4, 3 }, 'f64'):requires_grad_()
  local mask = tide.tensor({ { 0, 1, 1, 1 }, { 1, 1, 1, 0 } })  -- i64, as a tokenizer returns it
  local y = tide.F.scaled_dot_product_attention(q, k, v, { is_causal = true, key_mask = mask })
  local ro = ref_forward(vals(q), vals(k), vals(v), 2, 2, 4, 4, 3, true, 1 / math.sqrt(3), vals(mask))
  T.close(vals(y), ro, F64)
  T.truthy(tide.autograd.gradcheck(function(a, b, c)
    return tide.F.scaled_dot_product_attention(a, b, c, { is_causal = true, key_mask = mask })
  end, { q, k, v }))
  -- the backward uses the mask the forward saw, even if the caller's changes before it
  local bm = mask:ne(0)
  q.grad = nil
  local y1 = tide.F.scaled_dot_product_attention(q, k, v, { is_causal = true, key_mask = bm })
  bm:fill_(true)
  y1:sum():backward()
  local g1 = q.grad:clone()
  q.grad = nil
  tide.F.scaled_dot_product_attention(q, k, v, { is_causal = true, key_mask = mask }):sum():backward()
  T.close(g1, q.grad, { rtol = 0, atol = 0 })
  T.raises(function() tide.F.scaled_dot_product_attention(q, k, v, { key_mask = tide.ones(2, 3) }) end,
    'key_mask must be bool or integer')
  T.raises(function() tide.F.scaled_dot_product_attention(q, k, v, { key_mask = tide.ones(2, 5, { dtype = 'bool' }) }) end,
    'key_mask must be [B, S] = [2, 4], got shape [2, 5]')
  T.raises(function() tide.F.scaled_dot_product_attention(q, k, v, { attn_mask = mask }) end, 'unknown option attn_mask')
end)

-- query offset: the bottom-right causal mask of decoding over a KV cache ---------------------

T.test('attention with q_offset matches the reference (query t sees keys s <= t + q_offset), forward and backward', function()
  -- {B, H, T, S, D, q_offset}: decode steps (T = 1, q_offset = S - 1), prefill chunks (q_offset = S - T),
  -- offsets in between, blocks of 64 queries and the split diagonal tiles crossed, one backward task per head
  local cfgs = {
    { 1, 2, 1, 9, 8, 8 }, { 2, 3, 5, 12, 4, 7 }, { 1, 1, 4, 10, 3, 2 }, { 1, 2, 70, 150, 16, 80 },
    { 1, 1, 130, 200, 8, 45 }, { 4, 4, 20, 50, 8, 30 }, { 1, 1, 3, 3, 2, 0 },
  }
  for _, dtype in ipairs { 'f64', 'f32' } do
    for _, c in ipairs(cfgs) do
      local q, k, v = rand({ c[1], c[2], c[3], c[5] }, dtype), rand({ c[1], c[2], c[4], c[5] }, dtype), rand({ c[1], c[2], c[4], c[5] }, dtype)
      check_against_ref(q, k, v, true, 0.4, dtype == 'f64' and F64 or F32, nil, c[6])
    end
  end
  -- with a key mask on top (left padding of the cache): rows that see no key give zeros
  local km = tide.tensor({ { 0, 0, 0, 1, 1, 1, 1, 1, 1, 1 }, { 1, 1, 1, 1, 1, 1, 1, 1, 0, 1 } }):to('bool')
  for _, qoff in ipairs { 0, 1, 4, 7 } do
    local q, k, v = rand({ 2, 2, 3, 5 }, 'f64'), rand({ 2, 2, 10, 5 }, 'f64'), rand({ 2, 2, 10, 5 }, 'f64')
    check_against_ref(q, k, v, true, 0.6, F64, km, qoff)
  end
end)

T.test('attention q_offset = S - T equals the last T rows of full causal attention, every T from 1 to S', function()
  local B, H, S, D = 1, 2, 70, 8
  for _, dtype in ipairs { 'f64', 'f32' } do
    local tol = dtype == 'f64' and F64 or F32
    local q, k, v = rand({ B, H, S, D }, dtype), rand({ B, H, S, D }, dtype), rand({ B, H, S, D }, dtype)
    local full, flse = attn(q, k, v, true, 0.3)
    for Tq = 1, S do
      local qt = q:narrow(3, S - Tq + 1, Tq)
      local out, lse = attn(qt, k, v, true, 0.3, nil, S - Tq)
      T.close(vals(out), vals(full:narrow(3, S - Tq + 1, Tq)), tol, 'out T = ' .. Tq)
      T.close(vals(lse), vals(flse:narrow(3, S - Tq + 1, Tq)), tol, 'lse T = ' .. Tq)
    end
    -- the same through the Lua face
    local y = tide.F.scaled_dot_product_attention(q:narrow(3, S, 1), k, v, { is_causal = true, q_offset = S - 1, scale = 0.3 })
    T.close(vals(y), vals(full:narrow(3, S, 1)), tol, 'F decode step')
  end
end)

T.test('F.scaled_dot_product_attention q_offset: gradcheck, with a key mask, q_offset = 0 as before', function()
  local q = rand({ 2, 2, 3, 4 }, 'f64'):requires_grad_()
  local k = rand({ 2, 2, 7, 4 }, 'f64'):requires_grad_()
  local v = rand({ 2, 2, 7, 4 }, 'f64'):requires_grad_()
  local mask = tide.tensor({ { 0, 1, 1, 1, 1, 1, 1 }, { 1, 1, 1, 1, 1, 0, 1 } })
  for _, qoff in ipairs { 0, 2, 4 } do
    local y = tide.F.scaled_dot_product_attention(q, k, v, { is_causal = true, q_offset = qoff })
    local ro = ref_forward(vals(q), vals(k), vals(v), 2, 2, 3, 7, 4, true, 0.5, nil, qoff)
    T.close(vals(y), ro, F64)
    T.truthy(tide.autograd.gradcheck(function(a, b, c)
      return tide.F.scaled_dot_product_attention(a, b, c, { is_causal = true, q_offset = qoff })
    end, { q, k, v }))
    T.truthy(tide.autograd.gradcheck(function(a, b, c)
      return tide.F.scaled_dot_product_attention(a, b, c, { is_causal = true, q_offset = qoff, key_mask = mask })
    end, { q, k, v }))
  end
  -- q_offset = 0 is the top-left mask of today, bit for bit
  local a = tide.F.scaled_dot_product_attention(q, k, v, { is_causal = true })
  local b = tide.F.scaled_dot_product_attention(q, k, v, { is_causal = true, q_offset = 0 })
  T.close(a, b, { rtol = 0, atol = 0 })
end)

T.test('attention rejects bad q_offsets with clear errors', function()
  local q, k, v = rand({ 1, 2, 3, 4 }), rand({ 1, 2, 5, 4 }), rand({ 1, 2, 5, 4 })
  local F = tide.F
  T.raises(function() F.scaled_dot_product_attention(q, k, v, { is_causal = true, q_offset = -1 }) end,
    'q_offset must be a non-negative integer, got -1')
  T.raises(function() F.scaled_dot_product_attention(q, k, v, { is_causal = true, q_offset = 1.5 }) end,
    'q_offset must be a non-negative integer, got 1.5')
  T.raises(function() F.scaled_dot_product_attention(q, k, v, { is_causal = true, q_offset = '2' }) end,
    'q_offset must be a non-negative integer, got 2')
  T.raises(function() F.scaled_dot_product_attention(q, k, v, { is_causal = true, q_offset = 3 }) end,
    'attention: q_offset = 3 with T = 3 queries needs q_offset + T <= S = 5 keys')
  T.raises(function() F.scaled_dot_product_attention(q, k, v, { q_offset = 2 }) end,
    'attention: q_offset = 2 shifts the causal mask and needs causal = 1')
  T.raises(function() attn(q, k, v, true, 1, nil, -1) end, 'attention: q_offset must be >= 0, got -1')
  T.raises(function() attn(q, k, v, true, 1, nil, 4) end, 'q_offset + T <= S = 5 keys')
  local out, lse = attn(q, k, v, true, 1, nil, 2)
  local dout = rand({ 1, 2, 3, 4 })
  T.raises(function() attn_bwd(dout, q, k, v, out, lse, true, 1, nil, -2) end, 'attention_backward: q_offset must be >= 0, got -2')
  T.raises(function() attn_bwd(dout, q, k, v, out, lse, true, 1, nil, 3) end, 'attention_backward: q_offset = 3 with T = 3')
  T.raises(function() attn_bwd(dout, q, k, v, out, lse, false, 1, nil, 2) end, 'needs causal = 1')
  -- offset 0 keeps today's rule: more queries than keys are fine (rows t >= S see every key)
  T.same(attn(rand({ 1, 2, 7, 4 }), k, v, true, 1, nil, 0):shape(), { 1, 2, 7, 4 })
end)

-- edge sizes ------------------------------------------------------------------------------

T.test('attention with S == 0 gives zeros and lse -inf; T == 0 and D == 0 give empty results', function()
  local q = rand({ 1, 2, 3, 4 })
  local e = tide.zeros({ 1, 2, 0, 4 })
  local out, lse = attn(q, e, e, false, 1)
  T.same(out, tide.zeros(1, 2, 3, 4))
  T.same(vals(lse), { -math.huge, -math.huge, -math.huge, -math.huge, -math.huge, -math.huge })
  local dq, dk, dv = attn_bwd(rand({ 1, 2, 3, 4 }), q, e, e, out, lse, true, 1)
  T.same(dq, tide.zeros(1, 2, 3, 4))
  T.same(dk:shape(), { 1, 2, 0, 4 })
  T.same(dv:shape(), { 1, 2, 0, 4 })
  -- no queries: empty out, zero gradients for the keys
  local k, v = rand({ 1, 2, 5, 4 }), rand({ 1, 2, 5, 4 })
  local o0, l0 = attn(e, k, v, true, 1)
  T.same(o0:shape(), { 1, 2, 0, 4 })
  T.same(l0:shape(), { 1, 2, 0 })
  local _, dk0, dv0 = attn_bwd(e, e, k, v, o0, l0, true, 1)
  T.same(dk0, tide.zeros(1, 2, 5, 4))
  T.same(dv0, tide.zeros(1, 2, 5, 4))
  -- D == 0: every score is 0, so lse = log(number of keys seen)
  local z = tide.zeros({ 1, 1, 3, 0 })
  local oz, lz = attn(z, z, z, true, 1)
  T.same(oz:shape(), { 1, 1, 3, 0 })
  T.close(vals(lz), { 0, math.log(2), math.log(3) })
  local dqz = attn_bwd(z, z, z, z, oz, lz, true, 1)
  T.same(dqz:shape(), { 1, 1, 3, 0 })
  -- B == 0
  local b0 = tide.zeros({ 0, 2, 3, 4 })
  T.same(attn(b0, b0, b0, true, 1):shape(), { 0, 2, 3, 4 })
end)

-- determinism ----------------------------------------------------------------------------

T.test('attention gives the same bits on 1 and 2 threads (one and several groups per head)', function()
  local saved = tide.get_num_threads()
  for _, cfg in ipairs { { 1, 2, 150, 150, 16 }, { 4, 4, 70, 70, 8 } } do
    local sq, sk = { cfg[1], cfg[2], cfg[3], cfg[5] }, { cfg[1], cfg[2], cfg[4], cfg[5] }
    local q, k, v, w = rand(sq), rand(sk), rand(sk), rand(sq)
    local results = {}
    for _, n in ipairs { 1, 2 } do
      tide.set_num_threads(n)
      local out, lse = attn(q, k, v, true, 0.25)
      local dq, dk, dv = attn_bwd(w, q, k, v, out, lse, true, 0.25)
      results[n] = { vals(out), vals(lse), vals(dq), vals(dk), vals(dv) }
    end
    tide.set_num_threads(saved)
    for i = 1, 5 do T.same(results[1][i], results[2][i]) end
  end
  tide.set_num_threads(saved)
end)

-- errors ------------------------------------------------------------------------------------

T.test('attention rejects bad arguments with clear errors', function()
  local q, k, v = rand({ 2, 3, 5, 4 }), rand({ 2, 3, 6, 4 }), rand({ 2, 3, 6, 4 })
  T.raises(function() attn(nil, k, v, true, 1) end, 'attention: expected a tensor, got nil')
  T.raises(function() attn(q:view(2, 3, 5, 4, 1), k, v, true, 1) end, 'q must be 4-d [B, H, T, D], got shape [2, 3, 5, 4, 1]')
  T.raises(function() attn(q, k:view(6, 6, 4), v, true, 1) end, 'k must be 4-d [B, H, S, D], got shape [6, 6, 4]')
  T.raises(function() attn(q:to('i32'), k, v, true, 1) end, 'q must be a floating-point tensor')
  T.raises(function() attn(q, k:to('f64'), v, true, 1) end, 'same dtype, got f32, f64 and f32')
  T.raises(function() attn(q, rand({ 2, 3, 6, 5 }), v, true, 1) end,
           'q [2, 3, 5, 4], k [2, 3, 6, 5] and v [2, 3, 6, 4] must agree in B, H and D')
  T.raises(function() attn(q, rand({ 2, 2, 6, 4 }), v, true, 1) end, 'must agree in B, H and D')
  T.raises(function() attn(q, k, rand({ 2, 3, 7, 4 }), true, 1) end,
           'k [2, 3, 6, 4] and v [2, 3, 7, 4] must have the same number of keys S')
  T.raises(function()
    core.check(C.tide_attention(q._c, k._c, v._c, nil, 2, 0, 1, slot[1], slot[2]))
  end, 'causal must be 0 or 1, got 2')
  T.raises(function()
    core.check(C.tide_attention(q._c, k._c, v._c, nil, 1, 0, 1, nil, slot[2]))
  end, 'no output slot')
  local out, lse = attn(q, k, v, true, 1)
  local dout = rand({ 2, 3, 5, 4 })
  T.raises(function() attn_bwd(rand({ 2, 3, 5, 3 }), q, k, v, out, lse, true, 1) end,
           'dout has shape [2, 3, 5, 3], expected q\'s shape [2, 3, 5, 4]')
  T.raises(function() attn_bwd(dout, q, k, v, out:narrow(3, 1, 4), lse, true, 1) end, 'out has shape [2, 3, 4, 4]')
  T.raises(function() attn_bwd(dout, q, k, v, out, lse:narrow(3, 1, 4), true, 1) end,
           'lse has shape [2, 3, 4], expected [B, H, T] = [2, 3, 5]')
  T.raises(function() attn_bwd(dout:to('f64'), q, k, v, out, lse, true, 1) end, 'dout and out must have q\'s dtype f32')
  T.raises(function() attn_bwd(dout, q, k, v, out, lse:to('i64'), true, 1) end, 'lse must be a floating-point tensor')
  T.raises(function() attn_bwd(dout, q, nil, v, out, lse, true, 1) end, 'attention_backward: expected a tensor, got nil')
  T.raises(function() attn_bwd(dout, q, k, v, nil, lse, true, 1) end, 'attention_backward: expected a tensor, got nil')
  T.raises(function() attn_bwd(dout:view(2, 3, 20), q, k, v, out, lse, true, 1) end, 'dout must be 4-d')
end)

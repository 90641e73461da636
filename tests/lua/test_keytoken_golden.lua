-- tide.losses.keytoken_weighted_loss against the Hugging Face course's
-- PyTorch function on fixed logits: tests/ref/keytoken/keytoken.safetensors,
-- made by tools/make_keytoken_golden.py (which holds the course's code as
-- printed). The loss and its gradient with respect to the logits are compared
-- as wholes: max|tide - ref| / max|ref|.
local T = require 'tide.testing'

local ref = tide.io.load_safetensors('tests/ref/keytoken/keytoken.safetensors')

local function rel_err(a, b)
  local scale = b:abs():max():item()
  if scale == 0 then scale = 1 end
  return (a:to('f64') - b:to('f64')):abs():max():item() / scale
end

local function expect_close(name, a, b, tol)
  T.eq(table.concat(a:size(), 'x'), table.concat(b:size(), 'x'), name .. ' shape')
  local e = rel_err(a, b)
  if not (e <= tol) then error(('%s: relative error %.3g exceeds %.0e'):format(name, e, tol), 2) end
end

local ncases = 0
while ref[('case%d.loss'):format(ncases + 1)] do ncases = ncases + 1 end

T.test('the golden file holds the four cases', function()
  T.eq(ncases, 4)
end)

for i = 1, ncases do
  T.test(('case %d: the loss and its gradient match the course\'s function'):format(i), function()
    local c = function(k) return ref[('case%d.%s'):format(i, k)] end
    local logits = c('logits'):clone():requires_grad_(true)
    local ids = c('keytoken_ids'):tolist()
    local loss = tide.losses.keytoken_weighted_loss(c('inputs'), logits, ids, c('alpha'):item())
    expect_close('loss', loss:view(1), c('loss'), 1e-6)
    loss:backward()
    expect_close('gradient', logits.grad, c('grad'), 1e-5)
  end)
end

T.test('the weights count keytokens over the whole sample', function()
  -- the same logits with the keytokens left out give the plain mean of the
  -- per-sample losses; case 1's first sample has 3 keytokens, its third 1
  local c = function(k) return ref['case1.' .. k] end
  local plain = tide.losses.keytoken_weighted_loss(c('inputs'), c('logits'), {}, 1.0):item()
  local weighted = tide.losses.keytoken_weighted_loss(c('inputs'), c('logits'), c('keytoken_ids'):tolist(), 1.0):item()
  T.truthy(weighted > plain, ('weighted %g > plain %g'):format(weighted, plain))
  local B, Tn, V = 3, 9, 11
  local per = tide.F.cross_entropy(c('logits'):narrow(2, 1, Tn - 1):reshape(B * (Tn - 1), V),
    c('inputs'):narrow(2, 2, Tn - 1):reshape(B * (Tn - 1)), { reduction = 'none' }):view(B, Tn - 1):mean(2):tolist()
  T.close(plain, (per[1] + per[2] + per[3]) / 3, { rtol = 1e-6 })
  T.close(weighted, (4 * per[1] + per[2] + 2 * per[3]) / 3, { rtol = 1e-6 })
end)

T.test('bad arguments are errors that say what is wrong', function()
  local ids, logits = tide.zeros(2, 3):long(), tide.zeros(2, 3, 5)
  T.raises(function() tide.losses.keytoken_weighted_loss(ids, tide.zeros(2, 4, 5), { 1 }) end, 'inputs [2, 3] and logits [2, 4, 5]')
  T.raises(function() tide.losses.keytoken_weighted_loss(ids, logits, { 'plt' }) end, 'keytoken_ids[1] is a string')
  T.raises(function() tide.losses.keytoken_weighted_loss(ids, logits, 3) end, 'list of ids')
  T.raises(function() tide.losses.keytoken_weighted_loss(ids, logits, { 1 }, '2') end, 'alpha must be a number')
end)

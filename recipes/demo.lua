-- The demo recipe: least-squares regression fitted by gradient descent,
-- written with tide tensors only (random data, matmul, pointwise ops,
-- reductions, views). Until the training recipes land, this is the main job.
--
--   tide recipes/demo.lua --n=4096 --dim=64 --steps=200 --lr=0.1 --seed=0
local args = tide.args
local n, d = args.n or 4096, args.dim or 64
local steps, lr = args.steps or 200, args.lr or 0.1
tide.manual_seed(args.seed or 0)

local t0 = tide.clock()

-- data: y = X w* + small noise
local X = tide.randn(n, d)
local w_true = tide.randn(d, 1)
local y = X:matmul(w_true) + tide.randn(n, 1) * 0.01

local w = tide.zeros(d, 1)
local loss
for step = 1, steps do
  local err = X:matmul(w) - y
  loss = (err * err):mean():item()
  -- d/dw mean((Xw - y)^2) = 2/n X^T (Xw - y); X:t() is a view, not a copy
  local grad = X:t():matmul(err) * (2 / n)
  w:sub_(grad * lr)
  if step == 1 or step % 25 == 0 or step == steps then
    print(('step %4d  loss %.6e'):format(step, loss))
  end
end

local gap = (w - w_true):abs():max():item()
print(('max |w - w*| = %.3e after %d steps (%.2f s on %d threads)')
  :format(gap, steps, tide.clock() - t0, tide.get_num_threads()))
print('first weights, fitted then true:')
print(tide.cat({ w:narrow(1, 1, 4):t(), w_true:narrow(1, 1, 4):t() }, 1))
if gap > 1e-2 then
  io.stderr:write('demo: the fit did not converge\n')
  os.exit(1, true)  -- closing the state frees every tensor first (leak checks stay meaningful)
end

-- The fused classifier on a GPU: the plain (GPT-2) loss and the keytoken-
-- weighted loss, forward and backward from bf16 logits on cuda at GPT-2
-- 124M's sizes (N = 16 x 1024 positions, V = 50257), timed in alternating
-- rounds; prints both, their ratio and the bandwidth the plain one reached
-- against the 3 x N x V x 2 bytes it must move. bench/loss_keytoken.lua does
-- the work; this file only sets its defaults.
--   tide bench/gpu/loss.lua [--N=16384] [--V=50257] [--T=1024] [--dtype=bf16] [--reps=7]
-- Under the emulator: tests/tide-cudaemu bench/gpu/loss.lua --N=64 --V=300 --T=32
local args = tide.args or {}
args.device = args.device or 'cuda'
args.dtype = args.dtype or 'bf16'
args.N = args.N or 16 * 1024
args.V = args.V or 50257
local here = debug.getinfo(1, 'S').source:match('^@(.*/)') or './'
dofile(here .. '../loss_keytoken.lua')

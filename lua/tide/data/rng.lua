-- A small seeded generator (splitmix64) for the data pipeline's shuffles and
-- splits: deterministic for a seed on every machine, and separate from
-- tide's global RNG so that data order never shifts a model's initialisation.
local ffi = require 'ffi'
local bit = require 'bit'

local M = {}
local Rng = {}
Rng.__index = Rng

local GOLDEN = 0x9E3779B97F4A7C15ULL

local function mix(z)
  z = bit.bxor(z, bit.rshift(z, 30)) * 0xBF58476D1CE4E5B9ULL
  z = bit.bxor(z, bit.rshift(z, 27)) * 0x94D049BB133111EBULL
  return bit.bxor(z, bit.rshift(z, 31))
end

local function u64(x)
  if type(x) == 'number' then
    if x ~= x or x % 1 ~= 0 or x < 0 or x >= 2^63 then
      error('rng: a seed must be a non-negative integer, got ' .. tostring(x), 3)
    end
  end
  return ffi.new('uint64_t', x)
end

-- A generator whose stream is fixed by seed (a non-negative integer).
function M.new(seed)
  return setmetatable({ s = u64(seed or 0) }, Rng)
end

-- A generator for stream k (an epoch, a worker) of seed: independent streams
-- from one seed, each fixed by (seed, k) alone.
function M.derive(seed, k)
  local s = mix(mix(u64(seed) + GOLDEN) + u64(k) * 0xD1B54A32D192ED03ULL)
  return setmetatable({ s = s }, Rng)
end

-- The next 64 random bits, as uint64 cdata.
function Rng:next64()
  self.s = self.s + GOLDEN
  return mix(self.s)
end

-- A uniform integer in [0, n), n >= 1 (the bias of a plain modulo is below
-- n / 2^64, far below anything a shuffle can show).
function Rng:below(n)
  return tonumber(self:next64() % n)
end

-- A uniform number in [0, 1) from 53 random bits.
function Rng:uniform()
  return tonumber(bit.rshift(self:next64(), 11)) / 2^53
end

-- A uniform number in [0, 1) that depends only on (seed, i): for decisions
-- about record i that must not depend on the order of reading.
function M.hash_uniform(seed, i)
  local z = mix(u64(seed) * GOLDEN + u64(i) + GOLDEN)
  return tonumber(bit.rshift(z, 11)) / 2^53
end

return M

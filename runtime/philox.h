/* Philox4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as
   easy as 1, 2, 3", SC'11) and the transforms that turn its words into
   uniform, normal and integer values. Everything here is header-only and
   written for both C and CUDA so a GPU kernel reproduces the CPU streams bit
   for bit; the transforms use only integer ops and IEEE +, -, *, / and sqrt
   (no libm), which are correctly rounded on both sides.

   STREAM LAYOUT (a contract: kernels/cpu/random.c implements it, a CUDA
   kernel must follow it exactly, tests/c/test_philox.c pins it down)

   - Key: the generator's 64-bit seed, key[0] = low 32 bits, key[1] = high.
   - Block b of a call (b = 0, 1, ...) is one Philox call on the counter
     c = generator.offset + b (mod 2^64): ctr[0] = low 32 bits of c,
     ctr[1] = high 32 bits, ctr[2] = ctr[3] = 0 (reserved: a future stream
     kind may set them to stay disjoint from these). It yields words w0..w3.
   - A call fills elements in the logical row-major order of its output,
     whatever the output's strides: element i takes slot i % E of block i / E,
     where E (elements per block) depends on what is drawn:
       uniform f32/bf16/f16   E=4  slot s uses w[s]
       uniform f64            E=2  slot s uses w[2s] (low), w[2s+1] (high)
       normal  f32/bf16/f16   E=4  (w0,w1) give slots 0,1; (w2,w3) slots 2,3
       normal  f64            E=2  (w0,w1) and (w2,w3) give slots 0,1
       randint, range <= 2^32 E=2  slot s uses w[2s] (low), w[2s+1] (high)
       randint, range >  2^32 E=1  w0 lowest .. w3 highest (128 bits)
     Then generator.offset += ceil(numel / E), so consecutive calls never
     reuse a counter. A call's result is independent of thread count.
   - uniform in [low, high): u = (w >> 8) * 2^-24 (f32 family) or
     u = (64-bit word >> 11) * 2^-53 (f64); v = low + u * (high - low) in f64,
     then rounded to the output type (f64 -> f32 -> bf16/f16 for the reduced
     types); a result >= high becomes the largest value of the type below
     high and one < low the smallest at or above low (rounding can cross
     either bound; low and high are doubles).
   - normal: Box-Muller in f64 with u1 in (0, 1], so log never sees 0:
     f32 family: u1 = (w0 + 1) * 2^-32, angle fraction f = w1 * 2^-32;
     f64: u1 = ((64-bit (w1:w0) >> 11) + 1) * 2^-53, f = ((w3:w2) >> 11) * 2^-53.
     r = sqrt(-2 log u1) with tide_philox_neglog, (c, s) = cos/sin(2 pi f)
     with tide_philox_sincos2pi; slot 0 = mean + std * r*c, slot 1 =
     mean + std * r*s (f64), then rounded to the output type.
   - randint in [low, high), range r = high - low as uint64: the offset is
     floor(x * r / 2^64) for the 64-bit x (range <= 2^32) or floor(x * r / 2^128)
     for the 128-bit x (larger ranges); low + offset wraps like uint64. Each
     value's probability is within 2^-64 (resp. 2^-128) of 1/r, a relative
     bias at most r * 2^-64 <= 2^-32 (resp. <= 2^-64), far below what any
     test of a training run can see, and the counter use stays fixed.
   - multinomial (weights read as f64, rows of K weights, n samples), E=2,
     slot s of block b giving x = (w[2s+1]:w[2s]) >> 11 (53 bits):
     with replacement, sample j of row k is element i = k*n + j, takes
     u = x * 2^-53 and picks the first category c whose running sum cdf[c]
     (summed left to right in f64) is > u * cdf[K-1] (the last nonzero
     category when none is, which rounding can cause).
     Without replacement, element i = k*K + c belongs to category c of row k;
     when w[c] > 0 it gets key tide_philox_neglog(x + 1, 53) / w[c] (an
     Exp(1) variate over the weight); the n smallest keys, ties to the lower
     index, in increasing key order are the samples (exponential races: the
     same law as drawing one at a time and renormalising).
     Offset += ceil(rows*n/2) resp. ceil(rows*K/2); nothing when n or rows is 0.
   - dropout (kernels/cpu/nn_dropout.c), E=4: element i in logical row-major
     order takes the f32 uniform draw above (slot i%4 of block i/4,
     u = (w >> 8) * 2^-24) and is dropped when u < p; offset += ceil(n/4).
     p = 0 and p = 1 draw nothing and leave the offset unchanged.

   Floating-point evaluation: each +, -, *, / must round on its own. C code
   must not let the compiler fuse a*b+c into an FMA: this header turns FP
   contraction off for its functions, and kernels/cpu/random.c compiles with
   contraction off for the arithmetic it does itself; CUDA uses the
   __dmul_rn/__dadd_rn intrinsics (which nvcc never contracts) through
   TIDE_PHILOX_MUL/ADD, and CUDA code computing low + u*(high-low) or
   mean + std*z must do the same. Doubles round to float to nearest even,
   floats to bf16/f16 likewise (runtime/dtype.h's conversions). */
#ifndef TIDE_PHILOX_H
#define TIDE_PHILOX_H
#include <stdint.h>
#include "dtype.h"

#if defined(__CUDACC__)
#define TIDE_PHILOX_FN static __host__ __device__ __forceinline__
#else
#define TIDE_PHILOX_FN static inline
#endif

#if defined(__CUDA_ARCH__)
#define TIDE_PHILOX_MUL(a, b) __dmul_rn((a), (b))
#define TIDE_PHILOX_ADD(a, b) __dadd_rn((a), (b))
#define TIDE_PHILOX_SUB(a, b) __dsub_rn((a), (b))
#define TIDE_PHILOX_DIV(a, b) __ddiv_rn((a), (b))
#define TIDE_PHILOX_SQRT(a) __dsqrt_rn(a)
#else
#define TIDE_PHILOX_MUL(a, b) ((a) * (b))
#define TIDE_PHILOX_ADD(a, b) ((a) + (b))
#define TIDE_PHILOX_SUB(a, b) ((a) - (b))
#define TIDE_PHILOX_DIV(a, b) ((a) / (b))
#define TIDE_PHILOX_SQRT(a) __builtin_sqrt(a)
#endif

#if !defined(__CUDACC__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif
/* clang contracts only inside one expression, and only when told to or on
   FMA targets; the pragma inside each function below switches that off. */
#if defined(__clang__) && !defined(__CUDACC__)
#define TIDE_PHILOX_NO_CONTRACT _Pragma("STDC FP_CONTRACT OFF")
#else
#define TIDE_PHILOX_NO_CONTRACT
#endif

/* Philox's round multipliers and key-schedule (Weyl) increments. */
#define TIDE_PHILOX_M0 0xD2511F53u
#define TIDE_PHILOX_M1 0xCD9E8D57u
#define TIDE_PHILOX_W0 0x9E3779B9u
#define TIDE_PHILOX_W1 0xBB67AE85u

/* One Philox4x32-10 evaluation: 4 random words from a 128-bit counter and a 64-bit key. */
TIDE_PHILOX_FN void tide_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
  uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
  uint32_t k0 = key[0], k1 = key[1];
  for (int r = 0; r < 10; r++) {
    uint64_t p0 = (uint64_t)TIDE_PHILOX_M0 * c0, p1 = (uint64_t)TIDE_PHILOX_M1 * c2;
    uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += TIDE_PHILOX_W0;  /* the bump after the last round is unused */
    k1 += TIDE_PHILOX_W1;
  }
  out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

/* Block `index` of the stream (seed, offset): the layout's counter offset + index, words 2-3 zero. */
TIDE_PHILOX_FN void tide_philox_block(uint64_t seed, uint64_t offset, uint64_t index, uint32_t out[4]) {
  uint64_t c = offset + index;
  uint32_t ctr[4] = {(uint32_t)c, (uint32_t)(c >> 32), 0u, 0u};
  uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  tide_philox4x32_10(ctr, key, out);
}

/* High 64 bits of the 128-bit product a * b. */
TIDE_PHILOX_FN uint64_t tide_philox_mulhi64(uint64_t a, uint64_t b) {
#if defined(__CUDA_ARCH__)
  return __umul64hi(a, b);
#elif defined(__SIZEOF_INT128__)
  __extension__ typedef unsigned __int128 u128;
  return (uint64_t)(((u128)a * b) >> 64);
#else
  uint64_t al = (uint32_t)a, ah = a >> 32, bl = (uint32_t)b, bh = b >> 32;
  uint64_t ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
  uint64_t mid = (ll >> 32) + (uint32_t)lh + (uint32_t)hl;
  return hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
#endif
}

/* floor(x * r / 2^64) for 64-bit x: a value in [0, r) (randint, range <= 2^32). */
TIDE_PHILOX_FN uint64_t tide_philox_bounded64(uint64_t x, uint64_t r) { return tide_philox_mulhi64(x, r); }

/* floor(x * r / 2^128) for the 128-bit x = xh:xl: a value in [0, r) (randint, wide ranges). */
TIDE_PHILOX_FN uint64_t tide_philox_bounded128(uint64_t xh, uint64_t xl, uint64_t r) {
  /* x*r = xh*r*2^64 + xl*r; only the carry out of the middle 64 bits reaches
     the top word, and xl*r's low half cannot add one (it is < 2^64) */
  uint64_t a_hi = tide_philox_mulhi64(xh, r), a_lo = xh * r;
  uint64_t b_hi = tide_philox_mulhi64(xl, r);
  uint64_t mid = a_lo + b_hi;
  return a_hi + (mid < a_lo ? 1u : 0u);
}

/* 2^e as a double for -1022 <= e <= 1023, exactly, without libm. */
TIDE_PHILOX_FN double tide_philox_pow2(int e) {
  uint64_t bits = (uint64_t)(e + 1023) << 52;
#if defined(__CUDA_ARCH__)
  return __longlong_as_double((long long)bits);
#else
  union { uint64_t u; double d; } v;
  v.u = bits;
  return v.d;
#endif
}

/* Position of the highest set bit of x (x != 0). */
TIDE_PHILOX_FN int tide_philox_msb(uint64_t x) {
#if defined(__CUDA_ARCH__)
  return 63 - __clzll((long long)x);
#else
  return 63 - __builtin_clzll(x);
#endif
}

/* -log(n * 2^-p) for 1 <= n <= 2^p, p <= 53: Box-Muller's radius term and the
   exponential keys. Error a few ulp; the same bits on CPU and GPU. */
TIDE_PHILOX_FN double tide_philox_neglog(uint64_t n, int p) {
  TIDE_PHILOX_NO_CONTRACT
  /* n*2^-p = m * 2^e with m in [sqrt(1/2), sqrt(2)); both steps are exact */
  int b = tide_philox_msb(n);
  double m = TIDE_PHILOX_MUL((double)n, tide_philox_pow2(-b));
  int e = b - p;
  if (m > 1.4142135623730951) {
    m = TIDE_PHILOX_MUL(m, 0.5);
    e += 1;
  }
  /* log m = 2 atanh(s), s = (m-1)/(m+1), |s| <= 0.1716: the odd series to
     s^23 leaves a truncation error below 2^-60 relative */
  double f = TIDE_PHILOX_SUB(m, 1.0);
  double s = TIDE_PHILOX_DIV(f, TIDE_PHILOX_ADD(m, 1.0));
  double z = TIDE_PHILOX_MUL(s, s);
  double q = 1.0 / 23.0;
  q = TIDE_PHILOX_ADD(1.0 / 21.0, TIDE_PHILOX_MUL(z, q));
  q = TIDE_PHILOX_ADD(1.0 / 19.0, TIDE_PHILOX_MUL(z, q));
  q = TIDE_PHILOX_ADD(1.0 / 17.0, TIDE_PHILOX_MUL(z, q));
  q = TIDE_PHILOX_ADD(1.0 / 15.0, TIDE_PHILOX_MUL(z, q));
  q = TIDE_PHILOX_ADD(1.0 / 13.0, TIDE_PHILOX_MUL(z, q));
  q = TIDE_PHILOX_ADD(1.0 / 11.0, TIDE_PHILOX_MUL(z, q));
  q = TIDE_PHILOX_ADD(1.0 / 9.0, TIDE_PHILOX_MUL(z, q));
  q = TIDE_PHILOX_ADD(1.0 / 7.0, TIDE_PHILOX_MUL(z, q));
  q = TIDE_PHILOX_ADD(1.0 / 5.0, TIDE_PHILOX_MUL(z, q));
  q = TIDE_PHILOX_ADD(1.0 / 3.0, TIDE_PHILOX_MUL(z, q));
  /* log m = 2s + 2s*z*q; 2s is exact */
  double two_s = TIDE_PHILOX_MUL(2.0, s);
  double logm = TIDE_PHILOX_ADD(two_s, TIDE_PHILOX_MUL(two_s, TIDE_PHILOX_MUL(z, q)));
  /* e*ln2 split in two (Cody-Waite): e*LN2_HI is exact for |e| < 2^11 */
  double de = (double)e;
  const double LN2_HI = 6.93147180369123816490e-01, LN2_LO = 1.90821492927058770002e-10;
  double lg = TIDE_PHILOX_ADD(TIDE_PHILOX_MUL(de, LN2_HI), TIDE_PHILOX_ADD(TIDE_PHILOX_MUL(de, LN2_LO), logm));
  return TIDE_PHILOX_SUB(0.0, lg);  /* +0, not -0, when n = 2^p */
}

/* cos and sin of 2*pi*(n * 2^-p) for 0 <= n < 2^p, 3 <= p <= 53. The angle is
   reduced exactly in integers to a quarter turn k plus t in [-1/8, 1/8] turn,
   so only the polynomials round. */
TIDE_PHILOX_FN void tide_philox_sincos2pi(uint64_t n, int p, double *c, double *s) {
  TIDE_PHILOX_NO_CONTRACT
  uint64_t quarter = (uint64_t)1 << (p - 2);
  uint64_t k = (n + (quarter >> 1)) >> (p - 2);         /* nearest quarter turn, 0..4 */
  int64_t t = (int64_t)n - (int64_t)(k * quarter);      /* in [-quarter/2, quarter/2) */
  double a = TIDE_PHILOX_MUL(TIDE_PHILOX_MUL((double)t, tide_philox_pow2(2 - p)), 1.5707963267948966);
  /* Taylor series on |a| <= pi/4: the first omitted terms are below 2^-60 */
  double z = TIDE_PHILOX_MUL(a, a);
  double ps = -1.0 / 121645100408832000.0;               /* -1/19! */
  ps = TIDE_PHILOX_ADD(1.0 / 355687428096000.0, TIDE_PHILOX_MUL(z, ps));   /* 1/17! */
  ps = TIDE_PHILOX_ADD(-1.0 / 1307674368000.0, TIDE_PHILOX_MUL(z, ps));    /* 1/15! */
  ps = TIDE_PHILOX_ADD(1.0 / 6227020800.0, TIDE_PHILOX_MUL(z, ps));        /* 1/13! */
  ps = TIDE_PHILOX_ADD(-1.0 / 39916800.0, TIDE_PHILOX_MUL(z, ps));         /* 1/11! */
  ps = TIDE_PHILOX_ADD(1.0 / 362880.0, TIDE_PHILOX_MUL(z, ps));            /* 1/9! */
  ps = TIDE_PHILOX_ADD(-1.0 / 5040.0, TIDE_PHILOX_MUL(z, ps));             /* 1/7! */
  ps = TIDE_PHILOX_ADD(1.0 / 120.0, TIDE_PHILOX_MUL(z, ps));               /* 1/5! */
  ps = TIDE_PHILOX_ADD(-1.0 / 6.0, TIDE_PHILOX_MUL(z, ps));                /* 1/3! */
  double sa = TIDE_PHILOX_ADD(a, TIDE_PHILOX_MUL(TIDE_PHILOX_MUL(a, z), ps));
  double pc = -1.0 / 6402373705728000.0;                 /* -1/18! */
  pc = TIDE_PHILOX_ADD(1.0 / 20922789888000.0, TIDE_PHILOX_MUL(z, pc));    /* 1/16! */
  pc = TIDE_PHILOX_ADD(-1.0 / 87178291200.0, TIDE_PHILOX_MUL(z, pc));      /* 1/14! */
  pc = TIDE_PHILOX_ADD(1.0 / 479001600.0, TIDE_PHILOX_MUL(z, pc));         /* 1/12! */
  pc = TIDE_PHILOX_ADD(-1.0 / 3628800.0, TIDE_PHILOX_MUL(z, pc));          /* 1/10! */
  pc = TIDE_PHILOX_ADD(1.0 / 40320.0, TIDE_PHILOX_MUL(z, pc));             /* 1/8! */
  pc = TIDE_PHILOX_ADD(-1.0 / 720.0, TIDE_PHILOX_MUL(z, pc));              /* 1/6! */
  pc = TIDE_PHILOX_ADD(1.0 / 24.0, TIDE_PHILOX_MUL(z, pc));                /* 1/4! */
  pc = TIDE_PHILOX_ADD(-0.5, TIDE_PHILOX_MUL(z, pc));                      /* 1/2! */
  double ca = TIDE_PHILOX_ADD(1.0, TIDE_PHILOX_MUL(z, pc));
  switch (k & 3) {
    case 0: *c = ca; *s = sa; break;
    case 1: *c = -sa; *s = ca; break;
    case 2: *c = -ca; *s = -sa; break;
    default: *c = sa; *s = -ca; break;
  }
}

/* Uniform in [0, 1) with 24 random bits, from one word (f32 family). */
TIDE_PHILOX_FN double tide_philox_u24(uint32_t w) { return (double)(w >> 8) * (1.0 / 16777216.0); }

/* Uniform in [0, 1) with 53 random bits, from two words (lo, hi) (f64). */
TIDE_PHILOX_FN double tide_philox_u53(uint32_t lo, uint32_t hi) {
  uint64_t x = ((uint64_t)hi << 32 | lo) >> 11;
  return (double)x * (1.0 / 9007199254740992.0);
}

/* Two standard normals from one Box-Muller pair, the f32-family layout (32-bit u1, u2). */
TIDE_PHILOX_FN void tide_philox_normal2_w32(uint32_t w0, uint32_t w1, double *z0, double *z1) {
  TIDE_PHILOX_NO_CONTRACT
  double r = TIDE_PHILOX_SQRT(TIDE_PHILOX_MUL(2.0, tide_philox_neglog((uint64_t)w0 + 1, 32)));
  double c, s;
  tide_philox_sincos2pi(w1, 32, &c, &s);
  *z0 = TIDE_PHILOX_MUL(r, c);
  *z1 = TIDE_PHILOX_MUL(r, s);
}

/* Two standard normals from one block, the f64 layout (53-bit u1 from w0:w1, angle from w2:w3). */
TIDE_PHILOX_FN void tide_philox_normal2_w64(const uint32_t w[4], double *z0, double *z1) {
  TIDE_PHILOX_NO_CONTRACT
  uint64_t a = ((uint64_t)w[1] << 32 | w[0]) >> 11, b = ((uint64_t)w[3] << 32 | w[2]) >> 11;
  double r = TIDE_PHILOX_SQRT(TIDE_PHILOX_MUL(2.0, tide_philox_neglog(a + 1, 53)));
  double c, s;
  tide_philox_sincos2pi(b, 53, &c, &s);
  *z0 = TIDE_PHILOX_MUL(r, c);
  *z1 = TIDE_PHILOX_MUL(r, s);
}

#if !defined(__CUDACC__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

/* v rounded to the nearest value of float dtype dt (through f32 for bf16
   and f16), as a double: how a uniform draw is stored. */
TIDE_PHILOX_FN double tide_philox_round_to(double v, int32_t dt) {
  switch (dt) {
    case TIDE_F32: return (double)(float)v;
    case TIDE_BF16: return (double)tide_bf16_to_f32(tide_f32_to_bf16((float)v));
    case TIDE_F16: return (double)tide_f16_to_f32(tide_f32_to_f16((float)v));
    default: return v;
  }
}

#include <math.h>
/* (host) The neighbour of v, a value of float dtype dt, one step toward +inf
   (dir > 0) or -inf. */
static inline double tide_philox_step_to(double v, int32_t dt, int dir) {
  if (dt == TIDE_F64) return nextafter(v, dir > 0 ? INFINITY : -INFINITY);
  if (dt == TIDE_F32) return nextafterf((float)v, dir > 0 ? INFINITY : -INFINITY);
  /* bf16/f16 bits: sign-magnitude, so a step is +-1 on the magnitude */
  uint16_t h = dt == TIDE_BF16 ? tide_f32_to_bf16((float)v) : tide_f32_to_f16((float)v);
  uint16_t mag = h & 0x7fffu, sign = h & 0x8000u;
  if (mag == 0) h = (uint16_t)(dir > 0 ? 0x0001u : 0x8001u);
  else if ((dir > 0) == (sign == 0)) h = (uint16_t)(h + 1);
  else h = (uint16_t)(h - 1);
  return dt == TIDE_BF16 ? tide_bf16_to_f32(h) : tide_f16_to_f32(h);
}

/* (host) The smallest (*bottom) and largest (*top) values of float dtype dt
   in [low, high): a uniform draw that rounds across a bound becomes one of
   them. Returns -1 when no value of dt lies in [low, high), else 0. */
static inline int tide_philox_uniform_bounds(double low, double high, int32_t dt, double *bottom, double *top) {
  double t = tide_philox_round_to(high, dt), b = tide_philox_round_to(low, dt);
  while (t >= high) t = tide_philox_step_to(t, dt, -1);
  while (b < low) b = tide_philox_step_to(b, dt, 1);
  *top = t;
  *bottom = b;
  return b >= high ? -1 : 0;
}

#endif

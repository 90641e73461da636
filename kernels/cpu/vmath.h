/* Vectorisable f32 math for the elementwise kernels. libm's expf is a call
   per element (about 3 ns here, seven times the memory floor of an
   elementwise op); this version is branch-free straight-line arithmetic that
   the compiler vectorises inside `omp simd` loops. Within 2 ulp of the
   correctly rounded result over the whole f32 range (tests/c/test_vmath.c
   checks every 97th f32 against exp in double). */
#ifndef TIDE_VMATH_H
#define TIDE_VMATH_H
#include <stdint.h>
#include <string.h>

/* 2^k for an integer k in [-126, 127], built from its exponent bits
   (unsigned arithmetic: no overflow for any k). */
static inline float tide_pow2i(int32_t k) {
  uint32_t bits = ((uint32_t)k + 127u) << 23;
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

/* e^x: x = k ln2 + r with |r| <= ln2/2 (Cody-Waite split of ln2 so k ln2 is
   exact), e^r by its Taylor series to r^7 (truncation below 4e-9 relative),
   then scaled by 2^k in two steps so results near overflow and in the
   subnormal range come out right. Written without branches, selects on NaN
   or float-to-int conversions so GCC vectorises it under default flags:
   the clamps keep NaN (comparisons with NaN are false) and NaN then flows
   through the polynomial; +-inf give inf and 0. */
static inline float tide_expf(float x) {
  float xc = x < -104.0f ? -104.0f : x;
  xc = xc > 89.0f ? 89.0f : xc;
  /* round to nearest by adding 1.5 * 2^23: the integer lands in the low
     mantissa bits, read back as k without a conversion */
  float t = xc * 1.44269504088896341f + 12582912.0f;
  uint32_t tb;
  memcpy(&tb, &t, 4);
  int32_t k = (int32_t)(tb - 0x4B400000u);
  float kf = t - 12582912.0f;
  float r = xc - kf * 0.693359375f;       /* ln2's high part: exact product */
  r = r - kf * -2.12194440054690583e-4f;  /* ln2 - 0.693359375 */
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t k1 = k >> 1, k2 = k - k1;
  return p * tide_pow2i(k1) * tide_pow2i(k2);
}

/* 1 / (1 + e^-x), exactly 0 and 1 in the saturated tails. */
static inline float tide_sigmoidf(float x) { return 1.0f / (1.0f + tide_expf(-x)); }

#endif

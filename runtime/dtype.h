/* Element types: sizes, names, promotion and the scalar conversions that
   bf16/f16 (storage-only types on the CPU) need. */
#ifndef TIDE_DTYPE_H
#define TIDE_DTYPE_H
#include "tide.h"
#include <math.h>
#include <string.h>

/* Every helper here is also a device function in the CUDA kernels, so a
   conversion gives the same bits on both backends. */
#if defined(__CUDACC__)
#define TIDE_DTYPE_FN static __host__ __device__ __forceinline__
#else
#define TIDE_DTYPE_FN static inline
#endif

/* True for f32, f64, bf16, f16. */
TIDE_DTYPE_FN int tide_is_float(int32_t dt) { return dt >= TIDE_F32 && dt <= TIDE_F16; }
/* True for a dtype value inside the enum. */
TIDE_DTYPE_FN int tide_dtype_valid(int32_t dt) { return dt >= 0 && dt < TIDE_NUM_DTYPES; }

/* bf16 from f32, rounding to nearest even; NaN stays NaN. */
TIDE_DTYPE_FN uint16_t tide_f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

/* f32 from bf16 (exact). */
TIDE_DTYPE_FN float tide_bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* f32 from IEEE half (exact). */
TIDE_DTYPE_FN float tide_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ffu, u;
  if (exp == 0x1f) {
    u = sign | 0x7f800000u | (man << 13);
  } else if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else {  /* subnormal: normalise */
      int e = -1;
      do { man <<= 1; e++; } while (!(man & 0x400u));
      u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
    }
  } else {
    u = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* IEEE half from f32, rounding to nearest even, overflow to infinity. */
TIDE_DTYPE_FN uint16_t tide_f32_to_f16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return sign | 0x7e00u;           /* NaN */
  if (a >= 0x477ff000u) return sign | 0x7c00u;          /* overflow (>= 65520) */
  if (a < 0x38800000u) {                                /* subnormal or zero */
    if (a < 0x33000000u) return sign;                   /* below half the smallest subnormal */
    uint32_t man = (a & 0x7fffffu) | 0x800000u;
    int shift = 126 - (int)(a >> 23);                   /* 14..24 */
    uint32_t r = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u))) r++;
    return sign | (uint16_t)r;
  }
  uint32_t r = ((a >> 13) - ((127 - 15) << 10));
  uint32_t rem = a & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) r++;
  return sign | (uint16_t)r;
}

/* Saturating float-to-integer conversion (NaN gives 0) so casts never hit UB. */
TIDE_DTYPE_FN int64_t tide_f64_to_i64(double v) {
  if (v != v) return 0;
  if (v >= 9223372036854775807.0) return INT64_MAX;
  if (v <= -9223372036854775808.0) return INT64_MIN;
  return (int64_t)v;
}

/* Reads element p of dtype dt as a double. */
TIDE_DTYPE_FN double tide_load_f64(const char *p, int32_t dt) {
  switch (dt) {
    case TIDE_F32: return *(const float *)p;
    case TIDE_F64: return *(const double *)p;
    case TIDE_BF16: return tide_bf16_to_f32(*(const uint16_t *)p);
    case TIDE_F16: return tide_f16_to_f32(*(const uint16_t *)p);
    case TIDE_I32: return *(const int32_t *)p;
    case TIDE_I64: return (double)*(const int64_t *)p;
    case TIDE_U8: case TIDE_BOOL: return *(const uint8_t *)p;
    case TIDE_U16: return *(const uint16_t *)p;
  }
  return 0;
}

/* Writes v into element p of dtype dt (integers saturate, bool is v != 0). */
TIDE_DTYPE_FN void tide_store_f64(char *p, int32_t dt, double v) {
  switch (dt) {
    case TIDE_F32: *(float *)p = (float)v; break;
    case TIDE_F64: *(double *)p = v; break;
    case TIDE_BF16: *(uint16_t *)p = tide_f32_to_bf16((float)v); break;
    case TIDE_F16: *(uint16_t *)p = tide_f32_to_f16((float)v); break;
    case TIDE_I32: { int64_t i = tide_f64_to_i64(v); *(int32_t *)p = (int32_t)(i > INT32_MAX ? INT32_MAX : i < INT32_MIN ? INT32_MIN : i); break; }
    case TIDE_I64: *(int64_t *)p = tide_f64_to_i64(v); break;
    case TIDE_U8: { int64_t i = tide_f64_to_i64(v); *(uint8_t *)p = (uint8_t)(i < 0 ? 0 : i > 255 ? 255 : i); break; }
    case TIDE_BOOL: *(uint8_t *)p = v != 0; break;
    case TIDE_U16: { int64_t i = tide_f64_to_i64(v); *(uint16_t *)p = (uint16_t)(i < 0 ? 0 : i > 65535 ? 65535 : i); break; }
  }
}

/* Reads element p of an integer or bool dtype as int64 (exact). */
TIDE_DTYPE_FN int64_t tide_load_i64(const char *p, int32_t dt) {
  switch (dt) {
    case TIDE_I32: return *(const int32_t *)p;
    case TIDE_I64: return *(const int64_t *)p;
    case TIDE_U8: case TIDE_BOOL: return *(const uint8_t *)p;
    case TIDE_U16: return *(const uint16_t *)p;
    default: return tide_f64_to_i64(tide_load_f64(p, dt));
  }
}

/* d += s, d of dtype ddt and s of sdt (scatter_add's rule on every backend):
   floats through double (for f32 + f32 the correctly rounded f32 sum),
   integers with wrapping arithmetic in d's width, so overflow is never undefined. */
TIDE_DTYPE_FN void tide_accumulate(char *d, int32_t ddt, const char *s, int32_t sdt) {
  if (tide_is_float(ddt)) {
    tide_store_f64(d, ddt, tide_load_f64(d, ddt) + tide_load_f64(s, sdt));
    return;
  }
  uint64_t v = (uint64_t)tide_load_i64(d, ddt) + (uint64_t)tide_load_i64(s, sdt);
  switch (ddt) {
    case TIDE_I64: *(int64_t *)d = (int64_t)v; break;
    case TIDE_I32: *(int32_t *)d = (int32_t)(uint32_t)v; break;
    case TIDE_U16: *(uint16_t *)d = (uint16_t)v; break;
    case TIDE_BOOL: *(uint8_t *)d = v != 0; break;
    default: *(uint8_t *)d = (uint8_t)v; break;
  }
}

#endif

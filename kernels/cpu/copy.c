/* Copy and cast: every pair of dtypes, any strides, broadcast sources. */
#include "copy.h"
#include "dtype.h"
#include "error.h"
#include "iter.h"
#include <string.h>

/* Loads and stores by dtype. Integer pairs go through int64 (wrapping like a
   C cast), anything touching a float goes through double (saturating). */
static inline double ld_F32(const char *p) { return *(const float *)p; }
static inline double ld_F64(const char *p) { return *(const double *)p; }
static inline double ld_BF16(const char *p) { return tide_bf16_to_f32(*(const uint16_t *)p); }
static inline double ld_F16(const char *p) { return tide_f16_to_f32(*(const uint16_t *)p); }
static inline int64_t ld_I32(const char *p) { return *(const int32_t *)p; }
static inline int64_t ld_I64(const char *p) { return *(const int64_t *)p; }
static inline int64_t ld_U8(const char *p) { return *(const uint8_t *)p; }
static inline int64_t ld_BOOL(const char *p) { return *(const uint8_t *)p != 0; }
static inline int64_t ld_U16(const char *p) { return *(const uint16_t *)p; }

static inline void st_F32(char *p, double v) { *(float *)p = (float)v; }
static inline void st_F64(char *p, double v) { *(double *)p = v; }
static inline void st_BF16(char *p, double v) { *(uint16_t *)p = tide_f32_to_bf16((float)v); }
static inline void st_F16(char *p, double v) { *(uint16_t *)p = tide_f32_to_f16((float)v); }
static inline void st_I32(char *p, double v) { tide_store_f64(p, TIDE_I32, v); }
static inline void st_I64(char *p, double v) { *(int64_t *)p = tide_f64_to_i64(v); }
static inline void st_U8(char *p, double v) { tide_store_f64(p, TIDE_U8, v); }
static inline void st_BOOL(char *p, double v) { *(uint8_t *)p = v != 0; }
static inline void st_U16(char *p, double v) { tide_store_f64(p, TIDE_U16, v); }

static inline void sti_I32(char *p, int64_t v) { *(int32_t *)p = (int32_t)(uint32_t)(uint64_t)v; }
static inline void sti_I64(char *p, int64_t v) { *(int64_t *)p = v; }
static inline void sti_U8(char *p, int64_t v) { *(uint8_t *)p = (uint8_t)v; }
static inline void sti_BOOL(char *p, int64_t v) { *(uint8_t *)p = v != 0; }
static inline void sti_U16(char *p, int64_t v) { *(uint16_t *)p = (uint16_t)v; }
static inline void sti_F32(char *p, int64_t v) { *(float *)p = (float)v; }
static inline void sti_F64(char *p, int64_t v) { *(double *)p = (double)v; }
static inline void sti_BF16(char *p, int64_t v) { *(uint16_t *)p = tide_f32_to_bf16((float)v); }
static inline void sti_F16(char *p, int64_t v) { *(uint16_t *)p = tide_f32_to_f16((float)v); }

#define SZ_F32 4
#define SZ_F64 8
#define SZ_BF16 2
#define SZ_F16 2
#define SZ_I32 4
#define SZ_I64 8
#define SZ_U8 1
#define SZ_BOOL 1
#define SZ_U16 2

#define LOOP(LD, ST, SS, DS)                                                           \
  if (ss == SS && ds == DS) {                                                          \
    for (int64_t i = 0; i < n; i++) ST(d + i * DS, LD(s + i * SS));                    \
  } else {                                                                             \
    for (int64_t i = 0; i < n; i++) ST(d + i * ds, LD(s + i * ss));                    \
  }

/* float source: store through double */
#define FROM_FLOAT(S)                                                                  \
  static void from_##S(char *d, int64_t ds, const char *s, int64_t ss, int64_t n, int32_t dt) { \
    switch (dt) {                                                                      \
      case TIDE_F32: LOOP(ld_##S, st_F32, SZ_##S, 4) break;                            \
      case TIDE_F64: LOOP(ld_##S, st_F64, SZ_##S, 8) break;                            \
      case TIDE_BF16: LOOP(ld_##S, st_BF16, SZ_##S, 2) break;                          \
      case TIDE_F16: LOOP(ld_##S, st_F16, SZ_##S, 2) break;                            \
      case TIDE_I32: LOOP(ld_##S, st_I32, SZ_##S, 4) break;                            \
      case TIDE_I64: LOOP(ld_##S, st_I64, SZ_##S, 8) break;                            \
      case TIDE_U8: LOOP(ld_##S, st_U8, SZ_##S, 1) break;                              \
      case TIDE_BOOL: LOOP(ld_##S, st_BOOL, SZ_##S, 1) break;                          \
      case TIDE_U16: LOOP(ld_##S, st_U16, SZ_##S, 2) break;                            \
    }                                                                                  \
  }

/* integer source: store through int64 */
#define FROM_INT(S)                                                                    \
  static void from_##S(char *d, int64_t ds, const char *s, int64_t ss, int64_t n, int32_t dt) { \
    switch (dt) {                                                                      \
      case TIDE_F32: LOOP(ld_##S, sti_F32, SZ_##S, 4) break;                           \
      case TIDE_F64: LOOP(ld_##S, sti_F64, SZ_##S, 8) break;                           \
      case TIDE_BF16: LOOP(ld_##S, sti_BF16, SZ_##S, 2) break;                         \
      case TIDE_F16: LOOP(ld_##S, sti_F16, SZ_##S, 2) break;                           \
      case TIDE_I32: LOOP(ld_##S, sti_I32, SZ_##S, 4) break;                           \
      case TIDE_I64: LOOP(ld_##S, sti_I64, SZ_##S, 8) break;                           \
      case TIDE_U8: LOOP(ld_##S, sti_U8, SZ_##S, 1) break;                             \
      case TIDE_BOOL: LOOP(ld_##S, sti_BOOL, SZ_##S, 1) break;                         \
      case TIDE_U16: LOOP(ld_##S, sti_U16, SZ_##S, 2) break;                           \
    }                                                                                  \
  }

FROM_FLOAT(F32)
FROM_FLOAT(F64)
FROM_FLOAT(BF16)
FROM_FLOAT(F16)
FROM_INT(I32)
FROM_INT(I64)
FROM_INT(U8)
FROM_INT(BOOL)
FROM_INT(U16)

typedef struct { int32_t sdt, ddt, es; } cast_ctx;

static void cast_loop(char **p, const int64_t *st, int64_t n, void *vctx) {
  const cast_ctx *c = vctx;
  char *d = p[0];
  const char *s = p[1];
  int64_t ds = st[0], ss = st[1];
  if (c->sdt == c->ddt && ds == c->es && ss == c->es) {
    memcpy(d, s, (size_t)(n * c->es));
    return;
  }
  if (c->sdt == c->ddt) {  /* same type, strided: move bytes */
    switch (c->es) {
      case 1: for (int64_t i = 0; i < n; i++) d[i * ds] = s[i * ss]; return;
      case 2: for (int64_t i = 0; i < n; i++) *(uint16_t *)(d + i * ds) = *(const uint16_t *)(s + i * ss); return;
      case 4: for (int64_t i = 0; i < n; i++) *(uint32_t *)(d + i * ds) = *(const uint32_t *)(s + i * ss); return;
      default: for (int64_t i = 0; i < n; i++) *(uint64_t *)(d + i * ds) = *(const uint64_t *)(s + i * ss); return;
    }
  }
  switch (c->sdt) {
    case TIDE_F32: from_F32(d, ds, s, ss, n, c->ddt); break;
    case TIDE_F64: from_F64(d, ds, s, ss, n, c->ddt); break;
    case TIDE_BF16: from_BF16(d, ds, s, ss, n, c->ddt); break;
    case TIDE_F16: from_F16(d, ds, s, ss, n, c->ddt); break;
    case TIDE_I32: from_I32(d, ds, s, ss, n, c->ddt); break;
    case TIDE_I64: from_I64(d, ds, s, ss, n, c->ddt); break;
    case TIDE_U8: from_U8(d, ds, s, ss, n, c->ddt); break;
    case TIDE_BOOL: from_BOOL(d, ds, s, ss, n, c->ddt); break;
    case TIDE_U16: from_U16(d, ds, s, ss, n, c->ddt); break;
  }
}

/* The strided cast-copy: one pass of cast_loop over the merged runs of the
   two operands (byte strides for the iterator). */
static int copy(void *dst, int32_t dst_dtype, const int64_t *dst_stride, const void *src, int32_t src_dtype,
                const int64_t *src_stride, int32_t ndim, const int64_t *shape) {
  cast_ctx c = {src_dtype, dst_dtype, tide_dtype_size(dst_dtype)};
  int64_t st[2][TIDE_MAX_DIMS];
  int32_t ses = tide_dtype_size(src_dtype);
  for (int32_t i = 0; i < ndim; i++) {
    st[0][i] = dst_stride[i] * c.es;
    st[1][i] = src_stride[i] * ses;
  }
  char *data[2] = {dst, (char *)src};
  tide_iter it;
  tide_iter_init_raw(&it, ndim, shape, 2, data, (const int64_t(*)[TIDE_MAX_DIMS])st);
  tide_iter_run(&it, cast_loop, &c, TIDE_GRAIN);
  return 0;
}

const struct tide_copy_kernels tide_cpu_copy = {
  .copy = copy,
  .transfer = NULL, /* CPU memory is host memory */
};

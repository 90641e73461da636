/* Inclusive prefix sums along one dimension (cumsum). Floats keep their dtype
   and accumulate in double, so an f32 cumsum is each exact-ish prefix rounded
   once (a little more accurate than torch's f32 running sum); integers and
   bool give i64 with wrapping 64-bit adds, like torch. */
#include "cumsum.h"
#include "dtype.h"
#include "error.h"
#include "iter.h"
#include <stdlib.h>

/* Columns scanned together when the dim is not the innermost: each step adds
   a whole contiguous row, so memory is streamed rather than gathered. */
#define SCAN_COLS 512

#define CV_F32(v) ((double)(v))
#define CV_F64(v) ((double)(v))
#define CV_BF16(v) ((double)tide_bf16_to_f32(v))
#define CV_F16(v) ((double)tide_f16_to_f32(v))
#define CV_I32(v) ((uint64_t)(int64_t)(v))
#define CV_I64(v) ((uint64_t)(v))
#define CV_U8(v) ((uint64_t)(v))
#define CV_BOOL(v) ((uint64_t)((v) != 0))
#define CV_U16(v) ((uint64_t)(v))

#define ST_F32(v) ((float)(v))
#define ST_F64(v) (v)
#define ST_BF16(v) tide_f32_to_bf16((float)(v))
#define ST_F16(v) tide_f32_to_f16((float)(v))
#define ST_INT(v) ((int64_t)(v))

/* scan_D: x and y point at element [o, 0, c0] of (outer, R, inner) layouts;
   scans n columns over R steps. A is the accumulator type, OT the output's. */
#define SCAN(D, T, A, OT, ST)                                                               \
  static void scan_##D(const char *xp, char *yp, int64_t R, int64_t inner, int64_t n) {     \
    const T *x = (const T *)xp;                                                             \
    OT *y = (OT *)yp;                                                                       \
    if (n == 1) {                                                                           \
      A s = 0;                                                                              \
      for (int64_t i = 0; i < R; i++) { s += CV_##D(x[i * inner]); y[i * inner] = ST(s); } \
      return;                                                                               \
    }                                                                                       \
    A acc[SCAN_COLS];                                                                       \
    for (int64_t j = 0; j < n; j++) acc[j] = 0;                                             \
    for (int64_t i = 0; i < R; i++, x += inner, y += inner)                                 \
      for (int64_t j = 0; j < n; j++) { acc[j] += CV_##D(x[j]); y[j] = ST(acc[j]); }        \
  }

SCAN(F32, float, double, float, ST_F32)
SCAN(F64, double, double, double, ST_F64)
SCAN(BF16, uint16_t, double, uint16_t, ST_BF16)
SCAN(F16, uint16_t, double, uint16_t, ST_F16)
SCAN(I32, int32_t, uint64_t, int64_t, ST_INT)
SCAN(I64, int64_t, uint64_t, int64_t, ST_INT)
SCAN(U8, uint8_t, uint64_t, int64_t, ST_INT)
SCAN(BOOL, uint8_t, uint64_t, int64_t, ST_INT)
SCAN(U16, uint16_t, uint64_t, int64_t, ST_INT)

typedef void (*scan_fn)(const char *, char *, int64_t, int64_t, int64_t);
static const scan_fn SCANS[TIDE_NUM_DTYPES] = {scan_F32, scan_F64, scan_BF16, scan_F16, scan_I32,
                                               scan_I64, scan_U8, scan_BOOL, scan_U16};

/* The scan runs in units of (outer row, column block), spread over threads
   when the work is large. */
static int cumsum(void *out, const void *inp, int32_t dtype, int64_t outer, int64_t R, int64_t inner) {
  int32_t odt = tide_is_float(dtype) ? dtype : TIDE_I64;
  int64_t nch = (inner + SCAN_COLS - 1) / SCAN_COLS, units = outer * nch;
  int64_t ies = tide_dtype_size(dtype), oes = tide_dtype_size(odt);
  scan_fn fn = SCANS[dtype];
  const char *x = inp;
  char *y = out;
  int par = outer * R * inner >= 2 * TIDE_GRAIN && units > 1;
#pragma omp parallel for schedule(static) if (par)
  for (int64_t u = 0; u < units; u++) {
    int64_t ob = u / nch, c0 = (u % nch) * SCAN_COLS;
    int64_t n = inner - c0 < SCAN_COLS ? inner - c0 : SCAN_COLS;
    int64_t off = ob * R * inner + c0;
    fn(x + off * ies, y + off * oes, R, inner, n);
  }
  return 0;
}

const struct tide_cumsum_kernels tide_cpu_cumsum = {
  .cumsum = cumsum,
};

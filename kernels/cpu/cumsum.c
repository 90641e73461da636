/* Inclusive prefix sums along one dimension (cumsum). Floats keep their dtype
   and accumulate in double, so an f32 cumsum is each exact-ish prefix rounded
   once (a little more accurate than torch's f32 running sum); integers and
   bool give i64 with wrapping 64-bit adds, like torch. */
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

int tide_cumsum(const tide_tensor *a, int32_t dim, tide_tensor **out) {
  TIDE_TRY(tide_check_tensor(a, "cumsum"));
  if (!out) return tide_fail("cumsum: no output slot given");
  if (!tide_dtype_valid(a->dtype) || a->ndim < 0 || a->ndim > TIDE_MAX_DIMS)
    return tide_fail("cumsum: corrupt tensor handle (dtype %d, %d dims)", a->dtype, a->ndim);
  int32_t nd = a->ndim;
  if (dim < 0 || dim >= (nd ? nd : 1)) {
    char sb[200];
    return tide_fail("cumsum: dimension %d out of range for a %d-d tensor of shape %s", dim + 1, nd,
                     tide_shape_str(sb, sizeof sb, nd, a->shape));
  }
  int32_t odt = tide_is_float(a->dtype) ? a->dtype : TIDE_I64;
  tide_tensor *o = tide_new(odt, nd, a->shape);
  if (!o) return -1;
  if (a->numel == 0) {
    *out = o;
    return 0;
  }
  /* strided inputs are gathered once so the scan sees (outer, R, inner) rows */
  tide_tensor *src = tide_contiguous_as(a, a->dtype);
  if (!src) {
    tide_tensor_release(o);
    return -1;
  }
  int64_t outer = 1, R = nd ? a->shape[dim] : 1, inner = 1;
  for (int32_t i = 0; i < dim; i++) outer *= a->shape[i];
  for (int32_t i = dim + 1; i < nd; i++) inner *= a->shape[i];
  int64_t nch = (inner + SCAN_COLS - 1) / SCAN_COLS, units = outer * nch;
  int64_t ies = tide_dtype_size(a->dtype), oes = tide_dtype_size(odt);
  scan_fn fn = SCANS[a->dtype];
  const char *x = src->data;
  char *y = o->data;
  int par = a->numel >= 2 * TIDE_GRAIN && units > 1;
#pragma omp parallel for schedule(static) if (par)
  for (int64_t u = 0; u < units; u++) {
    int64_t ob = u / nch, c0 = (u % nch) * SCAN_COLS;
    int64_t n = inner - c0 < SCAN_COLS ? inner - c0 : SCAN_COLS;
    int64_t off = ob * R * inner + c0;
    fn(x + off * ies, y + off * oes, R, inner, n);
  }
  tide_tensor_release(src);
  *out = o;
  return 0;
}

/* Filling: constants and arithmetic ranges. */
#include "fill.h"
#include "dtype.h"
#include "error.h"
#include "iter.h"
#include <string.h>

typedef struct { char bytes[8]; int32_t es; } fill_ctx;

static void fill_loop(char **p, const int64_t *st, int64_t n, void *vctx) {
  const fill_ctx *c = vctx;
  char *d = p[0];
  int64_t s = st[0];
  switch (c->es) {
    case 1: { uint8_t v = (uint8_t)c->bytes[0]; if (s == 1) memset(d, v, (size_t)n); else for (int64_t i = 0; i < n; i++) d[i * s] = (char)v; break; }
    case 2: { uint16_t v; memcpy(&v, c->bytes, 2); for (int64_t i = 0; i < n; i++) *(uint16_t *)(d + i * s) = v; break; }
    case 4: { uint32_t v; memcpy(&v, c->bytes, 4); if (s == 4) for (int64_t i = 0; i < n; i++) ((uint32_t *)d)[i] = v; else for (int64_t i = 0; i < n; i++) *(uint32_t *)(d + i * s) = v; break; }
    default: { uint64_t v; memcpy(&v, c->bytes, 8); if (s == 8) for (int64_t i = 0; i < n; i++) ((uint64_t *)d)[i] = v; else for (int64_t i = 0; i < n; i++) *(uint64_t *)(d + i * s) = v; break; }
  }
}

static int fill(void *dst, int32_t dtype, const int64_t *stride, int32_t ndim, const int64_t *shape, double value) {
  fill_ctx c;
  memset(&c, 0, sizeof c);
  c.es = tide_dtype_size(dtype);
  tide_store_f64(c.bytes, dtype, value);
  int64_t st[1][TIDE_MAX_DIMS];
  for (int32_t i = 0; i < ndim; i++) st[0][i] = stride[i] * c.es;
  char *data[1] = {dst};
  tide_iter it;
  tide_iter_init_raw(&it, ndim, shape, 1, data, (const int64_t(*)[TIDE_MAX_DIMS])st);
  tide_iter_run(&it, fill_loop, &c, TIDE_GRAIN);
  return 0;
}

static int arange(void *dst, int32_t dtype, int64_t n, double start, double step) {
  int32_t es = tide_dtype_size(dtype);
  if (dtype == TIDE_I64) {
    int64_t s0 = tide_f64_to_i64(start), d = tide_f64_to_i64(step);
    for (int64_t i = 0; i < n; i++) ((int64_t *)dst)[i] = (int64_t)((uint64_t)s0 + (uint64_t)i * (uint64_t)d);
  } else {
    for (int64_t i = 0; i < n; i++) tide_store_f64((char *)dst + i * es, dtype, start + (double)i * step);
  }
  return 0;
}

const struct tide_fill_kernels tide_cpu_fill = {
  .fill = fill,
  .arange = arange,
};

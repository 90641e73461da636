/* Filling: constants and arithmetic ranges. */
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

int tide_fill_(tide_tensor *t, double value) {
  TIDE_TRY(tide_check_tensor(t, "fill_"));
  tide_bump_version(t);
  fill_ctx c;
  memset(&c, 0, sizeof c);
  c.es = tide_dtype_size(t->dtype);
  tide_store_f64(c.bytes, t->dtype, value);
  const tide_tensor *ops[1] = {t};
  tide_iter it;
  tide_iter_init(&it, t->ndim, t->shape, 1, ops);
  tide_iter_run(&it, fill_loop, &c, TIDE_GRAIN);
  return 0;
}

int tide_arange(double start, double step, int64_t n, int32_t dtype, tide_tensor **out) {
  if (!tide_dtype_valid(dtype)) return tide_fail("arange: invalid dtype code %d", dtype);
  if (n < 0) return tide_fail("arange: negative length %lld", (long long)n);
  if (step == 0) return tide_fail("arange: step must be nonzero");
  tide_tensor *t = tide_new(dtype, 1, &n);
  if (!t) return -1;
  int32_t es = tide_dtype_size(dtype);
  if (dtype == TIDE_I64) {
    int64_t s0 = tide_f64_to_i64(start), d = tide_f64_to_i64(step);
    for (int64_t i = 0; i < n; i++) ((int64_t *)t->data)[i] = (int64_t)((uint64_t)s0 + (uint64_t)i * (uint64_t)d);
  } else {
    for (int64_t i = 0; i < n; i++) tide_store_f64(t->data + i * es, dtype, start + (double)i * step);
  }
  *out = t;
  return 0;
}

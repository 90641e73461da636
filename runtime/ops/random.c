/* Random fills and sampling: argument checks, the generator's advance and
   output allocation; the values come from the backend's random kernels
   (kernels/random.h), which read the Philox stream without moving it. */
#include "dispatch.h"
#include "random.h"
#include <float.h>
#include <math.h>
#include <stdio.h>

/* Largest finite value of a float dtype. */
static double float_max(int32_t dt) {
  switch (dt) {
    case TIDE_F32: return FLT_MAX;
    case TIDE_BF16: return 3.3895313892515355e38;
    case TIDE_F16: return 65504.0;
    default: return DBL_MAX;
  }
}

enum { FILL_FLOAT, FILL_INT, FILL_BERNOULLI };

/* The Philox blocks a fill of numel elements uses (runtime/philox.h's layout): four f32/bf16/f16 or two f64
   values per block, two randint values (one when the range exceeds 2^32), two bernoulli draws. */
static uint64_t fill_blocks(int kind, int64_t numel, int32_t dtype, uint64_t range) {
  int64_t per = kind == FILL_BERNOULLI ? 2 : kind == FILL_INT ? (range > (UINT64_C(1) << 32) ? 1 : 2) : (dtype == TIDE_F64 ? 2 : 4);
  return (uint64_t)((numel + per - 1) / per);
}

/* Checks shared by every fill after the tensor's own: a generator, no repeated elements
   (`repeats` is the message's tail after "the tensor repeats elements"). */
static int check_fill(const tide_tensor *t, const tide_generator *g, const char *what, const char *repeats) {
  if (!g) return tide_fail("%s: generator is NULL", what);
  for (int32_t d = 0; d < t->ndim; d++)
    if (t->stride[d] == 0 && t->shape[d] > 1) return tide_fail("%s: the tensor repeats elements%s", what, repeats);
  return 0;
}

static const char *const REPEATS =
  " (an expanded view with stride 0); fill a tensor that owns its elements, e.g. after contiguous()";

int tide_rand_(tide_tensor *t, tide_generator *g, double low, double high) {
  const tide_backend *be;
  int32_t dev;
  if (!t) return tide_check_handle(t, "rand_");
  const tide_tensor *ts[1] = {t};
  TIDE_OP_BACKEND(be, dev, random, "rand_", 1, ts);
  TIDE_TRY(check_fill(t, g, "rand_", REPEATS));
  tide_bump_version(t);
  int32_t dt = t->dtype;
  if (!tide_is_float(dt))
    return tide_fail("rand_: uniform values need a floating-point tensor, got %s (use randint or random_ for integers)", tide_dtype_name(dt));
  if (!isfinite(low) || !isfinite(high) || !(low < high))
    return tide_fail("rand_: expected finite low < high, got low=%g, high=%g", low, high);
  double mx = float_max(dt);
  if (low < -mx || high > mx)
    return tide_fail("rand_: [%g, %g) exceeds the range of %s (largest finite value %g)", low, high, tide_dtype_name(dt), mx);
  if (!isfinite(high - low))
    return tide_fail("rand_: the interval [%g, %g) is too wide (high - low overflows f64)", low, high);
  if (!be->random->uniform) return tide_not_implemented("rand_", be);
  TIDE_TRY(be->random->uniform(t->data, t->ndim, t->shape, t->stride, dt, g->seed, g->offset, low, high));
  g->offset += fill_blocks(FILL_FLOAT, t->numel, dt, 0);
  return 0;
}

int tide_randn_(tide_tensor *t, tide_generator *g, double mean, double std) {
  const tide_backend *be;
  int32_t dev;
  if (!t) return tide_check_handle(t, "randn_");
  const tide_tensor *ts[1] = {t};
  TIDE_OP_BACKEND(be, dev, random, "randn_", 1, ts);
  TIDE_TRY(check_fill(t, g, "randn_", REPEATS));
  tide_bump_version(t);
  int32_t dt = t->dtype;
  if (!tide_is_float(dt))
    return tide_fail("randn_: normal values need a floating-point tensor, got %s", tide_dtype_name(dt));
  if (!isfinite(mean)) return tide_fail("randn_: mean must be finite, got %g", mean);
  if (!isfinite(std) || std < 0) return tide_fail("randn_: std must be finite and >= 0, got %g", std);
  if (!be->random->normal) return tide_not_implemented("randn_", be);
  uint64_t base = g->offset;
  g->offset += fill_blocks(FILL_FLOAT, t->numel, dt, 0);
  return be->random->normal(t->data, t->ndim, t->shape, t->stride, dt, g->seed, base, mean, std);
}

int tide_randint_(tide_tensor *t, tide_generator *g, int64_t low, int64_t high) {
  const tide_backend *be;
  int32_t dev;
  if (!t) return tide_check_handle(t, "randint_");
  const tide_tensor *ts[1] = {t};
  TIDE_OP_BACKEND(be, dev, random, "randint_", 1, ts);
  TIDE_TRY(check_fill(t, g, "randint_", REPEATS));
  tide_bump_version(t);
  int32_t dt = t->dtype;
  if (high <= low)
    return tide_fail("randint_: expected low < high, got low=%lld, high=%lld", (long long)low, (long long)high);
  /* every value in [low, high) must be exact in the dtype */
  int64_t lo_ok, hi_ok;  /* inclusive bounds */
  switch (dt) {
    case TIDE_I32: lo_ok = INT32_MIN; hi_ok = INT32_MAX; break;
    case TIDE_I64: lo_ok = INT64_MIN; hi_ok = INT64_MAX; break;
    case TIDE_U8: lo_ok = 0; hi_ok = 255; break;
    case TIDE_BOOL: lo_ok = 0; hi_ok = 1; break;
    case TIDE_U16: lo_ok = 0; hi_ok = 65535; break;
    case TIDE_F32: lo_ok = -(INT64_C(1) << 24); hi_ok = INT64_C(1) << 24; break;
    case TIDE_F64: lo_ok = -(INT64_C(1) << 53); hi_ok = INT64_C(1) << 53; break;
    case TIDE_BF16: lo_ok = -(INT64_C(1) << 8); hi_ok = INT64_C(1) << 8; break;
    default: lo_ok = -(INT64_C(1) << 11); hi_ok = INT64_C(1) << 11; break;  /* f16 */
  }
  if (low < lo_ok || high - 1 > hi_ok)
    return tide_fail("randint_: [%lld, %lld) does not fit in %s, which holds integers %lld..%lld exactly",
                     (long long)low, (long long)high, tide_dtype_name(dt), (long long)lo_ok, (long long)hi_ok);
  if (!be->random->randint) return tide_not_implemented("randint_", be);
  uint64_t base = g->offset, range = (uint64_t)high - (uint64_t)low;
  g->offset += fill_blocks(FILL_INT, t->numel, dt, range);
  return be->random->randint(t->data, t->ndim, t->shape, t->stride, dt, g->seed, base, low, high);
}

int tide_bernoulli_(tide_tensor *t, tide_generator *g, double p) {
  const tide_backend *be;
  int32_t dev;
  if (!t) return tide_check_handle(t, "bernoulli_");
  const tide_tensor *ts[1] = {t};
  TIDE_OP_BACKEND(be, dev, random, "bernoulli_", 1, ts);
  if (!(p >= 0 && p <= 1)) return tide_fail("bernoulli_: p must be in [0, 1], got %g", p);
  TIDE_TRY(check_fill(t, g, "bernoulli_", " (an expanded view with stride 0); fill a tensor that owns its elements"));
  tide_bump_version(t);
  if (!be->random->bernoulli) return tide_not_implemented("bernoulli_", be);
  uint64_t base = g->offset;
  g->offset += fill_blocks(FILL_BERNOULLI, t->numel, t->dtype, 0);
  return be->random->bernoulli(t->data, t->ndim, t->shape, t->stride, t->dtype, g->seed, base, p);
}

/* The largest integer each dtype holds exactly (randperm checks n - 1 fits). */
static int64_t exact_max(int32_t dt) {
  switch (dt) {
    case TIDE_F32: return INT64_C(1) << 24;
    case TIDE_F64: return INT64_C(1) << 53;
    case TIDE_BF16: return 256;
    case TIDE_F16: return 2048;
    case TIDE_I32: return INT32_MAX;
    case TIDE_U8: return 255;
    case TIDE_BOOL: return 1;
    case TIDE_U16: return 65535;
    default: return INT64_MAX;
  }
}

int tide_randperm_on(int64_t n, int32_t dtype, int32_t device, tide_generator *g, tide_tensor **out) {
  if (n < 0) return tide_fail("randperm: n must be a non-negative integer, got %lld", (long long)n);
  if (!tide_dtype_valid(dtype)) return tide_fail("randperm: invalid dtype code %d", dtype);
  if (n > 0 && n - 1 > exact_max(dtype))
    return tide_fail("randperm: %s cannot hold the values 0..%lld; use i64", tide_dtype_name(dtype), (long long)(n - 1));
  if (!g) return tide_fail("randperm: generator is NULL");
  if (!out) return tide_fail("randperm: output pointer is NULL");
  const tide_backend *be = tide_backend_for(device, "randperm");
  if (!be) return -1;
  if (!be->random || !be->random->randperm) return tide_not_implemented("randperm", be);
  tide_tensor *p = tide_new_on(device, TIDE_I64, 1, &n);
  if (!p) return -1;
  if (be->random->randperm((int64_t *)p->data, n, g->seed, g->offset)) {
    tide_tensor_release(p);
    return -1;
  }
  if (n > 1) g->offset += (uint64_t)(n - 1);
  if (dtype != TIDE_I64) {
    tide_tensor *c = tide_contiguous_as(p, dtype);
    tide_tensor_release(p);
    if (!c) return -1;
    p = c;
  }
  *out = p;
  return 0;
}

int tide_randperm(int64_t n, int32_t dtype, tide_generator *g, tide_tensor **out) {
  return tide_randperm_on(n, dtype, TIDE_CPU, g, out);
}

int tide_multinomial(const tide_tensor *probs, int64_t n, int32_t replacement, tide_generator *g, tide_tensor **out) {
  const tide_backend *be;
  int32_t dev;
  if (!probs) return tide_check_handle(probs, "multinomial");
  const tide_tensor *ts[1] = {probs};
  TIDE_OP_BACKEND(be, dev, random, "multinomial", 1, ts);
  if (!g) return tide_fail("multinomial: generator is NULL");
  if (!out) return tide_fail("multinomial: output pointer is NULL");
  if (probs->ndim != 1 && probs->ndim != 2)
    return tide_fail("multinomial: expected a 1-d or 2-d tensor of weights, got %d-d", probs->ndim);
  if (!tide_is_float(probs->dtype))
    return tide_fail("multinomial: weights must be a floating-point tensor, got %s", tide_dtype_name(probs->dtype));
  if (n < 0) return tide_fail("multinomial: number of samples must be >= 0, got %lld", (long long)n);
  int64_t K = probs->shape[probs->ndim - 1], rows = probs->ndim == 2 ? probs->shape[0] : 1;
  if (K == 0) return tide_fail("multinomial: the weights have no categories (last dimension is 0)");
  if (!be->random->multinomial) return tide_not_implemented("multinomial", be);
  tide_tensor *w = tide_contiguous_as(probs, TIDE_F64);
  if (!w) return -1;
  int64_t shape[2] = {rows, n};
  tide_tensor *res = probs->ndim == 2 ? tide_new_on(dev, TIDE_I64, 2, shape) : tide_new_on(dev, TIDE_I64, 1, &n);
  int rc;
  if (res) {
    rc = be->random->multinomial((int64_t *)res->data, (const double *)w->data, rows, K, n, replacement, g->seed, g->offset);
  } else {
    /* bad weights are the clearer message when the result could not be allocated as well */
    char msg[512];
    snprintf(msg, sizeof msg, "%s", tide_last_error());
    if (be->random->multinomial(NULL, (const double *)w->data, rows, K, n, replacement, g->seed, g->offset) == 0)
      tide_fail("%s", msg);
    rc = -1;
  }
  tide_tensor_release(w);
  if (rc) {
    tide_tensor_release(res);
    return -1;
  }
  if (rows > 0 && n > 0) {
    int64_t total = replacement ? rows * n : rows * K;
    g->offset += (uint64_t)((total + 1) / 2);
  }
  *out = res;
  return 0;
}

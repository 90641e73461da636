/* The fused AdamW kernel (kernels/cpu/adamw.c): against a scalar reference
   that spells out torch's operations with the same roundings (bit-equal),
   on sizes around the vector width and above the threading grain; the
   unit-stride (SIMD) path against the strided one (bit-equal); f64; empty
   tensors; and every kind of bad input coming back as an error status. */
#include "tensor.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

#define CHECK(cond) do { if (!(cond)) { printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); failures++; } } while (0)
#define CHECK_ERR(call, text) do { int rc_ = (call); CHECK(rc_ == -1); \
  if (!strstr(tide_last_error(), text)) { printf("FAIL %s:%d: error \"%s\" lacks \"%s\"\n", __FILE__, __LINE__, tide_last_error(), text); failures++; } } while (0)

/* a small deterministic generator, uniform in [-1, 1) */
static uint64_t rng_state = 88172645463325252ull;
static double urand(void) {
  rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
  return (double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static tide_tensor *filled(int32_t dt, int32_t ndim, const int64_t *shape, double scale) {
  tide_tensor *t = tide_new(dt, ndim, shape);
  for (int64_t i = 0; i < t->numel; i++) {
    double v = urand() * scale;
    if (dt == TIDE_F32) ((float *)t->data)[i] = (float)v; else ((double *)t->data)[i] = v;
  }
  return t;
}

static tide_tensor *zeros(int32_t dt, int32_t ndim, const int64_t *shape) {
  tide_tensor *t = NULL;
  tide_full(dt, ndim, shape, 0, TIDE_CPU, &t);
  return t;
}

typedef struct { double lr, b1, b2, eps, wd; } hp;

/* torch.optim.AdamW's single-tensor step, one element at a time, in f32 with
   torch's roundings: scalars from double, lerp and addcmul fused. */
static void ref_step_f32(float *p, const float *g, float *m, float *v, int64_t n, hp h, int64_t step) {
  double bc1 = 1 - pow(h.b1, (double)step), bc2 = 1 - pow(h.b2, (double)step);
  float decay = (float)(1 - h.lr * h.wd), w = (float)(1 - h.b1), b2 = (float)h.b2, c2 = (float)(1 - h.b2);
  float bc2s = (float)sqrt(bc2), eps = (float)h.eps, nss = (float)(-(h.lr / bc1));
  for (int64_t i = 0; i < n; i++) {
    float pi = p[i] * decay, d = g[i] - m[i];
    m[i] = w < 0.5f ? fmaf(w, d, m[i]) : fmaf(w - 1.0f, d, g[i]);
    float vi = v[i] * b2;
    v[i] = fmaf(c2 * g[i], g[i], vi);
    float den = sqrtf(v[i]) / bc2s + eps;
    p[i] = pi + (nss * m[i]) / den;
  }
}

/* The same in double, with the op order of torch and no fusing: agrees with
   the kernel's f64 path to a few ulps. */
static void ref_step_f64(double *p, const double *g, double *m, double *v, int64_t n, hp h, int64_t step) {
  double bc1 = 1 - pow(h.b1, (double)step), bc2 = 1 - pow(h.b2, (double)step);
  for (int64_t i = 0; i < n; i++) {
    double pi = p[i] * (1 - h.lr * h.wd);
    m[i] = m[i] + (1 - h.b1) * (g[i] - m[i]);
    v[i] = v[i] * h.b2 + (1 - h.b2) * g[i] * g[i];
    p[i] = pi + (-(h.lr / bc1) * m[i]) / (sqrt(v[i]) / sqrt(bc2) + h.eps);
  }
}

static int bits_equal(const tide_tensor *a, const float *b) {
  return memcmp(a->data, b, (size_t)a->numel * sizeof(float)) == 0;
}

static void test_against_reference(void) {
  const hp cases[] = {
    {1e-3, 0.9, 0.999, 1e-8, 0.01},
    {5e-4, 0.9, 0.95, 1e-8, 0.1},
    {3e-2, 0.3, 0.9, 1e-6, 0.0},  /* lerp weight 0.7: torch's second formula */
    {1e-2, 0.5, 0.99, 1e-8, 0.05}, /* weight exactly 0.5 */
  };
  const int64_t sizes[] = {1, 7, 8, 9, 31, 33, 1000, 100003};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
      int64_t n = sizes[s];
      tide_tensor *p = filled(TIDE_F32, 1, &n, 0.1), *m = zeros(TIDE_F32, 1, &n), *v = zeros(TIDE_F32, 1, &n);
      float *rp = malloc((size_t)n * 4), *rm = calloc((size_t)n, 4), *rv = calloc((size_t)n, 4);
      memcpy(rp, p->data, (size_t)n * 4);
      for (int64_t step = 1; step <= 4; step++) {
        tide_tensor *g = filled(TIDE_F32, 1, &n, step == 3 ? 1e-3 : 1.0);
        if (step == 2) memset(g->data, 0, (size_t)(n / 2) * 4);  /* exact zero grads */
        CHECK(tide_adamw_step_(p, g, m, v, cases[c].lr, cases[c].b1, cases[c].b2, cases[c].eps, cases[c].wd, step) == 0);
        ref_step_f32(rp, (const float *)g->data, rm, rv, n, cases[c], step);
        tide_tensor_release(g);
      }
      if (!bits_equal(p, rp) || !bits_equal(m, rm) || !bits_equal(v, rv)) {
        printf("FAIL: case %zu size %lld differs from the f32 reference\n", c, (long long)n);
        failures++;
      }
      free(rp); free(rm); free(rv);
      tide_tensor_release(p); tide_tensor_release(m); tide_tensor_release(v);
    }
  }
}

/* A transposed (strided) parameter gives exactly the values of the
   contiguous one: the SIMD body and the scalar loop agree bit for bit. */
static void test_strided_matches_contiguous(void) {
  int64_t shape[2] = {37, 23}, tshape[2] = {23, 37};
  tide_tensor *p = filled(TIDE_F32, 2, shape, 0.1), *g = filled(TIDE_F32, 2, shape, 1.0);
  tide_tensor *m = filled(TIDE_F32, 2, shape, 0.01), *v = filled(TIDE_F32, 2, shape, 0.0);
  tide_unary_(TIDE_ABS, v);
  /* the same values laid out transposed: q = (contiguous copy of p^T)^T */
  tide_tensor *views[4], *copies[4], *srcs[4] = {p, g, m, v};
  for (int k = 0; k < 4; k++) {
    tide_tensor *tv = NULL;
    CHECK(tide_transpose(srcs[k], 0, 1, &tv) == 0);
    CHECK(tide_contiguous(tv, &copies[k]) == 0);
    CHECK(copies[k]->shape[0] == tshape[0]);
    CHECK(tide_transpose(copies[k], 0, 1, &views[k]) == 0);
    CHECK(!tide_is_contiguous(views[k]));
    tide_tensor_release(tv);
  }
  for (int64_t step = 1; step <= 3; step++) {
    CHECK(tide_adamw_step_(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.1, step) == 0);
    CHECK(tide_adamw_step_(views[0], views[1], views[2], views[3], 1e-3, 0.9, 0.999, 1e-8, 0.1, step) == 0);
  }
  for (int k = 0; k < 4; k += 2) {
    tide_tensor *c = NULL;
    CHECK(tide_contiguous(views[k], &c) == 0);
    CHECK(memcmp(c->data, srcs[k]->data, (size_t)c->numel * 4) == 0);
    tide_tensor_release(c);
  }
  for (int k = 0; k < 4; k++) { tide_tensor_release(views[k]); tide_tensor_release(copies[k]); tide_tensor_release(srcs[k]); }
}

static void test_f64(void) {
  int64_t n = 5003;
  hp h = {2e-3, 0.9, 0.999, 1e-8, 0.1};
  tide_tensor *p = filled(TIDE_F64, 1, &n, 0.1), *m = zeros(TIDE_F64, 1, &n), *v = zeros(TIDE_F64, 1, &n);
  double *rp = malloc((size_t)n * 8), *rm = calloc((size_t)n, 8), *rv = calloc((size_t)n, 8);
  memcpy(rp, p->data, (size_t)n * 8);
  for (int64_t step = 1; step <= 5; step++) {
    tide_tensor *g = filled(TIDE_F64, 1, &n, 1.0);
    CHECK(tide_adamw_step_(p, g, m, v, h.lr, h.b1, h.b2, h.eps, h.wd, step) == 0);
    ref_step_f64(rp, (const double *)g->data, rm, rv, n, h, step);
    tide_tensor_release(g);
  }
  double worst = 0;
  for (int64_t i = 0; i < n; i++) {
    double a = ((double *)p->data)[i], d = fabs(a - rp[i]) / fmax(fabs(rp[i]), 1e-3);
    if (d > worst) worst = d;
  }
  CHECK(worst < 1e-14);
  free(rp); free(rm); free(rv);
  tide_tensor_release(p); tide_tensor_release(m); tide_tensor_release(v);
}

static void test_errors(void) {
  int64_t s3 = 3, s4 = 4, s1 = 1;
  tide_tensor *p = zeros(TIDE_F32, 1, &s3), *g = zeros(TIDE_F32, 1, &s3), *m = zeros(TIDE_F32, 1, &s3);
  tide_tensor *v = zeros(TIDE_F32, 1, &s3), *g4 = zeros(TIDE_F32, 1, &s4), *g64 = zeros(TIDE_F64, 1, &s3);
  tide_tensor *pi = zeros(TIDE_I32, 1, &s3), *pb = zeros(TIDE_BF16, 1, &s3);
  CHECK_ERR(tide_adamw_step_(NULL, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 0, 1), "param");
  CHECK_ERR(tide_adamw_step_(p, NULL, m, v, 1e-3, 0.9, 0.999, 1e-8, 0, 1), "grad");
  CHECK_ERR(tide_adamw_step_(p, g4, m, v, 1e-3, 0.9, 0.999, 1e-8, 0, 1), "grad has shape [4] but param has shape [3]");
  CHECK_ERR(tide_adamw_step_(p, g64, m, v, 1e-3, 0.9, 0.999, 1e-8, 0, 1), "grad has dtype f64 but param has dtype f32");
  CHECK_ERR(tide_adamw_step_(pi, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 0, 1), "supports f32 and f64");
  CHECK_ERR(tide_adamw_step_(pb, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 0, 1), "param has dtype bf16");
  CHECK_ERR(tide_adamw_step_(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 0, 0), "step must be >= 1");
  CHECK_ERR(tide_adamw_step_(p, g, m, v, -1e-3, 0.9, 0.999, 1e-8, 0, 1), "learning rate");
  CHECK_ERR(tide_adamw_step_(p, g, m, v, NAN, 0.9, 0.999, 1e-8, 0, 1), "learning rate");
  CHECK_ERR(tide_adamw_step_(p, g, m, v, 1e-3, 1.0, 0.999, 1e-8, 0, 1), "beta1");
  CHECK_ERR(tide_adamw_step_(p, g, m, v, 1e-3, 0.9, -0.5, 1e-8, 0, 1), "beta2");
  CHECK_ERR(tide_adamw_step_(p, g, m, v, 1e-3, 0.9, 0.999, NAN, 0, 1), "eps");
  CHECK_ERR(tide_adamw_step_(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, -1, 1), "weight_decay");
  /* operands that share memory */
  CHECK_ERR(tide_adamw_step_(p, g, p, v, 1e-3, 0.9, 0.999, 1e-8, 0, 1), "param and exp_avg share memory");
  CHECK_ERR(tide_adamw_step_(p, g, m, m, 1e-3, 0.9, 0.999, 1e-8, 0, 1), "exp_avg and exp_avg_sq share memory");
  CHECK_ERR(tide_adamw_step_(p, p, m, v, 1e-3, 0.9, 0.999, 1e-8, 0, 1), "param and grad share memory");
  /* an expanded (stride-0) target */
  tide_tensor *one = zeros(TIDE_F32, 1, &s1), *ex = NULL;
  CHECK(tide_expand(one, 1, &s3, &ex) == 0);
  CHECK_ERR(tide_adamw_step_(ex, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 0, 1), "share memory");
  /* disjoint views of one storage are fine */
  int64_t s6 = 6;
  tide_tensor *big = zeros(TIDE_F32, 1, &s6), *lo = NULL, *hi = NULL;
  CHECK(tide_narrow(big, 0, 0, 3, &lo) == 0 && tide_narrow(big, 0, 3, 3, &hi) == 0);
  CHECK(tide_adamw_step_(p, g, lo, hi, 1e-3, 0.9, 0.999, 1e-8, 0, 1) == 0);
  /* nothing was written by the failed calls: p is still zero */
  for (int i = 0; i < 3; i++) CHECK(((float *)p->data)[i] == 0.0f);
  /* empty tensors are a no-op */
  int64_t s0 = 0;
  tide_tensor *e[4];
  for (int k = 0; k < 4; k++) e[k] = zeros(TIDE_F32, 1, &s0);
  CHECK(tide_adamw_step_(e[0], e[1], e[2], e[3], 1e-3, 0.9, 0.999, 1e-8, 0.1, 1) == 0);
  for (int k = 0; k < 4; k++) tide_tensor_release(e[k]);
  tide_tensor *all[] = {p, g, m, v, g4, g64, pi, pb, one, ex, big, lo, hi};
  for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) tide_tensor_release(all[k]);
}

int main(void) {
  test_against_reference();
  test_strided_matches_contiguous();
  test_f64();
  test_errors();
  if (failures) {
    printf("%d failure(s)\n", failures);
    return 1;
  }
  printf("test_adamw: all passed\n");
  return 0;
}

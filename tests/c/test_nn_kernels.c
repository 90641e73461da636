/* C-level checks of the neural-network kernels (kernels/cpu/nn_*.c) at the
   sizes GPT-2 uses: layer norm over 768 and softmax over 50257 f32 values
   against double references, cross-entropy forward and backward with
   ignored targets, the dropout mask pinned to the Philox stream contract
   bit for bit, results independent of the thread count, and error paths
   that return -1 with a message and leak nothing. The Lua suite
   (tests/lua/test_nn_kernels.lua) covers gradchecks, views and dtypes. */
#include "tensor.h"
#include "philox.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

#define CHECK(cond) do { if (!(cond)) { printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); failures++; } } while (0)
#define CHECK_ERR(call, text) do { int rc_ = (call); CHECK(rc_ == -1); \
  if (!strstr(tide_last_error(), text)) { printf("FAIL %s:%d: error \"%s\" lacks \"%s\"\n", __FILE__, __LINE__, tide_last_error(), text); failures++; } } while (0)

/* A deterministic uniform stream in [-1, 1) (xorshift), independent of the engine. */
static double unif(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return (double)(*s >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}

static tide_tensor *rand_f32(int32_t ndim, const int64_t *shape, double scale, uint64_t *s) {
  tide_tensor *t = tide_new(TIDE_F32, ndim, shape);
  if (!t) return NULL;
  for (int64_t i = 0; i < t->numel; i++) ((float *)t->data)[i] = (float)(unif(s) * scale);
  return t;
}

static double max_rel(const float *got, const double *want, int64_t n, double floor_) {
  double worst = 0;
  for (int64_t i = 0; i < n; i++) {
    double e = fabs(got[i] - want[i]) / (fabs(want[i]) + floor_);
    if (!(e <= worst)) worst = e;
  }
  return worst;
}

static int same_bits(const tide_tensor *a, const tide_tensor *b) {
  return a && b && a->numel == b->numel && !memcmp(a->data, b->data, (size_t)a->numel * (size_t)tide_dtype_size(a->dtype));
}

static void test_layer_norm(void) {
  uint64_t s = 1;
  int64_t shape[2] = {64, 768}, cs[1] = {768};
  tide_tensor *x = rand_f32(2, shape, 3, &s), *w = rand_f32(1, cs, 1, &s), *b = rand_f32(1, cs, 1, &s);
  tide_tensor *y = NULL, *mean = NULL, *rstd = NULL;
  for (int64_t i = 0; i < x->numel; i++) ((float *)x->data)[i] += 10.0f;  /* a large mean */
  CHECK(tide_layer_norm(x, w, b, 1e-5, &y, &mean, &rstd) == 0);
  CHECK(y && y->dtype == TIDE_F32 && mean->dtype == TIDE_F32 && rstd->ndim == 1 && rstd->shape[0] == 64);
  double *want = malloc(sizeof(double) * 64 * 768);
  const float *xf = (const float *)x->data, *wf = (const float *)w->data, *bf = (const float *)b->data;
  double worst_m = 0, worst_y = 0;
  for (int r = 0; r < 64; r++) {
    double mu = 0, var = 0;
    for (int c = 0; c < 768; c++) mu += xf[r * 768 + c];
    mu /= 768;
    for (int c = 0; c < 768; c++) var += (xf[r * 768 + c] - mu) * (xf[r * 768 + c] - mu);
    double rs = 1 / sqrt(var / 768 + 1e-5);
    for (int c = 0; c < 768; c++) {
      double t = (xf[r * 768 + c] - mu) * rs * wf[c];
      want[r * 768 + c] = t + bf[c];
      /* f32 arithmetic errs relative to the terms, not to their (possibly cancelling) sum */
      double err = fabs(((float *)y->data)[r * 768 + c] - want[r * 768 + c]) / (fabs(t) + fabs(bf[c]));
      if (err > worst_y) worst_y = err;
    }
    double em = fabs(((float *)mean->data)[r] - mu) / mu, er = fabs(((float *)rstd->data)[r] - rs) / rs;
    if (em > worst_m) worst_m = em;
    if (er > worst_m) worst_m = er;
  }
  printf("layer_norm [64, 768] f32: max error %.2e relative to the terms (output), %.2e (mean, rstd)\n", worst_y, worst_m);
  CHECK(worst_y < 5e-7 && worst_m < 1e-7);
  /* the backward's parameter sums do not depend on the thread count */
  tide_tensor *dy = rand_f32(2, shape, 1, &s), *g[2][3] = {{NULL}};
  for (int k = 0; k < 2; k++) {
    tide_set_num_threads(k + 1);
    CHECK(tide_layer_norm_backward(dy, x, w, mean, rstd, &g[k][0], &g[k][1], &g[k][2]) == 0);
  }
  for (int i = 0; i < 3; i++) CHECK(same_bits(g[0][i], g[1][i]));
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < 3; i++) tide_tensor_release(g[k][i]);
  free(want);
  tide_tensor *all[] = {x, w, b, y, mean, rstd, dy};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) tide_tensor_release(all[i]);
}

static void test_softmax(void) {
  uint64_t s = 2;
  int64_t shape[2] = {3, 50257};
  tide_tensor *x = rand_f32(2, shape, 12, &s), *y = NULL, *ly = NULL;
  CHECK(tide_softmax(x, 1, 0, &y) == 0);
  CHECK(tide_softmax(x, 1, 1, &ly) == 0);
  double *want = malloc(sizeof(double) * 50257), *lwant = malloc(sizeof(double) * 50257);
  double worst = 0, lworst = 0, sum_err = 0;
  for (int r = 0; r < 3; r++) {
    const float *xr = (const float *)x->data + r * 50257;
    double m = -INFINITY, sum = 0, total = 0;
    for (int v = 0; v < 50257; v++) m = xr[v] > m ? xr[v] : m;
    for (int v = 0; v < 50257; v++) sum += exp(xr[v] - m);
    for (int v = 0; v < 50257; v++) {
      want[v] = exp(xr[v] - m) / sum;
      lwant[v] = xr[v] - m - log(sum);
      total += ((const float *)y->data)[r * 50257 + v];
    }
    double e = max_rel((const float *)y->data + r * 50257, want, 50257, 0);
    double le = max_rel((const float *)ly->data + r * 50257, lwant, 50257, 1);
    if (e > worst) worst = e;
    if (le > lworst) lworst = le;
    if (fabs(total - 1) > sum_err) sum_err = fabs(total - 1);
  }
  printf("softmax [3, 50257] f32: max relative error %.2e, log_softmax %.2e, |sum - 1| %.2e\n", worst, lworst, sum_err);
  CHECK(worst < 3e-6 && lworst < 2e-7 && sum_err < 1e-5);
  free(want);
  free(lwant);
  tide_tensor_release(x);
  tide_tensor_release(y);
  tide_tensor_release(ly);
}

static void test_cross_entropy(void) {
  uint64_t s = 3;
  int64_t shape[2] = {16, 1000}, ts[1] = {16};
  tide_tensor *x = rand_f32(2, shape, 6, &s), *t = tide_new(TIDE_I32, 1, ts), *loss = NULL, *lse = NULL, *none = NULL, *g = NULL;
  int32_t *tv = (int32_t *)t->data;
  for (int i = 0; i < 16; i++) tv[i] = (i * 389) % 1000;
  tv[5] = tv[11] = -100;
  CHECK(tide_cross_entropy(x, t, -100, TIDE_REDUCE_MEAN, &loss, &lse) == 0);
  CHECK(tide_cross_entropy(x, t, -100, TIDE_REDUCE_NONE, &none, NULL) == 0);
  CHECK(loss->ndim == 0 && none->ndim == 1 && lse->dtype == TIDE_F32);
  double total = 0, worst = 0;
  for (int n = 0; n < 16; n++) {
    const float *xr = (const float *)x->data + n * 1000;
    double m = -INFINITY, sum = 0;
    for (int v = 0; v < 1000; v++) m = xr[v] > m ? xr[v] : m;
    for (int v = 0; v < 1000; v++) sum += exp(xr[v] - m);
    double l = tv[n] == -100 ? 0 : m + log(sum) - xr[tv[n]];
    total += l;
    double e = fabs(((float *)none->data)[n] - l) / (fabs(l) + 1e-6);
    if (e > worst) worst = e;
  }
  double mean = total / 14, em = fabs(*(float *)loss->data - mean) / mean;
  printf("cross_entropy [16, 1000] f32: max relative error %.2e (per row), %.2e (mean)\n", worst, em);
  CHECK(worst < 1e-6 && em < 1e-6 && ((float *)none->data)[5] == 0.0f);
  /* gradient rows are softmax - onehot over 14: each sums to 0; ignored rows are 0 */
  tide_tensor *d = NULL;
  CHECK(tide_full(TIDE_F32, 0, NULL, 1.0, TIDE_CPU, &d) == 0);
  CHECK(tide_cross_entropy_backward(d, x, t, lse, -100, TIDE_REDUCE_MEAN, &g) == 0);
  double worst_sum = 0;
  for (int n = 0; n < 16; n++) {
    double rs = 0, ra = 0;
    for (int v = 0; v < 1000; v++) {
      rs += ((float *)g->data)[n * 1000 + v];
      ra += fabs(((float *)g->data)[n * 1000 + v]);
    }
    if (fabs(rs) > worst_sum) worst_sum = fabs(rs);
    if (n == 5 || n == 11) CHECK(ra == 0);
    else CHECK(ra > 0 && ra <= 2.0 / 14 + 1e-6);  /* |p - onehot|_1 / 14 = 2 (1 - p_t) / 14 */
  }
  CHECK(worst_sum < 1e-7);
  /* out of range targets name the value and V */
  tv[0] = 1000;
  CHECK_ERR(tide_cross_entropy(x, t, -100, TIDE_REDUCE_SUM, &loss, NULL), "target 1000 is out of range for 1000 classes");
  tide_tensor *all[] = {x, t, loss, lse, none, g, d};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) tide_tensor_release(all[i]);
}

/* The mask is exactly the f32 uniform draw of the layout compared with p. */
static void test_dropout_contract(void) {
  int64_t shape[2] = {7, 9};
  tide_tensor *x = NULL, *y = NULL, *m = NULL;
  CHECK(tide_full(TIDE_F32, 2, shape, 1.0, TIDE_CPU, &x) == 0);
  tide_generator g = {UINT64_C(0x0123456789abcdef), 41};
  CHECK(tide_dropout(x, 0.25, &g, &y, &m) == 0);
  CHECK(g.offset == 41 + 16);  /* ceil(63 / 4) blocks */
  int bad = 0, kept = 0;
  for (int64_t i = 0; i < 63; i++) {
    uint32_t w[4];
    tide_philox_block(UINT64_C(0x0123456789abcdef), 41, (uint64_t)(i / 4), w);
    int keep = !(tide_philox_u24(w[i % 4]) < 0.25);
    kept += keep;
    bad += ((uint8_t *)m->data)[i] != keep || ((float *)y->data)[i] != (keep ? 1.0f / 0.75f : 0.0f);
  }
  printf("dropout p=0.25 over 63 elements: %d kept, %d differ from the Philox layout\n", kept, bad);
  CHECK(bad == 0);
  tide_tensor_release(x);
  tide_tensor_release(y);
  tide_tensor_release(m);
}

static void test_embedding_threads(void) {
  uint64_t s = 4;
  int64_t is[1] = {5000}, ds[2] = {5000, 96};
  tide_tensor *ids = tide_new(TIDE_I64, 1, is), *dy = rand_f32(2, ds, 1, &s), *a = NULL, *b = NULL;
  for (int i = 0; i < 5000; i++) ((int64_t *)ids->data)[i] = (int64_t)((unif(&s) + 1) * 5.5);
  tide_set_num_threads(1);
  CHECK(tide_embedding_backward(dy, ids, 11, &a) == 0);
  tide_set_num_threads(2);
  CHECK(tide_embedding_backward(dy, ids, 11, &b) == 0);
  CHECK(same_bits(a, b));
  ((int64_t *)ids->data)[4999] = 11;
  CHECK_ERR(tide_embedding_backward(dy, ids, 11, &a), "id 11 is out of range for an embedding of 11 rows");
  tide_tensor_release(ids);
  tide_tensor_release(dy);
  tide_tensor_release(a);
  tide_tensor_release(b);
}

/* Every entry point rejects NULL and bad input, and its error paths free what they made. */
static void test_errors_leak_nothing(void) {
  int64_t shape[2] = {4, 5}, ts[1] = {4};
  tide_tensor *x = NULL, *xi = NULL, *t = NULL, *o = NULL, *o2 = NULL, *o3 = NULL;
  CHECK(tide_full(TIDE_F32, 2, shape, 0.5, TIDE_CPU, &x) == 0);
  CHECK(tide_full(TIDE_I64, 2, shape, 1, TIDE_CPU, &xi) == 0);
  CHECK(tide_full(TIDE_I64, 1, ts, 7, TIDE_CPU, &t) == 0);
  int64_t before = tide_mem_live_bytes();
  tide_generator g = {1, 0};
  CHECK_ERR(tide_layer_norm(NULL, NULL, NULL, 1e-5, &o, &o2, &o3), "layer_norm: x is NULL");
  CHECK_ERR(tide_layer_norm(xi, NULL, NULL, 1e-5, &o, &o2, &o3), "float tensor");
  CHECK_ERR(tide_layer_norm(x, t, NULL, 1e-5, &o, &o2, &o3), "weight must be a float tensor");
  CHECK_ERR(tide_layer_norm_backward(x, x, NULL, t, t, &o, NULL, NULL), "mean must be a float tensor");
  CHECK_ERR(tide_softmax(x, 2, 0, &o), "softmax: dimension 3 out of range");
  CHECK_ERR(tide_softmax(xi, 0, 1, &o), "log_softmax: x must be a float tensor");
  CHECK_ERR(tide_softmax_backward(x, NULL, 0, 0, &o), "out is NULL");
  CHECK_ERR(tide_gelu_backward(x, xi, &o), "gelu_backward");
  CHECK_ERR(tide_embedding(x, t, &o), "id 7 is out of range for an embedding of 4 rows");
  CHECK_ERR(tide_embedding(x, x, &o), "ids must be an integer tensor");
  CHECK_ERR(tide_embedding_backward(x, xi, 3, &o), "dout of shape [4, 5] must be the ids' shape [4, 5] plus one last dimension");
  CHECK_ERR(tide_cross_entropy(x, t, -100, TIDE_REDUCE_MEAN, &o, &o2), "target 7 is out of range for 5 classes");
  CHECK_ERR(tide_cross_entropy(x, t, 7, 9, &o, &o2), "invalid reduction code 9");
  CHECK_ERR(tide_cross_entropy_backward(x, x, t, x, 7, TIDE_REDUCE_MEAN, &o), "lse of shape [4, 5] must hold one value per row");
  CHECK_ERR(tide_dropout(x, 0.5, NULL, &o, &o2), "generator is NULL");
  CHECK_ERR(tide_dropout(x, 2.0, &g, &o, &o2), "probability p must be in [0, 1], got 2");
  CHECK_ERR(tide_dropout(xi, 0.5, &g, &o, &o2), "x must be a float tensor");
  CHECK_ERR(tide_dropout_backward(x, x, 0.5, &o), "mask must be a u8 or bool tensor");
  /* successful calls release everything too */
  CHECK(tide_cross_entropy(x, t, 7, TIDE_REDUCE_MEAN, &o, &o2) == 0);
  CHECK(isnan(*(float *)o->data));  /* every target ignored: mean of nothing */
  tide_tensor_release(o);
  tide_tensor_release(o2);
  CHECK(tide_mem_live_bytes() == before);
  CHECK(g.offset == 0);
  tide_tensor_release(x);
  tide_tensor_release(xi);
  tide_tensor_release(t);
}

int main(void) {
  test_layer_norm();
  test_softmax();
  test_cross_entropy();
  test_dropout_contract();
  test_embedding_threads();
  test_errors_leak_nothing();
  if (failures) {
    printf("%d check(s) failed\n", failures);
    return 1;
  }
  printf("all nn kernel checks passed\n");
  return 0;
}

#include "iter.h"
#ifdef _OPENMP
#include <omp.h>
#endif

void tide_iter_init_raw(tide_iter *it, int32_t ndim, const int64_t *shape, int32_t nops, char *const *data,
                        const int64_t (*st)[TIDE_MAX_DIMS]) {
  it->nops = nops;
  it->numel = 1;
  for (int32_t i = 0; i < ndim; i++) it->numel *= shape[i];
  for (int32_t k = 0; k < nops; k++) it->data[k] = data[k];
  /* drop size-1 dims, then merge a dim into the next inner one when every
     operand steps over it contiguously */
  int32_t n = 0;
  for (int32_t i = 0; i < ndim; i++) {
    if (shape[i] == 1) continue;
    if (n > 0) {
      int merge = 1;
      for (int32_t k = 0; k < nops; k++)
        if (it->stride[k][n - 1] != st[k][i] * shape[i]) merge = 0;
      if (merge) {
        it->shape[n - 1] *= shape[i];
        for (int32_t k = 0; k < nops; k++) it->stride[k][n - 1] = st[k][i];
        continue;
      }
    }
    it->shape[n] = shape[i];
    for (int32_t k = 0; k < nops; k++) it->stride[k][n] = st[k][i];
    n++;
  }
  if (n == 0) {
    it->shape[0] = 1;
    for (int32_t k = 0; k < nops; k++) it->stride[k][0] = 0;
    n = 1;
  }
  it->ndim = n;
}

/* Runs units [u0, u1): unit u is chunk (u % cpr) of row (u / cpr). */
static void run_range(const tide_iter *it, tide_loop_fn fn, void *ctx, int64_t u0, int64_t u1, int64_t cpr, int64_t chunk) {
  int32_t nd = it->ndim, nops = it->nops;
  int64_t inner = it->shape[nd - 1];
  int64_t idx[TIDE_MAX_DIMS] = {0};
  int64_t istride[TIDE_ITER_MAX_OPS];
  for (int32_t k = 0; k < nops; k++) istride[k] = it->stride[k][nd - 1];
  int64_t row = u0 / cpr, c = u0 % cpr;
  int64_t r = row;
  for (int32_t d = nd - 2; d >= 0; d--) {
    idx[d] = r % it->shape[d];
    r /= it->shape[d];
  }
  char *base[TIDE_ITER_MAX_OPS];
  for (int32_t k = 0; k < nops; k++) {
    base[k] = it->data[k];
    for (int32_t d = 0; d < nd - 1; d++) base[k] += idx[d] * it->stride[k][d];
  }
  for (int64_t u = u0; u < u1; u++) {
    int64_t start = c * chunk, len = inner - start < chunk ? inner - start : chunk;
    char *p[TIDE_ITER_MAX_OPS];
    for (int32_t k = 0; k < nops; k++) p[k] = base[k] + start * istride[k];
    fn(p, istride, len, ctx);
    if (++c == cpr) {
      c = 0;
      for (int32_t d = nd - 2; d >= 0; d--) {  /* odometer step to the next row */
        for (int32_t k = 0; k < nops; k++) base[k] += it->stride[k][d];
        if (++idx[d] < it->shape[d]) break;
        for (int32_t k = 0; k < nops; k++) base[k] -= it->stride[k][d] * it->shape[d];
        idx[d] = 0;
      }
    }
  }
}

void tide_iter_run(const tide_iter *it, tide_loop_fn fn, void *ctx, int64_t grain) {
  if (it->numel == 0) return;
  int64_t inner = it->shape[it->ndim - 1], rows = it->numel / inner;
  int nthreads = 1;
#ifdef _OPENMP
  if (it->numel >= 2 * grain) {
    nthreads = omp_get_max_threads();
    int64_t most = it->numel / grain;
    if (most < nthreads) nthreads = (int)most;
  }
#endif
  int64_t chunk = inner, cpr = 1;
  if (nthreads > 1 && rows < 4 * nthreads) {  /* few long rows: cut them */
    chunk = (inner + 4 * nthreads - 1) / (4 * nthreads);
    chunk = (chunk + 63) & ~(int64_t)63;
    cpr = (inner + chunk - 1) / chunk;
  }
  int64_t units = rows * cpr;
  if (nthreads <= 1) {
    run_range(it, fn, ctx, 0, units, cpr, chunk);
    return;
  }
#ifdef _OPENMP
#pragma omp parallel num_threads(nthreads)
  {
    int t = omp_get_thread_num(), nt = omp_get_num_threads();
    int64_t u0 = units * t / nt, u1 = units * (t + 1) / nt;
    if (u0 < u1) run_range(it, fn, ctx, u0, u1, cpr, chunk);
  }
#endif
}

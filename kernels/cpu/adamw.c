/* The fused AdamW step: one pass over param, grad, exp_avg and exp_avg_sq
   that reproduces torch.optim.AdamW's single-tensor path (foreach=False, the
   CPU default; amsgrad and maximize off) operation by operation:

     param.mul_(1 - lr*wd)
     exp_avg.lerp_(grad, 1 - beta1)
     exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
     denom = (exp_avg_sq.sqrt() / sqrt(1 - beta2^step)).add_(eps)
     param.addcdiv_(exp_avg, denom, value=-lr / (1 - beta1^step))

   The scalar factors are computed in double, as Python computes them, then
   rounded once to the tensor's dtype, as torch's CPU kernels do with a
   Python scalar. Every tensor op rounds to the dtype, in torch's order, and
   fuses where torch's AVX2/AVX-512 kernels fuse:
     lerp (weight w < 0.5):  m + w*(g - m)       as fma(w, g - m, m)
          (weight w >= 0.5): g - (g - m)*(1 - w) as fma(w - 1, g - m, g)
       (g - m rounded first; w = 1 - beta1 = 0.1 takes the first form)
     addcmul: v*beta2 + (c*g)*g                  as fma(c*g, g, v*beta2)
     denom:   sqrt(v) / bc2_sqrt + eps, addcdiv: p + (s*m)/denom
   Checked against torch 2.15 (AVX-512 and AVX2 dispatch): exp_avg and
   exp_avg_sq are bit-equal; param is bit-equal except where torch's f32/f64
   sqrt (MKL's vector sqrt, not correctly rounded: about 1 element in 6 is
   1 ulp off) differs from our correctly rounded one, which moves that
   element's update by about one ulp of the update. torch's pre-AVX2
   "default" kernels do not fuse. Without a hardware FMA (TIDE_NATIVE=OFF
   on x86) fmaf is still exact, only slower. No a*b + c is left unfused, so
   FMA contraction settings cannot change the results.

   Non-contiguous operands go through the strided iterator (every operand is
   read and written through its own strides); the unit-stride f32 case uses
   AVX2 when compiled for it, whose results are identical to the scalar loop
   (every op is correctly rounded: mul, sub, fma, sqrt, div, add). */
#include "adamw.h"
#include "dtype.h"
#include "error.h"
#include "iter.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

typedef struct {
  double decay, w, beta2, c2, bc2_sqrt, eps, neg_step_size;
  int small;  /* lerp weight below 0.5: torch's first lerp formula */
} adamw_ctx;

/* One element in type T; F is the fma function of T. */
#define ADAMW_ELEM(T, F, p, g, m, v, k)                                     \
  do {                                                                     \
    T pv_ = (p) * k##decay, gv_ = (g), mv_ = (m);                          \
    T d_ = gv_ - mv_;                                                      \
    mv_ = k##small ? F(k##w, d_, mv_) : F(k##w - (T)1, d_, gv_);           \
    T vv_ = (v) * k##beta2;                                                \
    vv_ = F(k##c2 * gv_, gv_, vv_);                                        \
    T den_ = sqrt_##T(vv_) / k##bc2s + k##eps;                             \
    (p) = pv_ + (k##nss * mv_) / den_;                                     \
    (m) = mv_;                                                             \
    (v) = vv_;                                                             \
  } while (0)

static inline float sqrt_float(float x) { return sqrtf(x); }
static inline double sqrt_double(double x) { return sqrt(x); }

#define DEF_ADAMW_LOOP(T, F)                                                                  \
  static void adamw_loop_##T(char **ptr, const int64_t *st, int64_t n, void *vctx) {          \
    const adamw_ctx *c = vctx;                                                                \
    const T kdecay = (T)c->decay, kw = (T)c->w, kbeta2 = (T)c->beta2, kc2 = (T)c->c2;        \
    const T kbc2s = (T)c->bc2_sqrt, keps = (T)c->eps, knss = (T)c->neg_step_size;            \
    const int ksmall = c->small;                                                              \
    const int64_t es = (int64_t)sizeof(T);                                                    \
    int64_t i = 0;                                                                            \
    if (st[0] == es && st[1] == es && st[2] == es && st[3] == es) {                           \
      T *P = (T *)ptr[0], *M = (T *)ptr[2], *V = (T *)ptr[3];                                 \
      const T *G = (const T *)ptr[1];                                                         \
      i = adamw_simd_##T(P, G, M, V, n, c);                                                   \
      for (; i < n; i++) ADAMW_ELEM(T, F, P[i], G[i], M[i], V[i], k);                         \
      return;                                                                                 \
    }                                                                                         \
    for (; i < n; i++) {                                                                      \
      T *p = (T *)(ptr[0] + i * st[0]), *m = (T *)(ptr[2] + i * st[2]);                       \
      T *v = (T *)(ptr[3] + i * st[3]);                                                       \
      const T g = *(const T *)(ptr[1] + i * st[1]);                                           \
      ADAMW_ELEM(T, F, *p, g, *m, *v, k);                                                     \
    }                                                                                         \
  }

/* The unit-stride f32 body in 8-lane AVX2; returns how many elements it did
   (the rest go through the scalar loop, which computes the same values). */
static int64_t adamw_simd_float(float *P, const float *G, float *M, float *V, int64_t n, const adamw_ctx *c) {
#if defined(__AVX2__) && defined(__FMA__)
  const __m256 decay = _mm256_set1_ps((float)c->decay), beta2 = _mm256_set1_ps((float)c->beta2);
  const __m256 c2 = _mm256_set1_ps((float)c->c2), bc2s = _mm256_set1_ps((float)c->bc2_sqrt);
  const __m256 eps = _mm256_set1_ps((float)c->eps), nss = _mm256_set1_ps((float)c->neg_step_size);
  const __m256 coef = _mm256_set1_ps(c->small ? (float)c->w : (float)c->w - 1.0f);
  const int small = c->small;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 p = _mm256_mul_ps(_mm256_loadu_ps(P + i), decay);
    __m256 g = _mm256_loadu_ps(G + i), m = _mm256_loadu_ps(M + i);
    __m256 d = _mm256_sub_ps(g, m);
    m = _mm256_fmadd_ps(coef, d, small ? m : g);
    __m256 v = _mm256_mul_ps(_mm256_loadu_ps(V + i), beta2);
    v = _mm256_fmadd_ps(_mm256_mul_ps(c2, g), g, v);
    __m256 den = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(v), bc2s), eps);
    p = _mm256_add_ps(p, _mm256_div_ps(_mm256_mul_ps(nss, m), den));
    _mm256_storeu_ps(P + i, p);
    _mm256_storeu_ps(M + i, m);
    _mm256_storeu_ps(V + i, v);
  }
  return i;
#else
  (void)P; (void)G; (void)M; (void)V; (void)n; (void)c;
  return 0;
#endif
}

/* f64 is for checks; its scalar loop is fast enough. */
static int64_t adamw_simd_double(double *P, const double *G, double *M, double *V, int64_t n, const adamw_ctx *c) {
  (void)P; (void)G; (void)M; (void)V; (void)n; (void)c;
  return 0;
}

DEF_ADAMW_LOOP(float, fmaf)
DEF_ADAMW_LOOP(double, fma)

static int adamw_step(void *param, const void *grad, void *exp_avg, void *exp_avg_sq, int32_t dtype, int32_t ndim,
                      const int64_t *shape, const int64_t *param_stride, const int64_t *grad_stride,
                      const int64_t *exp_avg_stride, const int64_t *exp_avg_sq_stride, double lr, double beta1,
                      double beta2, double eps, double weight_decay, int64_t step) {
  if (dtype != TIDE_F32 && dtype != TIDE_F64) return tide_fail("adamw_step_: the CPU kernel takes f32 or f64, got %s", tide_dtype_name(dtype));
  int64_t numel = 1;
  for (int32_t i = 0; i < ndim; i++) numel *= shape[i];
  if (numel == 0) return 0;
  /* the Python-side scalars of torch's _single_tensor_adamw, in double */
  double bc1 = 1.0 - pow(beta1, (double)step), bc2 = 1.0 - pow(beta2, (double)step);
  adamw_ctx c = {
    .decay = 1.0 - lr * weight_decay,
    .w = 1.0 - beta1,
    .beta2 = beta2,
    .c2 = 1.0 - beta2,
    .bc2_sqrt = sqrt(bc2),
    .eps = eps,
    .neg_step_size = -(lr / bc1),
  };
  /* torch decides the lerp formula on the weight in the tensor's dtype */
  c.small = dtype == TIDE_F32 ? fabsf((float)c.w) < 0.5f : fabs(c.w) < 0.5;
  const int64_t *el[4] = {param_stride, grad_stride, exp_avg_stride, exp_avg_sq_stride};
  char *data[4] = {param, (char *)grad, exp_avg, exp_avg_sq};
  int64_t st[4][TIDE_MAX_DIMS];
  int64_t es = tide_dtype_size(dtype);
  for (int k = 0; k < 4; k++)
    for (int32_t i = 0; i < ndim; i++) st[k][i] = shape[i] == 1 ? 0 : el[k][i] * es;
  tide_iter it;
  tide_iter_init_raw(&it, ndim, shape, 4, data, (const int64_t(*)[TIDE_MAX_DIMS])st);
  tide_iter_run(&it, dtype == TIDE_F32 ? adamw_loop_float : adamw_loop_double, &c, TIDE_GRAIN / 4);
  return 0;
}

/* ---- the multi-tensor step -------------------------------------------------------------- */

/* shadow[i] = bf16(param[i]) over a run (operand 0 the bf16 shadow, 1 the parameter) */
static void shadow_loop_float(char **ptr, const int64_t *st, int64_t n, void *ctx) {
  (void)ctx;
  for (int64_t i = 0; i < n; i++)
    *(uint16_t *)(ptr[0] + i * st[0]) = tide_f32_to_bf16(*(const float *)(ptr[1] + i * st[1]));
}
static void shadow_loop_double(char **ptr, const int64_t *st, int64_t n, void *ctx) {
  (void)ctx;
  for (int64_t i = 0; i < n; i++)
    *(uint16_t *)(ptr[0] + i * st[0]) = tide_f32_to_bf16((float)*(const double *)(ptr[1] + i * st[1]));
}

/* Entry by entry: the single-tensor step (so the bits are the same by construction), then the
   shadow cast from the updated parameter. On the CPU the second read of the parameter is from
   cache for small tensors and costs one more pass for large ones; the CUDA kernel does both at once. */
static int adamw_multi_step(int32_t n, const tide_adamw_entry *e, int32_t dtype, double lr, double beta1, double beta2,
                            double eps, double weight_decay) {
  if (dtype != TIDE_F32 && dtype != TIDE_F64)
    return tide_fail("adamw_multi_step_: the CPU kernel takes f32 or f64, got %s", tide_dtype_name(dtype));
  const int64_t one = 1;
  for (int32_t k = 0; k < n; k++) {
    if (e[k].numel == 0) continue;
    int64_t shape = e[k].numel;
    TIDE_TRY(adamw_step(e[k].param, e[k].grad, e[k].exp_avg, e[k].exp_avg_sq, dtype, 1, &shape, &one, &one, &one, &one,
                        lr, beta1, beta2, eps, weight_decay, e[k].step));
    if (!e[k].shadow) continue;
    char *data[2] = {e[k].shadow, e[k].param};
    int64_t st[2][TIDE_MAX_DIMS] = {{2}, {tide_dtype_size(dtype)}};
    tide_iter it;
    tide_iter_init_raw(&it, 1, &shape, 2, data, (const int64_t(*)[TIDE_MAX_DIMS])st);
    tide_iter_run(&it, dtype == TIDE_F32 ? shadow_loop_float : shadow_loop_double, NULL, TIDE_GRAIN);
  }
  return 0;
}

/* ---- clip_grad_norm's 2-norm ----------------------------------------------------------- */

/* torch's CPU 2-norm of a contiguous float tensor (linalg.vector_norm, the
   reduce-last-dim kernel of ReduceOpsKernel.cpp as built for AVX2/AVX-512):
   squares are summed in the tensor's own dtype in 32 bytes of lanes (8 for
   f32, 4 for f64), each lane in order; the lanes are then added left to
   right; then the leftover n % lanes elements: for f32 the first four (when
   there are four or more) as round(b + round(x*x)), the rest, like every
   f64 leftover, as one fused multiply-add b = fma(x, x, b) (GCC vectorises
   and contracts that scalar loop); sqrt is rounded to the dtype. Replaying
   it makes the norm, and so the clip factor, bit-equal to torch's for equal
   gradients (checked against torch 2.15 for every size up to 25 and larger
   ones; torch's pre-AVX2 "default" build has no fma in the leftover loop).
   Every square and sum is its own rounded operation (the build compiles
   with -ffp-contract=off wherever FMA instructions exist). */
#define DEF_NORM2(T, L, F, SQRT)                                                  \
  static T norm2_##T(const T *x, int64_t n) {                                    \
    T a[L] = {0};                                                                \
    int64_t k = n - n % L;                                                       \
    for (int64_t i = 0; i < k; i += L)                                           \
      for (int j = 0; j < L; j++) {                                              \
        T sq = x[i + j] * x[i + j];                                              \
        a[j] = a[j] + sq;                                                        \
      }                                                                          \
    for (int j = 1; j < L; j++) a[0] = a[0] + a[j];                              \
    int64_t i = k;                                                               \
    if (L == 8 && n - k >= 4) {                                                  \
      for (int64_t t = k; t < k + 4; t++) {                                      \
        T sq = x[t] * x[t];                                                      \
        a[0] = a[0] + sq;                                                        \
      }                                                                          \
      i = k + 4;                                                                 \
    }                                                                            \
    for (int64_t t = i; t < n; t++) a[0] = F(x[t], x[t], a[0]);                  \
    return SQRT(a[0]);                                                           \
  }
DEF_NORM2(float, 8, fmaf, sqrtf)
DEF_NORM2(double, 4, fma, sqrt)

static int norm2(void *out, const void *x, int64_t n, int32_t dtype) {
  if (dtype == TIDE_F32) *(float *)out = norm2_float(x, n);
  else if (dtype == TIDE_F64) *(double *)out = norm2_double(x, n);
  else return tide_fail("multi_norm: the CPU's 2-norm takes f32 or f64, got %s", tide_dtype_name(dtype));
  return 0;
}

/* The norms tensor by tensor, each rounded to its dtype, then the norm of the norms in out_dtype:
   what tide_multi_norm computed with one norm2 call per tensor, in one call. */
static int multi_norm2(void *out, int32_t odt, int32_t n, const void *const *xs, const int64_t *ns, const int32_t *dts) {
  if (odt != TIDE_F32 && odt != TIDE_F64)
    return tide_fail("multi_norm: the total's dtype must be f32 or f64, got %s", tide_dtype_name(odt));
  for (int32_t i = 0; i < n; i++)
    if (dts[i] != TIDE_F32 && (dts[i] != TIDE_F64 || odt != TIDE_F64))
      return tide_fail("multi_norm: tensor %d has dtype %s; the CPU's 2-norm takes f32 (or f64 with an f64 total)",
                       i + 1, tide_dtype_name(dts[i]));
  void *norms = malloc((size_t)(n > 0 ? n : 1) * (size_t)tide_dtype_size(odt));
  if (!norms) return tide_fail("multi_norm: out of memory for %d norms", n);
  for (int32_t i = 0; i < n; i++) {
    if (odt == TIDE_F32) ((float *)norms)[i] = norm2_float(xs[i], ns[i]);
    else ((double *)norms)[i] = dts[i] == TIDE_F32 ? (double)norm2_float(xs[i], ns[i]) : norm2_double(xs[i], ns[i]);
  }
  if (odt == TIDE_F32) *(float *)out = norm2_float(norms, n);
  else *(double *)out = norm2_double(norms, n);
  free(norms);
  return 0;
}

/* ---- clipping's scale ------------------------------------------------------------------- */

typedef struct {
  float f;
  double d;
} clip_coef;

static void scale_loop_f32(char **ptr, const int64_t *st, int64_t n, void *ctx) {
  const float c = ((const clip_coef *)ctx)->f;
  for (int64_t i = 0; i < n; i++) {
    float *x = (float *)(ptr[0] + i * st[0]);
    *x = *x * c;
  }
}
static void scale_loop_f64(char **ptr, const int64_t *st, int64_t n, void *ctx) {
  const double c = ((const clip_coef *)ctx)->d;
  for (int64_t i = 0; i < n; i++) {
    double *x = (double *)(ptr[0] + i * st[0]);
    *x = *x * c;
  }
}
static void scale_loop_bf16(char **ptr, const int64_t *st, int64_t n, void *ctx) {
  const float c = ((const clip_coef *)ctx)->f;
  for (int64_t i = 0; i < n; i++) {
    uint16_t *x = (uint16_t *)(ptr[0] + i * st[0]);
    *x = tide_f32_to_bf16(tide_bf16_to_f32(*x) * c);
  }
}
static void scale_loop_f16(char **ptr, const int64_t *st, int64_t n, void *ctx) {
  const float c = ((const clip_coef *)ctx)->f;
  for (int64_t i = 0; i < n; i++) {
    uint16_t *x = (uint16_t *)(ptr[0] + i * st[0]);
    *x = tide_f32_to_f16(tide_f16_to_f32(*x) * c);
  }
}

static int clip_scale(int32_t n, void *const *xs, const int64_t *ns, const int32_t *dts, const void *total, int32_t tdt,
                      double max_norm) {
  double coef;
  if (tdt == TIDE_F32) {
    /* torch: clip_coef = max_norm / (total + 1e-6) on a 0-d f32 tensor, i.e. reciprocal then multiply */
    float denom = *(const float *)total + (float)1e-6;
    float r = 1.0f / denom;
    coef = r * (float)max_norm;
  } else if (tdt == TIDE_F64) {
    coef = (1.0 / (*(const double *)total + 1e-6)) * max_norm;
  } else {
    return tide_fail("clip_grads_: the total norm must be f32 or f64, got %s", tide_dtype_name(tdt));
  }
  if (coef > 1) coef = 1;  /* clamp(max=1) keeps NaN */
  for (int32_t i = 0; i < n; i++)
    if (!tide_is_float(dts[i]))
      return tide_fail("clip_grads_: tensor %d has dtype %s; expected a floating-point dtype", i + 1, tide_dtype_name(dts[i]));
  clip_coef c = {(float)coef, coef};
  for (int32_t i = 0; i < n; i++) {
    tide_loop_fn fn;
    switch (dts[i]) {
      case TIDE_F32: fn = scale_loop_f32; break;
      case TIDE_F64: fn = scale_loop_f64; break;
      case TIDE_BF16: fn = scale_loop_bf16; break;
      case TIDE_F16: fn = scale_loop_f16; break;
      default: fn = scale_loop_f16; break;
    }
    if (ns[i] == 0) continue;
    char *data[1] = {xs[i]};
    int64_t st[1][TIDE_MAX_DIMS] = {{tide_dtype_size(dts[i])}};
    tide_iter it;
    tide_iter_init_raw(&it, 1, &ns[i], 1, data, (const int64_t(*)[TIDE_MAX_DIMS])st);
    tide_iter_run(&it, fn, &c, TIDE_GRAIN);
  }
  return 0;
}

const struct tide_adamw_kernels tide_cpu_adamw = {
  .adamw_step = adamw_step,
  .norm2 = norm2,
  .adamw_multi_step = adamw_multi_step,
  .multi_norm2 = multi_norm2,
  .clip_scale = clip_scale,
};

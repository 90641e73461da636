/* Random kernels: fills and sampling over the Philox stream layout of
   runtime/philox.h. Each kernel reads the stream (seed, offset) given and
   never advances it: the op layer moves the generator on by the blocks the
   layout assigns to the call. Element i of a fill always takes the
   same counter and slot, so any strides and any thread count give the same
   values on every backend. Strides are in elements. */
#ifndef TIDE_KERNELS_RANDOM_H
#define TIDE_KERNELS_RANDOM_H
#include <stdint.h>

struct tide_random_kernels {
  /* Uniform values in [low, high) (finite, representable range checked by the caller) into a strided
     float tensor; -1 when no value of dtype lies in [low, high). */
  int (*uniform)(void *data, int32_t ndim, const int64_t *shape, const int64_t *stride, int32_t dtype,
                 uint64_t seed, uint64_t offset, double low, double high);
  /* Normal values mean + std * z into a strided float tensor. */
  int (*normal)(void *data, int32_t ndim, const int64_t *shape, const int64_t *stride, int32_t dtype,
                uint64_t seed, uint64_t offset, double mean, double std);
  /* Integers in [low, high) (exact in dtype, checked by the caller) into a strided tensor of any dtype. */
  int (*randint)(void *data, int32_t ndim, const int64_t *shape, const int64_t *stride, int32_t dtype,
                 uint64_t seed, uint64_t offset, int64_t low, int64_t high);
  /* 1 where an f64 uniform u of the stream has u < p, else 0, into a strided tensor of any dtype. */
  int (*bernoulli)(void *data, int32_t ndim, const int64_t *shape, const int64_t *stride, int32_t dtype,
                   uint64_t seed, uint64_t offset, double p);
  /* A permutation of 0..n-1 into contiguous out[n] by Fisher-Yates: position i (n-1 down to 1) swaps
     with x mod (i+1), x the (n-1-i)-th randint in [0, 2^62) of the stream. */
  int (*randperm)(int64_t *out, int64_t n, uint64_t seed, uint64_t offset);
  /* n category ids per row of contiguous f64 weights w[rows][K] into out[rows][n]; validates every
     row first (-1 naming the bad weight or row). Without replacement, n <= the nonzero weights of
     each row is checked here too. With out NULL, only validates. */
  int (*multinomial)(int64_t *out, const double *w, int64_t rows, int64_t K, int64_t n, int32_t replacement,
                     uint64_t seed, uint64_t offset);
};

extern const struct tide_random_kernels tide_cpu_random;

#endif

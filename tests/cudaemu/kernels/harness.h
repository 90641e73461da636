// The kernel parity harness: each test calls a CUDA kernel (through the
// backend table) and the CPU kernel on the same inputs and compares. The same
// sources build as test_cuda_kernels (g++, the emulator: CI) and as
// gpu_cuda_kernels (nvcc, the real kernels: tests/gpu/run.sh), so a test
// never reads device memory on the host: it moves data with cudaMemcpy.
//
//   KTEST(softmax_rows) {
//     Rng r(1);
//     auto x = r.normal_vec(rows * C);
//     Dev dx = upload(x); Dev dy(rows * C * 4);          // dy starts as 0xFF poison
//     CHECK_OK(cuda().softmax->softmax_forward(dy.p, dx.p, ...));
//     std::vector<float> want(rows * C);
//     CHECK_OK(cpu().softmax->softmax_forward(want.data(), x.data(), ...));
//     expect_close(download<float>(dy, rows * C), want, 1e-6, 1e-6, "softmax");
//   }
#ifndef TIDE_KERNEL_HARNESS_H
#define TIDE_KERNEL_HARNESS_H
#include "cudaemu.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <string>
#include <vector>

extern "C" {
#include "tide.h"
#include "error.h"
#include "dtype.h"
#include "backend.h"
#include "fill.h"
#include "copy.h"
#include "unary.h"
#include "binary.h"
#include "nn_gelu.h"
#include "reduce.h"
#include "cumsum.h"
#include "sort.h"
#include "index.h"
#include "random.h"
#include "matmul.h"
#include "adamw.h"
#include "nn_embedding.h"
#include "nn_loss.h"
#include "nn_attention.h"
#include "nn_dropout.h"
#include "nn_norm.h"
#include "nn_softmax.h"
}

namespace kt {

// registration: KTEST(name) { ... } defines and registers a test
struct Registrar {
  Registrar(const char *name, void (*fn)());
};
#define KTEST(name)                                          \
  static void kt_test_##name();                              \
  static ::kt::Registrar kt_reg_##name(#name, kt_test_##name); \
  static void kt_test_##name()

// failures of the running test
void fail_at(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#define CHECK(cond, ...) do { if (!(cond)) ::kt::fail_at(__FILE__, __LINE__, __VA_ARGS__); } while (0)
// a kernel call that must succeed (prints tide_last_error otherwise)
#define CHECK_OK(call) do { if ((call) != 0) ::kt::fail_at(__FILE__, __LINE__, "%s failed: %s", #call, tide_last_error()); } while (0)
// a kernel call that must fail with a message containing `needle`
#define CHECK_FAILS(call, needle) do { if ((call) == 0) ::kt::fail_at(__FILE__, __LINE__, "%s succeeded", #call); \
  else if (!strstr(tide_last_error(), needle)) ::kt::fail_at(__FILE__, __LINE__, "%s: error '%s' lacks '%s'", #call, tide_last_error(), needle); } while (0)
int failures();

// the backends' tables
inline const tide_backend &cpu() { return tide_cpu_backend; }
inline const tide_backend &cuda() { return *tide_cuda_backend_get(); }

// Device memory, poisoned with 0xFF bytes on allocation so unwritten elements show; freed at scope end.
struct Dev {
  void *p = nullptr;
  size_t bytes = 0;
  explicit Dev(size_t n);
  Dev(const Dev &) = delete;
  Dev &operator=(const Dev &) = delete;
  Dev(Dev &&o) noexcept : p(o.p), bytes(o.bytes) { o.p = nullptr; o.bytes = 0; }
  ~Dev();
  template <class T> T *as() const { return static_cast<T *>(p); }
};
template <class T> inline Dev upload(const std::vector<T> &h) {
  Dev d(h.size() * sizeof(T));
  if (!h.empty()) cudaMemcpy(d.p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice);
  return d;
}
template <class T> inline std::vector<T> download(const Dev &d, size_t n) {
  std::vector<T> h(n);
  if (n) {
    cudaError_t e = cudaMemcpy(h.data(), d.p, n * sizeof(T), cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) fail_at(__FILE__, __LINE__, "download: %s", cudaGetErrorString(e));
  }
  return h;
}
// Reseeds the emulator's schedule (a no-op on a GPU): run a kernel twice
// under two seeds and compare bits to show it deterministic.
void schedule_seed(uint64_t seed);
// true under the emulator, false on a GPU
bool emulated();

// Inputs: a seeded xorshift generator.
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t next() { s ^= s << 13; s ^= s >> 7; s ^= s << 17; return s; }
  double uniform() { return (double)(next() >> 11) * 0x1.0p-53; }             // [0, 1)
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  double normal() { double u = uniform() + 1e-300, v = uniform(); return sqrt(-2 * log(u)) * cos(6.283185307179586 * v); }
  int64_t randint(int64_t lo, int64_t hi) { return lo + (int64_t)(next() % (uint64_t)(hi - lo)); }  // [lo, hi)
  template <class T> std::vector<T> normal_vec(size_t n, double scale = 1) {
    std::vector<T> v(n);
    for (auto &x : v) x = (T)(normal() * scale);
    return v;
  }
  template <class T> std::vector<T> uniform_vec(size_t n, double lo, double hi) {
    std::vector<T> v(n);
    for (auto &x : v) x = (T)uniform(lo, hi);
    return v;
  }
};

// Compares got with want elementwise: |g - w| <= atol + rtol * |w|; NaN
// matches NaN and infinities match exactly. Reports the first mismatches and
// returns whether all matched.
bool expect_close(const double *got, const double *want, size_t n, double rtol, double atol, const char *what);
template <class T> inline bool expect_close(const std::vector<T> &got, const std::vector<T> &want, double rtol,
                                            double atol, const char *what) {
  if (got.size() != want.size()) {
    fail_at(__FILE__, __LINE__, "%s: %zu values, expected %zu", what, got.size(), want.size());
    return false;
  }
  std::vector<double> g(got.begin(), got.end()), w(want.begin(), want.end());
  return expect_close(g.data(), w.data(), g.size(), rtol, atol, what);
}
// Bitwise equality of two byte ranges; reports the first differing byte.
bool expect_bits(const void *got, const void *want, size_t nbytes, const char *what);
template <class T> inline bool expect_bits(const std::vector<T> &got, const std::vector<T> &want, const char *what) {
  if (got.size() != want.size()) {
    fail_at(__FILE__, __LINE__, "%s: %zu values, expected %zu", what, got.size(), want.size());
    return false;
  }
  return expect_bits(got.data(), want.data(), got.size() * sizeof(T), what);
}

// Row-major contiguous strides of shape (elements).
std::vector<int64_t> contiguous_strides(const std::vector<int64_t> &shape);

}  // namespace kt

using kt::Dev;
using kt::Rng;
using kt::cpu;
using kt::cuda;
using kt::download;
using kt::upload;
using kt::expect_bits;
using kt::expect_close;

#endif

// test_cuda_kernels / gpu_cuda_kernels: runs every KTEST (or those whose name
// contains argv[1]) and exits 1 on any failure. On a GPU build without a GPU
// it exits 77, which ctest reports as skipped.
#include "harness.h"

#include <stdarg.h>
#include <stdlib.h>
#include <chrono>

namespace kt {
namespace {
struct Test { const char *name; void (*fn)(); };
std::vector<Test> &tests() { static std::vector<Test> t; return t; }
int fails_now = 0, fails_total = 0;
const char *current = "";
}  // namespace

Registrar::Registrar(const char *name, void (*fn)()) { tests().push_back({name, fn}); }

void fail_at(const char *file, int line, const char *fmt, ...) {
  if (fails_now < 20) {
    fprintf(stderr, "FAIL %s (%s:%d): ", current, file, line);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
  }
  fails_now++;
  fails_total++;
}
int failures() { return fails_total; }

Dev::Dev(size_t n) : bytes(n) {
  cudaError_t e = cudaMalloc(&p, n ? n : 1);
  if (e != cudaSuccess) {
    fprintf(stderr, "cudaMalloc of %zu bytes: %s\n", n, cudaGetErrorString(e));
    exit(2);
  }
  cudaMemset(p, 0xFF, n ? n : 1);
}
Dev::~Dev() { if (p) cudaFree(p); }

void schedule_seed(uint64_t seed) {
#if !defined(__CUDACC__)
  cudaemu::set_seed(seed);
#else
  (void)seed;
#endif
}
bool emulated() {
#if defined(__CUDACC__)
  return false;
#else
  return true;
#endif
}

bool expect_close(const double *got, const double *want, size_t n, double rtol, double atol, const char *what) {
  size_t bad = 0;
  for (size_t i = 0; i < n; i++) {
    double g = got[i], w = want[i];
    bool ok = (g != g && w != w) || (isinf(w) ? g == w : fabs(g - w) <= atol + rtol * fabs(w));
    if (!ok) {
      if (bad < 5) fail_at(__FILE__, __LINE__, "%s: element %zu is %.9g, expected %.9g", what, i, g, w);
      bad++;
    }
  }
  if (bad > 5) fail_at(__FILE__, __LINE__, "%s: %zu of %zu elements differ", what, bad, n);
  return bad == 0;
}

bool expect_bits(const void *got, const void *want, size_t nbytes, const char *what) {
  const unsigned char *g = (const unsigned char *)got, *w = (const unsigned char *)want;
  for (size_t i = 0; i < nbytes; i++)
    if (g[i] != w[i]) {
      fail_at(__FILE__, __LINE__, "%s: byte %zu is 0x%02x, expected 0x%02x", what, i, g[i], w[i]);
      return false;
    }
  return true;
}

std::vector<int64_t> contiguous_strides(const std::vector<int64_t> &shape) {
  std::vector<int64_t> st(shape.size());
  int64_t s = 1;
  for (size_t d = shape.size(); d-- > 0;) {
    st[d] = s;
    s *= shape[d];
  }
  return st;
}

}  // namespace kt

int main(int argc, char **argv) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    printf("skipped: no CUDA device\n");
    return 77;
  }
  const char *filter = argc > 1 ? argv[1] : nullptr;
  int ran = 0;
  for (auto &t : kt::tests()) {
    if (filter && !strstr(t.name, filter)) continue;
    kt::current = t.name;
    kt::fails_now = 0;
    auto t0 = std::chrono::steady_clock::now();
    t.fn();
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    printf("%-40s %s (%.0f ms)\n", t.name, kt::fails_now ? "FAIL" : "ok", ms);
    ran++;
  }
  if (ran == 0) {
    fprintf(stderr, "no test matches %s\n", filter ? filter : "");
    return 1;
  }
  if (kt::failures()) {
    fprintf(stderr, "%d failures\n", kt::failures());
    return 1;
  }
  printf("%s: %d tests ok\n", kt::emulated() ? "emulated" : "gpu", ran);
  return 0;
}

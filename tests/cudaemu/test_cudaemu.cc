// The emulator's own checks: a correct block reduction passes on every seed,
// the same reduction without a barrier is caught on some seed, warp shuffles
// reduce exactly, a divergent __syncthreads is reported (not hung), and
// a 16x16 by 16x8 bf16 tile
// through ldmatrix_x4 and mma_bf16_16816 equals a CPU GEMM, and the same
// kernel with a swapped fragment index is caught; graph capture records
// launches (with copies of their arguments), device copies and memsets, and
// replays them in order, and whatever a capture forbids fails and
// invalidates it.
#include "cudaemu.h"
#include "mma_tile.h"

#include <chrono>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

extern "C" {
#include "tide.h"
}

static int failures = 0;
#define CHECK(c, ...) do { if (!(c)) { fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); fprintf(stderr, __VA_ARGS__); fprintf(stderr, "\n"); failures++; } } while (0)

static double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Sum of x over each block of 256, with or without the barrier after staging.
template <bool kBarrier> __global__ void block_sum(const int *x, int *out) {
  __shared__ int s[256];
  int t = threadIdx.x;
  s[t] = x[blockIdx.x * 256 + t];
  if (kBarrier) __syncthreads();
  for (int stride = 128; stride > 0; stride /= 2) {
    if (t < stride) s[t] += s[t + stride];
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = s[0];
}

// Warp sums by xor shuffles, one atomicAdd per warp; and a ballot of odd lanes.
__global__ void warp_sum(const int *x, int *out, unsigned *ballot) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  int v = x[i];
  for (int m = 16; m > 0; m /= 2) v += __shfl_xor_sync(0xffffffffu, v, m);
  int d = x[i];
  for (int o = 16; o > 0; o /= 2) d += __shfl_down_sync(0xffffffffu, d, o);
  unsigned b = __ballot_sync(0xffffffffu, x[i] & 1);
  if ((threadIdx.x & 31) == 0) {
    atomicAdd(out, v);
    CHECK(d == v, "shfl_down sum %d != shfl_xor sum %d", d, v);
    ballot[i / 32] = b;
  }
}

// Threads below 16 wait at a barrier the others never reach.
__global__ void divergent_barrier(int *out) {
  if (threadIdx.x < 16) __syncthreads();
  out[threadIdx.x] = 1;
}

// Lanes 16-31 leave before a full-warp shuffle: the lanes that stay wait forever.
__global__ void half_warp_shuffle(int *out) {
  if (threadIdx.x >= 16) return;
  out[threadIdx.x] = __shfl_down_sync(0xffffffffu, (int)threadIdx.x, 1);
}

static uint16_t to_bf16(float f) {  // exact for the small integers used here
  uint32_t u;
  memcpy(&u, &f, 4);
  return (uint16_t)(u >> 16);
}

// Runs mma_tile<kSwap> on random small integers (every sum exact in f32) and
// returns how many of the 128 outputs differ from the CPU GEMM.
template <bool kSwap> static int mma_wrong(int seed) {
  uint64_t s = 0x9e3779b97f4a7c15ull * (uint64_t)(seed + 1);
  auto next = [&](int range) { s = s * 6364136223846793005ull + 1442695040888963407ull; return (int)((s >> 33) % (2 * range + 1)) - range; };
  std::vector<float> A(256), B(128), C(128);  // B is 16x8 row-major: B[k * 8 + n]
  for (float &v : A) v = (float)next(8);
  for (float &v : B) v = (float)next(8);
  for (float &v : C) v = (float)next(100);
  std::vector<uint16_t> hA(256), hBt(128);
  for (int i = 0; i < 256; i++) hA[i] = to_bf16(A[i]);
  for (int k = 0; k < 16; k++)
    for (int n = 0; n < 8; n++) hBt[n * 16 + k] = to_bf16(B[k * 8 + n]);
  uint16_t *dA, *dBt;
  float *dC, *dD;
  unsigned *dBad, bad = 0;
  cudaMalloc(&dBad, sizeof bad);
  cudaMemcpy(dBad, &bad, sizeof bad, cudaMemcpyHostToDevice);
  cudaMalloc(&dA, 256 * 2);
  cudaMalloc(&dBt, 128 * 2);
  cudaMalloc(&dC, 128 * 4);
  cudaMalloc(&dD, 128 * 4);
  cudaMemcpy(dA, hA.data(), 256 * 2, cudaMemcpyHostToDevice);
  cudaMemcpy(dBt, hBt.data(), 128 * 2, cudaMemcpyHostToDevice);
  cudaMemcpy(dC, C.data(), 128 * 4, cudaMemcpyHostToDevice);
  cudaemu::set_seed(seed);
  LAUNCH(mma_tile<kSwap>, 1, 32, 0, 0, dA, dBt, dC, dD, dBad);
  CHECK(cudaGetLastError() == cudaSuccess, "mma_tile launch failed: %s", cudaemu::last_message());
  cudaMemcpy(&bad, dBad, sizeof bad, cudaMemcpyDeviceToHost);
  CHECK(bad == 0, "seed %d: %u ldmatrix fragments differ from the PTX ISA's formulas", seed, bad);
  cudaFree(dBad);
  std::vector<float> got(128);
  cudaMemcpy(got.data(), dD, 128 * 4, cudaMemcpyDeviceToHost);
  int wrong = 0;
  for (int m = 0; m < 16; m++)
    for (int n = 0; n < 8; n++) {
      float want = C[m * 8 + n];
      for (int k = 0; k < 16; k++) want += A[m * 16 + k] * B[k * 8 + n];
      wrong += got[m * 8 + n] != want;
    }
  cudaFree(dA);
  cudaFree(dBt);
  cudaFree(dC);
  cudaFree(dD);
  return wrong;
}

static std::vector<int> inputs(int n) {
  std::vector<int> v(n);
  uint64_t s = 12345;
  for (int i = 0; i < n; i++) { s = s * 6364136223846793005ull + 1442695040888963407ull; v[i] = (int)(s >> 40) % 1000 - 500; }
  return v;
}

template <bool kBarrier> static int count_wrong(int seed, const std::vector<int> &h, int blocks) {
  int *x, *out;
  cudaMalloc(&x, h.size() * sizeof(int));
  cudaMalloc(&out, blocks * sizeof(int));
  cudaMemcpy(x, h.data(), h.size() * sizeof(int), cudaMemcpyHostToDevice);
  cudaemu::set_seed(seed);
  double t0 = now_ms();
  LAUNCH(block_sum<kBarrier>, blocks, 256, 0, 0, x, out);
  double t1 = now_ms();
  CHECK(cudaGetLastError() == cudaSuccess, "block_sum launch failed");
  std::vector<int> r(blocks);
  cudaMemcpy(r.data(), out, blocks * sizeof(int), cudaMemcpyDeviceToHost);
  int wrong = 0;
  for (int b = 0; b < blocks; b++) {
    int want = 0;
    for (int t = 0; t < 256; t++) want += h[b * 256 + t];
    wrong += r[b] != want;
  }
  if (seed == 1 || seed == 7) printf("block_sum<%d>: %d blocks of 256 in %.2f ms\n", kBarrier, blocks, t1 - t0);
  cudaFree(x);
  cudaFree(out);
  return wrong;
}

// y[i] = a * x[i] + b, one block-reduced sum of y into out[0] (a barrier inside, so replay runs real fibers).
__global__ void axpb(const float *x, float *y, float a, float b, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * x[i] + b;
}
__global__ void sum256(const float *y, float *out) {
  __shared__ float s[256];
  s[threadIdx.x] = y[threadIdx.x];
  __syncthreads();
  for (int st = 128; st > 0; st /= 2) {
    if ((int)threadIdx.x < st) s[threadIdx.x] += s[threadIdx.x + st];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[0] = s[0];
}

// (f) capture and replay; errors that invalidate a capture
static void graphs() {
  const int n = 256;
  float *x, *y, *z, *out;
  cudaMalloc(&x, n * sizeof(float));
  cudaMalloc(&y, n * sizeof(float));
  cudaMalloc(&z, n * sizeof(float));
  cudaMalloc(&out, sizeof(float));
  std::vector<float> hx(n), hy(n), hz(n);
  for (int i = 0; i < n; i++) hx[i] = (float)(i % 7);
  cudaMemcpy(x, hx.data(), n * sizeof(float), cudaMemcpyHostToDevice);
  cudaMemset(y, 0, n * sizeof(float));
  cudaStream_t s;
  CHECK(cudaStreamCreate(&s) == cudaSuccess, "stream");
  CHECK(cudaStreamBeginCapture((cudaStream_t)0, cudaStreamCaptureModeThreadLocal) == cudaErrorStreamCaptureUnsupported,
        "the legacy stream was captured");

  // record: y = 2x + 1; z = y (copy); y = 0 (memset); out = sum(z)
  CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess, "begin capture");
  CHECK(cudaemu::capturing(s) && cudaemu::capturing(), "capturing()");
  uint64_t grids = cudaemu::grids_run();
  float a = 2;
  LAUNCH(axpb, 1, n, 0, s, x, y, a, 1.0f, n);
  a = 100;  // the graph holds a copy of the arguments
  CHECK(cudaMemcpyAsync(z, y, n * sizeof(float), cudaMemcpyDeviceToDevice, s) == cudaSuccess, "captured copy");
  CHECK(cudaMemsetAsync(y, 0, n * sizeof(float), s) == cudaSuccess, "captured memset");
  LAUNCH(sum256, 1, n, 0, s, z, out);
  CHECK(cudaGetLastError() == cudaSuccess, "captured launches: %s", cudaemu::last_message());
  cudaStreamCaptureStatus st;
  cudaStreamIsCapturing(s, &st);
  CHECK(st == cudaStreamCaptureStatusActive, "status %d", (int)st);
  cudaGraph_t graph = nullptr;
  CHECK(cudaStreamEndCapture(s, &graph) == cudaSuccess && graph, "end capture");
  CHECK(cudaemu::grids_run() == grids, "a captured kernel ran during the capture");
  cudaMemcpy(hy.data(), y, n * sizeof(float), cudaMemcpyDeviceToHost);
  CHECK(hy[5] == 0, "the captured kernel wrote y during the capture");
  float h_out = -1;
  cudaMemcpy(out, &h_out, sizeof h_out, cudaMemcpyHostToDevice);
  cudaGraphExec_t exec = nullptr;
  CHECK(cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess && exec, "instantiate");
  cudaGraphDestroy(graph);  // the executable graph is independent of it
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < n; i++) hx[i] = (float)((i * (round + 3)) % 11);
    cudaMemcpy(x, hx.data(), n * sizeof(float), cudaMemcpyHostToDevice);
    CHECK(cudaGraphLaunch(exec, 0) == cudaSuccess, "launch");
    cudaMemcpy(hy.data(), y, n * sizeof(float), cudaMemcpyDeviceToHost);
    cudaMemcpy(hz.data(), z, n * sizeof(float), cudaMemcpyDeviceToHost);
    cudaMemcpy(&h_out, out, sizeof h_out, cudaMemcpyDeviceToHost);
    float want = 0;
    int bad = 0;
    for (int i = 0; i < n; i++) {
      bad += hz[i] != 2 * hx[i] + 1 || hy[i] != 0;
      want += 2 * hx[i] + 1;
    }
    CHECK(bad == 0, "replay %d: %d elements wrong", round, bad);
    CHECK(h_out == want, "replay %d: sum %g, want %g", round, h_out, want);
  }
  CHECK(cudaemu::grids_run() == grids + 6, "3 replays of 2 kernels ran %llu grids",
        (unsigned long long)(cudaemu::grids_run() - grids));
  cudaGraphExecDestroy(exec);

  // forbidden during a capture: each fails and the capture ends invalidated
  struct Case { const char *what; cudaError_t want; };
  const Case cases[] = {{"synchronize", cudaErrorStreamCaptureUnsupported},
                        {"device-to-host copy", cudaErrorStreamCaptureImplicit},
                        {"async device-to-host copy", cudaErrorStreamCaptureUnsupported},
                        {"launch on the legacy stream", cudaErrorStreamCaptureImplicit},
                        {"cudaMalloc", cudaErrorStreamCaptureUnsupported},
                        {"nested capture", cudaErrorIllegalState}};
  for (const Case &c : cases) {
    cudaStream_t s2;
    cudaStreamCreate(&s2);
    CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess, "begin (%s)", c.what);
    LAUNCH(axpb, 1, n, 0, s, x, y, 3.0f, 0.0f, n);
    cudaError_t e = cudaSuccess;
    float h;
    void *p = nullptr;
    if (!strcmp(c.what, "synchronize")) e = cudaDeviceSynchronize();
    else if (!strcmp(c.what, "device-to-host copy")) e = cudaMemcpy(&h, out, sizeof h, cudaMemcpyDeviceToHost);
    else if (!strcmp(c.what, "async device-to-host copy")) e = cudaMemcpyAsync(&h, out, sizeof h, cudaMemcpyDeviceToHost, s);
    else if (!strcmp(c.what, "launch on the legacy stream")) {
      LAUNCH(axpb, 1, n, 0, 0, x, y, 3.0f, 0.0f, n);
      e = cudaGetLastError();
    } else if (!strcmp(c.what, "cudaMalloc")) e = cudaMalloc(&p, 1024);
    else e = cudaStreamBeginCapture(s2, cudaStreamCaptureModeThreadLocal);
    CHECK(e == c.want, "%s during a capture gave %d, want %d", c.what, (int)e, (int)c.want);
    cudaGraph_t g2 = nullptr;
    e = cudaStreamEndCapture(s, &g2);
    if (!strcmp(c.what, "nested capture")) {
      CHECK(e == cudaSuccess && g2, "the outer capture survives a refused nested one");
      cudaGraphDestroy(g2);
    } else {
      CHECK(e == cudaErrorStreamCaptureInvalidated && !g2, "%s did not invalidate the capture (%d)", c.what, (int)e);
    }
    CHECK(!cudaemu::capturing(), "the capture did not end");
  }
  // relaxed mode allows cudaMalloc (not recorded)
  CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess, "begin");
  cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
  cudaThreadExchangeStreamCaptureMode(&mode);
  void *p = nullptr;
  CHECK(cudaMalloc(&p, 1024) == cudaSuccess && p, "cudaMalloc in relaxed mode");
  cudaThreadExchangeStreamCaptureMode(&mode);
  cudaGraph_t g3 = nullptr;
  CHECK(cudaStreamEndCapture(s, &g3) == cudaSuccess && g3, "end after a relaxed cudaMalloc");
  cudaGraphDestroy(g3);
  cudaFree(p);
  // after everything, eager work runs at once again
  LAUNCH(axpb, 1, n, 0, 0, x, y, 1.0f, 5.0f, n);
  cudaMemcpy(hy.data(), y, n * sizeof(float), cudaMemcpyDeviceToHost);
  CHECK(hy[3] == hx[3] + 5, "eager launch after captures");
  cudaFree(x);
  cudaFree(y);
  cudaFree(z);
  cudaFree(out);
}

int main() {
  // the seeds tried: base..base+4, base from CUDAEMU_SEED (ctest runs two bases)
  const char *env = getenv("CUDAEMU_SEED");
  const int base = env ? atoi(env) : 1;
  const int blocks = 8;
  std::vector<int> h = inputs(blocks * 256);

  // (a) the correct reduction passes on every seed
  for (int seed = base; seed < base + 5; seed++) CHECK(count_wrong<true>(seed, h, blocks) == 0, "correct reduction wrong on seed %d", seed);

  // (b) the missing barrier is caught: a wrong sum on at least one seed
  int caught = 0;
  fflush(stdout);
  std::vector<int> seeds_caught;
  for (int seed = base; seed < base + 5; seed++)
    if (count_wrong<false>(seed, h, blocks)) { caught++; seeds_caught.push_back(seed); }
  printf("missing __syncthreads caught on seeds:");
  for (int s : seeds_caught) printf(" %d", s);
  printf(" (%d of 5)\n", caught);
  CHECK(caught > 0, "a missing __syncthreads gave right answers on every seed");

  // (c) warp shuffles and ballot equal the serial results
  {
    const int n = 4 * 128;
    std::vector<int> hx = inputs(n);
    int *x, *out;
    unsigned *ballot;
    cudaMalloc(&x, n * sizeof(int));
    cudaMalloc(&out, sizeof(int));
    cudaMalloc(&ballot, n / 32 * sizeof(unsigned));
    cudaMemcpy(x, hx.data(), n * sizeof(int), cudaMemcpyHostToDevice);
    cudaMemset(out, 0, sizeof(int));
    for (int seed = base; seed < base + 3; seed++) {
      cudaemu::set_seed(seed);
      cudaMemset(out, 0, sizeof(int));
      double t0 = now_ms();
      LAUNCH(warp_sum, 4, 128, 0, 0, x, out, ballot);
      double t1 = now_ms();
      CHECK(cudaGetLastError() == cudaSuccess, "warp_sum launch failed");
      int got, want = 0;
      cudaMemcpy(&got, out, sizeof(int), cudaMemcpyDeviceToHost);
      for (int v : hx) want += v;
      CHECK(got == want, "warp shuffle sum %d, serial %d (seed %d)", got, want, seed);
      std::vector<unsigned> hb(n / 32);
      cudaMemcpy(hb.data(), ballot, hb.size() * sizeof(unsigned), cudaMemcpyDeviceToHost);
      for (int w = 0; w < n / 32; w++) {
        unsigned e = 0;
        for (int l = 0; l < 32; l++) e |= (unsigned)(hx[w * 32 + l] & 1) << l;
        CHECK(hb[w] == e, "ballot of warp %d: %08x, want %08x", w, hb[w], e);
      }
      if (seed == base) printf("warp_sum: 4 blocks of 128 in %.2f ms\n", t1 - t0);
    }
    cudaFree(x);
    cudaFree(out);
    cudaFree(ballot);
  }

  // (d) a barrier in a divergent branch is a reported deadlock, not a hang
  {
    int *out;
    cudaMalloc(&out, 32 * sizeof(int));
    LAUNCH(divergent_barrier, 1, 32, 0, 0, out);
    cudaError_t e = cudaGetLastError();
    CHECK(e == cudaErrorLaunchFailure, "the deadlock was not an error (%d)", (int)e);
    const char *m = cudaemu::last_message();
    CHECK(strstr(m, "threads 0-15 wait at __syncthreads") && strstr(m, "test_cudaemu.cc:") &&
              strstr(m, "threads 16-31 have exited"),
          "deadlock report: %s", m);
    CHECK(cudaGetLastError() == cudaSuccess, "the error was not cleared");
    // the emulator still works after abandoning the deadlocked fibers
    CHECK(count_wrong<true>(2, h, blocks) == 0, "reduction after a deadlock");
    LAUNCH(half_warp_shuffle, 1, 32, 0, 0, out);
    CHECK(cudaGetLastError() == cudaErrorLaunchFailure, "the half-warp shuffle did not fail");
    m = cudaemu::last_message();
    CHECK(strstr(m, "threads 0-15 wait at a warp collective") && strstr(m, "threads 16-31 have exited"),
          "half-warp report: %s", m);
    cudaFree(out);
  }

  // (e) ldmatrix_x4 + mma_bf16_16816 equal the CPU GEMM exactly; a swapped
  // fragment index is wrong on every seed
  for (int seed = base; seed < base + 5; seed++) {
    int w = mma_wrong<false>(seed);
    CHECK(w == 0, "mma tile: %d of 128 wrong on seed %d", w, seed);
    int ws = mma_wrong<true>(seed);
    CHECK(ws > 0, "mma tile with a swapped fragment index passed on seed %d", seed);
    if (seed == base) printf("mma tile: %d of 128 wrong; swapped fragment index: %d of 128 wrong\n", w, ws);
  }

  graphs();

  if (failures) { fprintf(stderr, "%d failures\n", failures); return 1; }
  printf("ok\n");
  return 0;
}

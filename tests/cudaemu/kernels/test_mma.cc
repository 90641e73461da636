// The tensor-core tile of tests/cudaemu/mma_tile.h (ldmatrix_x4 and
// mma_bf16_16816): emulated in CI, the PTX itself on a GPU (gpu_cuda_kernels).
// Small integers make every partial sum exact, so D must equal the CPU GEMM
// bit for bit; a swapped fragment index must be caught.
#include "harness.h"
#include "mma_tile.h"

static uint16_t bf16_of(float f) { return tide_f32_to_bf16(f); }

// Runs the tile on seeded inputs; returns the wrong elements of D (and the ldmatrix mismatches in *bad).
template <bool kSwap> static int tile_wrong(int seed, unsigned *bad_out) {
  Rng r((uint64_t)seed);
  std::vector<float> A(256), B(128), C(128);  // B is 16x8 row-major: B[k * 8 + n]
  for (float &v : A) v = (float)r.randint(-8, 9);
  for (float &v : B) v = (float)r.randint(-8, 9);
  for (float &v : C) v = (float)r.randint(-100, 101);
  std::vector<uint16_t> hA(256), hBt(128);
  for (int i = 0; i < 256; i++) hA[i] = bf16_of(A[i]);
  for (int k = 0; k < 16; k++)
    for (int n = 0; n < 8; n++) hBt[n * 16 + k] = bf16_of(B[k * 8 + n]);
  Dev dA = upload(hA), dBt = upload(hBt), dC = upload(C), dD(128 * 4), dBad = upload(std::vector<unsigned>{0});
  kt::schedule_seed((uint64_t)seed);
  LAUNCH(mma_tile<kSwap>, 1, 32, 0, 0, dA.as<uint16_t>(), dBt.as<uint16_t>(), dC.as<float>(), dD.as<float>(),
         dBad.as<unsigned>());
  cudaError_t e = cudaDeviceSynchronize();
  CHECK(e == cudaSuccess, "mma_tile: %s", cudaGetErrorString(e));
  *bad_out = download<unsigned>(dBad, 1)[0];
  auto got = download<float>(dD, 128);
  int wrong = 0;
  for (int m = 0; m < 16; m++)
    for (int n = 0; n < 8; n++) {
      float want = C[m * 8 + n];
      for (int k = 0; k < 16; k++) want += A[m * 16 + k] * B[k * 8 + n];
      wrong += got[m * 8 + n] != want;
    }
  return wrong;
}

KTEST(mma_tile_equals_cpu_gemm) {
  for (int seed = 1; seed <= 3; seed++) {
    unsigned bad = 0;
    int w = tile_wrong<false>(seed, &bad);
    CHECK(w == 0, "seed %d: %d of 128 elements of D differ from the CPU GEMM", seed, w);
    CHECK(bad == 0, "seed %d: %u ldmatrix fragments differ from the PTX ISA's formulas", seed, bad);
    int ws = tile_wrong<true>(seed, &bad);
    CHECK(ws > 0, "seed %d: the tile with a swapped fragment index passed", seed);
  }
}

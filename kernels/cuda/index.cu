// The index family on CUDA (kernels/index.h): index_select, gather,
// scatter_add, masked_fill, matching kernels/cpu/index.c.
//
// Every index value is checked on the device before anything is written
// through it: a check kernel records the lowest linear position holding a bad
// value (an integer atomicMin, so the reported value does not depend on the
// schedule), and the host reads that position back (the one synchronisation
// these ops make) and fails with the CPU's message naming the op and value.
//
// scatter_add is deterministic without float atomics: one thread per line
// along the scatter dim walks that line in index order, as the CPU does, so
// every destination receives its sources in index order (lines write
// disjoint destinations: the destination is not an expanded view).
#include "common.cuh"
extern "C" {
#include "index.h"
#include "dtype.h"
}

// An index value of any index dtype (the op layer limits idt to i64, i32, u16, u8).
__device__ __forceinline__ int64_t load_index(const char *p, int32_t dt) {
  switch (dt) {
    case TIDE_I64: return *(const int64_t *)p;
    case TIDE_I32: return *(const int32_t *)p;
    case TIDE_U16: return *(const uint16_t *)p;
    default: return *(const uint8_t *)p;
  }
}

// The CPU's message (kernels/cpu/index.c) for a value outside 0..size-1.
static int index_range_error(const char *what, int64_t v, int32_t dim, int64_t size) {
  if (size == 0)
    return tide_fail("%s: index %lld is out of range for dimension %d, which has size 0", what, (long long)v, dim + 1);
  return tide_fail("%s: index %lld is out of range for dimension %d of size %lld (index values are 0-based: 0..%lld)", what,
                   (long long)v, dim + 1, (long long)size, (long long)(size - 1));
}

// ---- index validation ---------------------------------------------------------------------

// first[0] = the lowest linear position i < n whose value is outside [0, size) (stays ~0 if none)
__global__ void check_index_kernel(unsigned long long *first, const char *index, int32_t idt, int32_t ies,
                                   tide_cuda_strided<1> g, int64_t n, int64_t size) {
  TIDE_CUDA_FOR(i, n) {
    int64_t v = load_index(index + g.offset(0, i) * ies, idt);
    if (v < 0 || v >= size) atomicMin(first, (unsigned long long)i);
  }
}

// Checks the n values of the strided index g against size. Returns 0 when all are in
// range; else -1 with the error (the op's range error for the first bad value).
static int validate_index(const char *what, const void *index, int32_t idt, const tide_cuda_strided<1> &g, int64_t n,
                          int32_t dim, int64_t size) {
  if (n == 0) return 0;
  int32_t ies = tide_dtype_size(idt);
  unsigned long long *first = (unsigned long long *)tide_cuda_scratch(sizeof *first);
  if (!first) return -1;
  unsigned long long pos = ~0ull;
  // "none yet": all bits set (an async memset, ordered before the check on the stream)
  cudaError_t e = cudaMemsetAsync(first, 0xFF, sizeof *first, TIDE_CUDA_STREAM);
  int rc = e == cudaSuccess ? 0 : tide_fail("%s on cuda: %s", what, cudaGetErrorString(e));
  if (rc == 0) {
    LAUNCH(check_index_kernel, tide_cuda_blocks(n), TIDE_CUDA_THREADS, 0, TIDE_CUDA_STREAM, first, (const char *)index,
           idt, ies, g, n, size);
    rc = tide_cuda_after_launch(what);
  }
  if (rc == 0) rc = tide_cuda_to_host(&pos, first, sizeof pos, what);
  tide_cuda_scratch_free(first, sizeof *first);
  if (rc) return -1;
  if (pos == ~0ull) return 0;
  // read the bad value itself back
  char bytes[8] = {0};
  if (tide_cuda_to_host(bytes, (const char *)index + g.offset(0, (int64_t)pos) * ies, (size_t)ies, what)) return -1;
  int64_t v;
  switch (idt) {
    case TIDE_I64: memcpy(&v, bytes, 8); break;
    case TIDE_I32: { int32_t x; memcpy(&x, bytes, 4); v = x; break; }
    case TIDE_U16: { uint16_t x; memcpy(&x, bytes, 2); v = x; break; }
    default: v = (uint8_t)bytes[0]; break;
  }
  return index_range_error(what, v, dim, size);
}

// ---- index_select ---------------------------------------------------------------------------

// g runs over out's shape (contiguous); operand 0 is a with 0 along dim, operand 1 the index
// (its stride along dim, 0 elsewhere). The element is a's at index value * a's stride along dim.
template <class T>
__global__ void index_select_kernel(T *out, const T *a, const char *index, int32_t idt, int32_t ies, int64_t astep,
                                    tide_cuda_strided<2> g, int64_t n) {
  TIDE_CUDA_FOR(i, n) {
    int64_t v = load_index(index + g.offset(1, i) * ies, idt);
    out[i] = a[g.offset(0, i) + v * astep];
  }
}

template <class T>
static int launch_index_select(void *out, const void *a, const void *index, int32_t idt, int64_t astep,
                               const tide_cuda_strided<2> &g, int64_t n) {
  TIDE_CUDA_LAUNCH("index_select", index_select_kernel<T>, tide_cuda_blocks(n), TIDE_CUDA_THREADS, 0, (T *)out,
                   (const T *)a, (const char *)index, idt, (int32_t)tide_dtype_size(idt), astep, g, n);
  return 0;
}

static int index_select(void *out, const void *a, int32_t nd, const int64_t *shape, const int64_t *stride, int32_t es,
                        int32_t dim, const void *index, int64_t n, int64_t istride, int32_t idt) {
  const char *what = "index_select";
  tide_cuda_strided<1> ig;
  int64_t nn = n;
  const int64_t *ist[1] = {&istride};
  tide_cuda_strided_init(&ig, 1, &nn, ist);
  if (validate_index(what, index, idt, ig, n, dim, shape[dim])) return -1;
  int64_t oshape[TIDE_MAX_DIMS], ast[TIDE_MAX_DIMS], xst[TIDE_MAX_DIMS];
  for (int32_t d = 0; d < nd; d++) {
    oshape[d] = d == dim ? n : shape[d];
    ast[d] = d == dim ? 0 : stride[d];
    xst[d] = d == dim ? istride : 0;
  }
  tide_cuda_strided<2> g;
  const int64_t *st[2] = {ast, xst};
  int64_t total = tide_cuda_strided_init(&g, nd, oshape, st);
  if (total == 0) return 0;
  switch (es) {
    case 1: return launch_index_select<uint8_t>(out, a, index, idt, stride[dim], g, total);
    case 2: return launch_index_select<uint16_t>(out, a, index, idt, stride[dim], g, total);
    case 4: return launch_index_select<uint32_t>(out, a, index, idt, stride[dim], g, total);
    default: return launch_index_select<uint64_t>(out, a, index, idt, stride[dim], g, total);
  }
}

// ---- gather ---------------------------------------------------------------------------------

// g runs over the index's shape: operand 0 a (0 along dim), operand 1 the index; out is contiguous.
template <class T>
__global__ void gather_kernel(T *out, const T *a, const char *index, int32_t idt, int32_t ies, int64_t astep,
                              tide_cuda_strided<2> g, int64_t n) {
  TIDE_CUDA_FOR(i, n) {
    int64_t v = load_index(index + g.offset(1, i) * ies, idt);
    out[i] = a[g.offset(0, i) + v * astep];
  }
}

template <class T>
static int launch_gather(void *out, const void *a, const void *index, int32_t idt, int64_t astep,
                         const tide_cuda_strided<2> &g, int64_t n) {
  TIDE_CUDA_LAUNCH("gather", gather_kernel<T>, tide_cuda_blocks(n), TIDE_CUDA_THREADS, 0, (T *)out, (const T *)a,
                   (const char *)index, idt, (int32_t)tide_dtype_size(idt), astep, g, n);
  return 0;
}

static int gather(void *out, int32_t nd, const int64_t *shape, const void *a, const int64_t *astride, int64_t asize,
                  int32_t es, int32_t dim, const void *index, const int64_t *istride, int32_t idt) {
  int64_t ast[TIDE_MAX_DIMS];
  for (int32_t d = 0; d < nd; d++) ast[d] = d == dim ? 0 : astride[d];
  tide_cuda_strided<2> g;
  const int64_t *st[2] = {ast, istride};
  int64_t n = tide_cuda_strided_init(&g, nd, shape, st);
  if (n == 0) return 0;
  tide_cuda_strided<1> ig;
  const int64_t *ist[1] = {istride};
  tide_cuda_strided_init(&ig, nd, shape, ist);
  if (validate_index("gather", index, idt, ig, n, dim, asize)) return -1;
  int64_t astep = nd ? astride[dim] : 0;
  switch (es) {
    case 1: return launch_gather<uint8_t>(out, a, index, idt, astep, g, n);
    case 2: return launch_gather<uint16_t>(out, a, index, idt, astep, g, n);
    case 4: return launch_gather<uint32_t>(out, a, index, idt, astep, g, n);
    default: return launch_gather<uint64_t>(out, a, index, idt, astep, g, n);
  }
}

// ---- scatter_add_ ---------------------------------------------------------------------------


// g runs over the lines: the index's shape with 1 at dim; operands 0 a, 1 index, 2 src (element
// strides). Each thread owns one line and adds its len sources in index order.
__global__ void scatter_add_kernel(char *a, int32_t adt, int32_t aes, int64_t astep, const char *index, int32_t idt,
                                   int32_t ies, int64_t istep, const char *src, int32_t sdt, int32_t ses,
                                   int64_t sstep, int64_t len, tide_cuda_strided<3> g, int64_t lines) {
  TIDE_CUDA_FOR(l, lines) {
    char *ap = a + g.offset(0, l) * aes;
    const char *ip = index + g.offset(1, l) * ies, *sp = src + g.offset(2, l) * ses;
    if (adt == TIDE_F32 && sdt == TIDE_F32) {
      for (int64_t j = 0; j < len; j++) {
        int64_t v = load_index(ip + j * istep * ies, idt);
        float *d = (float *)(ap + v * astep * aes);
        *d = *d + *(const float *)(sp + j * sstep * ses);
      }
    } else {
      for (int64_t j = 0; j < len; j++) {
        int64_t v = load_index(ip + j * istep * ies, idt);
        tide_accumulate(ap + v * astep * aes, adt, sp + j * sstep * ses, sdt);
      }
    }
  }
}

static int scatter_add(void *a, int32_t adt, const int64_t *astride, int64_t size, int32_t nd, const int64_t *ishape,
                       int32_t dim, const void *index, const int64_t *istride, int32_t idt, const void *src,
                       const int64_t *sstride, int32_t sdt) {
  const char *what = "scatter_add_";
  int64_t numel = 1;
  for (int32_t d = 0; d < nd; d++) numel *= ishape[d];
  if (numel == 0) return 0;
  // every index is validated before the first write, so a failure changes nothing
  tide_cuda_strided<1> ig;
  const int64_t *ist[1] = {istride};
  tide_cuda_strided_init(&ig, nd, ishape, ist);
  if (validate_index(what, index, idt, ig, numel, dim, size)) return -1;
  int64_t lshape[TIDE_MAX_DIMS], ast[TIDE_MAX_DIMS];
  for (int32_t d = 0; d < nd; d++) {
    lshape[d] = d == dim ? 1 : ishape[d];
    ast[d] = d == dim ? 0 : astride[d];
  }
  tide_cuda_strided<3> g;
  const int64_t *st[3] = {ast, istride, sstride};
  int64_t lines = tide_cuda_strided_init(&g, nd, lshape, st);
  int64_t len = nd ? ishape[dim] : 1;
  int64_t astep = nd ? astride[dim] : 0, istep = nd ? istride[dim] : 0, sstep = nd ? sstride[dim] : 0;
  TIDE_CUDA_LAUNCH(what, scatter_add_kernel, tide_cuda_blocks(lines), TIDE_CUDA_THREADS, 0, (char *)a, adt,
                   (int32_t)tide_dtype_size(adt), astep, (const char *)index, idt, (int32_t)tide_dtype_size(idt), istep,
                   (const char *)src, sdt, (int32_t)tide_dtype_size(sdt), sstep, len, g, lines);
  return 0;
}

// ---- masked_fill_ ---------------------------------------------------------------------------

// g: operand 0 a (elements), operand 1 the mask (bytes; any nonzero byte selects)
template <class T> __global__ void masked_fill_kernel(T *a, const uint8_t *mask, tide_cuda_strided<2> g, int64_t n, T v) {
  TIDE_CUDA_FOR(i, n) {
    if (mask[g.offset(1, i)]) a[g.offset(0, i)] = v;
  }
}

template <class T>
static int launch_masked_fill(void *a, const void *mask, const tide_cuda_strided<2> &g, int64_t n, const char *bytes) {
  T v;
  memcpy(&v, bytes, sizeof v);
  TIDE_CUDA_LAUNCH("masked_fill_", masked_fill_kernel<T>, tide_cuda_blocks(n), TIDE_CUDA_THREADS, 0, (T *)a,
                   (const uint8_t *)mask, g, n, v);
  return 0;
}

static int masked_fill(void *a, int32_t nd, const int64_t *shape, const int64_t *astride, int32_t dt, const void *mask,
                       const int64_t *mstride, double value) {
  tide_cuda_strided<2> g;
  const int64_t *st[2] = {astride, mstride};
  int64_t n = tide_cuda_strided_init(&g, nd, shape, st);
  if (n == 0) return 0;
  char bytes[8] = {0};
  tide_store_f64(bytes, dt, value);  // converted once on the host, as the CPU does
  switch (tide_dtype_size(dt)) {
    case 1: return launch_masked_fill<uint8_t>(a, mask, g, n, bytes);
    case 2: return launch_masked_fill<uint16_t>(a, mask, g, n, bytes);
    case 4: return launch_masked_fill<uint32_t>(a, mask, g, n, bytes);
    default: return launch_masked_fill<uint64_t>(a, mask, g, n, bytes);
  }
}

extern "C" const struct tide_index_kernels tide_cuda_index = {index_select, gather, scatter_add, masked_fill};

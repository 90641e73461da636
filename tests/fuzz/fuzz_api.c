/* Fuzz target for the public C API: the input bytes are a program of API
   calls on a small pool of tensors (creation, every view, casts, copies,
   elementwise ops, reductions, matmul, indexing, sorting, random fills) with
   arguments taken from the bytes, valid or not. Every call must return 0 or
   -1 with a message; sanitizers catch everything else. Built as a libFuzzer
   binary with clang (-DTIDE_FUZZ=ON) and, everywhere, as a replay driver that
   ctest runs on seeded random programs (tests/fuzz/replay.c). */
#include "tensor.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POOL 8

typedef struct {
  const uint8_t *p;
  size_t n, i;
} reader;

static uint8_t byte(reader *r) { return r->i < r->n ? r->p[r->i++] : 0; }
static int32_t small(reader *r, int32_t mod) { return (int32_t)(byte(r) % mod); }
/* dims and sizes that are sometimes out of range or negative on purpose */
static int32_t any_dim(reader *r) {
  uint8_t b = byte(r);
  return (b & 3) ? (int32_t)(b >> 2) % 3 : (int32_t)(b >> 2) % 12 - 2;
}
/* sizes past the element limit (2^59 - 1), where a product, a stride or an
   offset would overflow int64 if computed unchecked; none is ever allocated */
static const int64_t huge_sizes[8] = {(int64_t)1 << 59, (int64_t)1 << 62, INT64_MAX, INT64_MAX - 1,
                                      ((int64_t)1 << 62) + 7904, -((int64_t)1 << 62), INT64_MIN, (int64_t)3 << 60};
static int64_t any_size(reader *r) {
  uint8_t b = byte(r);
  if ((b & 3) == 0 && (b >> 2) >= 56) return huge_sizes[(b >> 2) - 56];
  return (b & 3) ? (int64_t)(b >> 2) % 4 : (int64_t)(b >> 2) % 9 - 1;
}

static void put(tide_tensor **pool, int slot, tide_tensor *t) {
  tide_tensor_release(pool[slot]);
  pool[slot] = t;
}

static void must(int rc, const char *what) {
  if (rc != 0 && rc != -1) {
    fprintf(stderr, "%s returned %d\n", what, rc);
    abort();
  }
  if (rc == -1 && tide_last_error()[0] == 0) {
    fprintf(stderr, "%s failed without a message\n", what);
    abort();
  }
}

/* Reads every element a view can reach, so a bad view shows up in ASan. */
static void touch(const tide_tensor *t) {
  if (!t || t->numel == 0 || t->numel > 4096) return;
  tide_tensor *c = NULL;
  must(tide_cast(t, TIDE_F64, &c), "cast(touch)");
  tide_tensor_release(c);
}

static tide_tensor *pick(tide_tensor **pool, reader *r) { return pool[small(r, POOL)]; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Per-op tallies of calls that succeeded and failed, so the replay driver can
   show that the programs reach every op (test code, not engine state). */
long tide_fuzz_ok[24], tide_fuzz_err[24];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  reader r = {data, size, 0};
  tide_tensor *pool[POOL] = {0};
  tide_generator gen = {42, 0};
  int64_t shape[TIDE_MAX_DIMS], stride[TIDE_MAX_DIMS];
  int32_t dims[TIDE_MAX_DIMS];
  /* start from a few valid tensors so most programs reach the interesting ops */
  int64_t s0[2] = {3, 4}, s1[1] = {4}, s2[0];
  tide_full(TIDE_F32, 2, s0, 1.5, TIDE_CPU, &pool[0]);
  tide_arange(0, 1, 4, TIDE_I64, TIDE_CPU, &pool[1]);
  tide_full(TIDE_BOOL, 1, s1, 1, TIDE_CPU, &pool[2]);
  tide_full(TIDE_F64, 0, s2, -2, TIDE_CPU, &pool[3]);
  (void)s1;
  while (r.i < r.n) {
    int op = small(&r, 24), slot = small(&r, POOL);
    tide_tensor *a = pick(pool, &r), *b = pick(pool, &r), *out = NULL, *out2 = NULL;
    int32_t nd = small(&r, 5);
    for (int32_t k = 0; k < nd; k++) shape[k] = any_size(&r);
    int rc = 0;
    switch (op) {
      case 0: {
        int32_t dt = small(&r, 10) - 1;  /* includes an invalid code */
        for (int32_t k = 0; k < nd; k++) if (shape[k] < 0 && byte(&r) & 1) shape[k] = 2;
        rc = tide_full(dt, nd, shape, (double)(int8_t)byte(&r) / 4, TIDE_CPU, &out);
        break;
      }
      case 1: rc = tide_view(a, nd, shape, &out); break;
      case 2: rc = tide_reshape(a, nd, shape, &out); break;
      case 3:
        if (!a) break;
        for (int32_t k = 0; k < a->ndim; k++) dims[k] = any_dim(&r);
        rc = tide_permute(a, dims, &out);
        break;
      case 4: rc = tide_transpose(a, any_dim(&r), any_dim(&r), &out); break;
      case 5: {  /* arguments read in order, so a saved input replays the same call */
        int32_t d = any_dim(&r);
        int64_t start = any_size(&r), len = any_size(&r);
        rc = tide_narrow(a, d, start, len, &out);
        break;
      }
      case 6: {
        int32_t d = any_dim(&r);
        rc = tide_select(a, d, any_size(&r), &out);
        break;
      }
      case 7: rc = tide_expand(a, nd, shape, &out); break;
      case 8: rc = byte(&r) & 1 ? tide_squeeze(a, any_dim(&r), &out) : tide_unsqueeze(a, any_dim(&r), &out); break;
      case 9:
        for (int32_t k = 0; k < nd; k++) stride[k] = (int64_t)(byte(&r) % 7) - 2;
        rc = tide_as_strided(a, nd, shape, stride, any_size(&r), &out);
        break;
      case 10: rc = tide_cast(a, small(&r, 10) - 1, &out); break;
      case 11: rc = tide_copy_(a, b); break;
      case 12: rc = byte(&r) & 1 ? tide_unary(small(&r, TIDE_NUM_UNARY + 1), a, &out) : tide_unary_(small(&r, TIDE_NUM_UNARY + 1), a); break;
      case 13: rc = byte(&r) & 1 ? tide_binary(small(&r, TIDE_NUM_BINARY + 1), a, b, &out) : tide_binary_(small(&r, TIDE_NUM_BINARY + 1), a, b); break;
      case 14: rc = tide_binary_scalar(small(&r, TIDE_NUM_BINARY + 1), a, (double)(int8_t)byte(&r) / 3, byte(&r) & 1, &out); break;
      case 15: rc = tide_reduce(small(&r, TIDE_NUM_REDUCE + 1), a, any_dim(&r), byte(&r) & 1, &out, byte(&r) & 1 ? &out2 : NULL); break;
      case 16: rc = tide_cumsum(a, any_dim(&r), &out); break;
      case 17: rc = tide_matmul(a, b, &out); break;
      case 18: {
        int which = small(&r, 4);
        int32_t d = any_dim(&r);
        if (which == 0) rc = tide_index_select(a, d, b, &out);
        else if (which == 1) rc = tide_gather(a, d, b, &out);
        else if (which == 2) rc = tide_scatter_add_(a, d, b, pick(pool, &r));
        else rc = tide_masked_fill_(a, b, 3.0);
        break;
      }
      case 19: {
        tide_tensor *list[3] = {a, b, pick(pool, &r)};
        int32_t n = small(&r, 4);
        rc = byte(&r) & 1 ? tide_cat(n, list, any_dim(&r), &out) : tide_stack(n, list, any_dim(&r), &out);
        break;
      }
      case 20:
        if (byte(&r) & 1) rc = tide_sort(a, any_dim(&r), byte(&r) & 1, &out, &out2);
        else rc = tide_topk(a, any_size(&r), any_dim(&r), byte(&r) & 1, byte(&r) & 1, &out, &out2);
        break;
      case 21: {
        int which = small(&r, 4);
        if (which == 0) rc = tide_rand_(a, &gen, 0, 1);
        else if (which == 1) rc = tide_randn_(a, &gen, 0, 1);
        else if (which == 2) rc = tide_randint_(a, &gen, any_size(&r), any_size(&r));
        else rc = tide_multinomial(a, any_size(&r), byte(&r) & 1, &gen, &out);
        break;
      }
      case 22: rc = tide_where(a, b, pick(pool, &r), &out); break;
      default: rc = tide_clamp(a, (double)(int8_t)byte(&r), (double)(int8_t)byte(&r), &out); break;
    }
    must(rc, "call");
    if (rc == 0) tide_fuzz_ok[op]++;
    else tide_fuzz_err[op]++;
    /* results are kept small, or repeated cat/expand would grow them without bound */
    if (rc == 0 && out) {
      touch(out);
      if (out->numel <= 4096) put(pool, slot, out);
      else tide_tensor_release(out);
    }
    if (rc == 0 && out2) {
      touch(out2);
      if (out2->numel <= 4096) put(pool, (slot + 1) % POOL, out2);
      else tide_tensor_release(out2);
    }
  }
  for (int k = 0; k < POOL; k++) tide_tensor_release(pool[k]);
  return 0;
}

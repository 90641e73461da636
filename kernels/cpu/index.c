/* Index-driven kernels on the CPU: index_select, gather, scatter_add,
   masked_fill (kernels/index.h). Index operands hold 0-based values (token
   ids, argmax/topk output) in any integer dtype. Every value is bounds-checked
   before memory is touched through it, so a bad index becomes an error
   message, never a stray read or write; in-place kernels validate every index
   before changing anything. */
#include "index.h"
#include "dtype.h"
#include "error.h"
#include "iter.h"
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* helpers ------------------------------------------------------------------ */

static int index_range_error(const char *what, int64_t v, int32_t dim, int64_t size) {
  if (size == 0)
    return tide_fail("%s: index %lld is out of range for dimension %d, which has size 0", what, (long long)v, dim + 1);
  return tide_fail("%s: index %lld is out of range for dimension %d of size %lld (index values are 0-based: 0..%lld)", what,
                   (long long)v, dim + 1, (long long)size, (long long)(size - 1));
}

/* Worker threads cannot set the per-thread error message, so loops record
   the first bad index they meet here and the caller reports it afterwards. */
typedef struct {
  atomic_int hit;
  int64_t value;
} bad_index;

static void note_bad(bad_index *b, int64_t v) {
  if (!atomic_exchange(&b->hit, 1)) b->value = v;
}

/* Reads an index value; check_index has limited dt to the integer types. */
static inline int64_t load_index(const char *p, int32_t dt) {
  switch (dt) {
    case TIDE_I64: return *(const int64_t *)p;
    case TIDE_I32: return *(const int32_t *)p;
    case TIDE_U16: return *(const uint16_t *)p;
    default: return *(const uint8_t *)p;
  }
}

/* Copies one element of es bytes. */
static inline void copy_elem(char *d, const char *s, int32_t es) {
  switch (es) {
    case 1: *d = *s; break;
    case 2: memcpy(d, s, 2); break;
    case 4: memcpy(d, s, 4); break;
    default: memcpy(d, s, 8); break;
  }
}

/* index_select ------------------------------------------------------------- */

/* A strided block with unit dims dropped and mergeable dims merged. */
typedef struct {
  int32_t nd;
  int64_t shape[TIDE_MAX_DIMS], stride[TIDE_MAX_DIMS]; /* stride in bytes */
  int64_t numel;
} block_geom;

static void block_init(block_geom *g, int32_t nd, const int64_t *shape, const int64_t *stride, int32_t es) {
  g->nd = 0;
  g->numel = 1;
  for (int32_t i = 0; i < nd; i++) {
    g->numel *= shape[i];
    if (shape[i] == 1) continue;
    int64_t s = stride[i] * es;
    if (g->nd > 0 && g->stride[g->nd - 1] == s * shape[i]) {
      g->shape[g->nd - 1] *= shape[i];
      g->stride[g->nd - 1] = s;
    } else {
      g->shape[g->nd] = shape[i];
      g->stride[g->nd++] = s;
    }
  }
}

/* Copies the block g starting at src into contiguous dst. */
static void copy_block(char *dst, const char *src, const block_geom *g, int32_t es) {
  if (g->numel == 0) return;  /* a zero-size trailing dim: nothing to copy (and no inner size to divide by) */
  if (g->nd == 0) {
    copy_elem(dst, src, es);
    return;
  }
  int32_t last = g->nd - 1;
  int64_t inner = g->shape[last], is = g->stride[last];
  if (g->nd == 1 && is == es) {
    memcpy(dst, src, (size_t)(inner * es));
    return;
  }
  int64_t idx[TIDE_MAX_DIMS] = {0};
  int64_t rows = g->numel / inner;
  for (int64_t r = 0; r < rows; r++) {
    if (is == es) {
      memcpy(dst, src, (size_t)(inner * es));
    } else {
      for (int64_t i = 0; i < inner; i++) copy_elem(dst + i * es, src + i * is, es);
    }
    dst += inner * es;
    for (int32_t d = last - 1; d >= 0; d--) {  /* odometer over the outer dims */
      src += g->stride[d];
      if (++idx[d] < g->shape[d]) break;
      src -= g->stride[d] * g->shape[d];
      idx[d] = 0;
    }
  }
}

static int index_select(void *out, const void *a, int32_t nd, const int64_t *shape, const int64_t *stride, int32_t es,
                        int32_t dim, const void *index, int64_t n, int64_t istride, int32_t idt) {
  const char *what = "index_select";
  int64_t size = shape[dim];
  int64_t *ix = malloc((size_t)(n > 0 ? n : 1) * sizeof *ix);
  if (!ix) return tide_fail("%s: out of memory", what);
  int64_t istep = istride * tide_dtype_size(idt);
  for (int64_t i = 0; i < n; i++) {
    int64_t v = load_index((const char *)index + i * istep, idt);
    if (v < 0 || v >= size) {
      free(ix);
      return index_range_error(what, v, dim, size);
    }
    ix[i] = v;
  }
  block_geom g;
  block_init(&g, nd - dim - 1, shape + dim + 1, stride + dim + 1, es);
  int64_t outer = 1;
  for (int32_t i = 0; i < dim; i++) outer *= shape[i];
  int64_t units = outer * n, row_bytes = g.numel * es;
  const char *base = a;
  char *dst = out;
  /* one unit copies the block behind one (outer position, index) pair; embedding
     lookups are this with outer = 1 and a contiguous row per index */
  int par = units > 1 && units * g.numel >= 2 * TIDE_GRAIN;
  (void)par;
#pragma omp parallel for schedule(static) if (par)
  for (int64_t u = 0; u < units; u++) {
    int64_t oi = u / (n ? n : 1), k = u - oi * n, off = ix[k] * stride[dim];
    for (int32_t d = dim - 1; d >= 0; d--) {
      off += (oi % shape[d]) * stride[d];
      oi /= shape[d];
    }
    copy_block(dst + u * row_bytes, base + off * es, &g, es);
  }
  free(ix);
  return 0;
}

/* gather -------------------------------------------------------------------- */

typedef struct {
  int32_t idt, es;
  int64_t size, astep;  /* size of the indexed dim, a's step along it in bytes */
  bad_index bad;
} gather_ctx;

/* ops: 0 out, 1 index, 2 a with stride 0 along the indexed dim */
static void gather_loop(char **p, const int64_t *st, int64_t n, void *vctx) {
  gather_ctx *c = vctx;
  for (int64_t i = 0; i < n; i++) {
    int64_t v = load_index(p[1] + i * st[1], c->idt);
    if (v < 0 || v >= c->size) {
      note_bad(&c->bad, v);
      continue;
    }
    copy_elem(p[0] + i * st[0], p[2] + i * st[2] + v * c->astep, c->es);
  }
}

static int gather(void *out, int32_t nd, const int64_t *shape, const void *a, const int64_t *astride, int64_t asize,
                  int32_t es, int32_t dim, const void *index, const int64_t *istride, int32_t idt) {
  gather_ctx c;
  memset(&c, 0, sizeof c);
  c.idt = idt;
  c.es = es;
  c.size = asize;
  c.astep = (nd ? astride[dim] : 0) * es;
  atomic_init(&c.bad.hit, 0);
  /* ops: the contiguous output, the index, a with stride 0 along dim */
  int64_t st[3][TIDE_MAX_DIMS], run = es;
  int32_t ies = tide_dtype_size(idt);
  for (int32_t d = nd - 1; d >= 0; d--) {
    st[0][d] = run;
    run *= shape[d] > 0 ? shape[d] : 1;
    st[1][d] = istride[d] * ies;
    st[2][d] = d == dim ? 0 : astride[d] * es;
  }
  char *data[3] = {out, (char *)index, (char *)a};
  tide_iter it;
  tide_iter_init_raw(&it, nd, shape, 3, data, (const int64_t(*)[TIDE_MAX_DIMS])st);
  tide_iter_run(&it, gather_loop, &c, TIDE_GRAIN);
  if (atomic_load(&c.bad.hit)) return index_range_error("gather", c.bad.value, dim, c.size);
  return 0;
}

/* scatter_add_ -------------------------------------------------------------- */

typedef struct {
  int64_t size;
  bad_index bad;
  int32_t idt;
} validate_ctx;

static void validate_loop(char **p, const int64_t *st, int64_t n, void *vctx) {
  validate_ctx *c = vctx;
  for (int64_t i = 0; i < n; i++) {
    int64_t v = load_index(p[0] + i * st[0], c->idt);
    if (v < 0 || v >= c->size) note_bad(&c->bad, v);
  }
}


typedef struct {
  int32_t idt, adt, sdt;
  int64_t len;                /* index size along the scatter dim */
  int64_t istep, sstep, astep; /* bytes along the scatter dim */
} scatter_ctx;

/* ops: 0 a (scatter dim dropped), 1 index, 2 src. Each run owns distinct
   positions outside the scatter dim, so threads never write the same element,
   and every element receives its sources in index order: the result does not
   depend on the thread count. j is the outer loop so a run is swept
   contiguously for each step along the scatter dim. */
static void scatter_loop(char **p, const int64_t *st, int64_t n, void *vctx) {
  const scatter_ctx *c = vctx;
  for (int64_t j = 0; j < c->len; j++) {
    const char *ip = p[1] + j * c->istep, *sp = p[2] + j * c->sstep;
    if (c->adt == TIDE_F32 && c->sdt == TIDE_F32) {
      for (int64_t e = 0; e < n; e++) {
        int64_t v = load_index(ip + e * st[1], c->idt);
        *(float *)(p[0] + e * st[0] + v * c->astep) += *(const float *)(sp + e * st[2]);
      }
    } else {
      for (int64_t e = 0; e < n; e++) {
        int64_t v = load_index(ip + e * st[1], c->idt);
        tide_accumulate(p[0] + e * st[0] + v * c->astep, c->adt, sp + e * st[2], c->sdt);
      }
    }
  }
}

static int scatter_add(void *a, int32_t adt, const int64_t *astride, int64_t size, int32_t nd, const int64_t *ishape,
                       int32_t dim, const void *index, const int64_t *istride, int32_t idt, const void *src,
                       const int64_t *sstride, int32_t sdt) {
  int32_t aes = tide_dtype_size(adt), ies = tide_dtype_size(idt), ses = tide_dtype_size(sdt);
  int64_t numel = 1;
  for (int32_t d = 0; d < nd; d++) numel *= ishape[d];
  if (numel == 0) return 0;
  /* validate every index before the first write so a failure changes nothing */
  validate_ctx vc;
  memset(&vc, 0, sizeof vc);
  vc.size = size;
  vc.idt = idt;
  atomic_init(&vc.bad.hit, 0);
  {
    int64_t st[1][TIDE_MAX_DIMS];
    for (int32_t d = 0; d < nd; d++) st[0][d] = istride[d] * ies;
    char *data[1] = {(char *)index};
    tide_iter it;
    tide_iter_init_raw(&it, nd, ishape, 1, data, (const int64_t(*)[TIDE_MAX_DIMS])st);
    tide_iter_run(&it, validate_loop, &vc, TIDE_GRAIN);
  }
  if (atomic_load(&vc.bad.hit)) return index_range_error("scatter_add_", vc.bad.value, dim, size);

  /* ops: a (scatter dim dropped), index, src */
  int64_t shape[TIDE_MAX_DIMS], st[3][TIDE_MAX_DIMS];
  for (int32_t d = 0; d < nd; d++) {
    shape[d] = d == dim ? 1 : ishape[d];
    st[0][d] = (d == dim ? 0 : astride[d]) * aes;
    st[1][d] = istride[d] * ies;
    st[2][d] = sstride[d] * ses;
  }
  scatter_ctx c = {idt, adt, sdt, nd ? ishape[dim] : 1, 0, 0, 0};
  if (nd) {
    c.istep = istride[dim] * ies;
    c.sstep = sstride[dim] * ses;
    c.astep = astride[dim] * aes;
  }
  char *data[3] = {a, (char *)index, (char *)src};
  tide_iter it;
  tide_iter_init_raw(&it, nd, shape, 3, data, (const int64_t(*)[TIDE_MAX_DIMS])st);
  /* the work per iterated element is len additions */
  int64_t grain = TIDE_GRAIN / (c.len > 0 ? c.len : 1);
  tide_iter_run(&it, scatter_loop, &c, grain > 1 ? grain : 1);
  return 0;
}

/* masked_fill_ -------------------------------------------------------------- */

typedef struct {
  char bytes[8];
  int32_t es;
} mask_ctx;

/* ops: 0 a, 1 mask (bool or u8: any nonzero byte selects) */
static void masked_loop(char **p, const int64_t *st, int64_t n, void *vctx) {
  const mask_ctx *c = vctx;
  char *d = p[0];
  const char *m = p[1];
  int64_t ds = st[0], ms = st[1];
  switch (c->es) {
    case 1: for (int64_t i = 0; i < n; i++) if (m[i * ms]) d[i * ds] = c->bytes[0]; break;
    case 2: for (int64_t i = 0; i < n; i++) if (m[i * ms]) memcpy(d + i * ds, c->bytes, 2); break;
    case 4: for (int64_t i = 0; i < n; i++) if (m[i * ms]) memcpy(d + i * ds, c->bytes, 4); break;
    default: for (int64_t i = 0; i < n; i++) if (m[i * ms]) memcpy(d + i * ds, c->bytes, 8); break;
  }
}

static int masked_fill(void *a, int32_t nd, const int64_t *shape, const int64_t *astride, int32_t dt, const void *mask,
                       const int64_t *mstride, double value) {
  mask_ctx c;
  memset(&c, 0, sizeof c);
  c.es = tide_dtype_size(dt);
  tide_store_f64(c.bytes, dt, value);
  int64_t st[2][TIDE_MAX_DIMS];
  for (int32_t d = 0; d < nd; d++) {
    st[0][d] = astride[d] * c.es;
    st[1][d] = mstride[d];  /* one byte per mask element */
  }
  char *data[2] = {a, (char *)mask};
  tide_iter it;
  tide_iter_init_raw(&it, nd, shape, 2, data, (const int64_t(*)[TIDE_MAX_DIMS])st);
  tide_iter_run(&it, masked_loop, &c, TIDE_GRAIN);
  return 0;
}

const struct tide_index_kernels tide_cpu_index = {
  .index_select = index_select,
  .gather = gather,
  .scatter_add = scatter_add,
  .masked_fill = masked_fill,
};

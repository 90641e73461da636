/* Index-driven ops: index_select, gather, scatter_add_, masked_fill_.
   Index tensors hold 0-based values (token ids, argmax/topk output) in any
   integer dtype. Every value is bounds-checked before memory is touched
   through it, so a bad index becomes an error message, never a stray read or
   write; in-place ops validate every index before changing anything. */
#include "iter.h"
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* helpers ------------------------------------------------------------------ */

static int check_index(const tide_tensor *idx, const char *what) {
  TIDE_TRY(tide_check_tensor(idx, what));
  int32_t dt = idx->dtype;
  if (dt != TIDE_I64 && dt != TIDE_I32 && dt != TIDE_U8 && dt != TIDE_U16)
    return tide_fail("%s: index must be an integer tensor, got %s (use i64 or i32)", what, tide_dtype_name(dt));
  return 0;
}

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

/* An iteration-only copy of t's handle with another shape and strides (in
   elements). tide_iter_init reads only geometry, data and dtype, so a stack
   copy is enough and saves an allocation plus refcount traffic. */
static tide_tensor iter_view(const tide_tensor *t, int32_t ndim, const int64_t *shape, const int64_t *stride) {
  tide_tensor v = *t;
  v.ndim = ndim;
  v.numel = 1;
  for (int32_t i = 0; i < ndim; i++) {
    v.shape[i] = shape[i];
    v.stride[i] = stride[i];
    v.numel *= shape[i];
  }
  return v;
}

/* True when some dimension of size > 1 has stride 0: writing through such a
   view would hit one element from several places. */
static int has_broadcast_dim(const tide_tensor *t) {
  for (int32_t i = 0; i < t->ndim; i++)
    if (t->shape[i] > 1 && t->stride[i] == 0) return 1;
  return 0;
}

/* A private contiguous copy of t, for operands that share storage with the
   tensor an in-place op writes. */
static tide_tensor *private_copy(const tide_tensor *t) {
  tide_tensor *c = tide_new(t->dtype, t->ndim, t->shape);
  if (c && tide_copy_into(c, t)) {
    tide_tensor_release(c);
    c = NULL;
  }
  return c;
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

int tide_index_select(const tide_tensor *a, int32_t dim, const tide_tensor *index, tide_tensor **out) {
  const char *what = "index_select";
  TIDE_TRY(tide_check_tensor(a, what));
  TIDE_TRY(check_index(index, what));
  TIDE_TRY(tide_check_dim(a, dim, what));
  if (index->ndim > 1) {
    char b[160];
    return tide_fail("%s: index must be 1-d, got a %d-d tensor of shape %s", what, index->ndim,
                     tide_shape_str(b, sizeof b, index->ndim, index->shape));
  }
  /* a 0-d input reads as one element along dimension 1 */
  int32_t nd = a->ndim ? a->ndim : 1;
  int64_t shape[TIDE_MAX_DIMS], stride[TIDE_MAX_DIMS];
  for (int32_t i = 0; i < nd; i++) {
    shape[i] = a->ndim ? a->shape[i] : 1;
    stride[i] = a->ndim ? a->stride[i] : 0;
  }
  int64_t n = index->numel, size = shape[dim];
  int64_t *ix = malloc((size_t)(n > 0 ? n : 1) * sizeof *ix);
  if (!ix) return tide_fail("%s: out of memory", what);
  int64_t istep = (index->ndim ? index->stride[0] : 0) * tide_dtype_size(index->dtype);
  for (int64_t i = 0; i < n; i++) {
    int64_t v = load_index(index->data + i * istep, index->dtype);
    if (v < 0 || v >= size) {
      free(ix);
      return index_range_error(what, v, dim, size);
    }
    ix[i] = v;
  }
  int64_t oshape[TIDE_MAX_DIMS];
  memcpy(oshape, shape, sizeof oshape);
  oshape[dim] = n;
  int32_t ond = a->ndim ? a->ndim : index->ndim;
  tide_tensor *o = tide_new(a->dtype, ond, oshape);
  if (!o) {
    free(ix);
    return -1;
  }
  int32_t es = tide_dtype_size(a->dtype);
  block_geom g;
  block_init(&g, nd - dim - 1, shape + dim + 1, stride + dim + 1, es);
  int64_t outer = 1;
  for (int32_t i = 0; i < dim; i++) outer *= shape[i];
  int64_t units = outer * n, row_bytes = g.numel * es;
  const char *base = a->data;
  char *dst = o->data;
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
  *out = o;
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

/* Requires equal ndim and index sizes within the limits of `other`, except at dim when skip_dim. */
static int check_index_shape(const char *what, const tide_tensor *index, const tide_tensor *other, const char *other_name,
                             int32_t dim, int skip_dim) {
  char a[160], b[160];
  if (index->ndim != other->ndim)
    return tide_fail("%s: index is %d-d but %s is %d-d; they must have the same number of dimensions (index shape %s, %s shape %s)",
                     what, index->ndim, other_name, other->ndim, tide_shape_str(a, sizeof a, index->ndim, index->shape),
                     other_name, tide_shape_str(b, sizeof b, other->ndim, other->shape));
  for (int32_t d = 0; d < index->ndim; d++) {
    if (skip_dim && d == dim) continue;
    if (index->shape[d] > other->shape[d])
      return tide_fail("%s: index of shape %s is larger than %s of shape %s at dimension %d", what,
                       tide_shape_str(a, sizeof a, index->ndim, index->shape), other_name,
                       tide_shape_str(b, sizeof b, other->ndim, other->shape), d + 1);
  }
  return 0;
}

int tide_gather(const tide_tensor *a, int32_t dim, const tide_tensor *index, tide_tensor **out) {
  const char *what = "gather";
  TIDE_TRY(tide_check_tensor(a, what));
  TIDE_TRY(check_index(index, what));
  TIDE_TRY(tide_check_dim(a, dim, what));
  TIDE_TRY(check_index_shape(what, index, a, "input", dim, 1));
  tide_tensor *o = tide_new(a->dtype, index->ndim, index->shape);
  if (!o) return -1;
  gather_ctx c;
  memset(&c, 0, sizeof c);
  c.idt = index->dtype;
  c.es = tide_dtype_size(a->dtype);
  c.size = a->ndim ? a->shape[dim] : 1;
  c.astep = (a->ndim ? a->stride[dim] : 0) * c.es;
  atomic_init(&c.bad.hit, 0);
  int64_t st[TIDE_MAX_DIMS];
  for (int32_t d = 0; d < a->ndim; d++) st[d] = d == dim ? 0 : a->stride[d];
  tide_tensor av = iter_view(a, index->ndim, index->shape, st);
  const tide_tensor *ops[3] = {o, index, &av};
  tide_iter it;
  tide_iter_init(&it, index->ndim, index->shape, 3, ops);
  tide_iter_run(&it, gather_loop, &c, TIDE_GRAIN);
  if (atomic_load(&c.bad.hit)) {
    tide_tensor_release(o);
    return index_range_error(what, c.bad.value, dim, c.size);
  }
  *out = o;
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

/* Adds source element s (dtype sdt) into destination d (dtype ddt): floats
   through double (exact for f32 + f32 before the final rounding), integers
   with wrapping arithmetic so overflow is never undefined. */
static inline void accumulate(char *d, int32_t ddt, const char *s, int32_t sdt) {
  if (tide_is_float(ddt)) {
    tide_store_f64(d, ddt, tide_load_f64(d, ddt) + tide_load_f64(s, sdt));
    return;
  }
  uint64_t v = (uint64_t)tide_load_i64(d, ddt) + (uint64_t)tide_load_i64(s, sdt);
  switch (ddt) {
    case TIDE_I64: *(int64_t *)d = (int64_t)v; break;
    case TIDE_I32: *(int32_t *)d = (int32_t)(uint32_t)v; break;
    case TIDE_U16: *(uint16_t *)d = (uint16_t)v; break;
    case TIDE_BOOL: *(uint8_t *)d = v != 0; break;
    default: *(uint8_t *)d = (uint8_t)v; break;
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
        accumulate(p[0] + e * st[0] + v * c->astep, c->adt, sp + e * st[2], c->sdt);
      }
    }
  }
}

int tide_scatter_add_(tide_tensor *a, int32_t dim, const tide_tensor *index, const tide_tensor *src) {
  const char *what = "scatter_add_";
  TIDE_TRY(tide_check_tensor(a, what));
  TIDE_TRY(check_index(index, what));
  TIDE_TRY(tide_check_tensor(src, what));
  TIDE_TRY(tide_check_dim(a, dim, what));
  tide_bump_version(a);
  TIDE_TRY(check_index_shape(what, index, a, "the destination", dim, 1));
  TIDE_TRY(check_index_shape(what, index, src, "src", dim, 0));
  if (has_broadcast_dim(a)) {
    char b[160];
    return tide_fail("%s: the destination of shape %s is an expanded view whose elements share memory; clone it first", what,
                     tide_shape_str(b, sizeof b, a->ndim, a->shape));
  }
  if (index->numel == 0) return 0;
  int64_t size = a->ndim ? a->shape[dim] : 1;
  /* validate every index before the first write so a failure changes nothing */
  validate_ctx vc;
  memset(&vc, 0, sizeof vc);
  vc.size = size;
  vc.idt = index->dtype;
  atomic_init(&vc.bad.hit, 0);
  {
    const tide_tensor *ops[1] = {index};
    tide_iter it;
    tide_iter_init(&it, index->ndim, index->shape, 1, ops);
    tide_iter_run(&it, validate_loop, &vc, TIDE_GRAIN);
  }
  if (atomic_load(&vc.bad.hit)) return index_range_error(what, vc.bad.value, dim, size);

  /* operands that share memory with the destination are read from copies */
  tide_tensor *src_copy = NULL, *idx_copy = NULL;
  if (src->storage == a->storage && !(src_copy = private_copy(src))) return -1;
  if (index->storage == a->storage && !(idx_copy = private_copy(index))) {
    tide_tensor_release(src_copy);
    return -1;
  }
  if (src_copy) src = src_copy;
  if (idx_copy) index = idx_copy;

  int32_t nd = index->ndim;
  int64_t shape[TIDE_MAX_DIMS], ast[TIDE_MAX_DIMS], ist[TIDE_MAX_DIMS], sst[TIDE_MAX_DIMS];
  for (int32_t d = 0; d < nd; d++) {
    shape[d] = d == dim ? 1 : index->shape[d];
    ast[d] = d == dim ? 0 : a->stride[d];
    ist[d] = index->stride[d];
    sst[d] = src->stride[d];
  }
  scatter_ctx c = {index->dtype, a->dtype, src->dtype, nd ? index->shape[dim] : 1, 0, 0, 0};
  if (nd) {
    c.istep = index->stride[dim] * tide_dtype_size(index->dtype);
    c.sstep = src->stride[dim] * tide_dtype_size(src->dtype);
    c.astep = a->stride[dim] * tide_dtype_size(a->dtype);
  }
  tide_tensor av = iter_view(a, nd, shape, ast), iv = iter_view(index, nd, shape, ist), sv = iter_view(src, nd, shape, sst);
  const tide_tensor *ops[3] = {&av, &iv, &sv};
  tide_iter it;
  tide_iter_init(&it, nd, shape, 3, ops);
  /* the work per iterated element is len additions */
  int64_t grain = TIDE_GRAIN / (c.len > 0 ? c.len : 1);
  tide_iter_run(&it, scatter_loop, &c, grain > 1 ? grain : 1);
  tide_tensor_release(src_copy);
  tide_tensor_release(idx_copy);
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

int tide_masked_fill_(tide_tensor *a, const tide_tensor *mask, double value) {
  const char *what = "masked_fill_";
  TIDE_TRY(tide_check_tensor(a, what));
  TIDE_TRY(tide_check_tensor(mask, what));
  tide_bump_version(a);
  if (mask->dtype != TIDE_BOOL && mask->dtype != TIDE_U8)
    return tide_fail("%s: mask must be a bool tensor, got %s", what, tide_dtype_name(mask->dtype));
  int32_t nd;
  int64_t shape[TIDE_MAX_DIMS];
  char sa[160], sb[160];
  if (tide_broadcast_shapes(a->ndim, a->shape, mask->ndim, mask->shape, &nd, shape, what) ||
      nd != a->ndim || memcmp(shape, a->shape, sizeof(int64_t) * (size_t)nd))
    return tide_fail("%s: mask of shape %s cannot be broadcast to the tensor's shape %s", what,
                     tide_shape_str(sa, sizeof sa, mask->ndim, mask->shape), tide_shape_str(sb, sizeof sb, a->ndim, a->shape));
  tide_tensor *mask_copy = NULL;
  if (mask->storage == a->storage) {
    if (!(mask_copy = private_copy(mask))) return -1;
    mask = mask_copy;
  }
  mask_ctx c;
  memset(&c, 0, sizeof c);
  c.es = tide_dtype_size(a->dtype);
  tide_store_f64(c.bytes, a->dtype, value);
  const tide_tensor *ops[2] = {a, mask};
  tide_iter it;
  tide_iter_init(&it, a->ndim, a->shape, 2, ops);
  tide_iter_run(&it, masked_loop, &c, TIDE_GRAIN);
  tide_tensor_release(mask_copy);
  return 0;
}

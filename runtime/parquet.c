/* Parquet reader (tide_parquet_*): the footer's FileMetaData (parsed by
   parquet_meta.c over thrift_compact.c), then one column chunk at a time:
   its bytes read with pread, its pages (dictionary, data v1 and v2)
   decompressed (parquet_codec.c) and decoded (parquet_encoding.c) into flat
   per-row arrays the Lua side indexes, the whole chunk at once
   (tide_parquet_read) or a page at a time (tide_parquet_start/next). Flat
   columns only (top-level, REQUIRED or OPTIONAL); the others are refused by
   name.

   Layout facts used here, from the Parquet format specification:
   "PAR1" at both ends; the footer is FileMetaData followed by its 4-byte
   little-endian length and "PAR1". A column chunk is a run of pages, each a
   Thrift PageHeader followed by compressed_page_size bytes; it starts at the
   dictionary page when there is one. A v1 data page is compressed whole and
   holds [repetition levels][definition levels][values], levels in the RLE
   hybrid with a 4-byte length prefix; a v2 page keeps its levels (no prefix,
   lengths in the header) uncompressed in front of the values, which are
   compressed only when is_compressed says so.

   Limits: a corrupt file may claim any size. Every offset and length is
   checked against the file (and the chunk, and the page) before use; a page
   may expand only as far as its codec can; a page's value count may exceed
   its byte count only as far as RLE allows real writers (64 values a byte
   plus 64 Ki); output arrays grow as values are decoded, never from a claim. */
#include "tide.h"
#include "error.h"
#include "thrift_compact.h"
#include "parquet_encoding.h"
#include "parquet_codec.h"
#include "parquet_meta.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const type_names[] = {"BOOLEAN", "INT32", "INT64", "INT96", "FLOAT", "DOUBLE", "BYTE_ARRAY", "FIXED_LEN_BYTE_ARRAY", "group"};
static const char *const encoding_names[] = {"PLAIN", "GROUP_VAR_INT", "PLAIN_DICTIONARY", "RLE", "BIT_PACKED", "DELTA_BINARY_PACKED",
                                             "DELTA_LENGTH_BYTE_ARRAY", "DELTA_BYTE_ARRAY", "RLE_DICTIONARY", "BYTE_STREAM_SPLIT"};

static const char *type_name(int32_t t) { return t >= 0 && t <= TIDE_PQ_GROUP ? type_names[t] : "an unknown type"; }

static const char *encoding_name(int32_t e, char *buf, size_t n) {
  if (e >= 0 && e < (int32_t)(sizeof encoding_names / sizeof encoding_names[0])) return encoding_names[e];
  snprintf(buf, n, "encoding %d", e);
  return buf;
}

static int elem_size(int32_t type) {
  switch (type) {
    case TIDE_PQ_BOOLEAN: return 1;
    case TIDE_PQ_INT32: case TIDE_PQ_FLOAT: return 4;
    case TIDE_PQ_INT64: case TIDE_PQ_DOUBLE: return 8;
    default: return 0;
  }
}


/* reading the file -------------------------------------------------------- */

static int read_at(tide_parquet *p, void *buf, int64_t off, int64_t len) {
  uint8_t *b = buf;
  while (len > 0) {
    ssize_t n = pread(p->fd, b, len > (1 << 30) ? (1 << 30) : (size_t)len, (off_t)off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return tide_fail("%s: cannot read %lld bytes at byte %lld: %s", p->path, (long long)len, (long long)off, strerror(errno));
    if (n == 0) return tide_fail("%s: the file ends at byte %lld (it shrank while being read?)", p->path, (long long)off);
    b += n;
    off += n;
    len -= n;
  }
  return 0;
}

static void free_out(col_out *o) {
  for (int32_t i = 0; i < o->nbufs; i++) free(o->bufs[i]);
  free(o->bufs);
  free(o->valid);
  free(o->ptrs);
  free(o->lens);
  free(o->values);
  free(o->dict_ptrs);
  free(o->dict_lens);
  free(o->dict_values);
  free(o->pages);
  free(o->page_buf);
  memset(o, 0, sizeof *o);
}

void tide_parquet_close(tide_parquet *p) {
  if (!p) return;
  if (p->fd >= 0) close(p->fd);
  for (int32_t i = 0; i < p->nleaves; i++) free(p->leaves[i].path);
  for (int32_t i = 0; i < p->nfields; i++) {
    free(p->fields[i].name);
    if (p->outs) free_out(&p->outs[i]);
  }
  for (int32_t i = 0; i < p->nrg; i++) free(p->rgs[i].chunks);
  free(p->rgs);
  free(p->leaves);
  free(p->fields);
  free(p->outs);
  free(p->scratch);
  free(p->path);
  free(p);
}

int tide_parquet_open(const char *path, tide_parquet **out) {
  *out = NULL;
  tide_parquet *p = calloc(1, sizeof *p);
  if (!p || !(p->path = strdup(path))) { free(p); return tide_fail("%s: out of memory", path); }
  p->fd = open(path, O_RDONLY | O_CLOEXEC);
  if (p->fd < 0) {
    tide_fail("%s: %s", path, strerror(errno));
    tide_parquet_close(p);
    return -1;
  }
  struct stat st;
  if (fstat(p->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    tide_fail("%s: not a regular file", path);
    tide_parquet_close(p);
    return -1;
  }
  p->size = (int64_t)st.st_size;
  uint8_t head[4], tail[8];
  if (p->size < 12) {
    tide_fail("%s: not a Parquet file (%lld bytes, shorter than the 12 of an empty one)", path, (long long)p->size);
    goto fail;
  }
  if (read_at(p, head, 0, 4) || read_at(p, tail, p->size - 8, 8)) goto fail;
  if (memcmp(head, "PAR1", 4) != 0) {
    tide_fail("%s: not a Parquet file (byte 0: the magic bytes are not PAR1)", path);
    goto fail;
  }
  if (memcmp(tail + 4, "PARE", 4) == 0) {
    tide_fail("%s: an encrypted Parquet file (PARE), which tide does not read", path);
    goto fail;
  }
  if (memcmp(tail + 4, "PAR1", 4) != 0) {
    tide_fail("%s: not a Parquet file or truncated (byte %lld: the closing magic bytes are not PAR1)", path, (long long)p->size - 4);
    goto fail;
  }
  uint32_t flen;
  memcpy(&flen, tail, 4);
  if ((int64_t)flen > p->size - 12 || (int64_t)flen > PQ_MAX_FOOTER) {
    tide_fail("%s: corrupt footer (byte %lld: a footer length of %u bytes in a file of %lld)", path, (long long)p->size - 8, flen,
              (long long)p->size);
    goto fail;
  }
  p->footer_start = p->size - 8 - flen;
  uint8_t *footer = malloc(flen ? flen : 1);
  if (!footer) { tide_fail("%s: out of memory for a footer of %u bytes", path, flen); goto fail; }
  if (read_at(p, footer, p->footer_start, flen)) { free(footer); goto fail; }
  int rc = pq_read_footer(p, footer, flen, p->footer_start);
  free(footer);
  if (rc) {
    char m[768];
    snprintf(m, sizeof m, "%s", tide_last_error());
    tide_fail("%s: corrupt footer metadata (%s)", path, m);
    goto fail;
  }
  p->outs = calloc((size_t)(p->nfields ? p->nfields : 1), sizeof *p->outs);
  if (!p->outs) { tide_fail("%s: out of memory", path); goto fail; }
  *out = p;
  return 0;
fail:
  tide_parquet_close(p);
  return -1;
}

int64_t tide_parquet_file_size(const tide_parquet *p) { return p->size; }
int64_t tide_parquet_num_rows(const tide_parquet *p) { return p->num_rows; }
int32_t tide_parquet_num_row_groups(const tide_parquet *p) { return p->nrg; }
int32_t tide_parquet_num_columns(const tide_parquet *p) { return p->nfields; }

int64_t tide_parquet_row_group_rows(const tide_parquet *p, int32_t rg) {
  return rg >= 0 && rg < p->nrg ? p->rgs[rg].num_rows : -1;
}

int64_t tide_parquet_chunk_bytes(const tide_parquet *p, int32_t rg, int32_t col) {
  if (rg < 0 || rg >= p->nrg || col < 0 || col >= p->nfields) return -1;
  const field *f = &p->fields[col];
  int64_t n = 0;
  for (int32_t i = 0; i < f->nleaves; i++) n += p->rgs[rg].chunks[f->leaf + i].comp_size;
  return n;
}

int tide_parquet_column_info(const tide_parquet *p, int32_t i, const char **name, int32_t *type) {
  if (i < 0 || i >= p->nfields) return tide_fail("%s: column %d out of range 0..%d", p->path, i, p->nfields - 1);
  *name = p->fields[i].name;
  *type = p->fields[i].type;
  return 0;
}

int32_t tide_parquet_find_column(const tide_parquet *p, const char *name, int64_t len) {
  for (int32_t i = 0; i < p->nfields; i++)
    if ((int64_t)strlen(p->fields[i].name) == len && memcmp(p->fields[i].name, name, (size_t)len) == 0) return i;
  return -1;
}

int tide_parquet_check_column(const tide_parquet *p, int32_t i) {
  if (i < 0 || i >= p->nfields) return tide_fail("%s: column %d out of range 0..%d", p->path, i, p->nfields - 1);
  const field *f = &p->fields[i];
  static const char *const converted[] = {"UTF8", "MAP", "MAP_KEY_VALUE", "LIST"};
  if (f->type == TIDE_PQ_GROUP || f->nleaves != 1 || p->leaves[f->leaf].nested) {
    const char *kind = f->converted >= 1 && f->converted <= 3 ? converted[f->converted] : "struct";
    return tide_fail("%s: column '%s' is nested (a %s group of %d leaf columns, such as '%s'); tide.data.parquet reads flat columns only",
                     p->path, f->name, kind, f->nleaves, f->nleaves ? p->leaves[f->leaf].path : "none");
  }
  const leaf *l = &p->leaves[f->leaf];
  if (l->repetition == REPEATED || l->max_rep > 0)
    return tide_fail("%s: column '%s' is a repeated %s (a list); tide.data.parquet reads flat columns only", p->path, f->name, type_name(l->type));
  if (l->type == TIDE_PQ_INT96 || l->type == TIDE_PQ_FIXED_LEN_BYTE_ARRAY || l->type < 0 || l->type > TIDE_PQ_FIXED_LEN_BYTE_ARRAY)
    return tide_fail("%s: column '%s' has the physical type %s, which tide.data.parquet does not read "
                     "(it reads BOOLEAN, INT32, INT64, FLOAT, DOUBLE and BYTE_ARRAY)", p->path, f->name, type_name(l->type));
  if (l->max_def > 1) return tide_fail("%s: column '%s' has %d definition levels; flat columns have at most 1", p->path, f->name, l->max_def);
  return 0;
}

void tide_parquet_release(tide_parquet *p, int32_t col) {
  if (p && col >= 0 && col < p->nfields) free_out(&p->outs[col]);
}

/* column chunks ---------------------------------------------------------- */

/* What a chunk's decoding needs, for messages and page state. */
typedef struct chunk_ctx {
  tide_parquet *p;
  const field *f;
  const leaf *l;
  const chunk *c;
  int32_t rg;
  col_out *o;
  int64_t page_at;   /* file offset of the page being decoded */
} chunk_ctx;

static int chunk_fail(chunk_ctx *x) {
  char msg[640];
  snprintf(msg, sizeof msg, "%s", tide_last_error());
  return tide_fail("%s: column '%s', row group %d, page at byte %lld: %s", x->p->path, x->f->name, x->rg, (long long)x->page_at, msg);
}

static int keep_buf(col_out *o, uint8_t *b) {
  if (o->nbufs == o->capbufs) {
    int32_t cap = o->capbufs ? o->capbufs * 2 : 16;
    uint8_t **nb = realloc(o->bufs, (size_t)cap * sizeof *nb);
    if (!nb) { free(b); return tide_fail("out of memory"); }
    o->bufs = nb;
    o->capbufs = cap;
  }
  o->bufs[o->nbufs++] = b;
  return 0;
}

/* Room for n more rows in the output arrays. */
static int reserve(chunk_ctx *x, int64_t n) {
  col_out *o = x->o;
  int64_t need = o->rows + n;
  if (need <= o->cap) return 0;
  int64_t cap = o->cap ? o->cap : 1024;
  while (cap < need) cap *= 2;
  int es = elem_size(x->l->type);
  if (x->l->max_def > 0) {
    uint8_t *v = realloc(o->valid, (size_t)cap);
    if (!v) return tide_fail("out of memory for %lld rows", (long long)cap);
    o->valid = v;
  }
  if (x->l->type == TIDE_PQ_BYTE_ARRAY) {
    const char **pp = realloc(o->ptrs, (size_t)cap * sizeof *pp);
    if (!pp) return tide_fail("out of memory for %lld rows", (long long)cap);
    o->ptrs = pp;
    int32_t *ll = realloc(o->lens, (size_t)cap * sizeof *ll);
    if (!ll) return tide_fail("out of memory for %lld rows", (long long)cap);
    o->lens = ll;
  } else {
    uint8_t *vv = realloc(o->values, (size_t)cap * (size_t)es);
    if (!vv) return tide_fail("out of memory for %lld rows", (long long)cap);
    o->values = vv;
  }
  o->cap = cap;
  return 0;
}

static int decode_dictionary(chunk_ctx *x, const uint8_t *p, const uint8_t *end, int64_t n, int32_t enc) {
  char eb[32];
  if (enc != ENC_PLAIN && enc != ENC_PLAIN_DICTIONARY)
    return tide_fail("a dictionary page in %s, which tide does not read (PLAIN only)", encoding_name(enc, eb, sizeof eb));
  int32_t type = x->l->type;
  if (type == TIDE_PQ_BYTE_ARRAY) {
    if (n > (end - p) / 4) return tide_fail("a dictionary of %lld strings in %lld bytes", (long long)n, (long long)(end - p));
    x->o->dict_ptrs = malloc((size_t)(n ? n : 1) * sizeof *x->o->dict_ptrs);
    x->o->dict_lens = malloc((size_t)(n ? n : 1) * sizeof *x->o->dict_lens);
    if (!x->o->dict_ptrs || !x->o->dict_lens) return tide_fail("out of memory for a dictionary of %lld strings", (long long)n);
    int64_t used;
    if (pq_plain_byte_array(p, end, n, x->o->dict_ptrs, x->o->dict_lens, &used)) return -1;
  } else {
    int es = elem_size(type);
    if (type == TIDE_PQ_BOOLEAN) return tide_fail("a dictionary page for a BOOLEAN column");
    if (n > (end - p) / es) return tide_fail("a dictionary of %lld values in %lld bytes", (long long)n, (long long)(end - p));
    x->o->dict_values = malloc((size_t)(n ? n : 1) * (size_t)es);
    if (!x->o->dict_values) return tide_fail("out of memory for a dictionary of %lld values", (long long)n);
    memcpy(x->o->dict_values, p, (size_t)(n * es));
  }
  x->o->dict_n = n;
  return 0;
}

/* Moves the k dense values decoded at rows [r0, r0 + k) to the rows of
   [r0, r0 + nv) that valid marks, back to front (a value only moves up). */
static void spread(chunk_ctx *x, int64_t r0, int64_t nv, int64_t k) {
  col_out *o = x->o;
  const uint8_t *valid = o->valid + r0;
  int64_t j = k;
  if (x->l->type == TIDE_PQ_BYTE_ARRAY) {
    const char **pp = o->ptrs + r0;
    int32_t *ll = o->lens + r0;
    for (int64_t i = nv - 1; i >= 0; i--) {
      if (valid[i]) { j--; pp[i] = pp[j]; ll[i] = ll[j]; }
      else { pp[i] = ""; ll[i] = 0; }
    }
  } else {
    int es = elem_size(x->l->type);
    uint8_t *v = o->values + r0 * es;
    for (int64_t i = nv - 1; i >= 0; i--) {
      if (valid[i]) { j--; memmove(v + i * es, v + j * es, (size_t)es); }
      else memset(v + i * es, 0, (size_t)es);
    }
  }
}

/* The k non-null values of a page, encoded with enc in [p, end), to rows [r0, r0 + k). */
static int decode_values(chunk_ctx *x, const uint8_t *p, const uint8_t *end, int32_t enc, int64_t r0, int64_t k) {
  col_out *o = x->o;
  int32_t type = x->l->type;
  char eb[32];
  if (enc == ENC_PLAIN) {
    if (type == TIDE_PQ_BYTE_ARRAY) {
      int64_t used;
      return pq_plain_byte_array(p, end, k, o->ptrs + r0, o->lens + r0, &used);
    }
    if (type == TIDE_PQ_BOOLEAN) return pq_plain_bool(p, end, k, o->values + r0);
    int es = elem_size(type);
    if (k > (end - p) / es) return tide_fail("%lld %s values need more than the page's %lld bytes", (long long)k, type_name(type), (long long)(end - p));
    memcpy(o->values + r0 * es, p, (size_t)(k * es));
    return 0;
  }
  if (enc == ENC_RLE && type == TIDE_PQ_BOOLEAN) {
    if (end - p < 4) return tide_fail("RLE booleans without their 4-byte length");
    uint32_t len;
    memcpy(&len, p, 4);
    p += 4;
    if (len > (uint64_t)(end - p)) return tide_fail("RLE booleans of %u bytes past the end of the page", len);
    return pq_hybrid_u8(p, p + len, 1, o->values + r0, k);
  }
  if (enc == ENC_PLAIN_DICTIONARY || enc == ENC_RLE_DICTIONARY) {
    if (!x->o->dict_ptrs && !x->o->dict_values) return tide_fail("dictionary-encoded values without a dictionary page");
    if (k == 0) return 0;
    if (end - p < 1) return tide_fail("dictionary indices without their bit width");
    int w = *p++;
    if (w > 32) return tide_fail("dictionary indices of bit width %d", w);
    if (k > x->p->scratch_cap) {
      uint32_t *s = realloc(x->p->scratch, (size_t)k * sizeof *s);
      if (!s) return tide_fail("out of memory for %lld indices", (long long)k);
      x->p->scratch = s;
      x->p->scratch_cap = k;
    }
    uint32_t *idx = x->p->scratch;
    if (pq_hybrid_u32(p, end, w, idx, k)) return -1;
    uint32_t n = (uint32_t)x->o->dict_n;
    for (int64_t i = 0; i < k; i++)
      if (idx[i] >= n) return tide_fail("dictionary index %u out of a dictionary of %u", idx[i], n);
    if (type == TIDE_PQ_BYTE_ARRAY) {
      const char **pp = o->ptrs + r0;
      int32_t *ll = o->lens + r0;
      for (int64_t i = 0; i < k; i++) { pp[i] = x->o->dict_ptrs[idx[i]]; ll[i] = x->o->dict_lens[idx[i]]; }
    } else {
      int es = elem_size(type);
      uint8_t *v = o->values + r0 * es;
      if (es == 4) for (int64_t i = 0; i < k; i++) memcpy(v + 4 * i, x->o->dict_values + 4 * (size_t)idx[i], 4);
      else for (int64_t i = 0; i < k; i++) memcpy(v + 8 * i, x->o->dict_values + 8 * (size_t)idx[i], 8);
    }
    return 0;
  }
  return tide_fail("values in the %s encoding, which tide does not read for %s (it reads PLAIN, RLE_DICTIONARY, PLAIN_DICTIONARY%s)",
                   encoding_name(enc, eb, sizeof eb), type_name(type), type == TIDE_PQ_BOOLEAN ? " and RLE" : "");
}

static int bit_width(int32_t max) {
  int w = 0;
  while (max >> w) w++;
  return w;
}

/* A page found by the first pass over a chunk: its header, its bytes, and
   its body (the part a codec compresses: all of a v1 or dictionary page,
   the values of a v2 page) as stored and as decompressed. */
typedef struct page_ref page_ref;
struct page_ref {
  page_header h;
  int64_t at;              /* file offset of its header */
  const uint8_t *src;      /* its bytes, in the chunk's buffer */
  int64_t body_off, body_n, body_unc;
  int64_t arena_off;       /* where the body decompresses to; -1 when stored uncompressed */
  int rc;
};

static const uint8_t *body_of(const page_ref *pg, const uint8_t *arena) {
  return pg->arena_off >= 0 ? arena + pg->arena_off : pg->src + pg->body_off;
}

/* One data page (v1 or v2), its body decompressed at body. */
static int data_page(chunk_ctx *x, const page_ref *pg, const uint8_t *body, int64_t rows_left) {
  col_out *o = x->o;
  const page_header *h = &pg->h;
  int v2 = h->type == DATA_PAGE_V2;
  int64_t nv = h->num_values;
  if (nv > rows_left) return tide_fail("a page of %lld values past the row group's %lld rows left", (long long)nv, (long long)rows_left);
  if (reserve(x, nv)) return -1;
  int64_t r0 = o->rows;
  const uint8_t *p = body, *end = body + pg->body_unc;
  int w = bit_width(x->l->max_def);
  if (v2) {
    if (h->rep_len) return tide_fail("repetition levels in a flat column");
    const uint8_t *lv = pg->src + h->rep_len;
    if (x->l->max_def > 0) {
      if (pq_hybrid_u8(lv, lv + h->def_len, w, o->valid + r0, nv)) return -1;
    } else if (h->def_len) {
      return tide_fail("definition levels in a required column");
    }
  } else if (x->l->max_def > 0) {
    char eb[32];
    if (h->def_encoding != ENC_RLE)
      return tide_fail("definition levels in %s, which tide does not read (RLE only)", encoding_name(h->def_encoding, eb, sizeof eb));
    if (end - p < 4) return tide_fail("definition levels without their 4-byte length");
    uint32_t len;
    memcpy(&len, p, 4);
    p += 4;
    if (len > (uint64_t)(end - p)) return tide_fail("definition levels of %u bytes past the end of the page", len);
    if (pq_hybrid_u8(p, p + len, w, o->valid + r0, nv)) return -1;
    p += len;
  }
  int64_t k = nv;
  if (x->l->max_def > 0) {
    k = 0;
    const uint8_t *vd = o->valid + r0;
    for (int64_t i = 0; i < nv; i++) k += vd[i];  /* levels are 0 or 1: width 1, checked by the decoder */
    if (v2 && h->num_nulls != nv - k)
      return tide_fail("a page whose header gives %d nulls and whose levels give %lld", h->num_nulls, (long long)(nv - k));
  }
  if (decode_values(x, p, end, h->encoding, r0, k)) return -1;
  if (k < nv) spread(x, r0, nv, k);
  o->nulls += nv - k;
  o->rows += nv;
  return 0;
}

/* The first pass over a chunk's bytes [buf, buf + len) (at file offset
   start): each page's header parsed and its sizes checked, up to the pages
   that hold the row group's rows. *arena_size gets the bytes the compressed
   bodies decompress to, each page's arena_off its place there. */
static int scan_pages(chunk_ctx *x, const uint8_t *buf, int64_t start, int64_t len, int64_t rows, page_ref **out, int64_t *npages,
                      int64_t *arena_size) {
  page_ref *pages = NULL;
  int64_t n = 0, cap = 0, pos = 0, values = 0, arena = 0;
  int32_t codec = x->c->codec;
  while (values < rows) {
    x->page_at = start + pos;
    if (pos >= len) {
      *out = pages;
      *npages = n;
      return tide_fail("the chunk ends after %lld of its %lld values", (long long)values, (long long)rows);
    }
    if (n == cap) {
      int64_t nc = cap ? cap * 2 : 64;
      page_ref *np = realloc(pages, (size_t)nc * sizeof *np);
      if (!np) { *out = pages; *npages = n; return tide_fail("out of memory for %lld pages", (long long)nc); }
      pages = np;
      cap = nc;
    }
    page_ref *pg = &pages[n];
    memset(pg, 0, sizeof *pg);
    *out = pages;
    *npages = n;
    tc_reader r;
    tc_init(&r, buf + pos, len - pos, start + pos);
    page_header *h = &pg->h;
    if (pq_read_page_header(&r, h)) {
      char m[512];
      snprintf(m, sizeof m, "%s", tide_last_error());
      return tide_fail("corrupt page header (%s)", m);
    }
    pg->at = start + pos;
    pos += r.p - r.start;
    if (h->comp > len - pos) return tide_fail("a page of %d bytes past the chunk's end (%lld bytes left)", h->comp, (long long)(len - pos));
    pg->src = buf + pos;
    pos += h->comp;
    pg->body_n = h->comp;
    pg->body_unc = h->unc;
    int compressed = codec != PQ_UNCOMPRESSED;
    if (h->type == DICTIONARY_PAGE) {
      if (!h->has_dict) return tide_fail("a dictionary page header without its details");
      if (n != 0) return tide_fail("a dictionary page that is not the chunk's first page");
    } else if (h->type == DATA_PAGE || h->type == DATA_PAGE_V2) {
      int v2 = h->type == DATA_PAGE_V2;
      if ((v2 && !h->has_v2) || (!v2 && !h->has_data)) return tide_fail("a data page header without its details");
      if (h->num_values > (int64_t)h->unc * 64 + 65536) return tide_fail("a page claiming %d values in %d bytes", h->num_values, h->unc);
      if (v2) {
        int64_t lv = (int64_t)h->def_len + h->rep_len;
        if (lv > h->comp || lv > h->unc) return tide_fail("levels of %d + %d bytes in a page of %d", h->rep_len, h->def_len, h->comp);
        pg->body_off = lv;
        pg->body_n -= lv;
        pg->body_unc -= lv;
        compressed = compressed && h->is_compressed;
      }
      values += h->num_values;
    } else if (h->type == INDEX_PAGE) {
      continue;  /* not kept: n stays */
    } else {
      return tide_fail("a page of unknown type %d", h->type);
    }
    if (!compressed) {
      if (pg->body_n != pg->body_unc)
        return tide_fail("an uncompressed page of %lld bytes whose header gives %lld", (long long)pg->body_n, (long long)pg->body_unc);
      pg->arena_off = -1;
    } else {
      if (pg->body_unc > pq_codec_max_expansion(codec, pg->body_n)) {
        char cb[32];
        return tide_fail("%lld compressed bytes cannot hold the %lld the page header gives with %s", (long long)pg->body_n,
                         (long long)pg->body_unc, pq_codec_name(codec, cb, sizeof cb));
      }
      pg->arena_off = arena;
      arena += pg->body_unc;
    }
    n++;
  }
  *out = pages;
  *npages = n;
  *arena_size = arena;
  return 0;
}

/* Checks column col's chunk in row group rg against the schema, reads its
   bytes (kept with the column's output) and finds its pages: 0, or 1 for an
   empty row group (nothing read), or -1. */
static int begin_chunk(tide_parquet *p, int32_t rg, int32_t col, chunk_ctx *x, page_ref **pages, int64_t *npages, int64_t *arena_size) {
  *pages = NULL;
  *npages = *arena_size = 0;
  if (rg < 0 || rg >= p->nrg) return tide_fail("%s: row group %d out of range 0..%d", p->path, rg, p->nrg - 1);
  if (tide_parquet_check_column(p, col)) return -1;
  memset(x, 0, sizeof *x);
  x->p = p;
  x->f = &p->fields[col];
  x->l = &p->leaves[x->f->leaf];
  x->c = &p->rgs[rg].chunks[x->f->leaf];
  x->rg = rg;
  x->o = &p->outs[col];
  free_out(x->o);
  const chunk *c = x->c;
  int64_t rows = p->rgs[rg].num_rows;
  char cb[32];
  if (c->has_path)
    return tide_fail("%s: column '%s', row group %d: the chunk lives in another file, which tide does not read", p->path, x->f->name, rg);
  if (c->type != x->l->type)
    return tide_fail("%s: column '%s', row group %d: the chunk's type %s differs from the schema's %s", p->path, x->f->name, rg,
                     type_name(c->type), type_name(x->l->type));
  if (!pq_codec_supported(c->codec))
    return tide_fail("%s: column '%s', row group %d: the %s codec is not supported (tide reads UNCOMPRESSED, SNAPPY, GZIP and ZSTD)",
                     p->path, x->f->name, rg, pq_codec_name(c->codec, cb, sizeof cb));
  if (c->num_values != rows)
    return tide_fail("%s: column '%s', row group %d: %lld values in a row group of %lld rows", p->path, x->f->name, rg,
                     (long long)c->num_values, (long long)rows);
  if (rows == 0) return 1;  /* writers leave an empty row group's offsets at 0 */
  /* dictionary_page_offset 0 is how some writers say "none" */
  int64_t start = c->dict_off > 0 && c->dict_off < c->data_off ? c->dict_off : c->data_off;
  int64_t len = c->comp_size;
  if (start < 4 || len < 0 || start > p->footer_start || len > p->footer_start - start)
    return tide_fail("%s: column '%s', row group %d: a chunk of %lld bytes at byte %lld, outside the file's data (bytes 4..%lld)", p->path,
                     x->f->name, rg, (long long)len, (long long)start, (long long)p->footer_start);
  uint8_t *buf = malloc((size_t)(len ? len : 1));
  if (!buf) return tide_fail("%s: out of memory for a chunk of %lld bytes", p->path, (long long)len);
  if (read_at(p, buf, start, len)) { free(buf); return -1; }
  if (keep_buf(x->o, buf)) return tide_fail("%s: out of memory", p->path);
  if (scan_pages(x, buf, start, len, rows, pages, npages, arena_size)) {
    chunk_fail(x);
    free(*pages);
    *pages = NULL;
    free_out(x->o);
    return -1;
  }
  return 0;
}

int tide_parquet_read(tide_parquet *p, int32_t rg, int32_t col, tide_parquet_column *out) {
  memset(out, 0, sizeof *out);
  chunk_ctx x;
  page_ref *pages;
  int64_t npages, arena_size;
  int rc = begin_chunk(p, rg, col, &x, &pages, &npages, &arena_size);
  if (rc < 0) return -1;
  int64_t rows = p->rgs[rg].num_rows;
  const chunk *c = x.c;
  if (rc == 1) {
    out->type = x.l->type;
    return 0;
  }
  uint8_t *arena = NULL;
  if (rc == 0 && arena_size > 0) {
    /* one block for every decompressed body: large ones 2 MiB-aligned and
       marked for huge pages, so first touch costs a fault per 2 MiB, not per 4 KiB */
    size_t huge = (size_t)2 << 20, n = (size_t)arena_size;
    void *m = NULL;
    if (n >= 2 * huge) {
      n = (n + huge - 1) / huge * huge;
      if (posix_memalign(&m, huge, n) != 0) m = NULL;
      if (m) madvise(m, n, MADV_HUGEPAGE);
    } else {
      m = malloc(n);
    }
    if (!m) rc = tide_fail("out of memory for %lld bytes of decompressed pages", (long long)arena_size);
    else if (keep_buf(x.o, m)) rc = -1;
    else arena = m;
  }
  if (rc == 0 && arena) {
    /* the pages decompress in parallel; a failure is decompressed again
       here to get its message (messages are per thread) */
    int32_t codec = c->codec;
#pragma omp parallel for schedule(dynamic, 1) if (arena_size >= (1 << 22))
    for (int64_t i = 0; i < npages; i++) {
      page_ref *pg = &pages[i];
      if (pg->arena_off >= 0)
        pg->rc = pq_decompress(codec, pg->src + pg->body_off, pg->body_n, arena + pg->arena_off, pg->body_unc);
    }
    for (int64_t i = 0; i < npages && rc == 0; i++) {
      page_ref *pg = &pages[i];
      if (pg->rc) {
        x.page_at = pg->at;
        pq_decompress(codec, pg->src + pg->body_off, pg->body_n, arena + pg->arena_off, pg->body_unc);
        rc = -1;
      }
    }
  }
  for (int64_t i = 0; i < npages && rc == 0; i++) {
    page_ref *pg = &pages[i];
    const uint8_t *body = body_of(pg, arena);
    x.page_at = pg->at;
    if (pg->h.type == DICTIONARY_PAGE) {
      if (decode_dictionary(&x, body, body + pg->body_unc, pg->h.num_values, pg->h.encoding)) rc = -1;
    } else if (pg->h.type == DATA_PAGE || pg->h.type == DATA_PAGE_V2) {
      if (data_page(&x, pg, body, rows - x.o->rows)) rc = -1;
    }
  }
  if (rc == 0 && x.o->rows != rows)
    rc = tide_fail("the chunk's pages hold %lld values, its row group %lld rows", (long long)x.o->rows, (long long)rows);
  free(pages);
  if (rc) {
    chunk_fail(&x);
    free_out(x.o);
    return -1;
  }
  out->type = x.l->type;
  out->rows = rows;
  out->nulls = x.o->nulls;
  out->valid = x.l->max_def > 0 ? x.o->valid : NULL;
  out->ptrs = x.o->ptrs;
  out->lens = x.o->lens;
  out->values = x.o->values;
  return 0;
}

/* page by page ------------------------------------------------------------- */

/* Decompresses page pg's body into the column's page buffer (or points at
   it where it is stored uncompressed). */
static int page_body(chunk_ctx *x, const page_ref *pg, const uint8_t **body) {
  col_out *o = x->o;
  if (pg->arena_off < 0) {
    *body = pg->src + pg->body_off;
    return 0;
  }
  if (pg->body_unc > o->page_cap) {
    uint8_t *b = realloc(o->page_buf, (size_t)pg->body_unc);
    if (!b) return tide_fail("out of memory for a page of %lld bytes", (long long)pg->body_unc);
    o->page_buf = b;
    o->page_cap = pg->body_unc;
  }
  if (pq_decompress(x->c->codec, pg->src + pg->body_off, pg->body_n, o->page_buf, pg->body_unc)) return -1;
  *body = o->page_buf;
  return 0;
}

static void cursor_ctx(tide_parquet *p, int32_t col, chunk_ctx *x) {
  memset(x, 0, sizeof *x);
  x->p = p;
  x->f = &p->fields[col];
  x->l = &p->leaves[x->f->leaf];
  x->o = &p->outs[col];
  x->rg = x->o->rg;
  x->c = &p->rgs[x->rg].chunks[x->f->leaf];
}

int tide_parquet_start(tide_parquet *p, int32_t rg, int32_t col) {
  chunk_ctx x;
  page_ref *pages;
  int64_t npages, arena_size;
  int rc = begin_chunk(p, rg, col, &x, &pages, &npages, &arena_size);
  if (rc < 0) return -1;
  col_out *o = x.o;
  o->pages = pages;
  o->npages = npages;
  o->next = 0;
  o->rg = rg;
  o->rows_total = p->rgs[rg].num_rows;
  o->rows_done = 0;
  if (npages > 0 && pages[0].h.type == DICTIONARY_PAGE) {
    /* the dictionary's body lives as long as the chunk: its strings are pointed to */
    const page_ref *pg = &pages[0];
    const uint8_t *body = pg->src + pg->body_off;
    x.page_at = pg->at;
    if (pg->arena_off >= 0) {
      uint8_t *b = malloc((size_t)(pg->body_unc ? pg->body_unc : 1));
      if (!b) rc = tide_fail("out of memory for a dictionary of %lld bytes", (long long)pg->body_unc);
      else if (keep_buf(o, b)) rc = -1;
      else if (pq_decompress(x.c->codec, pg->src + pg->body_off, pg->body_n, b, pg->body_unc)) rc = -1;
      body = b;
    }
    if (rc == 0 && decode_dictionary(&x, body, body + pg->body_unc, pg->h.num_values, pg->h.encoding)) rc = -1;
    if (rc) {
      chunk_fail(&x);
      free_out(o);
      return -1;
    }
    o->next = 1;
  }
  return 0;
}

int tide_parquet_next(tide_parquet *p, int32_t col, tide_parquet_column *out) {
  memset(out, 0, sizeof *out);
  if (col < 0 || col >= p->nfields) return tide_fail("%s: column %d out of range 0..%d", p->path, col, p->nfields - 1);
  col_out *o = &p->outs[col];
  if (!o->pages) {
    if (o->rows_total == 0 && o->rows_done == 0) return 0;  /* an empty row group, or never started */
    return tide_fail("%s: column %d: tide_parquet_next without tide_parquet_start", p->path, col);
  }
  chunk_ctx x;
  cursor_ctx(p, col, &x);
  if (o->next >= o->npages) {
    if (o->rows_done != o->rows_total) {
      tide_fail("the chunk's pages hold %lld values, its row group %lld rows", (long long)o->rows_done, (long long)o->rows_total);
      chunk_fail(&x);
      free_out(o);
      return -1;
    }
    return 0;
  }
  const page_ref *pg = &o->pages[o->next++];
  const uint8_t *body = NULL;
  x.page_at = pg->at;
  o->rows = o->nulls = 0;
  if (page_body(&x, pg, &body) || data_page(&x, pg, body, o->rows_total - o->rows_done)) {
    chunk_fail(&x);
    free_out(o);
    return -1;
  }
  o->rows_done += o->rows;
  out->type = x.l->type;
  out->rows = o->rows;
  out->nulls = o->nulls;
  out->valid = x.l->max_def > 0 ? o->valid : NULL;
  out->ptrs = o->ptrs;
  out->lens = o->lens;
  out->values = o->values;
  return 1;
}

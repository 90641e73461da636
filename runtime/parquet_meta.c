/* Parquet's metadata, as the format's parquet.thrift defines it, read with
   the Thrift compact protocol (thrift_compact.c): the footer's FileMetaData
   (schema elements, row groups, column chunks and their ColumnMetaData) and
   the PageHeader in front of every page. Only the fields tide uses are
   kept; the rest are skipped whole. Field ids, from parquet.thrift:
   FileMetaData: 2 schema, 3 num_rows, 4 row_groups.
   SchemaElement: 1 type, 3 repetition_type, 4 name, 5 num_children, 6 converted_type.
   RowGroup: 1 columns, 3 num_rows. ColumnChunk: 1 file_path, 3 meta_data.
   ColumnMetaData: 1 type, 4 codec, 5 num_values, 7 total_compressed_size,
   9 data_page_offset, 11 dictionary_page_offset.
   PageHeader: 1 type, 2 uncompressed_page_size, 3 compressed_page_size,
   5 data_page_header, 7 dictionary_page_header, 8 data_page_header_v2. */
#include "parquet_meta.h"
#include "error.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct schema_el {
  int32_t type;         /* physical type, -1 when absent (a group) */
  int32_t repetition;   /* -1 when absent (the root) */
  int32_t num_children;
  int32_t converted;    /* ConvertedType, -1 when absent */
  const uint8_t *name;
  int64_t name_len;
} schema_el;

/* the footer -------------------------------------------------------------- */

/* Reads one SchemaElement. */
static int read_schema_el(tc_reader *r, schema_el *e) {
  memset(e, 0, sizeof *e);
  e->type = e->repetition = e->converted = -1;
  int16_t last = 0, id;
  int t, rc;
  int64_t v;
  if (tc_enter(r)) return -1;
  while ((rc = tc_field(r, &last, &id, &t)) == 1) {
    int is_int = t == TC_I32 || t == TC_I16 || t == TC_I64 || t == TC_BYTE;
    if (is_int && (id == 1 || id == 3 || id == 5 || id == 6)) {
      if (tc_int(r, t, &v)) return -1;
      if (v < 0 || v > INT32_MAX) return tc_fail(r, "a schema value out of range");
      if (id == 1 && v > TIDE_PQ_FIXED_LEN_BYTE_ARRAY) return tc_fail(r, "a schema element of an unknown physical type");
      if (id == 3 && v > REPEATED) return tc_fail(r, "a schema element of an unknown repetition");
      if (id == 1) e->type = (int32_t)v;
      else if (id == 3) e->repetition = (int32_t)v;
      else if (id == 5) e->num_children = (int32_t)v;
      else e->converted = (int32_t)v;
    } else if (id == 4 && t == TC_BINARY) {
      if (tc_binary(r, &e->name, &e->name_len)) return -1;
    } else if (tc_skip(r, t)) {
      return -1;
    }
  }
  tc_leave(r);
  if (rc < 0) return -1;
  if (!e->name) return tc_fail(r, "a schema element without a name");
  return 0;
}

static int read_column_meta(tc_reader *r, chunk *c) {
  int16_t last = 0, id;
  int t, rc;
  int64_t v;
  int have = 0;
  if (tc_enter(r)) return -1;
  while ((rc = tc_field(r, &last, &id, &t)) == 1) {
    int is_int = t == TC_I32 || t == TC_I16 || t == TC_I64 || t == TC_BYTE;
    if (is_int && (id == 1 || id == 4 || id == 5 || id == 7 || id == 9 || id == 11)) {
      if (tc_int(r, t, &v)) return -1;
      if (v < 0) return tc_fail(r, "a negative size or offset in a column chunk");
      switch (id) {
        case 1: c->type = (int32_t)(v > 100 ? 100 : v); have |= 1; break;
        case 4: c->codec = (int32_t)(v > 100 ? 100 : v); have |= 2; break;
        case 5: c->num_values = v; have |= 4; break;
        case 7: c->comp_size = v; have |= 8; break;
        case 9: c->data_off = v; have |= 16; break;
        case 11: c->dict_off = v; break;
      }
    } else if (tc_skip(r, t)) {
      return -1;
    }
  }
  tc_leave(r);
  if (rc < 0) return -1;
  if (have != 31) return tc_fail(r, "column metadata without its type, codec, value count, size or offset");
  return 0;
}

static int read_column_chunk(tc_reader *r, chunk *c) {
  int16_t last = 0, id;
  int t, rc, have = 0;
  memset(c, 0, sizeof *c);
  c->dict_off = -1;
  if (tc_enter(r)) return -1;
  while ((rc = tc_field(r, &last, &id, &t)) == 1) {
    if (id == 1 && t == TC_BINARY) {
      c->has_path = 1;
      if (tc_skip(r, t)) return -1;
    } else if (id == 3 && t == TC_STRUCT) {
      if (read_column_meta(r, c)) return -1;
      have = 1;
    } else if (tc_skip(r, t)) {
      return -1;
    }
  }
  tc_leave(r);
  if (rc < 0) return -1;
  if (!have) return tc_fail(r, "a column chunk without metadata (encrypted?)");
  return 0;
}

static int read_row_group(tc_reader *r, row_group *g, int32_t nleaves) {
  int16_t last = 0, id;
  int t, rc, have_rows = 0;
  if (tc_enter(r)) return -1;
  while ((rc = tc_field(r, &last, &id, &t)) == 1) {
    if (id == 1 && t == TC_LIST && !g->chunks) {
      int et;
      int64_t n;
      if (tc_list(r, &et, &n)) return -1;
      if (et != TC_STRUCT) return tc_fail(r, "row group columns that are not structures");
      if (n != nleaves) {
        char msg[96];
        snprintf(msg, sizeof msg, "a row group of %lld columns in a schema of %d", (long long)n, nleaves);
        return tc_fail(r, msg);
      }
      g->chunks = calloc((size_t)(n ? n : 1), sizeof *g->chunks);
      if (!g->chunks) return tc_fail(r, "out of memory");
      if (tc_enter(r)) return -1;
      for (int64_t i = 0; i < n; i++)
        if (read_column_chunk(r, &g->chunks[i])) return -1;
      tc_leave(r);
    } else if (id == 3 && (t == TC_I64 || t == TC_I32)) {
      if (tc_i64(r, &g->num_rows)) return -1;
      if (g->num_rows < 0 || g->num_rows > INT32_MAX) return tc_fail(r, "a row group's row count out of range");
      have_rows = 1;
    } else if (tc_skip(r, t)) {
      return -1;
    }
  }
  tc_leave(r);
  if (rc < 0) return -1;
  if (!g->chunks || !have_rows) return tc_fail(r, "a row group without its columns or row count");
  return 0;
}

static char *dup_name(const uint8_t *s, int64_t n) {
  char *d = malloc((size_t)n + 1);
  if (!d) return NULL;
  memcpy(d, s, (size_t)n);
  d[n] = 0;
  return d;
}

/* Walks the flattened schema depth first from element *at, giving leaves
   their dotted paths and levels. */
static int walk_schema(tide_parquet *p, tc_reader *r, const schema_el *els, int64_t nels, int64_t *at, const char *prefix,
                       int32_t def, int32_t rep, int32_t top, int nested, int depth) {
  if (depth > 64) return tc_fail(r, "schema nested too deeply");
  if (*at >= nels) return tc_fail(r, "the schema has fewer elements than its groups claim");
  const schema_el *e = &els[(*at)++];
  size_t plen = strlen(prefix);
  char *path = malloc(plen + (size_t)e->name_len + 2);
  if (!path) return tc_fail(r, "out of memory");
  if (plen) { memcpy(path, prefix, plen); path[plen++] = '.'; }
  memcpy(path + plen, e->name, (size_t)e->name_len);
  path[plen + e->name_len] = 0;
  if (e->repetition == OPTIONAL) def++;
  if (e->repetition == REPEATED) { def++; rep++; }
  if (e->num_children > 0 || e->type < 0) {
    for (int32_t c = 0; c < e->num_children; c++)
      if (walk_schema(p, r, els, nels, at, path, def, rep, top, 1, depth + 1)) { free(path); return -1; }
    free(path);
    return 0;
  }
  if (p->nleaves >= nels) { free(path); return tc_fail(r, "more leaves than schema elements"); }
  leaf *l = &p->leaves[p->nleaves++];
  l->path = path;
  l->type = e->type;
  l->repetition = e->repetition;
  l->max_def = def;
  l->max_rep = rep;
  l->field = top;
  l->nested = nested;
  return 0;
}

int pq_read_footer(tide_parquet *p, const uint8_t *buf, int64_t len, int64_t base) {
  tc_reader r;
  tc_init(&r, buf, len, base);
  schema_el *els = NULL;
  int64_t nels = 0;
  int16_t last = 0, id;
  int t, rc, have_rows = 0;
  int64_t rg_list_at = -1;
  while ((rc = tc_field(&r, &last, &id, &t)) == 1) {
    if (id == 2 && t == TC_LIST && !els) {
      int et;
      if (tc_list(&r, &et, &nels)) goto fail;
      if (et != TC_STRUCT || nels < 1) { tc_fail(&r, "a schema that is not a list of elements"); goto fail; }
      els = calloc((size_t)nels, sizeof *els);
      if (!els) { tc_fail(&r, "out of memory"); goto fail; }
      for (int64_t i = 0; i < nels; i++)
        if (read_schema_el(&r, &els[i])) goto fail;
    } else if (id == 3 && (t == TC_I64 || t == TC_I32)) {
      if (tc_i64(&r, &p->num_rows)) goto fail;
      if (p->num_rows < 0) { tc_fail(&r, "a negative row count"); goto fail; }
      have_rows = 1;
    } else if (id == 4 && t == TC_LIST && rg_list_at < 0) {
      /* read after the schema (whose leaf count sizes each row group) */
      rg_list_at = r.p - r.start;
      if (tc_skip(&r, t)) goto fail;
    } else if (tc_skip(&r, t)) {
      goto fail;
    }
  }
  if (rc < 0) goto fail;
  if (!els || !have_rows || rg_list_at < 0) { tc_fail(&r, "file metadata without its schema, row count or row groups"); goto fail; }
  /* the root's children are the top-level fields */
  const schema_el *root = &els[0];
  if (root->num_children < 0 || root->num_children > nels - 1) { tc_fail(&r, "a schema root with more children than elements"); goto fail; }
  p->leaves = calloc((size_t)nels, sizeof *p->leaves);
  p->fields = calloc((size_t)(root->num_children ? root->num_children : 1), sizeof *p->fields);
  if (!p->leaves || !p->fields) { tc_fail(&r, "out of memory"); goto fail; }
  int64_t at = 1;
  for (int32_t f = 0; f < root->num_children; f++) {
    if (at >= nels) { tc_fail(&r, "the schema has fewer elements than its root's children"); goto fail; }
    const schema_el *e = &els[at];
    field *fd = &p->fields[p->nfields++];
    fd->name = dup_name(e->name, e->name_len);
    if (!fd->name) { tc_fail(&r, "out of memory"); goto fail; }
    fd->type = e->num_children > 0 || e->type < 0 ? TIDE_PQ_GROUP : e->type;
    fd->repetition = e->repetition;
    fd->converted = e->converted;
    fd->leaf = p->nleaves;
    if (walk_schema(p, &r, els, nels, &at, "", 0, 0, f, 0, 0)) goto fail;
    fd->nleaves = p->nleaves - fd->leaf;
  }
  if (at != nels) { tc_fail(&r, "schema elements beyond the root's children"); goto fail; }
  /* now the row groups */
  tc_reader rg;
  tc_init(&rg, buf, len, base);
  rg.p = buf + rg_list_at;
  int et;
  int64_t nrg;
  if (tc_list(&rg, &et, &nrg)) goto fail_rg;
  if (et != TC_STRUCT) { tc_fail(&rg, "row groups that are not structures"); goto fail_rg; }
  if (nrg > INT32_MAX) { tc_fail(&rg, "too many row groups"); goto fail_rg; }
  p->rgs = calloc((size_t)(nrg ? nrg : 1), sizeof *p->rgs);
  if (!p->rgs) { tc_fail(&rg, "out of memory"); goto fail_rg; }
  for (int64_t i = 0; i < nrg; i++) {
    p->nrg++;
    if (read_row_group(&rg, &p->rgs[i], p->nleaves)) goto fail_rg;
  }
  free(els);
  return 0;
fail_rg:
fail:
  free(els);
  return -1;
}



/* page headers ------------------------------------------------------------ */

static int read_sub_header(tc_reader *r, page_header *h, int kind) {
  int16_t last = 0, id;
  int t, rc;
  int64_t v;
  if (tc_enter(r)) return -1;
  while ((rc = tc_field(r, &last, &id, &t)) == 1) {
    int is_int = t == TC_I32 || t == TC_I16 || t == TC_I64 || t == TC_BYTE;
    int is_bool = t == TC_TRUE || t == TC_FALSE;
    if (kind == DATA_PAGE_V2 && id == 7 && is_bool) {
      h->is_compressed = t == TC_TRUE;
    } else if (is_int && id <= 6) {
      if (tc_int(r, t, &v)) return -1;
      if (v < 0 || v > INT32_MAX) return tc_fail(r, "a page header value out of range");
      int32_t x = (int32_t)v;
      if (id == 1) h->num_values = x;
      else if (kind == DATA_PAGE) {
        if (id == 2) h->encoding = x;
        else if (id == 3) h->def_encoding = x;
      } else if (kind == DICTIONARY_PAGE) {
        if (id == 2) h->encoding = x;
      } else {
        if (id == 2) h->num_nulls = x;
        else if (id == 4) h->encoding = x;
        else if (id == 5) h->def_len = x;
        else if (id == 6) h->rep_len = x;
      }
    } else if (tc_skip(r, t)) {
      return -1;
    }
  }
  tc_leave(r);
  return rc;
}

int pq_read_page_header(tc_reader *r, page_header *h) {
  memset(h, 0, sizeof *h);
  h->type = -1;
  h->unc = h->comp = -1;
  h->is_compressed = 1;
  int16_t last = 0, id;
  int t, rc;
  int64_t v;
  while ((rc = tc_field(r, &last, &id, &t)) == 1) {
    int is_int = t == TC_I32 || t == TC_I16 || t == TC_I64 || t == TC_BYTE;
    if (is_int && id >= 1 && id <= 3) {
      if (tc_int(r, t, &v)) return -1;
      if (v < 0 || v > INT32_MAX) return tc_fail(r, "a page size out of range");
      if (id == 1) h->type = (int32_t)v;
      else if (id == 2) h->unc = (int32_t)v;
      else h->comp = (int32_t)v;
    } else if (t == TC_STRUCT && (id == 5 || id == 7 || id == 8)) {
      int kind = id == 5 ? DATA_PAGE : id == 7 ? DICTIONARY_PAGE : DATA_PAGE_V2;
      if (read_sub_header(r, h, kind)) return -1;
      if (id == 5) h->has_data = 1;
      else if (id == 7) h->has_dict = 1;
      else h->has_v2 = 1;
    } else if (tc_skip(r, t)) {
      return -1;
    }
  }
  if (rc < 0) return -1;
  if (h->type < 0 || h->unc < 0 || h->comp < 0) return tc_fail(r, "a page header without its type or sizes");
  return 0;
}

/* The Parquet reader's internal types (runtime/parquet.c reads column
   chunks and pages; runtime/parquet_meta.c parses the Thrift structures
   they are described by: the footer's FileMetaData and each PageHeader). */
#ifndef TIDE_PARQUET_META_H
#define TIDE_PARQUET_META_H
#include "tide.h"
#include "thrift_compact.h"

#define PQ_MAX_FOOTER ((int64_t)1 << 30)

enum { REQUIRED = 0, OPTIONAL = 1, REPEATED = 2 };
enum { DATA_PAGE = 0, INDEX_PAGE = 1, DICTIONARY_PAGE = 2, DATA_PAGE_V2 = 3 };
enum { ENC_PLAIN = 0, ENC_PLAIN_DICTIONARY = 2, ENC_RLE = 3, ENC_BIT_PACKED = 4, ENC_RLE_DICTIONARY = 8 };

typedef struct leaf {
  char *path;           /* dotted path from the root */
  int32_t type, repetition, max_def, max_rep, field, nested;
} leaf;

typedef struct field {
  char *name;
  int32_t type;         /* TIDE_PQ_*, TIDE_PQ_GROUP for a group */
  int32_t leaf;         /* its first leaf */
  int32_t nleaves;
  int32_t repetition;
  int32_t converted;
} field;

typedef struct chunk {
  int32_t type, codec, has_path;
  int64_t num_values, data_off, dict_off, comp_size;
} chunk;

typedef struct row_group {
  int64_t num_rows;
  chunk *chunks;        /* one per leaf */
} row_group;

/* A column's decoded row group: its arrays and the page buffers they point into. */
typedef struct col_out {
  uint8_t *valid;
  const char **ptrs;
  int32_t *lens;
  uint8_t *values;
  int64_t rows, cap, nulls;
  uint8_t **bufs;
  int32_t nbufs, capbufs;
  /* the chunk's dictionary */
  int64_t dict_n;
  const char **dict_ptrs;
  int32_t *dict_lens;
  uint8_t *dict_values;
  /* reading page by page (tide_parquet_start, tide_parquet_next) */
  struct page_ref *pages;
  int64_t npages, next, rows_total, rows_done;
  int32_t rg;
  uint8_t *page_buf;
  int64_t page_cap;
} col_out;

struct tide_parquet {
  char *path;
  int fd;
  int64_t size, footer_start, num_rows;
  int32_t nleaves, nfields, nrg;
  leaf *leaves;
  field *fields;
  row_group *rgs;
  col_out *outs;        /* one per field */
  uint32_t *scratch;    /* dictionary indices of a page */
  int64_t scratch_cap;
};

typedef struct page_header {
  int32_t type, unc, comp;
  int32_t num_values, encoding, def_encoding, num_nulls, def_len, rep_len, is_compressed;
  int has_data, has_dict, has_v2;
} page_header;

/* Parses the footer's FileMetaData (len bytes at buf, from file offset base)
   into p's schema (leaves, top-level fields) and row groups; -1 with
   "byte N: ..." set. */
int pq_read_footer(tide_parquet *p, const uint8_t *buf, int64_t len, int64_t base);
/* Parses a PageHeader at the reader's position. */
int pq_read_page_header(tc_reader *r, page_header *h);

#endif

/* A reader of Apache Thrift's compact protocol over a byte range in memory:
   what Parquet's footer (FileMetaData) and page headers are written in.
   Every read is bounds-checked; a failure records "byte N: ..." (N counted
   from base, the range's offset in its file) with tide_fail and returns -1,
   and the reader stays failed. Nesting is limited so a crafted input cannot
   exhaust the stack. */
#ifndef TIDE_THRIFT_COMPACT_H
#define TIDE_THRIFT_COMPACT_H
#include <stdint.h>

/* The compact protocol's element types (a field header's low nibble). */
enum {
  TC_STOP = 0, TC_TRUE = 1, TC_FALSE = 2, TC_BYTE = 3, TC_I16 = 4, TC_I32 = 5, TC_I64 = 6,
  TC_DOUBLE = 7, TC_BINARY = 8, TC_LIST = 9, TC_SET = 10, TC_MAP = 11, TC_STRUCT = 12
};

#define TC_MAX_DEPTH 64

typedef struct tc_reader {
  const uint8_t *start, *p, *end;
  int64_t base;   /* file offset of start, for messages */
  int depth;      /* structs and containers open */
  int failed;
} tc_reader;

/* A reader over [data, data + len), whose first byte is at file offset base. */
void tc_init(tc_reader *r, const void *data, int64_t len, int64_t base);
/* Records "byte N: what" for the reader's position and returns -1. */
int tc_fail(tc_reader *r, const char *what);
/* An unsigned LEB128 varint of at most 10 bytes. */
int tc_varint(tc_reader *r, uint64_t *v);
/* Zigzag-encoded integers; i32 also checks the range. */
int tc_i64(tc_reader *r, int64_t *v);
int tc_i32(tc_reader *r, int32_t *v);
/* A binary/string: a varint length, then that many bytes (pointed to, not copied). */
int tc_binary(tc_reader *r, const uint8_t **s, int64_t *len);
/* The next field header of the struct being read: 1 with its id and type,
   0 at the struct's STOP; *last is the previous field id (start with 0). */
int tc_field(tc_reader *r, int16_t *last, int16_t *id, int *type);
/* A list or set header: element type and count (checked against the bytes left, each element taking at least one byte). */
int tc_list(tc_reader *r, int *elem_type, int64_t *n);
/* Skips a value of the given type (structs and containers whole). */
int tc_skip(tc_reader *r, int type);
/* Enter and leave a nested struct or container (depth check). */
int tc_enter(tc_reader *r);
void tc_leave(tc_reader *r);
/* A field's value as an integer whatever its integer type (I8/I16/I32/I64, or TRUE/FALSE as 1/0). */
int tc_int(tc_reader *r, int type, int64_t *v);

#endif

/* Thrift compact protocol reader (see thrift_compact.h). The format, as
   Thrift's specification of the compact protocol gives it:
   - integers are zigzag-encoded unsigned LEB128 varints;
   - a struct is a run of field headers and values ended by a 0 byte; a
     header byte holds the id delta from the previous field (high nibble,
     0 = the id follows as a zigzag varint) and the type (low nibble);
     booleans that are fields live in the type itself (1 true, 2 false);
   - binary: varint length then the bytes; double: 8 bytes little-endian;
   - list/set: a byte with the count (high nibble, 15 = a varint count
     follows) and the element type; booleans in containers take one byte;
   - map: a varint count, then (when not empty) a byte of key and value types. */
#include "thrift_compact.h"
#include "error.h"
#include <stdio.h>

void tc_init(tc_reader *r, const void *data, int64_t len, int64_t base) {
  r->start = r->p = (const uint8_t *)data;
  r->end = r->start + len;
  r->base = base;
  r->depth = 0;
  r->failed = 0;
}

int tc_fail(tc_reader *r, const char *what) {
  if (!r->failed) tide_fail("byte %lld: %s", (long long)(r->base + (r->p - r->start)), what);
  r->failed = 1;
  return -1;
}

int tc_varint(tc_reader *r, uint64_t *v) {
  uint64_t x = 0;
  for (int shift = 0; shift < 70; shift += 7) {
    if (r->p >= r->end) return tc_fail(r, "the metadata ends inside a number");
    uint8_t b = *r->p++;
    if (shift == 63 && b > 1) return tc_fail(r, "a number longer than 64 bits");
    x |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) { *v = x; return 0; }
  }
  return tc_fail(r, "a number longer than 64 bits");
}

int tc_i64(tc_reader *r, int64_t *v) {
  uint64_t u;
  if (tc_varint(r, &u)) return -1;
  *v = (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
  return 0;
}

int tc_i32(tc_reader *r, int32_t *v) {
  int64_t x;
  if (tc_i64(r, &x)) return -1;
  if (x < INT32_MIN || x > INT32_MAX) return tc_fail(r, "a 32-bit integer out of range");
  *v = (int32_t)x;
  return 0;
}

int tc_int(tc_reader *r, int type, int64_t *v) {
  switch (type) {
    case TC_TRUE: *v = 1; return 0;
    case TC_FALSE: *v = 0; return 0;
    case TC_BYTE:
      if (r->p >= r->end) return tc_fail(r, "the metadata ends inside a byte");
      *v = (int8_t)*r->p++;
      return 0;
    case TC_I16: case TC_I32: case TC_I64: return tc_i64(r, v);
    default: return tc_fail(r, "an integer field of a non-integer type");
  }
}

int tc_binary(tc_reader *r, const uint8_t **s, int64_t *len) {
  uint64_t n;
  if (tc_varint(r, &n)) return -1;
  if (n > (uint64_t)(r->end - r->p)) return tc_fail(r, "a string longer than the metadata left");
  *s = r->p;
  *len = (int64_t)n;
  r->p += n;
  return 0;
}

int tc_enter(tc_reader *r) {
  if (r->depth >= TC_MAX_DEPTH) return tc_fail(r, "structures nested too deeply");
  r->depth++;
  return 0;
}

void tc_leave(tc_reader *r) { r->depth--; }

int tc_field(tc_reader *r, int16_t *last, int16_t *id, int *type) {
  if (r->p >= r->end) return tc_fail(r, "the metadata ends inside a structure");
  uint8_t b = *r->p++;
  if (b == 0) return 0;
  int t = b & 0x0f, delta = b >> 4;
  if (t > TC_STRUCT) return tc_fail(r, "an unknown field type");
  if (delta) {
    *id = (int16_t)(*last + delta);
  } else {
    int64_t v;
    if (tc_i64(r, &v)) return -1;
    if (v < INT16_MIN || v > INT16_MAX) return tc_fail(r, "a field id out of range");
    *id = (int16_t)v;
  }
  *last = *id;
  *type = t;
  return 1;
}

int tc_list(tc_reader *r, int *elem_type, int64_t *n) {
  if (r->p >= r->end) return tc_fail(r, "the metadata ends inside a list");
  uint8_t b = *r->p++;
  *elem_type = b & 0x0f;
  if (*elem_type > TC_STRUCT || *elem_type == TC_STOP) return tc_fail(r, "a list of an unknown type");
  uint64_t count = b >> 4;
  if (count == 15 && tc_varint(r, &count)) return -1;
  /* every element takes a byte at least: a count beyond the bytes left is corrupt */
  if (count > (uint64_t)(r->end - r->p)) return tc_fail(r, "a list longer than the metadata left");
  *n = (int64_t)count;
  return 0;
}

static int skip_value(tc_reader *r, int type, int in_container);

static int skip_struct(tc_reader *r) {
  if (tc_enter(r)) return -1;
  int16_t last = 0, id;
  int t, rc;
  while ((rc = tc_field(r, &last, &id, &t)) == 1)
    if (skip_value(r, t, 0)) return -1;
  tc_leave(r);
  return rc;
}

static int skip_value(tc_reader *r, int type, int in_container) {
  int64_t len;
  const uint8_t *s;
  switch (type) {
    case TC_TRUE: case TC_FALSE:
      if (!in_container) return 0;
      __attribute__((fallthrough));  /* a byte in containers */
    case TC_BYTE:
      if (r->p >= r->end) return tc_fail(r, "the metadata ends inside a byte");
      r->p++;
      return 0;
    case TC_I16: case TC_I32: case TC_I64: {
      uint64_t v;
      return tc_varint(r, &v);
    }
    case TC_DOUBLE:
      if (r->end - r->p < 8) return tc_fail(r, "the metadata ends inside a double");
      r->p += 8;
      return 0;
    case TC_BINARY: return tc_binary(r, &s, &len);
    case TC_LIST: case TC_SET: {
      int et;
      int64_t n;
      if (tc_list(r, &et, &n) || tc_enter(r)) return -1;
      for (int64_t i = 0; i < n; i++)
        if (skip_value(r, et, 1)) return -1;
      tc_leave(r);
      return 0;
    }
    case TC_MAP: {
      uint64_t n;
      if (tc_varint(r, &n)) return -1;
      if (n == 0) return 0;
      if (n > (uint64_t)(r->end - r->p) / 2) return tc_fail(r, "a map longer than the metadata left");
      if (r->p >= r->end) return tc_fail(r, "the metadata ends inside a map");
      uint8_t kv = *r->p++;
      int kt = kv >> 4, vt = kv & 0x0f;
      if (kt == TC_STOP || kt > TC_STRUCT || vt == TC_STOP || vt > TC_STRUCT) return tc_fail(r, "a map of an unknown type");
      if (tc_enter(r)) return -1;
      for (uint64_t i = 0; i < n; i++)
        if (skip_value(r, kt, 1) || skip_value(r, vt, 1)) return -1;
      tc_leave(r);
      return 0;
    }
    case TC_STRUCT: return skip_struct(r);
    default: return tc_fail(r, "a value of an unknown type");
  }
}

int tc_skip(tc_reader *r, int type) { return skip_value(r, type, 0); }

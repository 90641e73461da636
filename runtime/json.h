/* JSON documents (RFC 8259) parsed into one flat array of nodes: the engine's
   internal face of the parser behind tide_json_* (safetensors headers,
   tokenizer.json, config.json).

   The rules, beyond the RFC's grammar:
   - Strings are bytes. Escapes are decoded (\uXXXX to UTF-8, surrogate pairs
     joined); a lone surrogate escape is an error, as in serde_json (which
     Hugging Face's tokenizers use). Raw bytes that are not valid UTF-8 are
     kept as they are. Raw control characters (< 0x20) are an error.
   - Numbers are doubles, correctly rounded. Integer literals that fit an
     int64 are also kept exactly (json_int64); above 2^53 the double alone
     would lose digits. A number beyond the double range (1e400) is an error,
     since JSON has no infinity; underflow gives 0 or a subnormal.
   - Nesting deeper than TIDE_JSON_MAX_DEPTH is an error naming the limit.
   - A UTF-8 byte order mark at the start is skipped (RFC 8259 allows that);
     anything after the value other than whitespace is an error.
   - Duplicate object keys are kept in order; lookup by key finds the last,
     as Python's json.loads does, and json_dup_member reports them.
   Errors read "json: line L, column C: ..." (column in bytes, both 1-based)
   and say what was expected.

   Memory: nodes are 32 bytes each, plus one copy of the decoded strings
   (never more than the input's length) and, for objects of 8 members or more,
   a hash index of 16 bytes per member, so a lookup in a 50k-member vocab is
   O(1). */
#ifndef TIDE_JSON_H
#define TIDE_JSON_H
#include "tide.h"
#include <stddef.h>

#define TIDE_JSON_MAX_DEPTH 512

/* The length of key (a C string); a convenience for json_find. */
size_t tide_json_strlen(const char *key);

/* The value node of the member of object node obj whose key is the keylen
   bytes at key (the last one if repeated), or -1 when absent or obj is not
   an object. */
int64_t tide_json_find(const tide_json *doc, int64_t obj, const char *key, size_t keylen);

/* tide_json_find with a NUL-terminated key. */
int64_t tide_json_get(const tide_json *doc, int64_t obj, const char *key);

/* The index of the first member of object obj whose key repeats an earlier
   member's key, or -1 when all keys are distinct (or obj is not an object). */
int64_t tide_json_dup_member(const tide_json *doc, int64_t obj);

/* 1 and *out set when node is a number literal written as an integer (no
   fraction or exponent) that fits an int64 exactly; 0 otherwise. */
int tide_json_int64(const tide_json *doc, int64_t node, int64_t *out);

/* Appends the JSON string literal for n bytes at s (quotes included) to the
   growable buffer *buf (length *len, capacity *cap); control characters,
   '"' and '\\' are escaped and other bytes copied. -1 on out of memory. */
int tide_json_quote(char **buf, size_t *len, size_t *cap, const char *s, size_t n);

#endif

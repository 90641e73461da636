/* Per-thread error message behind tide_last_error(). */
#ifndef TIDE_ERROR_H
#define TIDE_ERROR_H
#include "tide.h"

/* Records a printf-style message for tide_last_error() and returns -1. */
int tide_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Writes "[2, 3]" for a shape into buf (size cap); returns buf. */
char *tide_shape_str(char *buf, size_t cap, int32_t ndim, const int64_t *shape);

/* Evaluates a call returning a status and returns -1 from the caller on failure. */
#define TIDE_TRY(call) do { if ((call) != 0) return -1; } while (0)

#endif

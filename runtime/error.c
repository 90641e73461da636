#include "error.h"
#include <string.h>
#include <stdarg.h>
#include <stdio.h>

/* One message per thread so kernels on worker threads and several Lua states
   never read each other's errors. */
static _Thread_local char last_error[1024];

int tide_fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  return -1;
}

const char *tide_last_error(void) { return last_error[0] ? last_error : "unknown error"; }

int tide_last_error_is_oom(void) { return strstr(last_error, "out of device memory") != NULL; }

char *tide_shape_str(char *buf, size_t cap, int32_t ndim, const int64_t *shape) {
  size_t n = 0;
  n += (size_t)snprintf(buf + n, cap - n, "[");
  for (int32_t i = 0; i < ndim && n < cap; i++)
    n += (size_t)snprintf(buf + n, cap - n, i ? ", %lld" : "%lld", (long long)shape[i]);
  if (n < cap) snprintf(buf + n, cap - n, "]");
  return buf;
}

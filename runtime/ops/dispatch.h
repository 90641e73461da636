/* The op layer's dispatch: which backend runs an op, given its operands'
   device. Every public tide_* op checks its operands, agrees their device
   (tide_op_device), allocates its result there (tide_new_on) and calls the
   backend's kernel, failing cleanly when the backend lacks it. */
#ifndef TIDE_OPS_DISPATCH_H
#define TIDE_OPS_DISPATCH_H
#include "tensor.h"
#include "backend.h"

/* The backend for device (-1: CPU, n >= 0: cuda:n); NULL with an error naming op when none is built or present. */
const tide_backend *tide_backend_for(int32_t device, const char *op);
/* Checks the n tensors (NULL entries skipped) are valid and on one device, written to *device;
   an error names op and both devices when they differ. */
int tide_op_device(const char *op, int32_t n, const tide_tensor *const *ts, int32_t *device);
/* Sets "op OP is not implemented on NAME" and returns -1. */
int tide_not_implemented(const char *op, const tide_backend *be);
/* The backend for the operands' device with family fam present, or NULL with the error set:
   e.g. `const tide_backend *be = tide_op_backend("add", 2, ts, &dev); if (!be || !be->binary) ...`
   is written TIDE_OP_BACKEND(be, dev, binary, "add", 2, ts). */
#define TIDE_OP_BACKEND(be, dev, fam, op, n, ts)                                                  \
  do {                                                                                            \
    if (tide_op_device((op), (n), (ts), &(dev)) != 0) return -1;                                  \
    if (!((be) = tide_backend_for((dev), (op)))) return -1;                                       \
    if (!(be)->fam) return tide_not_implemented((op), (be));                                      \
  } while (0)

#endif

#include "dispatch.h"
#include "device.h"
#include "cuda_rt.h"

const tide_backend *tide_backend_for(int32_t device, const char *op) {
  if (device == TIDE_CPU) return &tide_cpu_backend;
  /* checks the device exists and makes it current for the kernels that follow */
  if (tide_device_use(device, op) != 0) return NULL;
  tide_cuda_note_op(op);
  return tide_cuda_backend_get();
}

int tide_op_device(const char *op, int32_t n, const tide_tensor *const *ts, int32_t *device) {
  int32_t first = -2;
  for (int32_t i = 0; i < n; i++) {
    if (!ts[i]) continue;
    if (tide_check_handle(ts[i], op) != 0) return -1;
    if (first == -2) {
      first = i;
    } else if (ts[i]->device != ts[first]->device) {
      char a[32], b[32];
      tide_device_name(ts[first]->device, a, sizeof a);
      tide_device_name(ts[i]->device, b, sizeof b);
      return tide_fail("%s: expected all tensors on one device, got operand %d on %s and operand %d on %s", op,
                       first + 1, a, i + 1, b);
    }
  }
  *device = first == -2 ? TIDE_CPU : ts[first]->device;
  return 0;
}

int tide_not_implemented(const char *op, const tide_backend *be) {
  return tide_fail("op %s is not implemented on %s", op, be->name);
}

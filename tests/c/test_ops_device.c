/* Devices at the op layer, before any non-CPU backend exists: creation on a
   device without an allocator fails naming it, and the converted copy and
   fill ops refuse a tensor on cuda:0 (mixed with a CPU one: naming both) and
   never touch its memory. The "cuda:0" tensor is a CPU tensor whose device
   fields are rewritten and whose data points at an inaccessible page, so a
   dereference would crash the test instead of passing silently. */
#include "tensor.h"
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

static int failures;

#define CHECK(cond) do { if (!(cond)) { printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); failures++; } } while (0)
#define CHECK_ERR(call, text) do { int rc_ = (call); CHECK(rc_ == -1); \
  if (!strstr(tide_last_error(), text)) { printf("FAIL %s:%d: error \"%s\" lacks \"%s\"\n", __FILE__, __LINE__, tide_last_error(), text); failures++; } } while (0)

/* where no GPU is present (CI): a CUDA build finds no device, a build without CUDA has no backend */
static const char *no_alloc = "device cuda:0 is not available";

static void test_creation_on_a_device(void) {
  int64_t shape[2] = {2, 3};
  tide_tensor *t = NULL, *c = NULL;
  CHECK_ERR(tide_empty(TIDE_F32, 2, shape, 0, &t), no_alloc);
  CHECK_ERR(tide_full(TIDE_F32, 2, shape, 1.0, 0, &t), no_alloc);
  CHECK_ERR(tide_arange(0, 1, 4, TIDE_I64, 0, &t), no_alloc);
  CHECK_ERR(tide_empty(TIDE_F32, 2, shape, 3, &t), "device cuda:3 is not available");
  CHECK_ERR(tide_empty(TIDE_F32, 2, shape, -2, &t), "empty: invalid device code -2");
  CHECK(t == NULL);
  /* to: the same device is the tensor itself; another allocates there first */
  CHECK(tide_full(TIDE_F32, 2, shape, 2.0, TIDE_CPU, &c) == 0 && c->device == TIDE_CPU);
  CHECK(tide_to_device(c, TIDE_CPU, &t) == 0 && t == c && c->refcount == 2);
  tide_tensor_release(t);
  CHECK_ERR(tide_to_device(c, 0, &t), no_alloc);
  tide_tensor_release(c);
}

static void test_ops_refuse_another_device(void) {
  int64_t shape[2] = {2, 3};
  tide_tensor *cpu = NULL, *dev = NULL, *t = NULL;
  CHECK(tide_full(TIDE_F32, 2, shape, 1.0, TIDE_CPU, &cpu) == 0);
  CHECK(tide_full(TIDE_F32, 2, shape, 1.0, TIDE_CPU, &dev) == 0);
  if (!cpu || !dev) return;
  long page = 4096;
  char *guard = mmap(NULL, (size_t)page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(guard != MAP_FAILED);
  if (guard == MAP_FAILED) return;
  char *real = dev->storage->data;
  dev->storage->data = dev->data = guard;
  dev->storage->device = dev->device = 0;

  CHECK_ERR(tide_copy_(cpu, dev), "copy_: expected all tensors on one device, got operand 1 on cpu and operand 2 on cuda:0");
  CHECK_ERR(tide_copy_(dev, cpu), "copy_: expected all tensors on one device, got operand 1 on cuda:0 and operand 2 on cpu");
  CHECK_ERR(tide_copy_(dev, dev), "copy_: device cuda:0 is not available");
  CHECK_ERR(tide_cast(dev, TIDE_F64, &t), "cast: device cuda:0 is not available");
  CHECK_ERR(tide_fill_(dev, 3.0), "fill_: device cuda:0 is not available");
  CHECK_ERR(tide_to_device(dev, TIDE_CPU, &t), "to: device cuda:0 is not available");
  /* every family under the op layer: mixed devices named, a lone device without a backend refused */
  CHECK_ERR(tide_unary(TIDE_NEG, dev, &t), "neg: device cuda:0 is not available");
  CHECK_ERR(tide_binary(TIDE_ADD, cpu, dev, &t), "expected all tensors on one device, got operand 1 on cpu and operand 2 on cuda:0");
  CHECK_ERR(tide_binary(TIDE_ADD, dev, dev, &t), "device cuda:0 is not available");
  CHECK_ERR(tide_binary_scalar(TIDE_MUL, dev, 2.0, 0, &t), "device cuda:0 is not available");
  CHECK_ERR(tide_reduce(TIDE_SUM, dev, -1, 0, &t, NULL), "device cuda:0 is not available");
  /* views are geometry: they work on any device and stay there */
  CHECK(tide_transpose(dev, 0, 1, &t) == 0 && t->device == 0 && t->storage == dev->storage);
  tide_tensor *r = NULL;
  int64_t flat[1] = {6};
  CHECK_ERR(tide_reshape(t, 1, flat, &r), no_alloc);  /* needs a copy, made on its device */
  tide_tensor_release(t);
  CHECK(tide_reshape(dev, 1, flat, &r) == 0 && r->device == 0);  /* a view */
  tide_tensor_release(r);

  dev->storage->data = dev->data = real;
  dev->storage->device = dev->device = TIDE_CPU;
  munmap(guard, (size_t)page);
  tide_tensor_release(dev);
  tide_tensor_release(cpu);
}

int main(void) {
  if (tide_cuda_device_count() > 0) {
    /* on a GPU these devices exist (tests/lua/cuda covers them there) */
    printf("skipped: a CUDA device is present\n");
    return 77;
  }
  test_creation_on_a_device();
  test_ops_refuse_another_device();
  printf("%s: %d failures\n", __FILE__, failures);
  return failures ? 1 : 0;
}

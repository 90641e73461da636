/* The NCCL backend of tide.dist (libtide_nccl.so): NCCL's collectives on
   device buffers of the current CUDA device, behind the table of
   runtime/dist_backend.h. tide loads it on the first tide.dist.init that
   uses CUDA tensors (runtime/dist.c), so NCCL is mapped only into those runs.

   Calls go on the legacy default stream, the stream tide's kernels use
   (kernels/cuda/common.cuh), so a collective is ordered after the kernels
   that wrote its input and before those that read its output. Each call then
   waits for its completion while polling ncclCommGetAsyncError, so a failed
   peer surfaces as an error here (the communicator is then aborted and
   every later call fails) instead of a kernel that never finishes. */
#include "../dist_backend.h"
#include "../tide_api.h"
#include <cuda_runtime.h>
#include <nccl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static ncclComm_t comm;      /* this library's one communicator, as the process has one job */
static int aborted;
static void *scratch;        /* 4 device bytes for barrier */

static int nccl_fail(ncclResult_t rc, const char *what, char *err, size_t cap) {
  const char *last = comm ? ncclGetLastError(comm) : "";
  snprintf(err, cap, "%s failed: %s%s%s", what, ncclGetErrorString(rc), last && last[0] ? ": " : "", last ? last : "");
  return -1;
}

static int cuda_fail(cudaError_t e, const char *what, char *err, size_t cap) {
  snprintf(err, cap, "%s failed: %s", what, cudaGetErrorString(e));
  return -1;
}

static int not_joined(char *err, size_t cap) {
  snprintf(err, cap, aborted ? "the NCCL communicator was aborted after an earlier error"
                             : "the NCCL backend is not initialised");
  return -1;
}

/* Waits for the stream, failing (and aborting the communicator) on NCCL's asynchronous error. */
static int wait_done(const char *what, char *err, size_t cap) {
  struct timespec nap = { 0, 20000 };
  for (;;) {
    cudaError_t e = cudaStreamQuery(0);
    if (e == cudaSuccess) return 0;
    if (e != cudaErrorNotReady) return cuda_fail(e, what, err, cap);
    ncclResult_t async = ncclSuccess;
    ncclCommGetAsyncError(comm, &async);
    if (async != ncclSuccess && async != ncclInProgress) {
      nccl_fail(async, what, err, cap);
      ncclCommAbort(comm);
      comm = NULL;
      aborted = 1;
      return -1;
    }
    nanosleep(&nap, NULL);
  }
}

static int nccl_make_id(void *id, char *err, size_t cap) {
  ncclUniqueId u;
  ncclResult_t rc = ncclGetUniqueId(&u);
  if (rc != ncclSuccess) return nccl_fail(rc, "ncclGetUniqueId", err, cap);
  memcpy(id, &u, sizeof u);
  return 0;
}

static int nccl_init(const void *id, int32_t rank, int32_t world, int32_t device, int32_t *rank_out,
                     int32_t *world_out, char *err, size_t cap) {
  if (comm) { snprintf(err, cap, "NCCL is already initialised"); return -1; }
  cudaError_t e = cudaSetDevice(device);
  if (e != cudaSuccess) return cuda_fail(e, "cudaSetDevice", err, cap);
  ncclUniqueId u;
  memcpy(&u, id, sizeof u);
  ncclResult_t rc = ncclCommInitRank(&comm, world, u, rank);
  if (rc != ncclSuccess) {
    comm = NULL;
    return nccl_fail(rc, "ncclCommInitRank", err, cap);
  }
  e = cudaMalloc(&scratch, 4);
  if (e != cudaSuccess) return cuda_fail(e, "cudaMalloc (4 bytes for barrier)", err, cap);
  aborted = 0;
  int r = 0, n = 0;
  ncclCommUserRank(comm, &r);
  ncclCommCount(comm, &n);
  *rank_out = r;
  *world_out = n;
  return 0;
}

static int nccl_type(int32_t dtype, ncclDataType_t *t, char *err, size_t cap) {
  switch (dtype) {
    case TIDE_F32: *t = ncclFloat32; return 0;
    case TIDE_F64: *t = ncclFloat64; return 0;
    case TIDE_BF16: *t = ncclBfloat16; return 0;
    case TIDE_F16: *t = ncclFloat16; return 0;
    case TIDE_I32: *t = ncclInt32; return 0;
    case TIDE_I64: *t = ncclInt64; return 0;
    case TIDE_U8: case TIDE_BOOL: *t = ncclUint8; return 0;
    default: snprintf(err, cap, "NCCL has no type for dtype code %d", (int)dtype); return -1;
  }
}

static int nccl_op(int32_t dtype, int32_t op, ncclRedOp_t *o, char *err, size_t cap) {
  if (dtype == TIDE_BOOL) {  /* bools stay 0/1: sum and max are "any", min "all" */
    if (op == TIDE_SUM || op == TIDE_MAX) { *o = ncclMax; return 0; }
    if (op == TIDE_MIN) { *o = ncclMin; return 0; }
  } else {
    if (op == TIDE_SUM) { *o = ncclSum; return 0; }
    if (op == TIDE_MAX) { *o = ncclMax; return 0; }
    if (op == TIDE_MIN) { *o = ncclMin; return 0; }
  }
  snprintf(err, cap, "reduce op code %d is not sum, max or min", (int)op);
  return -1;
}

static int nccl_all_reduce(void *buf, int64_t count, int32_t dtype, int32_t op, char *err, size_t cap) {
  if (!comm) return not_joined(err, cap);
  ncclDataType_t t;
  ncclRedOp_t o;
  if (nccl_type(dtype, &t, err, cap) || nccl_op(dtype, op, &o, err, cap)) return -1;
  ncclResult_t rc = ncclAllReduce(buf, buf, (size_t)count, t, o, comm, 0);
  if (rc != ncclSuccess) return nccl_fail(rc, "ncclAllReduce", err, cap);
  return wait_done("ncclAllReduce", err, cap);
}

static int nccl_broadcast(void *buf, int64_t nbytes, int32_t root, char *err, size_t cap) {
  if (!comm) return not_joined(err, cap);
  ncclResult_t rc = ncclBroadcast(buf, buf, (size_t)nbytes, ncclUint8, root, comm, 0);
  if (rc != ncclSuccess) return nccl_fail(rc, "ncclBroadcast", err, cap);
  return wait_done("ncclBroadcast", err, cap);
}

static int nccl_all_gather(const void *in, void *out, int64_t nbytes, char *err, size_t cap) {
  if (!comm) return not_joined(err, cap);
  ncclResult_t rc = ncclAllGather(in, out, (size_t)nbytes, ncclUint8, comm, 0);
  if (rc != ncclSuccess) return nccl_fail(rc, "ncclAllGather", err, cap);
  return wait_done("ncclAllGather", err, cap);
}

static int nccl_reduce_scatter(const void *in, void *out, int64_t count, int32_t dtype, int32_t op, char *err, size_t cap) {
  if (!comm) return not_joined(err, cap);
  ncclDataType_t t;
  ncclRedOp_t o;
  if (nccl_type(dtype, &t, err, cap) || nccl_op(dtype, op, &o, err, cap)) return -1;
  ncclResult_t rc = ncclReduceScatter(in, out, (size_t)count, t, o, comm, 0);
  if (rc != ncclSuccess) return nccl_fail(rc, "ncclReduceScatter", err, cap);
  return wait_done("ncclReduceScatter", err, cap);
}

static int nccl_barrier(char *err, size_t cap) {
  if (!comm) return not_joined(err, cap);
  ncclResult_t rc = ncclAllReduce(scratch, scratch, 1, ncclInt32, ncclSum, comm, 0);
  if (rc != ncclSuccess) return nccl_fail(rc, "ncclAllReduce (barrier)", err, cap);
  return wait_done("ncclAllReduce (barrier)", err, cap);
}

static int nccl_finalize(char *err, size_t cap) {
  if (scratch) cudaFree(scratch);
  scratch = NULL;
  if (!comm) return 0;
  ncclResult_t rc = ncclCommDestroy(comm);
  comm = NULL;
  return rc == ncclSuccess ? 0 : nccl_fail(rc, "ncclCommDestroy", err, cap);
}

static void nccl_abort_job(int code) {
  (void)code;
  if (comm) ncclCommAbort(comm);
  comm = NULL;
  aborted = 1;
}

static const tide_dist_backend table = {
  .abi = TIDE_DIST_ABI,
  .name = "nccl",
  .reduce_dtypes = (1u << TIDE_F32) | (1u << TIDE_F64) | (1u << TIDE_BF16) | (1u << TIDE_F16) | (1u << TIDE_I32) |
                   (1u << TIDE_I64) | (1u << TIDE_U8) | (1u << TIDE_BOOL),
  .init = nccl_init,
  .make_id = nccl_make_id,
  .all_reduce = nccl_all_reduce,
  .broadcast = nccl_broadcast,
  .all_gather = nccl_all_gather,
  .reduce_scatter = nccl_reduce_scatter,
  .all_to_all = NULL,  /* all_to_all_bytes exchanges host strings: always the MPI backend */
  .barrier = nccl_barrier,
  .finalize = nccl_finalize,
  .abort_job = nccl_abort_job,
};

/* The table tide's core reads (runtime/dist.c looks this symbol up after dlopen). */
__attribute__((visibility("default"))) const tide_dist_backend *tide_dist_backend_get(void) { return &table; }

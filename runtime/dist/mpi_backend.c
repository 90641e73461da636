/* The MPI backend of tide.dist (libtide_mpi.so): Open MPI's collectives on
   host buffers, behind the table of runtime/dist_backend.h. tide loads this
   file's library with dlopen on the first tide.dist.init of a world larger
   than one, so libmpi is mapped only into distributed runs.

   The communicator is a duplicate of MPI_COMM_WORLD with MPI_ERRORS_RETURN,
   so a failing call is a status here (and a Lua error above) rather than
   MPI's default abort. MPI counts are ints: all_reduce and broadcast go in
   chunks of at most 2^30 elements, so any tensor size works; the calls that
   take one count per rank refuse a per-rank size over INT_MAX by name. */
#include "../dist_backend.h"
#include "../tide_api.h"
#include <mpi.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

static MPI_Comm comm = MPI_COMM_NULL;   /* this library's one job, as MPI's own state is per process */
static int we_initialized;
static int thread_level;               /* what MPI provides (MPI_Query_thread after init) */

static int mpi_fail(int rc, const char *what, char *err, size_t cap) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "MPI error code %d", rc);
  snprintf(err, cap, "%s failed: %s", what, msg);
  return -1;
}

static int not_joined(char *err, size_t cap) {
  snprintf(err, cap, "the MPI backend is not initialised (or was finalised)");
  return -1;
}

static int mpi_init(const void *id, int32_t rank, int32_t world, int32_t device, int32_t *rank_out,
                    int32_t *world_out, char *err, size_t cap) {
  (void)id; (void)rank; (void)world; (void)device;
  int flag = 0, rc;
  MPI_Finalized(&flag);
  if (flag) { snprintf(err, cap, "MPI was already finalised in this process; it cannot be started again"); return -1; }
  MPI_Initialized(&flag);
  if (!flag) {
    int provided = 0;
    /* collectives come from one thread at a time: the Lua state's, or runtime/dist.c's communication
       thread while the Lua state waits for it (never both at once) */
    rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Init_thread", err, cap);
    we_initialized = 1;
  }
  if (comm == MPI_COMM_NULL) {
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    rc = MPI_Comm_dup(MPI_COMM_WORLD, &comm);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Comm_dup", err, cap);
    MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  }
  MPI_Query_thread(&thread_level);
  int r = 0, n = 0;
  MPI_Comm_rank(comm, &r);
  MPI_Comm_size(comm, &n);
  *rank_out = r;
  *world_out = n;
  return 0;
}

/* The MPI type and op for a tide dtype and reduce op; -1 with a message when MPI cannot reduce it. */
static int mpi_types(int32_t dtype, int32_t op, MPI_Datatype *type, MPI_Op *mop, char *err, size_t cap) {
  switch (dtype) {
    case TIDE_F32: *type = MPI_FLOAT; break;
    case TIDE_F64: *type = MPI_DOUBLE; break;
    case TIDE_I32: *type = MPI_INT32_T; break;
    case TIDE_I64: *type = MPI_INT64_T; break;
    case TIDE_U8: *type = MPI_UINT8_T; break;
    case TIDE_U16: *type = MPI_UINT16_T; break;
    case TIDE_BOOL: *type = MPI_UINT8_T; break;
    default:
      snprintf(err, cap, "MPI has no reduction for dtype code %d", (int)dtype);
      return -1;
  }
  if (dtype == TIDE_BOOL) {
    /* bools stay 0/1: a sum or max is "any", a min "all" (as torch's bool all_reduce) */
    if (op == TIDE_SUM || op == TIDE_MAX) *mop = MPI_BOR;
    else if (op == TIDE_MIN) *mop = MPI_BAND;
    else { snprintf(err, cap, "bool tensors reduce with sum, max or min only"); return -1; }
    return 0;
  }
  switch (op) {
    case TIDE_SUM: *mop = MPI_SUM; break;
    case TIDE_MAX: *mop = MPI_MAX; break;
    case TIDE_MIN: *mop = MPI_MIN; break;
    default: snprintf(err, cap, "reduce op code %d is not sum, max or min", (int)op); return -1;
  }
  return 0;
}

static int mpi_all_reduce(void *buf, int64_t count, int32_t dtype, int32_t op, char *err, size_t cap) {
  if (comm == MPI_COMM_NULL) return not_joined(err, cap);
  MPI_Datatype type;
  MPI_Op mop;
  if (mpi_types(dtype, op, &type, &mop, err, cap) != 0) return -1;
  int size = 0;
  MPI_Type_size(type, &size);
  const int64_t chunk = (int64_t)1 << 30;
  /* a zero-size tensor still calls MPI once, so every rank takes part in the same number of calls */
  int64_t done = 0;
  do {
    int64_t n = count - done < chunk ? count - done : chunk;
    int rc = MPI_Allreduce(MPI_IN_PLACE, (char *)buf + done * size, (int)n, type, mop, comm);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Allreduce", err, cap);
    done += n;
  } while (done < count);
  return 0;
}

static int mpi_broadcast(void *buf, int64_t nbytes, int32_t root, char *err, size_t cap) {
  if (comm == MPI_COMM_NULL) return not_joined(err, cap);
  const int64_t chunk = (int64_t)1 << 30;
  int64_t done = 0;
  do {
    int64_t n = nbytes - done < chunk ? nbytes - done : chunk;
    int rc = MPI_Bcast((char *)buf + done, (int)n, MPI_BYTE, root, comm);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Bcast", err, cap);
    done += n;
  } while (done < nbytes);
  return 0;
}

static int too_big(const char *what, int64_t n, char *err, size_t cap) {
  snprintf(err, cap, "%s: %lld per rank exceeds MPI's count limit (%d); split the tensor", what, (long long)n, INT_MAX);
  return -1;
}

static int mpi_all_gather(const void *in, void *out, int64_t nbytes, char *err, size_t cap) {
  if (comm == MPI_COMM_NULL) return not_joined(err, cap);
  if (nbytes > INT_MAX) return too_big("all_gather", nbytes, err, cap);
  int rc = MPI_Allgather(in, (int)nbytes, MPI_BYTE, out, (int)nbytes, MPI_BYTE, comm);
  return rc == MPI_SUCCESS ? 0 : mpi_fail(rc, "MPI_Allgather", err, cap);
}

static int mpi_reduce_scatter(const void *in, void *out, int64_t count, int32_t dtype, int32_t op, char *err, size_t cap) {
  if (comm == MPI_COMM_NULL) return not_joined(err, cap);
  MPI_Datatype type;
  MPI_Op mop;
  if (mpi_types(dtype, op, &type, &mop, err, cap) != 0) return -1;
  if (count > INT_MAX) return too_big("reduce_scatter", count, err, cap);
  int rc = MPI_Reduce_scatter_block(in, out, (int)count, type, mop, comm);
  return rc == MPI_SUCCESS ? 0 : mpi_fail(rc, "MPI_Reduce_scatter_block", err, cap);
}

static int mpi_all_to_all(const void *send, const int64_t *send_lens, const int64_t *send_offs, void *recv,
                          const int64_t *recv_lens, const int64_t *recv_offs, char *err, size_t cap) {
  if (comm == MPI_COMM_NULL) return not_joined(err, cap);
  int n = 0;
  MPI_Comm_size(comm, &n);
  int *buf = malloc(sizeof(int) * 4 * (size_t)n);
  if (!buf) { snprintf(err, cap, "all_to_all: out of memory for %d ranks' counts", n); return -1; }
  int *sc = buf, *sd = buf + n, *rcn = buf + 2 * n, *rd = buf + 3 * n;
  int status = 0;
  for (int r = 0; r < n; r++) {
    /* Alltoallv takes int counts and displacements */
    if (send_offs[r] + send_lens[r] > INT_MAX || recv_offs[r] + recv_lens[r] > INT_MAX) {
      status = too_big("all_to_all_bytes (all the bytes of one rank)",
                       send_offs[r] + send_lens[r] > INT_MAX ? send_offs[r] + send_lens[r] : recv_offs[r] + recv_lens[r],
                       err, cap);
      break;
    }
    sc[r] = (int)send_lens[r]; sd[r] = (int)send_offs[r];
    rcn[r] = (int)recv_lens[r]; rd[r] = (int)recv_offs[r];
  }
  if (status == 0) {
    int rc = MPI_Alltoallv(send, sc, sd, MPI_BYTE, recv, rcn, rd, MPI_BYTE, comm);
    if (rc != MPI_SUCCESS) status = mpi_fail(rc, "MPI_Alltoallv", err, cap);
  }
  free(buf);
  return status;
}

static int mpi_barrier(char *err, size_t cap) {
  if (comm == MPI_COMM_NULL) return not_joined(err, cap);
  int rc = MPI_Barrier(comm);
  return rc == MPI_SUCCESS ? 0 : mpi_fail(rc, "MPI_Barrier", err, cap);
}

static int mpi_finalize(char *err, size_t cap) {
  if (comm != MPI_COMM_NULL) MPI_Comm_free(&comm);
  comm = MPI_COMM_NULL;
  int flag = 0;
  MPI_Finalized(&flag);
  if (we_initialized && !flag) {
    int rc = MPI_Finalize();
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Finalize", err, cap);
  }
  return 0;
}

static void mpi_abort_job(int code) {
  MPI_Abort(MPI_COMM_WORLD, code);
}

static int mpi_threads_ok(void) { return thread_level >= MPI_THREAD_SERIALIZED; }

static const tide_dist_backend table = {
  .abi = TIDE_DIST_ABI,
  .name = "mpi",
  .reduce_dtypes = (1u << TIDE_F32) | (1u << TIDE_F64) | (1u << TIDE_I32) | (1u << TIDE_I64) | (1u << TIDE_U8) |
                   (1u << TIDE_BOOL) | (1u << TIDE_U16),
  .init = mpi_init,
  .make_id = NULL,
  .all_reduce = mpi_all_reduce,
  .broadcast = mpi_broadcast,
  .all_gather = mpi_all_gather,
  .reduce_scatter = mpi_reduce_scatter,
  .all_to_all = mpi_all_to_all,
  .barrier = mpi_barrier,
  .finalize = mpi_finalize,
  .abort_job = mpi_abort_job,
  .threads_ok = mpi_threads_ok,
};

/* The table tide's core reads (runtime/dist.c looks this symbol up after dlopen). */
__attribute__((visibility("default"))) const tide_dist_backend *tide_dist_backend_get(void) { return &table; }

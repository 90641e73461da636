/* A collective backend as the core sees it: a table of entry points over raw
   buffers, filled by a plugin that tide loads with dlopen on first use
   (runtime/dist/mpi_backend.c builds libtide_mpi.so against Open MPI,
   runtime/dist/nccl_backend.c libtide_nccl.so against NCCL). The core never
   includes mpi.h or nccl.h, so a build without them still compiles, and a
   run that never calls tide.dist never loads them. A plugin exports one
   symbol, tide_dist_backend_get, returning its table.

   Every entry returns 0, or -1 with a message in err (cap bytes). Counts are
   elements of dtype (a tide_dtype code); the plugin maps dtype and op (a
   tide_reduce_op: TIDE_SUM, TIDE_MAX, TIDE_MIN; averaging is the core's
   division after a sum) to its engine's types; dtypes outside reduce_dtypes
   are converted by the core first (bf16/f16 on MPI reduce in f32, u16 on
   NCCL in i64). Buffers are host memory for MPI, device memory of the
   current device for NCCL. */
#ifndef TIDE_DIST_BACKEND_H
#define TIDE_DIST_BACKEND_H
#include <stddef.h>
#include <stdint.h>

/* The table's layout version: a plugin built for another layout is refused. */
#define TIDE_DIST_ABI 2

typedef struct tide_dist_backend {
  int32_t abi;         /* TIDE_DIST_ABI */
  const char *name;    /* "mpi", "nccl" */
  /* Bit d set: the backend reduces dtype code d itself; others go through f32 (floats) or i64 (integers). */
  uint32_t reduce_dtypes;
  /* Joins the job. opts: MPI ignores it; NCCL reads "rank world_size" and the 128-byte unique id in
     id (made by make_id on rank 0 and sent to the others by the caller). Writes this process's rank and
     the world size. */
  int (*init)(const void *id, int32_t rank, int32_t world_size, int32_t device,
              int32_t *rank_out, int32_t *world_out, char *err, size_t cap);
  /* NCCL: writes a fresh unique id (128 bytes) into id; NULL for MPI. */
  int (*make_id)(void *id, char *err, size_t cap);
  /* buf[i] = op over ranks of buf[i], in place, count elements. */
  int (*all_reduce)(void *buf, int64_t count, int32_t dtype, int32_t op, char *err, size_t cap);
  /* root's nbytes of buf to every rank. */
  int (*broadcast)(void *buf, int64_t nbytes, int32_t root, char *err, size_t cap);
  /* out (world * nbytes) = every rank's nbytes of in, in rank order. */
  int (*all_gather)(const void *in, void *out, int64_t nbytes, char *err, size_t cap);
  /* out (count elements) = op over ranks of in[rank * count .. (rank + 1) * count). */
  int (*reduce_scatter)(const void *in, void *out, int64_t count, int32_t dtype, int32_t op, char *err, size_t cap);
  /* Each rank sends send_lens[r] bytes (at send_offs[r] in send) to rank r and receives recv_lens[r] bytes
     from rank r at recv_offs[r] in recv; every rank knows its recv_lens (exchanged before by the caller). */
  int (*all_to_all)(const void *send, const int64_t *send_lens, const int64_t *send_offs,
                    void *recv, const int64_t *recv_lens, const int64_t *recv_offs, char *err, size_t cap);
  int (*barrier)(char *err, size_t cap);
  /* Leaves the job (collectives fail afterwards). */
  int (*finalize)(char *err, size_t cap);
  /* Ends every process of the job with code (MPI_Abort), after a fatal error on this rank. */
  void (*abort_job)(int code);
  /* After init: 1 when the calls above may come from a thread other than the one that called init, one
     thread at a time (MPI_THREAD_SERIALIZED provided), as the core's communication thread needs for
     all_reduce_async; NULL or 0: the core runs those at their start instead (added in ABI 2). */
  int (*threads_ok)(void);
} tide_dist_backend;

typedef const tide_dist_backend *(*tide_dist_backend_get_fn)(void);

#endif

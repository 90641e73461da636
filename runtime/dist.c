/* tide.dist's engine side: the collectives on tensors (tide_dist_* in
   tide_api.h) over a backend plugin loaded on first use (runtime/dist_backend.h).

   What the core adds to the plugin's raw-buffer calls:
   - staging: a tensor that is not a contiguous host buffer of a dtype the
     backend reduces (a strided view, a CUDA tensor without NCCL, bf16/f16 on
     MPI, reduced in f32) goes through a contiguous host copy, copied back after;
   - a check that every rank calls the same collective on the same dtype and
     shape (a header of 16 numbers all-gathered before the call, on by
     default), so a mismatch is an error on every rank rather than a hang or
     a silent wrong sum;
   - a watchdog thread: a collective that has not returned after the timeout
     (a peer died, hangs, or called something else) ends this process with a
     message naming the rank and the call. A blocked MPI call cannot be
     unwound into an error, so, as torch's NCCL watchdog does, the process
     exits; the launcher (mpirun, srun, tide launch) then stops the others;
   - all_reduce_async: a communication thread that runs the started
     all-reduces (header exchange and reduction) one after another in the
     order they were started, while the caller goes on (backward computing
     earlier layers). Open MPI's non-blocking collectives only progress
     inside MPI calls, and the caller is busy in kernels, so a thread blocked
     in MPI_Allreduce is what moves the bytes. MPI is never entered by two
     threads at once (MPI_THREAD_SERIALIZED): every blocking collective first
     waits until the thread has finished everything started before it, so
     the job's collectives keep one order on every rank. The reduction is the
     blocking path's own call on the same staged buffer, so the result is
     bitwise the same; staging, the average's division and the copy back
     stay on the caller's thread (in start and wait).

   The job is process-wide state (MPI's own is), kept in the one struct below. */
#include "tide.h"
#include "error.h"
#include "tensor.h"
#include "dist_backend.h"
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { KIND_ALL_REDUCE = 1, KIND_BROADCAST, KIND_ALL_GATHER, KIND_REDUCE_SCATTER, KIND_BARRIER, KIND_ALL_TO_ALL };
static const char *kind_names[] = { "?", "all_reduce", "broadcast", "all_gather", "reduce_scatter", "barrier",
                                    "all_to_all_bytes" };
enum { HEADER_LEN = 16 };  /* seq, kind, op, dtype, root, ndim, numel, shape[8], spare */

static struct {
  pthread_mutex_t lock;
  pthread_cond_t wake;
  int joined;                   /* 1 between init and finalize */
  int finalized_mpi;            /* MPI cannot start twice in a process */
  int32_t rank, world;
  const tide_dist_backend *be;  /* host buffers (MPI); NULL in a world of one */
  const tide_dist_backend *dev; /* CUDA tensors (NCCL) when set up, else they are staged through be */
  int32_t dev_device;           /* the CUDA device NCCL's communicator is on */
  int check;                    /* exchange headers before each collective */
  int64_t seq;                  /* collectives called so far */
  double timeout;               /* seconds; <= 0: no watchdog */
  pthread_t watchdog;
  int watchdog_running, stop;
  int busy;                     /* 1 while a collective is inside the backend */
  struct timespec busy_since;
  char busy_what[320];
  char call[320];               /* the running collective, described for messages */
  /* the communication thread (all_reduce_async); qlock guards the fields below */
  pthread_mutex_t qlock;
  pthread_cond_t qwork, qdone;  /* work queued; work finished */
  pthread_t comm;
  int comm_running, comm_stop;
  tide_dist_work *head, *tail;  /* started, not yet taken by the thread */
  int64_t inflight;             /* started and not finished */
} st = { .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER, .qlock = PTHREAD_MUTEX_INITIALIZER,
         .qwork = PTHREAD_COND_INITIALIZER, .qdone = PTHREAD_COND_INITIALIZER };

/* One all_reduce_async: what the thread needs, and its outcome (done, rc, err) once it has run. */
struct tide_dist_work {
  tide_dist_work *next;
  tide_tensor *t;        /* the caller's tensor (retained until wait) */
  tide_tensor *w;        /* the staged wire buffer the backend reduces (t itself when it can be) */
  int32_t op;
  int64_t h[HEADER_LEN]; /* this call's header, compared across ranks */
  int check;
  char what[320];        /* "all_reduce(avg) of f32 [10] (call #3)" */
  int done, waited, rc;
  char err[640];
};


/* The plugin's table from dir/libtide_<name>.so, or NULL with why in err. */
static const tide_dist_backend *load_from(const char *path, char *err, size_t cap) {
  if (access(path, R_OK) != 0) return NULL;
  /* RTLD_GLOBAL: Open MPI's own components, which it dlopens in turn, resolve libmpi's symbols globally */
  void *lib = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
  if (!lib) {
    snprintf(err, cap, "cannot load %s: %s", path, dlerror());
    return NULL;
  }
  tide_dist_backend_get_fn get;
  *(void **)&get = dlsym(lib, "tide_dist_backend_get");
  const tide_dist_backend *be = get ? get() : NULL;
  if (!be || be->abi != TIDE_DIST_ABI) {
    snprintf(err, cap, "%s is not a tide collective backend of this version (ABI %d)", path, TIDE_DIST_ABI);
    return NULL;
  }
  return be;
}

/* Finds libtide_<name>.so: $TIDE_DIST_PLUGIN_DIR, beside the executable, ../lib/tide from it, the build tree. */
static const tide_dist_backend *load_backend(const char *name) {
  char exe[PATH_MAX] = "", path[PATH_MAX + 64], err[PATH_MAX + 256] = "";
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) *slash = 0;
  }
  const char *dirs[4] = { getenv("TIDE_DIST_PLUGIN_DIR"), exe[0] ? exe : NULL, NULL,
#ifdef TIDE_DIST_PLUGIN_DIR
                          TIDE_DIST_PLUGIN_DIR
#else
                          NULL
#endif
  };
  char installed[PATH_MAX + 16];
  if (exe[0]) {
    snprintf(installed, sizeof installed, "%s/../lib/tide", exe);
    dirs[2] = installed;
  }
  for (int i = 0; i < 4; i++) {
    if (!dirs[i] || !dirs[i][0]) continue;
    snprintf(path, sizeof path, "%s/libtide_%s.so", dirs[i], name);
    const tide_dist_backend *be = load_from(path, err, sizeof err);
    if (be) return be;
    if (err[0]) break;
  }
  if (err[0]) {
    tide_fail("tide.dist: the %s backend: %s%s", name, err,
              strcmp(name, "mpi") == 0 ? " (is Open MPI installed? Debian: apt-get install openmpi-bin libopenmpi-dev)" : "");
  } else if (strcmp(name, "mpi") == 0) {
    tide_fail("tide.dist: no MPI backend (libtide_mpi.so): this tide was built without Open MPI. Install it "
              "(Debian: apt-get install openmpi-bin libopenmpi-dev) and rebuild tide to run on more than one process");
  } else {
    tide_fail("tide.dist: no %s backend (libtide_%s.so) beside the tide executable or in $TIDE_DIST_PLUGIN_DIR: "
              "this tide was built without it", name, name);
  }
  return NULL;
}

static void drain(void);
static void stop_comm(void);

/* watchdog ----------------------------------------------------------------------------------------- */

/* The watchdog looks at the running collective every tenth of the timeout (at most every second) rather
   than being woken by each call: a wake-up per collective costs two context switches, and with every
   core busy in MPI's polling that showed as 10-18% of a 4 MB all-reduce. A hang is therefore reported
   between timeout and 1.1 x timeout (+1 s at most) after the call began. */
static void *watchdog_main(void *arg) {
  (void)arg;
  double period = st.timeout / 10 < 1.0 ? st.timeout / 10 : 1.0;
  pthread_mutex_lock(&st.lock);
  while (!st.stop) {
    struct timespec now, next;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (st.busy) {
      double waited = (double)(now.tv_sec - st.busy_since.tv_sec) + 1e-9 * (double)(now.tv_nsec - st.busy_since.tv_nsec);
      if (waited >= st.timeout) {
        fprintf(stderr, "tide.dist: rank %d of %d: %s has not completed after %g s (the timeout: tide.dist.init{timeout=} "
                "or TIDE_DIST_TIMEOUT): a peer has died, hangs, or called a different collective; ending this process\n",
                (int)st.rank, (int)st.world, st.busy_what, st.timeout);
        fflush(stderr);
        _exit(124);
      }
    }
    next = now;
    double whole = (double)(int64_t)period;
    next.tv_sec += (time_t)whole;
    next.tv_nsec += (long)((period - whole) * 1e9);
    if (next.tv_nsec >= 1000000000L) { next.tv_sec++; next.tv_nsec -= 1000000000L; }
    /* the condition variable waits on CLOCK_MONOTONIC (set at init), like busy_since; only stopping signals it */
    pthread_cond_timedwait(&st.wake, &st.lock, &next);
  }
  pthread_mutex_unlock(&st.lock);
  return NULL;
}

static void watch_begin(const char *what) {
  if (!st.watchdog_running) return;
  pthread_mutex_lock(&st.lock);
  st.busy = 1;
  clock_gettime(CLOCK_MONOTONIC, &st.busy_since);
  snprintf(st.busy_what, sizeof st.busy_what, "%s", what);
  pthread_mutex_unlock(&st.lock);
}

static void watch_end(void) {
  if (!st.watchdog_running) return;
  pthread_mutex_lock(&st.lock);
  st.busy = 0;
  pthread_mutex_unlock(&st.lock);
}

static int start_watchdog(void) {
  if (st.watchdog_running || st.timeout <= 0) return 0;
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_destroy(&st.wake);
  pthread_cond_init(&st.wake, &ca);
  pthread_condattr_destroy(&ca);
  st.stop = 0;
  if (pthread_create(&st.watchdog, NULL, watchdog_main, NULL) != 0)
    return tide_fail("tide.dist.init: cannot start the watchdog thread");
  st.watchdog_running = 1;
  return 0;
}

static void stop_watchdog(void) {
  if (!st.watchdog_running) return;
  pthread_mutex_lock(&st.lock);
  st.stop = 1;
  pthread_cond_signal(&st.wake);
  pthread_mutex_unlock(&st.lock);
  pthread_join(st.watchdog, NULL);
  st.watchdog_running = 0;
}

/* joining and leaving ------------------------------------------------------------------------------- */

int tide_dist_init(const char *backend, double timeout_s, int32_t check, int32_t *rank, int32_t *world_size) {
  if (!backend) return tide_fail("tide.dist.init: expected a backend name");
  if (st.joined) return tide_fail("tide.dist.init: already initialised (rank %d of %d); call finalize first",
                                  (int)st.rank, (int)st.world);
  if (!(timeout_s >= 0) || timeout_s > 1e9) return tide_fail("tide.dist.init: timeout must be >= 0 seconds, got %g", timeout_s);
  st.timeout = timeout_s;
  st.check = check != 0;
  st.seq = 0;
  if (strcmp(backend, "none") == 0) {
    st.be = NULL;
    st.rank = 0;
    st.world = 1;
  } else if (strcmp(backend, "mpi") == 0) {
    if (st.finalized_mpi)
      return tide_fail("tide.dist.init: MPI was finalised in this process and cannot start again (MPI's rule)");
    const tide_dist_backend *be = load_backend("mpi");
    if (!be) return -1;
    char err[512] = "";
    int32_t r = 0, n = 0;
    if (be->init(NULL, 0, 0, -1, &r, &n, err, sizeof err) != 0) return tide_fail("tide.dist.init: %s", err);
    st.be = be;
    st.rank = r;
    st.world = n;
  } else {
    return tide_fail("tide.dist.init: unknown backend '%s' (expected 'mpi' or 'none')", backend);
  }
  if (st.world > 1) TIDE_TRY(start_watchdog());
  st.joined = 1;
  *rank = st.rank;
  *world_size = st.world;
  return 0;
}

int tide_dist_finalize(void) {
  if (!st.joined) return 0;
  drain();
  stop_comm();
  stop_watchdog();
  st.joined = 0;
  int rc = 0;
  if (st.dev) {
    char err[512] = "";
    const tide_dist_backend *dev = st.dev;
    st.dev = NULL;
    if (dev->finalize(err, sizeof err) != 0) rc = tide_fail("tide.dist.finalize: NCCL: %s", err);
  }
  if (st.be) {
    char err[512] = "";
    const tide_dist_backend *be = st.be;
    st.be = NULL;
    if (strcmp(be->name, "mpi") == 0) st.finalized_mpi = 1;
    if (be->finalize(err, sizeof err) != 0) return tide_fail("tide.dist.finalize: %s", err);
  }
  return rc;
}


void tide_dist_abort(int32_t code) {
  if (st.joined && st.dev) st.dev->abort_job(code);
  if (st.joined && st.be) st.be->abort_job(code);
}

int32_t tide_dist_is_initialized(void) { return st.joined; }
int32_t tide_dist_rank(void) { return st.joined ? st.rank : 0; }
int32_t tide_dist_world_size(void) { return st.joined ? st.world : 1; }

/* checks ------------------------------------------------------------------------------------------- */

static int joined(const char *what) {
  if (!st.joined) return tide_fail("tide.dist.%s: tide.dist is not initialised (call tide.dist.init() first)", what);
  return 0;
}

static const char *op_name(int32_t op) {
  switch (op) {
    case TIDE_SUM: return "sum";
    case TIDE_MEAN: return "avg";
    case TIDE_MAX: return "max";
    case TIDE_MIN: return "min";
    default: return "?";
  }
}

static int check_op(int32_t op, int32_t dtype, const char *what) {
  if (op != TIDE_SUM && op != TIDE_MEAN && op != TIDE_MAX && op != TIDE_MIN)
    return tide_fail("tide.dist.%s: op code %d is not sum, avg, max or min", what, (int)op);
  if (op == TIDE_MEAN && !(dtype == TIDE_F32 || dtype == TIDE_F64 || dtype == TIDE_BF16 || dtype == TIDE_F16))
    return tide_fail("tide.dist.%s: avg needs a floating-point tensor, got %s (use sum and divide)", what,
                     tide_dtype_name(dtype));
  return 0;
}

/* "all_reduce(sum) of f32 [3, 4]" for header h. */
static void describe(const int64_t *h, char *buf, size_t cap) {
  int kind = h[1] >= 1 && h[1] <= KIND_ALL_TO_ALL ? (int)h[1] : 0;
  if (kind == KIND_BARRIER || kind == KIND_ALL_TO_ALL || kind == 0) {
    snprintf(buf, cap, "%s (call #%lld)", kind_names[kind], (long long)h[0] + 1);
    return;
  }
  char shape[200];
  int64_t dims[TIDE_MAX_DIMS];
  int32_t nd = h[5] >= 0 && h[5] <= TIDE_MAX_DIMS ? (int32_t)h[5] : 0;
  for (int i = 0; i < nd; i++) dims[i] = h[7 + i];
  tide_shape_str(shape, sizeof shape, nd, dims);
  char extra[48] = "";
  if (kind == KIND_ALL_REDUCE || kind == KIND_REDUCE_SCATTER) snprintf(extra, sizeof extra, "(%s)", op_name((int32_t)h[2]));
  else if (kind == KIND_BROADCAST) snprintf(extra, sizeof extra, "(src=%lld)", (long long)h[4]);
  snprintf(buf, cap, "%s%s of %s %s (call #%lld)", kind_names[kind], extra, tide_dtype_name((int32_t)h[3]), shape,
           (long long)h[0] + 1);
}

/* This call's header (numbering it in the job's call order). */
static void make_header(int64_t *h, int kind, int32_t op, const tide_tensor *t, int32_t root) {
  memset(h, 0, sizeof(int64_t) * HEADER_LEN);
  h[0] = st.seq++;
  h[1] = kind; h[2] = op; h[3] = t ? t->dtype : -1; h[4] = root; h[5] = t ? t->ndim : 0; h[6] = t ? t->numel : 0;
  if (t) memcpy(h + 7, t->shape, sizeof(int64_t) * (size_t)t->ndim);
  if (kind == KIND_ALL_TO_ALL || kind == KIND_BARRIER) h[2] = h[3] = h[4] = h[5] = h[6] = -1;
}

/* Compares every rank's header h with this rank's (an all_gather over be): 0, or -1 with why in err. */
static int exchange_headers(const int64_t *h, const char *what, char *err, size_t cap) {
  int64_t *all = malloc(sizeof(int64_t) * HEADER_LEN * (size_t)st.world);
  if (!all) { snprintf(err, cap, "out of memory for %d ranks' headers", (int)st.world); return -1; }
  watch_begin(what);
  int rc = st.be->all_gather(h, all, (int64_t)(sizeof(int64_t) * HEADER_LEN), err, cap);
  watch_end();
  for (int32_t r = 0; rc == 0 && r < st.world; r++) {
    if (memcmp(all + (size_t)r * HEADER_LEN, h, sizeof(int64_t) * HEADER_LEN) == 0) continue;
    char mine[320], theirs[320];
    describe(h, mine, sizeof mine);
    describe(all + (size_t)r * HEADER_LEN, theirs, sizeof theirs);
    snprintf(err, cap, "the ranks disagree on this call: rank %d called %s, rank %d called %s", (int)st.rank, mine,
             (int)r, theirs);
    rc = -2;
  }
  free(all);
  return rc;
}

/* All ranks' headers for this call compared with ours: an error on every rank when one differs. */
static int agree(int kind, int32_t op, const tide_tensor *t, int32_t root) {
  drain();  /* what was started before runs before this, on every rank */
  int64_t h[HEADER_LEN];
  make_header(h, kind, op, t, root);
  if (!st.be && !st.dev) return 0;
  describe(h, st.call, sizeof st.call);
  if (!st.be || !st.check) return 0;  /* the check goes over MPI (a world of one with NCCL has no peer to disagree) */
  char err[768] = "";
  int rc = exchange_headers(h, st.call, err, sizeof err);
  if (rc == -2) return tide_fail("tide.dist.%s: %s", kind_names[kind], err);
  if (rc != 0) return tide_fail("tide.dist.%s on rank %d: %s", kind_names[kind], (int)st.rank, err);
  return 0;
}

/* staging ------------------------------------------------------------------------------------------ */

static tide_tensor *host_as(const tide_tensor *t, int32_t dtype);

/* The dtype backend be reduces t's elements in: its own when it can, else one that holds every value
   exactly (MPI has no bf16/f16 arithmetic: f32; NCCL has no u16: i64). */
static int32_t wire_dtype(const tide_dist_backend *be, int32_t dtype, int reducing) {
  if (!reducing || (be->reduce_dtypes >> dtype & 1u)) return dtype;
  return dtype == TIDE_F32 || dtype == TIDE_F64 || dtype == TIDE_BF16 || dtype == TIDE_F16 ? TIDE_F32 : TIDE_I64;
}

/* The backend for a collective on t: NCCL for a CUDA tensor when it is set up (on t's device, or an
   error), else MPI on host buffers; NULL in a world of one without NCCL (the collective is the identity). */
static int pick(const tide_tensor *t, const char *what, const tide_dist_backend **be, int *on_device) {
  *on_device = 0;
  *be = st.be;
  if (st.dev && t->device != TIDE_CPU) {
    if (t->device != st.dev_device)
      return tide_fail("tide.dist.%s: the tensor is on cuda:%d but NCCL was set up on cuda:%d (tide.dist.init's device)",
                       what, (int)t->device, (int)st.dev_device);
    *be = st.dev;
    *on_device = 1;
  }
  return 0;
}

/* The buffer a backend works on: t itself when it already is one (contiguous, in dtype, on the backend's
   side), else a contiguous copy there in dtype. */
static tide_tensor *staged(const tide_tensor *t, int32_t dtype, int on_device) {
  return on_device ? tide_contiguous_as(t, dtype) : host_as(t, dtype);
}

/* t itself (retained) when it is a contiguous host buffer of dtype, else a contiguous host copy in dtype. */
static tide_tensor *host_as(const tide_tensor *t, int32_t dtype) {
  if (t->device == TIDE_CPU) return tide_contiguous_as(t, dtype);
  tide_tensor *h = NULL;
  if (tide_to_device(t, TIDE_CPU, &h) != 0) return NULL;
  tide_tensor *c = tide_contiguous_as(h, dtype);
  tide_tensor_release(h);
  return c;
}

/* Writes the host tensor src back into dst (any view, any device, dtype converted). */
static int write_back(tide_tensor *dst, tide_tensor *src) {
  if (dst == src) {
    tide_bump_version(dst);
    return 0;
  }
  if (dst->device == TIDE_CPU) return tide_copy_(dst, src);
  tide_tensor *d = NULL;
  TIDE_TRY(tide_to_device(src, dst->device, &d));
  int rc = tide_copy_(dst, d);
  tide_tensor_release(d);
  return rc;
}

static int backend_error(const char *what, const char *err) {
  return tide_fail("tide.dist.%s on rank %d of %d: %s", what, (int)st.rank, (int)st.world, err);
}

static int tensor_arg(const tide_tensor *t, const char *what) {
  if (!t) return tide_fail("tide.dist.%s: expected a tensor, got nil", what);
  return tide_check_handle(t, what);
}

/* collectives -------------------------------------------------------------------------------------- */

int tide_dist_all_reduce(tide_tensor *t, int32_t op) {
  TIDE_TRY(joined("all_reduce"));
  TIDE_TRY(tensor_arg(t, "all_reduce"));
  TIDE_TRY(check_op(op, t->dtype, "all_reduce"));
  const tide_dist_backend *be;
  int dev;
  TIDE_TRY(pick(t, "all_reduce", &be, &dev));
  TIDE_TRY(agree(KIND_ALL_REDUCE, op, t, -1));
  if (!be) return 0;  /* a world of one: the sum, max, min and average of one value are itself */
  tide_tensor *w = staged(t, wire_dtype(be, t->dtype, 1), dev);
  if (!w) return -1;
  char err[512] = "";
  watch_begin(st.call);
  int rc = be->all_reduce(w->data, w->numel, w->dtype, op == TIDE_MEAN ? TIDE_SUM : op, err, sizeof err);
  watch_end();
  if (rc != 0) rc = backend_error("all_reduce", err);
  /* avg: the sum divided by the world size, in the wire dtype (f32 for bf16/f16), as NCCL's ncclAvg */
  if (rc == 0 && op == TIDE_MEAN) rc = tide_binary_scalar_(TIDE_DIV, w, (double)st.world);
  if (rc == 0) rc = write_back(t, w);
  tide_tensor_release(w);
  return rc;
}

/* non-blocking all-reduce ------------------------------------------------------------------------- */

/* The communication thread: takes the started all-reduces in order and runs each as the blocking path
   does (header exchange, then the backend's all_reduce on the staged buffer). */
static void *comm_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&st.qlock);
  for (;;) {
    while (!st.head && !st.comm_stop) pthread_cond_wait(&st.qwork, &st.qlock);
    if (!st.head) break;  /* stopping, and nothing left */
    tide_dist_work *w = st.head;
    st.head = w->next;
    if (!st.head) st.tail = NULL;
    pthread_mutex_unlock(&st.qlock);
    int rc = 0;
    if (w->check) rc = exchange_headers(w->h, w->what, w->err, sizeof w->err);
    if (rc == 0) {
      watch_begin(w->what);
      rc = st.be->all_reduce(w->w->data, w->w->numel, w->w->dtype, w->op == TIDE_MEAN ? TIDE_SUM : w->op, w->err,
                             sizeof w->err);
      watch_end();
    }
    pthread_mutex_lock(&st.qlock);
    w->rc = rc;
    w->done = 1;
    st.inflight--;
    pthread_cond_broadcast(&st.qdone);
  }
  pthread_mutex_unlock(&st.qlock);
  return NULL;
}

/* Returns when every started all-reduce has run (their results are copied back at their wait). */
static void drain(void) {
  if (!st.comm_running) return;
  pthread_mutex_lock(&st.qlock);
  while (st.inflight > 0) pthread_cond_wait(&st.qdone, &st.qlock);
  pthread_mutex_unlock(&st.qlock);
}

static void stop_comm(void) {
  if (!st.comm_running) return;
  pthread_mutex_lock(&st.qlock);
  st.comm_stop = 1;
  pthread_cond_signal(&st.qwork);
  pthread_mutex_unlock(&st.qlock);
  pthread_join(st.comm, NULL);
  st.comm_running = 0;
  st.comm_stop = 0;
}

static void work_release(tide_dist_work *w) {
  tide_tensor_release(w->w);
  tide_tensor_release(w->t);
  w->w = w->t = NULL;
}

int tide_dist_all_reduce_async(tide_tensor *t, int32_t op, tide_dist_work **out) {
  if (!out) return tide_fail("tide.dist.all_reduce_async: expected a place for the handle");
  *out = NULL;
  TIDE_TRY(joined("all_reduce_async"));
  TIDE_TRY(tensor_arg(t, "all_reduce_async"));
  TIDE_TRY(check_op(op, t->dtype, "all_reduce_async"));
  const tide_dist_backend *be;
  int dev;
  TIDE_TRY(pick(t, "all_reduce_async", &be, &dev));
  tide_dist_work *w = calloc(1, sizeof *w);
  if (!w) return tide_fail("tide.dist.all_reduce_async: out of memory");
  /* a world of one, NCCL (which queues on its CUDA stream itself) and an MPI without thread support run the
     blocking call now: the handle is then complete from the start */
  if (!be || dev || !st.be->threads_ok || !st.be->threads_ok()) {
    if (tide_dist_all_reduce(t, op) != 0) {
      free(w);
      return -1;
    }
    w->done = 1;
    *out = w;
    return 0;
  }
  if (!st.comm_running) {
    st.comm_stop = 0;
    if (pthread_create(&st.comm, NULL, comm_main, NULL) != 0) {
      free(w);
      return tide_fail("tide.dist.all_reduce_async: cannot start the communication thread");
    }
    st.comm_running = 1;
  }
  w->w = staged(t, wire_dtype(be, t->dtype, 1), 0);
  if (!w->w) {
    free(w);
    return -1;
  }
  tide_tensor_retain(t);
  w->t = t;
  w->op = op;
  w->check = st.check;
  make_header(w->h, KIND_ALL_REDUCE, op, t, -1);
  describe(w->h, w->what, sizeof w->what);
  pthread_mutex_lock(&st.qlock);
  if (st.tail) st.tail->next = w;
  else st.head = w;
  st.tail = w;
  st.inflight++;
  pthread_cond_signal(&st.qwork);
  pthread_mutex_unlock(&st.qlock);
  *out = w;
  return 0;
}

/* Blocks until w's reduction has run (not copying anything back). */
static void work_join(tide_dist_work *w) {
  pthread_mutex_lock(&st.qlock);
  while (!w->done) pthread_cond_wait(&st.qdone, &st.qlock);
  pthread_mutex_unlock(&st.qlock);
}

int tide_dist_wait(tide_dist_work *w) {
  if (!w) return tide_fail("tide.dist.wait: expected a handle from all_reduce_async, got nil");
  work_join(w);
  if (w->waited) return 0;
  w->waited = 1;
  if (!w->t) return 0;  /* ran at its start */
  int rc = 0;
  if (w->rc == -2) {
    rc = tide_fail("tide.dist.all_reduce_async: %s", w->err);
  } else if (w->rc != 0) {
    rc = tide_fail("tide.dist.all_reduce_async (%s) on rank %d of %d: %s", w->what, (int)st.rank, (int)st.world, w->err);
  } else {
    /* as tide_dist_all_reduce: the average divides the sum in the wire dtype, then the copy back */
    if (w->op == TIDE_MEAN) rc = tide_binary_scalar_(TIDE_DIV, w->w, (double)st.world);
    if (rc == 0) rc = write_back(w->t, w->w);
  }
  work_release(w);
  return rc;
}

int32_t tide_dist_work_done(const tide_dist_work *w) {
  if (!w) return 1;
  pthread_mutex_lock(&st.qlock);
  int32_t d = w->done;
  pthread_mutex_unlock(&st.qlock);
  return d;
}

void tide_dist_work_free(tide_dist_work *w) {
  if (!w) return;
  work_join(w);  /* the thread may still be reading its buffer */
  work_release(w);
  free(w);
}

int tide_dist_broadcast(tide_tensor *t, int32_t src) {
  TIDE_TRY(joined("broadcast"));
  TIDE_TRY(tensor_arg(t, "broadcast"));
  if (src < 0 || src >= st.world)
    return tide_fail("tide.dist.broadcast: src rank %d is outside the world's ranks 0..%d", (int)src, (int)st.world - 1);
  const tide_dist_backend *be;
  int dev;
  TIDE_TRY(pick(t, "broadcast", &be, &dev));
  TIDE_TRY(agree(KIND_BROADCAST, -1, t, src));
  if (!be) return 0;
  tide_tensor *w = staged(t, t->dtype, dev);
  if (!w) return -1;
  char err[512] = "";
  watch_begin(st.call);
  int rc = be->broadcast(w->data, w->numel * tide_dtype_size(w->dtype), src, err, sizeof err);
  watch_end();
  if (rc != 0) rc = backend_error("broadcast", err);
  if (rc == 0 && st.rank != src) rc = write_back(t, w);
  tide_tensor_release(w);
  return rc;
}

/* out and t of one dtype and device, out holding world times t's elements (or the other way round). */
static int check_pair(const tide_tensor *big, const tide_tensor *small, const char *what, const char *big_name) {
  if (big->dtype != small->dtype)
    return tide_fail("tide.dist.%s: out and the input differ in dtype (%s and %s)", what,
                     tide_dtype_name(big->dtype), tide_dtype_name(small->dtype));
  if (big->device != small->device)
    return tide_fail("tide.dist.%s: out and the input are on different devices", what);
  if (big->numel / st.world != small->numel || big->numel % st.world != 0) {
    char a[160], b[160];
    return tide_fail("tide.dist.%s: %s must hold world_size (%d) times the elements of the other: got %s (%lld elements) "
                     "and %s (%lld elements)", what, big_name, (int)st.world,
                     tide_shape_str(a, sizeof a, big->ndim, big->shape), (long long)big->numel,
                     tide_shape_str(b, sizeof b, small->ndim, small->shape), (long long)small->numel);
  }
  return 0;
}

/* out = t's elements in order (a world of one's all_gather and reduce_scatter). */
static int copy_reshaped(tide_tensor *out, const tide_tensor *t) {
  tide_tensor *r = NULL;
  TIDE_TRY(tide_reshape(t, out->ndim, out->shape, &r));
  int rc = tide_copy_(out, r);
  tide_tensor_release(r);
  return rc;
}

/* A contiguous tensor shaped like t to receive into, on the host or (on_device) on t's device: t itself
   when it is one. */
static tide_tensor *recv_buffer(tide_tensor *t, int32_t dtype, int on_device) {
  int32_t device = on_device ? t->device : TIDE_CPU;
  if (t->device == device && t->dtype == dtype && tide_is_contiguous(t)) {
    tide_tensor_retain(t);
    return t;
  }
  return tide_new_on(device, dtype, t->ndim, t->shape);
}

int tide_dist_all_gather(tide_tensor *out, const tide_tensor *t) {
  TIDE_TRY(joined("all_gather"));
  TIDE_TRY(tensor_arg(out, "all_gather"));
  TIDE_TRY(tensor_arg(t, "all_gather"));
  TIDE_TRY(check_pair(out, t, "all_gather", "out"));
  const tide_dist_backend *be;
  int dev;
  TIDE_TRY(pick(t, "all_gather", &be, &dev));
  TIDE_TRY(agree(KIND_ALL_GATHER, -1, t, -1));
  if (!be) return copy_reshaped(out, t);
  tide_tensor *w = staged(t, t->dtype, dev);
  if (!w) return -1;
  tide_tensor *o = recv_buffer(out, t->dtype, dev);
  int rc = -1;
  char err[512] = "";
  if (o) {
    watch_begin(st.call);
    rc = be->all_gather(w->data, o->data, w->numel * tide_dtype_size(w->dtype), err, sizeof err);
    watch_end();
    if (rc != 0) rc = backend_error("all_gather", err);
    if (rc == 0) rc = write_back(out, o);
  }
  tide_tensor_release(o);
  tide_tensor_release(w);
  return rc;
}

int tide_dist_reduce_scatter(tide_tensor *out, const tide_tensor *t, int32_t op) {
  TIDE_TRY(joined("reduce_scatter"));
  TIDE_TRY(tensor_arg(out, "reduce_scatter"));
  TIDE_TRY(tensor_arg(t, "reduce_scatter"));
  TIDE_TRY(check_op(op, t->dtype, "reduce_scatter"));
  TIDE_TRY(check_pair(t, out, "reduce_scatter", "the input"));
  const tide_dist_backend *be;
  int dev;
  TIDE_TRY(pick(t, "reduce_scatter", &be, &dev));
  TIDE_TRY(agree(KIND_REDUCE_SCATTER, op, t, -1));
  if (!be) return copy_reshaped(out, t);
  int32_t wire = wire_dtype(be, t->dtype, 1);
  tide_tensor *w = staged(t, wire, dev);
  if (!w) return -1;
  tide_tensor *o = recv_buffer(out, wire, dev);
  int rc = -1;
  char err[512] = "";
  if (o) {
    watch_begin(st.call);
    rc = be->reduce_scatter(w->data, o->data, o->numel, wire, op == TIDE_MEAN ? TIDE_SUM : op, err, sizeof err);
    watch_end();
    if (rc != 0) rc = backend_error("reduce_scatter", err);
    if (rc == 0 && op == TIDE_MEAN) rc = tide_binary_scalar_(TIDE_DIV, o, (double)st.world);
    if (rc == 0) rc = write_back(out, o);
  }
  tide_tensor_release(o);
  tide_tensor_release(w);
  return rc;
}

int tide_dist_barrier(void) {
  TIDE_TRY(joined("barrier"));
  TIDE_TRY(agree(KIND_BARRIER, -1, NULL, -1));
  const tide_dist_backend *be = st.be ? st.be : st.dev;
  if (!be) return 0;
  char err[512] = "";
  watch_begin(st.call);
  int rc = be->barrier(err, sizeof err);
  watch_end();
  return rc == 0 ? 0 : backend_error("barrier", err);
}

int tide_dist_all_to_all_bytes(int32_t n, const char *const *bufs, const int64_t *lens, char **recv, int64_t *recv_lens) {
  TIDE_TRY(joined("all_to_all_bytes"));
  *recv = NULL;
  if (n != st.world)
    return tide_fail("tide.dist.all_to_all_bytes: expected one string per rank (%d), got %d", (int)st.world, (int)n);
  int64_t total = 0;
  for (int32_t r = 0; r < n; r++) {
    if (lens[r] < 0 || (lens[r] > 0 && !bufs[r]) || lens[r] > INT64_MAX / 2 - total)
      return tide_fail("tide.dist.all_to_all_bytes: invalid length %lld for rank %d", (long long)lens[r], (int)r);
    total += lens[r];
  }
  TIDE_TRY(agree(KIND_ALL_TO_ALL, -1, NULL, -1));
  if (!st.be) {
    recv_lens[0] = lens[0];
    if (!(*recv = malloc(lens[0] ? (size_t)lens[0] : 1)))
      return tide_fail("tide.dist.all_to_all_bytes: out of memory for %lld bytes", (long long)lens[0]);
    if (lens[0]) memcpy(*recv, bufs[0], (size_t)lens[0]);
    return 0;
  }
  /* first each rank's length for each other rank (8 bytes each way), then the bytes */
  int64_t *meta = malloc(sizeof(int64_t) * 4 * (size_t)n);
  char *send = malloc(total ? (size_t)total : 1);
  int rc = 0;
  char err[512] = "";
  if (!meta || !send) {
    rc = tide_fail("tide.dist.all_to_all_bytes: out of memory for %lld bytes", (long long)total);
    goto done;
  }
  int64_t *eight = meta, *offs = meta + n, *soffs = meta + 2 * n, *roffs = meta + 3 * n;
  for (int32_t r = 0; r < n; r++) {
    eight[r] = 8;
    offs[r] = 8 * (int64_t)r;
  }
  watch_begin(st.call);
  rc = st.be->all_to_all(lens, eight, offs, recv_lens, eight, offs, err, sizeof err);
  watch_end();
  if (rc != 0) {
    rc = backend_error("all_to_all_bytes", err);
    goto done;
  }
  int64_t rtotal = 0, pos = 0;
  for (int32_t r = 0; r < n; r++) {
    if (recv_lens[r] < 0 || recv_lens[r] > INT64_MAX / 2 - rtotal) {
      rc = tide_fail("tide.dist.all_to_all_bytes: rank %d announced an invalid length %lld", (int)r, (long long)recv_lens[r]);
      goto done;
    }
    roffs[r] = rtotal;
    rtotal += recv_lens[r];
    soffs[r] = pos;
    if (lens[r]) memcpy(send + pos, bufs[r], (size_t)lens[r]);
    pos += lens[r];
  }
  if (!(*recv = malloc(rtotal ? (size_t)rtotal : 1))) {
    rc = tide_fail("tide.dist.all_to_all_bytes: out of memory for %lld bytes received", (long long)rtotal);
    goto done;
  }
  watch_begin(st.call);
  rc = st.be->all_to_all(send, lens, soffs, *recv, recv_lens, roffs, err, sizeof err);
  watch_end();
  if (rc != 0) {
    rc = backend_error("all_to_all_bytes", err);
    free(*recv);
    *recv = NULL;
  }
done:
  free(meta);
  free(send);
  return rc;
}

void tide_dist_free(void *p) { free(p); }

/* NCCL for CUDA tensors (after tide_dist_init): loads libtide_nccl.so and sets up its communicator on
   device, its id sent from rank 0 over MPI. */
int tide_dist_init_nccl(int32_t device, int32_t required, int32_t *used) {
  *used = 0;
  TIDE_TRY(joined("init"));
  if (st.dev) {
    *used = 1;
    return 0;
  }
  /* every rank must take the same path: each says whether it can, and all use NCCL only if all can */
  char why[768] = "";
  const tide_dist_backend *nccl = NULL;
  if (strcmp(tide_cuda_runtime_name(), "CUDA") != 0) {
    snprintf(why, sizeof why, "this tide has no CUDA runtime (%s)", tide_cuda_runtime_name()[0] ? tide_cuda_runtime_name()
                                                                                                 : "built without CUDA");
  } else if (device < 0 || device >= tide_cuda_device_count()) {
    snprintf(why, sizeof why, "device cuda:%d is not one of the %d CUDA devices", (int)device, (int)tide_cuda_device_count());
  } else if (!(nccl = load_backend("nccl"))) {
    snprintf(why, sizeof why, "%s", tide_last_error());
  }
  int32_t ok = nccl != NULL;
  char err[512] = "";
  drain();
  if (st.be) {
    if (st.be->all_reduce(&ok, 1, TIDE_I32, TIDE_MIN, err, sizeof err) != 0) return backend_error("init (NCCL)", err);
  }
  if (!ok) {
    if (!required) return 0;
    return tide_fail("tide.dist.init: NCCL was asked for (nccl = true) but %s", why[0] ? why : "another rank cannot use it");
  }
  unsigned char id[128] = { 0 };
  if (st.rank == 0 && nccl->make_id(id, err, sizeof err) != 0) return backend_error("init (ncclGetUniqueId)", err);
  if (st.be && st.be->broadcast(id, sizeof id, 0, err, sizeof err) != 0) return backend_error("init (NCCL's id)", err);
  int32_t r = 0, n = 0;
  watch_begin("ncclCommInitRank");
  int rc = nccl->init(id, st.rank, st.world, device, &r, &n, err, sizeof err);
  watch_end();
  if (rc != 0) return backend_error("init (NCCL)", err);
  if (r != st.rank || n != st.world)
    return tide_fail("tide.dist.init: NCCL's communicator has rank %d of %d, MPI's rank %d of %d", (int)r, (int)n,
                     (int)st.rank, (int)st.world);
  st.dev = nccl;
  st.dev_device = device;
  *used = 1;
  return 0;
}

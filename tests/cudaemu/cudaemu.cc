/* cudaemu's runtime: fibers, the adversarial scheduler, warp collectives and
   the host-memory CUDA runtime. One host thread launches at a time. */
#include "cudaemu.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <algorithm>
#include <string>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define CUDAEMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CUDAEMU_ASAN 1
#endif
#endif
#ifdef CUDAEMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if !defined(__x86_64__)
#error "cudaemu's context switch is written for x86-64"
#endif

/* The context switch: pushes the callee-saved registers on the current stack,
   stores its stack pointer in *save, loads `to` and pops what the other side
   pushed. Caller-saved registers need no saving since this is a call; the
   SSE/x87 control words are left alone (kernels do not change them). A hand
   switch resumes several times faster than swapcontext, which makes a
   system call for the signal mask on every switch. */
extern "C" void cudaemu_swap(void **save, void *to);
asm(R"(
  .text
  .globl cudaemu_swap
  .type cudaemu_swap, @function
cudaemu_swap:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size cudaemu_swap, .-cudaemu_swap
)");

namespace cudaemu {

uint3 cur_threadIdx, cur_blockIdx;
dim3 cur_blockDim, cur_gridDim;

namespace {

enum state { RUNNABLE, AT_BARRIER, AT_WARP, DONE };

#ifdef CUDAEMU_ASAN
const size_t kStack = 256 << 10;  // ASan's redzones make frames larger
#else
const size_t kStack = 64 << 10;
#endif

struct Fiber {
  void *sp = nullptr;
  char *mem = nullptr;  // the mapping: a guard page, then the stack
  size_t mem_size = 0;
  int st = DONE;
  int tid = 0;  // linear thread index in the block
  uint3 idx{0, 0, 0};
  const char *file = "";
  int line = 0;
  // a pending warp collective
  int op = 0, arg = 0, width = 32;
  unsigned mask = 0;
  uint64_t val = 0, result = 0;
  // a pending warp_gather: n bytes at gin from each lane, 32 * n bytes to gout
  const void *gin = nullptr;
  void *gout = nullptr;
  size_t gn = 0;
  void *fake_stack = nullptr;  // ASan's fake stack while switched out
};

struct Sched {
  std::vector<Fiber> fibers;
  const std::function<void()> *body = nullptr;
  Fiber *cur = nullptr;
  void *main_sp = nullptr;
  const void *main_bottom = nullptr;
  size_t main_size = 0;
  void *main_fake = nullptr;
  uint64_t rng = 0;
  bool seeded = false;
  std::vector<unsigned char> smem;
  cudaError_t last_error = cudaSuccess;
  std::string message;
  uint64_t grids = 0;
} S;

uint64_t next_rand() {  // splitmix64: small, and the same everywhere
  uint64_t z = (S.rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
unsigned rand_below(unsigned n) { return (unsigned)(next_rand() % n); }

void ensure_seed() {
  if (S.seeded) return;
  const char *e = getenv("CUDAEMU_SEED");
  set_seed(e ? strtoull(e, nullptr, 10) : 1);
}

/* Into fiber f from the scheduler, until f blocks or finishes. */
void resume(Fiber &f) {
  S.cur = &f;
  cur_threadIdx = f.idx;
#ifdef CUDAEMU_ASAN
  __sanitizer_start_switch_fiber(&S.main_fake, f.mem + getpagesize(), f.mem_size - getpagesize());
#endif
  cudaemu_swap(&S.main_sp, f.sp);
#ifdef CUDAEMU_ASAN
  __sanitizer_finish_switch_fiber(S.main_fake, nullptr, nullptr);
#endif
  S.cur = nullptr;
}

/* From the running fiber back to the scheduler; returns when resumed. */
void yield_to_scheduler() {
  Fiber &f = *S.cur;
#ifdef CUDAEMU_ASAN
  // a finished fiber is never resumed: ASan may drop its fake stack
  __sanitizer_start_switch_fiber(f.st == DONE ? nullptr : &f.fake_stack, S.main_bottom, S.main_size);
#endif
  cudaemu_swap(&f.sp, S.main_sp);
#ifdef CUDAEMU_ASAN
  __sanitizer_finish_switch_fiber(f.fake_stack, &S.main_bottom, &S.main_size);
#endif
}

[[noreturn]] void fiber_entry() {
#ifdef CUDAEMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &S.main_bottom, &S.main_size);
#endif
  (*S.body)();
  S.cur->st = DONE;
  yield_to_scheduler();
  abort();  // a finished fiber is never resumed
}

/* A fresh stack whose first switch enters fiber_entry. */
void prepare(Fiber &f) {
  if (!f.mem) {
    size_t page = (size_t)getpagesize();
    f.mem_size = kStack + page;
    void *m = mmap(nullptr, f.mem_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) { perror("cudaemu: mmap"); abort(); }
    mprotect(m, page, PROT_NONE);  // overflowing the stack faults instead of corrupting
    f.mem = (char *)m;
  }
#ifdef CUDAEMU_ASAN
  // an abandoned fiber (after a deadlock) leaves its frames' redzones behind
  __asan_unpoison_memory_region(f.mem + getpagesize(), f.mem_size - getpagesize());
#endif
  uintptr_t top = ((uintptr_t)(f.mem + f.mem_size)) & ~(uintptr_t)15;
  void **sp = (void **)top;
  *--sp = nullptr;                       // fiber_entry's return address: never used
  *--sp = (void *)&fiber_entry;          // popped by cudaemu_swap's ret
  for (int i = 0; i < 6; i++) *--sp = nullptr;  // rbp rbx r12..r15
  f.sp = sp;                              // at entry rsp % 16 == 8, as after a call
  f.fake_stack = nullptr;
  f.st = RUNNABLE;
}

void fail(cudaError_t e, const std::string &msg) {
  S.last_error = e;
  S.message = msg;
  fprintf(stderr, "%s\n", msg.c_str());
}

const char *state_name(int st) {
  return st == AT_BARRIER ? "wait at __syncthreads" : st == AT_WARP ? "wait at a warp collective" : st == DONE ? "have exited" : "run";
}

/* "threads 0-15, 17 wait at __syncthreads fill.cu:12; threads 16, 18-31 have exited" */
std::string describe_block(int n) {
  std::vector<std::pair<std::string, std::vector<int>>> groups;
  for (int i = 0; i < n; i++) {
    const Fiber &f = S.fibers[i];
    std::string key = state_name(f.st);
    if (f.st == AT_BARRIER || f.st == AT_WARP) key += std::string(" ") + f.file + ":" + std::to_string(f.line);
    auto g = std::find_if(groups.begin(), groups.end(), [&](auto &p) { return p.first == key; });
    if (g == groups.end()) groups.push_back({key, {i}});
    else g->second.push_back(i);
  }
  std::string out;
  for (auto &g : groups) {
    if (!out.empty()) out += "; ";
    out += "threads ";
    auto &v = g.second;
    for (size_t a = 0; a < v.size();) {
      size_t b = a;
      while (b + 1 < v.size() && v[b + 1] == v[b] + 1) b++;
      if (a) out += ",";
      out += std::to_string(v[a]);
      if (b > a) out += "-" + std::to_string(v[b]);
      a = b + 1;
    }
    out += " " + g.first;
  }
  return out;
}

/* Completes the warp collectives whose lanes have all arrived; true if any did. */
bool release_warps(int n) {
  bool any = false;
  for (int base = 0; base < n; base += 32) {
    int lanes = std::min(32, n - base);
    unsigned exist = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1);
    for (int l = 0; l < lanes; l++) {
      Fiber &f = S.fibers[base + l];
      if (f.st != AT_WARP) continue;
      unsigned m = f.mask & exist;
      bool all = true;
      for (int k = 0; k < lanes; k++)
        if ((m >> k & 1) && S.fibers[base + k].st != AT_WARP) all = false;
      if (!all) continue;
      uint64_t ballot = 0;
      for (int k = 0; k < lanes; k++)
        if ((m >> k & 1) && S.fibers[base + k].val) ballot |= 1ull << k;
      for (int k = 0; k < lanes; k++) {
        if (!(m >> k & 1)) continue;
        Fiber &g = S.fibers[base + k];
        int w = g.width, seg = k & ~(w - 1), src = k;
        switch (g.op) {
          case OP_SHFL: src = seg + (g.arg & (w - 1)); break;
          case OP_XOR: src = k ^ g.arg; if (src < seg || src >= seg + w) src = k; break;
          case OP_DOWN: src = k + g.arg; if (src >= seg + w) src = k; break;
          case OP_UP: src = k - g.arg; if (src < seg) src = k; break;
          default: break;
        }
        if (g.op == OP_GATHER) {
          // every lane's bytes are read now, while the whole warp waits (one warp instruction)
          for (int src = 0; src < 32; src++) {
            unsigned char *to = (unsigned char *)g.gout + (size_t)src * g.gn;
            const Fiber *s = src < lanes && (m >> src & 1) ? &S.fibers[base + src] : nullptr;
            if (s && s->op == OP_GATHER && s->gn == g.gn) memcpy(to, s->gin, g.gn);
            else memset(to, 0xFF, g.gn);  // a lane outside the mask: garbage
          }
          continue;
        }
        if (g.op == OP_BALLOT) g.result = ballot;
        else if (g.op == OP_ANY) g.result = ballot != 0;
        else if (g.op == OP_ALL) g.result = ballot == (uint64_t)m;
        else if (g.op == OP_SYNC) g.result = 0;
        // a source lane outside the mask gives garbage, as on the GPU it is undefined
        else g.result = (src < lanes && (m >> src & 1)) ? S.fibers[base + src].val : ~0ull;
      }
      for (int k = 0; k < lanes; k++)
        if (m >> k & 1) S.fibers[base + k].st = RUNNABLE;
      any = true;
    }
  }
  return any;
}

/* Runs one block to completion; false on a deadlock. The schedule: each pass
   runs the runnable fibers, each until it blocks, in a random order; some
   warps sit out one or more passes (drift); warp collectives complete after every pass,
   so the warps that ran move ahead of those that sat out; after a barrier one
   random warp may resume last (the laggard). */
bool run_block(int n) {
  for (int i = 0; i < n; i++) prepare(S.fibers[i]);
  int nwarps = (n + 31) / 32;
  int laggard = rand_below(2) ? (int)rand_below(nwarps) : -1;
  std::vector<int> order;
  std::vector<char> sits(nwarps);
  for (;;) {
    order.clear();
    for (int i = 0; i < n; i++)
      if (S.fibers[i].st == RUNNABLE) order.push_back(i);
    if (!order.empty()) {
      for (size_t i = order.size(); i > 1; i--) std::swap(order[i - 1], order[rand_below((unsigned)i)]);
      // drift: a running warp starts to sit out with probability 1/4, a
      // sitting one stays out with probability 3/4 (so a warp may fall
      // several collectives behind the others), unless all would sit
      bool someone = false;
      for (int w = 0; w < nwarps; w++) sits[w] = sits[w] ? rand_below(4) != 0 : rand_below(4) == 0;
      for (int i : order) someone |= !sits[i / 32];
      if (!someone) std::fill(sits.begin(), sits.end(), 0);
      if (laggard >= 0)  // the laggard's fibers go last, in their shuffled order
        std::stable_partition(order.begin(), order.end(), [&](int i) { return i / 32 != laggard; });
      laggard = -1;
      for (int i : order)
        if (!sits[i / 32]) resume(S.fibers[i]);
      // a warp whose lanes have all reached a collective goes on at once,
      // while warps that sat out have not yet run up to theirs: so a warp can
      // overtake another's reads of shared memory between two barriers
      release_warps(n);
      continue;
    }
    if (release_warps(n)) continue;
    int at_barrier = 0, done = 0;
    for (int i = 0; i < n; i++) {
      at_barrier += S.fibers[i].st == AT_BARRIER;
      done += S.fibers[i].st == DONE;
    }
    if (done == n) return true;
    if (at_barrier == n) {
      for (int i = 0; i < n; i++) S.fibers[i].st = RUNNABLE;
      laggard = rand_below(2) ? (int)rand_below(nwarps) : -1;
      continue;
    }
    return false;  // nobody can move: the caller reports who waits where
  }
}

} // namespace

void set_seed(uint64_t seed) {
  S.rng = seed;
  S.seeded = true;
}

const char *last_message() { return S.message.c_str(); }

void *dynamic_smem() { return S.smem.data(); }

void syncthreads(const char *file, int line) {
  if (!S.cur) { fprintf(stderr, "cudaemu: __syncthreads outside a kernel at %s:%d\n", file, line); abort(); }
  Fiber &f = *S.cur;
  f.st = AT_BARRIER;
  f.file = file;
  f.line = line;
  yield_to_scheduler();
}

uint64_t warp_collective(int op, unsigned mask, uint64_t bits, int arg, int width, const char *file, int line) {
  if (!S.cur) { fprintf(stderr, "cudaemu: warp collective outside a kernel at %s:%d\n", file, line); abort(); }
  Fiber &f = *S.cur;
  if (width < 1 || width > 32 || (width & (width - 1))) {
    fprintf(stderr, "cudaemu: width %d is not a power of two up to 32 at %s:%d\n", width, file, line);
    abort();
  }
  f.st = AT_WARP;
  f.op = op;
  f.mask = mask;
  f.val = bits;
  f.arg = arg;
  f.width = width;
  f.file = file;
  f.line = line;
  yield_to_scheduler();
  return f.result;
}

void warp_gather(unsigned mask, const void *in, size_t n, void *all, const char *file, int line) {
  if (!S.cur) { fprintf(stderr, "cudaemu: warp collective outside a kernel at %s:%d\n", file, line); abort(); }
  Fiber &f = *S.cur;
  f.st = AT_WARP;
  f.op = OP_GATHER;
  f.mask = mask;
  f.val = 0;
  f.gin = in;
  f.gout = all;
  f.gn = n;
  f.file = file;
  f.line = line;
  yield_to_scheduler();
}

namespace {
int timer_depth = 0;
double timer_start = 0, device_seconds = 0;
double wall() {  // this thread's CPU time: the emulator runs here, and time descheduled is nobody's
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
}  // namespace

device_timer::device_timer() {
  if (timer_depth++ == 0) timer_start = wall();
}
device_timer::~device_timer() {
  if (--timer_depth == 0) device_seconds += wall() - timer_start;
}

cudaError_t run_grid(const char *file, int line, dim3 grid, dim3 block, size_t smem, const std::function<void()> &body) {
  device_timer timer;
  ensure_seed();
  if (S.cur) { fprintf(stderr, "cudaemu: launch from inside a kernel at %s:%d\n", file, line); abort(); }
  uint64_t n = (uint64_t)block.x * block.y * block.z;
  if (n == 0 || n > 1024 || grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535 ||
      smem > (227u << 10)) {
    fail(cudaErrorInvalidConfiguration, "cudaemu: invalid launch configuration at " + std::string(file) + ":" +
                                            std::to_string(line));
    return cudaErrorInvalidConfiguration;
  }
  if (S.fibers.size() < n) S.fibers.resize(n);
  for (unsigned i = 0; i < n; i++)
    S.fibers[i].tid = i, S.fibers[i].idx = uint3{i % block.x, i / block.x % block.y, (unsigned)(i / (block.x * block.y))};
  S.body = &body;
  cur_blockDim = block;
  cur_gridDim = grid;
  S.smem.assign(smem ? smem : 1, 0xFF);
  for (unsigned z = 0; z < grid.z; z++)
    for (unsigned y = 0; y < grid.y; y++)
      for (unsigned x = 0; x < grid.x; x++) {
        cur_blockIdx = uint3{x, y, z};
        std::fill(S.smem.begin(), S.smem.end(), (unsigned char)0xFF);
        if (!run_block((int)n)) {
          fail(cudaErrorLaunchFailure, "cudaemu: deadlock in block (" + std::to_string(x) + "," + std::to_string(y) +
                                           "," + std::to_string(z) + ") of the launch at " + file + ":" +
                                           std::to_string(line) + ": " + describe_block((int)n));
          S.body = nullptr;
          return cudaErrorLaunchFailure;
        }
      }
  S.body = nullptr;
  S.grids++;
  return cudaSuccess;
}

namespace {
size_t env_size(const char *name, size_t dflt) {
  const char *v = getenv(name);
  if (!v || !*v) return dflt;
  char *end = nullptr;
  unsigned long long x = strtoull(v, &end, 10);
  switch (*end) {
    case 'K': case 'k': x <<= 10; break;
    case 'M': case 'm': x <<= 20; break;
    case 'G': case 'g': x <<= 30; break;
  }
  return (size_t)x;
}
struct Mem {
  size_t capacity = env_size("CUDAEMU_MEMORY", (size_t)16 << 30);
  size_t used = 0;
  std::vector<std::pair<void *, size_t>> blocks;  // live allocations, for Free's size
  int devices = (int)env_size("CUDAEMU_DEVICES", 1);
  int current = 0;
};
Mem &mem() { static Mem m; return m; }
}  // namespace

/* --- graph capture ---------------------------------------------------- */

namespace {
/* One recorded piece of work: a grid, a copy, a memset or host work. */
struct Op {
  enum { GRID, COPY, SET, HOST } kind;
  const char *file = "";
  int line = 0;
  dim3 grid, block;
  size_t smem = 0;
  std::function<void()> body;  // GRID: one thread's body, HOST: the work
  void *dst = nullptr;
  const void *src = nullptr;
  size_t n = 0;
  int value = 0;
};
struct Capture {
  cudaStream_t stream = nullptr;  // the capturing stream, nullptr when none
  cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
  bool invalid = false;
  std::vector<Op> ops;
} Cap;
/* this thread's interaction mode (cudaThreadExchangeStreamCaptureMode) */
thread_local cudaStreamCaptureMode thread_mode = cudaStreamCaptureModeGlobal;
uintptr_t next_stream = 0x5000;  // fake stream handles: distinct, never dereferenced

/* Fails an operation that a capture forbids and invalidates the capture. */
cudaError_t invalidate(cudaError_t e, const std::string &what) {
  Cap.invalid = true;
  S.message = "cudaemu: " + what + " while a stream is being captured (the capture is invalidated)";
  return e;
}
/* Unsafe calls (cudaMalloc, cudaFree) are refused during a capture unless the mode is relaxed. */
bool unsafe_refused() {
  return Cap.stream && Cap.mode != cudaStreamCaptureModeRelaxed && thread_mode != cudaStreamCaptureModeRelaxed;
}
cudaError_t record(cudaStream_t stream, Op op, const char *what) {
  if (stream != Cap.stream) return invalidate(cudaErrorStreamCaptureImplicit, std::string(what) + " on another stream");
  if (!Cap.invalid) Cap.ops.push_back(std::move(op));
  return cudaSuccess;
}
}  // namespace

bool capturing(cudaStream_t s) { return Cap.stream && (!s || s == Cap.stream); }

uint64_t grids_run() { return S.grids; }

cudaError_t record_launch(const char *file, int line, cudaStream_t stream, dim3 grid, dim3 block, size_t smem,
                          std::function<void()> body) {
  Op op;
  op.kind = Op::GRID;
  op.file = file;
  op.line = line;
  op.grid = grid;
  op.block = block;
  op.smem = smem;
  op.body = std::move(body);
  cudaError_t e = record(stream, std::move(op), "a kernel launch");
  if (e != cudaSuccess) S.last_error = e;  // a launch reports through cudaGetLastError
  return e;
}

cudaError_t enqueue(cudaStream_t stream, std::function<void()> work, const char *what) {
  if (!Cap.stream) {
    device_timer timer;
    work();
    return cudaSuccess;
  }
  Op op;
  op.kind = Op::HOST;
  op.body = std::move(work);
  return record(stream, std::move(op), what);
}

cudaError_t StreamCreate(cudaStream_t *s) { return StreamCreateWithFlags(s, 0); }
cudaError_t StreamCreateWithFlags(cudaStream_t *s, unsigned) {
  *s = (cudaStream_t)(next_stream += 16);
  return cudaSuccess;
}
cudaError_t StreamDestroy(cudaStream_t s) {
  if (s && s == Cap.stream) return invalidate(cudaErrorStreamCaptureUnsupported, "cudaStreamDestroy of the capturing stream");
  return cudaSuccess;
}
cudaError_t StreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode) {
  if (!s) {
    S.message = "cudaemu: the legacy stream cannot be captured";
    return cudaErrorStreamCaptureUnsupported;
  }
  if (Cap.stream) {
    S.message = "cudaemu: a stream is already being captured";
    return cudaErrorIllegalState;
  }
  Cap.stream = s;
  Cap.mode = mode;
  Cap.invalid = false;
  Cap.ops.clear();
  return cudaSuccess;
}
cudaError_t StreamEndCapture(cudaStream_t s, cudaGraph_t *graph) {
  *graph = nullptr;
  if (!s || s != Cap.stream) {
    S.message = "cudaemu: cudaStreamEndCapture of a stream that is not capturing";
    return cudaErrorIllegalState;
  }
  Cap.stream = nullptr;
  if (Cap.invalid) {
    Cap.ops.clear();
    return cudaErrorStreamCaptureInvalidated;
  }
  *graph = reinterpret_cast<cudaGraph_t>(new std::vector<Op>(std::move(Cap.ops)));
  Cap.ops.clear();
  return cudaSuccess;
}
cudaError_t StreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus *status) {
  *status = s && s == Cap.stream ? (Cap.invalid ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive)
                                 : cudaStreamCaptureStatusNone;
  return cudaSuccess;
}
cudaError_t ThreadExchangeStreamCaptureMode(cudaStreamCaptureMode *mode) {
  std::swap(thread_mode, *mode);
  return cudaSuccess;
}
cudaError_t GraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long) {
  if (!graph) return cudaErrorInvalidValue;
  // an executable graph is a copy: the graph may be destroyed after instantiation
  *exec = reinterpret_cast<cudaGraphExec_t>(new std::vector<Op>(*reinterpret_cast<std::vector<Op> *>(graph)));
  return cudaSuccess;
}
cudaError_t GraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  device_timer timer;
  if (!exec) return cudaErrorInvalidValue;
  if (Cap.stream) return invalidate(cudaErrorStreamCaptureUnsupported, "cudaGraphLaunch");
  (void)stream;
  for (const Op &op : *reinterpret_cast<std::vector<Op> *>(exec)) {
    if (S.last_error != cudaSuccess) return S.last_error;  // a fault stops the graph, as on the GPU
    switch (op.kind) {
      case Op::GRID: run_grid(op.file, op.line, op.grid, op.block, op.smem, op.body); break;
      case Op::COPY: memmove(op.dst, op.src, op.n); break;
      case Op::SET: memset(op.dst, op.value, op.n); break;
      case Op::HOST: op.body(); break;
    }
  }
  return cudaSuccess;
}
cudaError_t GraphExecDestroy(cudaGraphExec_t exec) {
  delete reinterpret_cast<std::vector<Op> *>(exec);
  return cudaSuccess;
}
cudaError_t GraphDestroy(cudaGraph_t graph) {
  delete reinterpret_cast<std::vector<Op> *>(graph);
  return cudaSuccess;
}

cudaError_t Malloc(void **p, size_t n) {
  *p = nullptr;
  if (unsafe_refused()) return invalidate(cudaErrorStreamCaptureUnsupported, "cudaMalloc");
  Mem &M = mem();
  if (n > M.capacity - M.used) return cudaErrorMemoryAllocation;
  // exactly n bytes (no rounding up), so that ASan sees a write past the end
  void *m = nullptr;
  if (posix_memalign(&m, 256, n ? n : 1)) return cudaErrorMemoryAllocation;
  memset(m, 0xFF, n);  // device memory starts as garbage, never as zeros
  M.used += n;
  M.blocks.emplace_back(m, n);
  *p = m;
  return cudaSuccess;
}
cudaError_t Free(void *p) {
  if (unsafe_refused()) return invalidate(cudaErrorStreamCaptureUnsupported, "cudaFree");
  if (!p) return cudaSuccess;
  Mem &M = mem();
  for (size_t i = M.blocks.size(); i-- > 0;)
    if (M.blocks[i].first == p) {
      M.used -= M.blocks[i].second;
      M.blocks[i] = M.blocks.back();
      M.blocks.pop_back();
      free(p);
      return cudaSuccess;
    }
  return cudaErrorInvalidValue;
}
cudaError_t GetDeviceCount(int *n) { *n = mem().devices; return cudaSuccess; }
cudaError_t SetDevice(int d) {
  if (d < 0 || d >= mem().devices) return cudaErrorInvalidDevice;
  mem().current = d;
  return cudaSuccess;
}
cudaError_t GetDevice(int *d) { *d = mem().current; return cudaSuccess; }
cudaError_t MemGetInfo(size_t *free_bytes, size_t *total_bytes) {
  *free_bytes = mem().capacity - mem().used;
  *total_bytes = mem().capacity;
  return cudaSuccess;
}
cudaError_t MallocHost(void **p, size_t n) {
  *p = malloc(n ? n : 1);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t FreeHost(void *p) { free(p); return cudaSuccess; }
cudaError_t Memcpy(void *dst, const void *src, size_t n, cudaMemcpyKind) {
  // on the legacy stream, which waits for the capturing stream
  if (Cap.stream) return invalidate(cudaErrorStreamCaptureImplicit, "cudaMemcpy");
  if (S.last_error != cudaSuccess) return S.last_error;  // a pending fault fails the copy, as on the GPU
  if (n) memmove(dst, src, n);
  return cudaSuccess;
}
cudaError_t MemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind kind, cudaStream_t stream) {
  if (!Cap.stream) {
    if (S.last_error != cudaSuccess) return S.last_error;  // as Memcpy
    if (n) memmove(dst, src, n);
    return cudaSuccess;
  }
  // host memory is pageable here: a graph cannot copy from or to it
  if (kind != cudaMemcpyDeviceToDevice)
    return invalidate(cudaErrorStreamCaptureUnsupported, "cudaMemcpyAsync between host and device");
  Op op;
  op.kind = Op::COPY;
  op.dst = dst;
  op.src = src;
  op.n = n;
  return record(stream, std::move(op), "cudaMemcpyAsync");
}
cudaError_t Memset(void *p, int v, size_t n) {
  if (Cap.stream) return invalidate(cudaErrorStreamCaptureImplicit, "cudaMemset");
  if (n) memset(p, v, n);
  return cudaSuccess;
}
cudaError_t MemsetAsync(void *p, int v, size_t n, cudaStream_t stream) {
  if (!Cap.stream) {
    if (n) memset(p, v, n);
    return cudaSuccess;
  }
  Op op;
  op.kind = Op::SET;
  op.dst = p;
  op.value = v;
  op.n = n;
  return record(stream, std::move(op), "cudaMemsetAsync");
}
cudaError_t DeviceSynchronize() {
  if (Cap.stream) return invalidate(cudaErrorStreamCaptureUnsupported, "cudaDeviceSynchronize");
  return S.last_error;
}
cudaError_t StreamSynchronize(cudaStream_t) {
  if (Cap.stream) return invalidate(cudaErrorStreamCaptureUnsupported, "cudaStreamSynchronize");
  return S.last_error;
}
cudaError_t GetLastError() { cudaError_t e = S.last_error; S.last_error = cudaSuccess; return e; }
cudaError_t PeekAtLastError() { return S.last_error; }
const char *GetErrorString(cudaError_t e) {
  if (e == cudaSuccess) return "no error";
  if (!S.message.empty()) return S.message.c_str();  // the last failure's own words
  return e == cudaErrorLaunchFailure ? "unspecified launch failure" : "cudaemu error";
}

} // namespace cudaemu

/* A test's stand-in for an asynchronous kernel fault: the next synchronising
   call (cudaDeviceSynchronize, a device-to-host copy, cudaGetLastError)
   reports it, as the GPU reports a fault of a kernel that already returned. */
extern "C" void cudaemu_inject_fault(void) {
  cudaemu::S.last_error = cudaErrorLaunchFailure;
  cudaemu::S.message = "unspecified launch failure (injected by cudaemu_inject_fault)";
}

/* Seconds of CPU time (of the launching thread) spent running emulated device work (grids, replays, the
   emulated cuBLASLt) since the start. */
extern "C" double cudaemu_device_seconds(void) { return cudaemu::device_seconds; }

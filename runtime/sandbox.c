/* Running untrusted commands (generated programs and their tests) with
   limits, several at once: the process side of recipes/humaneval.lua.

   Each job is a process tree of its own:
     tide --fork--> keeper (its own process group; when the kernel allows, it
                    enters new user, network and pid namespaces)
                    --fork--> waiter (pid 1 of the new pid namespace)
                              --fork--> the command: rlimits set, cwd its own
                                        temporary directory, a clean
                                        environment, stdin /dev/null
   The waiter and the keeper pass the command's status up, so tide only ever
   reaps the keeper. Ending the job (its wall-clock deadline passed, or the
   command exited) kills the whole process group; inside a pid namespace the
   kernel also kills every process left in it when the waiter (its init)
   exits, even those that left the process group. Without namespaces
   (the kernel refused unshare) the group kill is what remains, which a
   candidate calling setsid() escapes: tide_sandbox_isolation_note says so.

   RLIMIT_NPROC does not bind root, so when tide runs as root each job runs
   under a uid of its own (TIDE_SANDBOX_UID_BASE + job id, no passwd entry
   needed), which also keeps a fork bomb's process count from starving the
   other jobs. For another user the limit is that user's current task count
   plus max_procs.

   Between fork and exec the children only make system calls (no malloc, no
   stdio): tide has OpenMP threads, and only async-signal-safe calls are
   defined in the child of a multithreaded process. Everything they need
   (paths, argv, the environment) is prepared before the fork. */
#define _GNU_SOURCE
#include "tide.h"
#include "error.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TIDE_SANDBOX_UID_BASE 0x70000000u
#define MAX_JOBS 1024
#define MAX_ARGS 256
#define DEFAULT_TAIL 4096
#define NS_FLAGS (CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWPID)

/* what the keeper and the command report on the info pipe before exec */
enum { STAGE_SETUID = 1, STAGE_UNSHARE, STAGE_FORK, STAGE_LIMITS, STAGE_CHDIR, STAGE_IO, STAGE_EXEC };

typedef struct tail {
  char *buf;     /* 2 * cap bytes; the last <= cap bytes written are kept */
  int64_t len;   /* bytes held */
  int64_t total; /* bytes written in all */
} tail;

typedef struct job {
  int32_t state;         /* 0 free, 1 running, 2 done (not yet returned by wait), 3 done and returned */
  pid_t pid;             /* the keeper, also the process group id */
  int fd[3];             /* stdout, stderr, info pipes' read ends (-1: closed) */
  tail out[3];
  double start, deadline, end;
  int32_t timed_out;
  int wstatus;
  char dir[256];
} job;

struct tide_sandbox {
  tide_sandbox_limits lim;
  int32_t isolated;      /* the namespaces are used */
  char note[256];        /* why not, when they are not */
  job *jobs;
  int32_t njobs;         /* slots allocated */
};

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int is_root(void) { return geteuid() == 0; }

/* Drops to uid (root only), then enters the namespaces; 0 or an errno. Child side. */
static int drop_and_unshare(uid_t uid, int isolate) {
  if (is_root()) {
    if (setgroups(0, NULL) != 0 || setresgid(uid, uid, uid) != 0 || setresuid(uid, uid, uid) != 0) return errno ? errno : EPERM;
  }
  if (isolate && unshare(NS_FLAGS) != 0) return errno ? errno : EPERM;
  return 0;
}

/* Whether the kernel lets a job's keeper enter the namespaces: tried once in a child. */
static void probe_isolation(tide_sandbox *s) {
  pid_t p = fork();
  if (p < 0) {
    snprintf(s->note, sizeof s->note, "no network isolation: fork failed to probe unshare (%s)", strerror(errno));
    return;
  }
  if (p == 0) {
    int e = drop_and_unshare(TIDE_SANDBOX_UID_BASE + MAX_JOBS, 1);
    _exit(e > 255 ? 255 : e);
  }
  int st = 0;
  while (waitpid(p, &st, 0) < 0 && errno == EINTR) {}
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
    s->isolated = 1;
    snprintf(s->note, sizeof s->note, "isolated: user, network and pid namespaces");
  } else {
    int e = WIFEXITED(st) ? WEXITSTATUS(st) : 0;
    snprintf(s->note, sizeof s->note,
             "no network isolation: the kernel refused unshare(CLONE_NEWUSER|CLONE_NEWNET|CLONE_NEWPID) (%s); "
             "commands run with rlimits and a process-group kill only", e ? strerror(e) : "probe killed");
  }
}

int tide_sandbox_new(const tide_sandbox_limits *limits, tide_sandbox **out) {
  if (!limits || !out) return tide_fail("sandbox_new: limits and out must not be NULL");
  *out = NULL;
  if (!(limits->timeout_s > 0) || limits->timeout_s > 1e6)
    return tide_fail("sandbox_new: timeout_s must be in (0, 1e6] seconds, got %g", limits->timeout_s);
  if (limits->cpu_s < 0 || limits->memory_bytes < 0 || limits->max_procs < 0 || limits->file_bytes < 0 ||
      limits->tail_bytes < 0 || limits->tail_bytes > (1 << 26))
    return tide_fail("sandbox_new: limits must be >= 0 (0: none) and tail_bytes at most 64 MiB");
  tide_sandbox *s = calloc(1, sizeof *s);
  if (!s) return tide_fail("sandbox_new: out of memory");
  s->lim = *limits;
  if (s->lim.tail_bytes == 0) s->lim.tail_bytes = DEFAULT_TAIL;
  if (limits->isolate) probe_isolation(s);
  else snprintf(s->note, sizeof s->note, "no network isolation: not asked for");
  *out = s;
  return 0;
}

int32_t tide_sandbox_isolation(const tide_sandbox *s) { return s ? s->isolated : 0; }

const char *tide_sandbox_isolation_note(const tide_sandbox *s) { return s ? s->note : ""; }

static void tail_free(tail *t) { free(t->buf); t->buf = NULL; t->len = t->total = 0; }

static void tail_add(tail *t, int64_t cap, const char *p, int64_t n) {
  t->total += n;
  if (n >= cap) { memcpy(t->buf, p + n - cap, (size_t)cap); t->len = cap; return; }
  if (t->len + n > 2 * cap) {  /* keep the last cap - n ... */
    int64_t keep = cap - n;
    memmove(t->buf, t->buf + t->len - keep, (size_t)keep);
    t->len = keep;
  }
  memcpy(t->buf + t->len, p, (size_t)n);
  t->len += n;
}

static void close_fd(int *fd) { if (*fd >= 0) { close(*fd); *fd = -1; } }

/* Reads what a job's pipes hold now, without blocking. */
static void drain(tide_sandbox *s, job *j) {
  char buf[65536];
  for (int k = 0; k < 3; k++) {
    for (int rounds = 0; j->fd[k] >= 0 && rounds < 64; rounds++) {  /* bounded: poll comes back for the rest */
      ssize_t n = read(j->fd[k], buf, sizeof buf);
      if (n > 0) { tail_add(&j->out[k], k == 2 ? 64 : s->lim.tail_bytes, buf, n); continue; }
      if (n == 0 || (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)) close_fd(&j->fd[k]);
      if (n < 0 && errno == EINTR) continue;
      break;
    }
  }
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *f) {
  (void)st; (void)f;
  if (flag == FTW_DP || flag == FTW_D || flag == FTW_DNR) rmdir(path);
  else unlink(path);
  return 0;
}

static int open_entry(const char *path, const struct stat *st, int flag, struct FTW *f) {
  (void)st; (void)f;
  if (flag == FTW_D || flag == FTW_DNR) chmod(path, 0700);  /* a command may have locked a folder */
  return 0;
}

static void remove_tree(const char *dir) {
  if (!dir[0]) return;
  nftw(dir, open_entry, 16, FTW_PHYS);
  nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Kills what is left of a job's process group, reaping the keeper; bounded. */
static void kill_group(job *j) {
  kill(-j->pid, SIGKILL);
  for (int i = 0; i < 200 && kill(-j->pid, 0) == 0; i++) {
    kill(-j->pid, SIGKILL);
    waitpid(j->pid, NULL, WNOHANG);
    struct timespec d = { 0, 1000000 };
    nanosleep(&d, NULL);
  }
}

/* The job's keeper has exited (status st): clean up and mark it done. */
static void finish(tide_sandbox *s, job *j, int st) {
  j->wstatus = st;
  j->end = now_s();
  kill_group(j);
  drain(s, j);
  for (int k = 0; k < 3; k++) close_fd(&j->fd[k]);
  remove_tree(j->dir);
  j->dir[0] = 0;
  j->state = 2;
}

/* The user's tasks (threads count, as RLIMIT_NPROC counts them), from /proc. */
static int64_t user_tasks(uid_t uid) {
  DIR *d = opendir("/proc");
  if (!d) return 0;
  int64_t n = 0;
  struct dirent *e;
  char path[64], line[256];
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    snprintf(path, sizeof path, "/proc/%.20s/status", e->d_name);
    FILE *f = fopen(path, "r");
    if (!f) continue;
    long ruid = -1, threads = 0;
    while (fgets(line, sizeof line, f)) {
      if (!strncmp(line, "Uid:", 4)) ruid = strtol(line + 4, NULL, 10);
      else if (!strncmp(line, "Threads:", 8)) threads = strtol(line + 8, NULL, 10);
    }
    fclose(f);
    if (ruid == (long)uid) n += threads;
  }
  closedir(d);
  return n;
}

/* Finds an executable the way execvp would, before the fork. */
static int resolve(const char *name, char *out, size_t cap) {
  if (strchr(name, '/')) {
    if (access(name, X_OK) != 0) return tide_fail("sandbox_start: %s is not an executable file (%s)", name, strerror(errno));
    snprintf(out, cap, "%s", name);
    return 0;
  }
  const char *path = getenv("PATH");
  if (!path) path = "/usr/local/bin:/usr/bin:/bin";
  for (const char *p = path; ; ) {
    const char *c = strchr(p, ':');
    size_t len = c ? (size_t)(c - p) : strlen(p);
    if (len > 0 && len + strlen(name) + 2 <= cap) {
      snprintf(out, cap, "%.*s/%s", (int)len, p, name);
      if (access(out, X_OK) == 0) return 0;
    }
    if (!c) break;
    p = c + 1;
  }
  return tide_fail("sandbox_start: %s was not found on PATH", name);
}

static void report(int fd, int stage, int err) {
  unsigned char m[3] = { 'E', (unsigned char)stage, (unsigned char)(err > 255 ? 255 : err) };
  ssize_t r = write(fd, m, 3);
  (void)r;
}

static void set_limit(int res, int64_t v) {
  if (v <= 0) return;
  struct rlimit r = { (rlim_t)v, (rlim_t)v };
  setrlimit(res, &r);
}

int tide_sandbox_start(tide_sandbox *s, const char *const *argv, int32_t argc, const char *file_name,
                       const char *file_data, int64_t file_len, int32_t *job_id) {
  if (!s || !argv || !job_id) return tide_fail("sandbox_start: sandbox, argv and job must not be NULL");
  *job_id = -1;
  if (argc < 1 || argc > MAX_ARGS) return tide_fail("sandbox_start: argc must be in [1, %d], got %d", MAX_ARGS, argc);
  for (int32_t i = 0; i < argc; i++)
    if (!argv[i]) return tide_fail("sandbox_start: argv[%d] is NULL", i);
  if (file_name && (!file_name[0] || strchr(file_name, '/') || !strcmp(file_name, ".") || !strcmp(file_name, "..")))
    return tide_fail("sandbox_start: file_name must be a plain file name, got '%s'", file_name);
  if (file_len < 0 || (file_len > 0 && !file_data)) return tide_fail("sandbox_start: file_len %lld without data", (long long)file_len);
  int32_t id = -1;
  for (int32_t i = 0; i < s->njobs; i++) if (s->jobs[i].state == 0) { id = i; break; }
  if (id < 0) {
    if (s->njobs >= MAX_JOBS) return tide_fail("sandbox_start: %d jobs are held; release finished ones", MAX_JOBS);
    int32_t n = s->njobs ? s->njobs * 2 : 16;
    if (n > MAX_JOBS) n = MAX_JOBS;
    job *nj = realloc(s->jobs, (size_t)n * sizeof *nj);
    if (!nj) return tide_fail("sandbox_start: out of memory");
    memset(nj + s->njobs, 0, (size_t)(n - s->njobs) * sizeof *nj);
    id = s->njobs;
    s->jobs = nj;
    s->njobs = n;
  }
  job *j = &s->jobs[id];
  char exe[4096];
  TIDE_TRY(resolve(argv[0], exe, sizeof exe));
  /* the job's folder and file */
  const char *tmp = getenv("TMPDIR");
  if (!tmp || !tmp[0] || strlen(tmp) > 200) tmp = "/tmp";
  snprintf(j->dir, sizeof j->dir, "%s/tide-sandbox-XXXXXX", tmp);
  if (!mkdtemp(j->dir)) { int e = errno; j->dir[0] = 0; return tide_fail("sandbox_start: cannot make a temporary folder in %s (%s)", tmp, strerror(e)); }
  uid_t uid = TIDE_SANDBOX_UID_BASE + (uid_t)id;
  int fail = 0;
  char fpath[512];
  if (file_name) {
    snprintf(fpath, sizeof fpath, "%s/%s", j->dir, file_name);
    int fd = open(fpath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    int64_t done = 0;
    while (fd >= 0 && done < file_len) {
      ssize_t w = write(fd, file_data + done, (size_t)(file_len - done));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) break;
      done += w;
    }
    if (fd < 0 || done < file_len) fail = tide_fail("sandbox_start: cannot write %s (%s)", fpath, strerror(errno));
    if (fd >= 0) close(fd);
    if (!fail && is_root() && chown(fpath, uid, uid) != 0) fail = tide_fail("sandbox_start: chown %s: %s", fpath, strerror(errno));
  }
  if (!fail && is_root() && chown(j->dir, uid, uid) != 0) fail = tide_fail("sandbox_start: chown %s: %s", j->dir, strerror(errno));
  /* everything the children need, made before the fork */
  char *args[MAX_ARGS + 1];
  args[0] = exe;
  for (int32_t i = 1; i < argc; i++) args[i] = (char *)argv[i];
  args[argc] = NULL;
  char env_home[300], env_tmp[300];
  snprintf(env_home, sizeof env_home, "HOME=%s", j->dir);
  snprintf(env_tmp, sizeof env_tmp, "TMPDIR=%s", j->dir);
  char *envp[] = { "PATH=/usr/local/bin:/usr/bin:/bin", env_home, env_tmp, "LANG=C.UTF-8",
                   "PYTHONDONTWRITEBYTECODE=1", NULL };
  int64_t nproc = 0;
  if (s->lim.max_procs > 0) nproc = is_root() ? s->lim.max_procs : user_tasks(getuid()) + s->lim.max_procs;
  int p_out[2] = { -1, -1 }, p_err[2] = { -1, -1 }, p_info[2] = { -1, -1 };
  if (!fail && (pipe2(p_out, O_CLOEXEC) || pipe2(p_err, O_CLOEXEC) || pipe2(p_info, O_CLOEXEC)))
    fail = tide_fail("sandbox_start: pipe: %s", strerror(errno));
  pid_t pid = -1, parent = getpid();
  if (!fail) {
    pid = fork();
    if (pid < 0) fail = tide_fail("sandbox_start: fork: %s", strerror(errno));
  }
  if (pid == 0) {
    /* the keeper */
    int info = p_info[1];
    setpgid(0, 0);
    int e = drop_and_unshare(uid, s->isolated);
    if (e) { report(info, is_root() && e == EPERM ? STAGE_SETUID : STAGE_UNSHARE, e); _exit(127); }
    prctl(PR_SET_PDEATHSIG, SIGKILL);  /* after the uid change, which clears it */
    if (getppid() != parent) _exit(127);  /* tide died before the prctl */
    /* the waiter: pid 1 of the new pid namespace, so that the command is
       not (an init ignores the signals it sends itself: abort() would end
       in SIGSEGV); when it exits the kernel kills what is left in there */
    pid_t w = fork();
    if (w < 0) { report(info, STAGE_FORK, errno); _exit(127); }
    if (w > 0) {
      close(p_out[1]); close(p_err[1]);
      int wst = 0;
      while (waitpid(w, &wst, 0) < 0) {
        if (errno != EINTR) _exit(127);
      }
      _exit(WIFEXITED(wst) ? WEXITSTATUS(wst) : 128 + WTERMSIG(wst));
    }
    pid_t c = fork();
    if (c < 0) { report(info, STAGE_FORK, errno); _exit(127); }
    if (c == 0) {
      /* the command */
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, NULL);
      signal(SIGPIPE, SIG_DFL);
      signal(SIGINT, SIG_DFL);
      signal(SIGTERM, SIG_DFL);
      int devnull = open("/dev/null", O_RDONLY);
      if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(p_out[1], 1) < 0 || dup2(p_err[1], 2) < 0) {
        report(info, STAGE_IO, errno); _exit(127);
      }
      if (chdir(j->dir) != 0) { report(info, STAGE_CHDIR, errno); _exit(127); }
      /* below tide's priority: a candidate spinning in many processes must
         not starve the harness that enforces its deadline */
      setpriority(PRIO_PROCESS, 0, 5);
      set_limit(RLIMIT_CPU, s->lim.cpu_s);
      set_limit(RLIMIT_AS, s->lim.memory_bytes);
      set_limit(RLIMIT_FSIZE, s->lim.file_bytes);
      set_limit(RLIMIT_NPROC, nproc);
      struct rlimit nocore = { 0, 0 };  /* a crash must not write a core file */
      setrlimit(RLIMIT_CORE, &nocore);
      execve(exe, args, envp);
      report(info, STAGE_EXEC, errno);
      _exit(127);
    }
    close(p_out[1]); close(p_err[1]);
    int st = 0;
    while (waitpid(c, &st, 0) < 0) {
      if (errno != EINTR) _exit(127);
    }
    if (WIFSIGNALED(st)) {
      unsigned char m[2] = { 'S', (unsigned char)WTERMSIG(st) };
      ssize_t r = write(info, m, 2);
      (void)r;
      _exit(128 + WTERMSIG(st));
    }
    _exit(WEXITSTATUS(st));
  }
  if (p_out[1] >= 0) close(p_out[1]);
  if (p_err[1] >= 0) close(p_err[1]);
  if (p_info[1] >= 0) close(p_info[1]);
  if (fail) {
    int *fds[3] = { &p_out[0], &p_err[0], &p_info[0] };
    for (int k = 0; k < 3; k++) close_fd(fds[k]);
    remove_tree(j->dir);
    j->dir[0] = 0;
    return -1;
  }
  setpgid(pid, pid);  /* also here, so that a kill right after start reaches the group */
  j->pid = pid;
  j->fd[0] = p_out[0]; j->fd[1] = p_err[0]; j->fd[2] = p_info[0];
  for (int k = 0; k < 3; k++) {
    fcntl(j->fd[k], F_SETFL, O_NONBLOCK);
    int64_t cap = k == 2 ? 64 : s->lim.tail_bytes;
    j->out[k].buf = malloc((size_t)(2 * cap));
    j->out[k].len = j->out[k].total = 0;
  }
  if (!j->out[0].buf || !j->out[1].buf || !j->out[2].buf) {
    kill(-pid, SIGKILL);
    waitpid(pid, NULL, 0);
    for (int k = 0; k < 3; k++) { close_fd(&j->fd[k]); tail_free(&j->out[k]); }
    remove_tree(j->dir);
    j->dir[0] = 0;
    return tide_fail("sandbox_start: out of memory");
  }
  j->start = now_s();
  j->deadline = j->start + s->lim.timeout_s;
  j->timed_out = 0;
  j->wstatus = 0;
  j->state = 1;
  *job_id = id;
  return 0;
}

int32_t tide_sandbox_running(const tide_sandbox *s) {
  int32_t n = 0;
  if (s) for (int32_t i = 0; i < s->njobs; i++) n += s->jobs[i].state == 1;
  return n;
}

/* Reaps exited keepers and kills those past their deadline. */
static void check_jobs(tide_sandbox *s) {
  double t = now_s();
  for (int32_t i = 0; i < s->njobs; i++) {
    job *j = &s->jobs[i];
    if (j->state != 1) continue;
    int st = 0;
    pid_t r = waitpid(j->pid, &st, WNOHANG);
    if (r == j->pid) { finish(s, j, st); continue; }
    if (t >= j->deadline) {
      j->timed_out = 1;
      kill(-j->pid, SIGKILL);
      while (waitpid(j->pid, &st, 0) < 0 && errno == EINTR) {}
      finish(s, j, st);
    }
  }
}

static int32_t next_done(tide_sandbox *s) {
  for (int32_t i = 0; i < s->njobs; i++)
    if (s->jobs[i].state == 2) { s->jobs[i].state = 3; return i; }
  return -1;
}

int tide_sandbox_wait(tide_sandbox *s, double max_wait_s, int32_t *job_id) {
  if (!s || !job_id) return tide_fail("sandbox_wait: sandbox and job must not be NULL");
  *job_id = -1;
  if (!(max_wait_s >= 0) || max_wait_s > 1e6) return tide_fail("sandbox_wait: max_wait_s must be in [0, 1e6], got %g", max_wait_s);
  double until = now_s() + max_wait_s;
  struct pollfd fds[3 * 64];
  for (;;) {
    check_jobs(s);
    int32_t d = next_done(s);
    if (d >= 0) { *job_id = d; return 0; }
    double t = now_s();
    if (t >= until || tide_sandbox_running(s) == 0) return 0;
    /* wait for output, a deadline or the end of max_wait, at most 20 ms:
       a keeper's exit shows on no descriptor while a stray holds its pipes */
    double wait = until - t;
    int nf = 0;
    for (int32_t i = 0; i < s->njobs; i++) {
      job *j = &s->jobs[i];
      if (j->state != 1) continue;
      if (j->deadline - t < wait) wait = j->deadline - t;
      for (int k = 0; k < 3 && nf < (int)(sizeof fds / sizeof fds[0]); k++)
        if (j->fd[k] >= 0) { fds[nf].fd = j->fd[k]; fds[nf].events = POLLIN; fds[nf].revents = 0; nf++; }
    }
    if (wait > 0.02) wait = 0.02;
    if (wait < 0) wait = 0;
    poll(fds, (nfds_t)nf, (int)(wait * 1000) + 1);
    for (int32_t i = 0; i < s->njobs; i++)
      if (s->jobs[i].state == 1) drain(s, &s->jobs[i]);
  }
}

static job *done_job(const tide_sandbox *s, int32_t id, const char *what) {
  if (!s) { tide_fail("%s: sandbox is NULL", what); return NULL; }
  if (id < 0 || id >= s->njobs || s->jobs[id].state == 0) { tide_fail("%s: no job %d", what, id); return NULL; }
  return &s->jobs[id];
}

int tide_sandbox_result(const tide_sandbox *s, int32_t id, tide_sandbox_outcome *out) {
  job *j = done_job(s, id, "sandbox_result");
  if (!j || !out) return j ? tide_fail("sandbox_result: out is NULL") : -1;
  memset(out, 0, sizeof *out);
  out->state = j->state == 1 ? 1 : 2;
  out->timed_out = j->timed_out;
  out->wall_s = (j->state == 1 ? now_s() : j->end) - j->start;
  out->stdout_bytes = j->out[0].total;
  out->stderr_bytes = j->out[1].total;
  out->exit_code = -1;
  if (j->state == 1) return 0;
  /* the info pipe: 'E' stage errno when the command never ran, 'S' sig when it was killed */
  const unsigned char *m = (const unsigned char *)j->out[2].buf;
  int64_t n = j->out[2].len;
  if (n >= 3 && m[0] == 'E') { out->start_stage = m[1]; out->start_error = m[2] ? m[2] : -1; return 0; }
  if (n >= 2 && m[0] == 'S') { out->signal = m[1]; return 0; }
  if (WIFSIGNALED(j->wstatus)) { out->signal = WTERMSIG(j->wstatus); return 0; }  /* the keeper itself: a timeout's kill */
  if (WIFEXITED(j->wstatus)) out->exit_code = WEXITSTATUS(j->wstatus);
  return 0;
}

const char *tide_sandbox_output(const tide_sandbox *s, int32_t id, int32_t stream, int64_t *len) {
  job *j = done_job(s, id, "sandbox_output");
  if (len) *len = 0;
  if (!j) return NULL;
  if (stream != 1 && stream != 2) { tide_fail("sandbox_output: stream must be 1 (stdout) or 2 (stderr), got %d", stream); return NULL; }
  tail *t = &j->out[stream - 1];
  int64_t cap = s->lim.tail_bytes, n = t->len < cap ? t->len : cap;
  if (len) *len = n;
  return t->buf ? t->buf + t->len - n : "";
}

int tide_sandbox_release(tide_sandbox *s, int32_t id) {
  job *j = done_job(s, id, "sandbox_release");
  if (!j) return -1;
  if (j->state == 1) {
    kill(-j->pid, SIGKILL);
    int st = 0;
    while (waitpid(j->pid, &st, 0) < 0 && errno == EINTR) {}
    finish(s, j, st);
  }
  for (int k = 0; k < 3; k++) tail_free(&j->out[k]);
  memset(j, 0, sizeof *j);
  return 0;
}

void tide_sandbox_free(tide_sandbox *s) {
  if (!s) return;
  for (int32_t i = 0; i < s->njobs; i++)
    if (s->jobs[i].state != 0) tide_sandbox_release(s, i);
  free(s->jobs);
  free(s);
}

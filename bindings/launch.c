/* `tide launch`'s process supervisor: starts the ranks' processes, copies
   their output line by line with each line prefixed by its rank, stops them
   all when one fails, and reports the first failure's exit code. The command
   lines are built in Lua (lua/tide/dist/launch.lua); this file only runs
   them, since starting and watching processes needs fork, pipes and poll.

   Two shapes: n processes started here, the output of process i prefixed
   with prefixes[i]; or one process (mpirun --tag-output) whose lines carry
   Open MPI's tags, "[1,3]<stdout>:text", rewritten as "[rank 3] text". */
#include "host.h"
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { LINE_CAP = 65536 };  /* a longer line is passed on in pieces, each prefixed */

typedef struct {
  int fd;                /* read end, -1 once at EOF */
  FILE *to;              /* stdout or stderr */
  const char *prefix;    /* direct mode: the rank's prefix */
  char buf[LINE_CAP];
  size_t len;
} stream;

static volatile sig_atomic_t got_signal;
static void on_signal(int sig) { got_signal = sig; }

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Length of an Open MPI output tag "[J,R]<name>:" at s (0 if none); writes R. */
static size_t mpi_tag(const char *s, size_t n, long *rank) {
  if (n < 5 || s[0] != '[') return 0;
  size_t i = 1;
  while (i < n && s[i] >= '0' && s[i] <= '9') i++;
  if (i == 1 || i >= n || s[i] != ',') return 0;
  size_t r0 = ++i;
  long r = 0;
  while (i < n && s[i] >= '0' && s[i] <= '9' && i - r0 < 9) r = r * 10 + (s[i++] - '0');
  if (i == r0 || i + 1 >= n || s[i] != ']' || s[i + 1] != '<') return 0;
  i += 2;
  while (i < n && s[i] >= 'a' && s[i] <= 'z') i++;
  if (i + 1 >= n || s[i] != '>' || s[i + 1] != ':') return 0;
  *rank = r;
  return i + 2;
}

/* Writes one line (without its newline) with the prefix for its rank. */
static void emit(stream *s, const char *line, size_t n, int tagged) {
  if (!tagged) {
    fprintf(s->to, "%s%.*s\n", s->prefix, (int)n, line);
    return;
  }
  if (n == 0) fputc('\n', s->to);
  /* a rank's unterminated output runs into the next tag: split there */
  while (n > 0) {
    long rank = -1;
    size_t t = mpi_tag(line, n, &rank);
    size_t start = t, end = start;
    while (end < n) {
      long dummy;
      if (end > start && line[end] == '[' && mpi_tag(line + end, n - end, &dummy)) break;
      end++;
    }
    if (t) fprintf(s->to, "[rank %ld] %.*s\n", rank, (int)(end - start), line + start);
    else fprintf(s->to, "%.*s\n", (int)(end - start), line + start);
    line += end;
    n -= end;
  }
}

/* Reads what is available on s and emits its complete lines; 0 at EOF. */
static int pump(stream *s, int tagged) {
  ssize_t got = read(s->fd, s->buf + s->len, sizeof s->buf - s->len);
  if (got < 0 && (errno == EINTR || errno == EAGAIN)) return 1;
  if (got <= 0) {
    if (s->len) emit(s, s->buf, s->len, tagged);
    s->len = 0;
    close(s->fd);
    s->fd = -1;
    return 0;
  }
  s->len += (size_t)got;
  size_t start = 0;
  for (size_t i = 0; i < s->len; i++) {
    if (s->buf[i] != '\n') continue;
    emit(s, s->buf + start, i - start, tagged);
    start = i + 1;
  }
  if (start == 0 && s->len == sizeof s->buf) start = s->len, emit(s, s->buf, s->len, tagged);
  memmove(s->buf, s->buf + start, s->len - start);
  s->len -= start;
  fflush(s->to);
  return 1;
}

int tide_launch_run(int32_t n, char *const *const *argvs, char *const *const *envs, const char *const *prefixes,
                    int32_t tagged, double grace_s) {
  if (n < 1 || n > 4096) {
    fprintf(stderr, "tide launch: %d processes is outside 1..4096\n", (int)n);
    return 2;
  }
  pid_t *pids = calloc((size_t)n, sizeof *pids);
  int *alive = calloc((size_t)n, sizeof *alive);
  stream *ss = calloc(2 * (size_t)n, sizeof *ss);
  struct pollfd *pfd = calloc(2 * (size_t)n, sizeof *pfd);
  if (!pids || !alive || !ss || !pfd) {
    fprintf(stderr, "tide launch: out of memory\n");
    free(pids); free(alive); free(ss); free(pfd);
    return 2;
  }
  struct sigaction sa = { .sa_handler = on_signal }, old_int, old_term;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  fflush(stdout);
  fflush(stderr);
  int status = 0, failed = -1, running = 0;
  for (int32_t i = 0; i < n; i++) {
    int out[2], err[2];
    if (pipe(out) != 0 || pipe(err) != 0) {
      fprintf(stderr, "tide launch: pipe: %s\n", strerror(errno));
      status = 2;
      break;
    }
    pid_t pid = fork();
    if (pid < 0) {
      fprintf(stderr, "tide launch: fork: %s\n", strerror(errno));
      close(out[0]); close(out[1]); close(err[0]); close(err[1]);
      status = 2;
      break;
    }
    if (pid == 0) {
      signal(SIGINT, SIG_DFL);
      signal(SIGTERM, SIG_DFL);
      dup2(out[1], 1);
      dup2(err[1], 2);
      close(out[0]); close(out[1]); close(err[0]); close(err[1]);
      for (int j = 0; 2 * j < 2 * i; j++) {  /* the earlier ranks' read ends */
        if (ss[2 * j].fd >= 0) close(ss[2 * j].fd);
        if (ss[2 * j + 1].fd >= 0) close(ss[2 * j + 1].fd);
      }
      for (char *const *e = envs[i]; e && *e; e++) putenv(*e);
      execvp(argvs[i][0], argvs[i]);
      fprintf(stderr, "tide launch: cannot run %s: %s\n", argvs[i][0], strerror(errno));
      _exit(127);
    }
    close(out[1]);
    close(err[1]);
    pids[i] = pid;
    alive[i] = 1;
    running++;
    ss[2 * i] = (stream){ .fd = out[0], .to = stdout, .prefix = prefixes[i] };
    ss[2 * i + 1] = (stream){ .fd = err[0], .to = stderr, .prefix = prefixes[i] };
  }
  if (status != 0) failed = -2;  /* could not start them all: stop the ones running */
  double kill_at = 0;
  int open_fds = 2 * running;
  int forwarded = 0;
  if (failed == -2) {
    for (int32_t i = 0; i < n; i++) if (alive[i]) kill(pids[i], SIGTERM);
    kill_at = now_s() + grace_s;
  }
  while (running > 0 || open_fds > 0) {
    int m = 0;
    for (int32_t i = 0; i < 2 * n; i++) {
      if (ss[i].fd < 0) continue;
      pfd[m].fd = ss[i].fd;
      pfd[m].events = POLLIN;
      pfd[m].revents = 0;
      m++;
    }
    int rc = m ? poll(pfd, (nfds_t)m, 100) : (usleep(100000), 0);
    if (rc > 0) {
      int k = 0;
      for (int32_t i = 0; i < 2 * n; i++) {
        if (ss[i].fd < 0) continue;
        if (pfd[k].revents & (POLLIN | POLLHUP | POLLERR)) {
          if (!pump(&ss[i], tagged)) open_fds--;
        }
        k++;
      }
    }
    if (got_signal == SIGTERM && !forwarded) {
      /* a SIGTERM to this process is passed on; Ctrl-C's SIGINT reached the ranks from the terminal
         already (one process group), and a second one would cut short what they do on the first */
      for (int32_t i = 0; i < n; i++) if (alive[i]) kill(pids[i], SIGTERM);
      forwarded = 1;
      if (!kill_at) kill_at = now_s() + grace_s;
      if (!status) status = 128 + SIGTERM;
    }
    for (int32_t i = 0; i < n; i++) {
      if (!alive[i]) continue;
      int ws = 0;
      pid_t w = waitpid(pids[i], &ws, WNOHANG);
      if (w != pids[i]) continue;
      alive[i] = 0;
      running--;
      int code = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + (WIFSIGNALED(ws) ? WTERMSIG(ws) : 0);
      if (code != 0 && failed == -1 && !forwarded) {
        failed = i;
        status = code;
        if (!tagged && n > 1) {
          if (WIFSIGNALED(ws))
            fprintf(stderr, "tide launch: rank %d (pid %d) was killed by signal %d (%s); stopping the other ranks\n",
                    (int)i, (int)pids[i], WTERMSIG(ws), strsignal(WTERMSIG(ws)));
          else
            fprintf(stderr, "tide launch: rank %d (pid %d) exited with code %d; stopping the other ranks\n",
                    (int)i, (int)pids[i], code);
        }
        for (int32_t j = 0; j < n; j++) if (alive[j]) kill(pids[j], SIGTERM);
        kill_at = now_s() + grace_s;
      }
    }
    if (kill_at && now_s() > kill_at) {
      for (int32_t i = 0; i < n; i++) if (alive[i]) kill(pids[i], SIGKILL);
      kill_at = 0;
    }
  }
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  fflush(stdout);
  fflush(stderr);
  free(pids); free(alive); free(ss); free(pfd);
  return status;
}

/* The REPL front end: terminal, line editing, history, completion and Ctrl-C.
   What a line means (complete chunk or not, expression or statement, how to
   show results, what completes a word) is decided in lua/tide/repl.lua; this
   file only moves lines between the terminal and that module. */
#include "host.h"
#include <lauxlib.h>
#include <editline/readline.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <wchar.h>

/* libedit's callbacks take no user pointer, so the state they need is here. */
static lua_State *repl_L;
static int session_ref = LUA_NOREF;   /* the tide.repl session, in the registry */
static int complete_ref = LUA_NOREF;  /* tide.repl.complete */
static int module_ref = LUA_NOREF;    /* tide.repl */
static volatile sig_atomic_t prompt_interrupted;

static char **completions;  /* candidates of the completion in progress */
static size_t n_completions, next_completion;

static void free_completions(void) {
  for (size_t i = 0; i < n_completions; i++) free(completions[i]);
  free(completions);
  completions = NULL;
  n_completions = next_completion = 0;
}

/* Asks repl.complete for the candidates of `text`; errors mean none. */
static void gather_completions(const char *text, int line_start) {
  lua_State *L = repl_L;
  free_completions();
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, complete_ref);
  lua_pushstring(L, text);
  lua_pushnil(L);
  lua_pushboolean(L, line_start);
  if (lua_pcall(L, 3, 1, 0) == 0 && lua_istable(L, -1)) {
    size_t n = lua_objlen(L, -1);
    completions = calloc(n ? n : 1, sizeof *completions);
    for (size_t i = 0; completions && i < n; i++) {
      lua_rawgeti(L, -1, (int)i + 1);
      const char *s = lua_tostring(L, -1);
      if (s && (completions[n_completions] = strdup(s))) n_completions++;
      lua_pop(L, 1);
    }
  }
  lua_settop(L, top);
}

/* readline's generator protocol: state 0 starts a new word; each call returns
   one malloc'd candidate (readline frees it), NULL when there are no more. */
static char *next_candidate(const char *text, int state) {
  (void)text;
  if (next_completion >= n_completions) return NULL;
  char *s = completions[next_completion];
  completions[next_completion++] = NULL;
  return s;
}

static char **attempt_completion(const char *text, int start, int end) {
  (void)end;
  rl_attempted_completion_over = 1;  /* never fall back to file names */
  int line_start = 1;
  for (int i = 0; i < start && rl_line_buffer; i++)
    if (rl_line_buffer[i] != ' ' && rl_line_buffer[i] != '\t') line_start = 0;
  gather_completions(text, line_start);
  if (n_completions == 0) return NULL;
  char **matches = rl_completion_matches(text, next_candidate);
  free_completions();
  return matches;
}

/* At the prompt Ctrl-C abandons the line instead of ending the process. A
   signal that lands while libedit is busy (redrawing after a completion, say)
   would not interrupt a read that has not started yet, so the handler also
   writes to a pipe that read_key() waits on beside the terminal. */
static int wake_pipe[2] = {-1, -1};

static void on_prompt_sigint(int sig) {
  (void)sig;
  prompt_interrupted = 1;
  if (wake_pipe[1] >= 0) {
    ssize_t w = write(wake_pipe[1], "", 1);
    (void)w;
  }
}

/* The next byte of the terminal, or EOF once Ctrl-C has been pressed. */
static int read_byte(int fd) {
  for (;;) {
    if (prompt_interrupted) return EOF;
    struct pollfd fds[2] = {{fd, POLLIN, 0}, {wake_pipe[0], POLLIN, 0}};
    int n = poll(fds, wake_pipe[0] >= 0 ? 2 : 1, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return EOF;
    }
    if (fds[1].revents & POLLIN) {
      char drain[16];
      while (read(wake_pipe[0], drain, sizeof drain) > 0) {}
      continue;
    }
    unsigned char c;
    ssize_t r = read(fd, &c, 1);
    if (r == 1) return c;
    if (r < 0 && errno == EINTR) continue;
    return EOF;
  }
}

/* libedit's key reader. libedit takes what this returns as one wide
   character, so a multibyte character (UTF-8 in a UTF-8 locale) is decoded
   here, as libedit's own reader does; EOF after Ctrl-C ends readline at once. */
static int read_key(FILE *in) {
  int fd = fileno(in);
  mbstate_t st;
  memset(&st, 0, sizeof st);
  for (;;) {
    int b = read_byte(fd);
    if (b == EOF) return EOF;
    char ch = (char)b;
    wchar_t wc;
    size_t n = mbrtowc(&wc, &ch, 1, &st);
    if (n == (size_t)-2) continue;  /* the character goes on */
    if (n == (size_t)-1) return b;  /* not valid here: pass the byte on */
    return (int)wc;
  }
}

static void catch_sigint_at_prompt(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_prompt_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;
  sigaction(SIGINT, &sa, NULL);
}

/* The history file: $TIDE_HISTORY (empty disables it), else ~/.tide_history. */
static char *history_path(void) {
  const char *env = getenv("TIDE_HISTORY");
  if (env) return *env ? strdup(env) : NULL;
  const char *home = getenv("HOME");
  if (!home || !*home) return NULL;
  size_t n = strlen(home) + sizeof "/.tide_history";
  char *p = malloc(n);
  if (p) snprintf(p, n, "%s/.tide_history", home);
  return p;
}

/* Calls session:<method>(arg) through the host's protected call, so Ctrl-C
   interrupts typed code, and turns the status it returns into a code. Errors
   in typed code are reported by the session itself; one that escapes it (an
   interrupt landing in the REPL's own Lua) is reported here. */
enum { FEED_OK, FEED_MORE, FEED_ERROR, FEED_EMPTY, FEED_HELP, FEED_QUIT };

static int call_session(lua_State *L, const char *method, const char *arg) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, session_ref);
  lua_getfield(L, -1, method);
  lua_insert(L, -2);
  int nargs = 1;
  if (arg) { lua_pushstring(L, arg); nargs = 2; }
  if (tide_host_pcall(L, nargs, 1) != 0) {
    tide_host_report(L);
    return FEED_ERROR;
  }
  const char *s = lua_tostring(L, -1);
  int r = FEED_ERROR;
  if (s) {
    if (!strcmp(s, "ok")) r = FEED_OK;
    else if (!strcmp(s, "more")) r = FEED_MORE;
    else if (!strcmp(s, "empty")) r = FEED_EMPTY;
    else if (!strcmp(s, "help")) r = FEED_HELP;
    else if (!strcmp(s, "quit")) r = FEED_QUIT;
  }
  lua_pop(L, 1);
  return r;
}

static int session_has_pending(lua_State *L) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, session_ref);
  lua_getfield(L, -1, "pending");
  int pending = !lua_isnil(L, -1);
  lua_pop(L, 2);
  return pending;
}

/* The session's prompt ('> ', or '..> ' inside an unfinished chunk). */
static void session_prompt(lua_State *L, char *buf, size_t size) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, session_ref);
  lua_getfield(L, -1, "prompt");
  lua_insert(L, -2);
  const char *p = lua_pcall(L, 1, 1, 0) == 0 ? lua_tostring(L, -1) : NULL;
  snprintf(buf, size, "%s", p ? p : "> ");
  lua_pop(L, 1);
}

static void abandon_chunk(lua_State *L) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, session_ref);
  lua_getfield(L, -1, "abandon");
  lua_insert(L, -2);
  if (lua_pcall(L, 1, 0, 0) != 0) lua_pop(L, 1);
}

static int session_errors(lua_State *L) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, session_ref);
  lua_getfield(L, -1, "errors");
  int n = (int)lua_tointeger(L, -1);
  lua_pop(L, 2);
  return n;
}

/* Piped input: no prompt, banner or editing; every line goes to the session.
   The exit status is 1 when any chunk failed, so scripts can check it. */
static int run_piped(lua_State *L) {
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  while ((n = getline(&line, &cap, stdin)) >= 0) {
    if (n > 0 && line[n - 1] == '\n') line[--n] = 0;
    if (n > 0 && line[n - 1] == '\r') line[--n] = 0;
    if (call_session(L, "feed", line) == FEED_QUIT) break;
  }
  free(line);
  call_session(L, "finish", NULL);
  fflush(stdout);
  return session_errors(L) > 0 ? 1 : 0;
}

static int run_terminal(lua_State *L) {
  /* lets libedit edit UTF-8 text as characters; with no locale configured
     (plain "C"), UTF-8 is still the best guess for a terminal today */
  const char *loc = setlocale(LC_CTYPE, "");
  if (!loc || !strcmp(loc, "C") || !strcmp(loc, "POSIX")) setlocale(LC_CTYPE, "C.UTF-8");
  rl_readline_name = "tide";  /* for $if tide in ~/.editrc */
  /* '.' and ':' are not breaks, so x:su and tide.ze are completed whole */
  static char breaks[] = " \t\n\"\\'`@$><=;|&{}()[],+-*/%^#~";
  rl_basic_word_break_characters = breaks;
  rl_completer_word_break_characters = breaks;
  rl_attempted_completion_function = attempt_completion;
  if (wake_pipe[0] < 0 && pipe(wake_pipe) == 0) {
    fcntl(wake_pipe[0], F_SETFL, O_NONBLOCK);
    fcntl(wake_pipe[1], F_SETFL, O_NONBLOCK);
  }
  rl_getc_function = read_key;
  rl_completion_append_character = '\0';
  using_history();
  stifle_history(1000);
  char *hist = history_path();
  if (hist) read_history(hist);  /* a missing or unreadable file is no history */

  lua_rawgeti(L, LUA_REGISTRYINDEX, module_ref);
  lua_getfield(L, -1, "banner");
  if (lua_pcall(L, 0, 1, 0) == 0 && lua_isstring(L, -1)) printf("%s\n", lua_tostring(L, -1));
  lua_pop(L, 2);
  fflush(stdout);

  for (;;) {
    char prompt[64];
    session_prompt(L, prompt, sizeof prompt);
    prompt_interrupted = 0;
    catch_sigint_at_prompt();
    /* the handler stays until tide_host_pcall installs its own, so a Ctrl-C
       just after Enter is dropped rather than fatal */
    char *line = readline(prompt);
    if (prompt_interrupted) {
      /* Ctrl-C: drop the line and any unfinished chunk, prompt again */
      free(line);
      abandon_chunk(L);
      fputs("^C\n", stdout);
      fflush(stdout);
      continue;
    }
    if (!line) {
      /* Ctrl-D: leaves at the main prompt, abandons a chunk at '..> ' */
      fputs("\n", stdout);
      if (session_has_pending(L)) {
        abandon_chunk(L);
        continue;
      }
      break;
    }
    if (*line) {
      HIST_ENTRY *last = history_length > 0 ? history_get(history_base + history_length - 1) : NULL;
      if (!last || strcmp(last->line, line) != 0) {
        add_history(line);
        /* saved at once so a killed session keeps what it typed; a file that
           cannot be written leaves the history in memory only */
        if (hist && write_history(hist) != 0) {
          fprintf(stderr, "tide: cannot write history to %s; it will not be saved\n", hist);
          free(hist);
          hist = NULL;
        }
      }
    }
    int r = call_session(L, "feed", line);
    free(line);
    if (r == FEED_QUIT) break;
  }
  free(hist);
  fflush(stdout);
  return 0;
}

int tide_repl_run(lua_State *L) {
  repl_L = L;
  lua_getglobal(L, "require");
  lua_pushstring(L, "tide.repl");
  if (tide_host_pcall(L, 1, 1) != 0) {
    tide_host_report(L);
    return 1;
  }
  int interactive = isatty(STDIN_FILENO);
  lua_getfield(L, -1, "session");
  lua_createtable(L, 0, 1);
  lua_pushboolean(L, interactive);
  lua_setfield(L, -2, "interactive");
  if (tide_host_pcall(L, 1, 1) != 0) {
    tide_host_report(L);
    lua_pop(L, 1);
    return 1;
  }
  session_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_getfield(L, -1, "complete");
  complete_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  module_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  int status = interactive ? run_terminal(L) : run_piped(L);
  luaL_unref(L, LUA_REGISTRYINDEX, session_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, complete_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, module_ref);
  session_ref = complete_ref = module_ref = LUA_NOREF;
  free_completions();
  return status;
}

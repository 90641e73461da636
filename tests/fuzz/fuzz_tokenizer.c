/* Fuzz target for the byte-level BPE tokenizer (runtime/bpe.c). The first
   byte picks what the rest is: vocab.json and merges.txt (split at the first
   NUL byte), a tokenizer.json, or text. Fuzzed files must load or fail with
   a message, never crash; a tokenizer that loads must encode and decode the
   input without crashing and give consistent lengths. Text is encoded with
   GPT-2's vocabulary ($TIDE_GPT2_DIR, or data/gpt2 from the
   repository root, when present) and with a small built-in one, and must
   satisfy decode(encode(x)) == x with added tokens allowed or not.

   Built as a libFuzzer binary with clang (-DTIDE_FUZZ=ON: build/tests/fuzz_tokenizer)
   and, with TIDE_FUZZ_REPLAY_MAIN, as tests/fuzz_tokenizer_replay: run on
   files it replays them; run bare it feeds seeded mutations, as ctest does.
   tests/fuzz/corpus/tokenizer/ holds inputs that once hung, allocated
   gigabytes or were silently accepted (first byte \x01: a tokenizer.json);
   ctest replays them, and the bare run mutates the small ones too. */
#include <dirent.h>
#define _GNU_SOURCE  /* mkdtemp */
#include "tide.h"
#include "bpe.h"
#include "error.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REQUIRE(cond) do { if (!(cond)) { fprintf(stderr, "fuzz_tokenizer: %s:%d: %s\n", __FILE__, __LINE__, #cond); abort(); } } while (0)

/* The fuzzer's fixtures, made once per process: a scratch directory and the
   reference tokenizers text is encoded with. */
static char dir[64];
static tide_bpe *ref[2];
static int nref;

static void write_file(const char *path, const uint8_t *p, size_t n) {
  FILE *f = fopen(path, "wb");
  REQUIRE(f);
  REQUIRE(fwrite(p, 1, n, f) == n);
  REQUIRE(fclose(f) == 0);
}

static void path_of(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", dir, name); }

/* A byte-level vocabulary: the 256 byte characters, a few merges, <|endoftext|>. */
static void write_tiny(void) {
  char vocab[8192], merges[256], p[128];
  size_t n = 0;
  n += (size_t)snprintf(vocab + n, sizeof vocab - n, "{");
  for (unsigned b = 0; b < 256; b++) {
    uint32_t cp = tide_bpe_byte_char(b);
    char c[8];
    int k;
    if (cp == '"' || cp == '\\') k = snprintf(c, sizeof c, "\\%c", (char)cp);
    else if (cp < 0x80) k = snprintf(c, sizeof c, "%c", (char)cp);
    else if (cp < 0x800) k = snprintf(c, sizeof c, "%c%c", (char)(0xC0 | cp >> 6), (char)(0x80 | (cp & 0x3F)));
    else k = snprintf(c, sizeof c, "%c%c%c", (char)(0xE0 | cp >> 12), (char)(0x80 | ((cp >> 6) & 0x3F)), (char)(0x80 | (cp & 0x3F)));
    (void)k;
    n += (size_t)snprintf(vocab + n, sizeof vocab - n, "\"%s\": %u, ", c, b);
  }
  n += (size_t)snprintf(vocab + n, sizeof vocab - n,
                        "\"\xc4\xa0t\": 256, \"he\": 257, \"\xc4\xa0the\": 258, \"<|endoftext|>\": 259}");
  path_of(p, sizeof p, "tiny_vocab.json");
  write_file(p, (const uint8_t *)vocab, n);
  int m = snprintf(merges, sizeof merges, "#version: 0.2\n\xc4\xa0 t\nh e\n\xc4\xa0t he\n");
  path_of(p, sizeof p, "tiny_merges.txt");
  write_file(p, (const uint8_t *)merges, (size_t)m);
}

static void setup(void) {
  if (dir[0]) return;
  snprintf(dir, sizeof dir, "/tmp/fuzz_tokenizer_XXXXXX");
  REQUIRE(mkdtemp(dir));
  write_tiny();
  char v[128], m[128];
  path_of(v, sizeof v, "tiny_vocab.json");
  path_of(m, sizeof m, "tiny_merges.txt");
  REQUIRE(tide_bpe_load(v, m, &ref[nref]) == 0);
  nref++;
  const char *g = getenv("TIDE_GPT2_DIR");
  char gv[1024], gm[1024];
  snprintf(gv, sizeof gv, "%s/vocab.json", g ? g : "data/gpt2");
  snprintf(gm, sizeof gm, "%s/merges.txt", g ? g : "data/gpt2");
  if (access(gv, R_OK) == 0 && access(gm, R_OK) == 0) {
    REQUIRE(tide_bpe_load(gv, gm, &ref[nref]) == 0);
    nref++;
  }
}

/* Encodes and decodes text with t; exact is whether the round trip must hold. */
static void roundtrip(const tide_bpe *t, const uint8_t *text, size_t n, int exact) {
  int32_t *ids = malloc((n + 1) * sizeof *ids);
  char *back = malloc(n + 64);
  int64_t *ends = malloc((n + 1) * sizeof *ends), np = -1;
  REQUIRE(ids && back && ends);
  /* the pieces are non-empty, increasing and cover the text */
  REQUIRE(tide_pretokenize((const char *)text, (int64_t)n, ends, (int64_t)n + 1, &np) == 0);
  REQUIRE(np >= 0 && np <= (int64_t)n);
  for (int64_t i = 0; i < np; i++) REQUIRE(ends[i] > (i ? ends[i - 1] : 0));
  REQUIRE(np == 0 ? n == 0 : ends[np - 1] == (int64_t)n);
  free(ends);
  for (int allow = 0; allow < 2; allow++) {
    int64_t k = -1, len = -1;
    REQUIRE(tide_bpe_encode(t, (const char *)text, (int64_t)n, NULL, allow ? -1 : 0, ids, &k) == 0);
    REQUIRE(k >= 0 && k <= (int64_t)n + 1);
    for (int64_t i = 0; i < k; i++) REQUIRE(ids[i] >= 0 && ids[i] < tide_bpe_vocab_size(t));
    REQUIRE(tide_bpe_decode(t, ids, k, NULL, 0, &len) == 0);
    if (exact) {
      REQUIRE(len == (int64_t)n);
      REQUIRE(tide_bpe_decode(t, ids, k, back, (int64_t)n + 64, &len) == 0);
      REQUIRE(len == (int64_t)n && memcmp(back, text, n) == 0);
    }
  }
  /* ids past the vocabulary are errors, not reads out of bounds */
  int32_t bad[2] = { -1, (int32_t)tide_bpe_vocab_size(t) };
  int64_t len;
  REQUIRE(tide_bpe_decode(t, bad, 1, NULL, 0, &len) == -1 && tide_last_error()[0]);
  REQUIRE(tide_bpe_decode(t, bad + 1, 1, NULL, 0, &len) == -1);
  free(ids);
  free(back);
}

/* A loaded fuzzed tokenizer: its accessors and encoding must behave. */
static void exercise(tide_bpe *t, const uint8_t *text, size_t n) {
  int64_t nv = tide_bpe_vocab_size(t);
  REQUIRE(nv >= 256);
  for (int64_t id = 0; id < nv && id < 4096; id++) {
    int64_t len = -1;
    const char *s = tide_bpe_id_to_token(t, id, &len);
    if (s) REQUIRE(tide_bpe_token_to_id(t, s, len) >= 0);
  }
  for (int64_t i = 0; i < tide_bpe_merge_count(t); i++) {
    int32_t l, r;
    REQUIRE(tide_bpe_merge(t, i, &l, &r) == 0 && l >= 0 && l < nv && r >= 0 && r < nv);
  }
  roundtrip(t, text, n, 0);
  tide_bpe_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  setup();
  if (size == 0) return 0;
  int mode = data[0] % 3;
  data++;
  size--;
  char v[128], m[128];
  tide_bpe *t = NULL;
  if (mode == 0) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t nv = nul ? (size_t)(nul - data) : size;
    path_of(v, sizeof v, "vocab.json");
    path_of(m, sizeof m, "merges.txt");
    write_file(v, data, nv);
    write_file(m, nul ? nul + 1 : data, nul ? size - nv - 1 : 0);
    if (tide_bpe_load(v, m, &t) == 0) exercise(t, data, size);
    else REQUIRE(strstr(tide_last_error(), "tokenizer"));
  } else if (mode == 1) {
    path_of(v, sizeof v, "tokenizer.json");
    write_file(v, data, size);
    if (tide_bpe_load_json(v, &t) == 0) exercise(t, data, size);
    else REQUIRE(strstr(tide_last_error(), "tokenizer"));
  } else {
    for (int i = 0; i < nref; i++) roundtrip(ref[i], data, size, 1);
  }
  return 0;
}

#ifdef TIDE_FUZZ_REPLAY_MAIN
/* Inputs to mutate: the three modes' valid forms. */
static const char *const seeds[] = {
  "\x00{\"a\": 0, \"b\": 1, \"ab\": 2}\x00#version: 0.2\na b\n",
  "\x01{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \"<|endoftext|>\": 3},"
  " \"merges\": [\"a b\", [\"a\", \"b\"]]}, \"added_tokens\": [{\"id\": 3, \"content\": \"<|endoftext|>\", \"special\": true}]}",
  "\x02Hello world! It's <|endoftext|> def say_hello():\n    print(\"Hi\")\r\n\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x8e\x89 \xff\xc0\x80   x",
  "\x02The the the  \t\n\n  theeee 123 \xd9\xa3\xd9\xa4 e\xcc\x81",
};

#include "fuzz_driver.h"
static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next(void) { return fuzz_next(&rng); }

static const char alphabet[] = "{}[]\",: abt\n\\u0120<|>e#\x00\xc4\xa0\xff\xe6";

/* The corpus files small enough to mutate, read once. */
#define MAX_CORPUS 32
#define MAX_CORPUS_SIZE 8192
static uint8_t *corpus[MAX_CORPUS];
static size_t corpus_len[MAX_CORPUS], ncorpus;

static void read_corpus(const char *path) {
  DIR *d = opendir(path);
  if (!d) return;
  for (struct dirent *e; (e = readdir(d)) && ncorpus < MAX_CORPUS;) {
    if (e->d_name[0] == '.') continue;
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", path, e->d_name);
    FILE *f = fopen(p, "rb");
    if (!f) continue;
    uint8_t *buf = malloc(MAX_CORPUS_SIZE);
    size_t n = buf ? fread(buf, 1, MAX_CORPUS_SIZE, f) : 0;
    int small = buf && n < MAX_CORPUS_SIZE && feof(f);
    fclose(f);
    if (!small) { free(buf); continue; }
    corpus[ncorpus] = buf;
    corpus_len[ncorpus++] = n;
  }
  closedir(d);
}

int main(int argc, char **argv) {
  static uint8_t data[1 << 16];
  int replayed = fuzz_replay_files(argc, argv);
  if (replayed >= 0) return replayed;
  long runs = fuzz_runs(3000);
  read_corpus("tests/fuzz/corpus/tokenizer");
  size_t nseeds = sizeof seeds / sizeof seeds[0];
  for (long r = 0; r < runs; r++) {
    size_t which = next() % (nseeds + ncorpus);
    size_t n;
    if (which >= nseeds) {
      n = corpus_len[which - nseeds];
      memcpy(data, corpus[which - nseeds], n);
    } else {
      n = 1 + strlen(seeds[which] + 1);  /* the mode byte may be NUL */
      memcpy(data, seeds[which], n);
    }
    const char *s = which < nseeds ? seeds[which] : NULL;
    if (which == 0) {  /* the NUL that separates the two files */
      const char *sep = s + 1 + strlen(s + 1) + 1;
      size_t n2 = strlen(sep);
      data[n] = 0;
      memcpy(data + n + 1, sep, n2);
      n += 1 + n2;
    }
    int edits = (int)(next() % 4);
    for (int e = 0; e < edits && n < MAX_CORPUS_SIZE + 4000; e++) {
      size_t at = 1 + (n > 1 ? next() % (n - 1) : 0);
      if (at > n) at = n;
      switch (next() % 4) {
        case 0: if (at < n) data[at] = (uint8_t)alphabet[next() % (sizeof alphabet - 1)]; break;
        case 1: memmove(data + at + 1, data + at, n - at); data[at] = (uint8_t)alphabet[next() % (sizeof alphabet - 1)]; n++; break;
        case 2: if (at < n) { memmove(data + at, data + at + 1, n - at - 1); n--; } break;
        case 3: data[at < n ? at : 0] = (uint8_t)next(); break;
      }
    }
    LLVMFuzzerTestOneInput(data, n);
  }
  /* long runs of one character stay fast */
  data[0] = 2;
  memset(data + 1, ' ', 30000);
  LLVMFuzzerTestOneInput(data, 30001);
  memset(data + 1, 'a', 30000);
  LLVMFuzzerTestOneInput(data, 30001);
  printf("%ld mutated inputs ran without a crash (%d reference tokenizers, %zu corpus seeds)\n", runs, nref, ncorpus);
  for (int i = 0; i < nref; i++) tide_bpe_free(ref[i]);
  for (size_t i = 0; i < ncorpus; i++) free(corpus[i]);
  char p[128];
  const char *names[] = { "tiny_vocab.json", "tiny_merges.txt", "vocab.json", "merges.txt", "tokenizer.json" };
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) { path_of(p, sizeof p, names[i]); unlink(p); }
  rmdir(dir);
  return 0;
}
#endif

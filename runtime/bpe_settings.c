/* What of tokenizer.json tide implements: GPT-2's byte-level BPE and the
   settings that leave its ids unchanged. Anything else (a normalizer, another
   pre-tokenizer, BPE dropout, byte fallback, added tokens that strip
   whitespace, a post-processor that adds tokens, truncation or padding stored
   in the file, fields of a newer format) is refused by name rather than
   silently ignored. See bpe.h. */
#include "bpe.h"
#include "error.h"
#include "json.h"
#include <stdio.h>
#include <string.h>

/* A short description of node's value for an error message. */
static const char *show(const tide_json *doc, int64_t node, char *buf, size_t cap) {
  int64_t l;
  const char *s;
  switch (tide_json_type(doc, node)) {
    case TIDE_JSON_NULL: return "null";
    case TIDE_JSON_FALSE: return "false";
    case TIDE_JSON_TRUE: return "true";
    case TIDE_JSON_NUMBER: snprintf(buf, cap, "%.17g", tide_json_number(doc, node)); return buf;
    case TIDE_JSON_STRING:
      s = tide_json_string(doc, node, &l);
      snprintf(buf, cap, "\"%.*s\"", (int)(l > 40 ? 40 : l), s);
      return buf;
    case TIDE_JSON_ARRAY: return "an array";
    default: return "an object";
  }
}

static int is(const tide_json *doc, int64_t node, const char *str) {
  int64_t l;
  const char *s = tide_json_type(doc, node) == TIDE_JSON_STRING ? tide_json_string(doc, node, &l) : NULL;
  return s && (size_t)l == strlen(str) && memcmp(s, str, (size_t)l) == 0;
}

static int is_null(const tide_json *doc, int64_t node) { return node < 0 || tide_json_type(doc, node) == TIDE_JSON_NULL; }

static int is_bool(const tide_json *doc, int64_t node) {
  int ty = tide_json_type(doc, node);
  return ty == TIDE_JSON_TRUE || ty == TIDE_JSON_FALSE;
}

/* Refuses the value of field `name` (at `path`) with the reason why. */
static int refuse(const tide_json *doc, int64_t node, const char *where, const char *path, const char *name,
                  const char *why) {
  char buf[64];
  return tide_fail("%s: %s%s%s = %s is not supported: %s", where, path, *path ? "." : "", name,
                   show(doc, node, buf, sizeof buf), why);
}

/* Every member of object obj is one of the NULL-terminated names. */
static int known_keys(const tide_json *doc, int64_t obj, const char *const *names, const char *where, const char *path) {
  int64_t n = tide_json_length(doc, obj);
  for (int64_t i = 0; i < n; i++) {
    int64_t kl;
    const char *k = tide_json_key(doc, obj, i, &kl);
    int ok = 0;
    for (const char *const *p = names; *p && !ok; p++) ok = strlen(*p) == (size_t)kl && memcmp(*p, k, (size_t)kl) == 0;
    if (!ok)
      return tide_fail("%s: %s%s%.*s is a field tide does not know, so it cannot honour it (tide reads GPT-2's "
                       "byte-level BPE)", where, path, *path ? "." : "", (int)(kl > 40 ? 40 : kl), k);
  }
  return 0;
}

/* field `name` of obj is absent, null or a boolean (a setting without effect on ids). */
static int any_bool(const tide_json *doc, int64_t obj, const char *name, const char *where, const char *path) {
  int64_t v = tide_json_get(doc, obj, name);
  if (is_null(doc, v) || is_bool(doc, v)) return 0;
  return refuse(doc, v, where, path, name, "expected true or false");
}

/* field `name` of obj is absent, null or the boolean `want`. */
static int only_bool(const tide_json *doc, int64_t obj, const char *name, int want, const char *where,
                     const char *path, const char *why) {
  int64_t v = tide_json_get(doc, obj, name);
  if (is_null(doc, v) || tide_json_type(doc, v) == (want ? TIDE_JSON_TRUE : TIDE_JSON_FALSE)) return 0;
  return refuse(doc, v, where, path, name, why);
}

static int object_type(const tide_json *doc, int64_t obj, const char *where, const char *path) {
  if (tide_json_type(doc, obj) != TIDE_JSON_OBJECT) return tide_fail("%s: %s is not a JSON object or null", where, path);
  return 0;
}

/* A ByteLevel pre-tokenizer, post-processor or decoder (the last two touch
   only offsets and decoding, which never add a space, so their flags are free). */
static int byte_level(const tide_json *doc, int64_t obj, const char *where, const char *path, int pre) {
  static const char *const keys[] = { "type", "add_prefix_space", "trim_offsets", "use_regex", NULL };
  TIDE_TRY(known_keys(doc, obj, keys, where, path));
  TIDE_TRY(any_bool(doc, obj, "trim_offsets", where, path));
  if (!pre) {
    TIDE_TRY(any_bool(doc, obj, "add_prefix_space", where, path));
    return any_bool(doc, obj, "use_regex", where, path);
  }
  TIDE_TRY(only_bool(doc, obj, "add_prefix_space", 0, where, path,
                     "tide never adds a space before the text (GPT-2 does not)"));
  return only_bool(doc, obj, "use_regex", 1, where, path, "tide always splits with GPT-2's pattern");
}

/* A TemplateProcessing post-processor that adds nothing: the single sequence
   alone and no special tokens (what transformers writes for GPT-2). */
static int plain_template(const tide_json *doc, int64_t obj, const char *where) {
  static const char *const keys[] = { "type", "single", "pair", "special_tokens", NULL };
  TIDE_TRY(known_keys(doc, obj, keys, where, "post_processor"));
  int64_t single = tide_json_get(doc, obj, "single"), sp = tide_json_get(doc, obj, "special_tokens");
  int64_t seq = tide_json_length(doc, single) == 1 ? tide_json_get(doc, tide_json_child(doc, single, 0), "Sequence") : -1;
  if (tide_json_type(doc, single) != TIDE_JSON_ARRAY || seq < 0 || !is(doc, tide_json_get(doc, seq, "id"), "A"))
    return tide_fail("%s: post_processor.single adds tokens around the text, which tide does not (only a template "
                     "of the text alone is supported)", where);
  if (!is_null(doc, sp) && (tide_json_type(doc, sp) != TIDE_JSON_OBJECT || tide_json_length(doc, sp) != 0))
    return tide_fail("%s: post_processor.special_tokens is not empty: tide adds no tokens after encoding", where);
  return 0;
}

static int check_model(const tide_json *doc, int64_t model, const char *where) {
  static const char *const keys[] = { "type", "dropout", "unk_token", "continuing_subword_prefix",
                                      "end_of_word_suffix", "fuse_unk", "byte_fallback", "ignore_merges",
                                      "vocab", "merges", NULL };
  TIDE_TRY(known_keys(doc, model, keys, where, "model"));
  int64_t v = tide_json_get(doc, model, "dropout");
  if (!is_null(doc, v) && !(tide_json_type(doc, v) == TIDE_JSON_NUMBER && tide_json_number(doc, v) == 0))
    return refuse(doc, v, where, "model", "dropout", "tide's BPE is deterministic (no BPE dropout)");
  v = tide_json_get(doc, model, "unk_token");
  if (!is_null(doc, v)) return refuse(doc, v, where, "model", "unk_token", "byte-level BPE has no unknown token");
  static const char *const affixes[] = { "continuing_subword_prefix", "end_of_word_suffix" };
  for (int i = 0; i < 2; i++) {
    v = tide_json_get(doc, model, affixes[i]);
    if (!is_null(doc, v) && !is(doc, v, ""))
      return refuse(doc, v, where, "model", affixes[i], "byte-level BPE marks no subwords");
  }
  TIDE_TRY(any_bool(doc, model, "fuse_unk", where, "model"));  /* without an unknown token it does nothing */
  TIDE_TRY(only_bool(doc, model, "byte_fallback", 0, where, "model", "byte-level BPE needs no byte fallback"));
  return only_bool(doc, model, "ignore_merges", 0, where, "model", "tide always applies the merges");
}

static int check_added(const tide_json *doc, int64_t added, const char *where) {
  static const char *const keys[] = { "id", "content", "single_word", "lstrip", "rstrip", "normalized", "special", NULL };
  static const char *const strips[] = { "single_word", "lstrip", "rstrip" };
  int64_t n = tide_json_type(doc, added) == TIDE_JSON_ARRAY ? tide_json_length(doc, added) : 0;
  for (int64_t i = 0; i < n; i++) {
    int64_t a = tide_json_child(doc, added, i);
    char path[64];
    snprintf(path, sizeof path, "added_tokens[%lld]", (long long)i);
    TIDE_TRY(object_type(doc, a, where, path));
    TIDE_TRY(known_keys(doc, a, keys, where, path));
    for (int k = 0; k < 3; k++)
      TIDE_TRY(only_bool(doc, a, strips[k], 0, where, path, "tide matches added tokens exactly as written"));
    TIDE_TRY(any_bool(doc, a, "normalized", where, path));  /* there is no normalizer */
    TIDE_TRY(any_bool(doc, a, "special", where, path));
  }
  return 0;
}

int tide_bpe_check_settings(const tide_json *doc, const char *where) {
  static const char *const keys[] = { "version", "truncation", "padding", "added_tokens", "normalizer",
                                      "pre_tokenizer", "post_processor", "decoder", "model", NULL };
  TIDE_TRY(known_keys(doc, 0, keys, where, ""));
  static const char *const per_call[] = { "truncation", "padding" };
  for (int i = 0; i < 2; i++) {
    int64_t v = tide_json_get(doc, 0, per_call[i]);
    if (!is_null(doc, v))
      return refuse(doc, v, where, "", per_call[i],
                    "tide truncates and pads per call (tok(texts, {truncation = ..., padding = ..., max_length = ...}))");
  }
  int64_t v = tide_json_get(doc, 0, "normalizer");
  if (!is_null(doc, v)) {
    int64_t ty = tide_json_get(doc, v, "type");
    char buf[64];
    return tide_fail("%s: normalizer (type %s) is not supported: tide encodes the text's bytes unnormalized", where,
                     ty >= 0 ? show(doc, ty, buf, sizeof buf) : show(doc, v, buf, sizeof buf));
  }
  static const char *const parts[] = { "pre_tokenizer", "post_processor", "decoder" };
  for (int i = 0; i < 3; i++) {
    v = tide_json_get(doc, 0, parts[i]);
    if (is_null(doc, v)) continue;
    TIDE_TRY(object_type(doc, v, where, parts[i]));
    int64_t ty = tide_json_get(doc, v, "type");
    if (is(doc, ty, "ByteLevel")) { TIDE_TRY(byte_level(doc, v, where, parts[i], i == 0)); continue; }
    if (i == 1 && is(doc, ty, "TemplateProcessing")) { TIDE_TRY(plain_template(doc, v, where)); continue; }
    return refuse(doc, ty, where, parts[i], "type",
                  i == 0 ? "tide splits text with GPT-2's ByteLevel pre-tokenizer only"
                  : i == 1 ? "tide's post-processing is ByteLevel's (nothing added to the ids)"
                           : "tide decodes byte-level tokens only (ByteLevel)");
  }
  TIDE_TRY(check_model(doc, tide_json_get(doc, 0, "model"), where));
  return check_added(doc, tide_json_get(doc, 0, "added_tokens"), where);
}

/* The GPT-2 pre-tokenizer as a scanner; see pretokenize.h for the rules. */
#include "pretokenize.h"
#include "error.h"
#include "tide.h"

/* ASCII classes, so the common case needs no table search. */
static const unsigned char ascii_class[128] = {
  0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 3, 3, 3, 3, 0, 0,   /* \t \n \v \f \r */
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,   /* 0x1c-0x1f are not White_Space */
  3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0,
  0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0,
  0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0,
};

static int in_ranges(const uint32_t (*r)[2], int32_t count, uint32_t cp) {
  int32_t lo = 0, hi = count - 1;
  while (lo <= hi) {
    int32_t mid = (lo + hi) / 2;
    if (cp < r[mid][0]) hi = mid - 1;
    else if (cp > r[mid][1]) lo = mid + 1;
    else return 1;
  }
  return 0;
}

int tide_utf8_decode(const unsigned char *s, int64_t n, int64_t i, uint32_t *cp) {
  unsigned c = s[i];
  if (c < 0x80) { *cp = c; return 1; }
  int len;
  uint32_t v, lo = 0x80, hi = 0xBF;  /* allowed range of the second byte */
  if (c >= 0xC2 && c <= 0xDF) { len = 2; v = c & 0x1F; }
  else if (c >= 0xE0 && c <= 0xEF) {
    len = 3; v = c & 0x0F;
    if (c == 0xE0) lo = 0xA0;       /* overlong */
    if (c == 0xED) hi = 0x9F;       /* surrogates */
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4; v = c & 0x07;
    if (c == 0xF0) lo = 0x90;       /* overlong */
    if (c == 0xF4) hi = 0x8F;       /* beyond U+10FFFF */
  } else return -1;
  for (int k = 1; k < len; k++) {
    if (i + k >= n) return -k;
    unsigned b = s[i + k];
    if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return -k;
    v = (v << 6) | (b & 0x3F);
  }
  *cp = v;
  return len;
}

int tide_char_class(const unsigned char *s, int64_t n, int64_t i, int *len) {
  if (s[i] < 0x80) { *len = 1; return ascii_class[s[i]]; }
  uint32_t cp;
  int l = tide_utf8_decode(s, n, i, &cp);
  if (l <= 0) { *len = 1; return TIDE_CC_OTHER; }
  *len = l;
  if (in_ranges(tide_unicode_letter, tide_unicode_letter_count, cp)) return TIDE_CC_LETTER;
  if (in_ranges(tide_unicode_number, tide_unicode_number_count, cp)) return TIDE_CC_NUMBER;
  if (in_ranges(tide_unicode_space, tide_unicode_space_count, cp)) return TIDE_CC_SPACE;
  return TIDE_CC_OTHER;
}

/* End of the run of characters of class cls starting at i. */
static int64_t run_of(const unsigned char *s, int64_t n, int64_t i, int cls) {
  while (i < n) {
    if (s[i] < 0x80) {  /* most text is ASCII: no call, no table search */
      if (ascii_class[s[i]] != cls) break;
      i++;
      continue;
    }
    int len;
    if (tide_char_class(s, n, i, &len) != cls) break;
    i += len;
  }
  return i;
}

int64_t tide_pretok_next(const unsigned char *s, int64_t n, int64_t i) {
  if (s[i] == '\'' && i + 1 < n) {
    unsigned char a = s[i + 1], b = i + 2 < n ? s[i + 2] : 0;
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
  }
  int len0, cls0 = tide_char_class(s, n, i, &len0);
  /* ' ?X+' for X = letter, number, other: the space joins the run after it */
  if (s[i] == ' ' && i + 1 < n) {
    int len1, cls1 = tide_char_class(s, n, i + 1, &len1);
    if (cls1 != TIDE_CC_SPACE) return run_of(s, n, i + 1 + len1, cls1);
  }
  if (cls0 != TIDE_CC_SPACE) return run_of(s, n, i + len0, cls0);
  /* \s+(?!\S) then \s+: the run, less its last character when a non-space
     follows and the run has more than one character */
  int64_t j = i, last = i;
  while (j < n) {
    int len;
    if (tide_char_class(s, n, j, &len) != TIDE_CC_SPACE) break;
    last = j;
    j += len;
  }
  if (j < n && last > i) return last;
  return j;
}

int tide_pretokenize(const char *text, int64_t len, int64_t *ends, int64_t cap, int64_t *n) {
  if ((!text && len > 0) || len < 0 || !n || cap < 0 || (cap > 0 && !ends))
    return tide_fail("tide_pretokenize: NULL argument or negative length");
  const unsigned char *s = (const unsigned char *)text;
  int64_t k = 0;
  for (int64_t i = 0; i < len; k++) {
    i = tide_pretok_next(s, len, i);
    if (k < cap) ends[k] = i;
  }
  *n = k;
  return 0;
}

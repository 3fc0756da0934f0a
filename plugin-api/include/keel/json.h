/**
 * @file keel/json.h
 * A small, strict JSON reader for C plugins: the members of one JSON object (the plugin's
 * config from create(), a request body) by name, with no allocation and no other library.
 * Header-only, C11 (also valid C++); every function is pure and thread-safe; nothing is kept
 * between calls. docs/plugin-guide.md "JSON in C".
 *
 *   int64_t max = 50;                        // the default when the key is absent
 *   char name[64];
 *   if (keel_json_get_int(cfg, cfg_len, "max_items", &max) < 0 ||
 *       keel_json_get_string(body, body_len, "name", name, sizeof name, NULL) != KEEL_JSON_OK)
 *     return KEEL_ERR_INVALID_ARGUMENT;
 *
 * Every lookup first checks that the whole text is one well-formed JSON object (RFC 8259:
 * strings of valid UTF-8 without raw control characters, at most KEEL_JSON_MAX_DEPTH levels),
 * so a malformed document is never half-read, and refuses a `key` named twice. Keys of up to
 * 256 bytes; each lookup reads the text once to check it and once to find the member.
 */
#ifndef KEEL_JSON_H
#define KEEL_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* C casts are the idiom here; a C++ plugin that includes this header keeps its own warnings. */
#if defined(__cplusplus) && defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wold-style-cast"
#endif

#define KEEL_JSON_MAX_DEPTH 64

typedef enum keel_json_result {
  KEEL_JSON_OK = 0,            /**< found; the value was stored */
  KEEL_JSON_ABSENT = 1,        /**< no such member (or it is null): the output is unchanged */
  KEEL_JSON_WRONG_TYPE = -1,   /**< the member has another type (or an integer out of range) */
  KEEL_JSON_MALFORMED = -2,    /**< the text is not one well-formed JSON object */
  KEEL_JSON_TOO_LONG = -3      /**< the string does not fit `out` (with its terminating NUL) */
} keel_json_result;

/* --- internals (keel_json__*): not part of the API ------------------------------------------ */

typedef struct keel_json__cursor {
  const char* p;
  const char* end;
} keel_json__cursor;

static inline void keel_json__space(keel_json__cursor* c) {
  while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) ++c->p;
}

static inline int keel_json__hex(char h) {
  if (h >= '0' && h <= '9') return h - '0';
  if (h >= 'a' && h <= 'f') return h - 'a' + 10;
  if (h >= 'A' && h <= 'F') return h - 'A' + 10;
  return -1;
}

/* Reads 4 hex digits at c->p. */
static inline int keel_json__hex4(keel_json__cursor* c, uint32_t* out) {
  int i;
  if (c->end - c->p < 4) return 0;
  *out = 0;
  for (i = 0; i < 4; ++i) {
    const int h = keel_json__hex(c->p[i]);
    if (h < 0) return 0;
    *out = (*out << 4) | (uint32_t)h;
  }
  c->p += 4;
  return 1;
}

/* Appends code point `cp` as UTF-8 to out[*n] (when out is not NULL and it fits), counting it in *n. */
static inline void keel_json__put(char* out, size_t cap, size_t* n, uint32_t cp) {
  unsigned char b[4];
  size_t len, i;
  if (cp < 0x80) { b[0] = (unsigned char)cp; len = 1; }
  else if (cp < 0x800) { b[0] = (unsigned char)(0xC0 | (cp >> 6)); b[1] = (unsigned char)(0x80 | (cp & 0x3F)); len = 2; }
  else if (cp < 0x10000) {
    b[0] = (unsigned char)(0xE0 | (cp >> 12)); b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    b[2] = (unsigned char)(0x80 | (cp & 0x3F)); len = 3;
  } else {
    b[0] = (unsigned char)(0xF0 | (cp >> 18)); b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F)); b[3] = (unsigned char)(0x80 | (cp & 0x3F)); len = 4;
  }
  for (i = 0; i < len; ++i) {
    if (out != NULL && *n < cap) out[*n] = (char)b[i];
    ++*n;
  }
}

/* A string at c->p (on its opening quote): validated and decoded into out[0..cap) (out may be
 * NULL: validate only); *n gets the decoded length, which may exceed cap. 0 when malformed. */
static inline int keel_json__string(keel_json__cursor* c, char* out, size_t cap, size_t* n) {
  *n = 0;
  ++c->p; /* " */
  while (c->p < c->end) {
    const unsigned char ch = (unsigned char)*c->p;
    if (ch == '"') { ++c->p; return 1; }
    if (ch < 0x20) return 0;
    if (ch == '\\') {
      uint32_t cp = 0;
      if (++c->p >= c->end) return 0;
      switch (*c->p++) {
        case '"': cp = '"'; break;
        case '\\': cp = '\\'; break;
        case '/': cp = '/'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u': {
          uint32_t low = 0;
          if (!keel_json__hex4(c, &cp)) return 0;
          if (cp >= 0xDC00 && cp <= 0xDFFF) return 0; /* a lone low surrogate */
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (c->end - c->p < 2 || c->p[0] != '\\' || c->p[1] != 'u') return 0;
            c->p += 2;
            if (!keel_json__hex4(c, &low) || low < 0xDC00 || low > 0xDFFF) return 0;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          }
          break;
        }
        default: return 0;
      }
      keel_json__put(out, cap, n, cp);
      continue;
    }
    if (ch < 0x80) {
      keel_json__put(out, cap, n, ch);
      ++c->p;
      continue;
    }
    { /* a multi-byte sequence: valid UTF-8 only (RFC 3629: no overlong form, no surrogate) */
      size_t len = 0, k;
      uint32_t cp = 0;
      if (ch >= 0xC2 && ch <= 0xDF) { len = 2; cp = ch & 0x1Fu; }
      else if (ch >= 0xE0 && ch <= 0xEF) { len = 3; cp = ch & 0x0Fu; }
      else if (ch >= 0xF0 && ch <= 0xF4) { len = 4; cp = ch & 0x07u; }
      if (len == 0 || (size_t)(c->end - c->p) < len) return 0;
      for (k = 1; k < len; ++k) {
        const unsigned char cc = (unsigned char)c->p[k];
        if ((cc & 0xC0u) != 0x80u) return 0;
        cp = (cp << 6) | (cc & 0x3Fu);
      }
      if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
      for (k = 0; k < len; ++k) {
        if (out != NULL && *n < cap) out[*n] = c->p[k];
        ++*n;
      }
      c->p += len;
    }
  }
  return 0;
}

static inline int keel_json__digits(keel_json__cursor* c) {
  const char* from = c->p;
  while (c->p < c->end && *c->p >= '0' && *c->p <= '9') ++c->p;
  return c->p != from;
}

/* A number at c->p; *integer is set when it has no fraction and no exponent. */
static inline int keel_json__number(keel_json__cursor* c, int* integer) {
  const char* digits_at;
  *integer = 1;
  if (c->p < c->end && *c->p == '-') ++c->p;
  digits_at = c->p;
  if (!keel_json__digits(c)) return 0;
  if (c->p - digits_at > 1 && *digits_at == '0') return 0; /* a leading zero */
  if (c->p < c->end && *c->p == '.') {
    *integer = 0;
    ++c->p;
    if (!keel_json__digits(c)) return 0;
  }
  if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
    *integer = 0;
    ++c->p;
    if (c->p < c->end && (*c->p == '+' || *c->p == '-')) ++c->p;
    if (!keel_json__digits(c)) return 0;
  }
  return 1;
}

static inline int keel_json__literal(keel_json__cursor* c, const char* word) {
  const size_t n = strlen(word);
  if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0) return 0;
  c->p += n;
  return 1;
}

/* Skips one value at c->p (after whitespace), validating it. */
static inline int keel_json__value(keel_json__cursor* c, int depth) {
  size_t n;
  int integer;
  keel_json__space(c);
  if (c->p >= c->end) return 0;
  switch (*c->p) {
    case '"': return keel_json__string(c, NULL, 0, &n);
    case 't': return keel_json__literal(c, "true");
    case 'f': return keel_json__literal(c, "false");
    case 'n': return keel_json__literal(c, "null");
    case '[':
    case '{': {
      const char close = *c->p == '[' ? ']' : '}';
      if (depth >= KEEL_JSON_MAX_DEPTH) return 0;
      ++c->p;
      keel_json__space(c);
      if (c->p < c->end && *c->p == close) { ++c->p; return 1; }
      for (;;) {
        if (close == '}') {
          keel_json__space(c);
          if (c->p >= c->end || *c->p != '"' || !keel_json__string(c, NULL, 0, &n)) return 0;
          keel_json__space(c);
          if (c->p >= c->end || *c->p != ':') return 0;
          ++c->p;
        }
        if (!keel_json__value(c, depth + 1)) return 0;
        keel_json__space(c);
        if (c->p < c->end && *c->p == ',') { ++c->p; continue; }
        if (c->p < c->end && *c->p == close) { ++c->p; return 1; }
        return 0;
      }
    }
    default: return keel_json__number(c, &integer);
  }
}

/* Finds the top-level member `key` of the object `json`: *value gets the cursor on its value.
 * Checks the whole text first (one object, nothing after it); `key` named twice is refused. */
static inline keel_json_result keel_json__find(const char* json, size_t len, const char* key, keel_json__cursor* value) {
  keel_json__cursor c;
  const size_t key_len = strlen(key);
  int found = 0;
  char name[256];
  if (json == NULL) return KEEL_JSON_MALFORMED;
  c.p = json;
  c.end = json + len;
  { /* the whole text: one value, and an object */
    keel_json__cursor all = c;
    if (!keel_json__value(&all, 0)) return KEEL_JSON_MALFORMED;
    keel_json__space(&all);
    if (all.p != all.end) return KEEL_JSON_MALFORMED;
  }
  keel_json__space(&c);
  if (*c.p != '{') return KEEL_JSON_MALFORMED;
  ++c.p;
  keel_json__space(&c);
  if (*c.p == '}') return KEEL_JSON_ABSENT;
  for (;;) { /* the text is valid: every step below succeeds */
    size_t n = 0;
    keel_json__space(&c);
    keel_json__string(&c, name, sizeof name, &n);
    keel_json__space(&c);
    ++c.p; /* : */
    keel_json__space(&c);
    if (n == key_len && n <= sizeof name && memcmp(name, key, n) == 0) {
      if (found) return KEEL_JSON_MALFORMED; /* which one would be meant? */
      *value = c;
      found = 1;
    }
    keel_json__value(&c, 1);
    keel_json__space(&c);
    if (*c.p != ',') break;
    ++c.p;
  }
  if (!found) return KEEL_JSON_ABSENT;
  {
    keel_json__cursor v = *value;
    if (keel_json__literal(&v, "null")) return KEEL_JSON_ABSENT;
  }
  return KEEL_JSON_OK;
}

/* --- the API -------------------------------------------------------------------------------- */

/** The string member `key` of the object `json` (`len` bytes, need not be NUL-terminated),
 * decoded to UTF-8 into `out` with a terminating NUL; *out_len (if not NULL) gets its length.
 * A string holding NUL (\u0000) is refused as KEEL_JSON_WRONG_TYPE: C strings cannot hold it. */
static inline keel_json_result keel_json_get_string(const char* json, size_t len, const char* key, char* out,
                                                    size_t out_size, size_t* out_len) {
  keel_json__cursor v;
  size_t n = 0;
  const keel_json_result r = keel_json__find(json, len, key, &v);
  if (r != KEEL_JSON_OK) return r;
  if (*v.p != '"') return KEEL_JSON_WRONG_TYPE;
  keel_json__string(&v, out, out_size, &n);
  if (out == NULL || n >= out_size) return KEEL_JSON_TOO_LONG;
  if (memchr(out, '\0', n) != NULL) return KEEL_JSON_WRONG_TYPE;
  out[n] = '\0';
  if (out_len != NULL) *out_len = n;
  return KEEL_JSON_OK;
}

/** The integer member `key` (no fraction or exponent, within int64) into *out. */
static inline keel_json_result keel_json_get_int(const char* json, size_t len, const char* key, int64_t* out) {
  keel_json__cursor v;
  int integer = 0;
  const char* p;
  uint64_t magnitude = 0;
  int negative;
  const keel_json_result r = keel_json__find(json, len, key, &v);
  if (r != KEEL_JSON_OK) return r;
  p = v.p;
  if (*p != '-' && (*p < '0' || *p > '9')) return KEEL_JSON_WRONG_TYPE;
  if (!keel_json__number(&v, &integer) || !integer) return KEEL_JSON_WRONG_TYPE;
  negative = *p == '-';
  if (negative) ++p;
  for (; p < v.p; ++p) {
    const uint64_t digit = (uint64_t)(*p - '0');
    if (magnitude > (UINT64_C(9223372036854775808) - digit) / 10) return KEEL_JSON_WRONG_TYPE;
    magnitude = magnitude * 10 + digit;
  }
  if (!negative && magnitude > (uint64_t)INT64_MAX) return KEEL_JSON_WRONG_TYPE;
  *out = negative ? (magnitude == UINT64_C(9223372036854775808) ? INT64_MIN : -(int64_t)magnitude) : (int64_t)magnitude;
  return KEEL_JSON_OK;
}

/** The boolean member `key` into *out (1 or 0). */
static inline keel_json_result keel_json_get_bool(const char* json, size_t len, const char* key, int* out) {
  keel_json__cursor v;
  const keel_json_result r = keel_json__find(json, len, key, &v);
  if (r != KEEL_JSON_OK) return r;
  if (*v.p == 't') { *out = 1; return KEEL_JSON_OK; }
  if (*v.p == 'f') { *out = 0; return KEEL_JSON_OK; }
  return KEEL_JSON_WRONG_TYPE;
}

/** The object or array member `key` as its JSON text: *out points into `json`, *out_len bytes
 * (read its members with the functions above). */
static inline keel_json_result keel_json_get_raw(const char* json, size_t len, const char* key, const char** out,
                                                 size_t* out_len) {
  keel_json__cursor v;
  const char* start;
  const keel_json_result r = keel_json__find(json, len, key, &v);
  if (r != KEEL_JSON_OK) return r;
  start = v.p;
  keel_json__value(&v, 1);
  *out = start;
  *out_len = (size_t)(v.p - start);
  return KEEL_JSON_OK;
}

#if defined(__cplusplus) && defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#endif /* KEEL_JSON_H */

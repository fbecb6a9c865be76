/* s3_auth.c - SigV4 for S3: rebuild the canonical request the client must have signed, derive
 * the signing key from the secret, compare in constant time; errors named and worded as S3's. */
#include "s3_auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3_checksum.h"

#define ALGO "AWS4-HMAC-SHA256"

/* ---- small string helpers ---- */

typedef struct {
  char *p;
  size_t len, cap;
  int oom;
} sbuf_t;

static void sb_add(sbuf_t *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 512;
    while (cap < b->len + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->p = p, b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void sb_puts(sbuf_t *b, const char *s) { sb_add(b, s, strlen(s)); }
static void sb_putc(sbuf_t *b, char c) { sb_add(b, &c, 1); }

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int is_space(int c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}
static int is_digit(int c) { return c >= '0' && c <= '9'; }
static int to_lower(int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

static int is_unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c) || c == '-' || c == '_' ||
         c == '.' || c == '~';
}

/* Percent-decode; a '%' without two hex digits after it is taken literally, as S3 does. */
static size_t uri_decode(char *dst, const char *s, size_t n) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    int hi, lo;
    if (s[i] == '%' && i + 2 < n && (hi = hexval(s[i + 1])) >= 0 && (lo = hexval(s[i + 2])) >= 0) {
      dst[o++] = (char)(hi << 4 | lo);
      i += 2;
    } else {
      dst[o++] = s[i];
    }
  }
  return o;
}

/* AWS's UriEncode: every byte but the unreserved set becomes %XX (uppercase hex). */
static size_t uri_encode(char *dst, const char *s, size_t n, int keep_slash) {
  static const char hex[] = "0123456789ABCDEF";
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (is_unreserved(c) || (keep_slash && c == '/')) {
      dst[o++] = (char)c;
    } else {
      dst[o++] = '%';
      dst[o++] = hex[c >> 4];
      dst[o++] = hex[c & 15];
    }
  }
  dst[o] = '\0';
  return o;
}

/* ---- the query string ---- */

typedef struct {
  const char *name, *value;   /* percent-decoded (a %00 truncates; such a value is useless) */
  const char *ename, *evalue; /* re-encoded the AWS way, for the canonical query */
} qparam_t;

typedef struct {
  qparam_t *v;
  size_t n;
  char *mem;
} query_t;

/* Decode then re-encode each name and value, so "a b", "a%20b" and "a+b"... are each signed the
 * way the client's own encoder must have written them. One arena holds every string. */
static int query_parse(const char *raw, query_t *q) {
  memset(q, 0, sizeof *q);
  size_t len = raw ? strlen(raw) : 0, n = 1;
  if (len == 0) return 0;
  for (size_t i = 0; i < len; i++) n += raw[i] == '&';
  q->v = calloc(n, sizeof *q->v);
  q->mem = malloc(4 * len + 4 * n + 1); /* decoded <= raw, encoded <= 3 * decoded */
  if (!q->v || !q->mem) return -1;
  char *m = q->mem;
  for (const char *p = raw; p <= raw + len;) {
    const char *amp = memchr(p, '&', (size_t)(raw + len - p));
    const char *end = amp ? amp : raw + len;
    if (end > p) {
      const char *eq = memchr(p, '=', (size_t)(end - p));
      const char *ne = eq ? eq : end, *vs = eq ? eq + 1 : end;
      qparam_t *qp = &q->v[q->n++];
      char *name = m;
      size_t nl = uri_decode(name, p, (size_t)(ne - p));
      name[nl] = '\0', m += nl + 1;
      char *value = m;
      size_t vl = uri_decode(value, vs, (size_t)(end - vs));
      value[vl] = '\0', m += vl + 1;
      qp->ename = m, m += uri_encode(m, name, nl, 0) + 1;
      qp->evalue = m, m += uri_encode(m, value, vl, 0) + 1;
      qp->name = name, qp->value = value;
    }
    p = end + 1;
  }
  return 0;
}

static void query_free(query_t *q) {
  free(q->v);
  free(q->mem);
}

static const char *query_get(const query_t *q, const char *name) {
  for (size_t i = 0; i < q->n; i++)
    if (strcmp(q->v[i].name, name) == 0) return q->v[i].value;
  return NULL;
}

static int qparam_cmp(const void *a, const void *b) {
  const qparam_t *x = *(const qparam_t *const *)a, *y = *(const qparam_t *const *)b;
  int c = strcmp(x->ename, y->ename);
  return c ? c : strcmp(x->evalue, y->evalue);
}

/* Sorted by encoded name then value; X-Amz-Signature is left out of presigned requests. */
static int canonical_query(sbuf_t *b, const query_t *q, int presigned) {
  if (q->n == 0) return 0;
  const qparam_t **v = malloc(q->n * sizeof *v);
  if (!v) return -1;
  size_t n = 0;
  for (size_t i = 0; i < q->n; i++)
    if (!presigned || strcmp(q->v[i].name, "X-Amz-Signature") != 0) v[n++] = &q->v[i];
  qsort(v, n, sizeof *v, qparam_cmp);
  for (size_t i = 0; i < n; i++) {
    if (i) sb_putc(b, '&');
    sb_puts(b, v[i]->ename);
    sb_putc(b, '=');
    sb_puts(b, v[i]->evalue);
  }
  free(v);
  return 0;
}

/* ---- errors ---- */

static s3_auth_status_t fail(s3_auth_t *a, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static s3_auth_status_t fail(s3_auth_t *a, const char *code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(a->message, sizeof a->message, fmt, ap);
  va_end(ap);
  a->code = code;
  OPENSSL_cleanse(a->signing_key, sizeof a->signing_key);
  return a->status = S3_AUTH_ERROR;
}

#define E_HEADER "AuthorizationHeaderMalformed"
#define E_QUERY "AuthorizationQueryParametersError"
#define MSG_NOT_SUPPORTED \
  "The authorization mechanism you have provided is not supported. Please use " ALGO "."
#define MSG_MISMATCH                                                                     \
  "The request signature we calculated does not match the signature you provided. Check " \
  "your key and signing method."
#define MSG_QUERY_PARAMS                                                                 \
  "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, " \
  "X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters."

/* ---- dates ---- */

static int digits(const char *s, int n) {
  int v = 0;
  while (n--) v = v * 10 + (*s++ - '0');
  return v;
}

/* ISO 8601 basic, "20130524T000000Z", the only form SigV4 signs. */
static int parse_amz_date(const char *s, time_t *out) {
  if (!s || strlen(s) != 16 || s[8] != 'T' || s[15] != 'Z') return -1;
  for (int i = 0; i < 15; i++)
    if (i != 8 && !is_digit(s[i])) return -1;
  struct tm tm = {0};
  tm.tm_year = digits(s, 4) - 1900;
  tm.tm_mon = digits(s + 4, 2) - 1;
  tm.tm_mday = digits(s + 6, 2);
  tm.tm_hour = digits(s + 9, 2);
  tm.tm_min = digits(s + 11, 2);
  tm.tm_sec = digits(s + 13, 2);
  struct tm want = tm, back;
  time_t t = timegm(&tm);
  /* timegm normalises Feb 30 into March: a round trip rejects such dates. */
  if (!gmtime_r(&t, &back) || back.tm_year != want.tm_year || back.tm_mon != want.tm_mon ||
      back.tm_mday != want.tm_mday || back.tm_hour != want.tm_hour || back.tm_min != want.tm_min ||
      back.tm_sec != want.tm_sec)
    return -1;
  *out = t;
  return 0;
}

/* RFC 1123 Date header ("Fri, 24 May 2013 00:00:00 GMT"), used when x-amz-date is absent. */
static int parse_http_date(const char *s, time_t *out) {
  static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
  char mon[4];
  int d, y, hh, mm, ss, n = 0;
  if (!s || sscanf(s, "%*3[A-Za-z], %2d %3[A-Za-z] %4d %2d:%2d:%2d GMT%n", &d, mon, &y, &hh, &mm,
                   &ss, &n) != 6 || n == 0 || s[n] != '\0')
    return -1;
  const char *m = strstr(months, mon);
  if (!m || (m - months) % 3 != 0) return -1;
  char iso[72]; /* sized for any ints: parse_amz_date rejects what does not fit */
  snprintf(iso, sizeof iso, "%04d%02d%02dT%02d%02d%02dZ", y, (int)(m - months) / 3 + 1, d, hh,
           mm, ss);
  return parse_amz_date(iso, out);
}

static void format_amz_date(time_t t, char out[17]) {
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

/* ---- SigV4 primitives ---- */

static void hmac256(const uint8_t *key, size_t klen, const char *msg, size_t mlen,
                    uint8_t out[32]) {
  unsigned int outl = 32;
  HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, mlen, out, &outl);
}

void s3_sigv4_signing_key(const char *secret, const char *date8, const char *region,
                          const char *service, uint8_t key[32]) {
  size_t sl = strlen(secret);
  char *k = malloc(sl + 5);
  uint8_t a[32], b[32];
  if (!k) {
    memset(key, 0, 32);
    return;
  }
  memcpy(k, "AWS4", 4);
  memcpy(k + 4, secret, sl + 1);
  hmac256((uint8_t *)k, sl + 4, date8, strlen(date8), a);
  hmac256(a, 32, region, strlen(region), b);
  hmac256(b, 32, service, strlen(service), a);
  hmac256(a, 32, "aws4_request", 12, key);
  OPENSSL_cleanse(k, sl + 4);
  OPENSSL_cleanse(a, sizeof a);
  OPENSSL_cleanse(b, sizeof b);
  free(k);
}

void s3_sigv4_sign(const uint8_t key[32], const char *msg, size_t len, char hex[65]) {
  uint8_t mac[32];
  hmac256(key, 32, msg, len, mac);
  s3_hex(mac, 32, hex);
}

int s3_sigv4_equal(const char *expected, const char *given) {
  if (!given || strlen(given) != 64) return 0;
  return CRYPTO_memcmp(expected, given, 64) == 0;
}

/* ---- the parts of one signed request ---- */

typedef struct {
  int presigned;
  char *credential;     /* AKID/date/region/service/aws4_request, split in place */
  char *signed_headers; /* "host;range;x-amz-date" */
  const char *signature;
  const char *payload; /* the literal last line of the canonical request */
  char date8[9];
} sigparts_t;

/* The credential scope; errors worded as S3 words them for each way of signing. */
static s3_auth_status_t parse_credential(const s3_auth_req_t *req, sigparts_t *s, s3_auth_t *a) {
  const char *code = s->presigned ? E_QUERY : E_HEADER;
  const char *pre = s->presigned ? "Error parsing the X-Amz-Credential parameter; "
                                 : "The authorization header is malformed; ";
  char *part[5], *c = s->credential;
  int n = 4;
  /* From the right: the key id is whatever precedes the four scope fields. */
  for (char *p = c + strlen(c); p > c && n > 0; p--)
    if (p[-1] == '/') p[-1] = '\0', part[n--] = p;
  part[0] = c;
  if (n != 0 || !*part[0] || strlen(part[1]) != 8 || !*part[2] || !*part[3])
    return fail(a, code,
                "%sthe Credential is mal-formed; expecting "
                "\"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".",
                pre);
  if (strlen(part[0]) >= sizeof a->akid || strlen(part[2]) >= sizeof a->region)
    return fail(a, code, "%sthe Credential is mal-formed.", pre);
  strcpy(a->akid, part[0]);
  strcpy(a->region, part[2]);
  memcpy(s->date8, part[1], 9);
  if (strcmp(part[4], "aws4_request") != 0)
    return fail(a, code,
                "%sCredential should be scoped with a valid terminator: 'aws4_request', not '%s'.",
                pre, part[4]);
  if (strcmp(part[3], "s3") != 0)
    return fail(a, code, "%sCredential should be scoped to correct service: 's3'.", pre);
  if (req->region && strcmp(req->region, part[2]) != 0)
    return fail(a, code, "%sthe region '%s' is wrong; expecting '%s'", pre, part[2], req->region);
  snprintf(a->scope, sizeof a->scope, "%s/%s/s3/aws4_request", s->date8, a->region);
  return S3_AUTH_OK;
}

static int is_hex64(const char *s) {
  if (!s || strlen(s) != 64) return 0;
  for (int i = 0; i < 64; i++)
    if (hexval(s[i]) < 0) return 0;
  return 1;
}

/* x-amz-content-sha256 decides how the body is checked. */
static int parse_payload(const char *v, s3_auth_t *a) {
  static const struct {
    const char *name;
    s3_payload_t mode;
  } modes[] = {
      {"UNSIGNED-PAYLOAD", S3_PAYLOAD_UNSIGNED},
      {"STREAMING-AWS4-HMAC-SHA256-PAYLOAD", S3_PAYLOAD_STREAMING},
      {"STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", S3_PAYLOAD_STREAMING_TRAILER},
      {"STREAMING-UNSIGNED-PAYLOAD-TRAILER", S3_PAYLOAD_STREAMING_UNSIGNED_TRAILER},
  };
  for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
    if (strcmp(v, modes[i].name) == 0) {
      a->payload = modes[i].mode;
      return 0;
    }
  if (!is_hex64(v)) return -1;
  a->payload = S3_PAYLOAD_SHA256;
  for (int i = 0; i < 64; i++) a->payload_sha256[i] = (char)to_lower(v[i]);
  a->payload_sha256[64] = '\0';
  return 0;
}

/* Trim, and fold each run of whitespace to one space (botocore: ' '.join(v.split())). */
static void canonical_value(sbuf_t *b, const char *v) {
  int pending = 0, started = 0;
  for (; v && *v; v++) {
    if (is_space((unsigned char)*v)) {
      pending = started;
      continue;
    }
    if (pending) sb_putc(b, ' ');
    sb_putc(b, *v);
    pending = 0, started = 1;
  }
}

static s3_auth_status_t check_signed_headers(const sigparts_t *s, s3_auth_t *a) {
  const char *h = s->signed_headers;
  int host = 0;
  if (!*h) goto bad;
  for (const char *p = h;;) {
    const char *e = strchr(p, ';');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    if (n == 0 || n > 128) goto bad;
    for (size_t i = 0; i < n; i++)
      if (is_space((unsigned char)p[i]) || p[i] == ':') goto bad;
    if (n == 4 && memcmp(p, "host", 4) == 0) host = 1;
    if (!e) break;
    p = e + 1;
  }
  /* Unsigned, Host could be swapped to replay a request on another virtual-hosted bucket. */
  if (!host)
    return fail(a, "AccessDenied",
                "There were headers present in the request which were not signed: host");
  return S3_AUTH_OK;
bad:
  return fail(a, s->presigned ? E_QUERY : E_HEADER, "%s; SignedHeaders is mal-formed: '%s'.",
              s->presigned ? "Error parsing the X-Amz-SignedHeaders parameter"
                           : "The authorization header is malformed",
              h);
}

/* Canonical request -> string to sign -> signature (hex). uri is the encoded path to use. */
static int compute_signature(const s3_auth_req_t *req, const query_t *q, const sigparts_t *s,
                             const char *uri, s3_auth_t *a, char out[65]) {
  sbuf_t b = {0};
  char name[132];
  sb_puts(&b, req->method);
  sb_putc(&b, '\n');
  sb_puts(&b, uri);
  sb_putc(&b, '\n');
  if (canonical_query(&b, q, s->presigned) < 0) b.oom = 1;
  sb_putc(&b, '\n');
  for (const char *p = s->signed_headers;;) {
    const char *e = strchr(p, ';');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    for (size_t i = 0; i < n; i++) name[i] = (char)to_lower((unsigned char)p[i]);
    name[n] = '\0';
    sb_puts(&b, name);
    sb_putc(&b, ':');
    canonical_value(&b, req->get_header(req->header_arg, name));
    sb_putc(&b, '\n');
    if (!e) break;
    p = e + 1;
  }
  sb_putc(&b, '\n');
  sb_puts(&b, s->signed_headers);
  sb_putc(&b, '\n');
  sb_puts(&b, s->payload);
  if (b.oom) {
    free(b.p);
    return -1;
  }
  char crhash[65];
  s3_sha256_hex(b.p, b.len, crhash);
  free(b.p);
  int n = snprintf(a->string_to_sign, sizeof a->string_to_sign, ALGO "\n%s\n%s\n%s", a->timestamp,
                   a->scope, crhash);
  s3_sigv4_sign(a->signing_key, a->string_to_sign, (size_t)n, out);
  return 0;
}

/* The path as the client's encoder wrote it: decode, then re-encode every byte outside the
 * unreserved set (keeping '/'). S3 neither normalises nor double-encodes. */
static char *canonical_uri(const char *path) {
  size_t n = path ? strlen(path) : 0;
  if (n == 0) return strdup("/");
  char *dec = malloc(n + 1), *enc = malloc(3 * n + 1);
  if (!dec || !enc) {
    free(dec);
    free(enc);
    return NULL;
  }
  uri_encode(enc, dec, uri_decode(dec, path, n), 1);
  free(dec);
  return enc;
}

static s3_auth_status_t verify_signature(const s3_auth_req_t *req, const query_t *q, sigparts_t *s,
                                         s3_auth_t *a) {
  if (check_signed_headers(s, a) != S3_AUTH_OK) return a->status;
  const char *secret = req->lookup_secret ? req->lookup_secret(req->secret_arg, a->akid) : NULL;
  if (!secret)
    return fail(a, "InvalidAccessKeyId",
                "The AWS Access Key Id you provided does not exist in our records.");
  s3_sigv4_signing_key(secret, s->date8, a->region, "s3", a->signing_key);

  char *uri = canonical_uri(req->path), want[65];
  if (!uri || compute_signature(req, q, s, uri, a, want) < 0) {
    free(uri);
    return fail(a, "InternalError", "out of memory");
  }
  int ok = s3_sigv4_equal(want, s->signature);
  /* A client that signed its path verbatim with a looser encoder (say "=" or "%2F" left as
   * sent) still signed exactly what it sent: accept that too. */
  const char *raw = req->path && *req->path ? req->path : "/";
  if (!ok && strcmp(uri, raw) != 0) {
    if (compute_signature(req, q, s, raw, a, want) < 0) {
      free(uri);
      return fail(a, "InternalError", "out of memory");
    }
    ok = s3_sigv4_equal(want, s->signature);
  }
  free(uri);
  if (!ok) {
    char sts[sizeof a->string_to_sign];
    memcpy(sts, a->string_to_sign, sizeof sts);
    fail(a, "SignatureDoesNotMatch", MSG_MISMATCH);
    memcpy(a->string_to_sign, sts, sizeof sts); /* keep it for the error document */
    return a->status;
  }
  memcpy(a->seed_signature, s->signature, 65);
  a->string_to_sign[0] = '\0';
  return a->status = S3_AUTH_OK;
}

/* ---- the two ways of signing ---- */

static s3_auth_status_t verify_header(const s3_auth_req_t *req, const query_t *q, const char *authz,
                                      s3_auth_t *a, char *copy) {
  sigparts_t s = {0};
  size_t al = strlen(ALGO);
  if (strncmp(authz, ALGO, al) != 0 || (authz[al] && !is_space((unsigned char)authz[al]))) {
    if (strncmp(authz, "AWS ", 4) == 0 || strncmp(authz, "AWS4-", 5) == 0)
      return fail(a, "InvalidRequest", MSG_NOT_SUPPORTED);
    return fail(a, "InvalidArgument", "Unsupported Authorization Type");
  }
  /* "Credential=..., SignedHeaders=..., Signature=..." in any order, spaces optional. */
  for (char *p = copy + al; *p;) {
    while (*p == ',' || is_space((unsigned char)*p)) p++;
    if (!*p) break;
    char *eq = strchr(p, '='), *comma = strchr(p, ',');
    if (!eq || (comma && comma < eq)) goto malformed;
    *eq = '\0';
    char *v = eq + 1, *end = comma ? comma : v + strlen(v);
    char *next = comma ? comma + 1 : end;
    while (end > v && is_space((unsigned char)end[-1])) end--;
    *end = '\0';
    if (strcmp(p, "Credential") == 0) s.credential = v;
    else if (strcmp(p, "SignedHeaders") == 0) s.signed_headers = v;
    else if (strcmp(p, "Signature") == 0) s.signature = v;
    p = next;
  }
  if (!s.credential || !s.signed_headers || !s.signature) goto malformed;
  if (parse_credential(req, &s, a) != S3_AUTH_OK) return a->status;

  time_t t;
  const char *xd = req->get_header(req->header_arg, "x-amz-date");
  if (xd ? parse_amz_date(xd, &t) : parse_http_date(req->get_header(req->header_arg, "date"), &t))
    return fail(a, "AccessDenied", "AWS authentication requires a valid Date or x-amz-date header");
  format_amz_date(t, a->timestamp);
  if (memcmp(s.date8, a->timestamp, 8) != 0)
    return fail(a, "AuthorizationHeaderMalformed",
                "The authorization header is malformed; Invalid credential date. Date is not the "
                "same as X-Amz-Date.");
  if (t > req->now + S3_AUTH_CLOCK_SKEW || t < req->now - S3_AUTH_CLOCK_SKEW)
    return fail(a, "RequestTimeTooSkewed",
                "The difference between the request time and the current time is too large.");

  s.payload = req->get_header(req->header_arg, "x-amz-content-sha256");
  if (!s.payload)
    return fail(a, "InvalidRequest",
                "Missing required header for this request: x-amz-content-sha256");
  if (parse_payload(s.payload, a) < 0)
    return fail(a, "InvalidArgument",
                "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, "
                "STREAMING-UNSIGNED-PAYLOAD-TRAILER, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, "
                "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER or a valid sha256 value.");
  return verify_signature(req, q, &s, a);
malformed:
  return fail(a, "AuthorizationHeaderMalformed",
              "The authorization header is malformed; the authorization header requires three "
              "components: Credential, SignedHeaders, and Signature.");
}

static s3_auth_status_t verify_presigned(const s3_auth_req_t *req, const query_t *q, s3_auth_t *a,
                                         char *cred, char *signed_headers) {
  const char *qe = E_QUERY;
  sigparts_t s = {.presigned = 1, .credential = cred, .signed_headers = signed_headers};
  const char *algo = query_get(q, "X-Amz-Algorithm"), *date = query_get(q, "X-Amz-Date");
  const char *expires = query_get(q, "X-Amz-Expires");
  s.signature = query_get(q, "X-Amz-Signature");
  a->presigned = 1;
  if (algo && strcmp(algo, ALGO) != 0)
    return fail(a, qe, "X-Amz-Algorithm only supports \"" ALGO "\"");
  if (!algo || !cred || !signed_headers || !s.signature || !date || !expires)
    return fail(a, qe, MSG_QUERY_PARAMS);
  time_t t;
  if (parse_amz_date(date, &t) < 0)
    return fail(a, qe, "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"");
  char *end;
  long long exp = strtoll(expires, &end, 10);
  if (!*expires || *end || !is_digit((unsigned char)expires[*expires == '-']))
    return fail(a, qe, "X-Amz-Expires should be a number");
  if (exp < 0) return fail(a, qe, "X-Amz-Expires must be non-negative");
  if (exp == 0 || exp > S3_AUTH_MAX_EXPIRES)
    return fail(a, qe, "X-Amz-Expires must be less than a week (in seconds) that is 604800");
  if (parse_credential(req, &s, a) != S3_AUTH_OK) return a->status;
  memcpy(a->timestamp, date, 17);
  if (memcmp(s.date8, date, 8) != 0)
    return fail(a, qe,
                "Invalid credential date \"%s\". This date is not the same as X-Amz-Date: "
                "\"%.8s\".",
                s.date8, date);
  /* Expiry replaces the skew check, but a URL dated in the future is not valid yet. */
  if (t > req->now + S3_AUTH_CLOCK_SKEW) return fail(a, "AccessDenied", "Request is not valid yet");
  if (req->now > t + exp) return fail(a, "AccessDenied", "Request has expired");
  /* The body of a presigned request is not signed, unless the URL says otherwise. */
  s.payload = query_get(q, "X-Amz-Content-Sha256");
  if (!s.payload) s.payload = "UNSIGNED-PAYLOAD";
  if (parse_payload(s.payload, a) < 0 ||
      (a->payload != S3_PAYLOAD_UNSIGNED && a->payload != S3_PAYLOAD_SHA256))
    return fail(a, "InvalidArgument",
                "X-Amz-Content-Sha256 must be UNSIGNED-PAYLOAD or a valid sha256 value.");
  return verify_signature(req, q, &s, a);
}

/* Without any credentials S3 still reads x-amz-content-sha256 (an anonymous upload may be
 * aws-chunked with a trailing checksum), but never trusts a signature mode. */
static s3_auth_status_t anonymous(const s3_auth_req_t *req, s3_auth_t *a) {
  const char *v = req->get_header(req->header_arg, "x-amz-content-sha256");
  if (v && parse_payload(v, a) < 0)
    return fail(a, "InvalidArgument", "x-amz-content-sha256 must be a valid value.");
  if (a->payload == S3_PAYLOAD_STREAMING || a->payload == S3_PAYLOAD_STREAMING_TRAILER)
    return fail(a, "AccessDenied", "Anonymous requests cannot use signed streaming payloads.");
  return a->status = S3_AUTH_ANONYMOUS;
}

s3_auth_status_t s3_auth_verify(const s3_auth_req_t *req, s3_auth_t *a) {
  memset(a, 0, sizeof *a);
  query_t q;
  if (query_parse(req->query, &q) < 0) {
    query_free(&q);
    return fail(a, "InternalError", "out of memory");
  }
  const char *authz = req->get_header(req->header_arg, "authorization");
  while (authz && is_space((unsigned char)*authz)) authz++;
  if (authz && !*authz) authz = NULL;
  int v4q = query_get(&q, "X-Amz-Algorithm") || query_get(&q, "X-Amz-Credential") ||
            query_get(&q, "X-Amz-Signature");
  int v2q = query_get(&q, "Signature") && query_get(&q, "AWSAccessKeyId");
  char *c1 = NULL, *c2 = NULL;
  s3_auth_status_t st;
  if (authz && (v4q || v2q)) {
    st = fail(a, "InvalidArgument",
              "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
              "Signature query string parameter or the Authorization header should be specified");
  } else if (authz) {
    c1 = strdup(authz); /* parsed in place */
    st = c1 ? verify_header(req, &q, authz, a, c1) : fail(a, "InternalError", "out of memory");
  } else if (v4q) {
    const char *cred = query_get(&q, "X-Amz-Credential");
    const char *sh = query_get(&q, "X-Amz-SignedHeaders");
    c1 = cred ? strdup(cred) : NULL;
    c2 = sh ? strdup(sh) : NULL;
    if ((cred && !c1) || (sh && !c2)) st = fail(a, "InternalError", "out of memory");
    else st = verify_presigned(req, &q, a, c1, c2);
  } else if (v2q) {
    st = fail(a, "InvalidRequest", MSG_NOT_SUPPORTED);
  } else {
    st = anonymous(req, a);
  }
  free(c1);
  free(c2);
  query_free(&q);
  return st;
}

/* s3_chunked.c - aws-chunked decoding as a byte-driven state machine: only chunk header and
 * trailer lines are buffered; data is hashed and handed on as it arrives. */
#include "s3_chunked.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3_checksum.h"

#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define LINE_MAX_LEN 512    /* "10000;chunk-signature=<64 hex>" or "x-amz-checksum-sha256:<b64>" */
#define TRAILERS_MAX 8
#define CHUNK_MAX (1ull << 40) /* far beyond any real chunk; keeps sums from overflowing */

enum { ST_HEADER, ST_DATA, ST_DATA_CR, ST_DATA_LF, ST_TRAILER, ST_DONE, ST_ERROR };

struct s3_chunked_s {
  int state;
  int signed_chunks; /* chunk-signature required and checked */
  int trailers_ok;   /* trailers may follow the last chunk */
  int trailer_sig;   /* ...and end with x-amz-trailer-signature */
  s3_chunked_data_fn fn;
  void *arg;
  uint8_t key[32];
  char prev_sig[65], chunk_sig[65];
  char timestamp[17], scope[128];
  EVP_MD_CTX *md; /* SHA-256 of the current chunk's data */
  uint64_t remaining, total;
  int64_t expect;
  char line[LINE_MAX_LEN];
  size_t line_len;
  int sig_seen;   /* the trailer signature was checked */
  int end_ok;     /* a blank line after the last chunk: the body may end here */
  struct {
    char name[64], value[128];
  } trailers[TRAILERS_MAX];
  size_t ntrailers;
  const char *code;
  char message[192];
};

static int chunk_fail(s3_chunked_t *c, const char *code, const char *msg) {
  c->state = ST_ERROR;
  c->code = code;
  snprintf(c->message, sizeof c->message, "%s", msg);
  return -1;
}

#define MSG_SHORT \
  "You did not provide the number of bytes specified by the Content-Length HTTP header."
#define MALFORMED "Malformed aws-chunked encoding: "
#define MSG_SIG                                                                          \
  "The request signature we calculated does not match the signature you provided. Check " \
  "your key and signing method."

s3_chunked_t *s3_chunked_new(const s3_auth_t *auth, int64_t decoded_length, s3_chunked_data_fn fn,
                             void *arg) {
  s3_chunked_t *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->fn = fn, c->arg = arg, c->expect = decoded_length;
  switch (auth->payload) {
  case S3_PAYLOAD_STREAMING: c->signed_chunks = 1; break;
  case S3_PAYLOAD_STREAMING_TRAILER: c->signed_chunks = c->trailers_ok = c->trailer_sig = 1; break;
  case S3_PAYLOAD_STREAMING_UNSIGNED_TRAILER: c->trailers_ok = 1; break;
  default:
    chunk_fail(c, "InvalidRequest", "aws-chunked needs a STREAMING-* x-amz-content-sha256.");
    return c;
  }
  if (c->signed_chunks) {
    if (auth->status != S3_AUTH_OK) {
      chunk_fail(c, "AccessDenied", "Signed streaming payloads need a signed request.");
      return c;
    }
    memcpy(c->key, auth->signing_key, sizeof c->key);
    memcpy(c->prev_sig, auth->seed_signature, sizeof c->prev_sig);
    memcpy(c->timestamp, auth->timestamp, sizeof c->timestamp);
    memcpy(c->scope, auth->scope, sizeof c->scope);
    if (!(c->md = EVP_MD_CTX_new())) {
      free(c);
      return NULL;
    }
  }
  return c;
}

void s3_chunked_free(s3_chunked_t *c) {
  if (!c) return;
  EVP_MD_CTX_free(c->md);
  OPENSSL_cleanse(c->key, sizeof c->key);
  free(c);
}

/* Chain one signature: the string to sign names the previous signature, so chunks can be
 * neither reordered, dropped nor replayed from another upload. */
static int check_sig(s3_chunked_t *c, const char *kind, const char *hashes, const char *given) {
  char sts[400], want[65];
  int n = snprintf(sts, sizeof sts, "%s\n%s\n%s\n%s\n%s", kind, c->timestamp, c->scope,
                   c->prev_sig, hashes);
  s3_sigv4_sign(c->key, sts, (size_t)n, want);
  if (!s3_sigv4_equal(want, given)) return chunk_fail(c, "SignatureDoesNotMatch", MSG_SIG);
  memcpy(c->prev_sig, want, sizeof c->prev_sig);
  return 0;
}

static int end_of_chunk(s3_chunked_t *c) {
  if (!c->signed_chunks) return 0;
  uint8_t d[32];
  unsigned int dl = 0;
  char hashes[64 + 1 + 65];
  EVP_DigestFinal_ex(c->md, d, &dl);
  memcpy(hashes, EMPTY_SHA256 "\n", 65);
  s3_hex(d, 32, hashes + 65);
  return check_sig(c, "AWS4-HMAC-SHA256-PAYLOAD", hashes, c->chunk_sig);
}

static int parse_hex_size(const char *s, size_t n, uint64_t *out) {
  uint64_t v = 0;
  if (n == 0 || n > 16) return -1;
  for (size_t i = 0; i < n; i++) {
    int d = s[i] >= '0' && s[i] <= '9'   ? s[i] - '0'
            : s[i] >= 'a' && s[i] <= 'f' ? s[i] - 'a' + 10
            : s[i] >= 'A' && s[i] <= 'F' ? s[i] - 'A' + 10
                                         : -1;
    if (d < 0) return -1;
    v = v << 4 | (uint64_t)d;
  }
  if (v > CHUNK_MAX) return -1;
  *out = v;
  return 0;
}

/* "hex-size[;chunk-signature=<64 hex>]" */
static int on_chunk_header(s3_chunked_t *c) {
  const char *l = c->line, *semi = strchr(l, ';');
  uint64_t size;
  if (parse_hex_size(l, semi ? (size_t)(semi - l) : strlen(l), &size) < 0)
    return chunk_fail(c, "InvalidRequest", MALFORMED "bad chunk size.");
  c->chunk_sig[0] = '\0';
  for (const char *p = semi; p; p = strchr(p + 1, ';')) {
    static const char k[] = "chunk-signature=";
    if (strncmp(p + 1, k, sizeof k - 1) == 0) {
      const char *v = p + sizeof k, *e = strchr(v, ';');
      size_t vl = e ? (size_t)(e - v) : strlen(v);
      if (vl != 64) return chunk_fail(c, "SignatureDoesNotMatch", MSG_SIG);
      memcpy(c->chunk_sig, v, 64);
      c->chunk_sig[64] = '\0';
    }
  }
  if (c->signed_chunks && !c->chunk_sig[0])
    return chunk_fail(c, "SignatureDoesNotMatch", "A signed body's chunk has no chunk-signature.");
  if (c->expect >= 0 && c->total + size > (uint64_t)c->expect)
    return chunk_fail(c, "IncompleteBody", "The body is longer than x-amz-decoded-content-length.");
  if (size == 0) {
    /* The last chunk signs the empty string; trailers (or the closing blank line) follow. */
    if (c->signed_chunks) {
      EVP_DigestInit_ex(c->md, EVP_sha256(), NULL);
      if (end_of_chunk(c) < 0) return -1;
    }
    c->state = ST_TRAILER;
    return 0;
  }
  if (c->signed_chunks) EVP_DigestInit_ex(c->md, EVP_sha256(), NULL);
  c->remaining = size;
  c->state = ST_DATA;
  return 0;
}

/* The trailer signature covers "name:value\n" for each trailer, in the order sent. */
static int check_trailer_sig(s3_chunked_t *c, const char *given) {
  EVP_MD_CTX *md = c->md;
  uint8_t d[32];
  unsigned int dl = 0;
  char hex[65];
  EVP_DigestInit_ex(md, EVP_sha256(), NULL);
  for (size_t i = 0; i < c->ntrailers; i++) {
    EVP_DigestUpdate(md, c->trailers[i].name, strlen(c->trailers[i].name));
    EVP_DigestUpdate(md, ":", 1);
    EVP_DigestUpdate(md, c->trailers[i].value, strlen(c->trailers[i].value));
    EVP_DigestUpdate(md, "\n", 1);
  }
  EVP_DigestFinal_ex(md, d, &dl);
  s3_hex(d, 32, hex);
  return check_sig(c, "AWS4-HMAC-SHA256-TRAILER", hex, given);
}

static void trim(char **s, char **e) {
  while (*s < *e && (**s == ' ' || **s == '\t')) (*s)++;
  while (*e > *s && ((*e)[-1] == ' ' || (*e)[-1] == '\t')) (*e)--;
}

/* After the last chunk: "name:value" lines, then a blank line. Some encoders put a blank line
 * between the last chunk and the trailers, so a first blank line only marks a possible end. */
static int on_trailer_line(s3_chunked_t *c) {
  char *l = c->line;
  if (!*l) {
    if (c->ntrailers || c->sig_seen || !c->trailers_ok || c->end_ok) c->state = ST_DONE;
    else c->end_ok = 1;
    return 0;
  }
  if (!c->trailers_ok)
    return chunk_fail(c, "InvalidRequest", MALFORMED "trailer without x-amz-trailer.");
  if (c->sig_seen)
    return chunk_fail(c, "InvalidRequest", MALFORMED "data after the trailer signature.");
  c->end_ok = 0;
  char *colon = strchr(l, ':');
  if (!colon || colon == l)
    return chunk_fail(c, "InvalidRequest", MALFORMED "bad trailer line.");
  char *ns = l, *ne = colon, *vs = colon + 1, *ve = l + strlen(l);
  trim(&ns, &ne);
  trim(&vs, &ve);
  *ne = '\0', *ve = '\0';
  for (char *p = ns; *p; p++)
    if (*p >= 'A' && *p <= 'Z') *p += 32;
  if (strcmp(ns, "x-amz-trailer-signature") == 0) {
    if (!c->trailer_sig) return 0; /* nothing to check it with in unsigned mode */
    if (check_trailer_sig(c, vs) < 0) return -1;
    c->sig_seen = 1;
    return 0;
  }
  if (c->ntrailers == TRAILERS_MAX || (size_t)(ne - ns) >= sizeof c->trailers[0].name ||
      (size_t)(ve - vs) >= sizeof c->trailers[0].value)
    return chunk_fail(c, "InvalidRequest", MALFORMED "trailer too large.");
  strcpy(c->trailers[c->ntrailers].name, ns);
  strcpy(c->trailers[c->ntrailers].value, vs);
  c->ntrailers++;
  return 0;
}

static int on_line(s3_chunked_t *c) {
  if (c->line_len && c->line[c->line_len - 1] == '\r') c->line_len--;
  c->line[c->line_len] = '\0';
  c->line_len = 0;
  return c->state == ST_HEADER ? on_chunk_header(c) : on_trailer_line(c);
}

ssize_t s3_chunked_feed(s3_chunked_t *c, const void *data, size_t len) {
  const char *p = data;
  size_t i = 0;
  if (c->state == ST_ERROR) return -1;
  while (i < len) {
    switch (c->state) {
    case ST_ERROR: return -1;
    case ST_DONE:
      chunk_fail(c, "InvalidRequest", MALFORMED "data after the end.");
      return -1;
    case ST_DATA: {
      size_t n = len - i < c->remaining ? len - i : (size_t)c->remaining;
      if (c->md) EVP_DigestUpdate(c->md, p + i, n);
      c->remaining -= n;
      c->total += n;
      int r = c->fn ? c->fn(c->arg, p + i, n) : 0;
      i += n;
      if (r < 0) return chunk_fail(c, "InternalError", "The upload was aborted.");
      if (c->remaining == 0) {
        if (end_of_chunk(c) < 0) return -1;
        c->state = ST_DATA_CR;
      }
      if (r > 0) return (ssize_t)i;
      break;
    }
    case ST_DATA_CR:
    case ST_DATA_LF: {
      char want = c->state == ST_DATA_CR ? '\r' : '\n';
      if (p[i] != want)
        return chunk_fail(c, "InvalidRequest", MALFORMED "chunk not followed by CRLF.");
      i++;
      c->state = c->state == ST_DATA_CR ? ST_DATA_LF : ST_HEADER;
      break;
    }
    default: { /* ST_HEADER, ST_TRAILER: collect one line */
      const char *nl = memchr(p + i, '\n', len - i);
      size_t n = (nl ? (size_t)(nl - (p + i)) : len - i);
      if (c->line_len + n >= sizeof c->line)
        return chunk_fail(c, "InvalidRequest", MALFORMED "line too long.");
      if (memchr(p + i, '\0', n))
        return chunk_fail(c, "InvalidRequest", MALFORMED "NUL in a line.");
      memcpy(c->line + c->line_len, p + i, n);
      c->line_len += n;
      i += n;
      if (nl) {
        i++;
        if (on_line(c) < 0) return -1;
      }
    }
    }
  }
  return (ssize_t)len;
}

int s3_chunked_finish(s3_chunked_t *c) {
  static const char sig_key[] = "x-amz-trailer-signature:";
  if (c->state == ST_ERROR) return -1;
  /* Lenient about the very end only where a signature proves nothing is missing: a pending
   * "\r", or a trailer signature line without its CRLF. */
  if (c->state == ST_TRAILER && c->line_len) {
    int sig_line = c->trailer_sig && c->line_len > sizeof sig_key - 1 &&
                   strncmp(c->line, sig_key, sizeof sig_key - 1) == 0;
    if (!(c->line_len == 1 && c->line[0] == '\r') && !sig_line)
      return chunk_fail(c, "IncompleteBody", "The request body terminated unexpectedly.");
    if (on_line(c) < 0) return -1;
  }
  /* Without the closing blank line: fine after a signed last chunk (no trailers allowed) or a
   * verified trailer signature; an unsigned trailer section must be closed. */
  if (c->state == ST_TRAILER && (c->end_ok || !c->trailers_ok || c->sig_seen)) c->state = ST_DONE;
  if (c->state != ST_DONE)
    return chunk_fail(c, "IncompleteBody", "The request body terminated unexpectedly.");
  if (c->trailer_sig && c->ntrailers && !c->sig_seen)
    return chunk_fail(c, "SignatureDoesNotMatch", "The trailing headers are not signed.");
  if (c->expect >= 0 && c->total != (uint64_t)c->expect)
    return chunk_fail(c, "IncompleteBody", MSG_SHORT);
  return 0;
}

const char *s3_chunked_code(const s3_chunked_t *c) { return c->code; }
const char *s3_chunked_message(const s3_chunked_t *c) { return c->message; }
uint64_t s3_chunked_decoded(const s3_chunked_t *c) { return c->total; }

const char *s3_chunked_trailer(const s3_chunked_t *c, const char *name) {
  for (size_t i = 0; i < c->ntrailers; i++)
    if (strcmp(c->trailers[i].name, name) == 0) return c->trailers[i].value;
  return NULL;
}

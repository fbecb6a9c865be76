/* s3_object.c - object operations of the S3 API: PutObject (streamed, verified), GetObject and
 * HeadObject (conditionals, ranges, overrides), DeleteObject(s), CopyObject and tagging. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "s3.h"
#include "s3_checksum.h"

#define S3_MAX_PUT_SIZE (5ull << 30)

/* ---- request headers -> ObjectMeta ---- */

static char *dup_header(s3_ctx_t *c, const char *name) {
  const char *v = s3_header(c, name);
  return strdup(v ? v : "");
}

static int url_decode(const char *in, size_t n, char *out) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    if (in[i] == '%' && i + 2 < n + 0 && i + 2 <= n - 1 + 0) {
      unsigned v;
      if (sscanf(in + i + 1, "%2x", &v) != 1) return -1;
      out[o++] = (char)v;
      i += 2;
    } else if (in[i] == '+') {
      out[o++] = ' ';
    } else {
      out[o++] = in[i];
    }
  }
  out[o] = 0;
  return 0;
}

/* S3's limits on an object's tag set. */
#define S3_MAX_TAGS 10
#define S3_MAX_TAG_KEY 128
#define S3_MAX_TAG_VALUE 256

static int tags_valid(const Gureum__KeyValue *const *t, size_t n) {
  if (n > S3_MAX_TAGS) return 0;
  for (size_t i = 0; i < n; i++) {
    size_t kl = strlen(t[i]->key);
    if (kl == 0 || kl > S3_MAX_TAG_KEY || strlen(t[i]->value) > S3_MAX_TAG_VALUE) return 0;
    for (size_t j = 0; j < i; j++)
      if (strcmp(t[i]->key, t[j]->key) == 0) return 0;
  }
  return 1;
}

/* x-amz-tagging: "k1=v1&k2=v2", URL-encoded. */
static int parse_tagging(const char *s, Gureum__ObjectMeta *m) {
  if (!s || !*s) return 0;
  char *copy = strdup(s), *save = NULL;
  for (char *p = strtok_r(copy, "&", &save); p; p = strtok_r(NULL, "&", &save)) {
    char *eq = strchr(p, '=');
    size_t kl = eq ? (size_t)(eq - p) : strlen(p);
    Gureum__KeyValue *kv = malloc(sizeof *kv);
    gureum__key_value__init(kv);
    kv->key = malloc(kl + 1);
    kv->value = malloc(eq ? strlen(eq + 1) + 1 : 1);
    url_decode(p, kl, kv->key);
    if (eq) url_decode(eq + 1, strlen(eq + 1), kv->value);
    else kv->value[0] = 0;
    m->tags = realloc(m->tags, (m->n_tags + 1) * sizeof *m->tags);
    m->tags[m->n_tags++] = kv;
  }
  free(copy);
  return tags_valid((const Gureum__KeyValue *const *)m->tags, m->n_tags) ? 0 : -1;
}

/* "aws-chunked" describes the upload's framing, not the object: S3 does not keep it. */
static void strip_aws_chunked(char *enc) {
  char out[512] = "";
  char *save = NULL;
  for (char *t = strtok_r(enc, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    while (*t == ' ') t++;
    if (strcasecmp(t, "aws-chunked") == 0 || !*t) continue;
    size_t l = strlen(out);
    snprintf(out + l, sizeof out - l, "%s%s", l ? "," : "", t);
  }
  strcpy(enc, out);
}

int s3_meta_from_headers(s3_ctx_t *c, Gureum__ObjectMeta *m) {
  gureum__object_meta__init(m);
  m->bucket = strdup(c->bucket);
  m->key = strdup(c->key);
  m->version_id = strdup("");
  m->etag = strdup("");
  const char *ct = s3_header(c, "content-type");
  m->content_type = strdup(ct && *ct ? ct : "binary/octet-stream");
  m->content_encoding = dup_header(c, "content-encoding");
  strip_aws_chunked(m->content_encoding);
  m->content_disposition = dup_header(c, "content-disposition");
  m->cache_control = dup_header(c, "cache-control");
  m->content_language = dup_header(c, "content-language");
  m->expires = dup_header(c, "expires");
  const char *sc = s3_header(c, "x-amz-storage-class");
  m->storage_class = strdup(sc && *sc ? sc : "STANDARD");
  m->owner = strdup(c->akid ? c->akid : "anonymous");
  m->checksum_algorithm = strdup("");
  m->checksum_value = strdup("");
  m->checksum_type = strdup("");
  m->data_id.len = 0;
  if (strcmp(m->storage_class, "STANDARD") != 0 && strcmp(m->storage_class, "REDUCED_REDUNDANCY") != 0) {
    s3_error(c, 400, "InvalidStorageClass", "The storage class you specified is not valid");
    return -1;
  }
  size_t meta_bytes = 0;
  for (size_t i = 0; i < c->req->nheaders; i++) {
    const char *n = c->req->headers[i].name;
    if (strncasecmp(n, "x-amz-meta-", 11) != 0) continue;
    Gureum__KeyValue *kv = malloc(sizeof *kv);
    gureum__key_value__init(kv);
    kv->key = strdup(n + 11);
    for (char *p = kv->key; *p; p++) *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
    kv->value = strdup(c->req->headers[i].value);
    meta_bytes += strlen(kv->key) + strlen(kv->value);
    m->user_meta = realloc(m->user_meta, (m->n_user_meta + 1) * sizeof *m->user_meta);
    m->user_meta[m->n_user_meta++] = kv;
  }
  if (meta_bytes > 2048) {
    s3_error(c, 400, "MetadataTooLarge", "Your metadata headers exceed the maximum allowed metadata size (2 KB)");
    return -1;
  }
  if (parse_tagging(s3_header(c, "x-amz-tagging"), m) != 0) {
    s3_error(c, 400, "BadRequest", "Object tags cannot be greater than %d, keys 1-%d characters, values at most %d, keys unique", S3_MAX_TAGS, S3_MAX_TAG_KEY, S3_MAX_TAG_VALUE);
    return -1;
  }
  return 0;
}

static void kvs_free(Gureum__KeyValue **kvs, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(kvs[i]->key);
    free(kvs[i]->value);
    free(kvs[i]);
  }
  free(kvs);
}

void s3_meta_headers_free(Gureum__ObjectMeta *m) {
  char **strs[] = {&m->bucket, &m->key, &m->version_id, &m->etag, &m->content_type,
                   &m->content_encoding, &m->content_disposition, &m->cache_control,
                   &m->content_language, &m->expires, &m->storage_class, &m->owner,
                   &m->checksum_algorithm, &m->checksum_value, &m->checksum_type};
  for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
    if (*strs[i] != protobuf_c_empty_string) free(*strs[i]);
    *strs[i] = NULL;
  }
  kvs_free(m->user_meta, m->n_user_meta);
  kvs_free(m->tags, m->n_tags);
  m->user_meta = m->tags = NULL;
  m->n_user_meta = m->n_tags = 0;
}

/* ---- ObjectMeta -> response headers ---- */

typedef struct hdrs_s {
  const char **h;
  size_t n, max;
  char *pool;
  size_t used, cap;
} hdrs_t;

static void hdr(hdrs_t *b, const char *name, const char *value) {
  if (!value || !*value || b->n + 2 >= b->max) return;
  size_t nl = strlen(name) + 1, vl = strlen(value) + 1;
  if (b->used + nl + vl > b->cap) return;
  char *np = b->pool + b->used;
  memcpy(np, name, nl);
  char *vp = np + nl;
  memcpy(vp, value, vl);
  b->used += nl + vl;
  b->h[b->n++] = np;
  b->h[b->n++] = vp;
  b->h[b->n] = NULL;
}

size_t s3_object_headers(s3_ctx_t *c, const Gureum__ObjectMeta *m, const char **h, size_t max,
                         char *pool, size_t poolsz) {
  hdrs_t b = {h, 0, max, pool, 0, poolsz};
  char tmp[96];
  h[0] = NULL;
  if (!m->delete_marker) {
    snprintf(tmp, sizeof tmp, "\"%s\"", m->etag);
    hdr(&b, "ETag", tmp);
    s3_http_date(m->mtime_ms, tmp);
    hdr(&b, "Last-Modified", tmp);
    hdr(&b, "Accept-Ranges", "bytes");
    /* response-* query parameters override the stored headers on GET. */
    static const struct { const char *param, *header; int field; } ov[] = {
        {"response-content-type", "Content-Type", 0},
        {"response-content-language", "Content-Language", 1},
        {"response-expires", "Expires", 2},
        {"response-cache-control", "Cache-Control", 3},
        {"response-content-disposition", "Content-Disposition", 4},
        {"response-content-encoding", "Content-Encoding", 5}};
    const char *stored[] = {m->content_type, m->content_language, m->expires, m->cache_control,
                            m->content_disposition, m->content_encoding};
    for (size_t i = 0; i < 6; i++) {
      char *o = s3_param(c, ov[i].param);
      hdr(&b, ov[i].header, o ? o : stored[ov[i].field]);
      free(o);
    }
    for (size_t i = 0; i < m->n_user_meta; i++) {
      char name[300];
      snprintf(name, sizeof name, "x-amz-meta-%s", m->user_meta[i]->key);
      hdr(&b, name, m->user_meta[i]->value);
    }
    if (strcmp(m->storage_class, "STANDARD") != 0) hdr(&b, "x-amz-storage-class", m->storage_class);
    if (m->n_tags) {
      snprintf(tmp, sizeof tmp, "%zu", m->n_tags);
      hdr(&b, "x-amz-tagging-count", tmp);
    }
    if (m->parts_count) {
      snprintf(tmp, sizeof tmp, "%u", m->parts_count);
      hdr(&b, "x-amz-mp-parts-count", tmp);
    }
    const char *mode = s3_header(c, "x-amz-checksum-mode");
    if (mode && strcasecmp(mode, "ENABLED") == 0 && m->checksum_algorithm[0] && !c->ranged) {
      s3_checksum_algo_t a = s3_checksum_algo_parse(m->checksum_algorithm);
      if (a != S3_CK_NONE) hdr(&b, s3_checksum_header(a), m->checksum_value);
      if (m->checksum_type[0]) hdr(&b, "x-amz-checksum-type", m->checksum_type);
    }
  } else {
    hdr(&b, "x-amz-delete-marker", "true");
  }
  if (m->version_id[0] && strcmp(m->version_id, "null") != 0) hdr(&b, "x-amz-version-id", m->version_id);
  else if (m->version_id[0]) {
    const Gureum__BucketConfig *bk = s3_meta_bucket(c->s3->meta, c->bucket, NULL);
    if (bk && bk->versioning[0]) hdr(&b, "x-amz-version-id", "null");
  }
  return b.n;
}

/* ---- PutObject and UploadPart: one streamed, verified upload ---- */

struct s3_upload_s {
  s3_ctx_t *c;
  repl_writer_t *w;
  Gureum__ObjectMeta meta; /* PutObject's headers; empty for a part */
  const char *ck_type;     /* FULL_OBJECT for objects, "" for parts */
  s3_checksum_t ck;
  char *ck_expected; /* from the header; trailers arrive at the end */
  uint64_t received;
  int last, failed;
  char *piece;
};
typedef struct s3_upload_s put_t;

static void put_free(put_t *p) {
  free(p->piece);
  s3_meta_headers_free(&p->meta);
  s3_checksum_free(&p->ck);
  free(p->ck_expected);
  free(p);
}

static void put_committed(void *arg, obj_status_t st, const Gureum__ObjectMeta *m) {
  put_t *p = arg;
  s3_ctx_t *c = p->c;
  if (st != OBJ_OK) {
    s3_obj_error(c, st);
  } else {
    const char *h[16];
    char etag[80], ck[S3_CHECKSUM_B64_MAX];
    size_t n = 0;
    snprintf(etag, sizeof etag, "\"%s\"", m->etag);
    h[n++] = "ETag";
    h[n++] = etag;
    if (strcmp(m->version_id, "null") != 0 && m->version_id[0]) {
      h[n++] = "x-amz-version-id";
      h[n++] = m->version_id;
    }
    if (m->checksum_algorithm[0]) {
      snprintf(ck, sizeof ck, "%s", m->checksum_value);
      h[n++] = s3_checksum_header(s3_checksum_algo_parse(m->checksum_algorithm));
      h[n++] = ck;
    }
    h[n] = NULL;
    s3_reply_empty(c, 200, h);
  }
  put_free(p);
}

static void put_finish(put_t *p) {
  s3_ctx_t *c = p->c;
  const char *cl = s3_header(c, "x-amz-decoded-content-length");
  if (!cl) cl = s3_header(c, "content-length");
  if (cl && strtoull(cl, NULL, 10) != p->received) {
    repl_put_abort(p->w);
    s3_error(c, 400, "IncompleteBody", "You did not provide the number of bytes specified by the Content-Length HTTP header.");
    put_free(p);
    return;
  }
  const char *md5 = s3_header(c, "content-md5");
  if (md5 && !s3_content_md5_check(md5, repl_writer_md5(p->w))) {
    repl_put_abort(p->w);
    s3_error(c, 400, "BadDigest", "The Content-MD5 you specified did not match what we received.");
    put_free(p);
    return;
  }
  if (p->ck.algo != S3_CK_NONE) {
    char got[S3_CHECKSUM_B64_MAX];
    s3_checksum_final(&p->ck, got);
    const char *want = p->ck_expected;
    if (!want) want = s3_trailer(c, s3_checksum_header(p->ck.algo));
    if (want && strcmp(want, got) != 0) {
      repl_put_abort(p->w);
      s3_error(c, 400, "BadDigest", "The %s you specified did not match the calculated checksum.",
               s3_checksum_header(p->ck.algo));
      put_free(p);
      return;
    }
    repl_writer_set_checksum(p->w, s3_checksum_algo_name(p->ck.algo), got, p->ck_type);
  }
  repl_put_commit(p->w, put_committed, p);
}

static void put_written(void *arg, obj_status_t st) {
  put_t *p = arg;
  if (st != OBJ_OK) {
    p->failed = 1;
    repl_put_abort(p->w);
    s3_obj_error(p->c, st);
    put_free(p);
    return;
  }
  if (p->last) put_finish(p);
  else s3_resume_body(p->c);
}

static void put_body(s3_ctx_t *c, const char *data, size_t len, int last) {
  put_t *p = c->body_state;
  if (!data && !len && last < 0) { /* body failed (auth/framing): the error was answered */
    repl_put_abort(p->w);
    put_free(p);
    return;
  }
  p->received += len;
  p->last = last;
  if (p->received > S3_MAX_PUT_SIZE) {
    c->body_state = NULL;
    repl_put_abort(p->w);
    s3_error(c, 400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed object size.");
    put_free(p);
    return;
  }
  if (len) {
    s3_checksum_update(&p->ck, data, len);
    /* HTTP data is only valid during this call; the writer needs it until its callback. */
    free(p->piece);
    p->piece = malloc(len);
    memcpy(p->piece, data, len);
    s3_pause_body(c);
    repl_write(p->w, p->piece, len, put_written, p);
  } else if (last) {
    put_finish(p);
  }
}

/* The checksum the client promises: a header now, or a trailer at the end of the body. */
static int checksum_setup(s3_ctx_t *c, s3_checksum_t *ck, char **expected) {
  s3_checksum_algo_t algos[] = {S3_CK_CRC32, S3_CK_CRC32C, S3_CK_CRC64NVME, S3_CK_SHA1, S3_CK_SHA256};
  *expected = NULL;
  for (size_t i = 0; i < 5; i++) {
    const char *v = s3_header(c, s3_checksum_header(algos[i]));
    if (!v) continue;
    if (!s3_checksum_valid(algos[i], v)) {
      s3_error(c, 400, "InvalidRequest", "Value for %s header is invalid.", s3_checksum_header(algos[i]));
      return -1;
    }
    *expected = strdup(v);
    s3_checksum_init(ck, algos[i]);
    return 0;
  }
  const char *trailer = s3_header(c, "x-amz-trailer");
  const char *sdk = s3_header(c, "x-amz-sdk-checksum-algorithm");
  if (trailer && strncasecmp(trailer, "x-amz-checksum-", 15) == 0 &&
      s3_checksum_init(ck, s3_checksum_algo_parse(trailer + 15)) == 0)
    return 0;
  s3_checksum_algo_t algo = sdk ? s3_checksum_algo_parse(sdk) : S3_CK_NONE;
  if (algo == S3_CK_NONE) { /* no checksum promised: nothing to verify (init refuses NONE) */
    s3_checksum_init(ck, S3_CK_NONE);
    return 0;
  }
  return s3_checksum_init(ck, algo) == 0 ? 0 : (s3_error(c, 400, "InvalidRequest", "unsupported checksum algorithm"), -1);
}

static void put_object(s3_ctx_t *c, const Gureum__BucketConfig *b) {
  const char *cl = s3_header(c, "content-length");
  const char *te = s3_header(c, "transfer-encoding");
  if (!cl && !te) {
    s3_error(c, 411, "MissingContentLength", "You must provide the Content-Length HTTP header.");
    return;
  }
  if (cl && strtoull(cl, NULL, 10) > S3_MAX_PUT_SIZE + (1u << 20)) {
    s3_error(c, 400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed object size.");
    return;
  }
  obj_cond_t cond;
  if (s3_write_condition(c, &cond) != 0) return;
  put_t *p = s3_upload_new(c);
  if (!p) return;
  if (s3_meta_from_headers(c, &p->meta) != 0) {
    put_free(p);
    return;
  }
  repl_writer_t *w = repl_put_begin(c->s3->repl, &p->meta, strcmp(b->versioning, "Enabled") == 0);
  if (w) repl_writer_set_cond(w, &cond);
  s3_upload_start(p, w, "FULL_OBJECT");
}

int s3_write_condition(s3_ctx_t *c, obj_cond_t *cond) {
  cond->if_match = s3_header(c, "if-match");
  cond->if_none_match = s3_header(c, "if-none-match");
  if (cond->if_none_match && strcmp(cond->if_none_match, "*") != 0) {
    s3_error(c, 501, "NotImplemented", "A header you provided implies functionality that is not implemented: If-None-Match on a write only takes \"*\".");
    return -1;
  }
  return 0;
}

s3_upload_t *s3_upload_new(s3_ctx_t *c) {
  put_t *p = calloc(1, sizeof *p);
  p->c = c;
  if (checksum_setup(c, &p->ck, &p->ck_expected) != 0) {
    put_free(p);
    return NULL;
  }
  return p;
}

void s3_upload_start(s3_upload_t *p, repl_writer_t *w, const char *checksum_type) {
  p->w = w;
  p->ck_type = checksum_type;
  p->c->body_state = p;
  s3_read_body(p->c, put_body);
}

/* ---- GetObject / HeadObject ---- */

typedef struct get_s {
  s3_ctx_t *c;
  repl_reader_t *r;
  int head;
  uint64_t off, len;
} get_t;

static void get_free(get_t *g) {
  if (g->r) repl_reader_free(g->r);
  free(g);
}

static void get_data(void *arg, obj_status_t st, const void *data, size_t len, int eof);

static void get_next(void *arg) {
  get_t *g = arg;
  repl_read(g->r, get_data, g);
}

static void get_data(void *arg, obj_status_t st, const void *data, size_t len, int eof) {
  get_t *g = arg;
  s3_ctx_t *c = g->c;
  if (st != OBJ_OK) {
    /* Headers are gone already: cut the connection so the client sees a short body. */
    log_error("s3", "read_failed", "bucket=%s key=%s error=\"%s\"", c->bucket, c->key, obj_strerror(st));
    c->req->keep_alive = 0;
    http_res_end(c->req);
    c->req = NULL;
    s3_ctx_free(c);
    get_free(g);
    return;
  }
  if (len) {
    http_res_write(c->req, data, len);
    metric_add(c->s3->m_bytes_out, (int64_t)len);
  }
  if (eof) {
    http_res_end(c->req);
    c->req = NULL;
    s3_ctx_free(c);
    get_free(g);
    return;
  }
  /* Read the next block only once the socket has taken most of this one: bounded memory. */
  http_res_wait_drain(c->req, get_next, g);
}

/* Parses "bytes=a-b", "bytes=a-" and "bytes=-n". 0 = no (usable) range, 1 = range set,
 * -1 = unsatisfiable. */
static int parse_range(const char *h, uint64_t size, uint64_t *off, uint64_t *len) {
  if (!h || strncmp(h, "bytes=", 6) != 0 || strchr(h, ',')) return 0;
  const char *p = h + 6;
  char *end;
  if (*p == '-') {
    unsigned long long n = strtoull(p + 1, &end, 10);
    if (end == p + 1 || *end) return 0;
    if (n == 0) return -1;
    if (n > size) n = size;
    *off = size - n;
    *len = n;
    return size ? 1 : -1;
  }
  unsigned long long a = strtoull(p, &end, 10);
  if (end == p || *end != '-') return 0;
  p = end + 1;
  unsigned long long b = size ? size - 1 : 0;
  if (*p) {
    b = strtoull(p, &end, 10);
    if (*end) return 0;
    if (b < a) return 0;
    if (b >= size) b = size - 1;
  }
  if (a >= size) return -1;
  *off = a;
  *len = b - a + 1;
  return 1;
}

/* S3's precedence: If-Match, then If-Unmodified-Since (412); If-None-Match, then
 * If-Modified-Since (304). Returns 0, 304 or 412. */
static int check_conditions(s3_ctx_t *c, const Gureum__ObjectMeta *m, const char *prefix) {
  char name[80];
  uint64_t secs = m->mtime_ms / 1000;
  snprintf(name, sizeof name, "%sif-match", prefix);
  const char *im = s3_header(c, name);
  snprintf(name, sizeof name, "%sif-unmodified-since", prefix);
  const char *ius = s3_header(c, name);
  snprintf(name, sizeof name, "%sif-none-match", prefix);
  const char *inm = s3_header(c, name);
  snprintf(name, sizeof name, "%sif-modified-since", prefix);
  const char *ims = s3_header(c, name);
  if (im && !obj_etag_matches(im, m->etag)) return 412;
  if (!im && ius) {
    int64_t t = s3_parse_http_date(ius);
    if (t >= 0 && (int64_t)secs > t) return 412;
  }
  if (inm && obj_etag_matches(inm, m->etag)) return *prefix ? 412 : 304;
  if (!inm && ims) {
    int64_t t = s3_parse_http_date(ims);
    if (t >= 0 && (int64_t)secs <= t) return *prefix ? 412 : 304;
  }
  return 0;
}

static void get_meta(void *arg, obj_status_t st, const Gureum__ObjectMeta *m) {
  get_t *g = arg;
  s3_ctx_t *c = g->c;
  if (st == OBJ_EDELETED && m) {
    const char *h[] = {"x-amz-delete-marker", "true", "x-amz-version-id", m->version_id, NULL};
    char *v = s3_param(c, "versionId");
    if (v) s3_error_h(c, 405, "MethodNotAllowed", h, "The specified method is not allowed against this resource.");
    else s3_error_h(c, 404, "NoSuchKey", h, "The specified key does not exist.");
    free(v);
    get_free(g);
    return;
  }
  if (st != OBJ_OK) {
    s3_obj_error(c, st);
    get_free(g);
    return;
  }
  int cond = check_conditions(c, m, "");
  if (cond) {
    char etag[80];
    snprintf(etag, sizeof etag, "\"%s\"", m->etag);
    const char *h[] = {"ETag", etag, NULL};
    if (cond == 304) s3_reply_empty(c, 304, h);
    else s3_error(c, 412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold");
    get_free(g);
    return;
  }
  uint64_t off = 0, len = m->size;
  int ranged = 0;
  char *pn = s3_param(c, "partNumber");
  if (pn) {
    unsigned long part = strtoul(pn, NULL, 10);
    free(pn);
    if (part < 1 || (m->parts_count && part > m->parts_count) || (!m->parts_count && part != 1)) {
      s3_error(c, 416, "InvalidPartNumber", "The requested partnumber is not satisfiable");
      get_free(g);
      return;
    }
    if (m->parts_count && m->n_part_sizes >= part) {
      for (unsigned long i = 0; i + 1 < part; i++) off += m->part_sizes[i];
      len = m->part_sizes[part - 1];
      ranged = 1;
    }
  } else {
    int rr = parse_range(s3_header(c, "range"), m->size, &off, &len);
    if (rr < 0) {
      char cr[64];
      snprintf(cr, sizeof cr, "bytes */%llu", (unsigned long long)m->size);
      const char *h[] = {"Content-Range", cr, NULL};
      s3_error_h(c, 416, "InvalidRange", h, "The requested range is not satisfiable");
      get_free(g);
      return;
    }
    ranged = rr == 1;
  }
  const char *h[64];
  char pool[8192];
  c->ranged = ranged;
  size_t n = s3_object_headers(c, m, h, 60, pool, sizeof pool);
  char cr[96];
  if (ranged) {
    snprintf(cr, sizeof cr, "bytes %llu-%llu/%llu", (unsigned long long)off,
             (unsigned long long)(off + len - 1), (unsigned long long)m->size);
    h[n++] = "Content-Range";
    h[n++] = cr;
    h[n] = NULL;
  }
  http_req_t *req = c->req;
  http_res_start(req, ranged ? 206 : 200, (long long)len);
  for (size_t i = 0; i + 1 < n; i += 2) http_res_header(req, h[i], h[i + 1]);
  http_res_header(req, "x-amz-request-id", c->request_id);
  const char *cors[16];
  size_t nc = s3_cors_headers(c, cors, 16);
  for (size_t i = 0; i + 1 < nc; i += 2) http_res_header(req, cors[i], cors[i + 1]);
  if (g->head || len == 0) {
    http_res_end(req);
    c->req = NULL;
    s3_ctx_free(c);
    get_free(g);
    return;
  }
  repl_reader_range(g->r, off, len);
  repl_read(g->r, get_data, g);
}


static void get_object(s3_ctx_t *c, int head) {
  get_t *g = calloc(1, sizeof *g);
  g->c = c;
  g->head = head;
  char *v = s3_param(c, "versionId");
  g->r = repl_get_begin(c->s3->repl, c->bucket, c->key, v && *v ? v : NULL, get_meta, g);
  free(v);
}

/* ---- DeleteObject ---- */

static void delete_done(void *arg, obj_status_t st, const Gureum__ObjectMeta *m) {
  s3_ctx_t *c = arg;
  if (st != OBJ_OK) {
    s3_obj_error(c, st);
    return;
  }
  const char *h[6];
  size_t n = 0;
  if (m && m->delete_marker) {
    h[n++] = "x-amz-delete-marker";
    h[n++] = "true";
  }
  if (m && m->version_id && m->version_id[0]) {
    h[n++] = "x-amz-version-id";
    h[n++] = m->version_id;
  }
  h[n] = NULL;
  s3_reply_empty(c, 204, h);
}

static void delete_object(s3_ctx_t *c, const Gureum__BucketConfig *b) {
  char *v = s3_param(c, "versionId");
  repl_delete(c->s3->repl, c->bucket, c->key, v && *v ? v : NULL, b->versioning, delete_done, c);
  free(v);
}

/* ---- DeleteObjects: one at a time, then one answer ---- */

typedef struct multi_del_s {
  s3_ctx_t *c;
  xmlDocPtr doc;
  xmlNodePtr next;
  int quiet;
  char versioning[16];
  s3_xml_t out;
  char *cur_key, *cur_version;
} multi_del_t;

static void multi_del_step(multi_del_t *d);

static void multi_del_one(void *arg, obj_status_t st, const Gureum__ObjectMeta *m) {
  multi_del_t *d = arg;
  if (st != OBJ_OK) {
    s3_xml_open(&d->out, "Error");
    s3_xml_elem(&d->out, "Key", d->cur_key);
    if (d->cur_version) s3_xml_elem(&d->out, "VersionId", d->cur_version);
    s3_xml_elem(&d->out, "Code", "InternalError");
    s3_xml_elem(&d->out, "Message", obj_strerror(st));
    s3_xml_close(&d->out, "Error");
  } else if (!d->quiet) {
    s3_xml_open(&d->out, "Deleted");
    s3_xml_elem(&d->out, "Key", d->cur_key);
    if (d->cur_version) s3_xml_elem(&d->out, "VersionId", d->cur_version);
    if (m && m->delete_marker) {
      s3_xml_elem(&d->out, "DeleteMarker", "true");
      if (!d->cur_version) s3_xml_elem(&d->out, "DeleteMarkerVersionId", m->version_id);
    }
    s3_xml_close(&d->out, "Deleted");
  }
  free(d->cur_key);
  free(d->cur_version);
  d->cur_key = d->cur_version = NULL;
  multi_del_step(d);
}

static void multi_del_step(multi_del_t *d) {
  if (!d->next) {
    s3_xml_close(&d->out, "DeleteResult");
    s3_reply_xml(d->c, 200, &d->out);
    xmlFreeDoc(d->doc);
    free(d);
    return;
  }
  xmlNodePtr o = d->next;
  d->next = s3_xml_next(o, "Object");
  d->cur_key = s3_xml_child_text(o, "Key");
  d->cur_version = s3_xml_child_text(o, "VersionId");
  if (!d->cur_key || !*d->cur_key) {
    multi_del_one(d, OBJ_ENOENT, NULL);
    return;
  }
  repl_delete(d->c->s3->repl, d->c->bucket, d->cur_key, d->cur_version, d->versioning, multi_del_one, d);
}

void s3_delete_objects(s3_ctx_t *c) {
  const Gureum__BucketConfig *b = s3_meta_bucket(c->s3->meta, c->bucket, NULL);
  xmlDocPtr doc = s3_xml_parse(c->req->body, c->req->body_len);
  xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
  if (!root || strcmp((const char *)root->name, "Delete") != 0) {
    if (doc) xmlFreeDoc(doc);
    s3_error(c, 400, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema.");
    return;
  }
  size_t count = 0;
  for (xmlNodePtr o = s3_xml_child(root, "Object"); o; o = s3_xml_next(o, "Object")) count++;
  if (count > 1000) {
    xmlFreeDoc(doc);
    s3_error(c, 400, "MalformedXML", "You have attempted to delete more objects than allowed (1000).");
    return;
  }
  multi_del_t *d = calloc(1, sizeof *d);
  d->c = c;
  d->doc = doc;
  d->next = s3_xml_child(root, "Object");
  char *q = s3_xml_child_text(root, "Quiet");
  d->quiet = q && strcmp(q, "true") == 0;
  free(q);
  snprintf(d->versioning, sizeof d->versioning, "%s", b ? b->versioning : "");
  s3_xml_begin(&d->out, "DeleteResult");
  multi_del_step(d);
}

/* ---- CopyObject and UploadPartCopy: stream the source into a new writer ---- */

typedef struct copy_s {
  s3_ctx_t *c;
  repl_reader_t *r;
  repl_writer_t *w;
  Gureum__ObjectMeta meta; /* destination (PutObject-style copies) */
  int replace, versioned, ranged;
  uint64_t off, len;
  s3_copy_done_fn done;    /* UploadPartCopy answers differently */
  char *upload_id;
  uint32_t part_number;
} copy_t;

static void copy_free(copy_t *cp) {
  if (cp->r) repl_reader_free(cp->r);
  s3_meta_headers_free(&cp->meta);
  free(cp->upload_id);
  free(cp);
}

static void copy_fail(copy_t *cp, obj_status_t st) {
  if (cp->w) repl_put_abort(cp->w);
  s3_obj_error(cp->c, st);
  copy_free(cp);
}

static void copy_committed(void *arg, obj_status_t st, const Gureum__ObjectMeta *m) {
  copy_t *cp = arg;
  s3_ctx_t *c = cp->c;
  cp->w = NULL;
  if (st != OBJ_OK) {
    copy_fail(cp, st);
    return;
  }
  if (cp->done) {
    cp->done(c, m);
    copy_free(cp);
    return;
  }
  s3_xml_t x;
  s3_xml_begin(&x, "CopyObjectResult");
  s3_xml_elem_time(&x, "LastModified", m->mtime_ms);
  s3_xml_elemf(&x, "ETag", "\"%s\"", m->etag);
  s3_xml_close(&x, "CopyObjectResult");
  if (m->version_id[0] && strcmp(m->version_id, "null") != 0)
    snprintf(c->reply_version, sizeof c->reply_version, "%s", m->version_id);
  s3_reply_xml(c, 200, &x);
  copy_free(cp);
}

static void copy_data(void *arg, obj_status_t st, const void *data, size_t len, int eof);
static void copy_last_wrote(void *arg, obj_status_t st);

static void copy_wrote(void *arg, obj_status_t st) {
  copy_t *cp = arg;
  if (st != OBJ_OK) copy_fail(cp, st);
  else repl_read(cp->r, copy_data, cp);
}

static void copy_data(void *arg, obj_status_t st, const void *data, size_t len, int eof) {
  copy_t *cp = arg;
  if (st != OBJ_OK) {
    copy_fail(cp, st);
    return;
  }
  if (len && !eof) {
    repl_write(cp->w, data, len, copy_wrote, cp);
    return;
  }
  if (len) { /* the last piece: write it, then commit */
    cp->len = 0;
    repl_write(cp->w, data, len, copy_last_wrote, cp);
    return;
  }
  repl_put_commit(cp->w, copy_committed, cp);
}

static void copy_last_wrote(void *arg, obj_status_t st) {
  copy_t *cp = arg;
  if (st != OBJ_OK) copy_fail(cp, st);
  else repl_put_commit(cp->w, copy_committed, cp);
}

static void copy_src_meta(void *arg, obj_status_t st, const Gureum__ObjectMeta *src) {
  copy_t *cp = arg;
  s3_ctx_t *c = cp->c;
  if (st == OBJ_EDELETED) st = OBJ_ENOENT;
  if (st != OBJ_OK) {
    copy_fail(cp, st);
    return;
  }
  if (check_conditions(c, src, "x-amz-copy-source-")) {
    s3_error(c, 412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold");
    copy_free(cp);
    return;
  }
  if (cp->ranged) {
    int rr = parse_range(s3_header(c, "x-amz-copy-source-range"), src->size, &cp->off, &cp->len);
    if (rr != 1) {
      s3_error(c, 416, "InvalidRange", "The requested range is not satisfiable");
      copy_free(cp);
      return;
    }
    repl_reader_range(cp->r, cp->off, cp->len);
  }
  if (cp->part_number) {
    cp->w = repl_mpu_part_begin(c->s3->repl, c->bucket, c->key, cp->upload_id, cp->part_number);
  } else {
    if (!cp->replace) {
      /* COPY: the source's content headers and user metadata travel with the bytes. */
      char **dst[] = {&cp->meta.content_type, &cp->meta.content_encoding, &cp->meta.content_disposition,
                      &cp->meta.cache_control, &cp->meta.content_language, &cp->meta.expires};
      const char *from[] = {src->content_type, src->content_encoding, src->content_disposition,
                            src->cache_control, src->content_language, src->expires};
      for (size_t i = 0; i < 6; i++) {
        free(*dst[i]);
        *dst[i] = strdup(from[i]);
      }
      kvs_free(cp->meta.user_meta, cp->meta.n_user_meta);
      cp->meta.user_meta = calloc(src->n_user_meta + 1, sizeof *cp->meta.user_meta);
      cp->meta.n_user_meta = src->n_user_meta;
      for (size_t i = 0; i < src->n_user_meta; i++) {
        Gureum__KeyValue *kv = malloc(sizeof *kv);
        gureum__key_value__init(kv);
        kv->key = strdup(src->user_meta[i]->key);
        kv->value = strdup(src->user_meta[i]->value);
        cp->meta.user_meta[i] = kv;
      }
    }
    const char *td = s3_header(c, "x-amz-tagging-directive");
    if (!(td && strcasecmp(td, "REPLACE") == 0) && cp->meta.n_tags == 0 && src->n_tags) {
      cp->meta.tags = calloc(src->n_tags, sizeof *cp->meta.tags);
      cp->meta.n_tags = src->n_tags;
      for (size_t i = 0; i < src->n_tags; i++) {
        Gureum__KeyValue *kv = malloc(sizeof *kv);
        gureum__key_value__init(kv);
        kv->key = strdup(src->tags[i]->key);
        kv->value = strdup(src->tags[i]->value);
        cp->meta.tags[i] = kv;
      }
    }
    cp->w = repl_put_begin(c->s3->repl, &cp->meta, cp->versioned);
  }
  repl_read(cp->r, copy_data, cp);
}

/* x-amz-copy-source: "/bucket/key?versionId=V" or "bucket/key", URL-encoded. */
static int parse_copy_source(const char *h, char **bucket, char **key, char **version) {
  if (!h) return -1;
  if (*h == '/') h++;
  char *dec = malloc(strlen(h) + 1);
  const char *q = strstr(h, "?versionId=");
  size_t n = q ? (size_t)(q - h) : strlen(h);
  if (url_decode(h, n, dec) != 0) {
    free(dec);
    return -1;
  }
  char *slash = strchr(dec, '/');
  if (!slash || slash == dec || !slash[1]) {
    free(dec);
    return -1;
  }
  *slash = 0;
  *bucket = strdup(dec);
  *key = strdup(slash + 1);
  *version = q ? strdup(q + 11) : NULL;
  free(dec);
  return 0;
}

void s3_copy(s3_ctx_t *c, const Gureum__BucketConfig *dst, const char *upload_id,
             uint32_t part_number, s3_copy_done_fn done) {
  char *sb = NULL, *sk = NULL, *sv = NULL;
  if (parse_copy_source(s3_header(c, "x-amz-copy-source"), &sb, &sk, &sv) != 0) {
    s3_error(c, 400, "InvalidArgument", "Copy Source must mention the source bucket and key: sourcebucket/sourcekey");
    return;
  }
  const Gureum__BucketConfig *src = s3_meta_bucket(c->s3->meta, sb, NULL);
  if (!src || s3_meta_perm(c->s3->meta, c->akid, src) < S3_PERM_READ) {
    if (!src) s3_error(c, 404, "NoSuchBucket", "The specified bucket does not exist");
    else s3_error(c, 403, "AccessDenied", "Access Denied");
    free(sb), free(sk), free(sv);
    return;
  }
  copy_t *cp = calloc(1, sizeof *cp);
  cp->c = c;
  cp->done = done;
  const char *md = s3_header(c, "x-amz-metadata-directive");
  cp->replace = md && strcasecmp(md, "REPLACE") == 0;
  cp->versioned = strcmp(dst->versioning, "Enabled") == 0;
  if (part_number) {
    cp->upload_id = strdup(upload_id);
    cp->part_number = part_number;
    cp->ranged = s3_header(c, "x-amz-copy-source-range") != NULL;
  } else if (s3_meta_from_headers(c, &cp->meta) != 0) {
    copy_free(cp);
    free(sb), free(sk), free(sv);
    return;
  }
  if (!part_number && !cp->replace && strcmp(sb, c->bucket) == 0 && strcmp(sk, c->key) == 0 && !sv &&
      !s3_header(c, "x-amz-storage-class")) {
    s3_error(c, 400, "InvalidRequest",
             "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.");
    copy_free(cp);
    free(sb), free(sk), free(sv);
    return;
  }
  cp->r = repl_get_begin(c->s3->repl, sb, sk, sv && *sv ? sv : NULL, copy_src_meta, cp);
  free(sb), free(sk), free(sv);
}

/* ---- tagging ---- */

static void tags_reply(void *arg, obj_status_t st, const Gureum__ObjectMeta *m) {
  s3_ctx_t *c = arg;
  if (st != OBJ_OK) {
    s3_obj_error(c, st == OBJ_EDELETED ? OBJ_ENOENT : st);
    return;
  }
  if (m->version_id[0] && strcmp(m->version_id, "null") != 0)
    snprintf(c->reply_version, sizeof c->reply_version, "%s", m->version_id);
  if (strcmp(c->req->method, "DELETE") == 0) {
    s3_reply_empty(c, 204, NULL);
    return;
  }
  if (strcmp(c->req->method, "PUT") == 0) {
    s3_reply_empty(c, 200, NULL);
    return;
  }
  s3_xml_t x;
  s3_xml_begin(&x, "Tagging");
  s3_xml_open(&x, "TagSet");
  for (size_t i = 0; i < m->n_tags; i++) {
    s3_xml_open(&x, "Tag");
    s3_xml_elem(&x, "Key", m->tags[i]->key);
    s3_xml_elem(&x, "Value", m->tags[i]->value);
    s3_xml_close(&x, "Tag");
  }
  s3_xml_close(&x, "TagSet");
  s3_xml_close(&x, "Tagging");
  s3_reply_xml(c, 200, &x);
}

static void tagging(s3_ctx_t *c) {
  char *v = s3_param(c, "versionId");
  const char *ver = v && *v ? v : NULL;
  if (strcmp(c->req->method, "GET") == 0) {
    repl_head(c->s3->repl, c->bucket, c->key, ver, tags_reply, c);
  } else if (strcmp(c->req->method, "DELETE") == 0) {
    repl_set_tags(c->s3->repl, c->bucket, c->key, ver, NULL, 0, tags_reply, c);
  } else {
    xmlDocPtr d = s3_xml_parse(c->req->body, c->req->body_len);
    xmlNodePtr set = d ? s3_xml_child(xmlDocGetRootElement(d), "TagSet") : NULL;
    Gureum__KeyValue kvs[S3_MAX_TAGS + 1], *ptrs[S3_MAX_TAGS + 1];
    char *keys[S3_MAX_TAGS + 1], *vals[S3_MAX_TAGS + 1];
    size_t n = 0;
    int bad = !set, invalid = 0;
    for (xmlNodePtr t = set ? s3_xml_child(set, "Tag") : NULL; t && !bad; t = s3_xml_next(t, "Tag")) {
      if (n == S3_MAX_TAGS + 1) {
        invalid = 1;
        break;
      }
      keys[n] = s3_xml_child_text(t, "Key");
      vals[n] = s3_xml_child_text(t, "Value");
      if (!keys[n] || !vals[n] || !*keys[n]) bad = 1;
      gureum__key_value__init(&kvs[n]);
      kvs[n].key = keys[n] ? keys[n] : (char *)"";
      kvs[n].value = vals[n] ? vals[n] : (char *)"";
      ptrs[n] = &kvs[n];
      n++;
    }
    if (d) xmlFreeDoc(d);
    if (!bad && !tags_valid((const Gureum__KeyValue *const *)ptrs, n)) invalid = 1;
    if (bad) s3_error(c, 400, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema.");
    else if (invalid) s3_error(c, 400, "BadRequest", "Object tags cannot be greater than %d, keys 1-%d characters, values at most %d, keys unique", S3_MAX_TAGS, S3_MAX_TAG_KEY, S3_MAX_TAG_VALUE);
    else repl_set_tags(c->s3->repl, c->bucket, c->key, ver, (const Gureum__KeyValue *const *)ptrs, n, tags_reply, c);
    for (size_t i = 0; i < n; i++) free(keys[i]), free(vals[i]);
  }
  free(v);
}

/* ---- GetObjectAttributes ---- */

static int wants_attr(const char *list, const char *name) {
  size_t n = strlen(name);
  for (const char *p = list; (p = strstr(p, name)); p += n) {
    int start = p == list || p[-1] == ',' || p[-1] == ' ';
    int end = p[n] == 0 || p[n] == ',' || p[n] == ' ';
    if (start && end) return 1;
  }
  return 0;
}

static void attributes_reply(void *arg, obj_status_t st, const Gureum__ObjectMeta *m) {
  s3_ctx_t *c = arg;
  if (st == OBJ_EDELETED && m) {
    const char *h[] = {"x-amz-delete-marker", "true", "x-amz-version-id", m->version_id, NULL};
    s3_error_h(c, 404, "NoSuchKey", h, "The specified key does not exist.");
    return;
  }
  if (st != OBJ_OK) {
    s3_obj_error(c, st);
    return;
  }
  const char *want = s3_header(c, "x-amz-object-attributes");
  if (m->version_id[0] && strcmp(m->version_id, "null") != 0)
    snprintf(c->reply_version, sizeof c->reply_version, "%s", m->version_id);
  s3_xml_t x;
  s3_xml_begin(&x, "GetObjectAttributesResponse");
  if (wants_attr(want, "ETag")) s3_xml_elem(&x, "ETag", m->etag);
  if (wants_attr(want, "Checksum") && m->checksum_algorithm[0] && m->checksum_value[0]) {
    char tag[40];
    snprintf(tag, sizeof tag, "Checksum%s", m->checksum_algorithm);
    s3_xml_open(&x, "Checksum");
    s3_xml_elem(&x, tag, m->checksum_value);
    if (m->checksum_type && m->checksum_type[0]) s3_xml_elem(&x, "ChecksumType", m->checksum_type);
    s3_xml_close(&x, "Checksum");
  }
  if (wants_attr(want, "ObjectParts") && m->parts_count) {
    s3_xml_open(&x, "ObjectParts");
    s3_xml_elemf(&x, "TotalPartsCount", "%u", m->parts_count);
    s3_xml_close(&x, "ObjectParts");
  }
  if (wants_attr(want, "StorageClass"))
    s3_xml_elem(&x, "StorageClass", m->storage_class && *m->storage_class ? m->storage_class : "STANDARD");
  if (wants_attr(want, "ObjectSize")) s3_xml_elemf(&x, "ObjectSize", "%llu", (unsigned long long)m->size);
  s3_xml_close(&x, "GetObjectAttributesResponse");
  s3_reply_xml(c, 200, &x);
}

static void attributes(s3_ctx_t *c) {
  const char *want = s3_header(c, "x-amz-object-attributes");
  if (!want || !*want) {
    s3_error(c, 400, "InvalidArgument", "The x-amz-object-attributes header specifying the attributes to be retrieved is either missing or empty");
    return;
  }
  char *v = s3_param(c, "versionId");
  repl_head(c->s3->repl, c->bucket, c->key, v && *v ? v : NULL, attributes_reply, c);
  free(v);
}

/* ---- dispatch ---- */

void s3_object_op(s3_ctx_t *c) {
  const char *m = c->req->method;
  if (strcmp(m, "OPTIONS") == 0) {
    s3_cors_preflight(c);
    return;
  }
  int read = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;
  const Gureum__BucketConfig *b = s3_bucket_for(c, read ? S3_PERM_READ : S3_PERM_WRITE, NULL);
  if (!b) return;
  if (s3_has_param(c, "tagging")) tagging(c);
  else if (strcmp(m, "GET") == 0 && s3_has_param(c, "attributes")) attributes(c);
  else if (s3_has_subresource(c->req))
    /* never let a sub-resource we do not implement reach the object's data */
    s3_error(c, 501, "NotImplemented", "A header or query you provided requested a function that is not implemented.");
  else if (strcmp(m, "GET") == 0 && s3_has_param(c, "uploadId")) s3_mpu_list_parts(c);
  else if (read) get_object(c, strcmp(m, "HEAD") == 0);
  else if (strcmp(m, "PUT") == 0 && s3_has_param(c, "uploadId")) s3_mpu_part(c);
  else if (strcmp(m, "PUT") == 0 && s3_header(c, "x-amz-copy-source")) s3_copy(c, b, NULL, 0, NULL);
  else if (strcmp(m, "PUT") == 0) put_object(c, b);
  else if (strcmp(m, "DELETE") == 0 && s3_has_param(c, "uploadId")) s3_mpu_abort(c);
  else if (strcmp(m, "DELETE") == 0) delete_object(c, b);
  else if (strcmp(m, "POST") == 0 && s3_has_param(c, "uploads")) s3_mpu_create(c);
  else if (strcmp(m, "POST") == 0 && s3_has_param(c, "uploadId")) s3_mpu_complete(c);
  else s3_error(c, 405, "MethodNotAllowed", "The specified method is not allowed against this resource.");
}

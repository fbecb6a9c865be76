/* s3.c - the S3 API front: routes requests (path- and virtual-hosted style), authenticates them
 * with SigV4, verifies streamed payloads, and answers errors exactly as S3 does. */
#include "s3.h"

#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include "log.h"
#include "s3_auth.h"
#include "s3_checksum.h"
#include "s3_chunked.h"

uint64_t s3_now_ms(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (uint64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

const char *s3_header(s3_ctx_t *c, const char *name) { return http_req_header(c->req, name); }

char *s3_param(s3_ctx_t *c, const char *name) { return http_req_query_param(c->req, name); }

int s3_has_param(s3_ctx_t *c, const char *name) {
  char *v = http_req_query_param(c->req, name);
  free(v);
  return v != NULL;
}

static void s3_maybe_free(s3_t *s3);

void s3_ctx_free(s3_ctx_t *c) {
  if (!c) return;
  s3_t *s3 = c->s3;
  if (c->sha) EVP_MD_CTX_free(c->sha);
  if (c->auth_stream) s3_chunked_free(c->auth_stream);
  free(c->pending);
  free(c->bucket);
  free(c->key);
  free(c->resource);
  free(c);
  s3->live--;
  s3_maybe_free(s3);
}

/* ---- replies ---- */

static void s3_finish_reply(s3_ctx_t *c, int status, const char *ctype, const char *body,
                            size_t len, const char *const *extra) {
  const char *h[48];
  size_t n = 0;
  h[n++] = "x-amz-request-id";
  h[n++] = c->request_id;
  h[n++] = "x-amz-id-2";
  h[n++] = c->request_id;
  if (c->reply_version[0]) {
    h[n++] = "x-amz-version-id";
    h[n++] = c->reply_version;
  }
  for (size_t i = 0; extra && extra[i] && extra[i + 1] && n < 30; i += 2) {
    h[n++] = extra[i];
    h[n++] = extra[i + 1];
  }
  n += s3_cors_headers(c, h + n, 46 - n);
  h[n] = NULL;
  if (status >= 400) metric_inc(c->s3->m_errors);
  http_respond(c->req, status, ctype, body, len, h);
  c->req = NULL;
  c->answered = 1;
  /* A streamed body still arriving is discarded by the HTTP layer. Inside a body callback the
   * context is still on the stack: it is freed when that callback returns. */
  if (!c->busy) s3_ctx_free(c);
}

void s3_reply_xml(s3_ctx_t *c, int status, s3_xml_t *x) {
  s3_finish_reply(c, status, "application/xml", x->buf, x->len, NULL);
  s3_xml_free(x);
}

void s3_reply_empty(s3_ctx_t *c, int status, const char *const *headers) {
  s3_finish_reply(c, status, NULL, NULL, 0, headers);
}

static void s3_verror(s3_ctx_t *c, int status, const char *code, const char *const *headers,
                      const char *fmt, va_list ap) {
  char msg[512];
  vsnprintf(msg, sizeof msg, fmt, ap);
  if (strcmp(c->req->method, "HEAD") == 0) { /* HEAD replies carry no body */
    s3_finish_reply(c, status, NULL, NULL, 0, headers);
    return;
  }
  s3_xml_t x;
  memset(&x, 0, sizeof x);
  s3_xml_raw(&x, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>");
  s3_xml_elem(&x, "Code", code);
  s3_xml_elem(&x, "Message", msg);
  if (c->bucket) s3_xml_elem(&x, "BucketName", c->bucket);
  if (c->key) s3_xml_elem(&x, "Key", c->key);
  s3_xml_elem(&x, "Resource", c->resource ? c->resource : "/");
  s3_xml_elem(&x, "RequestId", c->request_id);
  s3_xml_close(&x, "Error");
  s3_finish_reply(c, status, "application/xml", x.buf, x.len, headers);
  s3_xml_free(&x);
}

void s3_error(s3_ctx_t *c, int status, const char *code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  s3_verror(c, status, code, NULL, fmt, ap);
  va_end(ap);
}

void s3_error_h(s3_ctx_t *c, int status, const char *code, const char *const *headers,
                const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  s3_verror(c, status, code, headers, fmt, ap);
  va_end(ap);
}

void s3_obj_error(s3_ctx_t *c, obj_status_t st) {
  switch (st) {
  case OBJ_ENOENT:
  case OBJ_EDELETED: s3_error(c, 404, "NoSuchKey", "The specified key does not exist."); break;
  case OBJ_ENOVERSION: s3_error(c, 404, "NoSuchVersion", "The specified version does not exist."); break;
  case OBJ_ENOUPLOAD:
    s3_error(c, 404, "NoSuchUpload", "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.");
    break;
  case OBJ_EPART:
    s3_error(c, 400, "InvalidPart", "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag.");
    break;
  case OBJ_EPARTORDER: s3_error(c, 400, "InvalidPartOrder", "The list of parts was not in ascending order. Parts must be ordered by part number."); break;
  case OBJ_ETOOSMALL: s3_error(c, 400, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed object size."); break;
  case OBJ_ERANGE: s3_error(c, 416, "InvalidRange", "The requested range is not satisfiable"); break;
  case OBJ_EUNAVAIL: s3_error(c, 503, "ServiceUnavailable", "Not enough storage nodes are reachable to store or read this object safely; retry when the cluster has a quorum of its copies."); break;
  case OBJ_EPRECOND: s3_error(c, 412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold"); break;
  case OBJ_ECORRUPT: s3_error(c, 500, "InternalError", "A stored block failed its checksum; the data was not returned."); break;
  default: s3_error(c, 500, "InternalError", "We encountered an internal error. Please try again. (%s)", obj_strerror(st)); break;
  }
}

/* ---- buckets and permissions ---- */

const Gureum__BucketConfig *s3_bucket_for(s3_ctx_t *c, s3_perm_t need, uint64_t *rev) {
  const Gureum__BucketConfig *b = s3_meta_bucket(c->s3->meta, c->bucket, rev);
  if (!b) {
    s3_error(c, 404, "NoSuchBucket", "The specified bucket does not exist");
    return NULL;
  }
  if (s3_meta_perm(c->s3->meta, c->akid, b) < need) {
    s3_error(c, 403, "AccessDenied", "Access Denied");
    return NULL;
  }
  return b;
}

/* ---- streamed bodies: payload hash, aws-chunked decoding, then the operation ---- */

static void body_deliver(s3_ctx_t *c, const char *data, size_t len, int last) {
  if (c->sha && len) EVP_DigestUpdate(c->sha, data, len);
  if (last == 1 && c->sha) {
    unsigned char d[32];
    char hex[65];
    EVP_DigestFinal_ex(c->sha, d, NULL);
    EVP_MD_CTX_free(c->sha);
    c->sha = NULL;
    s3_hex(d, 32, hex);
    if (strcmp(hex, c->payload_sha256) != 0) {
      c->on_body(c, NULL, 0, HTTP_BODY_ABORTED);
      s3_error(c, 400, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.");
      return;
    }
  }
  c->on_body(c, data, len, last);
}

static void s3_chunked_error(s3_ctx_t *c) {
  const char *code = s3_chunked_code(c->auth_stream);
  s3_error(c, code && strcmp(code, "SignatureDoesNotMatch") == 0 ? 403 : 400,
           code ? code : "IncompleteBody", "%s", s3_chunked_message(c->auth_stream));
}

/* aws-chunked: the decoder hands out data pieces; when the operation pauses (a disk write in
 * flight) the decoder stops too, and the undecoded rest of the HTTP piece waits in `pending`. */
static int chunked_emit(void *arg, const void *data, size_t len) {
  s3_ctx_t *c = arg;
  if (len) body_deliver(c, (const char *)data, len, 0);
  if (c->answered) return -1;
  return c->paused ? 1 : 0;
}

static void chunked_end(s3_ctx_t *c) {
  if (s3_chunked_finish(c->auth_stream) != 0) {
    c->on_body(c, NULL, 0, HTTP_BODY_ABORTED);
    s3_chunked_error(c);
    return;
  }
  body_deliver(c, NULL, 0, 1);
}

/* Feed what we hold; returns -1 if the request was answered (error), else 0. */
static int chunked_feed(s3_ctx_t *c, const char *data, size_t len) {
  ssize_t n = s3_chunked_feed(c->auth_stream, data, len);
  if (c->answered) return -1;
  if (n < 0) {
    c->on_body(c, NULL, 0, HTTP_BODY_ABORTED);
    s3_chunked_error(c);
    return -1;
  }
  if ((size_t)n < len) { /* paused mid-piece: keep the rest (at most one HTTP read buffer) */
    c->pending = malloc(len - (size_t)n);
    memcpy(c->pending, data + n, len - (size_t)n);
    c->pending_len = len - (size_t)n;
  }
  return 0;
}

static void on_http_body_inner(s3_ctx_t *c, const char *data, size_t len, int last);

/* Holds the context across the callback: an answer given inside it frees it only on return. */
static void on_http_body(http_req_t *req, const char *data, size_t len, int last, void *arg) {
  s3_ctx_t *c = arg;
  (void)req;
  c->busy++;
  on_http_body_inner(c, data, len, last);
  if (--c->busy == 0 && c->answered) s3_ctx_free(c);
}

static void on_http_body_inner(s3_ctx_t *c, const char *data, size_t len, int last) {
  metric_add(c->s3->m_bytes_in, (int64_t)len);
  if (last == HTTP_BODY_ABORTED) {
    c->on_body(c, NULL, 0, HTTP_BODY_ABORTED);
    /* The client went away: nobody reads an answer, but the request must still be released. */
    http_respond(c->req, 400, NULL, NULL, 0, NULL);
    c->req = NULL;
    c->answered = 1;
    return;
  }
  if (!c->auth_stream) {
    body_deliver(c, data, len, last);
    return;
  }
  c->http_done = last;
  if (len && chunked_feed(c, data, len) != 0) return;
  if (last && !c->pending && !c->paused) chunked_end(c);
}

const char *s3_trailer(s3_ctx_t *c, const char *name) {
  return c->auth_stream ? s3_chunked_trailer(c->auth_stream, name) : NULL;
}

void s3_read_body(s3_ctx_t *c, s3_body_fn fn) {
  c->on_body = fn;
  if (!c->streaming) {
    fn(c, c->req->body, c->req->body_len, 1);
    return;
  }
  http_req_read_body(c->req, on_http_body, c);
}

void s3_pause_body(s3_ctx_t *c) {
  c->paused = 1;
  if (c->streaming && c->req) http_req_pause_body(c->req);
}

static void s3_resume_inner(s3_ctx_t *c);

void s3_resume_body(s3_ctx_t *c) {
  c->busy++;
  s3_resume_inner(c);
  if (--c->busy == 0 && c->answered) s3_ctx_free(c);
}

static void s3_resume_inner(s3_ctx_t *c) {
  c->paused = 0;
  if (c->pending) {
    char *p = c->pending;
    size_t n = c->pending_len;
    c->pending = NULL;
    c->pending_len = 0;
    int rv = chunked_feed(c, p, n);
    free(p);
    if (rv != 0 || c->paused) return;
  }
  if (c->auth_stream && c->http_done) {
    if (!c->pending) chunked_end(c);
    return;
  }
  if (c->streaming && c->req) http_req_resume_body(c->req);
}

/* ---- authentication ---- */

static const char *auth_header(void *arg, const char *name) { return http_req_header(arg, name); }

static const char *auth_secret(void *arg, const char *akid) {
  const Gureum__AccessKey *k = s3_meta_key(arg, akid);
  return k ? k->secret_access_key : NULL;
}

static int s3_authenticate(s3_ctx_t *c) {
  s3_auth_t a;
  const char *raw = c->req->url;
  const char *q = strchr(raw, '?');
  char path[8192];
  size_t pl = q ? (size_t)(q - raw) : strlen(raw);
  if (pl >= sizeof path) {
    s3_error(c, 400, "KeyTooLongError", "Your key is too long");
    return -1;
  }
  memcpy(path, raw, pl);
  path[pl] = 0;
  s3_auth_req_t ar = {.method = c->req->method, .path = path, .query = q ? q + 1 : "",
                      .get_header = auth_header, .header_arg = c->req,
                      .lookup_secret = auth_secret, .secret_arg = c->s3->meta,
                      .region = NULL, .now = time(NULL)};
  s3_auth_status_t st = s3_auth_verify(&ar, &a);
  if (st == S3_AUTH_ANONYMOUS) {
    c->akid = NULL;
    return 0;
  }
  if (st != S3_AUTH_OK) {
    int status = strcmp(a.code, "AuthorizationHeaderMalformed") == 0 || strcmp(a.code, "InvalidArgument") == 0 ? 400 : 403;
    s3_error(c, status, a.code, "%s", a.message);
    return -1;
  }
  snprintf(c->akid_buf, sizeof c->akid_buf, "%s", a.akid);
  c->akid = c->akid_buf;
  switch (a.payload) {
  case S3_PAYLOAD_SHA256:
    snprintf(c->payload_sha256, sizeof c->payload_sha256, "%s", a.payload_sha256);
    if (!c->streaming) {
      char hex[65];
      s3_sha256_hex(c->req->body, c->req->body_len, hex);
      if (strcmp(hex, c->payload_sha256) != 0) {
        s3_error(c, 400, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.");
        return -1;
      }
    } else {
      c->sha = EVP_MD_CTX_new();
      EVP_DigestInit_ex(c->sha, EVP_sha256(), NULL);
    }
    break;
  case S3_PAYLOAD_STREAMING:
  case S3_PAYLOAD_STREAMING_TRAILER:
  case S3_PAYLOAD_STREAMING_UNSIGNED_TRAILER:
    if (!c->streaming) {
      s3_error(c, 400, "InvalidRequest", "aws-chunked bodies are only accepted for object and part uploads");
      return -1;
    }
    {
      const char *dl = s3_header(c, "x-amz-decoded-content-length");
      c->auth_stream = s3_chunked_new(&a, dl ? strtoll(dl, NULL, 10) : -1, chunked_emit, c);
    }
    break;
  default: break;
  }
  return 0;
}

/* ---- routing ---- */

/* Virtual-hosted style: Host "BUCKET.<s3 domain>[:port]". */
static char *host_bucket(s3_ctx_t *c, const char *domain) {
  const char *host = s3_header(c, "host");
  if (!host) return NULL;
  size_t hl = strcspn(host, ":"), dl = strlen(domain);
  if (hl <= dl + 1 || host[hl - dl - 1] != '.' || strncasecmp(host + hl - dl, domain, dl) != 0) return NULL;
  char *b = strndup(host, hl - dl - 1);
  for (char *p = b; *p; p++) *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
  return b;
}

static int s3_route(s3_ctx_t *c) {
  const char *path = c->req->path;
  c->bucket = host_bucket(c, c->s3->node->cfg.s3_domain);
  if (*path == '/') path++;
  if (!c->bucket && *path) {
    size_t n = strcspn(path, "/");
    c->bucket = strndup(path, n);
    path += n;
    if (*path == '/') path++;
  }
  if (c->bucket && *path) c->key = strdup(path);
  if (c->key && strlen(c->key) > 1024) {
    s3_error(c, 400, "KeyTooLongError", "Your key is too long");
    return -1;
  }
  size_t rl = 3 + (c->bucket ? strlen(c->bucket) : 0) + (c->key ? strlen(c->key) : 0);
  c->resource = malloc(rl);
  snprintf(c->resource, rl, "/%s%s%s", c->bucket ? c->bucket : "", c->key ? "/" : "", c->key ? c->key : "");
  return 0;
}

static s3_ctx_t *s3_ctx_new(s3_t *s3, http_req_t *req, int website) {
  s3_ctx_t *c = calloc(1, sizeof *c);
  c->s3 = s3;
  c->req = req;
  c->website = website;
  snprintf(c->request_id, sizeof c->request_id, "%016llX", (unsigned long long)++s3->next_request_id);
  s3->live++;
  metric_inc(s3->m_requests);
  return c;
}

/* Bucket and object sub-resources: PUTs with these carry small documents, not object data. */
static const char *const s3_subresources[] = {
    "versioning", "website", "cors", "acl", "tagging", "policy", "lifecycle", "logging",
    "notification", "replication", "encryption", "ownershipControls", "publicAccessBlock",
    "object-lock", "accelerate", "requestPayment", "inventory", "analytics", "metrics",
    "intelligent-tiering", "legal-hold", "retention", "torrent", "restore", "select", "attributes", NULL};

int s3_has_subresource(http_req_t *req) {
  for (int i = 0; s3_subresources[i]; i++) {
    char *v = http_req_query_param(req, s3_subresources[i]);
    if (v) {
      free(v);
      return 1;
    }
  }
  return 0;
}

static int is_upload(http_req_t *req) {
  if (strcmp(req->method, "PUT") != 0 || http_req_header(req, "x-amz-copy-source")) return 0;
  return !s3_has_subresource(req);
}

/* Object and part uploads stream; everything else is a small document, buffered. */
static int s3_on_headers(http_req_t *req, void *arg) {
  (void)arg;
  if (!is_upload(req)) return HTTP_BODY_BUFFER;
  req->user = (void *)1; /* marks the request as streamed for s3_ctx_new */
  return HTTP_BODY_STREAM;
}

static void s3_on_request(http_req_t *req, void *arg) {
  s3_t *s3 = arg;
  s3_ctx_t *c = s3_ctx_new(s3, req, 0);
  c->streaming = req->user == (void *)1;
  if (s3->closing) {
    s3_error(c, 503, "ServiceUnavailable", "The node is shutting down; retry on another node.");
    return;
  }
  if (s3_route(c) != 0) return;
  if (strcmp(req->method, "OPTIONS") == 0 && c->bucket) { /* preflights are never signed */
    s3_cors_preflight(c);
    return;
  }
  if (s3_authenticate(c) != 0) return;
  /* A path-style request for a bucket-looking name with a virtual-host key stays as routed. */
  if (!c->bucket) {
    if (strcmp(req->method, "GET") == 0) s3_list_buckets(c);
    else s3_error(c, 405, "MethodNotAllowed", "The specified method is not allowed against this resource.");
    return;
  }
  if (!c->key) s3_bucket_op(c);
  else s3_object_op(c);
}

static void s3_on_website(http_req_t *req, void *arg) {
  s3_t *s3 = arg;
  s3_ctx_t *c = s3_ctx_new(s3, req, 1);
  c->streaming = 0;
  s3_website_request(c);
}

/* ---- life cycle ---- */

s3_t *s3_start(node_t *n, repl_t *repl, s3_meta_t *meta, char *err, size_t errlen) {
  s3_t *s3 = calloc(1, sizeof *s3);
  s3->node = n;
  s3->repl = repl;
  s3->meta = meta;
  s3->m_requests = metrics_counter(n->metrics, "gureum_s3_requests_total", NULL, "S3 API requests");
  s3->m_errors = metrics_counter(n->metrics, "gureum_s3_errors_total", NULL, "S3 API error replies");
  s3->m_bytes_in = metrics_counter(n->metrics, "gureum_s3_bytes_in_total", NULL, "Request body bytes received");
  s3->m_bytes_out = metrics_counter(n->metrics, "gureum_s3_bytes_out_total", NULL, "Object bytes sent");
  http_opts_t o = {.max_body = 1 << 20, .server_name = "Gureum", .idle_timeout_ms = 60000};
  s3->api = http_server_new(&n->loop, &o, s3_on_request, s3);
  http_server_on_headers(s3->api, s3_on_headers, s3);
  s3->web = http_server_new(&n->loop, &o, s3_on_website, s3);
  int rv = http_server_listen(s3->api, n->cfg.bind, n->cfg.s3_port);
  if (rv == 0) rv = http_server_listen(s3->web, n->cfg.bind, n->cfg.s3_website_port);
  if (rv != 0) {
    snprintf(err, errlen, "cannot listen on %s:%d/%d: %s", n->cfg.bind, n->cfg.s3_port,
             n->cfg.s3_website_port, uv_strerror(rv));
    s3_stop(s3, NULL, NULL);
    return NULL;
  }
  return s3;
}

static void s3_maybe_free(s3_t *s3) {
  if (!s3->closing || s3->close_pending > 0 || s3->live > 0) return;
  void (*cb)(void *) = s3->close_cb;
  void *carg = s3->close_arg;
  free(s3);
  if (cb) cb(carg);
}

/* Requests still working (a disk write, a read) finish first; their answers go nowhere. */
static void s3_server_closed(void *arg) {
  s3_t *s3 = arg;
  s3->close_pending--;
  s3_maybe_free(s3);
}

void s3_stop(s3_t *s3, void (*cb)(void *arg), void *arg) {
  s3->closing = 1;
  s3->close_cb = cb;
  s3->close_arg = arg;
  s3->close_pending = 2;
  http_server_close(s3->api, s3_server_closed, s3);
  http_server_close(s3->web, s3_server_closed, s3);
}

/* s3_web.c - static websites (the website port: index and error documents, redirects) and CORS
 * (preflights and response headers) from the bucket's stored configurations. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "s3.h"

/* ---- CORS ---- */

static int glob_match(const char *pat, const char *s) {
  /* One '*' wildcard, as S3 allows in AllowedOrigin and AllowedHeader. */
  const char *star = strchr(pat, '*');
  if (!star) return strcasecmp(pat, s) == 0;
  size_t pre = (size_t)(star - pat), post = strlen(star + 1), n = strlen(s);
  return n >= pre + post && strncasecmp(pat, s, pre) == 0 && strcasecmp(star + 1, s + n - post) == 0;
}

static int rule_has(xmlNodePtr rule, const char *elem, const char *value) {
  for (xmlNodePtr n = s3_xml_child(rule, elem); n; n = s3_xml_next(n, elem)) {
    xmlChar *t = xmlNodeGetContent(n);
    int ok = t && glob_match((const char *)t, value);
    xmlFree(t);
    if (ok) return 1;
  }
  return 0;
}

/* Every requested header must be allowed by some AllowedHeader. */
static int headers_allowed(xmlNodePtr rule, const char *list) {
  if (!list || !*list) return 1;
  char *copy = strdup(list), *save = NULL;
  int ok = 1;
  for (char *h = strtok_r(copy, ",", &save); h && ok; h = strtok_r(NULL, ",", &save)) {
    while (*h == ' ') h++;
    ok = rule_has(rule, "AllowedHeader", h);
  }
  free(copy);
  return ok;
}

/* The first rule matching origin + method (+ headers); the caller frees *doc. */
static xmlNodePtr cors_match(s3_ctx_t *c, const char *origin, const char *method, const char *hdrs,
                             xmlDocPtr *doc) {
  *doc = NULL;
  if (!c->bucket || !origin) return NULL;
  const Gureum__BucketConfig *b = s3_meta_bucket(c->s3->meta, c->bucket, NULL);
  if (!b || !b->cors_xml[0]) return NULL;
  *doc = s3_xml_parse(b->cors_xml, strlen(b->cors_xml));
  if (!*doc) return NULL;
  xmlNodePtr root = xmlDocGetRootElement(*doc);
  for (xmlNodePtr r = s3_xml_child(root, "CORSRule"); r; r = s3_xml_next(r, "CORSRule"))
    if (rule_has(r, "AllowedOrigin", origin) && rule_has(r, "AllowedMethod", method) && headers_allowed(r, hdrs))
      return r;
  return NULL;
}

static char *join_children(xmlNodePtr rule, const char *elem) {
  size_t cap = 256, len = 0;
  char *out = calloc(1, cap);
  for (xmlNodePtr n = s3_xml_child(rule, elem); n; n = s3_xml_next(n, elem)) {
    xmlChar *t = xmlNodeGetContent(n);
    size_t tl = t ? strlen((const char *)t) : 0;
    if (len + tl + 3 > cap) out = realloc(out, cap = (len + tl + 3) * 2);
    len += (size_t)sprintf(out + len, "%s%s", len ? ", " : "", t ? (const char *)t : "");
    xmlFree(t);
  }
  return out;
}

/* Header strings live in a per-request buffer so callers can pass pointers to the HTTP layer. */
static __thread char cors_pool[2048];

int s3_cors_headers(s3_ctx_t *c, const char **h, size_t max) {
  const char *origin = c->req ? s3_header(c, "origin") : NULL;
  if (!origin || max < 7) return 0;
  xmlDocPtr doc;
  xmlNodePtr r = cors_match(c, origin, c->req->method, NULL, &doc);
  int n = 0;
  if (r) {
    xmlNodePtr o = s3_xml_child(r, "AllowedOrigin");
    xmlChar *ot = o ? xmlNodeGetContent(o) : NULL;
    int any = ot && strcmp((const char *)ot, "*") == 0;
    xmlFree(ot);
    char *expose = join_children(r, "ExposeHeader");
    snprintf(cors_pool, sizeof cors_pool, "%s%c%s", any ? "*" : origin, 0, expose);
    h[n++] = "Access-Control-Allow-Origin";
    h[n++] = cors_pool;
    if (*expose) {
      h[n++] = "Access-Control-Expose-Headers";
      h[n++] = cors_pool + strlen(cors_pool) + 1;
    }
    if (!any) {
      h[n++] = "Vary";
      h[n++] = "Origin";
    }
    free(expose);
  }
  if (doc) xmlFreeDoc(doc);
  return n;
}

void s3_cors_preflight(s3_ctx_t *c) {
  const char *origin = s3_header(c, "origin");
  const char *method = s3_header(c, "access-control-request-method");
  if (!origin || !method) {
    s3_error(c, 400, "BadRequest", "Insufficient information. Origin request header needed.");
    return;
  }
  const Gureum__BucketConfig *b = s3_meta_bucket(c->s3->meta, c->bucket, NULL);
  if (!b || !b->cors_xml[0]) {
    s3_error(c, 403, "CORSResponse", "CORS is not enabled for this bucket.");
    return;
  }
  xmlDocPtr doc;
  xmlNodePtr r = cors_match(c, origin, method, s3_header(c, "access-control-request-headers"), &doc);
  if (!r) {
    if (doc) xmlFreeDoc(doc);
    s3_error(c, 403, "CORSResponse", "This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.");
    return;
  }
  char *methods = join_children(r, "AllowedMethod");
  char *maxage = s3_xml_child_text(r, "MaxAgeSeconds");
  const char *req_headers = s3_header(c, "access-control-request-headers");
  const char *h[16];
  size_t n = 0;
  h[n++] = "Access-Control-Allow-Origin";
  h[n++] = origin;
  h[n++] = "Access-Control-Allow-Methods";
  h[n++] = methods;
  if (req_headers) {
    h[n++] = "Access-Control-Allow-Headers";
    h[n++] = req_headers;
  }
  if (maxage && *maxage) {
    h[n++] = "Access-Control-Max-Age";
    h[n++] = maxage;
  }
  h[n++] = "Vary";
  h[n++] = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method";
  h[n] = NULL;
  /* Answer directly: s3_reply_empty would add the simple-request CORS headers again. */
  http_respond(c->req, 200, NULL, NULL, 0, h);
  c->req = NULL;
  free(methods);
  free(maxage);
  xmlFreeDoc(doc);
  s3_ctx_free(c);
}

/* ---- static websites ---- */

typedef struct web_s {
  s3_ctx_t *c;
  char *index, *error_key;
  char *key;       /* what we are fetching */
  int serving_error;
  int tried_index; /* "dir" without slash: S3 redirects to "dir/" if dir/index exists */
  repl_reader_t *r;
} web_t;

static void web_free(web_t *w) {
  if (w->r) repl_reader_free(w->r);
  free(w->index);
  free(w->error_key);
  free(w->key);
  free(w);
}

static void web_html_error(s3_ctx_t *c, int status, const char *code, const char *msg) {
  char body[1024];
  int n = snprintf(body, sizeof body,
                   "<html>\n<head><title>%d %s</title></head>\n<body>\n<h1>%d %s</h1>\n<ul>\n"
                   "<li>Code: %s</li>\n<li>Message: %s</li>\n<li>RequestId: %s</li>\n</ul>\n<hr/>\n</body>\n</html>\n",
                   status, http_status_text(status), status, http_status_text(status), code, msg, c->request_id);
  http_respond(c->req, status, "text/html; charset=utf-8", body, (size_t)n, NULL);
  c->req = NULL;
  s3_ctx_free(c);
}

static void web_fetch(web_t *w, const char *key);

static void web_data(void *arg, obj_status_t st, const void *data, size_t len, int eof);

static void web_next(void *arg) {
  web_t *w = arg;
  repl_read(w->r, web_data, w);
}

static void web_data(void *arg, obj_status_t st, const void *data, size_t len, int eof) {
  web_t *w = arg;
  s3_ctx_t *c = w->c;
  if (st != OBJ_OK) {
    c->req->keep_alive = 0;
    http_res_end(c->req);
    c->req = NULL;
    s3_ctx_free(c);
    web_free(w);
    return;
  }
  if (len) http_res_write(c->req, data, len);
  if (eof) {
    http_res_end(c->req);
    c->req = NULL;
    s3_ctx_free(c);
    web_free(w);
    return;
  }
  /* Like GetObject: the next block is read only when the socket has taken most of this one. */
  http_res_wait_drain(c->req, web_next, w);
}

static void web_meta(void *arg, obj_status_t st, const Gureum__ObjectMeta *m) {
  web_t *w = arg;
  s3_ctx_t *c = w->c;
  if (st != OBJ_OK) {
    repl_reader_free(w->r);
    w->r = NULL;
    if (!w->serving_error && !w->tried_index && w->index && w->key[0] && w->key[strlen(w->key) - 1] != '/') {
      /* "docs" may be a folder: S3 answers 302 to "docs/" when "docs/index.html" exists. */
      w->tried_index = 1;
      size_t n = strlen(w->key) + strlen(w->index) + 2;
      char *k = malloc(n);
      snprintf(k, n, "%s/%s", w->key, w->index);
      web_fetch(w, k);
      free(k);
      return;
    }
    if (!w->serving_error && w->error_key) {
      w->serving_error = 1;
      web_fetch(w, w->error_key);
      return;
    }
    web_html_error(c, 404, "NoSuchKey", "The specified key does not exist.");
    web_free(w);
    return;
  }
  if (w->tried_index == 1 && !w->serving_error) {
    char loc[1200];
    snprintf(loc, sizeof loc, "/%.*s/", (int)(strlen(w->key) - strlen(w->index) - 1), w->key);
    const char *h[] = {"Location", loc, NULL};
    http_respond(c->req, 302, NULL, NULL, 0, h);
    c->req = NULL;
    s3_ctx_free(c);
    web_free(w);
    return;
  }
  const char *h[64];
  char pool[8192];
  size_t n = s3_object_headers(c, m, h, 60, pool, sizeof pool);
  http_res_start(c->req, w->serving_error ? 404 : 200, (long long)m->size);
  for (size_t i = 0; i + 1 < n; i += 2) http_res_header(c->req, h[i], h[i + 1]);
  if (strcmp(c->req->method, "HEAD") == 0 || m->size == 0) {
    http_res_end(c->req);
    c->req = NULL;
    s3_ctx_free(c);
    web_free(w);
    return;
  }
  repl_read(w->r, web_data, w);
}

static void web_fetch(web_t *w, const char *key) {
  free(w->key);
  w->key = strdup(key);
  w->r = repl_get_begin(w->c->s3->repl, w->c->bucket, w->key, NULL, web_meta, w);
}

/* Bucket from the Host header: "<bucket>.<website domain>" or a bucket named like the host. */
static char *web_bucket(s3_ctx_t *c) {
  const char *host = s3_header(c, "host");
  if (!host) return NULL;
  size_t hl = strcspn(host, ":");
  const char *dom = c->s3->node->cfg.s3_website_domain;
  size_t dl = strlen(dom);
  char *b;
  if (hl > dl + 1 && host[hl - dl - 1] == '.' && strncasecmp(host + hl - dl, dom, dl) == 0)
    b = strndup(host, hl - dl - 1);
  else
    b = strndup(host, hl);
  for (char *p = b; *p; p++) *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
  return b;
}

void s3_website_request(s3_ctx_t *c) {
  if (strcmp(c->req->method, "GET") != 0 && strcmp(c->req->method, "HEAD") != 0) {
    if (strcmp(c->req->method, "OPTIONS") == 0) {
      c->bucket = web_bucket(c);
      s3_cors_preflight(c);
      return;
    }
    web_html_error(c, 405, "MethodNotAllowed", "The specified method is not allowed against this resource.");
    return;
  }
  c->bucket = web_bucket(c);
  const Gureum__BucketConfig *b = c->bucket ? s3_meta_bucket(c->s3->meta, c->bucket, NULL) : NULL;
  if (!b) {
    web_html_error(c, 404, "NoSuchBucket", "The specified bucket does not exist");
    return;
  }
  xmlDocPtr d = b->website_xml[0] ? s3_xml_parse(b->website_xml, strlen(b->website_xml)) : NULL;
  if (!d) {
    web_html_error(c, 404, "NoSuchWebsiteConfiguration", "The specified bucket does not have a website configuration");
    return;
  }
  xmlNodePtr root = xmlDocGetRootElement(d);
  xmlNodePtr all = s3_xml_child(root, "RedirectAllRequestsTo");
  if (all) {
    char *host = s3_xml_child_text(all, "HostName"), *proto = s3_xml_child_text(all, "Protocol");
    char loc[2048];
    snprintf(loc, sizeof loc, "%s://%s%s", proto && *proto ? proto : "http", host ? host : "", c->req->url);
    const char *h[] = {"Location", loc, NULL};
    http_respond(c->req, 301, NULL, NULL, 0, h);
    c->req = NULL;
    s3_ctx_free(c);
    free(host), free(proto);
    xmlFreeDoc(d);
    return;
  }
  web_t *w = calloc(1, sizeof *w);
  w->c = c;
  xmlNodePtr idx = s3_xml_child(root, "IndexDocument");
  xmlNodePtr err = s3_xml_child(root, "ErrorDocument");
  w->index = idx ? s3_xml_child_text(idx, "Suffix") : NULL;
  w->error_key = err ? s3_xml_child_text(err, "Key") : NULL;
  xmlFreeDoc(d);
  /* Anonymous visitors need the bucket to be public; a website config makes it readable. */
  const char *path = c->req->path;
  if (*path == '/') path++;
  size_t n = strlen(path) + (w->index ? strlen(w->index) : 0) + 1;
  char *key = malloc(n);
  snprintf(key, n, "%s%s", path, (!*path || path[strlen(path) - 1] == '/') && w->index ? w->index : "");
  if (!*path && !w->index) {
    free(key);
    web_html_error(c, 404, "NoSuchKey", "The specified key does not exist.");
    web_free(w);
    return;
  }
  if (key[0] && key[strlen(key) - 1] == '/') w->tried_index = 2; /* no folder redirect for "x/" */
  web_fetch(w, key);
  free(key);
}

/* http.c - HTTP/1.1 server on libuv, parsed by http-parser: keep-alive, pipelining answered
 * in order, size limits, idle timeouts, one-shot and streaming (chunked) responses, request
 * bodies buffered whole or streamed to the handler with back-pressure.
 *
 * Streaming works by feeding the parser only while the handler wants body bytes: on_body
 * records the piece and pauses the parser, and conn_process hands it over outside the
 * parser. Unparsed input stays in the connection's read buffer and the socket is not read
 * again until that buffer is used up, so a paused handler holds at most one read's worth. */
#include "http.h"

#include <arpa/inet.h>
#include <http_parser.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "log.h"

#define HTTP_READ_CHUNK 65536
#define HTTP_BACKLOG 511
#define HTTP_LINGER_MS 2000 /* how long we drain a client after a closing response */
#define HTTP_DEFAULT_MAX_BODY ((size_t)1 << 20)
#define HTTP_DEFAULT_MAX_HEADER ((size_t)64 << 10)
#define HTTP_DEFAULT_IDLE_MS 60000
/* A streamed request answered early keeps its connection if at most this much of its body
 * is left to read and drop; more is cheaper to cut off by closing. */
#define HTTP_DISCARD_MAX ((size_t)256 << 10)

/* ---- small buffers ------------------------------------------------------------------- */

typedef struct sbuf_s {
  char *p;
  size_t len, cap;
} sbuf_t;

static void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) {
    log_error("http", "oom", "bytes=%zu", n);
    abort();
  }
  return q;
}

static void *xcalloc(size_t n) {
  void *p = calloc(1, n);
  if (!p) {
    log_error("http", "oom", "bytes=%zu", n);
    abort();
  }
  return p;
}

static char *xstrndup(const char *s, size_t n) {
  char *d = xrealloc(NULL, n + 1);
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

static void sb_reserve(sbuf_t *b, size_t extra) {
  if (b->len + extra + 1 <= b->cap) return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra + 1) cap *= 2;
  b->p = xrealloc(b->p, cap);
  b->cap = cap;
}

static void sb_add(sbuf_t *b, const void *d, size_t n) {
  sb_reserve(b, n);
  if (n) memcpy(b->p + b->len, d, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void sb_adds(sbuf_t *b, const char *s) { sb_add(b, s, strlen(s)); }

static void sb_printf(sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n <= 0) return;
  sb_reserve(b, (size_t)n);
  va_start(ap, fmt);
  vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

/* Append n bytes to a NUL-terminated heap string whose length is tracked in *len. Split
 * parser callbacks are rare, so growing exactly is fine. */
static void str_append(char **s, size_t *len, const char *d, size_t n) {
  *s = xrealloc(*s, *len + n + 1);
  memcpy(*s + *len, d, n);
  *len += n;
  (*s)[*len] = '\0';
}

/* ---- types --------------------------------------------------------------------------- */

struct http_server_s {
  uv_loop_t *loop;
  uv_tcp_t listener;
  int listener_open;
  size_t max_body, max_header;
  int idle_ms;
  char *server_name;
  http_handler_fn handler;
  void *arg;
  http_headers_fn on_headers; /* picks buffered or streamed bodies; NULL = always buffered */
  void *on_headers_arg;
  http_conn_t *conns; /* connections whose handles are still open */
  size_t nconns;
  int closing;
  void (*close_cb)(void *arg);
  void *close_arg;
  time_t date_sec;
  char date[64];
};

/* The public request plus parser and response state. `pub` comes first so an
 * http_req_t* handed to the handler converts back. */
typedef struct req_impl_s {
  http_req_t pub;
  size_t url_len;
  size_t body_cap;
  size_t hdr_cap;
  size_t name_len, value_len; /* of the header being accumulated */
  int in_value;               /* last header callback was a value */
  int is_head;
  int http10;
  /* streamed body (stream = 1) */
  int stream;
  int has_body;         /* chunked or Content-Length > 0 */
  int chunked;
  int continue_pending; /* Expect: 100-continue not answered yet */
  unsigned long long content_length; /* declared; meaningless when chunked */
  http_body_fn body_fn;
  void *body_arg;
  int body_paused;
  int body_done;    /* the parser reached the end of this request's body */
  int body_ended;   /* the last (or aborted) call was made: no more calls */
  int body_aborted; /* the connection died before the body ended */
  uv_idle_t *kick;  /* schedules delivery from the loop; owned, closed with the request */
  /* response */
  int res_started, res_head_sent, res_chunked, res_nobody;
  int res_status;
  long long res_length, res_sent;
  char *res_ctype;
  sbuf_t res_hdrs;
} req_impl_t;

struct http_conn_s {
  uv_loop_t *loop;
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_shutdown_t shutdown_req;
  http_server_t *srv; /* NULL once the handles are closed and the server may be gone */
  http_conn_t *prev, *next;
  http_parser parser;
  char peer[64];
  char *in; /* bytes read; [in_off, in_len) not parsed yet */
  size_t in_off, in_len, in_cap;
  req_impl_t *cur;    /* request being parsed */
  req_impl_t *active; /* request with the handler, not answered yet */
  req_impl_t *body_req; /* == active while its streamed body is still being delivered */
  const char *seg;      /* body piece parsed, not yet delivered (points into `in`) */
  size_t seg_len;
  int dispatch;   /* the parser paused to hand c->cur to the handler */
  int discarding; /* dropping the rest of the body of a streamed request already answered */
  size_t hdr_bytes;
  int err_status; /* set by a parser callback that rejects the request */
  int nwrites;    /* uv_write requests in flight */
  size_t queued;  /* bytes handed to uv_write and not yet written */
  void (*drain_cb)(void *arg); /* http_res_wait_drain: run when `queued` falls low */
  void *drain_arg;
  int handles;    /* open uv handles (tcp + timer) */
  int reading, closing, in_process, close_after_write, shutting, lingering, peer_eof;
};

typedef struct wreq_s {
  uv_write_t req;
  http_conn_t *conn;
  char *buf;
  size_t len;
} wreq_t;

static void conn_process(http_conn_t *c);
static void conn_close(http_conn_t *c);
static void conn_write(http_conn_t *c, char *buf, size_t len);
static void srv_maybe_done(http_server_t *s);
static void conn_read_stop(http_conn_t *c);
static void conn_touch(http_conn_t *c);
static void conn_drain_notify(http_conn_t *c);

/* ---- status text and dates ----------------------------------------------------------- */

const char *http_status_text(int status) {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 507: return "Insufficient Storage";
    default: break;
  }
  if (status >= 100 && status < 200) return "Informational";
  if (status >= 200 && status < 300) return "OK";
  if (status >= 300 && status < 400) return "Redirect";
  if (status >= 400 && status < 500) return "Client Error";
  return "Server Error";
}

/* RFC 7231 IMF-fixdate, formatted by hand so the locale cannot change it; cached per second. */
static const char *srv_date(http_server_t *s) {
  static const char *const wd[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char *const mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  time_t now = time(NULL);
  if (now != s->date_sec || !s->date[0]) {
    struct tm tm;
    gmtime_r(&now, &tm);
    snprintf(s->date, sizeof s->date, "%s, %02d %s %04d %02d:%02d:%02d GMT", wd[tm.tm_wday % 7],
             tm.tm_mday, mon[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
             tm.tm_sec);
    s->date_sec = now;
  }
  return s->date;
}

/* ---- decoding ------------------------------------------------------------------------ */

static int hexval(int ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/* Strict path decoding: a malformed escape or %00 makes the request invalid, because a
 * path that silently changes meaning (or gets cut at a NUL) is worse than a 400. */
static char *path_decode(const char *s, size_t n) {
  char *out = xrealloc(NULL, n + 1);
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] != '%') {
      out[o++] = s[i];
      continue;
    }
    int hi = i + 2 < n ? hexval((unsigned char)s[i + 1]) : -1;
    int lo = i + 2 < n ? hexval((unsigned char)s[i + 2]) : -1;
    if (hi < 0 || lo < 0 || (hi | lo) == 0) {
      free(out);
      return NULL;
    }
    out[o++] = (char)(hi * 16 + lo);
    i += 2;
  }
  out[o] = '\0';
  return out;
}

/* Form decoding for query strings: '+' is a space, %XX a byte; malformed escapes are kept
 * literally since clients are sloppy here and nothing structural depends on them. */
static char *form_decode(const char *s, size_t n, size_t *outlen) {
  char *out = xrealloc(NULL, n + 1);
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    int hi, lo;
    if (s[i] == '+') {
      out[o++] = ' ';
    } else if (s[i] == '%' && i + 2 < n && (hi = hexval((unsigned char)s[i + 1])) >= 0 &&
               (lo = hexval((unsigned char)s[i + 2])) >= 0) {
      out[o++] = (char)(hi * 16 + lo);
      i += 2;
    } else {
      out[o++] = s[i];
    }
  }
  out[o] = '\0';
  if (outlen) *outlen = o;
  return out;
}

/* ---- requests ------------------------------------------------------------------------ */

static req_impl_t *req_new(http_conn_t *c) {
  req_impl_t *ri = xcalloc(sizeof *ri);
  ri->pub.conn = c;
  ri->pub.method = "GET";
  ri->pub.url = xstrndup("", 0);
  snprintf(ri->pub.peer, sizeof ri->pub.peer, "%s", c->peer);
  return ri;
}

static void on_kick_close(uv_handle_t *h) { free(h); }

static void req_free(req_impl_t *ri) {
  if (!ri) return;
  free(ri->pub.url);
  free(ri->pub.path);
  free(ri->pub.query);
  for (size_t i = 0; i < ri->pub.nheaders; i++) {
    free(ri->pub.headers[i].name);
    free(ri->pub.headers[i].value);
  }
  free(ri->pub.headers);
  free(ri->pub.body);
  free(ri->res_ctype);
  free(ri->res_hdrs.p);
  /* The handle outlives the request until its close callback; stopping it here means no
   * delivery can reach a request that is gone. */
  if (ri->kick) uv_close((uv_handle_t *)ri->kick, on_kick_close);
  free(ri);
}

const char *http_req_header(const http_req_t *r, const char *name) {
  for (size_t i = 0; i < r->nheaders; i++)
    if (strcasecmp(r->headers[i].name, name) == 0) return r->headers[i].value;
  return NULL;
}

char *http_req_query_param(const http_req_t *r, const char *name) {
  const char *q = r->query;
  size_t nlen = strlen(name);
  if (!q) return NULL;
  while (*q) {
    const char *end = strchr(q, '&');
    if (!end) end = q + strlen(q);
    const char *eq = memchr(q, '=', (size_t)(end - q));
    const char *kend = eq ? eq : end;
    size_t klen;
    char *key = form_decode(q, (size_t)(kend - q), &klen);
    int match = klen == nlen && memcmp(key, name, nlen) == 0;
    free(key);
    if (match) return eq ? form_decode(eq + 1, (size_t)(end - eq - 1), NULL) : xstrndup("", 0);
    q = *end ? end + 1 : end;
  }
  return NULL;
}

/* Split the raw target into a decoded path and the raw query. */
static int req_parse_url(req_impl_t *ri, int is_connect) {
  http_req_t *r = &ri->pub;
  struct http_parser_url u;
  http_parser_url_init(&u);
  if (http_parser_parse_url(r->url, ri->url_len, is_connect, &u) != 0) return -1;
  if (u.field_set & (1 << UF_PATH)) {
    r->path = path_decode(r->url + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
    if (!r->path) return -1;
  } else {
    r->path = xstrndup("/", 1);
  }
  if (u.field_set & (1 << UF_QUERY))
    r->query = xstrndup(r->url + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
  else
    r->query = xstrndup("", 0);
  return 0;
}

/* ---- parser callbacks ---------------------------------------------------------------- */

static void conn_send_continue(http_conn_t *c) {
  static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
  conn_write(c, xstrndup(cont, sizeof cont - 1), sizeof cont - 1);
}

/* Count header bytes against max_header; past it the request is answered with 431. */
static int hdr_account(http_conn_t *c, size_t n) {
  c->hdr_bytes += n;
  if (c->hdr_bytes > c->srv->max_header) {
    c->err_status = 431;
    return -1;
  }
  return 0;
}

static int on_message_begin(http_parser *p) {
  http_conn_t *c = p->data;
  req_free(c->cur);
  c->cur = req_new(c);
  c->hdr_bytes = 0;
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t n) {
  http_conn_t *c = p->data;
  if (hdr_account(c, n) != 0) return -1;
  str_append(&c->cur->pub.url, &c->cur->url_len, at, n);
  return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n) {
  http_conn_t *c = p->data;
  req_impl_t *ri = c->cur;
  if (!ri) return 0; /* trailer of a streamed body: the handler already has the request */
  http_req_t *r = &ri->pub;
  /* A field after a value (or the very first one) starts a new header; otherwise the
   * parser split one name across reads and we keep appending. */
  if (ri->in_value || r->nheaders == 0) {
    if (hdr_account(c, 4) != 0) return -1; /* ": " and CRLF */
    if (r->nheaders == ri->hdr_cap) {
      ri->hdr_cap = ri->hdr_cap ? ri->hdr_cap * 2 : 16;
      r->headers = xrealloc(r->headers, ri->hdr_cap * sizeof *r->headers);
    }
    r->headers[r->nheaders].name = xstrndup("", 0);
    r->headers[r->nheaders].value = xstrndup("", 0);
    r->nheaders++;
    ri->name_len = ri->value_len = 0;
    ri->in_value = 0;
  }
  if (hdr_account(c, n) != 0) return -1;
  str_append(&r->headers[r->nheaders - 1].name, &ri->name_len, at, n);
  return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n) {
  http_conn_t *c = p->data;
  req_impl_t *ri = c->cur;
  if (!ri || ri->pub.nheaders == 0) return 0;
  if (hdr_account(c, n) != 0) return -1;
  str_append(&ri->pub.headers[ri->pub.nheaders - 1].value, &ri->value_len, at, n);
  ri->in_value = 1;
  return 0;
}

static int on_headers_complete(http_parser *p) {
  http_conn_t *c = p->data;
  req_impl_t *ri = c->cur;
  http_req_t *r = &ri->pub;
  r->method = http_method_str((enum http_method)p->method);
  ri->is_head = p->method == HTTP_HEAD;
  ri->http10 = p->http_major == 1 && p->http_minor == 0;
  /* Upgrades (WebSocket, CONNECT) are not supported: answer, then close. */
  r->keep_alive = http_should_keep_alive(p) && !p->upgrade;
  if (req_parse_url(ri, p->method == HTTP_CONNECT) != 0) {
    c->err_status = 400;
    return -1;
  }
  int has_length = (p->flags & F_CONTENTLENGTH) && p->content_length != ULLONG_MAX;
  ri->chunked = (p->flags & F_CHUNKED) != 0;
  ri->content_length = has_length && !ri->chunked ? p->content_length : 0;
  ri->has_body = ri->chunked || ri->content_length > 0;
  const char *expect = http_req_header(r, "Expect");
  int wants_continue =
      expect && strcasecmp(expect, "100-continue") == 0 && !ri->http10 && ri->has_body;
  r->body = xstrndup("", 0);
  ri->body_cap = 1;
  if (c->srv->on_headers && c->srv->on_headers(r, c->srv->on_headers_arg) == HTTP_BODY_STREAM) {
    /* Hand the request over before its body: pausing here returns from the parser right
     * at the body, which is then fed to it only as fast as the handler takes it. */
    ri->stream = 1;
    ri->continue_pending = wants_continue;
    c->dispatch = 1;
    http_parser_pause(p, 1);
    return 0;
  }
  if (has_length && p->content_length > c->srv->max_body) {
    c->err_status = 413;
    return -1;
  }
  if (has_length && p->content_length > 0) {
    ri->body_cap = (size_t)p->content_length + 1;
    r->body = xrealloc(r->body, ri->body_cap);
  }
  /* Clients that sent Expect: 100-continue wait for this before the body. Nothing else is
   * queued ahead of it: parsing only runs once the previous response is queued. */
  if (wants_continue) conn_send_continue(c);
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t n) {
  http_conn_t *c = p->data;
  if (c->discarding || n == 0) return 0;
  if (c->body_req) {
    /* Streamed: stop the parser so conn_process can deliver this piece outside it. */
    c->seg = at;
    c->seg_len = n;
    http_parser_pause(p, 1);
    return 0;
  }
  req_impl_t *ri = c->cur;
  if (!ri) return 0;
  http_req_t *r = &ri->pub;
  if (r->body_len + n > c->srv->max_body) {
    c->err_status = 413;
    return -1;
  }
  if (r->body_len + n + 1 > ri->body_cap) {
    size_t cap = ri->body_cap > 1 ? ri->body_cap : 4096;
    while (cap < r->body_len + n + 1) cap *= 2;
    r->body = xrealloc(r->body, cap);
    ri->body_cap = cap;
  }
  memcpy(r->body + r->body_len, at, n);
  r->body_len += n;
  r->body[r->body_len] = '\0';
  return 0;
}

/* Pause so that http_parser_execute returns right after this request: the caller hands it
 * to the handler and parses any pipelined bytes only once it has been answered. */
static int on_message_complete(http_parser *p) {
  http_conn_t *c = p->data;
  if (c->discarding) {
    /* The dropped body is over; the next request may follow in this very buffer. */
    c->discarding = 0;
    return 0;
  }
  if (c->body_req) {
    /* End of a streamed body: report it, and keep pipelined requests waiting until the
     * handler has answered. */
    c->body_req->body_done = 1;
    http_parser_pause(p, 1);
    return 0;
  }
  if (!c->cur) return 0;
  c->dispatch = 1;
  http_parser_pause(p, 1);
  return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- connection lifetime ------------------------------------------------------------- */

/* Connection memory outlives its handles while a handler still holds a request or a write
 * or shutdown callback is still due; the last of them frees it. */
static void conn_maybe_free(http_conn_t *c) {
  if (!c->closing || c->handles > 0 || c->active || c->nwrites > 0 || c->shutting) return;
  req_free(c->cur);
  free(c->in);
  free(c);
}

static void on_handle_close(uv_handle_t *h) {
  http_conn_t *c = h->data;
  http_server_t *s = NULL;
  if (--c->handles == 0 && c->srv) {
    s = c->srv;
    if (c->prev) c->prev->next = c->next;
    else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->nconns--;
    c->srv = NULL;
  }
  conn_maybe_free(c);
  if (s) srv_maybe_done(s);
}

/* Delivery to a streamed request always comes from the loop (never from inside the call
 * that asked for it), so handlers need not cope with re-entry from read/resume. */
static void on_kick(uv_idle_t *h);

static void req_kick(req_impl_t *ri) {
  if (!ri->kick) {
    ri->kick = xcalloc(sizeof *ri->kick);
    uv_idle_init(ri->pub.conn->loop, ri->kick);
    ri->kick->data = ri;
  }
  uv_idle_start(ri->kick, on_kick);
}

/* The streamed body in progress can no longer complete: the connection is going away. The
 * handler hears of it (when it next reads) so it can release what it holds. */
static void conn_body_abort(http_conn_t *c) {
  req_impl_t *ri = c->body_req;
  if (!ri) return;
  c->body_req = NULL;
  c->seg = NULL;
  c->seg_len = 0;
  ri->body_aborted = 1;
  req_kick(ri);
}

static void conn_close(http_conn_t *c) {
  if (c->closing) return;
  c->closing = 1;
  c->reading = 0;
  conn_body_abort(c);
  conn_drain_notify(c); /* a waiting writer learns the connection is gone (its writes drop) */
  uv_close((uv_handle_t *)&c->tcp, on_handle_close);
  uv_close((uv_handle_t *)&c->timer, on_handle_close);
}

static void on_timer(uv_timer_t *t) {
  http_conn_t *c = t->data;
  if (!c->lingering) log_debug("http", "idle_close", "peer=%s", c->peer);
  conn_close(c);
}

/* A streamed body the handler is ready to take more of. */
static int conn_wants_body(http_conn_t *c) {
  req_impl_t *b = c->body_req;
  return b && b->body_fn && !b->body_paused && !b->body_done;
}

/* Whether the parser may consume input now: between requests, or inside a streamed body
 * the handler is reading and not paused (with the last piece already delivered). */
static int conn_parsing(http_conn_t *c) {
  if (c->closing || c->close_after_write) return 0;
  if (c->body_req) return conn_wants_body(c) && c->seg_len == 0;
  return !c->active;
}

/* The timer measures lack of progress: it runs unless we are waiting on the handler with
 * nothing left to send, so idle keep-alive clients, stalled uploads and stalled readers all
 * get closed. */
static void conn_touch(http_conn_t *c) {
  if (c->closing || c->lingering) return;
  if (c->active && c->nwrites == 0 && !conn_wants_body(c))
    uv_timer_stop(&c->timer);
  else
    uv_timer_start(&c->timer, on_timer, (uint64_t)c->srv->idle_ms, 0);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  http_conn_t *c = h->data;
  (void)suggested;
  /* Nothing points into the buffer between reads (body pieces are handed over before we
   * read again), so unparsed bytes can move to the front and the buffer stays one chunk. */
  if (c->in_off > 0) {
    memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
    c->in_len -= c->in_off;
    c->in_off = 0;
  }
  if (c->in_cap - c->in_len < HTTP_READ_CHUNK) {
    c->in_cap = c->in_len + HTTP_READ_CHUNK;
    c->in = xrealloc(c->in, c->in_cap);
  }
  *buf = uv_buf_init(c->in + c->in_len, (unsigned)(c->in_cap - c->in_len));
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void conn_read_start(http_conn_t *c) {
  if (c->reading || c->closing) return;
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
    conn_close(c);
    return;
  }
  c->reading = 1;
}

static void conn_read_stop(http_conn_t *c) {
  if (!c->reading) return;
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = 0;
}

/* After a closing response: send FIN, then keep reading and discarding for a moment.
 * Closing with unread input makes the kernel send RST, which can destroy the response
 * (e.g. a 413 while the client is still uploading) before the client reads it. */
static void on_shutdown(uv_shutdown_t *req, int status) {
  http_conn_t *c = req->data;
  c->shutting = 0;
  if (!c->closing) {
    if (status < 0 || c->peer_eof) {
      conn_close(c);
    } else {
      c->lingering = 1;
      c->in_off = c->in_len = 0;
      conn_read_start(c);
      uv_timer_start(&c->timer, on_timer, HTTP_LINGER_MS, 0);
    }
  }
  conn_maybe_free(c);
}

/* Everything queued has been written. */
static void conn_drained(http_conn_t *c) {
  if (c->closing) return;
  if (!c->close_after_write) {
    conn_touch(c);
    return;
  }
  if (c->peer_eof) {
    conn_close(c);
    return;
  }
  if (c->shutting) return;
  c->shutdown_req.data = c;
  if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
    conn_close(c);
    return;
  }
  c->shutting = 1;
}

static void on_write(uv_write_t *req, int status) {
  wreq_t *w = (wreq_t *)req;
  http_conn_t *c = w->conn;
  c->queued -= w->len;
  free(w->buf);
  free(w);
  c->nwrites--;
  conn_drain_notify(c);
  if (!c->closing) {
    if (status < 0) {
      log_debug("http", "write_error", "peer=%s err=%s", c->peer, uv_strerror(status));
      conn_close(c);
    } else if (c->nwrites == 0 && !c->active) {
      conn_drained(c);
    } else {
      conn_touch(c);
    }
  }
  conn_maybe_free(c);
}

/* Queue buf (taking ownership) for writing; freed in the write callback. */
static void conn_write(http_conn_t *c, char *buf, size_t len) {
  if (c->closing || len == 0) {
    free(buf);
    return;
  }
  wreq_t *w = xcalloc(sizeof *w);
  w->conn = c;
  w->buf = buf;
  w->len = len;
  uv_buf_t b = uv_buf_init(buf, (unsigned)len);
  int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
  if (rc < 0) {
    free(buf);
    free(w);
    conn_close(c);
    return;
  }
  c->nwrites++;
  c->queued += len;
  conn_touch(c);
}

/* A streaming writer waits for the socket to take most of what it queued: the low-water mark
 * keeps one piece in flight while the next is produced. */
#define HTTP_DRAIN_LOW (256u << 10)

static void conn_drain_notify(http_conn_t *c) {
  if (!c->drain_cb || (c->queued >= HTTP_DRAIN_LOW && !c->closing)) return;
  void (*cb)(void *) = c->drain_cb;
  c->drain_cb = NULL;
  cb(c->drain_arg);
}

void http_res_wait_drain(http_req_t *r, void (*cb)(void *arg), void *arg) {
  http_conn_t *c = r->conn;
  c->drain_cb = cb;
  c->drain_arg = arg;
  conn_drain_notify(c);
}

/* A request we could not parse or accept: answer with `status` and close. */
static void conn_fail(http_conn_t *c, int status) {
  sbuf_t b = {0};
  char body[96];
  int n = snprintf(body, sizeof body, "%d %s\n", status, http_status_text(status));
  log_debug("http", "bad_request", "peer=%s status=%d", c->peer, status);
  req_free(c->cur);
  c->cur = NULL;
  c->close_after_write = 1;
  conn_read_stop(c);
  sb_printf(&b,
            "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: %s\r\nContent-Length: %d\r\n"
            "Content-Type: text/plain\r\nConnection: close\r\n\r\n%s",
            status, http_status_text(status), srv_date(c->srv), c->srv->server_name, n, body);
  conn_write(c, b.p, b.len);
  if (!c->closing && c->nwrites == 0) conn_drained(c);
}

static int parse_error_status(http_conn_t *c, enum http_errno e) {
  if (c->err_status) return c->err_status;
  if (e == HPE_HEADER_OVERFLOW) return 431;
  return 400;
}

static void conn_dispatch(http_conn_t *c) {
  req_impl_t *ri = c->cur;
  c->cur = NULL;
  c->active = ri;
  if (ri->stream) c->body_req = ri;
  conn_read_stop(c);
  conn_touch(c);
  c->srv->handler(&ri->pub, c->srv->arg);
}

/* Hand the pending body piece, or the end of the body, to the streaming handler. The
 * callback may answer (freeing the request) or close the connection: the request is not
 * touched after it, the connection only to drop the piece (its memory lasts at least until
 * its handles' close callbacks, which cannot run before we return to the loop). The piece
 * stays counted in http_req_buffered() during the call: it is still in the read buffer. */
static void conn_deliver_body(http_conn_t *c) {
  req_impl_t *ri = c->body_req;
  const char *data = c->seg;
  size_t len = c->seg_len;
  int last = 0;
  if (len == 0) {
    data = "";
    last = 1;
    ri->body_ended = 1;
    c->body_req = NULL;
  }
  ri->body_fn(&ri->pub, data, len, last, ri->body_arg);
  c->seg = NULL;
  c->seg_len = 0;
}

/* Parse buffered input, one request at a time, and feed streamed bodies to their handlers.
 * Re-entry (a handler answering synchronously from inside dispatch or a body callback) just
 * returns: the loop below picks up where it left off, so deep pipelines do not recurse. */
static void conn_process(http_conn_t *c) {
  if (c->in_process) return;
  c->in_process = 1;
  while (!c->closing && !c->close_after_write) {
    req_impl_t *b = c->body_req;
    if (b && b->body_fn && !b->body_paused && (c->seg_len > 0 || b->body_done)) {
      conn_deliver_body(c);
      continue;
    }
    if (!conn_parsing(c) || c->in_off == c->in_len) break;
    size_t avail = c->in_len - c->in_off;
    size_t n = http_parser_execute(&c->parser, &parser_settings, c->in + c->in_off, avail);
    c->in_off += n;
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (c->closing) break;
    if (e == HPE_PAUSED) {
      /* A request to hand over, or a body piece / body end to deliver at the loop top. */
      http_parser_pause(&c->parser, 0);
      if (c->dispatch) {
        c->dispatch = 0;
        conn_dispatch(c);
      }
      continue;
    }
    if (e != HPE_OK || n != avail) {
      if (c->body_req) {
        /* Broken framing inside a streamed body: the handler owns the response, so we
         * cannot answer 400 in its place; abort the body and drop the connection. */
        log_debug("http", "bad_body", "peer=%s err=%s", c->peer, http_errno_name(e));
        conn_close(c);
      } else {
        conn_fail(c, parse_error_status(c, e));
      }
      break;
    }
  }
  if (c->in_off == c->in_len) c->in_off = c->in_len = 0;
  c->in_process = 0;
  if (c->closing) return;
  /* Read only when the parser can take it and nothing is left over, so input waiting on a
   * paused handler (or behind an unanswered request) is never more than one read. */
  if (conn_parsing(c) && c->in_off == c->in_len)
    conn_read_start(c);
  else
    conn_read_stop(c);
  if (!c->close_after_write) conn_touch(c);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  http_conn_t *c = st->data;
  (void)buf;
  if (nread > 0) {
    if (c->lingering) {
      c->in_off = c->in_len = 0;
      return;
    }
    c->in_len += (size_t)nread;
    conn_process(c);
    return;
  }
  if (nread == 0) return;
  conn_read_stop(c);
  /* A half-closed client may still be waiting for responses we are writing. */
  if (nread == UV_EOF && !c->lingering && c->nwrites > 0) {
    c->peer_eof = 1;
    c->close_after_write = 1;
    conn_body_abort(c);
    return;
  }
  if (nread != UV_EOF) log_debug("http", "read_error", "peer=%s err=%s", c->peer, uv_strerror((int)nread));
  conn_close(c);
}

static void conn_set_peer(http_conn_t *c) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  c->peer[0] = '\0';
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0) return;
  if (ss.ss_family == AF_INET)
    uv_ip4_name((struct sockaddr_in *)&ss, c->peer, sizeof c->peer);
  else if (ss.ss_family == AF_INET6)
    uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer, sizeof c->peer);
}

static void on_connection(uv_stream_t *ls, int status) {
  http_server_t *s = ls->data;
  if (status < 0) {
    log_warn("http", "accept_error", "err=%s", uv_strerror(status));
    return;
  }
  if (s->closing) return;
  http_conn_t *c = xcalloc(sizeof *c);
  c->srv = s;
  c->loop = s->loop;
  uv_tcp_init(s->loop, &c->tcp);
  uv_timer_init(s->loop, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  c->handles = 2;
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  s->nconns++;
  if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0) {
    conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  conn_set_peer(c);
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  conn_read_start(c);
  conn_touch(c);
}

/* ---- responses ----------------------------------------------------------------------- */

static int status_has_no_body(int status) {
  return (status >= 100 && status < 200) || status == 204 || status == 304;
}

/* Header values come from handlers that may copy them from clients or upstreams; a CR or
 * LF would let them inject headers or split the response. */
static int header_ok(const char *s) { return s && !strpbrk(s, "\r\n"); }

/* Finish the request: free it and, unless the connection is gone, continue with the next. */
static void req_finish(req_impl_t *ri) {
  http_conn_t *c = ri->pub.conn;
  int keep = ri->pub.keep_alive;
  if (c->body_req == ri) {
    /* Answered before its streamed body was all read. res_head kept the connection only if
     * the rest is small enough to read and drop; the parser is still inside it. */
    c->body_req = NULL;
    c->seg = NULL;
    c->seg_len = 0;
    if (!ri->body_done && keep) c->discarding = 1;
  }
  if (c->active == ri) c->active = NULL;
  req_free(ri);
  if (c->closing) {
    conn_maybe_free(c);
    return;
  }
  if (!keep) {
    c->close_after_write = 1;
    conn_read_stop(c);
    if (c->nwrites == 0) conn_drained(c);
    return;
  }
  conn_process(c);
}

/* A response to a streamed request whose body has not been fully read: the unread rest is
 * on the wire ahead of the next request. Keep the connection (and drop the rest, see
 * req_finish) only when that is cheap and certain: a known small remainder, and no client
 * waiting on 100 Continue, which may or may not send the body now that it has an answer. */
static void res_check_unread_body(req_impl_t *ri) {
  http_conn_t *c = ri->pub.conn;
  if (c->body_req != ri || ri->body_done || !ri->has_body) return;
  if (ri->continue_pending || ri->chunked || c->parser.content_length > HTTP_DISCARD_MAX)
    ri->pub.keep_alive = 0;
}

static void res_head(req_impl_t *ri, sbuf_t *b) {
  http_conn_t *c = ri->pub.conn;
  int st = ri->res_status;
  res_check_unread_body(ri);
  sb_printf(b, "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: %s\r\n", st, http_status_text(st),
            srv_date(c->srv), c->srv->server_name);
  if (ri->res_nobody)
    ; /* 1xx/204/304 carry no body and no framing */
  else if (ri->res_chunked)
    sb_adds(b, "Transfer-Encoding: chunked\r\n");
  else if (ri->res_length >= 0)
    sb_printf(b, "Content-Length: %lld\r\n", ri->res_length);
  if (ri->res_ctype) sb_printf(b, "Content-Type: %s\r\n", ri->res_ctype);
  sb_adds(b, ri->pub.keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n");
  if (ri->res_hdrs.len) sb_add(b, ri->res_hdrs.p, ri->res_hdrs.len);
  sb_adds(b, "\r\n");
  ri->res_head_sent = 1;
}

void http_res_start(http_req_t *r, int status, long long content_length) {
  req_impl_t *ri = (req_impl_t *)r;
  if (ri->res_head_sent) return;
  ri->res_started = 1;
  ri->res_status = status;
  ri->res_length = content_length;
  ri->res_nobody = status_has_no_body(status);
  ri->res_chunked = 0;
  if (content_length < 0 && !ri->res_nobody) {
    /* HTTP/1.0 has no chunked encoding: the body then ends when the connection does. */
    if (ri->http10)
      r->keep_alive = 0;
    else
      ri->res_chunked = 1;
  }
}

void http_res_header(http_req_t *r, const char *name, const char *value) {
  req_impl_t *ri = (req_impl_t *)r;
  if (ri->res_head_sent) return;
  if (!header_ok(name) || !header_ok(value) || !*name || strchr(name, ':')) {
    log_warn("http", "bad_header", "name=%s", name ? name : "(null)");
    return;
  }
  if (strcasecmp(name, "Content-Type") == 0) {
    free(ri->res_ctype);
    ri->res_ctype = xstrndup(value, strlen(value));
    return;
  }
  sb_printf(&ri->res_hdrs, "%s: %s\r\n", name, value);
}

void http_res_write(http_req_t *r, const void *data, size_t len) {
  req_impl_t *ri = (req_impl_t *)r;
  http_conn_t *c = r->conn;
  if (!ri->res_started) http_res_start(r, 200, -1);
  if (c->closing || (len == 0 && ri->res_head_sent)) return;
  sbuf_t b = {0};
  if (!ri->res_head_sent) res_head(ri, &b);
  if (!ri->res_nobody && !ri->is_head && len > 0) {
    if (!ri->res_chunked && ri->res_length >= 0 &&
        (long long)len > ri->res_length - ri->res_sent) {
      /* More than announced: the extra would be read as the next response. Drop it and
       * close afterwards so the client cannot be confused. */
      log_warn("http", "body_overrun", "peer=%s length=%lld", c->peer, ri->res_length);
      len = (size_t)(ri->res_length - ri->res_sent);
      r->keep_alive = 0;
    }
    if (ri->res_chunked && len) sb_printf(&b, "%zx\r\n", len);
    sb_add(&b, data, len);
    if (ri->res_chunked && len) sb_adds(&b, "\r\n");
    ri->res_sent += (long long)len;
  }
  conn_write(c, b.p, b.len);
}

void http_res_end(http_req_t *r) {
  req_impl_t *ri = (req_impl_t *)r;
  http_conn_t *c = r->conn;
  if (!ri->res_started) http_res_start(r, 200, 0);
  if (!c->closing) {
    sbuf_t b = {0};
    int body = !ri->res_nobody && !ri->is_head;
    if (body && !ri->res_chunked && ri->res_length >= 0 && ri->res_sent != ri->res_length) {
      /* Short body: only closing tells the client the response was cut. */
      log_warn("http", "body_short", "peer=%s length=%lld sent=%lld", c->peer, ri->res_length,
               ri->res_sent);
      r->keep_alive = 0;
    }
    if (!ri->res_head_sent) res_head(ri, &b);
    if (body && ri->res_chunked) sb_adds(&b, "0\r\n\r\n");
    conn_write(c, b.p, b.len);
  }
  req_finish(ri);
}

void http_respond(http_req_t *r, int status, const char *content_type, const void *body,
                  size_t len, const char *const *extra_headers) {
  http_res_start(r, status, (long long)len);
  if (content_type) http_res_header(r, "Content-Type", content_type);
  for (size_t i = 0; extra_headers && extra_headers[i] && extra_headers[i + 1]; i += 2)
    http_res_header(r, extra_headers[i], extra_headers[i + 1]);
  /* Head and body go out in the single write below; res_end then has nothing to add. */
  if (len > 0) http_res_write(r, body, len);
  http_res_end(r);
}

/* ---- streamed request bodies --------------------------------------------------------- */

static void on_kick(uv_idle_t *h) {
  req_impl_t *ri = h->data;
  http_conn_t *c = ri->pub.conn;
  uv_idle_stop(h);
  if (!ri->body_fn || ri->body_paused || ri->body_ended) return;
  if (!ri->stream || ri->body_aborted) {
    /* The whole buffered body, or the news that a streamed one will never complete. The
     * callback may free the request. */
    ri->body_ended = 1;
    if (ri->stream)
      ri->body_fn(&ri->pub, "", 0, HTTP_BODY_ABORTED, ri->body_arg);
    else
      ri->body_fn(&ri->pub, ri->pub.body, ri->pub.body_len, 1, ri->body_arg);
    return;
  }
  if (c->body_req == ri) conn_process(c);
}

void http_req_read_body(http_req_t *r, http_body_fn fn, void *arg) {
  req_impl_t *ri = (req_impl_t *)r;
  http_conn_t *c = r->conn;
  ri->body_fn = fn;
  ri->body_arg = arg;
  ri->body_paused = 0;
  if (ri->continue_pending) {
    /* The handler wants the body: only now invite the client to send it. Once a response
     * has begun the client has its answer and must not get a 100 after it. */
    ri->continue_pending = 0;
    if (c->body_req == ri && !ri->res_head_sent) conn_send_continue(c);
  }
  req_kick(ri);
}

void http_req_pause_body(http_req_t *r) {
  req_impl_t *ri = (req_impl_t *)r;
  http_conn_t *c = r->conn;
  ri->body_paused = 1;
  /* Outside conn_process stop reading at once; inside, it re-decides when it returns. */
  if (c->body_req == ri && !c->in_process && !c->closing) {
    conn_read_stop(c);
    conn_touch(c);
  }
}

void http_req_resume_body(http_req_t *r) {
  req_impl_t *ri = (req_impl_t *)r;
  if (!ri->body_paused) return;
  ri->body_paused = 0;
  if (ri->body_fn) req_kick(ri);
}

size_t http_req_content_length(const http_req_t *r, int *known) {
  const req_impl_t *ri = (const req_impl_t *)r;
  if (!ri->stream) {
    if (known) *known = 1;
    return r->body_len;
  }
  if (known) *known = !ri->chunked;
  return ri->chunked ? 0 : (size_t)ri->content_length;
}

size_t http_req_buffered(const http_req_t *r) {
  const http_conn_t *c = r->conn;
  return c->in_len - c->in_off + c->seg_len;
}

/* ---- server -------------------------------------------------------------------------- */

http_server_t *http_server_new(uv_loop_t *loop, const http_opts_t *opts, http_handler_fn h,
                               void *arg) {
  http_server_t *s = xcalloc(sizeof *s);
  s->loop = loop;
  s->handler = h;
  s->arg = arg;
  s->max_body = opts && opts->max_body ? opts->max_body : HTTP_DEFAULT_MAX_BODY;
  s->max_header = opts && opts->max_header ? opts->max_header : HTTP_DEFAULT_MAX_HEADER;
  s->idle_ms = opts && opts->idle_timeout_ms > 0 ? opts->idle_timeout_ms : HTTP_DEFAULT_IDLE_MS;
  const char *name = opts && opts->server_name ? opts->server_name : "gureum";
  s->server_name = xstrndup(name, strlen(name));
  uv_tcp_init(loop, &s->listener);
  s->listener.data = s;
  s->listener_open = 1;
  return s;
}

void http_server_on_headers(http_server_t *s, http_headers_fn fn, void *arg) {
  s->on_headers = fn;
  s->on_headers_arg = arg;
}

int http_server_listen(http_server_t *s, const char *ip, int port) {
  struct sockaddr_storage ss;
  int rc;
  if (!ip || !*ip) ip = "0.0.0.0";
  if (strchr(ip, ':'))
    rc = uv_ip6_addr(ip, port, (struct sockaddr_in6 *)&ss);
  else
    rc = uv_ip4_addr(ip, port, (struct sockaddr_in *)&ss);
  if (rc != 0) return rc;
  rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&ss, 0);
  if (rc != 0) return rc;
  return uv_listen((uv_stream_t *)&s->listener, HTTP_BACKLOG, on_connection);
}

int http_server_port(http_server_t *s) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len) != 0) return -1;
  if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return -1;
}

static void srv_maybe_done(http_server_t *s) {
  if (!s->closing || s->listener_open || s->nconns > 0) return;
  void (*cb)(void *) = s->close_cb;
  void *arg = s->close_arg;
  free(s->server_name);
  free(s);
  if (cb) cb(arg);
}

static void on_listener_close(uv_handle_t *h) {
  http_server_t *s = h->data;
  s->listener_open = 0;
  srv_maybe_done(s);
}

void http_server_close(http_server_t *s, void (*cb)(void *arg), void *arg) {
  if (s->closing) return;
  s->closing = 1;
  s->close_cb = cb;
  s->close_arg = arg;
  uv_close((uv_handle_t *)&s->listener, on_listener_close);
  /* conn_close only starts closing; connections leave the list in their close callbacks. */
  for (http_conn_t *c = s->conns; c; c = c->next) conn_close(c);
}

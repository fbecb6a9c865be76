/* http_test.c - tests for the HTTP server (http.c) and blocking client (httpc.c): a real libuv
 * loop on a thread serves 127.0.0.1 on an ephemeral port while each test acts as the client. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "httpc.h"
#include "log.h"

#define MAX_BODY 4096
#define MAX_HEADER 2048
#define IDLE_MS 400

/* ---- fixture: server on its own loop thread ------------------------------------------ */

typedef struct fx_s {
  uv_loop_t loop;
  uv_async_t stop;
  http_server_t *srv;
  pthread_t th;
  int running;
  int port;
  char hostport[64];
  /* loop thread only */
  http_req_t *held[16];
  int nheld;
  int server_closed;
  int loop_close_rc;
  /* read by the test thread while the loop runs */
  atomic_int held_seen;
  atomic_int late_answered;
  atomic_int up_started; /* streamed requests handed to up_handler */
  atomic_int up_aborted; /* streamed bodies that ended with HTTP_BODY_ABORTED */
  atomic_int loop_errors; /* checks failed on the loop thread (cmocka asserts only here) */
} fx_t;

/* cmocka's asserts must run on the test thread; the loop thread counts failures instead. */
#define LOOP_CHECK(f, cond) \
  do {                      \
    if (!(cond)) {          \
      fprintf(stderr, "loop check failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      atomic_fetch_add(&(f)->loop_errors, 1); \
    }                       \
  } while (0)

typedef struct delay_s {
  uv_timer_t timer;
  http_req_t *req;
  fx_t *fx;
  int late; /* count in fx->late_answered */
  char body[64];
} delay_t;

static void delay_closed(uv_handle_t *h) { free(h->data); }

static void delay_fire(uv_timer_t *t) {
  delay_t *d = t->data;
  http_respond(d->req, 200, "text/plain", d->body, strlen(d->body), NULL);
  if (d->late) atomic_fetch_add(&d->fx->late_answered, 1);
  uv_close((uv_handle_t *)&d->timer, delay_closed);
}

/* Answer `r` with `body` after `ms`, from a timer: the asynchronous handler case. */
static void respond_later(fx_t *f, http_req_t *r, int ms, const char *body, int late) {
  delay_t *d = calloc(1, sizeof *d);
  d->req = r;
  d->fx = f;
  d->late = late;
  snprintf(d->body, sizeof d->body, "%s", body);
  uv_timer_init(&f->loop, &d->timer);
  d->timer.data = d;
  uv_timer_start(&d->timer, delay_fire, (uint64_t)ms, 0);
}

static void respond_text(http_req_t *r, int status, const char *s) {
  http_respond(r, status, "text/plain", s, strlen(s), NULL);
}

/* ---- streamed request bodies: handlers under /up/ ------------------------------------ */

#define UP_PIECE_MAX 65536 /* the server's read buffer: nothing should exceed it */

static uint64_t fnv1a(uint64_t h, const void *data, size_t len) {
  const unsigned char *p = data;
  for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 1099511628211ULL;
  return h;
}
#define FNV_INIT 14695981039346656037ULL

enum { UP_SLOW, UP_ECHO, UP_COUNT, UP_HALF };

typedef struct up_s {
  fx_t *fx;
  http_req_t *req;
  uv_timer_t timer;
  int kind;
  int paused;     /* we paused and have not resumed yet */
  int violations; /* body calls that arrived while paused, or after the end */
  int ended;
  int calls;
  size_t len, maxbuf, maxpiece, half_at;
  uint64_t sum;
  char echo[4096];
  size_t echo_len;
} up_t;

static void up_closed(uv_handle_t *h) { free(h->data); }

/* Answer and release the state; the request is gone after this. */
static void up_finish(up_t *u, int status, const char *text) {
  respond_text(u->req, status, text);
  u->req = NULL;
  uv_close((uv_handle_t *)&u->timer, up_closed);
}

static void up_note_buffered(up_t *u) {
  size_t b = http_req_buffered(u->req);
  if (b > u->maxbuf) u->maxbuf = b;
}

static void up_resume(uv_timer_t *t) {
  up_t *u = t->data;
  up_note_buffered(u);
  u->paused = 0;
  http_req_resume_body(u->req);
}

static void up_body(http_req_t *r, const char *data, size_t len, int last, void *arg) {
  up_t *u = arg;
  char out[512];
  LOOP_CHECK(u->fx, r == u->req);
  if (u->paused || u->ended) u->violations++;
  u->calls++;
  if (last == HTTP_BODY_ABORTED) {
    u->ended = 1;
    atomic_fetch_add(&u->fx->up_aborted, 1);
    up_finish(u, 500, "aborted"); /* discarded: nobody is listening */
    return;
  }
  up_note_buffered(u);
  u->len += len;
  u->sum = fnv1a(u->sum, data, len);
  if (len > u->maxpiece) u->maxpiece = len;
  if (u->echo_len + len < sizeof u->echo) {
    memcpy(u->echo + u->echo_len, data, len);
    u->echo_len += len;
  }
  if (u->kind == UP_HALF && !last && u->len >= u->half_at) {
    /* Answer in the middle of the body; the server deals with the rest. */
    snprintf(out, sizeof out, "got=%zu", u->len);
    up_finish(u, 200, out);
    return;
  }
  if (last) {
    int known;
    size_t cl = http_req_content_length(r, &known);
    u->ended = 1;
    if (u->kind == UP_SLOW)
      snprintf(out, sizeof out, "len=%zu sum=%016llx maxbuf=%zu maxpiece=%zu violations=%d",
               u->len, (unsigned long long)u->sum, u->maxbuf, u->maxpiece, u->violations);
    else if (u->kind == UP_COUNT)
      snprintf(out, sizeof out, "calls=%d len=%zu cl=%zu known=%d violations=%d", u->calls,
               u->len, cl, known, u->violations);
    else
      snprintf(out, sizeof out, "%.*s", (int)u->echo_len, u->echo);
    up_finish(u, 200, out);
    return;
  }
  if (u->kind == UP_SLOW) {
    /* As if writing the piece to disk: pause, resume a little later from the loop. */
    u->paused = 1;
    http_req_pause_body(r);
    uv_timer_start(&u->timer, up_resume, (uint64_t)(u->calls % 3), 0);
  }
}

static void up_late_read(uv_timer_t *t) {
  up_t *u = t->data;
  http_req_read_body(u->req, up_body, u);
}

static void up_handler(fx_t *f, http_req_t *r) {
  const char *p = r->path + 4;
  atomic_fetch_add(&f->up_started, 1);
  LOOP_CHECK(f, r->body && r->body[0] == '\0' && r->body_len == 0);
  if (strcmp(p, "deny") == 0) {
    respond_text(r, 403, "denied"); /* without reading the body */
    return;
  }
  up_t *u = calloc(1, sizeof *u);
  u->fx = f;
  u->req = r;
  u->sum = FNV_INIT;
  uv_timer_init(&f->loop, &u->timer);
  u->timer.data = u;
  if (strcmp(p, "slow") == 0) {
    u->kind = UP_SLOW;
  } else if (strcmp(p, "count") == 0) {
    u->kind = UP_COUNT;
  } else if (strcmp(p, "half") == 0) {
    char *n = http_req_query_param(r, "n");
    u->kind = UP_HALF;
    u->half_at = n ? (size_t)atol(n) : 1;
    free(n);
  } else {
    u->kind = UP_ECHO;
  }
  if (strcmp(p, "lateread") == 0) {
    /* Decide only later to read (an auth lookup, say): no 100 Continue before that. */
    uv_timer_start(&u->timer, up_late_read, 150, 0);
    return;
  }
  http_req_read_body(r, up_body, u);
}

/* Streamed under /up/, buffered elsewhere. */
static int headers_hook(http_req_t *r, void *arg) {
  fx_t *f = arg;
  LOOP_CHECK(f, r->body && r->body[0] == '\0' && r->body_len == 0 && r->path && r->query);
  LOOP_CHECK(f, r->method && r->url);
  return strncmp(r->path, "/up/", 4) == 0 ? HTTP_BODY_STREAM : HTTP_BODY_BUFFER;
}

/* read_body on a buffered request: the whole body in one call. */
static void echo_rb_body(http_req_t *r, const char *data, size_t len, int last, void *arg) {
  fx_t *f = arg;
  char out[256];
  LOOP_CHECK(f, last == 1 && data == r->body && len == r->body_len);
  snprintf(out, sizeof out, "%.*s len=%zu", (int)len, data, len);
  respond_text(r, 200, out);
}

static void handler(http_req_t *r, void *arg) {
  fx_t *f = arg;
  const char *p = r->path;
  if (strncmp(p, "/up/", 4) == 0) {
    up_handler(f, r);
  } else if (strcmp(p, "/echo-rb") == 0) {
    http_req_read_body(r, echo_rb_body, f);
  } else if (strcmp(p, "/json") == 0) {
    static const char js[] = "{\"ok\":true}";
    http_respond(r, 200, "application/json", js, sizeof js - 1, NULL);
  } else if (strcmp(p, "/echo") == 0) {
    const char *ct = http_req_header(r, "content-type");
    const char *extra[] = {"X-Method", r->method, "X-Body-Len", "ignored", NULL};
    http_respond(r, 200, ct ? ct : "application/octet-stream", r->body, r->body_len, extra);
  } else if (strcmp(p, "/fast") == 0 || strcmp(p, "/slow") == 0) {
    char *id = http_req_query_param(r, "id");
    char *ms = http_req_query_param(r, "ms");
    if (p[1] == 's')
      respond_later(f, r, ms ? atoi(ms) : 100, id ? id : "slow", 0);
    else
      respond_text(r, 200, id ? id : "fast");
    free(id);
    free(ms);
  } else if (strcmp(p, "/late") == 0) {
    respond_later(f, r, 50, "late", 1);
  } else if (strcmp(p, "/never") == 0) {
    f->held[f->nheld++] = r; /* answered in on_server_closed */
    atomic_fetch_add(&f->held_seen, 1);
  } else if (strcmp(p, "/stream") == 0) {
    http_res_start(r, 200, -1);
    http_res_header(r, "Content-Type", "text/plain");
    http_res_header(r, "X-Stream", "yes");
    http_res_write(r, "hello, ", 7);
    http_res_write(r, "chunked ", 8);
    http_res_write(r, "world", 5);
    http_res_end(r);
  } else if (strcmp(p, "/stream-cl") == 0) {
    http_res_start(r, 200, 11);
    http_res_write(r, "hello", 5);
    http_res_write(r, " world", 6);
    http_res_end(r);
  } else if (strcmp(p, "/query") == 0) {
    const char *names[] = {"a", "b", "c", "d", "e"};
    char out[512];
    size_t n = 0;
    for (int i = 0; i < 5; i++) {
      char *v = http_req_query_param(r, names[i]);
      n += (size_t)snprintf(out + n, sizeof out - n, "%s%s=[%s]", i ? " " : "", names[i],
                            v ? v : "-");
      free(v);
    }
    respond_text(r, 200, out);
  } else if (strncmp(p, "/files/", 7) == 0) {
    char out[512];
    snprintf(out, sizeof out, "path=%s query=%s", r->path, r->query);
    respond_text(r, 200, out);
  } else if (strcmp(p, "/header") == 0) {
    const char *v = http_req_header(r, "x-test");
    char out[512];
    snprintf(out, sizeof out, "x-test=%s peer=%s", v ? v : "-", r->peer);
    respond_text(r, 200, out);
  } else if (strcmp(p, "/bye") == 0) {
    r->keep_alive = 0; /* the handler may ask for the connection to close */
    respond_text(r, 200, "bye");
  } else if (strcmp(p, "/nocontent") == 0) {
    http_respond(r, 204, NULL, NULL, 0, NULL);
  } else {
    respond_text(r, 404, "not found");
  }
}

static const http_opts_t test_opts = {
    .max_body = MAX_BODY,
    .max_header = MAX_HEADER,
    .idle_timeout_ms = IDLE_MS,
    .server_name = "gureum-test",
};

static void on_server_closed(void *arg) {
  fx_t *f = arg;
  f->server_closed = 1;
  /* Their connections are gone by now: answering must be a harmless no-op. */
  for (int i = 0; i < f->nheld; i++) respond_text(f->held[i], 200, "too late");
  f->nheld = 0;
}

static void on_stop(uv_async_t *a) {
  fx_t *f = a->data;
  http_server_close(f->srv, on_server_closed, f);
  uv_close((uv_handle_t *)a, NULL);
}

static void *loop_main(void *arg) {
  fx_t *f = arg;
  uv_run(&f->loop, UV_RUN_DEFAULT);
  f->loop_close_rc = uv_loop_close(&f->loop);
  return NULL;
}

static int setup(void **state) {
  fx_t *f = calloc(1, sizeof *f);
  if (!f || uv_loop_init(&f->loop) != 0) return -1;
  uv_async_init(&f->loop, &f->stop, on_stop);
  f->stop.data = f;
  f->srv = http_server_new(&f->loop, &test_opts, handler, f);
  http_server_on_headers(f->srv, headers_hook, f);
  if (http_server_listen(f->srv, "127.0.0.1", 0) != 0) return -1;
  f->port = http_server_port(f->srv);
  if (f->port <= 0) return -1;
  snprintf(f->hostport, sizeof f->hostport, "127.0.0.1:%d", f->port);
  if (pthread_create(&f->th, NULL, loop_main, f) != 0) return -1;
  f->running = 1;
  *state = f;
  return 0;
}

/* Close the server from its own loop and wait until every handle is gone. */
static void fx_stop(fx_t *f) {
  if (!f->running) return;
  f->running = 0;
  uv_async_send(&f->stop);
  pthread_join(f->th, NULL);
}

static int teardown(void **state) {
  fx_t *f = *state;
  fx_stop(f);
  int ok = f->server_closed && f->loop_close_rc == 0 && atomic_load(&f->loop_errors) == 0;
  free(f);
  return ok ? 0 : -1;
}

/* ---- raw socket client --------------------------------------------------------------- */

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
  nanosleep(&ts, NULL);
}

static int raw_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
  struct timeval tv = {3, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

static void raw_send(int fd, const void *data, size_t len) {
  const char *p = data;
  while (len > 0) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
    assert_true(n > 0);
    p += n;
    len -= (size_t)n;
  }
}

static void raw_sends(int fd, const char *s) { raw_send(fd, s, strlen(s)); }

/* Read until EOF (or error/timeout); returns the byte count, buf NUL-terminated. */
static size_t raw_read_all(int fd, char *buf, size_t cap) {
  size_t len = 0;
  while (len + 1 < cap) {
    ssize_t n = recv(fd, buf + len, cap - 1 - len, 0);
    if (n <= 0) break;
    len += (size_t)n;
  }
  buf[len] = '\0';
  return len;
}

/* Read exactly len bytes. */
static void raw_read_exact(int fd, char *buf, size_t len) {
  size_t got = 0;
  while (got < len) {
    ssize_t n = recv(fd, buf + got, len - got, 0);
    assert_true(n > 0);
    got += (size_t)n;
  }
  buf[got] = '\0';
}

/* 1 if the server closed the connection (EOF or reset) within the receive timeout. */
static int raw_closed(int fd) {
  char c;
  ssize_t n = recv(fd, &c, 1, 0);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

typedef struct raw_resp_s {
  int status;
  char body[8192];
  size_t body_len;
  char connection[32];
  char te[32];
  char ctype[64];
  char extra[64]; /* X-Stream or X-Method */
} raw_resp_t;

typedef struct raw_reader_s {
  raw_resp_t *resp;
  int max, n;
  int head;
  char field[64];
  size_t flen;
  int in_value;
  char *target;
  size_t target_cap;
} raw_reader_t;

static int rr_field(http_parser *p, const char *at, size_t len) {
  raw_reader_t *rr = p->data;
  if (rr->in_value) rr->flen = 0;
  rr->in_value = 0;
  for (size_t i = 0; i < len && rr->flen + 1 < sizeof rr->field; i++) rr->field[rr->flen++] = at[i];
  rr->field[rr->flen] = '\0';
  return 0;
}

static int rr_value(http_parser *p, const char *at, size_t len) {
  raw_reader_t *rr = p->data;
  raw_resp_t *r = &rr->resp[rr->n];
  if (!rr->in_value) {
    rr->target = NULL;
    if (strcasecmp(rr->field, "connection") == 0) rr->target = r->connection;
    if (strcasecmp(rr->field, "transfer-encoding") == 0) rr->target = r->te;
    if (strcasecmp(rr->field, "content-type") == 0) rr->target = r->ctype;
    if (strcasecmp(rr->field, "x-stream") == 0 || strcasecmp(rr->field, "x-method") == 0)
      rr->target = r->extra;
    rr->target_cap = rr->target == r->ctype ? sizeof r->ctype
                     : rr->target == r->extra ? sizeof r->extra
                                              : sizeof r->connection;
  }
  rr->in_value = 1;
  if (rr->target) {
    size_t have = strlen(rr->target), room = rr->target_cap - 1 - have;
    if (len > room) len = room;
    memcpy(rr->target + have, at, len);
    rr->target[have + len] = '\0';
  }
  return 0;
}

static int rr_headers_done(http_parser *p) {
  raw_reader_t *rr = p->data;
  rr->resp[rr->n].status = p->status_code;
  return rr->head ? 1 : 0;
}

static int rr_body(http_parser *p, const char *at, size_t len) {
  raw_reader_t *rr = p->data;
  raw_resp_t *r = &rr->resp[rr->n];
  if (r->body_len + len >= sizeof r->body) return -1;
  memcpy(r->body + r->body_len, at, len);
  r->body_len += len;
  r->body[r->body_len] = '\0';
  return 0;
}

static int rr_done(http_parser *p) {
  raw_reader_t *rr = p->data;
  rr->n++;
  rr->in_value = 0;
  rr->flen = 0;
  if (rr->n == rr->max) http_parser_pause(p, 1);
  return 0;
}

static const http_parser_settings rr_settings = {
    .on_header_field = rr_field,
    .on_header_value = rr_value,
    .on_headers_complete = rr_headers_done,
    .on_body = rr_body,
    .on_message_complete = rr_done,
};

/* Parse up to max responses from fd (one byte at a time after the first, so nothing past the
 * last wanted response is consumed). Returns how many completed. */
static int raw_read_responses(int fd, raw_resp_t *resp, int max, int head) {
  http_parser p;
  raw_reader_t rr = {.resp = resp, .max = max, .head = head};
  memset(resp, 0, sizeof *resp * (size_t)max);
  http_parser_init(&p, HTTP_RESPONSE);
  p.data = &rr;
  while (rr.n < max) {
    char c;
    ssize_t n = recv(fd, &c, 1, 0);
    if (n < 0) break;
    http_parser_execute(&p, &rr_settings, &c, (size_t)n);
    if (n == 0 || (HTTP_PARSER_ERRNO(&p) != HPE_OK && HTTP_PARSER_ERRNO(&p) != HPE_PAUSED)) break;
  }
  return rr.n;
}

/* ---- tests: client API --------------------------------------------------------------- */

static void test_get_json(void **state) {
  fx_t *f = *state;
  httpc_resp_t r;
  char err[256];
  int rc = httpc_request(f->hostport, "GET", "/json", NULL, NULL, 0, 3000, &r, err, sizeof err);
  assert_int_equal(rc, 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "{\"ok\":true}");
  assert_int_equal(r.body_len, 11);
  assert_non_null(r.content_type);
  assert_string_equal(r.content_type, "application/json");
  httpc_resp_free(&r);

  rc = httpc_request(f->hostport, "GET", "/nope", NULL, NULL, 0, 3000, &r, err, sizeof err);
  assert_int_equal(rc, 0);
  assert_int_equal(r.status, 404);
  httpc_resp_free(&r);
}

static void test_post_echo(void **state) {
  fx_t *f = *state;
  httpc_resp_t r;
  char err[256];
  const char body[] = "hello world\n\x01\x02 binary-ish";
  int rc = httpc_request(f->hostport, "POST", "/echo", "text/x-test", body, sizeof body - 1,
                         3000, &r, err, sizeof err);
  assert_int_equal(rc, 0);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.body_len, sizeof body - 1);
  assert_memory_equal(r.body, body, sizeof body - 1);
  assert_string_equal(r.content_type, "text/x-test");
  httpc_resp_free(&r);

  /* Exactly max_body is still accepted. */
  char *big = malloc(MAX_BODY);
  memset(big, 'x', MAX_BODY);
  rc = httpc_request(f->hostport, "PUT", "/echo", NULL, big, MAX_BODY, 3000, &r, err, sizeof err);
  assert_int_equal(rc, 0);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.body_len, MAX_BODY);
  assert_memory_equal(r.body, big, MAX_BODY);
  httpc_resp_free(&r);
  free(big);
}

static void test_chunked_stream(void **state) {
  fx_t *f = *state;
  httpc_resp_t r;
  char err[256];
  int rc = httpc_request(f->hostport, "GET", "/stream", NULL, NULL, 0, 3000, &r, err, sizeof err);
  assert_int_equal(rc, 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "hello, chunked world");
  assert_string_equal(r.content_type, "text/plain");
  httpc_resp_free(&r);

  /* On the wire it really is chunked, and the connection stays usable afterwards. */
  int fd = raw_connect(f->port);
  raw_resp_t resp[2];
  raw_sends(fd, "GET /stream HTTP/1.1\r\nHost: t\r\n\r\nGET /json HTTP/1.1\r\nHost: t\r\n\r\n");
  assert_int_equal(raw_read_responses(fd, resp, 2, 0), 2);
  assert_string_equal(resp[0].te, "chunked");
  assert_string_equal(resp[0].extra, "yes");
  assert_string_equal(resp[0].body, "hello, chunked world");
  assert_string_equal(resp[1].body, "{\"ok\":true}");
  close(fd);

  /* Streaming with a declared length. */
  rc = httpc_request(f->hostport, "GET", "/stream-cl", NULL, NULL, 0, 3000, &r, err, sizeof err);
  assert_int_equal(rc, 0);
  assert_string_equal(r.body, "hello world");
  httpc_resp_free(&r);
}

static void test_http10_close_delimited(void **state) {
  fx_t *f = *state;
  /* HTTP/1.0 cannot do chunked: the streamed body ends with the connection, which httpc-style
   * parsing must accept too. */
  int fd = raw_connect(f->port);
  char buf[4096];
  raw_sends(fd, "GET /stream HTTP/1.0\r\n\r\n");
  raw_read_all(fd, buf, sizeof buf);
  close(fd);
  assert_non_null(strstr(buf, "HTTP/1.1 200 OK\r\n"));
  assert_null(strstr(buf, "Transfer-Encoding"));
  assert_non_null(strstr(buf, "Connection: close\r\n"));
  char *body = strstr(buf, "\r\n\r\n");
  assert_non_null(body);
  assert_string_equal(body + 4, "hello, chunked world");
}

static void test_query_params(void **state) {
  fx_t *f = *state;
  httpc_resp_t r;
  char err[256];
  int rc = httpc_request(f->hostport, "GET", "/query?a=hello%20world&b=x+y%2Bz&c=&d&z=1", NULL,
                         NULL, 0, 3000, &r, err, sizeof err);
  assert_int_equal(rc, 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "a=[hello world] b=[x y+z] c=[] d=[] e=[-]");
  httpc_resp_free(&r);
}

static void test_query_param_unit(void **state) {
  (void)state;
  http_req_t r;
  memset(&r, 0, sizeof r);
  r.query = "k=v%3D1&empty=&plus=a+b&bad=%zz&sp%20ace=1&k=second&trail=%4";
  char *v;
  assert_non_null(v = http_req_query_param(&r, "k"));
  assert_string_equal(v, "v=1"); /* first occurrence wins */
  free(v);
  assert_non_null(v = http_req_query_param(&r, "empty"));
  assert_string_equal(v, "");
  free(v);
  assert_non_null(v = http_req_query_param(&r, "plus"));
  assert_string_equal(v, "a b");
  free(v);
  assert_non_null(v = http_req_query_param(&r, "bad"));
  assert_string_equal(v, "%zz");
  free(v);
  assert_non_null(v = http_req_query_param(&r, "sp ace"));
  assert_string_equal(v, "1");
  free(v);
  assert_non_null(v = http_req_query_param(&r, "trail"));
  assert_string_equal(v, "%4");
  free(v);
  assert_null(http_req_query_param(&r, "missing"));
  assert_null(http_req_query_param(&r, "k=v"));
  r.query = "";
  assert_null(http_req_query_param(&r, "k"));
}

static void test_status_text(void **state) {
  (void)state;
  assert_string_equal(http_status_text(200), "OK");
  assert_string_equal(http_status_text(206), "Partial Content");
  assert_string_equal(http_status_text(304), "Not Modified");
  assert_string_equal(http_status_text(404), "Not Found");
  assert_string_equal(http_status_text(413), "Payload Too Large");
  assert_string_equal(http_status_text(416), "Range Not Satisfiable");
  assert_string_equal(http_status_text(431), "Request Header Fields Too Large");
  assert_string_equal(http_status_text(503), "Service Unavailable");
  assert_non_null(http_status_text(599));
}

static void test_percent_path(void **state) {
  fx_t *f = *state;
  httpc_resp_t r;
  char err[256];
  int rc = httpc_request(f->hostport, "GET", "/files/a%20b/%C3%A9+c?x=%20y", NULL, NULL, 0, 3000,
                         &r, err, sizeof err);
  assert_int_equal(rc, 0);
  assert_int_equal(r.status, 200);
  /* '+' is literal in a path; the query stays raw. */
  assert_string_equal(r.body, "path=/files/a b/\xC3\xA9+c query=x=%20y");
  httpc_resp_free(&r);

  /* Absolute-form targets (as sent to proxies) yield the same path; "*" is left alone. */
  int fd = raw_connect(f->port);
  raw_resp_t resp[2];
  raw_sends(fd, "GET http://example.com:8080/files/x%2Fy?q=1 HTTP/1.1\r\nHost: t\r\n\r\n"
                "OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n");
  assert_int_equal(raw_read_responses(fd, resp, 2, 0), 2);
  assert_int_equal(resp[0].status, 200);
  assert_string_equal(resp[0].body, "path=/files/x/y query=q=1");
  assert_int_equal(resp[1].status, 404);
  close(fd);

  /* A malformed escape or an encoded NUL in the path is rejected. */
  rc = httpc_request(f->hostport, "GET", "/files/a%zzb", NULL, NULL, 0, 3000, &r, err, sizeof err);
  assert_int_equal(rc, 0);
  assert_int_equal(r.status, 400);
  httpc_resp_free(&r);
  rc = httpc_request(f->hostport, "GET", "/files/a%00b", NULL, NULL, 0, 3000, &r, err, sizeof err);
  assert_int_equal(rc, 0);
  assert_int_equal(r.status, 400);
  httpc_resp_free(&r);
}

static void test_client_timeout(void **state) {
  fx_t *f = *state;
  httpc_resp_t r;
  char err[256] = "";
  long long t0 = now_ms();
  int rc = httpc_request(f->hostport, "GET", "/never", NULL, NULL, 0, 200, &r, err, sizeof err);
  long long dt = now_ms() - t0;
  assert_int_equal(rc, -1);
  assert_non_null(strstr(err, "timeout"));
  assert_true(dt >= 150 && dt < 2000);
  assert_null(r.body);
  assert_null(r.content_type);
}

static void test_client_connect_error(void **state) {
  (void)state;
  /* Grab a free port, release it, and expect the connection to be refused. */
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t al = sizeof a;
  assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(getsockname(s, (struct sockaddr *)&a, &al), 0);
  close(s);
  char hp[64], err[256] = "";
  snprintf(hp, sizeof hp, "127.0.0.1:%d", ntohs(a.sin_port));
  httpc_resp_t r;
  assert_int_equal(httpc_request(hp, "GET", "/", NULL, NULL, 0, 1000, &r, err, sizeof err), -1);
  assert_true(strlen(err) > 0);
  assert_int_equal(httpc_request("", "GET", "/", NULL, NULL, 0, 1000, &r, err, sizeof err), -1);
  assert_non_null(strstr(err, "bad address"));
}

/* ---- tests: connection handling ------------------------------------------------------ */

static void test_keep_alive(void **state) {
  fx_t *f = *state;
  int fd = raw_connect(f->port);
  raw_resp_t resp[1];
  raw_sends(fd, "GET /json HTTP/1.1\r\nHost: t\r\n\r\n");
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_int_equal(resp[0].status, 200);
  assert_string_equal(resp[0].connection, "keep-alive");
  assert_string_equal(resp[0].body, "{\"ok\":true}");
  /* Same socket, second request. */
  raw_sends(fd, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_int_equal(resp[0].status, 200);
  assert_string_equal(resp[0].body, "abc");
  assert_string_equal(resp[0].extra, "POST");
  close(fd);

  /* HTTP/1.0 keeps the connection only when asked to. */
  fd = raw_connect(f->port);
  for (int i = 0; i < 2; i++) {
    raw_sends(fd, "GET /json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
    assert_int_equal(resp[0].status, 200);
    assert_string_equal(resp[0].connection, "keep-alive");
  }
  close(fd);
  fd = raw_connect(f->port);
  raw_sends(fd, "GET /json HTTP/1.0\r\n\r\n");
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_string_equal(resp[0].connection, "close");
  assert_true(raw_closed(fd));
  close(fd);
}

static void test_connection_close(void **state) {
  fx_t *f = *state;
  raw_resp_t resp[2];
  /* Connection: close is honoured, and a request pipelined behind it is never answered. */
  int fd = raw_connect(f->port);
  raw_sends(fd, "GET /json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                "GET /json HTTP/1.1\r\nHost: t\r\n\r\n");
  assert_int_equal(raw_read_responses(fd, resp, 2, 0), 1);
  assert_int_equal(resp[0].status, 200);
  assert_string_equal(resp[0].connection, "close");
  close(fd);

  /* A handler can ask for the close too. */
  fd = raw_connect(f->port);
  raw_sends(fd, "GET /bye HTTP/1.1\r\nHost: t\r\n\r\n");
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_string_equal(resp[0].body, "bye");
  assert_string_equal(resp[0].connection, "close");
  assert_true(raw_closed(fd));
  close(fd);
}

static void test_pipelining(void **state) {
  fx_t *f = *state;
  int fd = raw_connect(f->port);
  raw_resp_t resp[3];
  /* The first answer comes 100 ms later from a timer, the second at once: order must hold. */
  raw_sends(fd, "GET /slow?ms=100&id=first HTTP/1.1\r\nHost: t\r\n\r\n"
                "GET /fast?id=second HTTP/1.1\r\nHost: t\r\n\r\n"
                "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nthird");
  assert_int_equal(raw_read_responses(fd, resp, 3, 0), 3);
  assert_string_equal(resp[0].body, "first");
  assert_string_equal(resp[1].body, "second");
  assert_string_equal(resp[2].body, "third");
  close(fd);
}

static void test_pipelining_many(void **state) {
  fx_t *f = *state;
  enum { N = 40 };
  char req[N * 80];
  size_t n = 0;
  for (int i = 0; i < N; i++) {
    if (i % 4 == 0)
      n += (size_t)snprintf(req + n, sizeof req - n,
                            "GET /slow?ms=%d&id=%d HTTP/1.1\r\nHost: t\r\n\r\n", 20 - i / 4, i);
    else
      n += (size_t)snprintf(req + n, sizeof req - n, "GET /fast?id=%d HTTP/1.1\r\nHost: t\r\n\r\n",
                            i);
  }
  int fd = raw_connect(f->port);
  raw_send(fd, req, n);
  raw_resp_t *resp = calloc(N, sizeof *resp);
  assert_int_equal(raw_read_responses(fd, resp, N, 0), N);
  for (int i = 0; i < N; i++) {
    char want[16];
    snprintf(want, sizeof want, "%d", i);
    assert_int_equal(resp[i].status, 200);
    assert_string_equal(resp[i].body, want);
  }
  free(resp);
  close(fd);
}

static void test_body_too_large(void **state) {
  fx_t *f = *state;
  size_t big = 10000;
  char *body = malloc(big);
  memset(body, 'b', big);
  /* Declared length over the limit. */
  int fd = raw_connect(f->port);
  char head[256];
  snprintf(head, sizeof head, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n", big);
  raw_sends(fd, head);
  raw_send(fd, body, big);
  raw_resp_t resp[1];
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_int_equal(resp[0].status, 413);
  assert_string_equal(resp[0].connection, "close");
  assert_true(raw_closed(fd));
  close(fd);

  /* The same through httpc. */
  httpc_resp_t r;
  char err[256];
  assert_int_equal(
      httpc_request(f->hostport, "PUT", "/echo", NULL, body, big, 3000, &r, err, sizeof err), 0);
  assert_int_equal(r.status, 413);
  httpc_resp_free(&r);

  /* Chunked body that grows past the limit. */
  fd = raw_connect(f->port);
  raw_sends(fd, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
  for (int i = 0; i < 5; i++) {
    raw_sends(fd, "3e8\r\n"); /* 1000 bytes */
    raw_send(fd, body, 1000);
    raw_sends(fd, "\r\n");
  }
  raw_sends(fd, "0\r\n\r\n");
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_int_equal(resp[0].status, 413);
  assert_true(raw_closed(fd));
  close(fd);
  free(body);
}

static void test_chunked_request_body(void **state) {
  fx_t *f = *state;
  int fd = raw_connect(f->port);
  raw_resp_t resp[1];
  raw_sends(fd, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                "5\r\nhello\r\n");
  sleep_ms(20); /* second chunk in a later read */
  raw_sends(fd, "7\r\n, world\r\n0\r\n\r\n");
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_int_equal(resp[0].status, 200);
  assert_string_equal(resp[0].body, "hello, world");
  close(fd);
}

static void test_header_too_large(void **state) {
  fx_t *f = *state;
  char req[MAX_HEADER * 2 + 128];
  char val[MAX_HEADER + 100];
  memset(val, 'h', sizeof val - 1);
  val[sizeof val - 1] = '\0';
  snprintf(req, sizeof req, "GET /json HTTP/1.1\r\nHost: t\r\nX-Big: %s\r\n\r\n", val);
  int fd = raw_connect(f->port);
  raw_sends(fd, req);
  raw_resp_t resp[1];
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_int_equal(resp[0].status, 431);
  assert_true(raw_closed(fd));
  close(fd);
}

static void test_garbage(void **state) {
  fx_t *f = *state;
  raw_resp_t resp[1];
  /* A TLS ClientHello is a classic thing to receive on a plain-HTTP port. */
  static const char tls[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n";
  int fd = raw_connect(f->port);
  raw_send(fd, tls, sizeof tls - 1);
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_int_equal(resp[0].status, 400);
  assert_string_equal(resp[0].connection, "close");
  assert_true(raw_closed(fd));
  close(fd);

  /* A good request followed by a broken one: the first is still answered. */
  fd = raw_connect(f->port);
  raw_sends(fd, "GET /json HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nBad Header\r\n\r\n");
  raw_resp_t two[2];
  assert_int_equal(raw_read_responses(fd, two, 2, 0), 2);
  assert_int_equal(two[0].status, 200);
  assert_int_equal(two[1].status, 400);
  assert_true(raw_closed(fd));
  close(fd);
}

static void test_head_no_body(void **state) {
  fx_t *f = *state;
  int fd = raw_connect(f->port);
  char buf[2048];
  raw_sends(fd, "HEAD /json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  size_t n = raw_read_all(fd, buf, sizeof buf);
  close(fd);
  assert_true(n > 0);
  assert_non_null(strstr(buf, "HTTP/1.1 200 OK\r\n"));
  assert_non_null(strstr(buf, "Content-Length: 11\r\n"));
  assert_non_null(strstr(buf, "Content-Type: application/json\r\n"));
  assert_non_null(strstr(buf, "Date: "));
  assert_non_null(strstr(buf, "Server: gureum-test\r\n"));
  /* Nothing after the blank line. */
  char *end = strstr(buf, "\r\n\r\n");
  assert_non_null(end);
  assert_int_equal((size_t)(end + 4 - buf), n);

  /* Through httpc, and a HEAD followed by a GET on one connection stays in sync. */
  httpc_resp_t r;
  char err[256];
  assert_int_equal(
      httpc_request(f->hostport, "HEAD", "/json", NULL, NULL, 0, 3000, &r, err, sizeof err), 0);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.body_len, 0);
  httpc_resp_free(&r);
  fd = raw_connect(f->port);
  raw_sends(fd, "HEAD /stream HTTP/1.1\r\nHost: t\r\n\r\n");
  raw_resp_t resp[1];
  assert_int_equal(raw_read_responses(fd, resp, 1, 1), 1);
  assert_int_equal(resp[0].status, 200);
  raw_sends(fd, "GET /json HTTP/1.1\r\nHost: t\r\n\r\n");
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_string_equal(resp[0].body, "{\"ok\":true}");
  close(fd);
}

static void test_no_content(void **state) {
  fx_t *f = *state;
  int fd = raw_connect(f->port);
  char buf[1024];
  raw_sends(fd, "DELETE /nocontent HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  raw_read_all(fd, buf, sizeof buf);
  close(fd);
  assert_non_null(strstr(buf, "HTTP/1.1 204 No Content\r\n"));
  assert_null(strstr(buf, "Content-Length"));
  assert_null(strstr(buf, "Transfer-Encoding"));
}

static void test_split_headers(void **state) {
  fx_t *f = *state;
  /* One byte per segment: every parser callback arrives in pieces. */
  static const char req[] = "GET /header HTTP/1.1\r\nHost: t\r\nX-Test: split value\r\n\r\n";
  int fd = raw_connect(f->port);
  for (size_t i = 0; i < sizeof req - 1; i++) {
    raw_send(fd, req + i, 1);
    sleep_ms(1);
  }
  raw_resp_t resp[1];
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_int_equal(resp[0].status, 200);
  assert_string_equal(resp[0].body, "x-test=split value peer=127.0.0.1");
  close(fd);
}

static void test_expect_continue(void **state) {
  fx_t *f = *state;
  int fd = raw_connect(f->port);
  static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
  char buf[64];
  raw_sends(fd, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                "Expect: 100-continue\r\n\r\n");
  raw_read_exact(fd, buf, sizeof cont - 1);
  assert_string_equal(buf, cont);
  raw_sends(fd, "hello");
  raw_resp_t resp[1];
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_int_equal(resp[0].status, 200);
  assert_string_equal(resp[0].body, "hello");
  close(fd);
}

static void test_idle_timeout(void **state) {
  fx_t *f = *state;
  int fd = raw_connect(f->port);
  raw_resp_t resp[1];
  raw_sends(fd, "GET /json HTTP/1.1\r\nHost: t\r\n\r\n");
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  long long t0 = now_ms();
  assert_true(raw_closed(fd)); /* idle keep-alive connection is closed by the server */
  long long dt = now_ms() - t0;
  assert_true(dt >= IDLE_MS - 100 && dt < 2500);
  close(fd);
}

static void test_client_closes_while_pending(void **state) {
  fx_t *f = *state;
  /* Client goes away (FIN, then RST) while the handler is still working on its request. */
  int fd = raw_connect(f->port);
  raw_sends(fd, "GET /late HTTP/1.1\r\nHost: t\r\n\r\n");
  close(fd);
  fd = raw_connect(f->port);
  raw_sends(fd, "GET /late HTTP/1.1\r\nHost: t\r\n\r\nGET /late HTTP/1.1\r\nHost: t\r\n\r\n");
  struct linger lg = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  close(fd);
  long long t0 = now_ms();
  while (atomic_load(&f->late_answered) < 2 && now_ms() - t0 < 3000) sleep_ms(5);
  assert_true(atomic_load(&f->late_answered) >= 2);
  sleep_ms(50);
  /* The server is still healthy. */
  httpc_resp_t r;
  char err[256];
  assert_int_equal(
      httpc_request(f->hostport, "GET", "/json", NULL, NULL, 0, 3000, &r, err, sizeof err), 0);
  assert_int_equal(r.status, 200);
  httpc_resp_free(&r);
}

static void test_server_close_while_pending(void **state) {
  fx_t *f = *state;
  int fd = raw_connect(f->port);
  raw_sends(fd, "GET /never HTTP/1.1\r\nHost: t\r\n\r\n");
  long long t0 = now_ms();
  while (atomic_load(&f->held_seen) < 1 && now_ms() - t0 < 3000) sleep_ms(5);
  assert_int_equal(atomic_load(&f->held_seen), 1);
  /* Close the server with the request still held; it is answered after its connection is
   * gone (in on_server_closed), which must be a quiet no-op. */
  fx_stop(f);
  char buf[256];
  ssize_t n = recv(fd, buf, sizeof buf, 0);
  assert_true(n <= 0); /* closed with no response */
  close(fd);
  assert_true(f->server_closed);
}

/* ---- tests: streamed request bodies -------------------------------------------------- */

static uint64_t rng_next(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

/* Nothing arrives on fd within ms. */
static int raw_quiet(int fd, int ms) {
  struct pollfd pfd = {.fd = fd, .events = POLLIN};
  return poll(&pfd, 1, ms) == 0;
}

static void wait_for(atomic_int *v, int want) {
  long long t0 = now_ms();
  while (atomic_load(v) < want && now_ms() - t0 < 5000) sleep_ms(5);
  assert_true(atomic_load(v) >= want);
}

static void test_stream_upload_backpressure(void **state) {
  fx_t *f = *state;
  const size_t total = (size_t)20 << 20; /* far past max_body, which streams ignore */
  char head[256];
  snprintf(head, sizeof head, "PUT /up/slow HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n",
           total);
  int fd = raw_connect(f->port);
  raw_sends(fd, head);
  /* Random pieces, from single bytes to bigger than the server's read buffer. */
  char *buf = malloc(100000);
  uint64_t rng = 0x9e3779b97f4a7c15ULL, sum = FNV_INIT;
  size_t sent = 0;
  while (sent < total) {
    uint64_t x = rng_next(&rng);
    size_t n = x % 4 == 0 ? 1 + (size_t)(x >> 8) % 200 : 1 + (size_t)(x >> 8) % 100000;
    if (n > total - sent) n = total - sent;
    for (size_t i = 0; i < n; i++) buf[i] = (char)(rng_next(&rng) >> 24);
    sum = fnv1a(sum, buf, n);
    raw_send(fd, buf, n);
    sent += n;
  }
  free(buf);
  raw_resp_t resp[1];
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_int_equal(resp[0].status, 200);
  assert_string_equal(resp[0].connection, "keep-alive");
  size_t len = 0, maxbuf = 0, maxpiece = 0;
  unsigned long long got_sum = 0;
  int violations = -1;
  assert_int_equal(sscanf(resp[0].body, "len=%zu sum=%llx maxbuf=%zu maxpiece=%zu violations=%d",
                          &len, &got_sum, &maxbuf, &maxpiece, &violations),
                   5);
  assert_int_equal(len, total);
  assert_int_equal(got_sum, sum);
  assert_int_equal(violations, 0); /* nothing delivered while paused */
  assert_true(maxpiece > 0 && maxpiece <= UP_PIECE_MAX);
  /* However far the client ran ahead, the server held at most one read buffer. */
  assert_true(maxbuf <= UP_PIECE_MAX);
  /* The connection is still good for another request. */
  raw_sends(fd, "GET /json HTTP/1.1\r\nHost: t\r\n\r\n");
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_string_equal(resp[0].body, "{\"ok\":true}");
  close(fd);
  assert_int_equal(atomic_load(&f->loop_errors), 0);
}

static void test_stream_chunked(void **state) {
  fx_t *f = *state;
  int fd = raw_connect(f->port);
  raw_resp_t resp[1];
  raw_sends(fd, "POST /up/echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                "5\r\nhello\r\n");
  sleep_ms(20); /* later chunks in later reads */
  raw_sends(fd, "7\r\n, world\r\n");
  sleep_ms(20);
  raw_sends(fd, "0\r\nX-Trailer: ignored\r\n\r\n");
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_int_equal(resp[0].status, 200);
  assert_string_equal(resp[0].body, "hello, world");
  assert_string_equal(resp[0].connection, "keep-alive");

  /* Length unknown up front; the decoded bytes only, however the chunks are cut. */
  raw_sends(fd, "POST /up/count HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                "3\r\nabc\r\n1\r\nd\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n");
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_int_equal(resp[0].status, 200);
  assert_non_null(strstr(resp[0].body, "len=20 cl=0 known=0 violations=0"));

  /* No body at all: a single call with last = 1. */
  raw_sends(fd, "GET /up/count HTTP/1.1\r\nHost: t\r\n\r\n");
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_string_equal(resp[0].body, "calls=1 len=0 cl=0 known=1 violations=0");
  raw_sends(fd, "PUT /up/count HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_string_equal(resp[0].body, "calls=1 len=0 cl=0 known=1 violations=0");
  raw_sends(fd, "PUT /up/count HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nabcdef");
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_string_equal(resp[0].body, "calls=2 len=6 cl=6 known=1 violations=0");

  /* Broken chunk framing mid-body: the handler hears ABORTED, the connection is dropped. */
  raw_sends(fd, "POST /up/echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                "5\r\nhello\r\nzz\r\n");
  wait_for(&f->up_aborted, 1);
  assert_true(raw_closed(fd));
  close(fd);
  assert_int_equal(atomic_load(&f->loop_errors), 0);
}

static void test_stream_early_answer(void **state) {
  fx_t *f = *state;
  raw_resp_t resp[2];
  char *body = malloc(100000);
  memset(body, 'u', 100000);

  /* 403 before reading a small body: the rest is dropped, the connection kept. */
  int fd = raw_connect(f->port);
  raw_sends(fd, "PUT /up/deny HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n");
  raw_send(fd, body, 1000);
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_int_equal(resp[0].status, 403);
  assert_string_equal(resp[0].connection, "keep-alive");
  raw_sends(fd, "GET /json HTTP/1.1\r\nHost: t\r\n\r\n");
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_int_equal(resp[0].status, 200);
  assert_string_equal(resp[0].body, "{\"ok\":true}");

  /* The same when the body only comes after the answer, in pieces, followed by the next
   * request in the same write as its tail. */
  raw_sends(fd, "PUT /up/deny HTTP/1.1\r\nHost: t\r\nContent-Length: 3000\r\n\r\n");
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_int_equal(resp[0].status, 403);
  assert_string_equal(resp[0].connection, "keep-alive");
  raw_send(fd, body, 2000);
  sleep_ms(10);
  static const char next[] = "GET /fast?id=after HTTP/1.1\r\nHost: t\r\n\r\n";
  char tail[1000 + sizeof next];
  memset(tail, 'u', 1000);
  memcpy(tail + 1000, next, sizeof next - 1);
  raw_send(fd, tail, 1000 + sizeof next - 1);
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_string_equal(resp[0].body, "after");

  /* Answered in the middle of the body: the rest (under the discard limit) is dropped. */
  raw_sends(fd, "PUT /up/half?n=1000 HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n");
  raw_send(fd, body, 100000);
  raw_sends(fd, "GET /json HTTP/1.1\r\nHost: t\r\n\r\n");
  assert_int_equal(raw_read_responses(fd, resp, 2, 0), 2);
  assert_int_equal(resp[0].status, 200);
  assert_non_null(strstr(resp[0].body, "got="));
  assert_string_equal(resp[0].connection, "keep-alive");
  assert_string_equal(resp[1].body, "{\"ok\":true}");
  close(fd);

  /* A chunked body of unknown size: answer, then close rather than read it all. */
  fd = raw_connect(f->port);
  raw_sends(fd, "PUT /up/deny HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                "3e8\r\n");
  raw_send(fd, body, 1000);
  raw_sends(fd, "\r\n");
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_int_equal(resp[0].status, 403);
  assert_string_equal(resp[0].connection, "close");
  assert_true(raw_closed(fd));
  close(fd);

  /* A large declared body: the same. */
  fd = raw_connect(f->port);
  raw_sends(fd, "PUT /up/deny HTTP/1.1\r\nHost: t\r\nContent-Length: 10485760\r\n\r\n");
  raw_send(fd, body, 100000);
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_int_equal(resp[0].status, 403);
  assert_string_equal(resp[0].connection, "close");
  assert_true(raw_closed(fd));
  close(fd);

  /* Mid-body answer with much left: close too. */
  fd = raw_connect(f->port);
  raw_sends(fd, "PUT /up/half?n=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 10485760\r\n\r\n");
  raw_send(fd, body, 100000);
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_int_equal(resp[0].status, 200);
  assert_string_equal(resp[0].connection, "close");
  assert_true(raw_closed(fd));
  close(fd);
  free(body);
  assert_int_equal(atomic_load(&f->up_aborted), 0);
  assert_int_equal(atomic_load(&f->loop_errors), 0);
}

static void test_stream_expect_continue(void **state) {
  fx_t *f = *state;
  static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
  raw_resp_t resp[1];
  char buf[64];

  /* Rejected before reading: the final answer comes first, no 100, and the connection
   * closes since the client may or may not send the body now. */
  int fd = raw_connect(f->port);
  raw_sends(fd, "PUT /up/deny HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                "Expect: 100-continue\r\n\r\n");
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_int_equal(resp[0].status, 403);
  assert_string_equal(resp[0].connection, "close");
  assert_true(raw_closed(fd));
  close(fd);

  /* Accepted: the 100 comes only when the handler starts reading (150 ms in). */
  fd = raw_connect(f->port);
  long long t0 = now_ms();
  raw_sends(fd, "PUT /up/lateread HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                "Expect: 100-continue\r\n\r\n");
  assert_true(raw_quiet(fd, 80));
  raw_read_exact(fd, buf, sizeof cont - 1);
  assert_string_equal(buf, cont);
  assert_true(now_ms() - t0 >= 140);
  raw_sends(fd, "hello");
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_int_equal(resp[0].status, 200);
  assert_string_equal(resp[0].body, "hello");
  assert_string_equal(resp[0].connection, "keep-alive");
  /* Reading at once: the 100 comes at once. */
  raw_sends(fd, "PUT /up/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
                "Expect: 100-continue\r\n\r\n");
  raw_read_exact(fd, buf, sizeof cont - 1);
  assert_string_equal(buf, cont);
  raw_sends(fd, "abc");
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_string_equal(resp[0].body, "abc");
  close(fd);
  assert_int_equal(atomic_load(&f->loop_errors), 0);
}

static void test_stream_pipelined(void **state) {
  fx_t *f = *state;
  enum { N = 9 };
  raw_resp_t *resp = calloc(N, sizeof *resp);
  int fd = raw_connect(f->port);
  raw_sends(fd, "PUT /up/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
                "PUT /up/echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
                "GET /json HTTP/1.1\r\nHost: t\r\n\r\n"
                "PUT /up/deny HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nxxxx"
                "PUT /up/slow HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n0123456789"
                "PUT /up/count HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
                "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nbuf"
                "POST /echo-rb HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nrb"
                "GET /up/count HTTP/1.1\r\nHost: t\r\n\r\n");
  assert_int_equal(raw_read_responses(fd, resp, N, 0), N);
  assert_string_equal(resp[0].body, "hello");
  assert_string_equal(resp[1].body, "abcde");
  assert_string_equal(resp[2].body, "{\"ok\":true}");
  assert_int_equal(resp[3].status, 403);
  assert_string_equal(resp[3].connection, "keep-alive");
  assert_non_null(strstr(resp[4].body, "len=10 "));
  assert_string_equal(resp[5].body, "calls=1 len=0 cl=0 known=1 violations=0");
  assert_string_equal(resp[6].body, "buf");
  assert_string_equal(resp[7].body, "rb len=2");
  assert_string_equal(resp[8].body, "calls=1 len=0 cl=0 known=1 violations=0");
  for (int i = 0; i < N; i++) assert_string_equal(resp[i].connection, "keep-alive");
  free(resp);
  close(fd);
  assert_int_equal(atomic_load(&f->up_aborted), 0);
  assert_int_equal(atomic_load(&f->loop_errors), 0);
}

static void test_stream_client_disconnect(void **state) {
  fx_t *f = *state;
  char *body = malloc(200000);
  memset(body, 'd', 200000);
  /* FIN mid-body while the handler keeps pausing. */
  int fd = raw_connect(f->port);
  raw_sends(fd, "PUT /up/slow HTTP/1.1\r\nHost: t\r\nContent-Length: 1048576\r\n\r\n");
  raw_send(fd, body, 200000);
  close(fd);
  wait_for(&f->up_aborted, 1);
  /* RST mid-body. */
  fd = raw_connect(f->port);
  raw_sends(fd, "PUT /up/slow HTTP/1.1\r\nHost: t\r\nContent-Length: 1048576\r\n\r\n");
  raw_send(fd, body, 200000);
  sleep_ms(20);
  struct linger lg = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  close(fd);
  wait_for(&f->up_aborted, 2);
  /* Gone before the handler even started reading. */
  fd = raw_connect(f->port);
  raw_sends(fd, "PUT /up/lateread HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\nabc");
  close(fd);
  wait_for(&f->up_aborted, 3);
  /* Gone while the handler waits with nothing left to read: nothing to report. */
  fd = raw_connect(f->port);
  raw_sends(fd, "PUT /up/lateread HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
  close(fd);
  sleep_ms(250);
  free(body);
  /* The server is still healthy. */
  httpc_resp_t r;
  char err[256];
  assert_int_equal(
      httpc_request(f->hostport, "GET", "/json", NULL, NULL, 0, 3000, &r, err, sizeof err), 0);
  assert_int_equal(r.status, 200);
  httpc_resp_free(&r);
  assert_int_equal(atomic_load(&f->loop_errors), 0);
}

static void test_stream_idle_timeout(void **state) {
  fx_t *f = *state;
  /* A stalled upload is cut by the idle timer and the handler told. */
  int fd = raw_connect(f->port);
  raw_sends(fd, "PUT /up/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc");
  long long t0 = now_ms();
  assert_true(raw_closed(fd));
  assert_true(now_ms() - t0 >= IDLE_MS - 100);
  wait_for(&f->up_aborted, 1);
  close(fd);
  assert_int_equal(atomic_load(&f->loop_errors), 0);
}

static void test_stream_server_close(void **state) {
  fx_t *f = *state;
  /* The server closes while a paused upload is in flight: the handler hears ABORTED when
   * it resumes, answers into the void, and the loop ends with every handle closed (the
   * teardown checks uv_loop_close). */
  int fd = raw_connect(f->port);
  char *body = malloc(300000);
  memset(body, 's', 300000);
  raw_sends(fd, "PUT /up/slow HTTP/1.1\r\nHost: t\r\nContent-Length: 1048576\r\n\r\n");
  raw_send(fd, body, 300000);
  wait_for(&f->up_started, 1);
  fx_stop(f);
  assert_int_equal(atomic_load(&f->up_aborted), 1);
  close(fd);
  free(body);
  assert_int_equal(atomic_load(&f->loop_errors), 0);
}

int main(void) {
  /* libuv reports EPIPE on writes to vanished clients; the signal would kill the test. */
  signal(SIGPIPE, SIG_IGN);
  if (getenv("HTTP_TEST_DEBUG")) log_set_level(LOG_DEBUG);
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(test_get_json),
      T(test_post_echo),
      T(test_chunked_stream),
      T(test_http10_close_delimited),
      T(test_query_params),
      cmocka_unit_test(test_query_param_unit),
      cmocka_unit_test(test_status_text),
      T(test_percent_path),
      T(test_client_timeout),
      cmocka_unit_test(test_client_connect_error),
      T(test_keep_alive),
      T(test_connection_close),
      T(test_pipelining),
      T(test_pipelining_many),
      T(test_body_too_large),
      T(test_chunked_request_body),
      T(test_header_too_large),
      T(test_garbage),
      T(test_head_no_body),
      T(test_no_content),
      T(test_split_headers),
      T(test_expect_continue),
      T(test_idle_timeout),
      T(test_client_closes_while_pending),
      T(test_server_close_while_pending),
      T(test_stream_upload_backpressure),
      T(test_stream_chunked),
      T(test_stream_early_answer),
      T(test_stream_expect_continue),
      T(test_stream_pipelined),
      T(test_stream_client_disconnect),
      T(test_stream_idle_timeout),
      T(test_stream_server_close),
  };
#undef T
  return cmocka_run_group_tests(tests, NULL, NULL);
}
